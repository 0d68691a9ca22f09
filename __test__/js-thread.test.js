'use strict';

// Replies read on the JS thread (libuv poll handles on the workers' channels), the
// core's backstop while that thread is busy, the reply spin, and the poll handles'
// life in a worker thread.
// Run: node --test __test__/js-thread.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const { Worker } = require('node:worker_threads');
const { openPool, waitFor, assertGone, within } = require('./helpers');

const T = { timeout: 60000 };

function blockFor(ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    /* the JS thread does nothing else */
  }
}

test('while the JS thread is blocked, the core keeps reading replies and dispatching the queue', T, async (t) => {
  const { pool, close } = await openPool(t, { poolSize: 2 });
  try {
    // Warm up so both channels are polled by this thread.
    await Promise.all([1, 2, 3, 4].map((i) => pool.submitTask({ type: 'echo', payload: i })));
    const n = 30;
    const all = Promise.all(Array.from({ length: n }, (_, i) => pool.submitTask({ type: 'sleep', payload: { ms: 20 } }).then(() => i)));
    await new Promise((r) => setImmediate(r)); // the batch reaches the core
    blockFor(1500); // 30 × 20 ms on 2 workers is ~300 ms of work
    // Nothing has been delivered to JavaScript yet, but the core finished them all.
    const q = pool.getPoolMetrics().queue;
    assert.equal(q.byStatus.completed, 4 + n, `completed while blocked: ${JSON.stringify(q.byStatus)}`);
    assert.equal(q.queueDepth, 0);
    assert.equal((await within(all, 5000, 'results after the block')).length, n);
  } finally {
    await close();
  }
});

test('one-at-a-time tasks settle with the reply spin on (default) and off (spinWaitUs: 0)', T, async (t) => {
  for (const spinWaitUs of [undefined, 0, 1000]) {
    const { pool, close } = await openPool(t, { poolSize: 2, loadBalancing: 'least-loaded', spinWaitUs });
    try {
      assert.equal(pool.config.spinWaitUs, spinWaitUs ?? 100);
      for (let i = 0; i < 300; i++) {
        assert.equal(await pool.submitTask({ type: 'echo', payload: i }), i);
      }
      // Timers and immediates still run while replies are awaited.
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      for (let i = 0; i < 200; i++) await pool.submitTask({ type: 'sleep', payload: { ms: 1 } });
      clearInterval(timer);
      assert.ok(ticks > 20, `a 1 ms interval ran ${ticks} times over 200 × 1 ms tasks`);
    } finally {
      await close();
    }
  }
});

test('least-loaded: lone tasks stay on the most recently used worker', T, async (t) => {
  const { pool, close } = await openPool(t, { poolSize: 3, loadBalancing: 'least-loaded' });
  try {
    const ids = [];
    for (let i = 0; i < 12; i++) ids.push((await pool.submitTask({ type: 'pid' })).workerId);
    assert.equal(new Set(ids).size, 1, `all on one worker: ${ids.join(',')}`);
  } finally {
    await close();
  }
});

/** Runs `body` (a function source) in a worker thread; resolves its messages and exit code. */
function inThread(body, onMessage) {
  const src = `
    const { parentPort } = require('node:worker_threads');
    const { createWorkerPool } = require(${JSON.stringify(require.resolve('..'))});
    const fixture = ${JSON.stringify(require.resolve('./fixtures/echo-worker.js'))};
    (${body})().catch((e) => { parentPort.postMessage({ error: e.stack }); process.exit(1); });
  `;
  const w = new Worker(src, { eval: true });
  w.on('message', (m) => onMessage(m, w));
  return new Promise((resolve, reject) => {
    w.on('error', reject);
    w.on('exit', resolve);
  });
}

test('a pool inside a worker thread works, and the thread exits cleanly after shutdown', T, async () => {
  const got = [];
  const code = await inThread(
    async function body() {
      const pool = await createWorkerPool({ poolSize: 2, workerScript: fixture, logLevel: 'silent' });
      const pids = pool.getWorkerPids();
      const out = [];
      for (let i = 0; i < 50; i++) out.push(await pool.submitTask({ type: 'echo', payload: i }));
      parentPort.postMessage({ pids, sum: out.reduce((a, b) => a + b, 0) });
      await pool.shutdown();
    },
    (m) => got.push(m),
  );
  assert.equal(code, 0, JSON.stringify(got));
  assert.equal(got.length, 1, JSON.stringify(got));
  assert.equal(got[0].sum, (49 * 50) / 2);
  await assertGone(got[0].pids, 5000);
});

test('terminating a worker thread that owns a busy pool: its workers die, this process carries on', T, async (t) => {
  let pids = null;
  const code = await inThread(
    async function body() {
      const pool = await createWorkerPool({ poolSize: 2, workerScript: fixture, logLevel: 'silent' });
      for (let i = 0; i < 20; i++) await pool.submitTask({ type: 'echo', payload: i });
      for (let i = 0; i < 4; i++) pool.submitTask({ type: 'sleep', payload: { ms: 60000 } }).catch(() => {});
      parentPort.postMessage({ pids: pool.getWorkerPids() });
      setInterval(() => pool.submitTask({ type: 'echo', payload: 1 }).catch(() => {}), 1);
    },
    (m, w) => {
      if (m.error) throw new Error(m.error);
      pids = m.pids;
      setTimeout(() => w.terminate(), 200);
    },
  );
  assert.equal(code, 1, 'terminate() ends the thread with code 1');
  assert.equal(pids.length, 2);
  await assertGone(pids, 10000);
  // This thread's own pools are unaffected.
  const { pool, close } = await openPool(t, { poolSize: 1 });
  try {
    assert.equal(await pool.submitTask({ type: 'echo', payload: 'still fine' }), 'still fine');
  } finally {
    await close();
  }
});

test('a process that exits while its pool is polled by the JS thread exits at once, leaving no worker', T, async () => {
  const { spawn } = require('node:child_process');
  const script = `
    const { createWorkerPool } = require(${JSON.stringify(require.resolve('..'))});
    (async () => {
      const pool = await createWorkerPool({ poolSize: 2, workerScript: ${JSON.stringify(require.resolve('./fixtures/echo-worker.js'))}, logLevel: 'silent' });
      for (let i = 0; i < 20; i++) await pool.submitTask({ type: 'echo', payload: i });
      console.log(JSON.stringify(pool.getWorkerPids()));
      pool.submitTask({ type: 'sleep', payload: { ms: 60000 } }).catch(() => {});
      setTimeout(() => process.exit(0), 100);
    })();
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await within(new Promise((r) => child.on('exit', r)), 20000, 'child exit');
  assert.equal(code, 0);
  const pids = JSON.parse(out.trim());
  assert.equal(pids.length, 2);
  await waitFor(() => true, 10);
  await assertGone(pids, 10000);
});

test('calling into the pool from a settled task and from an event listener (re-entrant from a JS-thread read)', T, async (t) => {
  const { pool, close } = await openPool(t, { poolSize: 2, loadBalancing: 'least-loaded' });
  try {
    // A chain: each result submits the next task from inside the delivery.
    const chain = await new Promise((resolve, reject) => {
      const got = [];
      const next = (i) =>
        pool.submitTask({ type: 'echo', payload: i }).then((r) => {
          got.push(r);
          if (i < 200) next(i + 1);
          else resolve(got);
        }, reject);
      next(0);
    });
    assert.equal(chain.length, 201);
    assert.deepEqual(chain.slice(0, 3), [0, 1, 2]);
    // Status queries and a submit from inside an event listener.
    const fromListener = [];
    pool.on('task-completed', (e) => {
      if (fromListener.length < 5) {
        assert.ok(pool.getWorkerStatus(e.workerId));
        fromListener.push(pool.submitTask({ type: 'echo', payload: `inner-${fromListener.length}` }));
      }
    });
    await pool.submitTask({ type: 'echo', payload: 'outer' });
    await waitFor(() => fromListener.length === 5, 5000, { message: 'listener submits' });
    assert.deepEqual(await Promise.all(fromListener), ['inner-0', 'inner-1', 'inner-2', 'inner-3', 'inner-4']);
  } finally {
    await close();
  }
});

test('shutdown called from inside a result delivery settles every task and stops every worker', T, async (t) => {
  const { pool, pids } = await openPool(t, { poolSize: 2 });
  const others = Array.from({ length: 20 }, (_, i) => pool.submitTask({ type: 'sleep', payload: { ms: 5 + i } }).then(
    () => 'done',
    (e) => e.code,
  ));
  const stopped = pool.submitTask({ type: 'echo', payload: 'first' }).then(() => pool.shutdown(false));
  await within(stopped, 10000, 'shutdown from a delivery');
  const outcomes = await within(Promise.all(others), 10000, 'the other tasks settle');
  for (const o of outcomes) assert.ok(o === 'done' || o === 'ERR_POOL_SHUTDOWN', String(o));
  await assertGone([...pids], 10000);
});

test('a listener that throws during a delivery: the error reaches uncaughtException and no settlement is lost', T, async () => {
  const { spawn } = require('node:child_process');
  const script = `
    const { createWorkerPool } = require(${JSON.stringify(require.resolve('..'))});
    const caught = [];
    process.on('uncaughtException', (e) => caught.push(e.message));
    (async () => {
      const pool = await createWorkerPool({ poolSize: 2, workerScript: ${JSON.stringify(require.resolve('./fixtures/echo-worker.js'))}, logLevel: 'silent' });
      let n = 0;
      pool.on('task-completed', () => { if (n++ % 3 === 0) throw new Error('listener ' + n); });
      const one = [];
      for (let i = 0; i < 10; i++) one.push(await pool.submitTask({ type: 'echo', payload: i }));
      const many = await Promise.all(Array.from({ length: 30 }, (_, i) => pool.submitTask({ type: 'echo', payload: i })));
      await new Promise((r) => setTimeout(r, 50));
      console.log(JSON.stringify({ one, many: many.length, caught: caught.length, first: caught[0], pids: pool.getWorkerPids() }));
      await pool.shutdown();
    })();
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await within(new Promise((r) => child.on('exit', r)), 20000, 'child exit');
  assert.equal(code, 0, out);
  const r = JSON.parse(out.trim());
  assert.deepEqual(r.one, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(r.many, 30);
  assert.ok(r.caught >= 10, `listener errors reported: ${r.caught}`);
  assert.equal(r.first, 'listener 1');
  await assertGone(r.pids, 10000);
});

test('a burst of large payloads goes to the core in pieces; refusals (queue full) still reject the right tasks', T, async (t) => {
  const { pool, close } = await openPool(t, { poolSize: 1, maxQueueSize: 3 });
  try {
    const big = 'y'.repeat(100 * 1024); // every task alone is over the 64 KiB batch size
    const outcomes = await within(
      Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          pool.submitTask({ type: 'echo', payload: { i, big } }).then(
            (r) => (r.i === i && r.big.length === big.length ? 'ok' : 'wrong'),
            (e) => e.code,
          ),
        ),
      ),
      20000,
      'large burst',
    );
    // Sent as one batch, three would fit the queue and five be refused. In pieces, the
    // first starts at once and three more fit behind it; the rest may be refused,
    // nothing hangs.
    assert.ok(outcomes.filter((o) => o === 'ok').length >= 4, JSON.stringify(outcomes));
    assert.ok(outcomes.every((o) => o === 'ok' || o === 'ERR_QUEUE_FULL'), JSON.stringify(outcomes));
  } finally {
    await close();
  }
});
