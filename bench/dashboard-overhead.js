'use strict';
// What the dashboard costs the hot path: the burst benchmark (20,000 no-op tasks on 4
// workers, as burst-probe.js) with the HTTP server off, on with no page open, and on
// with one event stream open. One pool; the server is started and closed around each
// measurement, and the modes take turns round after round so that drift on a shared
// machine lands on all of them.
// Prints the median tasks/s of each mode and the parent's CPU time per task (all its
// threads: process.cpuUsage), which other load on the machine disturbs less.
// Usage: node bench/dashboard-overhead.js [rounds=7] [bursts per measurement=5]
const http = require('node:http');
const { createWorkerPool } = require('..');
const { startMetricsServer } = require('../lib/metrics-http');

const ROUNDS = Number(process.argv[2] || 7);
const BURSTS = Number(process.argv[3] || 5);
const N = 20000;

function openStream(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/api/events', agent: false }, (res) => {
      res.on('data', () => {});
      resolve(req);
    });
    req.on('error', reject);
  });
}

(async () => {
  const pool = await createWorkerPool({
    poolSize: 4,
    minWorkers: 1,
    loadBalancing: 'least-loaded',
    workerScript: require.resolve('./workers/this-worker.js'),
    logLevel: 'silent',
  });
  const burst = async () => {
    const ps = new Array(N);
    for (let i = 0; i < N; i++) ps[i] = pool.submitTask({ type: 'echo', payload: { i, s: 'x' } });
    await Promise.all(ps);
  };
  for (let r = 0; r < 3; r++) await burst();

  const modes = {
    off: async (fn) => fn(),
    on: async (fn) => {
      const m = await startMetricsServer(pool, { port: 0, dashboard: true });
      try {
        return await fn();
      } finally {
        await m.close();
      }
    },
    'on, 1 page open': async (fn) => {
      const m = await startMetricsServer(pool, { port: 0, dashboard: true });
      const req = await openStream(m.port);
      try {
        return await fn();
      } finally {
        req.destroy();
        await m.close();
      }
    },
  };
  const results = Object.fromEntries(Object.keys(modes).map((k) => [k, []]));
  const names = Object.keys(modes);
  for (let r = 0; r < ROUNDS; r++) {
    // Rotate the order so no mode always runs first after a server start or close.
    const order = names.map((_, i) => names[(i + r) % names.length]);
    for (const name of order) {
      const one = await modes[name](async () => {
        const c0 = process.cpuUsage();
        const t = process.hrtime.bigint();
        for (let b = 0; b < BURSTS; b++) await burst();
        const c = process.cpuUsage(c0);
        return { rate: (BURSTS * N) / (Number(process.hrtime.bigint() - t) / 1e9), cpuUs: (c.user + c.system) / (BURSTS * N) };
      });
      results[name].push(one);
    }
  }
  await pool.shutdown();

  const median = (a) => {
    const s = [...a].sort((x, y) => x - y);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const base = median(results.off.map((x) => x.rate));
  const baseCpu = median(results.off.map((x) => x.cpuUs));
  console.log(`burst of ${N} no-op tasks on 4 workers, ${BURSTS} bursts per measurement, ${ROUNDS} interleaved rounds`);
  for (const name of names) {
    const a = results[name].map((x) => x.rate);
    const m = median(a);
    const cpu = median(results[name].map((x) => x.cpuUs));
    console.log(
      `${name.padEnd(16)} median ${Math.round(m)} tasks/s (${((m / base - 1) * 100).toFixed(1)}% vs off; min ${Math.round(Math.min(...a))}, max ${Math.round(Math.max(...a))}), ` +
        `parent CPU ${cpu.toFixed(2)} µs/task (${((cpu / baseCpu - 1) * 100).toFixed(1)}%)`,
    );
  }
})();
