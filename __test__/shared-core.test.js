'use strict';
// The shared queue served by the core (BullMQ's worker protocol in Rust): a pool whose
// JS thread is blocked keeps its locks; BullMQ's own Queue API works on the queues the
// pools serve; a plain BullMQ Worker can serve the same queue beside a pool; a bullmq
// whose scripts this build does not speak is refused at start. Real redis-server,
// real pools, BullMQ's own classes as the other side.
// Run: node --test __test__/shared-core.test.js

const { before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { fork } = require('node:child_process');
const { Queue, QueueEvents, Worker } = require('bullmq');
const { createWorkerPool, createQueueClient } = require('..');
const { fixture, test, waitFor, within, settle, assertGone, sleep, tempDir, servingMachine } = require('./helpers');
const { startRedis } = require('./redis-harness');
const { closeBull } = require('../lib/distributed/redis');

let redis;
let seq = 0;
const seen = new Set();
const qname = () => `core${process.pid}-${++seq}`;

before(async () => {
  redis = await startRedis();
});

after(async () => {
  await redis.destroy();
});

const connection = () => ({ url: redis.url, maxRetriesPerRequest: null });

function machine(t, name, queueExtra = {}, extra = {}) {
  return servingMachine(t, { url: redis.url, name, seen, extra, queue: queueExtra });
}

function client(t, name) {
  const c = createQueueClient({ url: redis.url, name });
  t.after(() => c.close());
  return c;
}

/** A BullMQ class instance closed (bounded) when the test ends. */
function bull(t, obj) {
  obj.on('error', () => {});
  t.after(() => closeBull(obj, 5000));
  return obj;
}

const lines = (file) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

test('a serving pool whose JS thread is blocked keeps its job: it runs once, resolves, and never stalls', async (t) => {
  const name = qname();
  const log = path.join(tempDir('wpcore-'), 'runs.log');
  const server = fork(fixture('blocking-server.js'), [], {
    env: { ...process.env, QUEUE_URL: redis.url, QUEUE_NAME: name, LOCK_MS: '1000', STALLED_MS: '500' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const messages = [];
  server.on('message', (m) => messages.push(m));
  t.after(async () => {
    if (server.exitCode === null) server.kill('SIGKILL');
    await new Promise((r) => (server.exitCode !== null ? r() : server.once('exit', r)));
  });
  await waitFor(() => messages.some((m) => m.ready), 30000, 'the serving process to be ready');
  for (const pid of messages.find((m) => m.ready).workers) seen.add(pid);

  const events = bull(t, new QueueEvents(name, { connection: connection(), lastEventId: '0-0' }));
  await events.waitUntilReady();
  const stalled = [];
  events.on('stalled', ({ jobId }) => stalled.push(jobId));

  const c = client(t, name);
  const result = c.submitTask({ type: 'logged', payload: { i: 1, log, ms: 5000 } });
  await waitFor(() => lines(log).length === 1, 15000, 'the job to start on the first pool');
  assert.equal(lines(log)[0], `1 ${server.pid}`);

  // A second machine serves the same queue, its stalled checker every 500 ms.
  await machine(t, name, { lockDurationMs: 1000, stalledIntervalMs: 500 });
  server.send({ block: 3000 });
  await waitFor(() => messages.some((m) => m.blocked), 15000, 'the first pool to have blocked its JS thread for 3 s');

  const r = await within(result, 20000, 'the result');
  assert.deepEqual(r, { i: 1, machine: server.pid });
  await sleep(1200); // two more stalled checks
  assert.deepEqual(lines(log), [`1 ${server.pid}`], 'the job ran exactly once');
  assert.deepEqual(stalled, [], 'no stalled event');
  server.send({ stop: true });
  await new Promise((r2) => (server.exitCode !== null ? r2() : server.once('exit', r2)));
});

test("BullMQ's own Queue API works on a served queue: pause, resume, getJobs, getJobCounts, retryJobs, clean, obliterate", async (t) => {
  const name = qname();
  const pool = await machine(t, name);
  const c = client(t, name);
  const q = bull(t, new Queue(name, { connection: connection() }));

  await q.pause();
  const waiting = Array.from({ length: 5 }, (_, i) => c.submitTask({ type: 'echo', payload: { i } }));
  await waitFor(async () => {
    const n = await q.getJobCounts('wait', 'paused', 'prioritized');
    return n.wait + n.paused + n.prioritized === 5;
  }, 10000, 'the 5 jobs to wait in the paused queue');
  await sleep(1500);
  let counts = await q.getJobCounts('active', 'completed');
  assert.deepEqual(counts, { active: 0, completed: 0 }, 'a paused queue is not served');
  assert.equal(pool.getPoolMetrics().tasks.completed, 0);

  await q.resume();
  assert.deepEqual(await within(Promise.all(waiting), 15000, 'the jobs after resume'), [0, 1, 2, 3, 4].map((i) => ({ i })));
  const done = await q.getJobs(['completed']);
  assert.equal(done.length, 5);
  assert.deepEqual(done.map((j) => j.returnvalue.i).sort(), [0, 1, 2, 3, 4]);

  // A failed job, retried with BullMQ's retryJobs once its cause is gone.
  const flag = path.join(tempDir('wpcore-'), 'ok');
  const failed = await settle(c.submitTask({ type: 'fail-until', payload: { until: flag } }));
  assert.equal(failed.error.code, 'ERR_TASK_FAILED');
  assert.equal((await q.getJobCounts('failed')).failed, 1);
  fs.writeFileSync(flag, '');
  await q.retryJobs({ state: 'failed' });
  await waitFor(async () => (await q.getJobCounts('completed')).completed === 6, 10000, 'the retried job to complete');

  assert.equal((await q.clean(0, 100, 'completed')).length, 6);
  counts = await q.getJobCounts('completed', 'failed');
  assert.deepEqual(counts, { completed: 0, failed: 0 });

  // A job someone else added, not in our format, whose name no worker handles: failed
  // with a reason that says so.
  const events = bull(t, new QueueEvents(name, { connection: connection(), lastEventId: '0-0' }));
  await events.waitUntilReady();
  const foreign = await q.add('not-ours', { hello: 1 });
  const why = await settle(foreign.waitUntilFinished(events, 10000));
  assert.match(why.error.message, /ERR_NO_HANDLER: No handler registered for task type: not-ours/);
  // ... and the pool keeps serving.
  assert.deepEqual(await c.submitTask({ type: 'echo', payload: 'still' }), 'still');

  await q.pause();
  await q.obliterate({ force: true });
  assert.deepEqual(await q.getJobCounts('completed', 'failed', 'wait'), { completed: 0, failed: 0, wait: 0 });
  await q.resume();
  assert.deepEqual(await within(c.submitTask({ type: 'echo', payload: 'after' }), 10000, 'a task after obliterate'), 'after');
});

test('a plain BullMQ Worker and a pool serve one queue together: every job completes once', async (t) => {
  const name = qname();
  const log = path.join(tempDir('wpcore-'), 'runs.log');
  await machine(t, name, { lockDurationMs: 2000, stalledIntervalMs: 1000 });
  const worker = bull(
    t,
    new Worker(
      name,
      async (job) => {
        const { i } = job.data.payload;
        fs.appendFileSync(log, `${i} bull\n`);
        await sleep(2);
        return { i, machine: 'bull' };
      },
      { connection: connection(), concurrency: 2, lockDuration: 2000, stalledInterval: 1000 },
    ),
  );
  const c = client(t, name);
  const n = 300;
  const results = await within(
    Promise.all(Array.from({ length: n }, (_, i) => c.submitTask({ type: 'logged', payload: { i, log, ms: 2 } }))),
    60000,
    'every result',
  );
  results.forEach((r, i) => assert.equal(r.i, i));
  const runs = lines(log).map((l) => Number(l.split(' ')[0]));
  assert.equal(runs.length, n, 'each job ran once');
  assert.equal(new Set(runs).size, n);
  const byBull = results.filter((r) => r.machine === 'bull').length;
  assert.ok(byBull > 0 && byBull < n, `both served (BullMQ's Worker ran ${byBull} of ${n})`);
  await worker.close();
});

test("a bullmq whose scripts have another signature is refused at start with ERR_QUEUE_UNAVAILABLE naming the version", async () => {
  const dir = tempDir('wpcore-bullmq-');
  const real = path.dirname(require.resolve('bullmq/package.json'));
  fs.mkdirSync(path.join(dir, 'dist', 'cjs'), { recursive: true });
  fs.cpSync(path.join(real, 'dist', 'cjs', 'scripts'), path.join(dir, 'dist', 'cjs', 'scripts'), { recursive: true });
  fs.renameSync(path.join(dir, 'dist/cjs/scripts/moveToActive-11.js'), path.join(dir, 'dist/cjs/scripts/moveToActive-12.js'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'bullmq', version: '99.0.0' }));
  const before = process.env.CORTEX_WORKER_POOL_BULLMQ_DIR;
  process.env.CORTEX_WORKER_POOL_BULLMQ_DIR = dir;
  try {
    const r = await settle(
      createWorkerPool({ poolSize: 1, workerScript: fixture('queue-worker.js'), logLevel: 'silent', queue: { url: redis.url, name: qname() } }),
    );
    assert.equal(r.error.code, 'ERR_QUEUE_UNAVAILABLE');
    assert.match(r.error.message, /bullmq 99\.0\.0/);
    assert.match(r.error.message, /moveToActive with 12 keys/);
    assert.match(r.error.message, /bullmq \^6\.7\.0/);
  } finally {
    if (before === undefined) delete process.env.CORTEX_WORKER_POOL_BULLMQ_DIR;
    else process.env.CORTEX_WORKER_POOL_BULLMQ_DIR = before;
  }
});

// A stranger's jobs under our job names: random JSON (fast-check, seeded; STRANGER_SEED=<n>
// replays a run), our own shape with random fields, and a data field that is not JSON.
const STRANGER_SEED = Number(process.env.STRANGER_SEED || 20261207);

test('jobs a stranger writes into a served queue run as plain jobs or fail with a coded reason; the pool stays up and keeps serving', async (t) => {
  const fc = require('fast-check');
  const name = qname();
  const pool = await machine(t, name);
  const workersBefore = pool.getWorkerPids().sort();
  const q = bull(t, new Queue(name, { connection: connection() }));
  const anything = fc.jsonValue({ maxDepth: 3 });
  const ours = fc.record(
    { cortex: fc.oneof(fc.constant(1), anything), type: fc.oneof(fc.constantFrom('echo', 'whoami', ''), anything), payload: anything, timeout: anything, requires: anything },
    { requiredKeys: ['cortex'] },
  );
  const data = fc.sample(fc.oneof(anything, ours), { seed: STRANGER_SEED, numRuns: 80 });
  t.diagnostic(`stranger's jobs: seed ${STRANGER_SEED}`);
  const jobs = await q.addBulk(data.map((d, i) => ({ name: i % 2 ? 'echo' : 'whoami', data: d, opts: { attempts: 1 } })));
  // And one whose data is not JSON at all, written straight into its hash.
  const raw = await q.add('echo', { later: 'replaced' }, { delay: 60000 });
  const Redis = require('ioredis');
  const direct = new Redis(redis.url);
  t.after(() => direct.quit());
  await direct.hset(`bull:${name}:${raw.id}`, 'data', '{not json');
  await raw.promote();
  const all = [...jobs, raw];
  await waitFor(async () => {
    const c = await q.getJobCounts('completed', 'failed');
    return c.completed + c.failed === all.length;
  }, 30000, 'every stranger job to finish');
  const states = { completed: 0, failed: 0 };
  for (const j of jobs) {
    const job = await q.getJob(j.id);
    const state = await job.getState();
    states[state] = (states[state] || 0) + 1;
    const data = job.data;
    const ours = data !== null && typeof data === 'object' && !Array.isArray(data) && 'cortex' in data;
    if (state === 'failed') {
      assert.match(job.failedReason, /^(ERR_[A-Z_]+|ABORT_ERR): /, `job ${j.id} (${JSON.stringify(data)}) failed with a coded reason`);
      // A plain job runs as its name (echo, whoami: handlers the worker has): only one
      // that claims our format (a `cortex` field) can fail, and then as not valid.
      assert.ok(ours, `plain job ${j.id} failed: ${job.failedReason}`);
      assert.match(job.failedReason, /^ERR_INVALID_TASK: Job \S+ is not a valid Cortex task|^ERR_NO_HANDLER/);
    } else {
      assert.equal(state, 'completed');
      if (ours) assert.equal(data.cortex, 1, `job ${j.id} completed: ${JSON.stringify(data)}`);
      // A plain echo gives back its data.
      else if (job.name === 'echo') assert.deepEqual(job.returnvalue, data);
    }
  }
  t.diagnostic(`stranger's jobs: ${states.completed} completed, ${states.failed} failed`);
  // BullMQ's own Job cannot even read that one (its data is not JSON): read the hash.
  assert.notEqual(await direct.zscore(`bull:${name}:failed`, raw.id), null);
  assert.match(await direct.hget(`bull:${name}:${raw.id}`, 'failedReason'), /^ERR_INVALID_TASK: Job \S+ of queue \S+ has data that is not JSON/);
  // Still up, the same workers, still serving.
  assert.deepEqual(pool.getWorkerPids().sort(), workersBefore);
  const c = createQueueClient({ url: redis.url, name });
  t.after(() => c.close());
  assert.deepEqual(await within(c.submitTask({ type: 'echo', payload: 'after' }), 15000, 'a task after the strangers'), 'after');
});

test('no worker process started by this file is left', async () => {
  await assertGone([...seen], 15000);
});
