#!/usr/bin/env node
'use strict';
// Distributed benchmark: one redis-server on this machine (started here, on a free
// port, in a temporary directory, stopped at the end), a no-op job, and these consumers
// of one BullMQ queue, each in processes of its own:
//
//   inline       BullMQ Worker with an async function (the engine's ceiling)
//   sandboxed    BullMQ Worker with a processor file, useWorkerThreads: false (BullMQ's
//                own child processes: the peer)
//   this ×1      this package: one pool (a process) serving the queue
//   this ×2      two pools (two processes) serving the queue, the workers split
//                between them (same total concurrency)
//
// at a total concurrency (BullMQ concurrency = workers) of 4 and 16. The producer is
// this process: for BullMQ a Queue (addBulk) and a QueueEvents for the outcomes, for
// this package createQueueClient() (which does the same inside).
//
// Per cell: a burst (all jobs added at once, wait for every result) in jobs/s; add →
// result latency one job at a time (p50/p99); CPU per job of every process involved
// (producer, consumers and their children, redis-server, from /proc) and Redis
// commands per job (INFO commandstats before/after the burst).
//
//   node bench/distributed.js [--burst N] [--latency N] [--rounds N] [--quick]
//                             [--concurrency 4,16] [--only inline,sandboxed,this1,this2,inline-prio]
//                             [--json file]
//
// Progress to stderr, a markdown report to stdout. Also run by `npm run bench` (bench/run.js)
// when redis-server is on PATH.

const path = require('path');
const { now, percentileSorted, withTimeout, procCpuMs, threadCpuMs } = require('./lib/util');
const qb = require('./lib/queue-bench');
const { ROOT, fmtInt, fmt2, fmt3 } = qb;

const VARIANTS = {
  inline: { label: 'BullMQ inline (async fn)', consumer: 'inline', pools: 1, producer: 'bullmq' },
  sandboxed: { label: 'BullMQ sandboxed (processes)', consumer: 'sandboxed', pools: 1, producer: 'bullmq' },
  this1: { label: 'this package, 1 pool', consumer: 'this', pools: 1, producer: 'this' },
  this2: { label: 'this package, 2 pools', consumer: 'this', pools: 2, producer: 'this' },
  // Diagnosis, one side swapped: this package's producer with BullMQ's inline consumer
  // (reading our job format), and BullMQ's producer (adding jobs exactly as our codec
  // writes them) with this package's pool.
  'thisprod-inline': { label: 'createQueueClient → BullMQ inline', consumer: 'inline-cortex', pools: 1, producer: 'this' },
  'bullprod-inline': { label: 'BullMQ Queue (our job format) → BullMQ inline', consumer: 'inline-cortex', pools: 1, producer: 'bullmq', cortexFormat: true },
  'bullprod-this1': { label: 'BullMQ Queue (our job format) → 1 pool', consumer: 'this', pools: 1, producer: 'bullmq', cortexFormat: true },
  // Before and after: this package from another checkout (BENCH_OTHER_ROOT=DIR, built).
  'this1-old': { label: 'this package at BENCH_OTHER_ROOT, 1 pool', consumer: 'this-old', pools: 1, producer: 'this' },
  // Diagnosis: the pool without its reply spin (spinWaitUs: 0).
  'this1-nospin': { label: 'this package, 1 pool, spinWaitUs 0', consumer: 'this-nospin', pools: 1, producer: 'this' },
  // Diagnosis: BullMQ inline with every job prioritized (as this package adds them: priority = ours + 1).
  'inline-prio': { label: 'BullMQ inline, priority 1', consumer: 'inline', pools: 1, producer: 'bullmq', priority: 1 },
  // Diagnosis: BullMQ inline in 2 processes (the workers split as this2's are).
  inline2: { label: 'BullMQ inline, 2 processes', consumer: 'inline', pools: 2, producer: 'bullmq' },
  // Diagnosis: BullMQ inline split into one process per unit of concurrency (a Worker of
  // concurrency 1 in each): the ceiling of a design where each worker process fetches its own jobs.
  'inline-split': { label: 'BullMQ inline, 1 process per slot', consumer: 'inline', pools: 'each', producer: 'bullmq' },
};
const DEFAULT_ONLY = ['inline', 'sandboxed', 'this1', 'this2'];

function usage() {
  return `Usage: node bench/distributed.js [options]

  --burst N          jobs per burst (default 5000; 1000 with --quick)
  --latency N        jobs one at a time (default 1000; 200 with --quick)
  --rounds N         rounds, variants interleaved, medians reported (default 1)
  --concurrency L    total concurrencies (default 4,16)
  --only L           variants: ${Object.keys(VARIANTS).join(', ')} (default ${DEFAULT_ONLY.join(',')})
  --quick            small counts (a smoke run)
  --json file        also write every sample as JSON
  -h, --help         this text
`;
}

// -------------------------------------------------------------------------- producers
/** BullMQ's producer adding plain `echo` jobs, or jobs in our format as createQueueClient() adds them. */
function bullProducer(url, queueName, priority, cortexFormat = false) {
  const opts = { removeOnComplete: { age: 3600, count: 100000 }, ...(priority ? { priority } : {}) };
  // Our job format: what createQueueClient() adds (lib/distributed/codec.js), ids included.
  const codec = cortexFormat ? require(path.join(ROOT, 'lib', 'distributed', 'codec.js')) : null;
  let seq = 0;
  const spec = (p) =>
    codec
      ? codec.encodeJob({ type: 'echo', payloadJson: JSON.stringify(p), priority: 10 }, `b-${++seq}`, { maxRetries: 3, retryBackoffMs: 1000, maxBackoffMs: 30000 })
      : { name: 'echo', data: p, opts };
  return qb.bullProducer(url, queueName, spec);
}

/** This package's producer: createQueueClient() (one addBulk per microtask inside). */
async function thisProducer(url, queueName) {
  const { createQueueClient } = require(ROOT);
  const client = createQueueClient({ url, name: queueName });
  await client.getQueueMetrics(); // connected
  return {
    burst: (payloads) => Promise.all(payloads.map((p) => client.submitTask({ type: 'echo', payload: p }))),
    one: (payload) => client.submitTask({ type: 'echo', payload }),
    close: () => client.close(),
  };
}

// ------------------------------------------------------------------------------ a cell
function check(results, payloads) {
  for (let i = 0; i < payloads.length; i++) {
    const r = results[i];
    if (!r || r.i !== payloads[i].i) throw new Error(`wrong result for job ${i}: ${JSON.stringify(r)}`);
  }
}

async function runCell(redis, variant, concurrency, opts, cellNo) {
  const v = VARIANTS[variant];
  const queueName = `bench-${cellNo}`;
  await redis.client.flushall();
  const consumers = await qb.startConsumers(v.consumer, v.pools === 'each' ? concurrency : v.pools, concurrency, redis.url, queueName);
  let producer = null;
  try {
    producer = v.producer === 'bullmq' ? await bullProducer(redis.url, queueName, v.priority, v.cortexFormat) : await thisProducer(redis.url, queueName);
    const payloads = (n, base) => Array.from({ length: n }, (_, i) => ({ i: base + i, s: 'x' }));

    // Warm-up: every consumer process started, JIT warm, connections open.
    const warm = payloads(opts.warmup, 0);
    check(await withTimeout(producer.burst(warm), 120000, 'warm-up burst'), warm);

    // Burst.
    const burst = payloads(opts.burst, 1e6);
    const pids = [...consumers.pids(), redis.pid];
    const cmdBefore = await redis.commands();
    const mains = consumers.mainPids();
    const cpu0 = qb.cpuOf(pids);
    const threads0 = mains.map(threadCpuMs);
    const redis0 = procCpuMs(redis.pid);
    const self0 = process.cpuUsage();
    const t0 = now();
    const results = await withTimeout(producer.burst(burst), 300000, 'burst');
    const ms = now() - t0;
    const self = process.cpuUsage(self0);
    const cpu1 = qb.cpuOf([...consumers.pids(), redis.pid]);
    // The consumer processes' CPU by thread: the JS thread, this package's core threads, the rest.
    const threads = { js: 0, core: 0, other: 0 };
    mains.forEach((pid, i) => {
      const t1 = threadCpuMs(pid);
      for (const k of Object.keys(threads)) threads[k] += t1[k] - threads0[i][k];
    });
    const redisCpu = procCpuMs(redis.pid) - redis0;
    const cmdAfter = await redis.commands();
    check(results, burst);
    const producerCpu = (self.user + self.system) / 1000;
    const allOthers = qb.cpuDelta(cpu0, cpu1);
    const consumerCpu = allOthers - redisCpu;
    // The consumers' own processes (BullMQ Worker, or the pool) apart from their children.
    const mainCpu = qb.cpuDelta(new Map([...cpu0].filter(([pid]) => mains.includes(pid))), new Map([...cpu1].filter(([pid]) => mains.includes(pid))));
    const cmds = {};
    let cmdTotal = 0;
    for (const [k, n] of Object.entries(cmdAfter)) {
      const d = n - (cmdBefore[k] || 0);
      if (d > 0) {
        cmds[k] = d;
        cmdTotal += d;
      }
    }

    // One at a time.
    const lat = [];
    const one = payloads(opts.latency, 2e6);
    for (const p of one) {
      const s = now();
      const r = await withTimeout(producer.one(p), 30000, 'one job');
      lat.push(now() - s);
      if (!r || r.i !== p.i) throw new Error(`wrong result ${JSON.stringify(r)}`);
    }
    lat.sort((a, b) => a - b);

    return {
      variant,
      concurrency,
      jobsPerSec: (opts.burst / ms) * 1000,
      p50Ms: percentileSorted(lat, 50),
      p99Ms: percentileSorted(lat, 99),
      cpuMsPerJob: { total: (producerCpu + allOthers) / opts.burst, producer: producerCpu / opts.burst, consumers: consumerCpu / opts.burst, consumerMain: mainCpu / opts.burst, consumerChildren: (consumerCpu - mainCpu) / opts.burst, redis: redisCpu / opts.burst },
      threadUsPerJob: { js: (threads.js * 1000) / opts.burst, core: (threads.core * 1000) / opts.burst, other: (threads.other * 1000) / opts.burst },
      redisCmdsPerJob: cmdTotal / opts.burst,
      topCommands: Object.entries(cmds).sort((a, b) => b[1] - a[1]).slice(0, 12).map(([k, n]) => [k, +(n / opts.burst).toFixed(2)]),
    };
  } finally {
    if (producer) await producer.close().catch(() => {});
    await consumers.stop();
  }
}

// ------------------------------------------------------------------------------ report
function render(opts, mach, redisVersion, medians, { samples }, elapsedS) {
  const L = [];
  L.push('## Many machines (BullMQ): one Redis, no-op job');
  L.push('');
  L.push(...qb.header('bench/distributed.js', opts, mach, redisVersion, elapsedS));
  L.push('- **Concurrency** is the total: BullMQ `concurrency`, or workers (2 pools share them: 2+2, 8+8). Every consumer runs in processes of its own; the producer is the benchmark process.');
  L.push('- **CPU ms/job** = CPU time (from `/proc`, 10 ms ticks; `process.cpuUsage()` for the producer) of the producer + the consumer processes (the BullMQ Worker or the pool) + their children (sandboxed processors, pool workers) + redis-server during the burst ÷ jobs. **Redis cmds/job**: `INFO commandstats` around the burst, including the commands run inside BullMQ\'s Lua scripts (`evalsha` is one round trip each).');
  L.push('');
  L.push('- **By thread** (µs/job, the consumer processes only, from `/proc/<pid>/task/*/stat`): the JS (main) thread, this package\'s core threads (`worker-pool-core`), and the rest (V8, libuv).');
  L.push('');
  L.push('| Concurrency | Consumer | burst jobs/s ↑ | vs inline | vs sandboxed | p50 ms ↓ | p99 ms ↓ | CPU ms/job ↓ | producer | consumer process(es) | their children | redis-server | JS thread µs/job | core threads µs/job | other threads µs/job | Redis cmds/job |');
  L.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of opts.conc) {
    const base = medians[c] || {};
    for (const variant of opts.only) {
      const m = base[variant];
      if (!m) continue;
      const vs = (ref) => (ref && ref !== m ? `${(m.jobsPerSec / ref.jobsPerSec).toFixed(2)}×` : '');
      L.push(
        `| ${c} | ${VARIANTS[variant].label} | ${fmtInt(m.jobsPerSec)} | ${vs(base.inline)} | ${vs(base.sandboxed)} | ${fmt2(m.p50Ms)} | ${fmt2(m.p99Ms)} | ` +
          `${fmt3(m.cpuMsPerJob.total)} | ${fmt3(m.cpuMsPerJob.producer)} | ${fmt3(m.cpuMsPerJob.consumerMain)} | ${fmt3(m.cpuMsPerJob.consumerChildren)} | ${fmt3(m.cpuMsPerJob.redis)} | ` +
          `${fmtInt(m.threadUsPerJob.js)} | ${fmtInt(m.threadUsPerJob.core)} | ${fmtInt(m.threadUsPerJob.other)} | ${fmt2(m.redisCmdsPerJob)} |`,
      );
    }
  }
  L.push('');
  L.push('Redis commands per job in the burst, most frequent first (last round):');
  L.push('');
  for (const c of opts.conc) {
    for (const variant of opts.only) {
      const s = (samples[c][variant] || []).at(-1);
      if (s) L.push(`- ${c}, ${VARIANTS[variant].label}: ${s.topCommands.map(([k, n]) => `${k} ${n}`).join(', ')}`);
    }
  }
  return `${L.join('\n')}\n`;
}

// -------------------------------------------------------------------------------- main
if (require.main === module) {
  qb.benchMain({
    script: 'bench/distributed.js',
    name: 'distributed',
    variants: VARIANTS,
    defaultOnly: DEFAULT_ONLY,
    usage,
    runCell,
    describe: (r) =>
    `${fmtInt(r.jobsPerSec)} jobs/s, p50 ${fmt2(r.p50Ms)} ms, p99 ${fmt2(r.p99Ms)} ms, CPU ${fmt3(r.cpuMsPerJob.total)} ms/job, ${fmt2(r.redisCmdsPerJob)} Redis cmds/job`,
    render,
  });
}
