'use strict';
// A worker that exits right after writing its reply: the reply must settle the task.
// The core now lets the reader drain a dead worker's channel before it handles the
// exit; before that, a reply could lose the race to the exit and the finished task was
// failed as ERR_WORKER_CRASHED. The race is rare, so this guards the behaviour rather
// than reproducing the old bug every time.
const test = require('node:test');
const assert = require('node:assert/strict');
const { createWorkerPool } = require('..');
const { fixture, assertGone, waitFor } = require('./helpers');

test('a reply written just before the worker exits settles the task', { timeout: 90000 }, async () => {
  const SIZE = 3;
  const pool = await createWorkerPool({
    poolSize: SIZE,
    logLevel: 'silent',
    workerScript: fixture('reply-then-exit.js'),
    minUptimeMs: 0,
    restartCooldownMs: 0,
  });
  const pids = new Set(pool.getWorkerPids());
  pool.on('worker-exited', (e) => pids.add(e.pid));
  try {
    for (let round = 0; round < 8; round++) {
      // Every worker answers one task and exits right after writing the reply.
      const fresh = pool.getWorkerPids();
      for (const p of fresh) pids.add(p);
      const results = await Promise.all(
        Array.from({ length: SIZE }, (_, i) => pool.submitTask({ type: 'x', payload: round * 10 + i, maxRetries: 0 })),
      );
      results.forEach((r, i) => assert.deepEqual(r, { done: round * 10 + i }));
      // Wait for the replacements before the next round.
      await waitFor(() => {
        const now = pool.getAllWorkersStatus();
        return now.length === SIZE && now.every((w) => w.state === 'ready' && !fresh.includes(w.pid));
      }, 15000);
    }
    assert.equal(pool.getPoolMetrics().tasks.failed, 0);
  } finally {
    await pool.shutdown(true);
    for (const p of pool.getWorkerPids()) pids.add(p);
    await assertGone([...pids], 5000);
  }
});
