'use strict';
// Shared helpers for the node:test suites: polling, fixtures and paths, pools that
// always shut down, process checks (read from /proc: these tests run on Linux only;
// a zombie counts as NOT gone), and running commands (daemon, control socket, CLI).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

// ---------------------------------------------------------------------------------
// Paths

const ROOT = path.join(__dirname, '..');
const DAEMON_SH = path.join(ROOT, 'scripts', 'worker-pool-daemon.sh');
const CLI = path.join(ROOT, 'bin', 'worker-pool.js');

/** Absolute path of a fixture script in __test__/fixtures. */
function fixture(name) {
  return path.join(__dirname, 'fixtures', name);
}

// ---------------------------------------------------------------------------------
// Time

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A small seeded PRNG (mulberry32): floats in [0, 1), the same sequence for a seed. */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Polls fn() (sync or async) until it returns a truthy value; resolves with that
 * value. Rejects after timeoutMs naming what it waited for (and the last error fn
 * threw, if the last poll threw). The third argument is either that description (a
 * string) or { interval, message, what }, where message/what is a string or a
 * function giving one (called only on timeout).
 */
async function waitFor(fn, timeoutMs = 10000, opts = {}) {
  const { interval = 10, message, what } = typeof opts === 'string' ? { message: opts } : opts;
  const deadline = Date.now() + timeoutMs;
  let lastError = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      lastError = null;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) {
      const label = message ?? what ?? 'condition';
      const desc = typeof label === 'function' ? label() : label;
      const why = lastError ? ` (last error: ${lastError.message})` : '';
      throw new Error(`waitFor timed out after ${timeoutMs} ms waiting for ${desc}${why}`);
    }
    await sleep(interval);
  }
}

/** Rejects if `promise` has not settled within ms. */
function within(promise, ms, label = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** { ok: true, value } or { ok: false, error }; never rejects. */
function settle(promise) {
  return promise.then(
    (value) => ({ ok: true, value }),
    (error) => ({ ok: false, error }),
  );
}

// ---------------------------------------------------------------------------------
// Processes

/** { pid, comm, state, ppid } from /proc/<pid>/stat, or null when there is no such process. */
function procStat(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm is in parentheses and may itself contain spaces or parentheses.
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const rest = text.slice(close + 2).split(' ');
  return { pid: Number(pid), comm, state: rest[0] || '?', ppid: Number(rest[1]) };
}

/** The one-letter state of /proc/<pid>/stat, or null when the process does not exist. */
function procState(pid) {
  const s = procStat(pid);
  return s ? s.state : null;
}

/** True only when the pid no longer exists at all (a zombie still exists). */
function isGone(pid) {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return e.code === 'ESRCH'; // EPERM: it exists
  }
}

/**
 * 'alive' | 'zombie' | 'gone', from one read of /proc/<pid>/stat (one read, so a
 * zombie reaped in between is not mistaken for a live process).
 */
function pidState(pid) {
  const s = procStat(pid);
  if (!s) return 'gone';
  return s.state === 'Z' ? 'zombie' : 'alive';
}

/** True when pid exists and is not a zombie. */
function isAlive(pid) {
  return pidState(pid) === 'alive';
}

/**
 * Waits until every pid is gone (not alive and not a zombie: an exited child nobody
 * reaped still counts). Fails naming each pid still present at the deadline.
 */
async function assertGone(pids, timeoutMs = 10000) {
  const list = [...new Set(pids)].filter((p) => Number.isInteger(p) && p > 0);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = list.filter((pid) => !isGone(pid));
    if (left.length === 0) return;
    if (Date.now() >= deadline) {
      const desc = left.map((pid) => {
        const s = procStat(pid);
        return `${pid} ${pidState(pid)}${s ? ` (comm ${s.comm}, state ${s.state}, ppid ${s.ppid})` : ''}`;
      });
      assert.fail(`process(es) not gone after ${timeoutMs} ms: ${desc.join('; ')}`);
    }
    await sleep(20);
  }
}

/** Every process whose parent is `ppid` (default: this process). */
function childrenOf(ppid = process.pid) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = procStat(name);
    if (s && s.ppid === ppid) out.push(s);
  }
  return out;
}

/** Children of this process that are zombies (<defunct>). */
function defunctChildren(ppid = process.pid) {
  return childrenOf(ppid).filter((s) => s.state === 'Z');
}

/** Fails when this process has <defunct> children that stay so for `ms`. */
async function assertNoDefunct(ms = 2000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const z = defunctChildren();
    if (z.length === 0) return;
    if (Date.now() >= deadline) {
      assert.fail(`<defunct> children of the test process: ${z.map((s) => `${s.pid} (${s.comm})`).join(', ')}`);
    }
    await sleep(25);
  }
}

// ---------------------------------------------------------------------------------
// Pools

/**
 * The test pools' defaults: quiet, one worker, the echo fixture. A key given as
 * `undefined` falls back to the package's own default (JSON drops it), e.g.
 * `{ workerScript: undefined }` runs the package's default worker script.
 */
const POOL_DEFAULTS = Object.freeze({ logLevel: 'silent', poolSize: 1, workerScript: fixture('echo-worker.js') });

/** Per-test time limit: a hung pool operation fails its test instead of the run. */
const TEST_TIMEOUT_MS = 90000;

/** Bound on a pool's shutdown, and then on its workers being gone, when a test closes it. */
const CLOSE_MS = 20000;

/** node:test's test() with a time limit (the pool is shut down by t.after either way). */
function test(name, fn) {
  return require('node:test')(name, { timeout: TEST_TIMEOUT_MS }, fn);
}

/**
 * Remembers in `seen` every worker pid `pool` shows now and every one a
 * worker-exited event names from now on (a replacement that never exits before the
 * pool is closed is still listed by getWorkerPids then); returns a function that
 * takes a sample now.
 */
function trackPids(pool, seen) {
  const sample = () => {
    try {
      for (const pid of pool.getWorkerPids()) seen.add(pid);
    } catch {
      /* shut down */
    }
  };
  sample();
  pool.on('worker-exited', (e) => {
    if (e && Number.isInteger(e.pid) && e.pid > 0) seen.add(e.pid);
  });
  return sample;
}

/**
 * The one pool factory of the suites. Builds a pool from POOL_DEFAULTS and `config`
 * (createPool, so listeners can be attached before initialize) and, with `init`
 * (default true), initializes it (`initSize` workers, clamped by the pool). Returns
 * { pool, pids, note, close }:
 * - `pids` holds every worker pid the pool has shown (trackPids: worker-exited
 *   events, and samples after initialize, at close and whenever `note()` is called);
 *   each is also added to `seen` if given (a file-wide set for finalGoneTest);
 * - `close()` shuts the pool down immediately and asserts that every one of those
 *   pids is gone and no <defunct> child is left. It runs once: t.after calls it
 *   when the test ends, so every pool is cleaned up whether or not the test did.
 */
async function openPool(t, config = {}, { seen, init = true, initSize } = {}) {
  const { createPool } = require(ROOT);
  const pool = createPool({ ...POOL_DEFAULTS, ...config });
  const pids = new Set();
  const note = trackPids(pool, pids);
  let closing = null;
  const close = () => {
    closing ??= (async () => {
      note();
      if (seen) for (const pid of pids) seen.add(pid);
      await closePool(pool, [...pids], { ms: CLOSE_MS });
    })();
    return closing;
  };
  t.after(close);
  if (init) {
    await within(pool.initialize(initSize), 30000, 'initialize');
    note();
  }
  return { pool, pids, note, close };
}

/** Registers a final test asserting that no worker seen in this file survives. */
function finalGoneTest(test, seen, timeoutMs = 15000) {
  test('no worker process seen in this file is still alive (no zombies either)', async () => {
    assert.ok(seen.size > 0, 'the file saw some worker pids');
    await assertGone(seen, timeoutMs);
  });
}

/**
 * Shuts `pool` down (immediately by default), then asserts that every pid in `pids`
 * (plus the pool's current ones) is gone and that no <defunct> child is left.
 * Safe to call on a pool that is already shut down.
 */
async function closePool(pool, pids = [], { graceful = false, ms = 8000 } = {}) {
  if (!pool) return;
  let current = [];
  try {
    current = pool.getWorkerPids();
  } catch {
    /* already closed */
  }
  const all = [...pids, ...current];
  await within(pool.shutdown(graceful), ms, 'pool.shutdown()');
  await assertGone(all, ms);
  await assertNoDefunct();
}

/** Number of workers in state 'ready' or 'busy' (alive and serving). */
function serving(pool) {
  return pool.getAllWorkersStatus().filter((w) => w.state === 'ready' || w.state === 'busy').length;
}

// ---------------------------------------------------------------------------------
// Commands, temp dirs, sockets (operations tests)

/** Runs a command; resolves { code, signal, stdout, stderr }; SIGKILLs it after timeoutMs. */
function run(cmd, args, { env = process.env, timeoutMs = 30000, input, cwd } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, cwd, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d;
    });
    if (input !== undefined) child.stdin.end(input);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs the worker-pool CLI. */
function cli(args, opts) {
  return run(process.execPath, [CLI, ...args], opts);
}

/** A fresh temp dir with a short path (Unix socket paths are limited to 107 bytes). */
function tempDir(prefix = 'wpops-') {
  const base = fs.existsSync('/tmp') ? '/tmp' : os.tmpdir();
  return fs.mkdtempSync(path.join(base, prefix));
}

/**
 * The environment of one daemon whose files (PID file, socket, logs, FIFOs) live in
 * `dir`, with POOL_SIZE=2, then `overrides`. NODE_OPTIONS is dropped: the test
 * runner's flags must not reach the daemon.
 */
function daemonEnv(dir, overrides = {}) {
  const env = {
    ...process.env,
    PID_FILE: path.join(dir, 'pool.pid'),
    SOCKET_PATH: path.join(dir, 'pool.sock'),
    LOG_DIR: path.join(dir, 'logs'),
    FIFO_DIR: path.join(dir, 'fifo'),
    POOL_SIZE: '2',
    ...overrides,
  };
  delete env.NODE_OPTIONS;
  return env;
}

/** The TCP port process `pid` listens on (its socket inodes found in /proc/net/tcp), or null. */
function listeningPort(pid) {
  const inodes = new Set();
  for (const f of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${f}`));
      if (m) inodes.add(m[1]);
    } catch {
      /* closed meanwhile */
    }
  }
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length > 9 && cols[3] === '0A' && inodes.has(cols[9])) return parseInt(cols[1].split(':')[1], 16);
  }
  return null;
}

/** Leaves a socket file nobody listens on (its process was SIGKILLed). */
async function makeStaleSocket(socketPath) {
  const code = `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`;
  await run(process.execPath, ['-e', code], { timeoutMs: 10000 });
  if (!fs.lstatSync(socketPath).isSocket()) throw new Error('no stale socket was left');
}

/** The permission bits of a file. */
function fileMode(p) {
  return fs.statSync(p).mode & 0o777;
}

/**
 * A pool serving the shared queue `name` at `url` ("a machine" of the shared-queue
 * suites): two queue-worker.js workers, no local retries; its worker pids (and those of
 * replacements) go into `seen`; shut down when the test ends.
 */
async function servingMachine(t, { url, name, seen, extra = {}, queue = {} }) {
  const { createWorkerPool } = require(ROOT);
  const pool = await createWorkerPool({
    poolSize: 2,
    workerScript: fixture('queue-worker.js'),
    logLevel: 'silent',
    maxTaskRetries: 0,
    ...extra,
    queue: { url, name, ...queue },
  });
  for (const pid of pool.getWorkerPids()) seen.add(pid);
  pool.on('worker-exited', (e) => seen.add(e.pid));
  t.after(() => within(pool.shutdown(false), 30000, 'pool shutdown'));
  return pool;
}

module.exports = {
  servingMachine,
  // paths
  ROOT,
  DAEMON_SH,
  CLI,
  fixture,
  // time
  sleep,
  mulberry32,
  waitFor,
  within,
  settle,
  // processes
  procStat,
  procState,
  isGone,
  pidState,
  isAlive,
  assertGone,
  childrenOf,
  defunctChildren,
  assertNoDefunct,
  // pools
  POOL_DEFAULTS,
  TEST_TIMEOUT_MS,
  test,
  trackPids,
  openPool,
  finalGoneTest,
  closePool,
  serving,
  // commands
  run,
  cli,
  tempDir,
  daemonEnv,
  listeningPort,
  makeStaleSocket,
  fileMode,
};
