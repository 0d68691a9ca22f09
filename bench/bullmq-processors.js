#!/usr/bin/env node
'use strict';
// BullMQ sandboxed processors against this package serving the same queue with the same
// processor file (issue 25: "a drop-in for BullMQ's sandboxed processors"). One
// redis-server on this machine (bench/distributed.js's: started here, a free port, no
// persistence, stopped at the end), one producer (this process: BullMQ's Queue.addBulk
// of plain jobs, name 'work', data { n }, outcomes through QueueEvents), one processor
// file (bench/fixtures/increment-processor.js: async (job) => job.data.n + 1), and these
// consumers, each in processes of its own (bench/workers/queue-consumer.js, given the file):
//
//   sandboxed  BullMQ Worker with the processor file, useWorkerThreads: false: BullMQ's
//              own child processes, W of them (the peer)
//   this       this package: createWorkerPool({ poolSize: W, processor, queue }), W
//              worker processes running the same file
//   inline     BullMQ Worker with the same function inline (no processes: the engine's
//              ceiling, for reference)
//
// at W (BullMQ concurrency = worker processes) of 4 and 16. Per cell: a burst (N jobs
// added at once, time until every one completed) in jobs/s; add → completed one job at
// a time (p50/p99); CPU per job of every process involved (producer, consumer and its
// children, redis-server, from /proc). The report gives this package against sandboxed;
// the targets of issue 25 are a burst ≥ 1.5× sandboxed's and a one-at-a-time p50 no
// higher than sandboxed's.
//
//   node bench/bullmq-processors.js [--burst N] [--latency N] [--rounds N] [--quick]
//                                   [--concurrency 4,16] [--only sandboxed,this,inline]
//                                   [--json file]
//
// Progress to stderr, a markdown report to stdout. A variant that fails (e.g. this
// package built without the `processor` option) is reported as failed; the others run.

const path = require('path');
const { now, percentileSorted, withTimeout } = require('./lib/util');
const qb = require('./lib/queue-bench');
const { fmtInt, fmt2, fmt3 } = qb;

const PROCESSOR = path.join(__dirname, 'fixtures', 'increment-processor.js');

const VARIANTS = {
  sandboxed: { label: 'BullMQ sandboxed (processor file, child processes)' },
  this: { label: 'this package (processor file, pool)' },
  inline: { label: 'BullMQ inline (async fn, reference)' },
};
const DEFAULT_ONLY = ['sandboxed', 'this', 'inline'];
const TARGET_BURST_RATIO = 1.5;

function usage() {
  return `Usage: node bench/bullmq-processors.js [options]

  --burst N          jobs per burst (default 5000; 1000 with --quick)
  --latency N        jobs one at a time (default 1000; 200 with --quick)
  --rounds N         rounds, variants interleaved, medians reported (default 1)
  --concurrency L    W, the worker processes / BullMQ concurrency (default 4,16)
  --only L           variants: ${Object.keys(VARIANTS).join(', ')} (default ${DEFAULT_ONLY.join(',')})
  --quick            small counts (a smoke run)
  --json file        also write every sample as JSON
  -h, --help         this text
`;
}

/** BullMQ's producer of plain jobs `work` `{ n }`; each outcome must be n + 1. */
async function producer(url, queueName) {
  const opts = { removeOnComplete: { age: 3600, count: 100000 } };
  const p = await qb.bullProducer(url, queueName, (n) => ({ name: 'work', data: { n }, opts }));
  const check = (value, n) => {
    if (value instanceof Error) throw value;
    if (value !== n + 1) throw new Error(`wrong result for n = ${n}: ${JSON.stringify(value)}`);
  };
  return {
    async burst(ns) {
      (await p.burst(ns)).forEach((v, i) => check(v, ns[i]));
    },
    async one(n) {
      check(await p.one(n), n);
    },
    close: () => p.close(),
  };
}

// ------------------------------------------------------------------------------ a cell
async function runCell(redis, variant, workers, opts, cellNo) {
  const queueName = `procs-${cellNo}`;
  await redis.client.flushall();
  const consumer = await qb.startConsumers(variant, 1, workers, redis.url, queueName, PROCESSOR);
  let prod = null;
  try {
    prod = await producer(redis.url, queueName);
    const ns = (count, base) => Array.from({ length: count }, (_, i) => base + i);

    await withTimeout(prod.burst(ns(opts.warmup, 0)), 120000, 'warm-up burst');

    // Burst: CPU of the consumer's process tree (its children: sandboxed processors or
    // pool workers, spawned during the warm-up) and redis-server, read around it.
    const pids = [...consumer.pids(), redis.pid];
    const cpu0 = qb.cpuOf(pids);
    const self0 = process.cpuUsage();
    const t0 = now();
    await withTimeout(prod.burst(ns(opts.burst, 1e6)), 300000, 'burst');
    const ms = now() - t0;
    const self = process.cpuUsage(self0);
    const cpu1 = qb.cpuOf([...consumer.pids(), redis.pid]);
    const producerCpu = (self.user + self.system) / 1000;
    const redisCpu = (cpu1.get(redis.pid) ?? 0) - (cpu0.get(redis.pid) ?? 0);
    const consumerCpu = qb.cpuDelta(cpu0, cpu1) - redisCpu;

    // One at a time: add, wait for 'completed', add the next.
    const lat = [];
    for (const n of ns(opts.latency, 2e6)) {
      const s = now();
      await withTimeout(prod.one(n), 30000, 'one job');
      lat.push(now() - s);
    }
    lat.sort((a, b) => a - b);

    return {
      variant,
      workers,
      jobsPerSec: (opts.burst / ms) * 1000,
      p50Ms: percentileSorted(lat, 50),
      p99Ms: percentileSorted(lat, 99),
      cpuMsPerJob: { total: (producerCpu + consumerCpu + redisCpu) / opts.burst, producer: producerCpu / opts.burst, consumer: consumerCpu / opts.burst, redis: redisCpu / opts.burst },
    };
  } finally {
    if (prod) await prod.close().catch(() => {});
    await consumer.stop();
  }
}

// ------------------------------------------------------------------------------ report
function render(opts, mach, redisVersion, medians, { failures }, elapsedS) {
  const L = [];
  L.push('## BullMQ sandboxed processors and this package: one processor file, one Redis');
  L.push('');
  L.push(...qb.header('bench/bullmq-processors.js', opts, mach, redisVersion, elapsedS));
  L.push('- **Jobs:** plain BullMQ jobs (`Queue.addBulk`, name `work`, data `{ n }`), run by `bench/fixtures/increment-processor.js` (`async (job) => job.data.n + 1`); outcomes through `QueueEvents`. **W** is BullMQ\'s `concurrency` or this package\'s `poolSize`.');
  L.push('- **CPU ms/job**: CPU time (from `/proc`, 10 ms ticks; `process.cpuUsage()` for the producer) of the producer, the consumer process with its children (sandboxed processors or pool workers) and redis-server during the burst, ÷ jobs.');
  L.push('');
  L.push('| W | Consumer | burst jobs/s ↑ | vs sandboxed | p50 ms ↓ | p99 ms ↓ | CPU ms/job ↓ | producer | consumer + children | redis-server |');
  L.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const w of opts.conc) {
    const base = medians[w] || {};
    for (const variant of opts.only) {
      const m = base[variant];
      if (!m) {
        if (failures[w] && failures[w][variant]) L.push(`| ${w} | ${VARIANTS[variant].label} | failed: ${failures[w][variant].replace(/\|/g, '\\|').replace(/\s+/g, ' ').slice(0, 160)} | | | | | | | |`);
        continue;
      }
      const vs = base.sandboxed && variant !== 'sandboxed' ? `${(m.jobsPerSec / base.sandboxed.jobsPerSec).toFixed(2)}×` : '';
      L.push(
        `| ${w} | ${VARIANTS[variant].label} | ${fmtInt(m.jobsPerSec)} | ${vs} | ${fmt2(m.p50Ms)} | ${fmt2(m.p99Ms)} | ` +
          `${fmt3(m.cpuMsPerJob.total)} | ${fmt3(m.cpuMsPerJob.producer)} | ${fmt3(m.cpuMsPerJob.consumer)} | ${fmt3(m.cpuMsPerJob.redis)} |`,
      );
    }
  }
  L.push('');
  L.push(`This package against sandboxed (targets: burst ≥ ${TARGET_BURST_RATIO}×, one-at-a-time p50 ≤ sandboxed's):`);
  L.push('');
  for (const w of opts.conc) {
    const ours = medians[w] && medians[w].this;
    const peer = medians[w] && medians[w].sandboxed;
    if (!ours || !peer) {
      L.push(`- W = ${w}: n/a (${!ours ? 'this package' : 'sandboxed'} has no result)`);
      continue;
    }
    const burst = ours.jobsPerSec / peer.jobsPerSec;
    const p50 = ours.p50Ms / peer.p50Ms;
    L.push(
      `- W = ${w}: burst ${burst.toFixed(2)}× (${burst >= TARGET_BURST_RATIO ? 'met' : 'NOT met'}); ` +
        `p50 ${fmt2(ours.p50Ms)} ms against ${fmt2(peer.p50Ms)} ms, ${p50.toFixed(2)}× (${ours.p50Ms <= peer.p50Ms ? 'met' : 'NOT met'}); ` +
        `p99 ${fmt2(ours.p99Ms)} ms against ${fmt2(peer.p99Ms)} ms; CPU/job ${(ours.cpuMsPerJob.total / peer.cpuMsPerJob.total).toFixed(2)}×`,
    );
  }
  return `${L.join('\n')}\n`;
}

// -------------------------------------------------------------------------------- main
if (require.main === module) {
  qb.benchMain({
    script: 'bench/bullmq-processors.js',
    name: 'bullmq-processors',
    variants: VARIANTS,
    defaultOnly: DEFAULT_ONLY,
    usage,
    runCell,
    describe: (r) => `${fmtInt(r.jobsPerSec)} jobs/s, p50 ${fmt2(r.p50Ms)} ms, p99 ${fmt2(r.p99Ms)} ms, CPU ${fmt3(r.cpuMsPerJob.total)} ms/job`,
    render,
  });
}
