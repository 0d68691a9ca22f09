'use strict';
// The worker-pool CLI with --queue-url: status, submit, dlq and metrics talk to the
// shared queue directly (no daemon). Every test starts its own redis-server (never a
// Redis it did not start) and, where jobs must run, a pool serving the queue in this
// process; the CLI runs as a subprocess. Everything is stopped at the end of its test.
// Run: node --test __test__/cli-queue.test.js

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { ROOT, CLI, test, fixture, cli, run, tempDir, daemonEnv, waitFor, within, assertGone, isAlive } = require('./helpers');
const { startRedis, freePort } = require('./redis-harness');

const { createWorkerPool, createQueueClient } = require(ROOT);

/**
 * Cleanups for one test, run last-registered first when it ends (Redis goes last:
 * the pool and clients close their connections to it first).
 */
function cleanups(t) {
  const stack = [];
  t.after(async () => {
    while (stack.length) await stack.pop()();
  });
  return (fn) => stack.push(fn);
}

/** A private Redis (and a pool serving it, unless serve is false) for one test. */
async function setup(t, { serve = true, name } = {}) {
  const later = cleanups(t);
  const redis = await startRedis();
  later(() => redis.destroy());
  const queue = { url: redis.url, ...(name ? { name } : {}) };
  let pool = null;
  if (serve) {
    pool = await createWorkerPool({ poolSize: 2, workerScript: fixture('queue-worker.js'), logLevel: 'silent', queue });
    const pids = pool.getWorkerPids();
    later(async () => {
      await within(pool.shutdown(false), 20000, 'pool.shutdown');
      await assertGone(pids);
    });
  }
  // A client of the test's own, for preparing and checking the queue.
  const client = createQueueClient(queue);
  later(() => client.close());
  const q = (...args) => ['--queue-url', redis.url, ...(name ? ['--queue', name] : []), ...args];
  return { redis, pool, client, q, later };
}

function json(r) {
  assert.equal(r.code, 0, `exit 0 expected; stderr: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

test('submit --queue-url runs the task on a pool serving the queue and prints its result', async (t) => {
  const { q } = await setup(t);
  const r = await cli(q('submit', '--type', 'echo', '--payload', '{"a":[1,2],"b":"x"}'));
  assert.deepEqual(json(r), { a: [1, 2], b: 'x' });
  assert.equal(r.stderr, '');

  // It ran on this process's pool (the worker's parent is the machine that served it).
  const who = json(await cli(q('submit', '--type', 'whoami', '--payload', '{"i":7}', '--priority', '3', '--timeout', '10000')));
  assert.equal(who.i, 7);
  assert.equal(who.machine, process.pid);
});

test('submit --queue-url: a failing task exits 1 with its code and message', async (t) => {
  const { q } = await setup(t);
  const r = await cli(q('submit', '--type', 'no-such-type'));
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^worker-pool: \[ERR_NO_HANDLER\] .*no-such-type/);

  const bad = await cli(q('submit', '--type', 'echo', '--priority=-1'));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /\[ERR_INVALID_TASK\]/);
});

test('submit --queue-url: Ctrl-C cancels the job on the machine running it', async (t) => {
  const { q, client, later } = await setup(t);
  const dir = tempDir('wpcq-');
  later(() => fs.rmSync(dir, { recursive: true, force: true }));
  const marker = path.join(dir, 'marker');
  const child = spawn(process.execPath, [CLI, ...q('submit', '--type', 'sleep', '--payload', JSON.stringify({ ms: 60000, marker }))], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  later(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  await waitFor(async () => (await client.getQueueMetrics()).active === 1, 20000, 'the job to be running');
  child.kill('SIGINT');
  const { code } = await within(exited, 20000, 'the CLI to exit after Ctrl-C');
  assert.equal(code, 1, stderr);
  assert.match(stderr, /cancelling the task/);
  assert.match(stderr, /\[ABORT_ERR\]/);
  await waitFor(() => fs.existsSync(marker), 10000, "the handler's AbortSignal to fire");
  assert.equal(fs.readFileSync(marker, 'utf8'), 'aborted');
});

test('dlq --queue-url lists, requeues and clears the shared failed set', async (t) => {
  const { q, client } = await setup(t);
  const empty = await cli(q('dlq'));
  assert.equal(empty.code, 0, empty.stderr);
  assert.equal(empty.stdout.trim(), 'dead-letter queue is empty');

  const failures = await Promise.allSettled([
    client.submitTask({ type: 'fail', payload: { message: 'first broke' }, maxRetries: 0 }),
    client.submitTask({ type: 'fail', payload: { message: 'second broke' }, maxRetries: 1 }),
  ]);
  assert.deepEqual(failures.map((f) => f.status), ['rejected', 'rejected']);

  const text = await cli(q('dlq', 'list'));
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^ID\s+TYPE\s+PRIORITY\s+ATTEMPTS\s+FAILED\s+ERROR/);
  assert.match(text.stdout, /fail .*ERR_TASK_FAILED: first broke/);
  assert.match(text.stdout, /fail .*ERR_TASK_FAILED: second broke/);
  assert.match(text.stdout, /2 task\(s\) in the dead-letter queue/);

  const items = json(await cli(q('dlq', '--json')));
  assert.equal(items.length, 2);
  const second = items.find((d) => d.finalError.message === 'second broke');
  assert.equal(second.finalError.code, 'ERR_TASK_FAILED');
  assert.equal(second.metadata.attempts.length, 2, 'both attempts are kept');
  assert.deepEqual(second.task, { type: 'fail', payload: { message: 'second broke' } });

  // Requeue one by id: it runs again (and fails again, later).
  const requeued = await cli(q('dlq', 'requeue', second.id));
  assert.equal(requeued.code, 0, requeued.stderr);
  assert.equal(requeued.stdout.trim(), 'requeued 1 task(s)');
  await waitFor(
    async () => (await client.getDeadLetterQueue()).some((d) => d.id === second.id && d.failedAt > second.failedAt),
    20000,
    'the requeued job to run and fail again',
  );

  const missing = await cli(q('dlq', 'requeue', 'no-such-id'));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /\[ERR_NOT_FOUND\] No dead-letter task with id "no-such-id"/);

  const cleared = await cli(q('dlq', 'clear'));
  assert.equal(cleared.code, 0, cleared.stderr);
  assert.equal(cleared.stdout.trim(), 'cleared 2 task(s) from the dead-letter queue');
  assert.equal((await client.getQueueMetrics()).failed, 0);
});

test('metrics --queue-url prints the shared counts as JSON and as Prometheus text', async (t) => {
  const { q, client } = await setup(t, { name: 'cli-metrics' });
  await client.submitTask({ type: 'echo', payload: 1 });
  await assert.rejects(client.submitTask({ type: 'fail', maxRetries: 0 }), { code: 'ERR_TASK_FAILED' });

  const m = json(await cli(q('metrics')));
  assert.equal(m.queue.name, 'cli-metrics');
  assert.equal(m.queue.prefix, 'bull');
  const s = m.queue.shared;
  assert.deepEqual(Object.keys(s).sort(), ['active', 'completed', 'delayed', 'failed', 'prioritized', 'servingPools', 'waiting']);
  assert.equal(s.completed, 1);
  assert.equal(s.failed, 1);
  assert.equal(s.servingPools, 1);

  const p = await cli(q('metrics', '--prometheus'));
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /^# TYPE worker_pool_shared_jobs gauge$/m);
  assert.match(p.stdout, /^worker_pool_shared_jobs\{queue="cli-metrics",state="waiting"\} 0$/m);
  assert.match(p.stdout, /^worker_pool_shared_jobs\{queue="cli-metrics",state="completed"\} 1$/m);
  assert.match(p.stdout, /^worker_pool_shared_jobs\{queue="cli-metrics",state="failed"\} 1$/m);
  assert.match(p.stdout, /^worker_pool_shared_serving_pools\{queue="cli-metrics"\} 1$/m);
});

test('status --queue-url shows the counts and how many pools serve the queue', async (t) => {
  const { q, redis } = await setup(t);
  const r = await cli(q('status'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^shared queue "cortex" \\(prefix bull\\) at redis://127\\.0\\.0\\.1:${redis.port}: 1 pool\\(s\\) serving$`, 'm'));
  assert.match(r.stdout, /^jobs: +0 waiting, 0 prioritized, 0 active, 0 delayed, 0 completed, 0 failed/m);
  const j = json(await cli(q('status', '--json')));
  assert.equal(j.queue.shared.servingPools, 1);

  // A queue nobody serves (yet) says so.
  const other = await cli(['--queue-url', redis.url, '--queue', 'nobody-here', 'status']);
  assert.equal(other.code, 0, other.stderr);
  assert.match(other.stdout, /no pool serving/);
});

test('an unreachable --queue-url fails with ERR_QUEUE_UNAVAILABLE, names the URL without its password, exits 1', async () => {
  const port = await freePort(); // nothing listens there
  for (const cmd of [['status'], ['submit', '--type', 'echo'], ['dlq'], ['metrics']]) {
    const r = await cli(['--queue-url', `redis://:s3cret-pw@127.0.0.1:${port}`, ...cmd], { timeoutMs: 20000 });
    assert.equal(r.code, 1, `${cmd[0]}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /\[ERR_QUEUE_UNAVAILABLE\]/);
    assert.ok(r.stderr.includes(`redis://:***@127.0.0.1:${port}`), r.stderr);
    assert.ok(!r.stderr.includes('s3cret-pw'), `the password leaked: ${r.stderr}`);
  }
});

test('--queue-url usage errors exit 2 without connecting', async () => {
  const cases = [
    [['status', '--queue', 'x'], /--queue and --queue-prefix need --queue-url/],
    [['scale', 'up', '1', '--queue-url', 'redis://127.0.0.1:1'], /scale needs a daemon/],
    [['ping', '--queue-url', 'redis://127.0.0.1:1'], /ping needs a daemon/],
    [['status', '--queue-url', 'redis://127.0.0.1:1', '--socket', '/tmp/x.sock'], /exclude each other/],
    [['status', '--queue-url', 'http://user:pw-secret@host'], /Invalid option "--queue-url": expected a redis:\/\/, rediss:\/\/, redis-sentinel:\/\/ or redis-cluster:\/\/ URL/],
    [['status', '--queue-url', 'redis://:pw-secret@host:notaport'], /Invalid option "--queue-url"/],
    [['status', '--queue-url', 'redis://:pw-secret/x@y@host:notaport'], /Invalid option "--queue-url"/],
    [['status', '--queue-url', 'ftp://user:pw-secret/x@host'], /Invalid option "--queue-url"/],
    [['status', '--queue-url', 'redis://127.0.0.1:1', '--queue', 'a b'], /Invalid option "--queue"/],
    [['submit', '--queue-url', 'redis://127.0.0.1:1'], /submit needs --type/],
  ];
  for (const [args, re] of cases) {
    const r = await cli(args, { timeoutMs: 20000 });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.ok(!r.stderr.includes('pw-secret'), `the password leaked: ${r.stderr}`);
  }
});

test("a daemon serving the shared queue: its status shows the shared counts; the CLI reaches the queue without it", async (t) => {
  const later = cleanups(t);
  const redis = await startRedis();
  later(() => redis.destroy());
  const dir = tempDir('wpcq-');
  later(() => fs.rmSync(dir, { recursive: true, force: true }));
  const env = daemonEnv(dir, {
    WORKER_SCRIPT: fixture('queue-worker.js'),
    QUEUE_URL: redis.url,
    METRICS_LOG_INTERVAL_MS: '0',
  });
  const daemon = spawn(process.execPath, [path.join(ROOT, 'scripts', 'daemon.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  daemon.stdout.setEncoding('utf8').on('data', (d) => {
    output += d;
  });
  daemon.stderr.setEncoding('utf8').on('data', (d) => {
    output += d;
  });
  const exited = new Promise((resolve) => daemon.on('close', (code, signal) => resolve({ code, signal })));
  later(() => {
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
  });
  await waitFor(() => /Worker pool daemon ready/.test(output), 30000, () => `the daemon to be ready; output:\n${output}`);

  const st = await cli(['status', '--socket', env.SOCKET_PATH]);
  assert.equal(st.code, 0, st.stderr);
  assert.match(st.stdout, /^shared: +1 pool\(s\) serving; 0 waiting, 0 prioritized, 0 active/m);
  const workerPids = JSON.parse((await cli(['status', '--socket', env.SOCKET_PATH, '--json'])).stdout).workers.map((w) => w.pid);

  // The same daemon's jobs, submitted without it.
  const who = json(await cli(['submit', '--queue-url', redis.url, '--type', 'whoami', '--payload', '{"i":1}']));
  assert.equal(who.machine, daemon.pid);

  daemon.kill('SIGTERM');
  const { code } = await within(exited, 30000, 'the daemon to exit after SIGTERM');
  assert.equal(code, 0, output);
  await assertGone([daemon.pid, ...workerPids]);
  assert.ok(!isAlive(daemon.pid));
});

test('no redis-server or worker started by this file is left', async () => {
  const r = await run('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)]);
  const left = r.stdout.split('\n').filter((l) => /redis-server|queue-worker|daemon\.js/.test(l));
  assert.deepEqual(left, []);
});
