'use strict';
// piscina (worker_threads, not processes): included as an in-process reference point.
// minThreads = maxThreads = size, other options default (Atomics on).
const path = require('path');
const { packageVersion } = require('../lib/util');

const WORKER = path.join(__dirname, '..', 'workers', 'piscina-worker.js');

module.exports = {
  name: 'piscina',
  label: 'piscina (threads)',
  kind: 'thread',
  version: () => packageVersion('piscina'),
  // piscina marks its initial threads as ready as soon as the Worker objects are constructed
  // (idleThreads counts them at once), so it has no ready signal worth timing.
  readySignal: 'none (initial threads are flagged ready as soon as they are constructed; no ready event); see "all workers served"',

  async create(size) {
    const { Piscina } = require('piscina');
    const pool = new Piscina({ filename: WORKER, minThreads: size, maxThreads: size });
    return {
      nativeReady: false,
      run: (op, payload) => pool.run(payload, { name: op }),
      close: () => pool.destroy(),
    };
  },
};
