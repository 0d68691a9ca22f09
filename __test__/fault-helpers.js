'use strict';

// Helpers for the fault-injection tests (lifecycle.test.js, supervision.test.js).
// Process checks read /proc directly: these tests run on Linux only.

const fs = require('node:fs');
const path = require('node:path');
const assert = require('node:assert/strict');

const ROOT = path.join(__dirname, '..');

/** Absolute path of a file in __test__/fixtures. */
function fixture(name) {
  return path.join(__dirname, 'fixtures', name);
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `fn` (sync or async) until it returns a truthy value and resolves with it.
 * Rejects after `ms` with `what` (a string or a function giving one) in the message.
 */
async function waitFor(fn, ms = 5000, { interval = 20, what } = {}) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
    } catch (e) {
      last = e;
      if (Date.now() >= deadline) throw e;
    }
    if (last && !(last instanceof Error)) return last;
    if (Date.now() >= deadline) {
      const desc = typeof what === 'function' ? what() : what || String(fn);
      throw new Error(`waitFor: condition not met within ${ms} ms: ${desc}`);
    }
    await delay(interval);
  }
}

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
  return { pid: Number(pid), comm, state: rest[0], ppid: Number(rest[1]) };
}

/** 'alive' | 'zombie' | 'gone' */
function pidState(pid) {
  const s = procStat(pid);
  if (!s) return 'gone';
  return s.state === 'Z' ? 'zombie' : 'alive';
}

function isAlive(pid) {
  return pidState(pid) === 'alive';
}

/**
 * Waits up to `ms` for every pid to disappear from /proc. Fails naming each pid that
 * is still alive or still a zombie (an exited child nobody reaped) at the deadline.
 */
async function assertGone(pids, ms = 3000) {
  const list = [...new Set(pids)].filter((p) => Number.isInteger(p) && p > 0);
  const deadline = Date.now() + ms;
  for (;;) {
    const left = list.map((pid) => ({ pid, state: pidState(pid) })).filter((x) => x.state !== 'gone');
    if (left.length === 0) return;
    if (Date.now() >= deadline) {
      const desc = left.map((x) => {
        const s = procStat(x.pid);
        return `${x.pid} ${x.state}${s ? ` (comm ${s.comm}, state ${s.state}, ppid ${s.ppid})` : ''}`;
      });
      assert.fail(`process(es) not gone after ${ms} ms: ${desc.join('; ')}`);
    }
    await delay(25);
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
    await delay(25);
  }
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
  await withTimeout(pool.shutdown(graceful), ms, 'pool.shutdown()');
  await assertGone(all, ms);
  await assertNoDefunct();
}

/** Races `promise` against a timer; rejects with a message naming `what`. */
function withTimeout(promise, ms, what = 'operation') {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Resolves with { ok, value | error } so a test can inspect how a promise settled. */
function settle(promise) {
  return promise.then(
    (value) => ({ ok: true, value }),
    (error) => ({ ok: false, error }),
  );
}

/** Number of workers in state 'ready' or 'busy' (alive and serving). */
function serving(pool) {
  return pool.getAllWorkersStatus().filter((w) => w.state === 'ready' || w.state === 'busy').length;
}

module.exports = {
  ROOT,
  fixture,
  delay,
  waitFor,
  procStat,
  pidState,
  isAlive,
  assertGone,
  childrenOf,
  defunctChildren,
  assertNoDefunct,
  closePool,
  withTimeout,
  settle,
  serving,
};
