'use strict';
// The FIFO transport end to end: pipes created per worker with mode 0600, messages as
// length-prefixed frames, stale pipes cleared at start, everything removed at shutdown.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { createWorkerPool } = require('..');
const { fixture, assertGone, waitFor, tempDir } = require('./helpers');

test('tasks run over FIFOs; pipes are 0600, replaced per worker, removed at shutdown', { timeout: 60000 }, async () => {
  const dir = tempDir('wp-fifo-');
  // A stale pipe from an earlier run is removed at start.
  fs.writeFileSync(path.join(dir, 'worker-7-in.fifo'), 'stale');
  const pool = await createWorkerPool({ poolSize: 2, transport: 'fifo', fifoDir: dir, logLevel: 'silent', workerScript: fixture('echo-worker.js') });
  const pids = new Set(pool.getWorkerPids());
  try {
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.fifo')).sort();
    assert.deepEqual(files, ['worker-0-in.fifo', 'worker-0-out.fifo', 'worker-1-in.fifo', 'worker-1-out.fifo']);
    for (const f of files) {
      const st = fs.statSync(path.join(dir, f));
      assert.ok(st.isFIFO(), `${f} is a FIFO`);
      assert.equal(st.mode & 0o777, 0o600, `${f} has mode 0600`);
    }
    const results = await Promise.all(Array.from({ length: 2000 }, (_, i) => pool.submitTask({ type: 'echo', payload: { i } })));
    results.forEach((r, i) => assert.deepEqual(r, { i }));
    const big = 'é'.repeat(1_000_000);
    assert.equal(await pool.submitTask({ type: 'echo', payload: big }), big);

    // No IPC channel in this mode: the worker knows its transport from the environment.
    const env = await pool.submitTask({ type: 'env', payload: { keys: ['NODE_CHANNEL_FD', 'WORKER_ID'] } });
    assert.equal(env.NODE_CHANNEL_FD, undefined);

    // A crashed worker's pipes go away; its replacement gets new ones.
    const err = await pool.submitTask({ type: 'crash', maxRetries: 0 }).catch((e) => e);
    assert.equal(err.code, 'ERR_WORKER_CRASHED');
    await waitFor(() => pool.getAllWorkersStatus().filter((w) => w.state === 'ready').length === 2, 10000);
    for (const p of pool.getWorkerPids()) pids.add(p);
    const ids = pool.getAllWorkersStatus().map((w) => w.id);
    const now = fs.readdirSync(dir).filter((f) => f.endsWith('.fifo'));
    assert.equal(now.length, 4);
    for (const id of ids) assert.ok(now.includes(`${id}-in.fifo`) && now.includes(`${id}-out.fifo`), `pipes of ${id}`);
  } finally {
    await pool.shutdown(true);
  }
  assert.deepEqual(fs.readdirSync(dir), [], 'shutdown removes every pipe and the lock');
  await assertGone([...pids], 5000);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a second live pool on the same fifoDir is refused', { timeout: 30000 }, async () => {
  const dir = tempDir('wp-fifo-');
  const pool = await createWorkerPool({ poolSize: 1, transport: 'fifo', fifoDir: dir, logLevel: 'silent' });
  try {
    await assert.rejects(createWorkerPool({ poolSize: 1, transport: 'fifo', fifoDir: dir, logLevel: 'silent' }), (e) => {
      assert.equal(e.code, 'ERR_INVALID_CONFIG');
      assert.match(e.message, /fifoDir/);
      return true;
    });
  } finally {
    await pool.shutdown(true);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an unknown transport is refused with a message naming the option', () => {
  const { createPool } = require('..');
  assert.throws(() => createPool({ transport: 'carrier-pigeon' }), (e) => e.code === 'ERR_INVALID_CONFIG' && /transport/.test(e.message) && /fifo/.test(e.message));
});
