'use strict';
// Worker script for this package (cortex-worker-pool). With BENCH_PACKAGE_ROOT (set by
// adapters/this-at.js in the workers' env) it runs that checkout's WorkerProcess, so
// another build is measured with its own worker runtime and these same handlers.
const path = require('path');
const WorkerProcess = require(path.join(process.env.BENCH_PACKAGE_ROOT || path.join(__dirname, '..', '..'), 'worker-process.js'));
const tasks = require('./tasks.js');

const w = new WorkerProcess(process.env.WORKER_ID, JSON.parse(process.env.WORKER_CONFIG || '{}'));
w.registerTaskHandler('echo', (p) => p);
w.registerTaskHandler('fib', (p) => tasks.fib(p));
w.registerTaskHandler('whoami', () => tasks.whoami());
w.registerTaskHandler('stamp', () => tasks.stamp());
w.registerTaskHandler('burn', (p) => tasks.burn(p));
w.start();
