'use strict';
// One consumer of bench/bullmq-processors.js, in a process of its own so that its CPU
// time is its own:
//   node processor-consumer.js sandboxed|this|inline <workers> <redis url> <queue name> <processor file>
//
//   sandboxed  BullMQ Worker with the processor file, useWorkerThreads: false (BullMQ's
//              own child processes, <workers> of them)
//   this       this package: a pool of <workers> processes running the processor file,
//              serving the queue (createWorkerPool with `processor` and `queue`)
//   inline     BullMQ Worker with the same function inline (runs in this process)
//
// Tells its parent { ready: true } over IPC once it serves; on 'stop' it closes and exits.
const path = require('path');

const [kind, workersText, url, queueName, processorFile] = process.argv.slice(2);
const workers = Number(workersText);
const ROOT = path.join(__dirname, '..', '..');
const requireFromRoot = (m) => require(require.resolve(m, { paths: [ROOT] }));

async function start() {
  if (kind === 'this') {
    const { createWorkerPool } = require(ROOT);
    const pool = await createWorkerPool({
      poolSize: workers,
      minWorkers: workers,
      maxWorkers: workers,
      processor: processorFile,
      logLevel: 'silent',
      queue: { url, name: queueName },
    });
    return () => pool.shutdown(true);
  }
  const { Worker } = requireFromRoot('bullmq');
  // BullMQ pipes every sandboxed child's output into ours (a listener each).
  process.stdout.setMaxListeners(0);
  process.stderr.setMaxListeners(0);
  let processor;
  if (kind === 'sandboxed') processor = processorFile;
  else if (kind === 'inline') processor = require(processorFile); // the same function, in this process
  else throw new Error(`unknown consumer kind ${kind}`);
  const u = new URL(url);
  const worker = new Worker(queueName, processor, {
    connection: { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null },
    concurrency: workers,
    useWorkerThreads: false,
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
