'use strict';
// This package as in adapters/this.js (least-loaded) with `spinWaitUs: 0`: the JS thread
// never polls for a reply before it sleeps. Run beside 'this' in the one-at-a-time cells
// only, so the report shows what the spin buys (latency) and what it costs (parent CPU
// per task).
const base = require('./this.js');

module.exports = {
  ...base,
  name: 'this-nospin',
  label: 'this package, spinWaitUs 0',
  groups: ['latency', 'mixed'],
  create: (size) => base.createWith(size, 'least-loaded', { spinWaitUs: 0 }),
};
