'use strict';
// `worker-pool serve`: the CLI runs a daemon of its own in the foreground, serving one
// BullMQ queue with a processor file. Real processes: a private redis-server per test
// (never a Redis the test did not start), the CLI as a subprocess, its daemon and the
// daemon's workers; every test stops them all and checks that none is left.
// Run: node --test __test__/cli-serve.test.js
//
// The tests under "plain BullMQ jobs" need the serving pool's plain-job support and
// the `processor` option (issue 25); the others need only the daemon as it is.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { ROOT, CLI, test, cli, waitFor, within, assertGone, isAlive, sleep } = require('./helpers');
const { startRedis, freePort } = require('./redis-harness');
const { call } = require('../lib/control-client');

const { createQueueClient } = require(ROOT);
const PROCESSOR_REL = path.join('fixtures', 'bullmq-processor.js'); // relative to __test__/

/**
 * Cleanups for one test, run last-registered first when it ends (Redis goes last:
 * the daemons and clients close their connections to it first).
 */
function cleanups(t) {
  const stack = [];
  t.after(async () => {
    while (stack.length) await stack.pop()();
  });
  return (fn) => stack.push(fn);
}

/**
 * Starts `worker-pool serve` (cwd __test__/, the processor given relative to it) with
 * `args` after the queue and processor flags; resolves once it printed its daemon's
 * PID. Returns { child, out (stdout+stderr so far), exited, daemonPid, socket, dir,
 * waitOutput(re), workerPids() }. At the end of the test the CLI and its daemon are
 * SIGKILLed if still there, and their workers must be gone.
 */
async function startServe(t, later, redis, { name = 'q', args = ['--workers', '2'], env = {} } = {}) {
  const child = spawn(process.execPath, [CLI, 'serve', '--queue-url', redis.url, '--queue', name, '--processor', PROCESSOR_REL, ...args], {
    cwd: __dirname,
    env: { ...process.env, STATUS_INTERVAL_MS: '200', METRICS_LOG_INTERVAL_MS: '0', ...env, NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const s = { child, out: '', seen: new Set() };
  child.stdout.setEncoding('utf8').on('data', (d) => (s.out += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (s.out += d));
  s.exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  s.waitOutput = (re, ms = 30000) => waitFor(() => re.exec(s.out), ms, { interval: 25, message: () => `${re} in the output of serve:\n${s.out}` });
  s.workerPids = async () => {
    const ws = await call(s.socket, 'workers', {}, 5000);
    for (const w of ws) if (w.pid) s.seen.add(w.pid);
    return ws.map((w) => w.pid);
  };
  later(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await within(s.exited, 10000, 'serve exit');
    if (s.daemonPid && isAlive(s.daemonPid)) process.kill(s.daemonPid, 'SIGKILL');
    await assertGone([s.daemonPid, ...s.seen].filter(Boolean), 30000);
    if (s.dir) fs.rmSync(s.dir, { recursive: true, force: true });
  });
  const m = await s.waitOutput(/daemon PID (\d+), control socket (\S+)/);
  s.daemonPid = Number(m[1]);
  s.socket = m[2];
  s.dir = path.dirname(s.socket);
  return s;
}

/** A BullMQ Queue and QueueEvents on `name` (closed at the end of the test). */
async function bull(later, redis, name) {
  const { Queue, QueueEvents } = require('bullmq');
  const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
  const queue = new Queue(name, { connection });
  // From the stream's start: a ready QueueEvents may not have sent its first read yet.
  const events = new QueueEvents(name, { connection, lastEventId: '0-0' });
  queue.on('error', () => {});
  events.on('error', () => {});
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
  later(async () => {
    await events.close();
    await queue.close();
  });
  return { queue, events };
}

/** Waits until `job` is active; a job that fails or completes first fails the test at once. */
async function waitActive(job, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const state = await job.queue.getJobState(job.id);
    if (state === 'active') return;
    if (state === 'failed' || state === 'completed') {
      const j = await job.queue.getJob(job.id);
      assert.fail(`job ${job.id} is ${state} before it was seen active: ${j && (j.failedReason || JSON.stringify(j.returnvalue))}`);
    }
    if (Date.now() > deadline) assert.fail(`job ${job.id} not active within ${ms} ms (state ${state})`);
    await sleep(25);
  }
}

// ------------------------------------------------------------------ usage errors

test('serve: a missing or invalid flag exits 2 naming the flag and what it takes', async () => {
  const url = 'redis://127.0.0.1:1';
  const proc = path.join(__dirname, PROCESSOR_REL);
  const base = ['serve', '--queue-url', url, '--queue', 'q', '--processor', proc];
  const cases = [
    [['serve', '--queue', 'q', '--processor', proc, '--workers', '2'], /serve needs --queue-url URL/],
    [['serve', '--queue-url', url, '--processor', proc, '--workers', '2'], /serve needs --queue NAME/],
    [['serve', '--queue-url', url, '--queue', 'q', '--workers', '2'], /serve needs --processor FILE/],
    [[...base], /serve needs --workers N \(an integer >= 1/],
    [[...base, '--workers', 'x'], /--workers must be an integer >= 1, got "x"/],
    [[...base, '--workers', '0'], /--workers must be an integer >= 1, got "0"/],
    [[...base, '--workers', '1.5'], /--workers must be an integer >= 1, got "1.5"/],
    [[...base, '--workers', '2', '--memory-limit-mb=-3'], /--memory-limit-mb must be an integer >= 1, got "-3"/],
    [[...base, '--workers', '2', '--job-timeout-ms', 'soon'], /--job-timeout-ms must be an integer >= 1, got "soon"/],
    [[...base, '--workers', '2', '--metrics-port', '70000'], /--metrics-port must be an integer from 0 to 65535, got "70000"/],
    [[...base, '--workers', '2', '--lock-duration-ms', '50'], /--lock-duration-ms must be an integer >= 100, got "50"/],
    [[...base, '--workers', '2', '--max-stalled-count=-1'], /--max-stalled-count must be an integer >= 0, got "-1"/],
    [[...base, '--workers', '2', '--limiter-max', '10'], /--limiter-max and --limiter-duration-ms go together/],
    [[...base, '--workers', '2', '--limiter-duration-ms', '1000'], /--limiter-max and --limiter-duration-ms go together/],
    [[...base, '--workers', '2', '--log-format', 'xml'], /--log-format must be text or json, got "xml"/],
    [[...base, '--workers', '2', '--socket', '/tmp/x.sock'], /--socket does not apply to "serve"/],
    [[...base, '--workers', '2', 'extra'], /serve takes options only, got "extra"/],
    [[...base, '--workers', '2', '--type', 'x'], /option --type does not apply to "serve"/],
    [['serve', '--queue-url', 'ftp://user:secret@host', '--queue', 'q', '--processor', proc, '--workers', '2'], /--queue-url/],
    [['serve', '--queue-url', url, '--queue', 'bad name!', '--processor', proc, '--workers', '2'], /--queue/],
    // The processor: relative to the current directory, an existing .js/.cjs/.mjs file.
    [['serve', '--queue-url', url, '--queue', 'q', '--processor', 'no-such.js', '--workers', '2'], new RegExp(`--processor: no such file ${path.join(__dirname, 'no-such.js').replace(/[.]/g, '\\.')}`)],
    [['serve', '--queue-url', url, '--queue', 'q', '--processor', 'fixtures', '--workers', '2'], /--processor must be a file, got the directory/],
    [['serve', '--queue-url', url, '--queue', 'q', '--processor', 'fixtures/python-worker.py', '--workers', '2'], /--processor must be a \.js, \.cjs or \.mjs file, got "fixtures\/python-worker\.py"/],
    // serve's flags belong to serve.
    [['status', '--workers', '2'], /option --workers does not apply to "status"/],
  ];
  for (const [args, re] of cases) {
    const r = await cli(args, { cwd: __dirname, timeoutMs: 15000 });
    assert.equal(r.code, 2, `${args.join(' ')}: exit 2 expected, got ${r.code}; stderr: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.doesNotMatch(r.stderr, /secret/, 'a password is never echoed');
    assert.equal(r.stdout, '', args.join(' '));
    if (args[0] === 'serve') assert.match(r.stderr, /Run "worker-pool serve --help" for usage/);
  }
  const help = await cli(['serve', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: worker-pool serve --queue-url URL --queue NAME --processor FILE --workers N/);
  assert.match((await cli(['--help'])).stdout, /serve --queue-url URL/);
});

// ------------------------------------------------------------------ the daemon, as it is

test('serve: runs a private daemon on the queue, shows its status, drains on SIGINT and exits 0 with nothing left', async (t) => {
  const later = cleanups(t);
  const redis = await startRedis();
  later(() => redis.destroy());
  // What a shell exported for a system daemon must not reach serve's daemon: a worker
  // script (the processor replaces it), queue settings serve has flags for, its paths.
  const s = await startServe(t, later, redis, {
    env: { WORKER_SCRIPT: '/nonexistent/worker.js', QUEUE_CONCURRENCY: 'not a number', PID_FILE: '/nonexistent/pool.pid', SOCKET_PATH: '/nonexistent/pool.sock' },
  });
  assert.match(s.dir, /^\/tmp\/worker-pool-serve-\d+-/);
  assert.match(s.out, /serving the BullMQ queue "q" at redis:\/\/127\.0\.0\.1:\d+ with 2 worker\(s\) running .*bullmq-processor\.js/);
  await s.waitOutput(/\[serve\] q \| workers 0 busy, 2 idle \| held 0 \| completed 0 .*\| failed 0 \| waiting 0 \| Redis connected/);
  assert.ok(fs.existsSync(s.socket), 'the private control socket');
  assert.equal(Number(fs.readFileSync(path.join(s.dir, 'worker-pool.pid'), 'utf8')), s.daemonPid);
  const workers = await s.workerPids();
  assert.equal(workers.length, 2);

  // A task of this package's own format, from a client (this works without the processor feature).
  const client = createQueueClient({ url: redis.url, name: 'q' });
  later(() => client.close());
  assert.ok(await within(client.submitTask({ type: 'test', payload: { n: 2 } }), 20000, 'task'));
  await s.waitOutput(/\| completed 1 .*\| failed 0 /);

  s.child.kill('SIGINT');
  const { code, signal } = await within(s.exited, 30000, 'serve exit');
  assert.equal(signal, null);
  assert.equal(code, 0, s.out);
  assert.match(s.out, /\[serve\] SIGINT: draining/);
  assert.match(s.out, /Received SIGTERM: shutting down gracefully/);
  assert.match(s.out, /\[serve\] daemon exited with code 0/);
  await assertGone([s.daemonPid, ...workers], 10000);
  assert.equal(fs.existsSync(s.dir), false, 'the temporary directory is removed');
});

test('serve: a SIGKILLed serve leaves no daemon or worker running; the next serve removes its directory', async (t) => {
  const later = cleanups(t);
  const redis = await startRedis();
  later(() => redis.destroy());
  const a = await startServe(t, later, redis, { args: ['--workers', '1'] });
  await a.waitOutput(/Redis connected/);
  const workers = await a.workerPids();
  a.child.kill('SIGKILL');
  await within(a.exited, 10000, 'serve exit');
  // The daemon sees its IPC channel close and stops (gracefully: nothing is held).
  await assertGone([a.daemonPid, ...workers], 30000);
  assert.ok(fs.existsSync(a.dir), 'nobody could remove the directory of the killed serve');

  const b = await startServe(t, later, redis, { args: ['--workers', '1'] });
  assert.equal(fs.existsSync(a.dir), false, 'the next serve removed the killed one\'s directory');
  await b.waitOutput(/Redis connected/);
  b.child.kill('SIGTERM');
  const { code } = await within(b.exited, 30000, 'serve exit');
  assert.equal(code, 0, b.out);
  assert.match(b.out, /\[serve\] SIGTERM: draining/);
  assert.equal(fs.existsSync(b.dir), false);
});

test('serve: a daemon that cannot start (Redis unreachable) makes serve exit 1 with its error', async (t) => {
  const later = cleanups(t);
  const port = await freePort(); // nothing listens there
  const s = await startServe(t, later, { url: `redis://127.0.0.1:${port}`, port }, { args: ['--workers', '1'] });
  const { code } = await within(s.exited, 30000, 'serve exit');
  assert.equal(code, 1, s.out);
  assert.match(s.out, /ERR_QUEUE_UNAVAILABLE|Pool failed to start/);
  assert.match(s.out, /\[serve\] daemon exited with code 1/);
  await assertGone([s.daemonPid], 10000);
  assert.equal(fs.existsSync(s.dir), false);
});

// ------------------------------------------------------------------ plain BullMQ jobs
// These need the processor feature of issue 25 (plain jobs, `processor`, WORKER_PROCESSOR).

test('serve: a plain BullMQ job added by BullMQ\'s Queue runs in the processor file; SIGINT exits 0', async (t) => {
  const later = cleanups(t);
  const redis = await startRedis();
  later(() => redis.destroy());
  const s = await startServe(t, later, redis, { name: 'emails' });
  await s.waitOutput(/Redis connected/);
  const workers = await s.workerPids();
  const { queue, events } = await bull(later, redis, 'emails');

  const job = await queue.add('double', { n: 21 });
  const value = await within(job.waitUntilFinished(events, 20000), 25000, 'waitUntilFinished');
  assert.deepEqual(value, { doubled: 42 });
  const done = await queue.getJob(job.id);
  assert.deepEqual(done.returnvalue, { doubled: 42 });
  assert.equal(done.attemptsMade, 1);
  await s.waitOutput(/\| completed 1 .*\| failed 0 /);

  s.child.kill('SIGINT');
  const { code } = await within(s.exited, 30000, 'serve exit');
  assert.equal(code, 0, s.out);
  await assertGone([s.daemonPid, ...workers], 10000);
  assert.equal(fs.existsSync(s.dir), false);
});

test('serve: SIGINT while a plain job runs: the job finishes with its value, then serve exits 0', async (t) => {
  const later = cleanups(t);
  const redis = await startRedis();
  later(() => redis.destroy());
  const s = await startServe(t, later, redis, { name: 'drain' });
  await s.waitOutput(/Redis connected/);
  const workers = await s.workerPids();
  const { queue, events } = await bull(later, redis, 'drain');

  const job = await queue.add('double', { n: 5, ms: 2000 });
  const finished = job.waitUntilFinished(events, 30000);
  finished.catch(() => {}); // awaited below; a failure before then must not be unhandled
  await waitActive(job);
  await s.waitOutput(/\| workers 1 busy, 1 idle \| held 1 /);
  s.child.kill('SIGINT');
  assert.deepEqual(await within(finished, 30000, 'the held job'), { doubled: 10 });
  const { code } = await within(s.exited, 30000, 'serve exit');
  assert.equal(code, 0, s.out);
  assert.match(s.out, /\[serve\] SIGINT: draining/);
  assert.equal(await queue.getJobState(job.id), 'completed');
  await assertGone([s.daemonPid, ...workers], 10000);
});

test('serve: a second SIGINT gives the held plain job back to the queue without using an attempt', async (t) => {
  const later = cleanups(t);
  const redis = await startRedis();
  later(() => redis.destroy());
  const s = await startServe(t, later, redis, { name: 'giveback', args: ['--workers', '1'] });
  await s.waitOutput(/Redis connected/);
  const workers = await s.workerPids();
  const { queue } = await bull(later, redis, 'giveback');

  const job = await queue.add('double', { n: 1, ms: 60000 });
  await waitActive(job);
  s.child.kill('SIGINT');
  await s.waitOutput(/\[serve\] SIGINT: draining/);
  await sleep(1200); // a second signal within 1 s counts once (npx forwards the terminal's)
  s.child.kill('SIGINT');
  const { code } = await within(s.exited, 30000, 'serve exit');
  assert.match(s.out, /\[serve\] SIGINT again: forwarding SIGTERM again/);
  assert.equal(code, 0, s.out);
  assert.equal(await queue.getJobState(job.id), 'waiting');
  assert.equal((await queue.getJob(job.id)).attemptsMade, 0);
  await assertGone([s.daemonPid, ...workers], 10000);
});
