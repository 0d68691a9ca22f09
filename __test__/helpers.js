'use strict';
// Shared helpers for the pool's node:test suites: polling, fixtures, pool setup that
// always shuts down, and process-liveness checks (a zombie counts as NOT gone).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');

/** Absolute path of a fixture script in __test__/fixtures. */
function fixture(name) {
  return path.join(__dirname, 'fixtures', name);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls fn() (sync or async) until it returns a truthy value; resolves with that
 * value. Rejects after timeoutMs with `message` (or the last error fn threw).
 */
async function waitFor(fn, timeoutMs = 10000, { interval = 10, message = 'condition' } = {}) {
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
      const why = lastError ? ` (last error: ${lastError.message})` : '';
      throw new Error(`waitFor timed out after ${timeoutMs} ms waiting for ${message}${why}`);
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

/** The one-letter state of /proc/<pid>/stat, or null when the process does not exist. */
function procState(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const close = text.lastIndexOf(')');
  return text.slice(close + 2, close + 3) || '?';
}

/** True only when the pid no longer exists at all (a zombie still exists). */
function isGone(pid) {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    if (e.code === 'ESRCH') return true;
    return false; // EPERM: it exists
  }
}

/** Waits until every pid is gone (not alive and not a zombie); fails naming the rest. */
async function assertGone(pids, timeoutMs = 10000) {
  const list = [...pids];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = list.filter((pid) => !isGone(pid));
    if (left.length === 0) return;
    if (Date.now() >= deadline) {
      const desc = left.map((pid) => `${pid} (state ${procState(pid) ?? 'gone?'})`).join(', ');
      assert.fail(`worker processes still present after ${timeoutMs} ms: ${desc}`);
    }
    await sleep(20);
  }
}

/**
 * Remembers every worker pid a pool shows (polled, plus worker-exited events) in
 * `seen`; returns a function that takes a last sample and stops polling.
 */
function trackPids(pool, seen) {
  const grab = () => {
    try {
      for (const pid of pool.getWorkerPids()) seen.add(pid);
    } catch {
      /* shut down */
    }
  };
  grab();
  const timer = setInterval(grab, 15);
  timer.unref();
  pool.on('worker-exited', (e) => {
    if (e && Number.isInteger(e.pid) && e.pid > 0) seen.add(e.pid);
  });
  return () => {
    grab();
    clearInterval(timer);
  };
}

const SILENT = { logLevel: 'silent' };

/** Per-test time limit: a hung pool operation fails its test instead of the run. */
const TEST_TIMEOUT_MS = 90000;

/** node:test's test() with a time limit (the pool is shut down by t.after either way). */
function test(name, fn) {
  return require('node:test')(name, { timeout: TEST_TIMEOUT_MS }, fn);
}

/**
 * Builds a pool (createPool, so listeners can be attached before initialize),
 * tracks its pids in `seen`, and shuts it down (immediately) when the test ends.
 * With `init` (default true) it also initializes it.
 */
async function makePool(t, config = {}, { seen, init = true, initSize } = {}) {
  const { createPool } = require(ROOT);
  const pool = createPool({ ...SILENT, ...config });
  const stop = seen ? trackPids(pool, seen) : () => {};
  t.after(async () => {
    stop();
    try {
      await within(pool.shutdown(false), 20000, 'shutdown in t.after');
    } finally {
      stop();
    }
  });
  if (init) {
    await within(pool.initialize(initSize), 30000, 'initialize');
    if (seen) for (const pid of pool.getWorkerPids()) seen.add(pid);
  }
  return pool;
}

/** Registers a final test asserting that no worker seen in this file survives. */
function finalGoneTest(test, seen, timeoutMs = 15000) {
  test('no worker process seen in this file is still alive (no zombies either)', async () => {
    assert.ok(seen.size > 0, 'the file saw some worker pids');
    await assertGone(seen, timeoutMs);
  });
}

module.exports = {
  test,
  TEST_TIMEOUT_MS,
  ROOT,
  fixture,
  sleep,
  waitFor,
  within,
  settle,
  procState,
  isGone,
  assertGone,
  trackPids,
  makePool,
  finalGoneTest,
  SILENT,
};
