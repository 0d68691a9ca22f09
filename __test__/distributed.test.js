'use strict';
// The shared queue (the `queue` option and createQueueClient) against a private
// redis-server: results and error codes across pools, retries and the failed set,
// priority order, capability routing, abort of waiting and running jobs, bad input.
// Each pool in this file stands for one machine.
// Run: node --test __test__/distributed.test.js

const { describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createWorkerPool, createPool, createQueueClient } = require('..');
const { fixture, test, waitFor, within, settle, assertGone, sleep, servingMachine } = require('./helpers');
const { startRedis, freePort } = require('./redis-harness');
// BullMQ's close() can hang on a connection that Redis dropped; bounded as the product does.
const { closeBull } = require('../lib/distributed/redis');

const WORKER = fixture('queue-worker.js');
let redis;
let seq = 0;
const seen = new Set();
const opened = [];

/** A queue name of its own for each test, so tests do not see each other's jobs. */
const qname = () => `t${process.pid}-${++seq}`;

/** A serving pool ("a machine") on the test's queue; shut down when the test ends. */
function machine(t, name, extra = {}, queueExtra = {}) {
  return servingMachine(t, { url: redis.url, name, seen, extra: { retryBackoffMs: 50, ...extra }, queue: queueExtra });
}

function client(t, name) {
  const c = createQueueClient({ url: redis.url, name });
  opened.push(c);
  t.after(() => c.close());
  return c;
}

before(async () => {
  redis = await startRedis();
});

after(async () => {
  for (const c of opened) await c.close();
  await redis.destroy();
});

describe('results and errors across machines', () => {
  test('a pool with queue set runs tasks through the shared queue and resolves each with its own result', async (t) => {
    const name = qname();
    const pool = await machine(t, name);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => pool.submitTask({ type: 'echo', payload: { i } })));
    results.forEach((r, i) => assert.deepEqual(r, { i }));
    await waitFor(() => pool.getPoolMetrics().queue.shared.completed >= 200, 10000, 'the shared counts to show 200 completed');
    const shared = pool.getPoolMetrics().queue.shared;
    assert.equal(shared.servingPools, 1);
    assert.match(pool.getPrometheusMetrics(), new RegExp(`worker_pool_shared_jobs\\{queue="${name}",state="completed"\\} \\d+`));
    assert.equal(pool.config.queue.name, name);
  });

  test('a client with no workers gets results from a pool on another "machine"', async (t) => {
    const name = qname();
    const pool = await machine(t, name);
    const c = client(t, name);
    const r = await c.submitTask({ type: 'whoami', payload: { i: 7 } });
    assert.equal(r.i, 7);
    assert.equal(r.machine, process.pid);
    assert.ok(pool.getWorkerPids().includes(r.pid));
    const m = await c.getQueueMetrics();
    assert.equal(m.servingPools, 1);
    for (const k of ['waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized']) assert.equal(typeof m[k], 'number', k);
  });

  test('handler failure, unknown type and timeout reject with the codes a local run gives', async (t) => {
    const name = qname();
    await machine(t, name);
    const c = client(t, name);
    const failed = await settle(c.submitTask({ type: 'fail', payload: { message: 'disk on fire' }, maxRetries: 0 }));
    assert.equal(failed.ok, false);
    assert.equal(failed.error.code, 'ERR_TASK_FAILED');
    assert.equal(failed.error.message, 'disk on fire');
    const nohandler = await settle(c.submitTask({ type: 'no-such-type', maxRetries: 5 }));
    assert.equal(nohandler.error.code, 'ERR_NO_HANDLER');
    const timeout = await settle(c.submitTask({ type: 'sleep', payload: { ms: 10000 }, timeout: 300, maxRetries: 0 }));
    assert.equal(timeout.error.code, 'ERR_TASK_TIMEOUT');
    // ERR_NO_HANDLER is not retried: one attempt although maxRetries was 5.
    const dlq = await c.getDeadLetterQueue();
    const rec = dlq.find((d) => d.task.type === 'no-such-type');
    assert.ok(rec, 'the unknown type is in the failed set');
    assert.equal(rec.metadata.attempts.length, 1);
    assert.equal(rec.finalError.code, 'ERR_NO_HANDLER');
  });

  test('maxRetries: 2 gives exactly 3 attempts, the failed set keeps every error, and requeue runs it again', async (t) => {
    const name = qname();
    const pool = await machine(t, name);
    const err = (await settle(pool.submitTask({ type: 'fail', payload: { message: 'flaky' }, maxRetries: 2, metadata: { owner: 'test' } }))).error;
    assert.equal(err.code, 'ERR_TASK_FAILED');
    assert.equal(err.message, 'flaky');
    const dlq = await pool.taskQueue.getDeadLetterQueue();
    assert.equal(dlq.length, 1);
    const [rec] = dlq;
    assert.equal(rec.metadata.attempts.length, 3);
    assert.ok(rec.metadata.attempts.every((a) => a.code === 'ERR_TASK_FAILED' && a.error === 'flaky'));
    assert.equal(rec.metadata.owner, 'test');
    assert.equal(rec.retries, 2);
    assert.equal(rec.maxRetries, 2);
    assert.deepEqual(rec.task.payload, { message: 'flaky' });
    // Requeue: it runs again (and fails again, three more attempts).
    const promises = await pool.taskQueue.requeueDeadLetter(rec.id);
    assert.equal(promises.length, 1);
    const again = await settle(promises[0]);
    assert.equal(again.error.code, 'ERR_TASK_FAILED');
    const after = await pool.taskQueue.getDeadLetterQueue();
    assert.equal(after.length, 1);
    assert.equal(after[0].metadata.attempts.length, 6);
    assert.equal(await pool.taskQueue.clearDeadLetterQueue(), 1);
    assert.equal((await pool.taskQueue.getDeadLetterQueue()).length, 0);
  });

  test('a requeued task that now succeeds resolves its new promise', async (t) => {
    const name = qname();
    await machine(t, name);
    const c = client(t, name);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wpq-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const until = path.join(dir, 'fixed');
    const err = (await settle(c.submitTask({ type: 'fail-until', payload: { until }, maxRetries: 0 }))).error;
    assert.equal(err.message, 'not yet');
    const [rec] = await c.getDeadLetterQueue();
    fs.writeFileSync(until, '');
    const promises = await c.requeueDeadLetter(rec.id);
    assert.equal(promises.length, 1);
    assert.equal(await within(promises[0], 10000, 'the requeued task'), 'now it works');
    assert.equal((await c.getDeadLetterQueue()).length, 0);
    assert.equal((await c.requeueDeadLetter()).length, 0);
  });
});

describe('order, routing and cancellation', () => {
  test('priority order holds across machines: a burst queued behind busy workers runs lowest number first', async (t) => {
    const name = qname();
    const pool = await machine(t, name, { poolSize: 1 });
    const c = client(t, name);
    // Occupy the only worker, then queue a burst in mixed priorities from another producer.
    const blocker = pool.submitTask({ type: 'sleep', payload: { ms: 600 } });
    await waitFor(async () => (await c.getQueueMetrics()).active === 1, 10000, 'the blocker to be active');
    const prios = [50, 3, 99, 0, 10, 3, 70, 1];
    const runs = await Promise.all(prios.map((priority, i) => c.submitTask({ type: 'whoami', payload: { i }, priority })));
    await blocker;
    const order = runs.slice().sort((a, b) => a.seq - b.seq).map((r) => prios[r.i]);
    assert.deepEqual(order, [0, 1, 3, 3, 10, 50, 70, 99]);
    // FIFO among equals: the first 3 (index 1) ran before the second (index 5).
    assert.ok(runs[1].seq < runs[5].seq);
  });

  test('requires routes a task to a machine with the capabilities; an impossible set is refused', async (t) => {
    const name = qname();
    const plain = await machine(t, name);
    const gpu = await machine(t, name, { workerGroups: [{ size: 1, capabilities: ['gpu', 'cuda'] }] });
    const c = client(t, name);
    await waitFor(async () => (await c.getQueueMetrics()).servingPools === 2, 10000, 'two serving pools');
    const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => c.submitTask({ type: 'whoami', payload: { i }, requires: ['gpu'] })));
    for (const r of rs) assert.ok(gpu.getWorkerPids().includes(r.pid), 'ran on the gpu machine');
    const anyRuns = await Promise.all(Array.from({ length: 20 }, (_, i) => plain.submitTask({ type: 'whoami', payload: { i } })));
    assert.equal(anyRuns.length, 20);
    const refused = await settle(c.submitTask({ type: 'whoami', requires: ['tpu'] }));
    assert.equal(refused.error.code, 'ERR_NO_CAPABLE_WORKER');
    assert.match(refused.error.message, /tpu/);
  });

  test('abort removes a waiting job and cancels a running one on its machine (its AbortSignal fires)', async (t) => {
    const name = qname();
    const pool = await machine(t, name, { poolSize: 1 });
    const c = client(t, name);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wpq-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const marker = path.join(dir, 'aborted');
    const running = new AbortController();
    const p1 = c.submitTask({ type: 'sleep', payload: { ms: 20000, marker } }, { signal: running.signal });
    await waitFor(async () => (await c.getQueueMetrics()).active === 1, 10000, 'the long task to run');
    const waiting = new AbortController();
    const p2 = c.submitTask({ type: 'echo', payload: 2 }, { signal: waiting.signal });
    await waitFor(async () => {
      const m = await c.getQueueMetrics();
      return m.prioritized + m.waiting === 1;
    }, 10000, 'the second task to wait');
    waiting.abort(new Error('no longer needed'));
    const r2 = await within(settle(p2), 5000, 'waiting abort');
    assert.equal(r2.error.code, 'ABORT_ERR');
    assert.equal(r2.error.name, 'AbortError');
    running.abort('stop');
    const r1 = await within(settle(p1), 10000, 'running abort');
    assert.equal(r1.error.code, 'ABORT_ERR');
    await waitFor(() => fs.existsSync(marker), 5000, "the handler's AbortSignal to fire");
    // The worker is free again.
    assert.deepEqual(await within(pool.submitTask({ type: 'echo', payload: 3 }), 10000, 'next task'), 3);
  });
});

describe('bad input', () => {
  test('an unreachable url fails createWorkerPool and the first client call with ERR_QUEUE_UNAVAILABLE, without the password', async (t) => {
    const port = await freePort();
    const url = `redis://:s3cret@127.0.0.1:${port}`;
    const t0 = Date.now();
    const e = await settle(createWorkerPool({ poolSize: 1, workerScript: WORKER, logLevel: 'silent', queue: { url, connectTimeoutMs: 1500 } }));
    assert.equal(e.ok, false);
    assert.equal(e.error.code, 'ERR_QUEUE_UNAVAILABLE');
    assert.ok(!e.error.message.includes('s3cret'), e.error.message);
    assert.match(e.error.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.ok(Date.now() - t0 < 10000);
    const c = createQueueClient({ url, connectTimeoutMs: 1500 });
    t.after(() => c.close());
    const r = await settle(c.submitTask({ type: 'echo' }));
    assert.equal(r.error.code, 'ERR_QUEUE_UNAVAILABLE');
    assert.ok(!r.error.message.includes('s3cret'));
  });

  test('a malformed url or queue option is ERR_INVALID_CONFIG naming the field', () => {
    for (const [queue, field] of [
      [{ url: 'http://x' }, 'queue.url'],
      [{ url: 'not a url' }, 'queue.url'],
      [{ url: 'redis://:pw@h:6379/x' }, 'queue.url'],
      [{}, 'queue.url'],
      [{ url: 'redis://h', name: 'a:b' }, 'queue.name'],
      [{ url: 'redis://h', lockDurationMs: 0 }, 'queue.lockDurationMs'],
      [{ url: 'redis://h', serve: 'yes' }, 'queue.serve'],
      [{ url: 'redis://h', bogus: 1 }, 'queue.bogus'],
    ]) {
      assert.throws(() => createPool({ workerScript: WORKER, queue }), (e) => e.code === 'ERR_INVALID_CONFIG' && e.message.includes(field) && !e.message.includes(':pw@'), JSON.stringify(queue));
    }
    assert.throws(() => createQueueClient({ url: 'ftp://x' }), (e) => e.code === 'ERR_INVALID_CONFIG' && e.message.includes('options.url'));
  });

  test('tasks are validated like local ones; a fractional or negative priority is refused on a shared queue', async (t) => {
    const name = qname();
    const c = client(t, name);
    assert.equal((await settle(c.submitTask({ payload: 1 }))).error.code, 'ERR_INVALID_TASK');
    assert.equal((await settle(c.submitTask({ type: 'echo', timeout: -1 }))).error.code, 'ERR_INVALID_TASK');
    const frac = (await settle(c.submitTask({ type: 'echo', priority: 1.5 }))).error;
    assert.equal(frac.code, 'ERR_INVALID_TASK');
    assert.match(frac.message, /priority/);
    const ac = new AbortController();
    ac.abort();
    assert.equal((await settle(c.submitTask({ type: 'echo' }, { signal: ac.signal }))).error.code, 'ABORT_ERR');
  });

  test('a plain BullMQ job runs as its name with its data; one no worker has a handler for fails with ERR_NO_HANDLER, not retried', async (t) => {
    const name = qname();
    const pool = await machine(t, name);
    const { Queue, QueueEvents } = require('bullmq');
    const connection = { host: '127.0.0.1', port: redis.port };
    const q = new Queue(name, { connection });
    const ev = new QueueEvents(name, { connection, lastEventId: '0-0' });
    t.after(async () => {
      await closeBull(ev, 5000);
      await closeBull(q, 5000);
    });
    await ev.waitUntilReady();
    const plain = await q.add('echo', { hello: 'world' });
    assert.deepEqual(await within(plain.waitUntilFinished(ev, 30000), 35000, 'the plain job'), { hello: 'world' });
    const job = await q.add('foreign', { hello: 'world' }, { attempts: 3 });
    const reason = await within(new Promise((resolve) => ev.on('failed', ({ jobId, failedReason }) => jobId === job.id && resolve(failedReason))), 30000, 'the foreign job to fail');
    assert.match(reason, /^ERR_NO_HANDLER: No handler registered for task type: foreign/);
    assert.equal((await q.getJob(job.id)).attemptsMade, 1);
    assert.deepEqual(await pool.submitTask({ type: 'echo', payload: 'still here' }), 'still here');
  });
});

describe('producers and shutdown', () => {
  test('serve: false with poolSize 0 is a producer that runs no workers', async (t) => {
    const name = qname();
    await machine(t, name);
    const producer = await createWorkerPool({ poolSize: 0, logLevel: 'silent', queue: { url: redis.url, name, serve: false } });
    t.after(() => producer.shutdown());
    assert.deepEqual(producer.getWorkerPids(), []);
    assert.equal(producer.config.poolSize, 0);
    const r = await producer.submitTask({ type: 'whoami', payload: { i: 1 } });
    assert.equal(r.machine, process.pid);
    assert.equal((await settle(producer.scaleUp(1))).error.code, 'ERR_NOT_SUPPORTED');
  });

  test('a client read in flight when close() is called, or made after it, rejects ERR_POOL_SHUTDOWN', async (t) => {
    const c = client(t, qname());
    await c.getQueueMetrics();
    const reads = Array.from({ length: 20 }, () => settle(c.getQueueMetrics()));
    await c.close();
    // Each read takes several round trips and close() quits within a few microtasks, so
    // reads are cut; one answered before the connection closed would be fine too.
    const cut = (await Promise.all(reads)).filter((r) => !r.ok);
    assert.ok(cut.length > 0, 'close() cut no read short');
    for (const r of cut) assert.equal(r.error.code, 'ERR_POOL_SHUTDOWN', r.error.message);
    for (const call of [() => c.getQueueMetrics(), () => c.getDeadLetterQueue(), () => c.requeueDeadLetter(), () => c.clearDeadLetterQueue()]) {
      const r = await settle(call());
      assert.equal(r.error?.code, 'ERR_POOL_SHUTDOWN');
      assert.match(r.error.message, /closed/);
    }
  });

  test('a serving pool follows scaleUp/scaleDown with its concurrency', async (t) => {
    const name = qname();
    const pool = await machine(t, name, { poolSize: 1, minWorkers: 1, maxWorkers: 4 });
    const c = client(t, name);
    const many = (n) => Promise.all(Array.from({ length: n }, () => c.submitTask({ type: 'sleep', payload: { ms: 400 } })));
    // Samples the active count one read at a time until stopped; stop() waits for the
    // read in flight, so none outlives the test (and the client it reads through).
    let maxActive = 0;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        maxActive = Math.max(maxActive, (await c.getQueueMetrics()).active);
        await sleep(50);
      }
    })();
    watcher.catch(() => {}); // awaited below; a test that failed before that closes the client under it
    const stop = () => {
      watching = false;
      return watcher;
    };
    t.after(() => stop().catch(() => {}));
    const first = many(4);
    await sleep(300);
    assert.ok(maxActive <= 1, `one worker holds at most one job (saw ${maxActive})`);
    await first;
    await pool.scaleUp(3);
    maxActive = 0;
    await many(8);
    await stop();
    assert.ok(maxActive >= 2 && maxActive <= 4, `four workers hold 2..4 jobs at once (saw ${maxActive})`);
  });

  test('graceful shutdown finishes what runs; immediate shutdown gives held jobs back without using an attempt', async (t) => {
    const name = qname();
    const a = await machine(t, name, { poolSize: 1 });
    const c = client(t, name);
    const p = c.submitTask({ type: 'sleep', payload: { ms: 800 }, maxRetries: 0 });
    await waitFor(async () => (await c.getQueueMetrics()).active === 1, 10000, 'the task to run on A');
    await a.shutdown(false);
    // No pool serves now: the job waits, with no attempt used.
    await waitFor(async () => {
      const m = await c.getQueueMetrics();
      return m.active === 0 && m.prioritized + m.waiting === 1;
    }, 10000, 'the job to be back in the queue');
    const b = await machine(t, name, { poolSize: 1 });
    const r = await within(p, 15000, 'the given-back task on B');
    assert.equal(r.slept, 800);
    assert.ok(b);
    // Graceful: the running task finishes before the pool stops.
    const q = c.submitTask({ type: 'sleep', payload: { ms: 500 } });
    await waitFor(async () => (await c.getQueueMetrics()).active === 1, 10000, 'the task to run on B');
    await b.shutdown(true);
    assert.equal((await q).slept, 500);
  });
});

describe('shutdown never hangs', () => {
  test('a second, immediate shutdown ends a graceful one at once and gives the running job back', async (t) => {
    const name = qname();
    const pool = await machine(t, name, { poolSize: 1, shutdownTimeoutMs: 60000 });
    const c = client(t, name);
    const job = c.submitTask({ type: 'sleep', payload: { ms: 30000 }, maxRetries: 0 });
    job.catch(() => {});
    await waitFor(async () => (await c.getQueueMetrics()).active === 1, 10000, 'the long task to run');
    const graceful = pool.shutdown(true);
    await sleep(200);
    const immediate = pool.shutdown(false);
    await within(Promise.all([graceful, immediate]), 15000, 'both shutdowns');
    await waitFor(async () => {
      const m = await c.getQueueMetrics();
      return m.active === 0 && m.waiting + m.prioritized === 1 && m.failed === 0;
    }, 10000, 'the job to be back in the queue, no attempt used');
  });

  test('shutdown settles while Redis is down: connections are cut, not waited for', async (t) => {
    const own = await startRedis();
    t.after(() => own.destroy());
    const pool = await createWorkerPool({ poolSize: 1, workerScript: WORKER, logLevel: 'silent', queue: { url: own.url, name: 'down' } });
    for (const pid of pool.getWorkerPids()) seen.add(pid);
    const c = createQueueClient({ url: own.url, name: 'down' });
    assert.equal(await c.submitTask({ type: 'echo', payload: 1 }), 1);
    await own.stop();
    const pending = settle(pool.submitTask({ type: 'echo', payload: 2 }));
    await within(pool.shutdown(true), 20000, 'pool.shutdown() with Redis down');
    await within(c.close(), 10000, 'client.close() with Redis down');
    assert.equal((await within(pending, 5000, 'the pending task')).error.code, 'ERR_POOL_SHUTDOWN');
    await assertGone(pool.getWorkerPids().length ? pool.getWorkerPids() : [...seen], 10000);
  });
});

test('a local pool never loads bullmq or ioredis', () => {
  const { spawnSync } = require('node:child_process');
  const script = `
    const { createPool } = require(${JSON.stringify(path.join(__dirname, '..'))});
    createPool({ poolSize: 1 }).shutdown().then(() => {
      const loaded = Object.keys(require.cache).filter((k) => /node_modules[\\/](bullmq|ioredis)[\\/]/.test(k));
      console.log(JSON.stringify(loaded));
    });`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()), []);
});

test('no worker process started by this file is left', async () => {
  await assertGone([...seen], 15000);
});
