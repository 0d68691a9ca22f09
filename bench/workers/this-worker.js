'use strict';
// Worker script for this package (cortex-worker-pool).
const WorkerProcess = require('../../worker-process.js');
const tasks = require('./tasks.js');

const w = new WorkerProcess(process.env.WORKER_ID, JSON.parse(process.env.WORKER_CONFIG || '{}'));
w.registerTaskHandler('echo', (p) => p);
w.registerTaskHandler('fib', (p) => tasks.fib(p));
w.registerTaskHandler('whoami', () => tasks.whoami());
w.registerTaskHandler('stamp', () => tasks.stamp());
w.registerTaskHandler('burn', (p) => tasks.burn(p));
w.start();
