#!/usr/bin/env node
// Python workers under the pool: `node examples/python-pool.js`. Starts 2 workers
// running examples/python-worker.py, then shows a result, a TaskError, a timeout that
// the handler notices through task.cancelled, and a cancelled coroutine.
'use strict';
const path = require('node:path');
const { createWorkerPool } = require('..');

async function main() {
  const pool = await createWorkerPool({
    poolSize: 2,
    workerCommand: ['python3', path.join(__dirname, 'python-worker.py')],
    // The runtime ships in the package's python/ directory (or: pip install <package>/python).
    env: { PYTHONPATH: path.join(__dirname, '..', 'python') },
    maxTaskRetries: 0,
    logLevel: 'warn',
  });
  try {
    const counted = await pool.submitTask({ type: 'word-count', payload: { text: 'the pool runs the Python worker' } });
    console.log('word-count:', JSON.stringify(counted));

    await pool.submitTask({ type: 'word-count', payload: { text: 42 } }).catch((e) => {
      console.log(`TaskError -> ${e.code} (${e.handlerCode}): ${e.message}`);
    });

    await pool.submitTask({ type: 'hash', payload: { seed: 'x', rounds: 1e9 }, timeout: 300 }).catch((e) => {
      console.log(`timeout -> ${e.code}`);
    });

    const ac = new AbortController();
    const waiting = pool.submitTask({ type: 'wait', payload: { seconds: 60 } }, { signal: ac.signal });
    setTimeout(() => ac.abort(), 200);
    await waiting.catch((e) => console.log(`abort -> ${e.code}`));

    const results = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => pool.submitTask({ type: 'word-count', payload: { text: `task ${i} of many` } })),
    );
    console.log(`${results.length} tasks, each ${JSON.stringify(results[0])}`);
  } finally {
    await pool.shutdown();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
