#!/usr/bin/env node
'use strict';
// A long life, compressed: runs the daemon (scripts/daemon.js, the echo fixture worker)
// under a steady mixed load for a given time and watches whether it grows.
//
//   node bench/soak.js                     10 minutes
//   node bench/soak.js --minutes 60 --out bench/results/soak-60min
//
// Load, all through the daemon's own entry points:
//   control socket  a steady stream of tasks of every outcome: completed, failed
//                   (dead-lettered), retried then dead-lettered, timed out, no handler,
//                   refused as invalid; a worker crash every 15 s; scale up and down
//                   every 20 s; the dead letters requeued every 45 s and cleared
//                   15 s after each requeue
//   dashboard       a client opens the event stream every 3 s, reads it for 1-2 s and
//                   leaves; /api/status is read each time
// Every 10 s it samples the daemon's RSS (total and anonymous), open descriptors and
// threads (/proc) and, through bench/lib/soak-probe.js preloaded into the daemon, its
// live heap (after a full GC) and event-loop delay. It fails if any of them grows without bound: the
// least-squares slope over the second half of the run (the first half is warm-up:
// caches, JIT, the dashboard's 10-minute history filling) above its limit (LIMITS).
// Writes <out>.csv (every sample) and <out>.svg (a plot, the fitted slopes drawn).
// Not part of `npm test`.

const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
// The daemon is set up as the tests set it up (its files in a temp dir, the echo worker).
const { daemonEnv, listeningPort } = require('../__test__/helpers');

const ROOT = path.join(__dirname, '..');
const SAMPLE_MS = 10000;
const MB = 1024 * 1024;

// The slope limits, per hour of the second half. What they catch, at the soak's load
// (about 25 tasks/s, a crash per 15 s, a dashboard visit per 3 s, a scale step per 20 s):
// - heap: 4 MB/h. A per-task leak of 50 bytes (one small object per task) is
//   25 × 3600 × 50 B = 4.5 MB/h. The heap is read after a full GC, so its noise is
//   well under 1 MB over a run.
// - anonymous RSS: 16 MB/h. The resident memory that is the process's own (RssAnon:
//   the JS heap, the core's and node's malloc, buffers); the allocator keeps freed
//   pages, so it is noisier than the heap. A leak in the core (Rust) or in buffers
//   outside the heap shows only here, and one of 200 bytes per task exceeds this.
//   The total RSS is recorded too but not judged: its file-backed part is the node
//   binary's and the addon's code pages, paged in as code is first run and out when
//   the machine needs the memory, which says nothing about the daemon.
// - descriptors: 30/h. One descriptor per worker crash is 240/h, per dashboard visit
//   1,200/h, per scale step 180/h; a sample that catches a dashboard visit or a worker
//   restarting in progress is off by a few, which this absorbs.
// - threads: 10/h. The daemon's threads are fixed pools (libuv, tokio, V8); one thread
//   per crash or scale step would be 180/h or more.
// - event-loop delay p99: 20 ms/h. A structure that grows and is scanned on every
//   tick or task would show here before it shows anywhere else.
const LIMITS = {
  anonMb: { perHour: 16, label: 'anonymous RSS (MB)' },
  heapMb: { perHour: 4, label: 'live heap after GC (MB)' },
  fds: { perHour: 30, label: 'open descriptors' },
  threads: { perHour: 10, label: 'threads' },
  eldP99Ms: { perHour: 20, label: 'event-loop delay p99 (ms)' },
};

function parseArgs(argv) {
  const out = { seconds: 600, out: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--minutes') out.seconds = Number(argv[++i]) * 60;
    else if (a === '--seconds') out.seconds = Number(argv[++i]);
    else if (a === '--out') out.out = argv[++i];
    else throw new Error(`unknown argument ${a} (use --minutes M | --seconds S, --out <path without extension>)`);
  }
  if (!(out.seconds >= 60)) throw new Error('the run must last at least 60 s (six samples)');
  out.out ??= path.join(ROOT, 'bench', 'results', `soak-${Math.round(out.seconds / 60)}min`);
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- the daemon

function startDaemon(dir) {
  const probeFile = path.join(dir, 'probe.ndjson');
  const env = daemonEnv(dir, {
    MIN_WORKERS: '1',
    MAX_WORKERS: '4',
    WORKER_SCRIPT: path.join(ROOT, '__test__', 'fixtures', 'echo-worker.js'),
    METRICS_PORT: '0',
    METRICS_LOG_INTERVAL_MS: '0',
    LOG_LEVEL: 'error',
    SOAK_PROBE_FILE: probeFile,
    SOAK_PROBE_MS: String(SAMPLE_MS),
  });
  delete env.METRICS_HOST;
  const args = ['--expose-gc', '--require', path.join(__dirname, 'lib', 'soak-probe.js'), path.join(ROOT, 'scripts', 'daemon.js')];
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  for (const s of [child.stdout, child.stderr]) s.setEncoding('utf8').on('data', (d) => { output = (output + d).slice(-20000); });
  return { child, socket: env.SOCKET_PATH, probeFile, output: () => output };
}

// ---------------------------------------------------------------- the control socket

/** One persistent control connection with request/response matching by id. */
function controlConnection(socketPath) {
  const sock = net.createConnection(socketPath);
  const waiting = new Map();
  let next = 1;
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const r = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      const w = waiting.get(r.id);
      if (w) {
        waiting.delete(r.id);
        w(r);
      }
    }
  });
  const failAll = () => {
    for (const w of waiting.values()) w({ ok: false, error: { code: 'ERR_CLOSED', message: 'connection closed' } });
    waiting.clear();
  };
  sock.on('error', failAll);
  sock.on('close', failAll);
  return {
    ready: new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); }),
    send(msg) {
      const id = next++;
      return new Promise((resolve) => {
        waiting.set(id, resolve);
        sock.write(`${JSON.stringify({ ...msg, id })}\n`);
      });
    },
    inFlight: () => waiting.size,
    close: () => sock.destroy(),
  };
}

/** The task mix: [weight, task, outcome label]. */
const MIX = [
  [70, () => ({ type: 'echo', payload: { n: Math.random() } }), 'completed'],
  [6, () => ({ type: 'throw', payload: { message: 'soak failure', code: 'E_SOAK' }, maxRetries: 0 }), 'failed'],
  [4, () => ({ type: 'throw', payload: { message: 'soak retry' }, maxRetries: 1 }), 'retried'],
  [5, () => ({ type: 'sleep', payload: { ms: 300 }, timeout: 40, maxRetries: 0 }), 'timeout'],
  [5, () => ({ type: 'no-such-handler', payload: null, maxRetries: 0 }), 'no-handler'],
  [5, () => ({ type: 'echo', payload: 1, priority: 'high' }), 'invalid'],
  [5, () => ({ type: 'fib', payload: { n: 18 } }), 'completed'],
];
const MIX_TOTAL = MIX.reduce((n, [w]) => n + w, 0);

function pickTask() {
  let r = Math.random() * MIX_TOTAL;
  for (const [w, make, label] of MIX) {
    if ((r -= w) < 0) return { task: make(), label };
  }
  return { task: MIX[0][1](), label: MIX[0][2] };
}

// ---------------------------------------------------------------- the dashboard client

function dashboardVisit(port, stayMs) {
  return new Promise((resolve) => {
    const status = http.get({ host: '127.0.0.1', port, path: '/api/status', agent: false }, (res) => res.resume());
    status.on('error', () => {});
    let bytes = 0;
    const req = http.get({ host: '127.0.0.1', port, path: '/api/events', agent: false }, (res) => {
      res.on('data', (d) => { bytes += d.length; });
      res.on('error', () => {});
      setTimeout(() => { req.destroy(); resolve(bytes); }, stayMs);
    });
    req.on('error', () => resolve(bytes));
  });
}

// ---------------------------------------------------------------- sampling and fitting

function procSample(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)[1]);
  return {
    rssMb: field('VmRSS') / 1024,
    anonMb: field('RssAnon') / 1024,
    threads: field('Threads'),
    fds: fs.readdirSync(`/proc/${pid}/fd`).length,
  };
}

/** Least-squares slope of y over x. */
function slope(xs, ys) {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return { slope: den ? num / den : 0, intercept: my - (den ? num / den : 0) * mx };
}

function verdicts(samples) {
  const half = samples.slice(Math.floor(samples.length / 2));
  const hours = half.map((s) => s.tS / 3600);
  const out = {};
  for (const [key, lim] of Object.entries(LIMITS)) {
    const fit = slope(hours, half.map((s) => s[key]));
    out[key] = { ...fit, limit: lim.perHour, ok: fit.slope <= lim.perHour, from: half[0].tS };
  }
  return out;
}

// ---------------------------------------------------------------- the plot

function svgPlot(samples, fits, title) {
  const keys = Object.keys(LIMITS);
  const W = 900;
  const PH = 130;
  const PAD = { l: 70, r: 230, t: 40, b: 30 };
  const H = PAD.t + keys.length * (PH + 20) + PAD.b;
  const tMax = samples[samples.length - 1].tS;
  const x = (t) => PAD.l + (t / tMax) * (W - PAD.l - PAD.r);
  let out = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">\n`;
  out += `<rect width="${W}" height="${H}" fill="#fff"/>\n<text x="${PAD.l}" y="22" font-size="15" font-weight="bold">${title}</text>\n`;
  keys.forEach((key, i) => {
    const top = PAD.t + i * (PH + 20);
    const ys = samples.map((s) => s[key]);
    let lo = Math.min(...ys);
    let hi = Math.max(...ys);
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const span = hi - lo;
    lo -= span * 0.1;
    hi += span * 0.1;
    const y = (v) => top + PH - ((v - lo) / (hi - lo)) * PH;
    out += `<rect x="${PAD.l}" y="${top}" width="${W - PAD.l - PAD.r}" height="${PH}" fill="none" stroke="#ccc"/>\n`;
    out += `<text x="${PAD.l - 6}" y="${top + 10}" text-anchor="end">${hi.toFixed(1)}</text><text x="${PAD.l - 6}" y="${top + PH}" text-anchor="end">${lo.toFixed(1)}</text>\n`;
    out += `<polyline fill="none" stroke="#1f6fb2" stroke-width="1.5" points="${samples.map((s) => `${x(s.tS).toFixed(1)},${y(s[key]).toFixed(1)}`).join(' ')}"/>\n`;
    const f = fits[key];
    const t0 = f.from;
    const line = (t) => f.intercept + f.slope * (t / 3600);
    out += `<line x1="${x(t0).toFixed(1)}" y1="${y(line(t0)).toFixed(1)}" x2="${x(tMax).toFixed(1)}" y2="${y(line(tMax)).toFixed(1)}" stroke="${f.ok ? '#2a9d3a' : '#c62828'}" stroke-width="2" stroke-dasharray="6 3"/>\n`;
    out += `<text x="${W - PAD.r + 10}" y="${top + 20}" font-weight="bold">${LIMITS[key].label}</text>\n`;
    out += `<text x="${W - PAD.r + 10}" y="${top + 40}">slope ${f.slope.toFixed(2)}/h (limit ${f.limit})</text>\n`;
    out += `<text x="${W - PAD.r + 10}" y="${top + 60}" fill="${f.ok ? '#2a9d3a' : '#c62828'}">${f.ok ? 'flat' : 'GROWS'}</text>\n`;
  });
  const bottom = H - PAD.b + 18;
  out += `<text x="${PAD.l}" y="${bottom}">0</text><text x="${W - PAD.r}" y="${bottom}" text-anchor="end">${(tMax / 60).toFixed(0)} min</text>\n`;
  out += `<text x="${(PAD.l + W - PAD.r) / 2}" y="${bottom}" text-anchor="middle">time; dashed: least-squares fit over the second half</text>\n</svg>\n`;
  return out;
}

// ---------------------------------------------------------------- main

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wp-soak-'));
  const d = startDaemon(dir);
  const exited = new Promise((resolve) => d.child.on('close', (code, signal) => resolve({ code, signal })));
  let stopped = false;
  const counts = {};
  const samples = [];
  let ctl = null;
  try {
    const deadline = Date.now() + 30000;
    while (!fs.existsSync(d.socket) || !listeningPort(d.child.pid)) {
      if (Date.now() > deadline || d.child.exitCode !== null) throw new Error(`the daemon did not start:\n${d.output()}`);
      await sleep(100);
    }
    const port = listeningPort(d.child.pid);
    ctl = controlConnection(d.socket);
    await ctl.ready;
    const start = Date.now();
    const end = start + opts.seconds * 1000;
    console.log(`soak: ${opts.seconds} s, daemon pid ${d.child.pid}, dashboard port ${port}; samples every ${SAMPLE_MS / 1000} s`);

    // Steady task stream: at most 16 requests waiting, one every 40 ms (25/s).
    const submitter = (async () => {
      while (!stopped) {
        if (ctl.inFlight() < 16) {
          const { task, label } = pickTask();
          ctl.send({ cmd: 'submit', task }).then((r) => {
            const k = r.ok ? label : `${label}:${r.error.code}`;
            counts[k] = (counts[k] || 0) + 1;
          });
        }
        await sleep(40);
      }
    })();
    const every = (ms, fn) => (async () => {
      while (!stopped) {
        await sleep(ms);
        if (!stopped) await fn().catch((e) => console.error(`soak: ${e.message}`));
      }
    })();
    let up = true;
    const loops = [
      every(15000, async () => { await ctl.send({ cmd: 'submit', task: { type: 'crash', payload: { code: 7 }, maxRetries: 0 } }); counts.crashes = (counts.crashes || 0) + 1; }),
      every(20000, async () => { await ctl.send({ cmd: 'scale', direction: up ? 'up' : 'down', count: 1 }); up = !up; counts.scales = (counts.scales || 0) + 1; }),
      // Requeued, a dead letter fails again: cleared in between, each requeue takes the
      // ~30 s of failures since the clear, and the load stays steady.
      every(30000, async () => {
        const r = await ctl.send({ cmd: 'dlq-requeue' });
        counts.requeued = (counts.requeued || 0) + (r.ok ? r.result.requeued : 0);
        await sleep(15000);
        const c = await ctl.send({ cmd: 'dlq-clear' });
        counts.cleared = (counts.cleared || 0) + (c.ok ? c.result.cleared : 0);
      }),
      every(3000, async () => { await dashboardVisit(port, 1000 + Math.random() * 1000); counts.dashboardVisits = (counts.dashboardVisits || 0) + 1; }),
    ];

    let probeLines = 0;
    while (Date.now() < end) {
      await sleep(Math.min(SAMPLE_MS, end - Date.now()));
      if (d.child.exitCode !== null || d.child.signalCode !== null) throw new Error(`the daemon died:\n${d.output()}`);
      const p = procSample(d.child.pid);
      const lines = fs.existsSync(d.probeFile) ? fs.readFileSync(d.probeFile, 'utf8').trim().split('\n').filter(Boolean) : [];
      const probe = lines.length > probeLines ? JSON.parse(lines[lines.length - 1]) : null;
      probeLines = lines.length;
      const prev = samples[samples.length - 1];
      const s = {
        tS: (Date.now() - start) / 1000,
        ...p,
        heapMb: probe ? probe.heapUsed / MB : prev ? prev.heapMb : NaN,
        eldP50Ms: probe ? probe.eldP50Ms : prev ? prev.eldP50Ms : NaN,
        eldP99Ms: probe ? probe.eldP99Ms : prev ? prev.eldP99Ms : NaN,
        completed: counts.completed || 0,
        failed: Object.entries(counts).filter(([k]) => k.includes(':')).reduce((n, [, v]) => n + v, 0),
      };
      if (Number.isNaN(s.heapMb)) continue; // before the probe's first line
      samples.push(s);
      console.log(`soak: t=${s.tS.toFixed(0)}s rss=${s.rssMb.toFixed(1)}MB anon=${s.anonMb.toFixed(1)}MB heap=${s.heapMb.toFixed(1)}MB fds=${s.fds} threads=${s.threads} eld99=${s.eldP99Ms.toFixed(1)}ms completed=${s.completed} failed=${s.failed}`);
    }
    stopped = true;
    await Promise.all([submitter, ...loops]);

    const fits = verdicts(samples);
    fs.mkdirSync(path.dirname(opts.out), { recursive: true });
    const cols = ['tS', 'rssMb', 'anonMb', 'heapMb', 'fds', 'threads', 'eldP50Ms', 'eldP99Ms', 'completed', 'failed'];
    fs.writeFileSync(`${opts.out}.csv`, `${cols.join(',')}\n${samples.map((s) => cols.map((c) => (Number.isInteger(s[c]) ? s[c] : s[c].toFixed(3))).join(',')).join('\n')}\n`);
    const title = `Daemon soak, ${(opts.seconds / 60).toFixed(0)} min: ${s0(counts.completed)} tasks completed, ${s0(counts.crashes)} crashes, ${s0(counts.scales)} scale steps, ${s0(counts.dashboardVisits)} dashboard visits`;
    fs.writeFileSync(`${opts.out}.svg`, svgPlot(samples, fits, title));
    console.log(`\nsoak: counts ${JSON.stringify(counts)}`);
    console.log('\n| measure | first sample | last sample | slope, second half (/h) | limit (/h) | verdict |');
    console.log('|---|---:|---:|---:|---:|---|');
    for (const [key, f] of Object.entries(fits)) {
      console.log(`| ${LIMITS[key].label} | ${samples[0][key].toFixed(1)} | ${samples[samples.length - 1][key].toFixed(1)} | ${f.slope.toFixed(2)} | ${f.limit} | ${f.ok ? 'flat' : 'GROWS'} |`);
    }
    console.log(`\nsoak: wrote ${opts.out}.csv and ${opts.out}.svg`);
    const bad = Object.entries(fits).filter(([, f]) => !f.ok).map(([k]) => k);
    if (bad.length) {
      console.error(`soak: FAILED, grows without bound: ${bad.join(', ')}`);
      process.exitCode = 1;
    }
  } finally {
    stopped = true;
    if (ctl) ctl.close();
    if (d.child.exitCode === null && d.child.signalCode === null) {
      d.child.kill('SIGTERM');
      const t = setTimeout(() => d.child.kill('SIGKILL'), 30000);
      await exited;
      clearTimeout(t);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function s0(n) {
  return (n || 0).toLocaleString('en-US');
}

main().catch((e) => {
  console.error(`soak: ${e.stack || e.message}`);
  process.exitCode = 2;
});
