#!/usr/bin/env node
'use strict';
// Benchmark driver: this package vs poolifier (cluster), workerpool (process), piscina (threads)
// and a raw child_process.fork baseline, interleaved over several rounds, medians reported.
//
//   node bench/run.js [--rounds N] [--quick] [--only a,b] [--scenario s,t] [--json out.json]
//                     [--baseline name] [--memory] [--other-root DIR]
//
// See bench/README.md for what each scenario measures. Progress goes to stderr, the final
// markdown report to stdout.

const path = require('path');
const fs = require('fs');
const { fork } = require('child_process');
const {
  eachFlag, listArg, now, sleep, median, percentileSorted, withTimeout,
  descendants, procCpuMs, mainThreadCpuMs, mainThreadCpuSource, reapDescendants, getGc, machine,
} = require('./lib/util');

const ADAPTER_NAMES = ['this', 'this-rr', 'this-nospin', 'this-at', 'raw', 'poolifier', 'workerpool', 'piscina'];

/** The adapters run when --only is not given: this-at only when it has a checkout to load. */
function defaultAdapters() {
  return ADAPTER_NAMES.filter((n) => n !== 'this-at' || process.env.BENCH_OTHER_ROOT);
}

// ------------------------------------------------------------------------------------ CLI
function usage() {
  return `Usage: node bench/run.js [options]

  --rounds N           rounds per scenario (default 3; 1 with --quick or --memory)
  --quick              small task counts, for a smoke run
  --only a,b           adapters to run, of ${ADAPTER_NAMES.join(', ')}
                       (default: all, this-at only with --other-root; with --memory: this)
  --scenario s,t       scenario groups or cells: burst, latency, mixed, ready, payload, fib, cpu
                       (or cell ids such as burst-4, payload-1MB; default: all);
                       'memory' is the same as --memory; 'distributed' runs
                       bench/distributed.js (BullMQ on a private redis-server; only
                       when redis-server is on PATH)
  --baseline name      adapter the ratios are computed against (default: this)
  --json file          also write all raw samples and medians as JSON
  --other-root DIR     the checkout (built) that adapter this-at loads, e.g. a worktree
                       of an older commit; the same as BENCH_OTHER_ROOT=DIR
  --memory             only the parent RSS after 10,000 ... 1,000,000 tasks (one fresh
                       node process per adapter and round); a full run (no --scenario)
                       ends with it for every pool, one round
  -h, --help           this text
`;
}

function parseArgs(argv) {
  const o = { rounds: null, quick: false, only: null, scenario: null, json: null, memory: false, baseline: 'this', memoryChild: null };
  eachFlag(argv, (flag, val, a) => {
    switch (flag) {
      case '--rounds': o.rounds = Number(val()); if (!(o.rounds >= 1)) throw new Error('--rounds must be >= 1'); break;
      case '--quick': o.quick = true; break;
      case '--only': o.only = listArg(val()); break;
      case '--scenario': case '--scenarios': o.scenario = listArg(val()); break;
      case '--json': o.json = val(); break;
      case '--memory': o.memory = true; break;
      case '--baseline': o.baseline = val(); break;
      // Set in the environment so the memory children (and this-at's workers) see it too.
      case '--other-root': process.env.BENCH_OTHER_ROOT = path.resolve(val()); break;
      case '--memory-child': o.memoryChild = val(); break; // internal
      case '-h': case '--help': process.stdout.write(usage()); process.exit(0); break;
      default: throw new Error(`unknown argument ${a}\n\n${usage()}`);
    }
  });
  for (const n of o.only || []) if (!ADAPTER_NAMES.includes(n)) throw new Error(`unknown adapter "${n}" (known: ${ADAPTER_NAMES.join(', ')})`);
  return o;
}

// ------------------------------------------------------------------------------ counts
const FULL = {
  warmup: 20000,
  burst: 20000,
  // p99.9 needs enough samples: 10,000 puts ten tasks above it.
  latency: 10000,
  latencyWarmup: 500,
  // Mixed load: one-at-a-time no-op tasks while `mixedBackground` tasks of `burnMs` of CPU
  // are kept in flight on the other workers.
  mixed: 2000,
  mixedWarmup: 100,
  mixedBackground: 2,
  burnMs: 5,
  idleMs: 500,
  payload: { '100B': [100, 10000], '10KB': [10 * 1024, 5000], '1MB': [1024 * 1024, 200] },
  fibN: 27,
  fib: 400,
  cpu: 10000,
  serveTimeoutMs: 30000,
  cellTimeoutMs: 180000,
  memoryCheckpoints: [10000, 100000, 250000, 500000, 1000000],
  memoryWindow: 5000,
};
const QUICK = {
  ...FULL,
  warmup: 500,
  burst: 5000,
  latency: 1000,
  latencyWarmup: 50,
  mixed: 300,
  mixedWarmup: 20,
  idleMs: 200,
  payload: { '100B': [100, 1000], '10KB': [10 * 1024, 500], '1MB': [1024 * 1024, 20] },
  fib: 100,
  cpu: 10000, // 10 ms /proc tick resolution: fewer tasks would make the numbers meaningless
  cellTimeoutMs: 60000,
  memoryCheckpoints: [10000, 100000],
};

// ----------------------------------------------------------------------------- metrics
const fmtInt = (v) => Math.round(v).toLocaleString('en-US');
const fmtMs = (v) => (v >= 100 ? fmtInt(v) : v.toFixed(1));
const M = {
  tps: { key: 'tps', label: 'tasks/s', better: 'higher', fmt: fmtInt },
  p50: { key: 'p50', label: 'p50 µs', better: 'lower', fmt: fmtInt },
  p99: { key: 'p99', label: 'p99 µs', better: 'lower', fmt: fmtInt },
  p999: { key: 'p999', label: 'p99.9 µs', better: 'lower', fmt: fmtInt },
  cpuPerTask: { key: 'cpuUsPerTask', label: 'parent CPU µs / task', better: 'lower', fmt: (v) => v.toFixed(1) },
  idleCpu: { key: 'idleCpuMsPerS', label: 'parent CPU while idle, ms / s', better: 'lower', fmt: (v) => v.toFixed(2) },
  readyMs: { key: 'readyMs', label: 'ready signal, ms', better: 'lower', fmt: fmtMs },
  servedMs: { key: 'servedMs', label: 'all 20 workers served, ms', better: 'lower', fmt: fmtMs },
  parentCpu: { key: 'parentCpuMs', label: 'parent CPU ms / 10k tasks (process.cpuUsage)', better: 'lower', fmt: fmtMs },
  mainCpu: { key: 'mainThreadCpuMs', label: 'parent JS-thread CPU ms / 10k tasks', better: 'lower', fmt: fmtMs },
  workersCpu: { key: 'workersCpuMs', label: 'worker processes CPU ms / 10k tasks', better: 'lower', fmt: fmtMs },
  totalCpu: { key: 'totalCpuMs', label: 'parent + workers CPU ms / 10k tasks', better: 'lower', fmt: fmtMs },
};

// ----------------------------------------------------------------------------- helpers
let C = FULL;
const gc = getGc();
const settle = () => { if (gc) gc(); };

function checkEcho(results, from = 0) {
  for (let i = 0; i < results.length; i++) {
    const r = results[i];
    if (!r || r.i !== from + i) throw new Error(`wrong result for task ${from + i}: ${JSON.stringify(r).slice(0, 100)}`);
  }
}

async function burstEcho(h, n, s = 'x') {
  const ps = new Array(n);
  for (let i = 0; i < n; i++) ps[i] = h.run('echo', { i, s });
  return Promise.all(ps);
}

// Send batches of `n` concurrent whoami tasks until every one of the n workers has answered
// at least once (the union over batches reaches n distinct worker ids).
async function serveAll(h, n, t0) {
  const seen = new Set();
  let batches = 0;
  const deadline = now() + C.serveTimeoutMs;
  while (seen.size < n && now() < deadline) {
    const ids = await Promise.all(Array.from({ length: n }, () => h.run('whoami', {})));
    for (const id of ids) seen.add(id);
    batches++;
  }
  return { servedMs: now() - t0, distinct: seen.size, batches, complete: seen.size >= n };
}

// ---------------------------------------------------------------------------- scenarios
async function measureBurst(h) {
  checkEcho(await burstEcho(h, C.warmup));
  settle();
  const N = C.burst;
  const t = now();
  const res = await burstEcho(h, N);
  const ms = now() - t;
  checkEcho(res);
  return { tps: (N / ms) * 1000, ms, tasks: N };
}

// HDR-style latency histogram: bucket upper bounds in µs (the last bucket is open).
const HIST_BOUNDS = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, Infinity];
const HIST_LABELS = ['<10', '10–20', '20–50', '50–100', '100–200', '200–500', '0.5–1 ms', '1–2 ms', '2–5 ms', '5–10 ms', '≥10 ms'];
function histogram(sorted) {
  const counts = new Array(HIST_BOUNDS.length).fill(0);
  let b = 0;
  for (let i = 0; i < sorted.length; i++) {
    while (sorted[i] >= HIST_BOUNDS[b]) b++;
    counts[b]++;
  }
  return counts;
}

// N tasks, each awaited before the next is sent. Also the parent's CPU (all its threads)
// per task over the same loop: a pool that busy-polls for replies shows it here.
async function oneAtATime(h, N, warmup) {
  for (let i = 0; i < warmup; i++) await h.run('echo', { i, s: 'x' });
  settle();
  const lat = new Float64Array(N);
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    const t = now();
    const r = await h.run('echo', { i, s: 'x' });
    lat[i] = (now() - t) * 1000;
    if (!r || r.i !== i) throw new Error(`wrong result for task ${i}`);
  }
  const cpu = process.cpuUsage(cpu0);
  lat.sort();
  return {
    p50: percentileSorted(lat, 50),
    p99: percentileSorted(lat, 99),
    p999: percentileSorted(lat, 99.9),
    max: lat[N - 1],
    hist: histogram(lat),
    cpuUsPerTask: (cpu.user + cpu.system) / N,
    tasks: N,
  };
}

async function measureLatency(h) {
  const r = await oneAtATime(h, C.latency, C.latencyWarmup);
  // The pool open with nothing to do: whatever the parent burns now (timers, polling)
  // it burns all day.
  const cpu0 = process.cpuUsage();
  const t = now();
  await sleep(C.idleMs);
  const cpu = process.cpuUsage(cpu0);
  r.idleCpuMsPerS = (cpu.user + cpu.system) / (now() - t);
  return r;
}

// One-at-a-time no-op tasks while CPU-bound tasks keep other workers busy: a pool must
// not queue the short task behind a long one, and the parent must not take the CPU the
// busy workers need.
async function measureMixed(h) {
  let stop = false;
  let burns = 0;
  const background = async () => {
    while (!stop) {
      if ((await h.run('burn', { ms: C.burnMs })) !== true) throw new Error('wrong burn result');
      burns++;
    }
  };
  const bg = Array.from({ length: C.mixedBackground }, background);
  await sleep(2 * C.burnMs);
  try {
    const r = await oneAtATime(h, C.mixed, C.mixedWarmup);
    r.burns = burns;
    return r;
  } finally {
    stop = true;
    await Promise.all(bg);
  }
}

function measurePayload(key) {
  return async (h) => {
    const [bytes, N] = C.payload[key];
    const s = 'x'.repeat(bytes);
    checkEcho(await burstEcho(h, Math.min(N, 50), s));
    settle();
    const t = now();
    const res = await burstEcho(h, N, s);
    const ms = now() - t;
    checkEcho(res);
    if (res[N - 1].s.length !== bytes) throw new Error('payload came back truncated');
    const tps = (N / ms) * 1000;
    return { tps, mbps: (tps * bytes) / 1e6, ms, tasks: N, bytes };
  };
}

async function measureFib(h, ctx) {
  const expected = fibRef(C.fibN);
  const warm = await Promise.all(Array.from({ length: ctx.cell.size * 2 }, () => h.run('fib', { n: C.fibN })));
  if (warm[0] !== expected) throw new Error(`fib(${C.fibN}) returned ${warm[0]}`);
  settle();
  const N = C.fib;
  const ps = new Array(N);
  const t = now();
  for (let i = 0; i < N; i++) ps[i] = h.run('fib', { n: C.fibN });
  const res = await Promise.all(ps);
  const ms = now() - t;
  if (res.some((r) => r !== expected)) throw new Error('wrong fib result');
  return { tps: (N / ms) * 1000, ms, tasks: N };
}
function fibRef(n) { let a = 0, b = 1; for (let i = 0; i < n; i++) [a, b] = [b, a + b]; return a; }

async function measureCpu(h, ctx) {
  checkEcho(await burstEcho(h, C.warmup));
  settle();
  const N = C.cpu;
  const kids0 = descendants();
  const kidCpu0 = new Map(kids0.map((pid) => [pid, procCpuMs(pid) || 0]));
  const main0 = mainThreadCpuMs();
  const cpu0 = process.cpuUsage();
  const t = now();
  const res = await burstEcho(h, N);
  const wallMs = now() - t;
  const cpu = process.cpuUsage(cpu0);
  const main1 = mainThreadCpuMs();
  let workers = 0;
  for (const pid of new Set([...kids0, ...descendants()])) {
    const c1 = procCpuMs(pid);
    if (c1 !== null) workers += c1 - (kidCpu0.get(pid) || 0);
  }
  checkEcho(res);
  const k = 10000 / N;
  const parent = ((cpu.user + cpu.system) / 1000) * k;
  return {
    parentCpuMs: parent,
    parentUserMs: (cpu.user / 1000) * k,
    parentSystemMs: (cpu.system / 1000) * k,
    mainThreadCpuMs: main0 === null || main1 === null ? null : (main1 - main0) * k,
    workersCpuMs: ctx.adapter.kind === 'thread' ? null : workers * k,
    totalCpuMs: parent + workers * k,
    wallMs,
    tasks: N,
  };
}

async function measureReady(h, ctx) {
  return {
    readyMs: ctx.nativeReady ? ctx.readyMs : null,
    servedMs: ctx.served.servedMs,
    createReturnedMs: ctx.readyMs,
    batches: ctx.served.batches,
  };
}

const CELLS = [
  { id: 'burst-4', group: 'burst', size: 4, title: 'Burst throughput (no-op), 4 workers', metrics: [M.tps], measure: measureBurst },
  { id: 'burst-20', group: 'burst', size: 20, title: 'Burst throughput (no-op), 20 workers', metrics: [M.tps], measure: measureBurst },
  { id: 'latency-4', group: 'latency', size: 4, title: 'One-at-a-time latency, 4 workers', metrics: [M.p50, M.p99, M.p999, M.cpuPerTask, M.idleCpu], measure: measureLatency },
  { id: 'latency-20', group: 'latency', size: 20, title: 'One-at-a-time latency, 20 workers', metrics: [M.p50, M.p99, M.p999, M.cpuPerTask, M.idleCpu], measure: measureLatency },
  { id: 'mixed-4', group: 'mixed', size: 4, title: 'One-at-a-time latency while 2 workers run 5 ms CPU tasks, 4 workers', metrics: [M.p50, M.p99, M.p999], measure: measureMixed },
  { id: 'ready-20', group: 'ready', size: 20, title: 'Time until 20 workers are ready', metrics: [M.readyMs, M.servedMs], measure: measureReady },
  { id: 'payload-100B', group: 'payload', size: 4, title: 'Payload 100 B, 4 workers', metrics: [M.tps], measure: measurePayload('100B') },
  { id: 'payload-10KB', group: 'payload', size: 4, title: 'Payload 10 KB, 4 workers', metrics: [M.tps], measure: measurePayload('10KB') },
  { id: 'payload-1MB', group: 'payload', size: 4, title: 'Payload 1 MB, 4 workers', metrics: [M.tps], measure: measurePayload('1MB') },
  { id: 'fib-4', group: 'fib', size: 4, title: 'CPU-bound fib(27), 4 workers', metrics: [M.tps], measure: measureFib },
  { id: 'cpu-4', group: 'cpu', size: 4, title: 'Parent CPU per 10,000 no-op tasks, 4 workers', metrics: [M.parentCpu, M.mainCpu, M.workersCpu, M.totalCpu], measure: measureCpu },
];

// ------------------------------------------------------------------------------ running
function loadAdapter(name) {
  const mod = require(`./adapters/${name}.js`);
  let version = 'n/a';
  try { version = mod.version(); } catch { /* not installed / not built */ }
  return { mod, name, label: mod.label || name, kind: mod.kind, readySignal: mod.readySignal, version, groups: mod.groups || null };
}

const errMsg = (e) => String((e && e.message) || e).split('\n')[0].slice(0, 200);

async function runCell(adapter, cell) {
  const out = {};
  const t0 = now();
  let h;
  try {
    h = await withTimeout(Promise.resolve().then(() => adapter.mod.create(cell.size, { workerKind: adapter.kind })), 60000, 'create()');
  } catch (e) {
    const leaked = await reapDescendants(5000);
    return { createError: errMsg(e), leaked: leaked.length || undefined };
  }
  const readyMs = now() - t0;
  try {
    const served = await serveAll(h, cell.size, t0);
    out.served = served;
    if (!served.complete) out.warning = `only ${served.distinct}/${cell.size} distinct workers answered within ${C.serveTimeoutMs} ms`;
    Object.assign(out, await withTimeout(cell.measure(h, { cell, adapter, readyMs, served, nativeReady: !!h.nativeReady }), C.cellTimeoutMs, cell.id));
    out.liveProcesses = descendants().length;
    if (adapter.kind === 'process' && out.liveProcesses > cell.size) {
      out.warning = `${out.warning ? `${out.warning}; ` : ''}${out.liveProcesses} processes alive at the end of the measurement (pool size ${cell.size})`;
    }
  } catch (e) {
    out.error = errMsg(e);
  } finally {
    const tc = now();
    try {
      await withTimeout(Promise.resolve().then(() => h.close()), 15000, 'close()');
    } catch (e) {
      out.closeError = errMsg(e);
    }
    out.closeMs = now() - tc;
    const leaked = await reapDescendants(10000);
    if (leaked.length) out.leaked = leaked.length;
  }
  return out;
}

function describe(cell, r) {
  if (r.createError) return `create failed: ${r.createError}`;
  if (r.error) return `ERROR: ${r.error}`;
  const parts = cell.metrics.map((m) => `${m.label}=${r[m.key] == null ? '—' : m.fmt(r[m.key])}`);
  if (r.warning) parts.push(`WARNING: ${r.warning}`);
  if (r.leaked) parts.push(`LEAKED ${r.leaked} process(es)`);
  return parts.join('  ');
}

async function runMain(opts) {
  const rounds = opts.rounds || (opts.quick ? 1 : 3);
  const names = opts.only || defaultAdapters();
  const adapters = names.map(loadAdapter);
  const cells = CELLS.filter((c) => !opts.scenario || opts.scenario.includes(c.group) || opts.scenario.includes(c.id));
  if (cells.length === 0) throw new Error(`no scenario matches ${opts.scenario.join(',')}`);

  const results = {}; // cell id -> adapter name -> [per-round result]
  const unavailable = {}; // adapter name -> reason
  const everOk = new Set();
  for (const c of cells) { results[c.id] = {}; for (const a of adapters) results[c.id][a.name] = []; }

  const started = Date.now();
  const mach = machine(); // before the run, so the load average is the one the run started with
  log(`bench: ${rounds} round(s), ${opts.quick ? 'quick' : 'full'} counts, adapters: ${names.join(', ')}, scenarios: ${cells.map((c) => c.id).join(', ')}`);
  const stray = descendants();
  if (stray.length) log(`note: ${stray.length} child process(es) already running before the benchmark`);

  for (let round = 0; round < rounds; round++) {
    for (let ci = 0; ci < cells.length; ci++) {
      const cell = cells[ci];
      // Rotate the adapter order per round and per cell so nobody always runs first/last.
      const shift = (round + ci) % adapters.length;
      const order = adapters.slice(shift).concat(adapters.slice(0, shift));
      for (const a of order) {
        if (unavailable[a.name]) continue;
        if (a.groups && !a.groups.includes(cell.group)) continue;
        const r = await runCell(a, cell);
        r.round = round + 1;
        if (r.createError && !everOk.has(a.name)) {
          unavailable[a.name] = r.createError;
          log(`[${round + 1}/${rounds}] ${cell.id.padEnd(13)} ${a.name.padEnd(10)} unavailable: ${r.createError} (skipped from now on)`);
          continue;
        }
        if (!r.createError) everOk.add(a.name);
        results[cell.id][a.name].push(r);
        log(`[${round + 1}/${rounds}] ${cell.id.padEnd(13)} ${a.name.padEnd(10)} ${describe(cell, r)}`);
        await sleep(100);
      }
    }
  }

  const medians = {};
  for (const c of cells) {
    medians[c.id] = {};
    for (const a of adapters) {
      const ok = results[c.id][a.name].filter((r) => !r.error && !r.createError);
      const m = { rounds: ok.length };
      for (const met of c.metrics) m[met.key] = median(ok.map((r) => r[met.key]));
      if (c.group === 'payload') m.mbps = median(ok.map((r) => r.mbps));
      if (ok.length && ok[0].hist) m.hist = ok[0].hist.map((_, b) => ok.reduce((sum, r) => sum + r.hist[b], 0));
      medians[c.id][a.name] = m;
    }
  }

  const report = renderReport({ opts, rounds, adapters, cells, results, medians, unavailable, mach, elapsedS: (Date.now() - started) / 1000 });
  process.stdout.write(report);

  let json = null;
  if (opts.json) {
    json = {
      machine: mach,
      config: { rounds, quick: opts.quick, counts: C, baseline: opts.baseline, mainThreadCpuSource, gcBetweenPhases: !!gc },
      adapters: Object.fromEntries(adapters.map((a) => [a.name, { label: a.label, kind: a.kind, version: a.version, readySignal: a.readySignal, unavailable: unavailable[a.name] || null }])),
      scenarios: Object.fromEntries(cells.map((c) => [c.id, { title: c.title, size: c.size, metrics: c.metrics.map((m) => ({ key: m.key, label: m.label, better: m.better })), medians: medians[c.id], samples: results[c.id] }])),
      markdown: report,
    };
    fs.writeFileSync(path.resolve(opts.json), JSON.stringify(json, null, 2));
    log(`wrote ${opts.json}`);
  }
  const leftover = await reapDescendants(5000);
  if (leftover.length) log(`WARNING: ${leftover.length} child process(es) were still alive at the end and were killed`);
  return json;
}

// ------------------------------------------------------------------------------ report
function machineLine(mach) {
  return `${mach.cpu}, ${mach.cores} cores, ${mach.totalMemGiB} GiB RAM, Node ${mach.node}, ${mach.os} (${mach.kernel}), ${mach.arch}`;
}

function renderReport({ opts, rounds, adapters, cells, results, medians, unavailable, mach, elapsedS }) {
  const base = opts.baseline;
  const baseAdapter = adapters.find((a) => a.name === base);
  const baseLabel = baseAdapter ? baseAdapter.label : base;
  const L = [];
  L.push('## Benchmark results', '');
  L.push(`- **Machine:** ${machineLine(mach)}; load average at start ${mach.loadavgAtStart.join(' / ')}`);
  L.push(`- **Run:** ${new Date().toISOString().slice(0, 10)}, ${opts.quick ? '`--quick` (small counts)' : 'full counts'}, median of ${rounds} round(s), adapters interleaved (order rotated per round and scenario), ${Math.round(elapsedS)} s total`);
  L.push(`- **Versions:** ${adapters.map((a) => `${a.label} ${a.version}`).join(', ')}`);
  L.push(`- Cells show the median; \`(1.23×)\` is that column's value ÷ the **${baseLabel}** value. ↑ = higher is better, ↓ = lower is better.`);
  L.push('');
  const head = ['Scenario', 'Metric', ...adapters.map((a) => a.label)];
  L.push(`| ${head.join(' | ')} |`);
  L.push(`|${['---', '---', ...adapters.map(() => '---:')].join('|')}|`);
  for (const c of cells) {
    for (const met of c.metrics) {
      const row = [c.title, `${met.label} ${met.better === 'higher' ? '↑' : '↓'}`];
      const bv = medians[c.id][base] && medians[c.id][base][met.key];
      for (const a of adapters) {
        if (unavailable[a.name]) { row.push('unavailable'); continue; }
        const samples = results[c.id][a.name];
        const v = medians[c.id][a.name][met.key];
        if (v == null) {
          const err = samples.find((r) => r.error || r.createError);
          let na = '—';
          if (met.key === 'readyMs') na = 'n/a (no signal)';
          if (met.key === 'workersCpuMs' && a.kind === 'thread') na = 'n/a (in parent)';
          if (a.groups && !a.groups.includes(c.group)) na = 'n/a';
          row.push(err ? 'error' : na);
          continue;
        }
        let cell = met.fmt(v);
        if (a.name !== base && bv != null && bv > 0) cell += ` (${(v / bv).toFixed(2)}×)`;
        row.push(cell);
      }
      L.push(`| ${row.join(' | ')} |`);
    }
  }
  L.push('');

  // Latency histograms: how many tasks fell in each bucket, all rounds together.
  for (const c of cells.filter((x) => adapters.some((a) => medians[x.id][a.name].hist))) {
    L.push(`**${c.title}**: tasks per latency bucket (µs unless marked), all rounds together`, '');
    L.push(`| pool | ${HIST_LABELS.join(' | ')} |`);
    L.push(`|---|${HIST_LABELS.map(() => '---:').join('|')}|`);
    for (const a of adapters) {
      const hst = medians[c.id][a.name].hist;
      if (hst) L.push(`| ${a.label} | ${hst.map((n) => n.toLocaleString('en-US')).join(' | ')} |`);
    }
    L.push('');
  }

  const notes = [];
  if (!baseAdapter || unavailable[base]) notes.push(`Ratios omitted: baseline \`${base}\` was ${baseAdapter ? 'unavailable' : 'not selected'} (choose another with \`--baseline raw\`).`);
  for (const a of adapters) if (unavailable[a.name]) notes.push(`**${a.label}**: unavailable: ${unavailable[a.name]}`);
  const payloadCells = cells.filter((c) => c.group === 'payload');
  if (payloadCells.length) {
    const parts = payloadCells.map((c) => `${c.id.slice(8)}: ${adapters.filter((a) => medians[c.id][a.name].mbps != null).map((a) => `${a.label} ${medians[c.id][a.name].mbps.toFixed(1)}`).join(', ')}`);
    notes.push(`Payload one-way MB/s: ${parts.join('; ')}.`);
    notes.push(`Payload task counts: ${Object.entries(C.payload).map(([k, [, n]]) => `${k} × ${n.toLocaleString('en-US')}`).join(', ')}.`);
  }
  if (cells.some((c) => c.group === 'ready')) {
    notes.push('Readiness: "ready signal" = construction → the pool\'s own ready signal; "all 20 workers served" = construction → every one of the 20 workers has answered at least one task (batches of 20 concurrent tasks, repeated until 20 distinct worker ids have been seen). Ready signal per pool:');
    for (const a of adapters) notes.push(`  - ${a.label}: ${a.readySignal}`);
  }
  if (cells.some((c) => c.group === 'cpu')) {
    notes.push(`CPU: "parent CPU" is process.cpuUsage() of the benchmark process (all its threads: JS thread, libuv, V8 GC/compiler threads, and for piscina its worker threads, for this package its Rust threads); "JS-thread CPU" is the main thread only, via ${mainThreadCpuSource}; worker-process CPU from /proc/<pid>/stat (10 ms ticks).`);
  }
  const problems = [];
  for (const c of cells) {
    for (const a of adapters) {
      for (const r of results[c.id][a.name]) {
        const p = [];
        if (r.error) p.push(`error: ${r.error}`);
        if (r.createError) p.push(`create failed: ${r.createError}`);
        if (r.warning) p.push(r.warning);
        if (r.closeError) p.push(`close: ${r.closeError}`);
        if (r.leaked) p.push(`${r.leaked} process(es) left after close() (killed)`);
        if (p.length) problems.push(`${c.id} / ${a.name} / round ${r.round}: ${p.join('; ')}`);
      }
    }
  }
  if (problems.length) notes.push('Problems:', ...problems.map((p) => `  - ${p}`));
  else notes.push('No errors; no worker process outlived its pool\'s close().');
  L.push(...notes.map((n) => (n.startsWith('  - ') ? n : `- ${n}`)), '');
  return L.join('\n');
}

// ------------------------------------------------------------------------------ memory mode
async function memoryChild(name) {
  const rss = () => process.memoryUsage().rss / 2 ** 20;
  const heap = () => process.memoryUsage().heapUsed / 2 ** 20;
  const adapter = loadAdapter(name);
  if (gc) gc();
  const out = { rssBeforeMiB: rss() };
  let h;
  try {
    h = await adapter.mod.create(4, { workerKind: adapter.kind });
  } catch (e) {
    await reapDescendants(5000);
    return { unavailable: errMsg(e) };
  }
  try {
    await serveAll(h, 4, now());
    checkEcho(await burstEcho(h, 1000));
    if (gc) gc();
    out.rssReadyMiB = rss();
    out.checkpoints = [];
    const W = C.memoryWindow;
    const total = C.memoryCheckpoints[C.memoryCheckpoints.length - 1];
    let done = 0;
    const t = now();
    for (const cp of C.memoryCheckpoints) {
      while (done < cp) {
        const n = Math.min(W, cp - done);
        const ps = new Array(n);
        for (let i = 0; i < n; i++) ps[i] = h.run('echo', { i: done + i, s: 'x' });
        checkEcho(await Promise.all(ps), done);
        done += n;
      }
      const point = { tasks: cp, rssMiB: rss(), heapUsedMiB: heap(), elapsedS: (now() - t) / 1000 };
      out.checkpoints.push(point);
      log(`  memory ${name}: ${cp.toLocaleString('en-US')} tasks, rss ${point.rssMiB.toFixed(1)} MiB, heapUsed ${point.heapUsedMiB.toFixed(1)} MiB`);
    }
    if (gc) { gc(); gc(); }
    out.rssAfterGcMiB = rss();
    out.heapAfterGcMiB = heap();
    out.tasks = total;
    out.tps = (total / (now() - t)) * 1000;
  } catch (e) {
    out.error = errMsg(e);
  } finally {
    try { await withTimeout(Promise.resolve().then(() => h.close()), 15000, 'close()'); } catch (e) { out.closeError = errMsg(e); }
    const leaked = await reapDescendants(10000);
    if (leaked.length) out.leaked = leaked.length;
  }
  return out;
}

async function runMemory(opts, { names = opts.only || ['this'], rounds = opts.rounds || 1, mergeInto = null } = {}) {
  const res = {};
  for (const name of names) {
    res[name] = [];
    for (let r = 0; r < rounds; r++) {
      log(`memory: ${name} round ${r + 1}/${rounds} (fresh node process)`);
      const args = [__filename, '--memory-child', name, ...(opts.quick ? ['--quick'] : [])];
      const child = fork(args[0], args.slice(1), { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const result = await new Promise((resolve) => {
        let got = null;
        child.on('message', (m) => { got = m; });
        child.on('exit', (code) => resolve(got || { error: `memory child exited with code ${code}` }));
      });
      await reapDescendants(5000);
      res[name].push(result);
      if (result.unavailable) { log(`memory: ${name} unavailable: ${result.unavailable}`); break; }
    }
  }
  const mach = machine();
  const cps = C.memoryCheckpoints;
  const adapters = names.map(loadAdapter);
  const L = ['## Parent memory (RSS, MiB)', ''];
  L.push(`- **Machine:** ${machineLine(mach)}`);
  L.push(`- 4 workers, no-op echo tasks in windows of ${C.memoryWindow.toLocaleString('en-US')} concurrent; one fresh \`node --expose-gc\` process per adapter and round; median of ${rounds} round(s). "ready" = after pool creation + 1,000 warm-up tasks + gc.`);
  L.push('');
  L.push(`| Pool | before pool | ready | ${cps.map((c) => `after ${c.toLocaleString('en-US')}`).join(' | ')} | after gc | heapUsed after gc | tasks/s |`);
  L.push(`|---|${['', '', ...cps, '', '', ''].map(() => '---:').join('|')}|`);
  for (const a of adapters) {
    const rs = res[a.name];
    if (rs[0] && rs[0].unavailable) { L.push(`| ${a.label} | unavailable: ${rs[0].unavailable} |`); continue; }
    const ok = rs.filter((r) => !r.error && r.checkpoints);
    if (!ok.length) { L.push(`| ${a.label} | error: ${(rs[0] && rs[0].error) || 'no result'} |`); continue; }
    const f = (v) => (v == null ? '—' : v.toFixed(1));
    L.push(`| ${a.label} | ${f(median(ok.map((r) => r.rssBeforeMiB)))} | ${f(median(ok.map((r) => r.rssReadyMiB)))} | ${cps.map((_, i) => f(median(ok.map((r) => r.checkpoints[i] && r.checkpoints[i].rssMiB)))).join(' | ')} | ${f(median(ok.map((r) => r.rssAfterGcMiB)))} | ${f(median(ok.map((r) => r.heapAfterGcMiB)))} | ${fmtInt(median(ok.map((r) => r.tps)))} |`);
  }
  const problems = [];
  for (const [name, rs] of Object.entries(res)) rs.forEach((r, i) => {
    if (r.error) problems.push(`${name} round ${i + 1}: error: ${r.error}`);
    if (r.closeError) problems.push(`${name} round ${i + 1}: close: ${r.closeError}`);
    if (r.leaked) problems.push(`${name} round ${i + 1}: ${r.leaked} process(es) left after close() (killed)`);
  });
  L.push('', ...(problems.length ? problems.map((p) => `- ${p}`) : ['- No errors; no worker process outlived its pool\'s close().']), '');
  const report = L.join('\n');
  process.stdout.write(report);
  if (opts.json) {
    const memory = { config: { rounds, quick: opts.quick, checkpoints: cps, window: C.memoryWindow }, results: res, markdown: report };
    const out = mergeInto ? { ...mergeInto, memory } : { machine: mach, config: memory.config, memory: res, markdown: report };
    fs.writeFileSync(path.resolve(opts.json), JSON.stringify(out, null, 2));
    log(`wrote ${opts.json}`);
  }
}

// ------------------------------------------------------------------------------ main
function log(msg) { process.stderr.write(`${msg}\n`); }

async function main() {
  let opts;
  try { opts = parseArgs(process.argv.slice(2)); } catch (e) { log(e.message); process.exit(2); }
  C = opts.quick ? QUICK : FULL;
  if (opts.memoryChild) {
    const r = await memoryChild(opts.memoryChild);
    process.send(r);
    process.disconnect();
    return;
  }
  if (opts.memory || (opts.scenario && opts.scenario.includes('memory'))) return runMemory(opts);
  const distributed = !opts.scenario || opts.scenario.includes('distributed');
  const local = opts.scenario ? opts.scenario.filter((s) => s !== 'distributed') : null;
  if (!local || local.length) {
    const json = await runMain({ ...opts, scenario: local });
    // A full run (no --scenario) ends with the memory mode for the same pools (one round:
    // a million tasks each; this-rr and this-nospin are the same package, so skipped).
    if (!opts.scenario) {
      const names = (opts.only || defaultAdapters()).filter((n) => n !== 'this-rr' && n !== 'this-nospin');
      process.stdout.write('\n');
      await runMemory(opts, { names, rounds: 1, mergeInto: json });
    }
  }
  if (distributed) await runDistributed(opts);
}

// The distributed scenario (bench/distributed.js) in a process of its own: it starts its
// own redis-server, so it runs only when redis-server is on PATH.
async function runDistributed(opts) {
  const { hasRedis } = require('./lib/queue-bench');
  if (!hasRedis()) {
    log('distributed: skipped (redis-server is not on PATH; Debian: apt-get install -y redis-server)');
    return;
  }
  const args = [path.join(__dirname, 'distributed.js')];
  if (opts.quick) args.push('--quick');
  if (opts.rounds) args.push('--rounds', String(opts.rounds));
  if (opts.json) args.push('--json', opts.json.replace(/(\.json)?$/, '-distributed.json'));
  process.stdout.write('\n');
  const code = await new Promise((resolve) => {
    const child = fork(args[0], args.slice(1), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
  });
  if (code !== 0) throw new Error(`bench/distributed.js exited with ${code}`);
}

process.on('unhandledRejection', (e) => { log(`(unhandled rejection: ${errMsg(e)})`); });
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const pid of descendants()) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    process.exit(130);
  });
}

main().then(() => {
  // Pools that keep a handle open after close() would otherwise keep us alive.
  setTimeout(() => process.exit(process.exitCode || 0), 200).unref();
}, (e) => {
  log(`bench failed: ${(e && e.stack) || e}`);
  for (const pid of descendants()) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  process.exit(1);
});
