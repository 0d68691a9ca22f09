'use strict';
// One consumer of the shared-queue benchmarks (bench/distributed.js,
// bench/bullmq-processors.js), in a process of its own so that its CPU time is its own:
//   node queue-consumer.js inline|sandboxed|this <concurrency> <redis url> <queue name> [<processor file>]
//
// With a processor file, every kind runs it: inline requires it, sandboxed gives BullMQ
// its path, this gives it to the pool as its `processor` option.
//
//   inline     BullMQ Worker with an async function (runs in this process)
//   inline-cortex  the same, for jobs in this package's format (returns data.payload)
//   sandboxed  BullMQ Worker with a processor file, useWorkerThreads: false (BullMQ's
//              own child processes, `concurrency` of them)
//   this       this package: a pool of <concurrency> workers serving the queue
//   this-nospin  the same with spinWaitUs: 0 (the JS thread never polls for a reply)
//   this-old   `this` from another checkout (BENCH_OTHER_ROOT, e.g. an older commit)
//
// Tells its parent { ready: true } over IPC once it serves; on 'stop' it closes and exits.
const path = require('path');

const [kind, concText, url, queueName, processorFile] = process.argv.slice(2);
const concurrency = Number(concText);
const ROOT = path.join(__dirname, '..', '..');
// BullMQ and ioredis come from this package's dependencies.
const requireFromRoot = (m) => require(require.resolve(m, { paths: [ROOT] }));

function bullConnection() {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null };
}

async function start() {
  if (kind === 'this' || kind === 'this-nospin' || kind === 'this-old') {
    const root = kind === 'this-old' ? process.env.BENCH_OTHER_ROOT : ROOT;
    if (!root) throw new Error('this-old needs BENCH_OTHER_ROOT (another checkout, built)');
    const { createWorkerPool } = require(root);
    const pool = await createWorkerPool({
      poolSize: concurrency,
      minWorkers: 1,
      maxWorkers: Math.max(concurrency, 50),
      ...(processorFile ? { processor: processorFile } : { workerScript: path.join(__dirname, 'this-worker.js') }),
      logLevel: 'silent',
      ...(kind === 'this-nospin' ? { spinWaitUs: 0 } : {}),
      queue: { url, name: queueName },
    });
    return () => pool.shutdown(true);
  }
  const { Worker } = requireFromRoot('bullmq');
  // BullMQ pipes every sandboxed child's output into ours (a listener each).
  process.stdout.setMaxListeners(0);
  process.stderr.setMaxListeners(0);
  // inline-cortex: the inline processor reading this package's job format (diagnosis).
  const sandboxFile = processorFile || path.join(__dirname, 'bullmq-processor.js');
  const inline = processorFile ? require(processorFile) : async (job) => job.data;
  const processor = kind === 'inline' ? inline : kind === 'inline-cortex' ? async (job) => job.data.payload : sandboxFile;
  if (!['inline', 'inline-cortex', 'sandboxed'].includes(kind)) throw new Error(`unknown consumer kind ${kind}`);
  const worker = new Worker(queueName, processor, {
    connection: bullConnection(),
    concurrency,
    useWorkerThreads: false,
    // Finished jobs are kept like ours are (producers may read them late).
    removeOnComplete: { age: 3600, count: 100000 },
  });
  worker.on('error', (e) => process.stderr.write(`consumer ${kind}: ${e.message}\n`));
  await worker.waitUntilReady();
  return () => worker.close();
}

start().then(
  (stop) => {
    process.send({ ready: true });
    process.on('message', async (m) => {
      if (m !== 'stop') return;
      await stop().catch((e) => process.stderr.write(`consumer ${kind}: close: ${e.message}\n`));
      process.exit(0);
    });
    process.on('disconnect', () => process.exit(0));
  },
  (e) => {
    process.stderr.write(`consumer ${kind} failed to start: ${(e && e.stack) || e}\n`);
    process.exit(1);
  },
);
