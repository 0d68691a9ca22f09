#!/usr/bin/env node
// Python workers (workerCommand + python/cortex_worker) beside this package's Node
// workers and Python's own concurrent.futures.ProcessPoolExecutor, on the same no-op
// task (echo of { i, s: 'x' }) with 4 processes: a burst, then one task at a time.
// Rounds are interleaved (the order rotates each round); the report gives medians.
//
//   node bench/python-workers.js [--rounds 5] [--workers 4] [--burst 20000] [--latency 2000]
//
// Progress goes to stderr, the markdown report to stdout (for BENCHMARKS.md).
'use strict';
const path = require('path');
const { spawnSync } = require('child_process');
const { eachFlag, now, median, percentileSorted, procCpuMs, machine, sleep } = require('./lib/util');

const ROOT = path.join(__dirname, '..');
const NODE_WORKER = path.join(__dirname, 'workers', 'this-worker.js');
const PY_WORKER = path.join(__dirname, 'workers', 'python-worker.py');
const PPE = path.join(__dirname, 'python', 'ppe_bench.py');

function parseArgs(argv) {
  const o = { rounds: 5, workers: 4, burst: 20000, latency: 2000, latencyWarmup: 200 };
  eachFlag(argv, (flag, value) => {
    const key = { '--rounds': 'rounds', '--workers': 'workers', '--burst': 'burst', '--latency': 'latency' }[flag];
    if (!key) throw new Error(`unknown flag ${flag}`);
    o[key] = Number(value());
    if (!Number.isInteger(o[key]) || o[key] < 1) throw new Error(`${flag} must be a whole number >= 1`);
  });
  return o;
}

/** This package with Node workers ('node') or Python workers ('python'). */
async function openPool(kind, size) {
  const { createWorkerPool } = require(ROOT);
  const opts = { poolSize: size, minWorkers: 1, maxWorkers: Math.max(size, 50), logLevel: 'silent' };
  if (kind === 'python') {
    opts.workerCommand = ['python3', PY_WORKER];
    opts.env = { PYTHONPATH: path.join(ROOT, 'python') };
  } else {
    opts.workerScript = NODE_WORKER;
  }
  return createWorkerPool(opts);
}

function burst(pool, n) {
  const ps = new Array(n);
  for (let i = 0; i < n; i++) ps[i] = pool.submitTask({ type: 'echo', payload: { i, s: 'x' } });
  return Promise.all(ps);
}

function check(results) {
  results.forEach((r, i) => {
    if (!r || r.i !== i) throw new Error(`wrong result for task ${i}`);
  });
}

const workersCpuMs = (pool) => pool.getWorkerPids().reduce((sum, pid) => sum + (procCpuMs(pid) || 0), 0);

async function measurePool(kind, o) {
  const pool = await openPool(kind, o.workers);
  try {
    check(await burst(pool, o.burst)); // warm-up burst of the same size
    const cpu0 = workersCpuMs(pool);
    const t = now();
    const res = await burst(pool, o.burst);
    const ms = now() - t;
    const cpu1 = workersCpuMs(pool);
    check(res);
    for (let i = 0; i < o.latencyWarmup; i++) await pool.submitTask({ type: 'echo', payload: { i, s: 'x' } });
    const lat = new Float64Array(o.latency);
    for (let i = 0; i < o.latency; i++) {
      const t0 = now();
      const r = await pool.submitTask({ type: 'echo', payload: { i, s: 'x' } });
      lat[i] = (now() - t0) * 1000;
      if (!r || r.i !== i) throw new Error(`wrong result for task ${i}`);
    }
    lat.sort();
    return {
      tps: (o.burst / ms) * 1000,
      p50: percentileSorted(lat, 50),
      p99: percentileSorted(lat, 99),
      workerCpuUsPerTask: ((cpu1 - cpu0) * 1000) / o.burst,
    };
  } finally {
    await pool.shutdown(true);
  }
}

function measurePpe(o) {
  const r = spawnSync(
    'python3',
    [PPE, '--workers', String(o.workers), '--burst', String(o.burst), '--latency', String(o.latency)],
    { encoding: 'utf8', timeout: 600000 },
  );
  if (r.status !== 0) throw new Error(`ppe_bench.py failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const SUBJECTS = [
  { name: 'node', label: 'this package, Node workers', run: (o) => measurePool('node', o) },
  { name: 'python', label: 'this package, Python workers', run: (o) => measurePool('python', o) },
  { name: 'ppe', label: 'ProcessPoolExecutor (driven from Python)', run: (o) => measurePpe(o) },
];

const fmt = (v, digits = 0) =>
  v === null || v === undefined ? 'n/a' : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const mach = machine();
  const samples = Object.fromEntries(SUBJECTS.map((s) => [s.name, []]));
  const t0 = now();
  for (let round = 0; round < o.rounds; round++) {
    const order = SUBJECTS.map((_, i) => SUBJECTS[(i + round) % SUBJECTS.length]);
    for (const s of order) {
      const r = await s.run(o);
      samples[s.name].push(r);
      process.stderr.write(
        `round ${round + 1}/${o.rounds} ${s.name}: burst ${fmt(r.tps)} tasks/s, p50 ${fmt(r.p50)} µs, p99 ${fmt(r.p99)} µs, ` +
          `worker CPU ${fmt(r.workerCpuUsPerTask, 1)} µs/task\n`,
      );
      await sleep(200);
    }
  }
  const med = {};
  for (const s of SUBJECTS) {
    med[s.name] = {};
    for (const k of ['tps', 'p50', 'p99', 'workerCpuUsPerTask']) med[s.name][k] = median(samples[s.name].map((r) => r[k]));
  }
  const base = med.python;
  const ratio = (v, b) => (v && b ? ` (${(v / b).toFixed(2)}×)` : '');
  const lines = [];
  lines.push(
    `- **Machine:** ${mach.cpu}, ${mach.cores} cores, ${mach.totalMemGiB} GiB RAM, Node ${mach.node}, ` +
      `Python ${samples.ppe[0]?.python ?? '?'}, ${mach.os} (load average at start ${mach.loadavgAtStart.join(' / ')})`,
  );
  lines.push(
    `- **Command:** \`node bench/python-workers.js --rounds ${o.rounds}\` (${o.workers} workers/processes; burst ${o.burst.toLocaleString('en-US')} ` +
      `tasks after a warm-up burst of the same size; one-at-a-time ${o.latency.toLocaleString('en-US')} tasks after ${o.latencyWarmup}; ` +
      `${Math.round((now() - t0) / 1000)} s); medians over rounds; \`(1.23×)\` = value ÷ the Python workers' value`,
  );
  lines.push('');
  lines.push(`| metric | ${SUBJECTS.map((s) => s.label).join(' | ')} |`);
  lines.push(`|---|${SUBJECTS.map(() => '---:').join('|')}|`);
  const row = (label, key, digits) =>
    lines.push(`| ${label} | ${SUBJECTS.map((s) => `${fmt(med[s.name][key], digits)}${s.name === 'python' ? '' : ratio(med[s.name][key], base[key])}`).join(' | ')} |`);
  row('burst, tasks/s ↑', 'tps', 0);
  row('one-at-a-time p50, µs ↓', 'p50', 0);
  row('one-at-a-time p99, µs ↓', 'p99', 0);
  row('worker processes\' CPU per task in the burst, µs ↓', 'workerCpuUsPerTask', 1);
  lines.push('');
  lines.push('Targets (issue 22), this run:');
  lines.push('');
  lines.push('| target | result | met? |');
  lines.push('|---|---|---|');
  const yes = (b) => (b ? 'yes' : '**no**');
  lines.push(
    `| Python burst ≥ 0.5× Node workers' | ${fmt(base.tps)} vs ${fmt(med.node.tps)} = ${(base.tps / med.node.tps).toFixed(2)}× | ${yes(base.tps >= 0.5 * med.node.tps)} |`,
  );
  lines.push(
    `| Python burst ≥ ProcessPoolExecutor.map (chunksize 1) | ${fmt(base.tps)} vs ${fmt(med.ppe.tps)} = ${(base.tps / med.ppe.tps).toFixed(1)}× | ${yes(base.tps >= med.ppe.tps)} |`,
  );
  lines.push(
    `| Python one-at-a-time p50 ≤ submit().result()'s | ${fmt(base.p50)} vs ${fmt(med.ppe.p50)} µs | ${yes(base.p50 <= med.ppe.p50)} |`,
  );
  lines.push('');
  lines.push('Per round:');
  lines.push('');
  for (const s of SUBJECTS) {
    lines.push(
      `- ${s.label}: burst ${samples[s.name].map((r) => fmt(r.tps)).join(' / ')}; p50 ${samples[s.name].map((r) => fmt(r.p50)).join(' / ')} µs`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
