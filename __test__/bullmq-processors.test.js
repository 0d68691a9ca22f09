'use strict';
// Any BullMQ queue, served by the pool with a BullMQ processor file: plain jobs (not in
// this package's format) added by BullMQ's own Queue and FlowProducer, watched by
// BullMQ's own QueueEvents, served by real workers against a private redis-server.

const { before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { FlowProducer, Queue, QueueEvents, Worker } = require('bullmq');
const { createWorkerPool } = require('..');
const { fixture, test, waitFor, within, assertGone, tempDir } = require('./helpers');
const { startRedis } = require('./redis-harness');
const { closeBull } = require('../lib/distributed/redis');

const PROCESSOR = fixture('bullmq/processor.js');

let redis;
let seq = 0;
const seen = new Set();
const qname = () => `proc${process.pid}-${++seq}`;
const connection = () => ({ url: redis.url, maxRetriesPerRequest: null });

before(async () => {
  redis = await startRedis();
});

after(async () => {
  await redis.destroy();
});

/** A BullMQ class instance closed (bounded) when the test ends. */
function bull(t, obj) {
  obj.on('error', () => {});
  t.after(() => closeBull(obj, 5000));
  return obj;
}

/** A pool serving queue `name` with a processor file; shut down when the test ends. */
async function serve(t, name, { queue = {}, ...extra } = {}) {
  const pool = await createWorkerPool({
    poolSize: 2,
    processor: PROCESSOR,
    logLevel: 'silent',
    ...extra,
    queue: { url: redis.url, name, ...queue },
  });
  for (const pid of pool.getWorkerPids()) seen.add(pid);
  pool.on('worker-exited', (e) => seen.add(e.pid));
  pool.on('worker-spawned', (e) => e && e.pid && seen.add(e.pid));
  t.after(() => within(pool.shutdown(false), 30000, 'pool shutdown'));
  return pool;
}

/** A Queue and a ready QueueEvents for `name`. */
async function producer(t, name) {
  const q = bull(t, new Queue(name, { connection: connection() }));
  // From the stream's start (the queue is new): a QueueEvents that is ready may not
  // have sent its first read yet, and would miss what comes before it.
  const events = bull(t, new QueueEvents(name, { connection: connection(), lastEventId: '0-0' }));
  await events.waitUntilReady();
  return { q, events };
}

test('a processor file serves a plain BullMQ job: its value, progress and logs reach BullMQ', async (t) => {
  const name = qname();
  await serve(t, name);
  const { q, events } = await producer(t, name);
  const seenEvents = [];
  for (const e of ['active', 'progress', 'completed']) events.on(e, (x) => x.jobId && seenEvents.push(`${e}:${x.jobId}`));
  const job = await q.add('resize', { w: 100 });
  const value = await within(job.waitUntilFinished(events, 20000), 25000, 'resize');
  assert.equal(value.w, 200);
  assert.equal(value.id, job.id);
  assert.equal(value.attemptsMade, 0);
  assert.equal(value.lines, 2, 'job.log resolves with the lines the log holds');
  assert.equal(await job.getState(), 'completed');
  const { logs } = await q.getJobLogs(job.id);
  assert.deepEqual(logs, ['resizing to 100', 'done']);
  const stored = await q.getJob(job.id);
  assert.equal(stored.progress, 50);
  assert.deepEqual(stored.returnvalue, value);
  await waitFor(() => seenEvents.includes(`completed:${job.id}`), 5000, 'the completed event');
  const mine = seenEvents.filter((e) => e.endsWith(`:${job.id}`));
  assert.deepEqual(mine, [`active:${job.id}`, `progress:${job.id}`, `completed:${job.id}`]);
});

test('the job object has what a sandboxed processor gets; updateData reaches Redis', async (t) => {
  const name = qname();
  await serve(t, name);
  const { q, events } = await producer(t, name);
  const job = await q.add('fields', { a: [1, 'x'] }, { attempts: 2, removeOnFail: 5 });
  const f = await within(job.waitUntilFinished(events, 20000), 25000, 'fields');
  assert.equal(f.id, job.id);
  assert.equal(f.name, 'fields');
  assert.deepEqual(f.data, { a: [1, 'x'] });
  assert.equal(f.opts.attempts, 2);
  assert.equal(f.opts.removeOnFail, 5);
  assert.equal(f.attemptsMade, 0);
  assert.equal(f.queueName, name);
  assert.equal(f.timestamp, job.timestamp);
  assert.ok(f.processedOn >= job.timestamp, `processedOn ${f.processedOn}`);
  assert.equal(f.signal, true, 'the third argument is job.signal');
  const u = await q.add('update', { a: 1 });
  assert.deepEqual(await within(u.waitUntilFinished(events, 20000), 25000, 'update'), { a: 1, seen: true });
  assert.deepEqual((await q.getJob(u.id)).data, { a: 1, seen: true });
});

test('an ES module processor file (.mjs, export default) works', async (t) => {
  const name = qname();
  await serve(t, name, { processor: fixture('bullmq/processor.mjs') });
  const { q, events } = await producer(t, name);
  const job = await q.add('esm-job', { k: 'v' });
  assert.deepEqual(await within(job.waitUntilFinished(events, 20000), 25000, 'esm'), {
    esm: true,
    name: 'esm-job',
    data: { k: 'v' },
    host: true,
  });
});

test('a .js ES module in a "type": "module" package, and a .cjs exporting { default }, work too', async (t) => {
  for (const [file, kind] of [['bullmq/esm-package/processor.js', 'esm .js'], ['bullmq/processor.cjs', 'cjs default']]) {
    const name = qname();
    await serve(t, name, { poolSize: 1, processor: fixture(file) });
    const { q, events } = await producer(t, name);
    const job = await q.add('n', {});
    assert.deepEqual(await within(job.waitUntilFinished(events, 20000), 25000, file), { kind, name: 'n' });
  }
});

test("attempts and exponential backoff are the job's own: 3 runs spaced as BullMQ spaces them, then failed", async (t) => {
  const name = qname();
  await serve(t, name);
  const { q, events } = await producer(t, name);
  const runs = [];
  events.on('active', (x) => runs.push(Date.now()) && x);
  const job = await q.add('fail', {}, { attempts: 3, backoff: { type: 'exponential', delay: 100 } });
  await assert.rejects(within(job.waitUntilFinished(events, 20000), 25000, 'fail'), /boom on attempt 3/);
  const stored = await q.getJob(job.id);
  assert.equal(await stored.getState(), 'failed');
  assert.equal(stored.attemptsMade, 3);
  assert.equal(stored.failedReason, 'boom on attempt 3');
  assert.equal(stored.stacktrace.length, 3);
  for (const s of stored.stacktrace) assert.match(s, /^Error: boom on attempt \d\n\s+at /);
  // Exactly three runs (three `active` events), the second ≥ 100 ms after the first,
  // the third ≥ 200 ms after the second (BullMQ: delay · 2^(attemptsMade−1)).
  assert.equal(runs.length, 3, `runs at ${runs}`);
  const gaps = [runs[1] - runs[0], runs[2] - runs[1]];
  t.diagnostic(`gaps between attempts: ${gaps.join(', ')} ms`);
  assert.ok(gaps[0] >= 90 && gaps[1] >= 190, `gaps ${gaps}`);
});

test("a custom backoff type asks the processor file's backoffStrategy, as BullMQ's Worker asks its own", async (t) => {
  const name = qname();
  await serve(t, name);
  const { q, events } = await producer(t, name);
  const runs = [];
  events.on('active', (x) => runs.push([x.jobId, Date.now()]));
  const linear = await q.add('fail', {}, { attempts: 3, backoff: { type: 'linear', delay: 150 } });
  await assert.rejects(within(linear.waitUntilFinished(events, 20000), 25000, 'linear'), /boom on attempt 3/);
  const at = runs.filter(([id]) => id === linear.id).map(([, when]) => when);
  assert.equal(at.length, 3);
  const gaps = [at[1] - at[0], at[2] - at[1]];
  t.diagnostic(`linear backoff of 150 ms: gaps ${gaps.join(', ')} ms`);
  assert.ok(gaps[0] >= 140 && gaps[1] >= 290, `gaps ${gaps}`);
  // -1 from the strategy: no retry, whatever attempts are left.
  const giveUp = await q.add('fail', {}, { attempts: 3, backoff: { type: 'give-up' } });
  await assert.rejects(within(giveUp.waitUntilFinished(events, 20000), 25000, 'give-up'), /boom on attempt 1/);
  assert.equal((await q.getJob(giveUp.id)).attemptsMade, 1);
});

test('an UnrecoverableError fails the job at once, whatever attempts are left', async (t) => {
  const name = qname();
  await serve(t, name);
  const { q, events } = await producer(t, name);
  const job = await q.add('unrecoverable', {}, { attempts: 5, backoff: { type: 'fixed', delay: 50 } });
  await assert.rejects(within(job.waitUntilFinished(events, 20000), 25000, 'unrecoverable'), /this cannot work/);
  const stored = await q.getJob(job.id);
  assert.equal(stored.attemptsMade, 1);
  assert.equal(stored.failedReason, 'this cannot work');
  assert.match(stored.stacktrace[0], /^UnrecoverableError: this cannot work/);
});

test('a processor that never returns is killed at jobTimeoutMs: the job fails with ERR_TASK_TIMEOUT, or retries', async (t) => {
  const name = qname();
  const pool = await serve(t, name, { poolSize: 1, queue: { jobTimeoutMs: 800 } });
  const [pid] = pool.getWorkerPids();
  const { q, events } = await producer(t, name);
  const job = await q.add('hang', {});
  await assert.rejects(within(job.waitUntilFinished(events, 20000), 25000, 'hang'), /ERR_TASK_TIMEOUT/);
  const stored = await q.getJob(job.id);
  assert.match(stored.failedReason, /^ERR_TASK_TIMEOUT: /);
  // The worker that ran it was taken down and replaced; the pool keeps serving.
  await assertGone([pid], 15000);
  await waitFor(() => pool.getWorkerPids().length === 1 && pool.getWorkerPids()[0] !== pid, 15000, 'a new worker');
  const retried = await q.add('hang', {}, { attempts: 2 });
  await assert.rejects(within(retried.waitUntilFinished(events, 30000), 35000, 'hang twice'), /ERR_TASK_TIMEOUT/);
  assert.equal((await q.getJob(retried.id)).attemptsMade, 2);
  const ok = await q.add('resize', { w: 1 });
  assert.equal((await within(ok.waitUntilFinished(events, 20000), 25000, 'after')).w, 2);
});

test('a processor that leaks past the memory limit is recycled between jobs', async (t) => {
  const name = qname();
  const pool = await serve(t, name, { poolSize: 1, workerMemoryLimitMB: 120, restartOnMemoryLimit: true, healthCheckInterval: 200 });
  const { q, events } = await producer(t, name);
  const pids = new Set();
  for (let i = 0; i < 8; i++) {
    const job = await q.add('leak', { mb: 40, holdMs: 400 });
    const r = await within(job.waitUntilFinished(events, 20000), 25000, `leak ${i}`);
    pids.add(r.pid);
    assert.ok(r.rssMb < 400, `a worker reached ${r.rssMb} MB`);
  }
  t.diagnostic(`8 jobs of 40 MB each ran in ${pids.size} workers`);
  assert.ok(pids.size >= 2, 'the leaking worker was recycled');
  await waitFor(() => pool.getWorkerPids().length === 1, 15000, 'one worker');
});

test('a processor file that throws at load: the pool does not start, and no job is taken', async (t) => {
  const name = qname();
  const { q } = await producer(t, name);
  await q.addBulk(Array.from({ length: 5 }, (_, i) => ({ name: 'resize', data: { w: i } })));
  const before = Date.now();
  const r = await settleOf(serve(t, name, { processor: fixture('bullmq/broken-processor.js'), maxRestartAttempts: 2 }));
  assert.equal(r.error?.code, 'ERR_WORKER_START_FAILED', r.error?.stack);
  assert.match(r.error.stderr, /the processor file .*broken-processor\.js failed to load: Error: this processor cannot load/);
  t.diagnostic(`refused in ${Date.now() - before} ms`);
  const counts = await q.getJobCounts('wait', 'active', 'failed', 'completed');
  assert.deepEqual(counts, { wait: 5, active: 0, failed: 0, completed: 0 });
});

test('a processor file broken while serving is a crash loop that stops; the queued jobs wait', async (t) => {
  const name = qname();
  const dir = tempDir('wpproc-');
  const file = path.join(dir, 'processor.js');
  fs.copyFileSync(PROCESSOR, file);
  fs.writeFileSync(path.join(dir, 'package.json'), '{}');
  fs.symlinkSync(path.join(__dirname, '..', 'node_modules'), path.join(dir, 'node_modules'));
  const pool = await serve(t, name, { poolSize: 1, processor: file, restartCooldownMs: 100, maxRestartAttempts: 2, healthCheckInterval: 200 });
  const { q, events } = await producer(t, name);
  const first = await q.add('resize', { w: 1 });
  await within(first.waitUntilFinished(events, 20000), 25000, 'first');
  // A bad deploy: the file now throws at load, and the worker goes away.
  fs.writeFileSync(file, "throw new Error('bad deploy');\n");
  const [pid] = pool.getWorkerPids();
  process.kill(pid, 'SIGKILL');
  const alert = await waitFor(() => pool.healthMonitor.getAlerts(50).find((a) => a.type === 'worker-restart-failed'), 20000, 'worker-restart-failed');
  assert.equal(alert.severity, 'critical');
  const spawned = pool.getPoolMetrics().performance.workersSpawned;
  assert.ok(spawned <= 4, `workersSpawned ${spawned}`);
  await q.addBulk(Array.from({ length: 20 }, (_, i) => ({ name: 'resize', data: { w: i } })));
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(pool.getPoolMetrics().performance.workersSpawned, spawned, 'no respawn after the slot failed');
  const counts = await q.getJobCounts('wait', 'active', 'failed');
  assert.deepEqual(counts, { wait: 20, active: 0, failed: 0 }, 'no job burned');
});

test("a SIGKILLed worker's job is retried at once, not after a stalled interval", async (t) => {
  const name = qname();
  // Stalled checks every 60 s: a retry within seconds comes from the core seeing the death.
  await serve(t, name, { queue: { lockDurationMs: 60000, stalledIntervalMs: 60000 } });
  const { q, events } = await producer(t, name);
  const job = await q.add('die-first', {}, { attempts: 2 });
  const started = Date.now();
  const r = await within(job.waitUntilFinished(events, 20000), 25000, 'die-first');
  const took = Date.now() - started;
  t.diagnostic(`the second attempt completed ${took} ms after the add`);
  assert.equal(r.attemptsMade, 1);
  assert.ok(took < 20000, `took ${took} ms`);
  const stored = await q.getJob(job.id);
  assert.match(stored.stacktrace[0], /ERR_WORKER_CRASHED/);
});

test("a FlowProducer parent completes after its children ran on the pool, with getChildrenValues()", async (t) => {
  const name = qname();
  await serve(t, name);
  const { q, events } = await producer(t, name);
  const flows = bull(t, new FlowProducer({ connection: connection() }));
  const tree = await flows.add({
    name: 'parent',
    queueName: name,
    data: {},
    children: [1, 2, 3].map((n) => ({ name: 'child', queueName: name, data: { n } })),
  });
  const value = await within(tree.job.waitUntilFinished(events, 20000), 25000, 'parent');
  const children = Object.entries(value.children).sort(([a], [b]) => (a < b ? -1 : 1));
  assert.equal(children.length, 3);
  assert.deepEqual(children.map(([, v]) => v).sort((a, b) => a - b), [10, 20, 30]);
  for (const [key] of children) assert.match(key, new RegExp(`^bull:${name}:`));
  assert.equal(await tree.job.getState(), 'completed');
  assert.deepEqual(await q.getJobCounts('completed', 'failed', 'waiting-children'), { completed: 4, failed: 0, 'waiting-children': 0 });
});

test("what BullMQ's Queue reports about jobs served here is what it reports for its own Worker", async (t) => {
  const compare = fixture('bullmq/plain.js');
  const ours = qname();
  const theirs = qname();
  await serve(t, ours, { processor: compare });
  // Named, as a serving pool names itself (its id becomes each job's processedBy).
  const w = bull(t, new Worker(theirs, compare, { connection: connection(), concurrency: 2, useWorkerThreads: false, name: 'bullmq-worker' }));
  await w.waitUntilReady();
  const jobs = [
    ...[1, 2, 3].map((n) => ({ name: 'double', data: { n }, opts: { jobId: `d${n}`, removeOnComplete: false } })),
    { name: 'fail', data: { n: 0 }, opts: { jobId: 'f1', attempts: 2 } },
  ];
  const sides = {};
  for (const name of [ours, theirs]) {
    const { q, events } = await producer(t, name);
    await q.addBulk(jobs);
    await waitFor(async () => {
      const c = await q.getJobCounts('completed', 'failed');
      return c.completed === 3 && c.failed === 1;
    }, 30000, `${name} to finish`);
    const all = await q.getJobs(['completed', 'failed'], 0, -1, true);
    sides[name] = {
      counts: await q.getJobCounts(),
      jobs: Object.fromEntries(all.map((j) => [j.id, shape(j.toJSON())])),
      states: Object.fromEntries(await Promise.all(all.map(async (j) => [j.id, await j.getState()]))),
    };
    void events;
  }
  assert.deepEqual(sides[ours].counts, sides[theirs].counts);
  assert.deepEqual(sides[ours].states, sides[theirs].states);
  assert.deepEqual(sides[ours].jobs, sides[theirs].jobs);
});

/** A job's fields with what differs between two runs (times, hosts, stack frames) reduced to its kind. */
function shape(j) {
  const out = {};
  for (const [k, v] of Object.entries(j)) {
    if (typeof v === 'function') continue;
    if (['timestamp', 'processedOn', 'finishedOn'].includes(k)) out[k] = typeof v === 'number' && v > 0 ? 'time' : v;
    else if (k === 'stacktrace') out[k] = (Array.isArray(v) ? v : JSON.parse(v || '[]')).map((s) => String(s).split('\n')[0]);
    else if (k === 'processedBy') out[k] = typeof v;
    else if (k === 'queueQualifiedName') out[k] = 'q';
    else out[k] = v;
  }
  return out;
}

async function settleOf(p) {
  try {
    return { value: await p };
  } catch (error) {
    return { error };
  }
}

test('a processor pool also runs tasks submitted locally: the job is named by the task type', async (t) => {
  const pool = await createWorkerPool({ poolSize: 1, processor: PROCESSOR, logLevel: 'silent' });
  t.after(() => pool.shutdown(false));
  for (const pid of pool.getWorkerPids()) seen.add(pid);
  const r = await pool.submitTask({ type: 'resize', payload: { w: 4 } });
  assert.equal(r.w, 8);
  assert.equal(r.attemptsMade, 0);
  assert.match(r.id, /^task-/);
  assert.equal(pool.config.processor, PROCESSOR);
});

test('bad processor and queue options are refused with ERR_INVALID_CONFIG naming the option', async () => {
  const cases = [
    [{ processor: 42 }, /"processor"/],
    [{ processor: '' }, /"processor"/],
    [{ processor: fixture('bullmq/nope.js') }, /"processor": no file at/],
    [{ processor: path.join(__dirname, 'fixtures') }, /"processor": expected the path of a processor file/],
    [{ processor: fixture('bullmq/processor.js'), workerScript: fixture('echo-worker.js') }, /cannot be combined with "workerScript"/],
    [{ processor: fixture('bullmq/processor.js'), workerCommand: ['python3', 'x.py'] }, /cannot be combined with "workerCommand"/],
    [{ processor: __filename.replace(/\.js$/, '.ts') }, /"processor"/],
    [{ queue: { url: 'redis://127.0.0.1:1', jobTimeoutMs: 0 } }, /"queue\.jobTimeoutMs"/],
    [{ queue: { url: 'redis://127.0.0.1:1', maxStalledCount: -1 } }, /"queue\.maxStalledCount"/],
    [{ queue: { url: 'redis://127.0.0.1:1', limiter: { max: 5 } } }, /"queue\.limiter"/],
    [{ queue: { url: 'redis://127.0.0.1:1', limiter: { max: 5, duration: 0 } } }, /"queue\.limiter\.duration"/],
    [{ queue: { url: 'redis://127.0.0.1:1', limiter: { max: 5, duration: 10, groupKey: 'x' } } }, /"queue\.limiter\.groupKey": unknown/],
  ];
  for (const [opts, message] of cases) {
    await assert.rejects(createWorkerPool({ poolSize: 1, logLevel: 'silent', ...opts }), (e) => {
      assert.equal(e.code, 'ERR_INVALID_CONFIG', `${JSON.stringify(opts)}: ${e.stack}`);
      assert.match(e.message, message);
      return true;
    });
  }
});

test("the queue's limiter is BullMQ's: at most max jobs per duration, across the queue", async (t) => {
  const name = qname();
  await serve(t, name, { queue: { limiter: { max: 2, duration: 500 } } });
  const { q, events } = await producer(t, name);
  const active = [];
  events.on('active', () => active.push(Date.now()));
  const jobs = await q.addBulk(Array.from({ length: 6 }, (_, i) => ({ name: 'echo', data: { i } })));
  await within(Promise.all(jobs.map((j) => j.waitUntilFinished(events, 20000))), 25000, 'limited jobs');
  const span = active[active.length - 1] - active[0];
  t.diagnostic(`6 jobs at 2 per 500 ms started over ${span} ms`);
  assert.ok(span >= 900, `6 jobs, 2 per 500 ms, started within ${span} ms`);
});

test('no worker process started by this file is left', async () => {
  await assertGone([...seen], 15000);
});
