'use strict';
// poolifier FixedClusterPool (cluster.fork() workers), default options
// (LEAST_USED worker choice strategy, tasks queue disabled).
const path = require('path');
const { packageVersion } = require('../lib/util');

const WORKER = path.join(__dirname, '..', 'workers', 'poolifier-worker.js');

module.exports = {
  name: 'poolifier',
  label: 'poolifier (cluster)',
  kind: 'process',
  version: () => packageVersion('poolifier'),
  readySignal: "pool emitter 'ready' event (PoolEvents.ready: all minimum workers started and ready)",

  async create(size) {
    const { FixedClusterPool, PoolEvents } = require('poolifier');
    const pool = new FixedClusterPool(size, WORKER, {
      errorHandler: (e) => console.error('[poolifier] worker error:', e && e.message),
    });
    try {
      if (!pool.info.ready) {
        await new Promise((resolve, reject) => {
          pool.emitter.once(PoolEvents.ready, resolve);
          pool.emitter.once(PoolEvents.error, reject);
        });
      }
    } catch (e) {
      await pool.destroy().catch(() => {});
      throw e;
    }
    return {
      nativeReady: true,
      run: (op, payload) => pool.execute(payload, op),
      close: () => pool.destroy(),
    };
  },
};
