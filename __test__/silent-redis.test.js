'use strict';
// Connections that go silent: a TCP proxy between the package and Redis freezes every
// open connection (no FIN, no RST, no bytes) while new ones go through. A serving pool
// behind it notices within its command timeout, says so (`queue.shared.connected`),
// replaces its connections and serves again; a producer behind it gets its result too.
// Run: node --test __test__/silent-redis.test.js

const { before, after } = require('node:test');
const assert = require('node:assert/strict');
const { createWorkerPool, createQueueClient } = require('..');
const { fixture, test, within, assertGone } = require('./helpers');
const { startRedis } = require('./redis-harness');
const { TcpProxy } = require('./tcp-proxy');
const { startMetricsServer } = require('../lib/metrics-http');

let redis;
let seq = 0;
const seen = new Set();
const qname = () => `silent${process.pid}-${++seq}`;

before(async () => {
  redis = await startRedis();
});

after(async () => {
  await redis.destroy();
});

async function proxied(t) {
  const proxy = await new TcpProxy(redis.port).start();
  t.after(() => proxy.close());
  return proxy;
}

async function servingPool(t, url, name) {
  const pool = await createWorkerPool({
    poolSize: 2,
    workerScript: fixture('queue-worker.js'),
    logLevel: 'silent',
    maxTaskRetries: 0,
    queue: { url, name, lockDurationMs: 4000, stalledIntervalMs: 2000, commandTimeoutMs: 1000 },
  });
  for (const pid of pool.getWorkerPids()) seen.add(pid);
  pool.on('worker-exited', (e) => seen.add(e.pid));
  t.after(() => within(pool.shutdown(false), 30000, 'pool shutdown'));
  return pool;
}

/** Samples `queue.shared.connected` every 20 ms until stopped; the values seen. */
function watchConnected(pool) {
  const seenValues = new Set();
  const timer = setInterval(() => seenValues.add(pool.getPoolMetrics().queue.shared.connected), 20);
  return { stop: () => (clearInterval(timer), seenValues) };
}

test('a serving pool whose connections go silent replaces them and serves again within 30 s, saying it was disconnected', async (t) => {
  const name = qname();
  const proxy = await proxied(t);
  const pool = await servingPool(t, proxy.url, name);
  const client = createQueueClient({ url: redis.url, name });
  t.after(() => client.close());
  assert.deepEqual(await client.submitTask({ type: 'echo', payload: 'before' }), 'before');

  // The readiness probe's view: /healthz answers 503 while the pool cannot serve.
  const http = await startMetricsServer(pool, { port: 0 });
  t.after(() => http.close());
  const probes = new Set();
  let probing = true;
  const prober = (async () => {
    while (probing) {
      probes.add((await fetch(`http://127.0.0.1:${http.port}/healthz`)).status);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const watch = watchConnected(pool);
  assert.ok(proxy.freeze() > 0, 'the pool had connections open through the proxy');
  const started = Date.now();
  const results = await within(
    Promise.all(Array.from({ length: 20 }, (_, i) => client.submitTask({ type: 'echo', payload: { i } }))),
    30000,
    'tasks served after the freeze',
  );
  results.forEach((r, i) => assert.deepEqual(r, { i }));
  const values = watch.stop();
  assert.ok(values.has(false), `queue.shared.connected was false in between (saw ${[...values]}) after ${Date.now() - started} ms`);
  // Connected again once the new connections work.
  await within(
    (async () => {
      while (!pool.getPoolMetrics().queue.shared.connected) await new Promise((r) => setTimeout(r, 50));
    })(),
    10000,
    'connected again',
  );
  probing = false;
  await prober;
  assert.ok(probes.has(503) && probes.has(200), `/healthz answered ${[...probes]}`);
  assert.equal((await fetch(`http://127.0.0.1:${http.port}/healthz`)).status, 200);
});

test('a producer whose connections go silent gets its result within 30 s', async (t) => {
  const name = qname();
  const proxy = await proxied(t);
  await servingPool(t, redis.url, name);
  const client = createQueueClient({ url: proxy.url, name, commandTimeoutMs: 1000 });
  t.after(() => client.close());
  assert.deepEqual(await client.submitTask({ type: 'echo', payload: 'before' }), 'before');
  assert.ok(proxy.freeze() > 0);
  const r = await within(client.submitTask({ type: 'echo', payload: 'after' }), 30000, 'the result after the freeze');
  assert.equal(r, 'after');
});

test('no worker process started by this file is left', async () => {
  await assertGone([...seen], 15000);
});
