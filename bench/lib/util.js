'use strict';
// Small helpers shared by the benchmark driver and adapters.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { performance } = require('perf_hooks');

const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// Nearest-rank percentile of an already sorted array.
function percentileSorted(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------- /proc helpers (Linux)
const HAS_PROC = fs.existsSync('/proc/self/stat');
const CLK_TCK = 100; // Linux USER_HZ; constant on all mainstream kernels

function readStat(pathname) {
  // Returns { ppid, state, utime, stime } or null. The comm field may contain spaces/parens.
  let s;
  try { s = fs.readFileSync(pathname, 'utf8'); } catch { return null; }
  const close = s.lastIndexOf(')');
  const f = s.slice(close + 2).split(' ');
  // f[0] = state (field 3), f[1] = ppid (4), f[11] = utime (14), f[12] = stime (15)
  return { state: f[0], ppid: Number(f[1]), utime: Number(f[11]), stime: Number(f[12]) };
}

// All live (non-zombie) descendants of `root` (default: this process).
function descendants(root = process.pid) {
  if (!HAS_PROC) return [];
  const byParent = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(`/proc/${d}/stat`);
    if (!st) continue;
    if (!byParent.has(st.ppid)) byParent.set(st.ppid, []);
    byParent.get(st.ppid).push({ pid: Number(d), state: st.state });
  }
  const out = [];
  const stack = [root];
  while (stack.length) {
    const p = stack.pop();
    for (const c of byParent.get(p) || []) {
      if (c.state !== 'Z' && c.state !== 'X') out.push(c.pid);
      stack.push(c.pid);
    }
  }
  return out;
}

// CPU time (ms) of a whole process (all its threads), from /proc/<pid>/stat; 10 ms resolution.
function procCpuMs(pid) {
  const st = readStat(`/proc/${pid}/stat`);
  return st ? ((st.utime + st.stime) * 1000) / CLK_TCK : null;
}

// CPU time (ms) of a process by thread: `js` (the main thread, tid = pid), `core`
// (this package's core threads, named worker-pool-core; /proc shows 15 characters)
// and `other` (V8's and libuv's threads); 10 ms resolution per thread.
function threadCpuMs(pid) {
  const out = { js: 0, core: 0, other: 0 };
  let tids;
  try { tids = fs.readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    let comm = '';
    try { comm = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(); } catch { continue; }
    const st = readStat(`/proc/${pid}/task/${tid}/stat`);
    if (!st) continue;
    const ms = ((st.utime + st.stime) * 1000) / CLK_TCK;
    if (Number(tid) === pid) out.js += ms;
    else if (comm.startsWith('worker-pool-cor')) out.core += ms;
    else out.other += ms;
  }
  return out;
}

// CPU time (ms) of this process's main (JS) thread only.
// Uses process.threadCpuUsage() when the runtime has it (µs resolution),
// otherwise /proc/self/task/<pid>/stat (10 ms resolution).
function mainThreadCpuMs() {
  if (typeof process.threadCpuUsage === 'function') {
    const u = process.threadCpuUsage();
    return (u.user + u.system) / 1000;
  }
  return procCpuMs(`${process.pid}/task/${process.pid}`);
}
const mainThreadCpuSource = typeof process.threadCpuUsage === 'function'
  ? 'process.threadCpuUsage()'
  : (HAS_PROC ? `/proc/self/task/<pid>/stat (process.threadCpuUsage unavailable in node ${process.version}; 10 ms tick resolution)` : 'unavailable');

// Wait until the given descendants are gone; SIGKILL leftovers. Returns the pids that had to be killed.
async function reapDescendants(timeoutMs = 10000) {
  const deadline = now() + timeoutMs;
  let left = descendants();
  while (left.length && now() < deadline) {
    await sleep(50);
    left = descendants();
  }
  for (const pid of left) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  if (left.length) await sleep(100);
  return left;
}

function getGc() {
  if (typeof global.gc === 'function') return global.gc;
  try {
    require('v8').setFlagsFromString('--expose-gc');
    return require('vm').runInNewContext('gc');
  } catch {
    return null;
  }
}

// Version of an installed package; reads package.json from disk because some packages'
// "exports" maps do not expose it to require().
function packageVersion(name) {
  try {
    let dir = path.dirname(require.resolve(name));
    for (;;) {
      const f = path.join(dir, 'package.json');
      if (fs.existsSync(f)) {
        const pj = JSON.parse(fs.readFileSync(f, 'utf8'));
        if (pj.name === name) return pj.version;
      }
      const up = path.dirname(dir);
      if (up === dir) return 'n/a';
      dir = up;
    }
  } catch {
    return 'n/a';
  }
}

function machine() {
  const cpus = os.cpus();
  const pkgVersion = packageVersion;
  return {
    cpu: cpus.length ? cpus[0].model : 'unknown',
    cores: cpus.length,
    totalMemGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    kernel: typeof os.version === 'function' ? os.version() : 'n/a',
    arch: os.arch(),
    loadavgAtStart: os.loadavg().map((x) => +x.toFixed(2)),
    peers: { piscina: pkgVersion('piscina'), poolifier: pkgVersion('poolifier'), workerpool: pkgVersion('workerpool') },
  };
}

/**
 * Walks command-line arguments: calls `onFlag(flag, value, arg)` for each, where
 * `value()` is the flag's value (`--flag=v` or the next argument; throws when there is
 * none). Both benchmark drivers parse their flags with it.
 */
function eachFlag(argv, onFlag) {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const [flag, inline] = eq >= 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const value = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      return argv[++i];
    };
    onFlag(flag, value, a);
  }
}

/** A comma-separated list argument as trimmed, non-empty items. */
function listArg(v) {
  return String(v || '').split(',').map((s) => s.trim()).filter(Boolean);
}

module.exports = {
  threadCpuMs,
  eachFlag, listArg,
  now, sleep, median, percentileSorted, withTimeout,
  descendants, procCpuMs, mainThreadCpuMs, mainThreadCpuSource, reapDescendants, getGc, machine, packageVersion, HAS_PROC,
};
