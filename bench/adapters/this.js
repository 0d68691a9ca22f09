'use strict';
// This package (cortex-worker-pool): Rust core via napi-rs, worker processes running
// bench/workers/this-worker.js. Loaded lazily so the driver can report it as
// unavailable (e.g. before `npm run build`) and carry on with the peers.
const path = require('path');

const ROOT = path.join(__dirname, '..', '..');
const WORKER = path.join(__dirname, '..', 'workers', 'this-worker.js');

module.exports = {
  name: 'this',
  label: 'this package',
  kind: 'process',
  version: () => require(path.join(ROOT, 'package.json')).version,
  readySignal: 'await createWorkerPool(...) resolves',

  create(size) {
    // Default options, as Cortex uses the pool (loadBalancing: 'least-loaded').
    return module.exports.createWith(size, undefined);
  },

  createWith(size, loadBalancing, extra = {}) {
    return module.exports.createAt(ROOT, size, loadBalancing, extra);
  },

  /** The same pool built by the package checked out (and built) at `root`; see this-at.js. */
  async createAt(root, size, loadBalancing, extra = {}) {
    const { createWorkerPool } = require(root);
    const pool = await createWorkerPool({
      poolSize: size,
      minWorkers: 1,
      maxWorkers: Math.max(size, 50),
      workerScript: WORKER,
      // The default, 'least-loaded', is the strategy the peers use (poolifier
      // LEAST_USED, workerpool and piscina the least busy): fewest in flight, ties to
      // the most recently used worker. The original's round-robin is 'this-rr'.
      ...(loadBalancing ? { loadBalancing } : {}),
      logLevel: 'silent',
      ...extra,
    });
    return {
      nativeReady: true,
      run: (op, payload) => pool.submitTask({ type: op, payload }),
      close: () => pool.shutdown(true),
    };
  },
};
