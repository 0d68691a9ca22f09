'use strict';
// A custom worker script for the pool (used by `node example-usage.js custom` and
// `errors`). The pool starts it with WORKER_ID and WORKER_CONFIG in the environment;
// WorkerProcess does the protocol (ready, heartbeats, tasks, shutdown).
const WorkerProcess = require('../worker-process');

const config = WorkerProcess.parseWorkerConfig(process.env.WORKER_CONFIG);
const worker = new WorkerProcess(process.env.WORKER_ID, WorkerProcess.optionsFromConfig(config));

function wordCount(text) {
  const counts = {};
  for (const w of String(text).toLowerCase().match(/[a-z']+/g) || []) counts[w] = (counts[w] || 0) + 1;
  return counts;
}

worker
  // Plain synchronous handlers: the return value is the task's result.
  .registerTaskHandler('uppercase', (payload) => String(payload.text).toUpperCase())
  .registerTaskHandler('word-count', (payload) => wordCount(payload.text))
  .registerTaskHandler('fibonacci', ({ n }) => {
    let [a, b] = [0n, 1n];
    for (let i = 0; i < n; i++) [a, b] = [b, a + b];
    return a.toString(); // BigInt does not travel as JSON; a string does
  })
  // An async handler; `signal` fires when the task times out or is cancelled.
  .registerTaskHandler('sleep', (payload, signal) => new Promise((resolve, reject) => {
    const t = setTimeout(() => resolve({ slept: payload.ms, pid: process.pid }), payload.ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new Error('sleep cancelled'));
    }, { once: true });
  }))
  // A handler that fails: the error's message (and `code`) reach the caller.
  .registerTaskHandler('fail', (payload) => {
    const err = new Error(payload.message || 'task failed on purpose');
    err.code = 'E_EXAMPLE';
    throw err;
  })
  .registerTaskHandler('whoami', () => ({ workerId: process.env.WORKER_ID, pid: process.pid }));

worker.start();
