'use strict';
// This package with loadBalancing 'round-robin' (the original's default, still
// available by name; the package's default is 'least-loaded'). It rotates even lone tasks across the workers, so its
// one-at-a-time latency pays for cache-cold workers; see adapters/this.js.
const base = require('./this.js');

module.exports = {
  ...base,
  name: 'this-rr',
  label: 'this package, round-robin',
  create: (size) => base.createWith(size, 'round-robin'),
};
