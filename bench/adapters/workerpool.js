'use strict';
// workerpool with workerType: 'process' (child_process.fork() workers), all workers
// pre-started (minWorkers = maxWorkers = size).
const path = require('path');
const { packageVersion } = require('../lib/util');

const WORKER = path.join(__dirname, '..', 'workers', 'workerpool-worker.js');

module.exports = {
  name: 'workerpool',
  label: 'workerpool (process)',
  kind: 'process',
  version: () => packageVersion('workerpool'),
  readySignal: 'none (the pool has no ready event); see "all workers served"',

  async create(size) {
    const workerpool = require('workerpool');
    const pool = workerpool.pool(WORKER, {
      workerType: 'process',
      minWorkers: size,
      maxWorkers: size,
    });
    return {
      nativeReady: false,
      run: (op, payload) => pool.exec(op, [payload]),
      close: () => pool.terminate(),
    };
  },
};
