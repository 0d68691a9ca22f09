'use strict';
// Highly available Redis: a master, a replica and three sentinels, all started here;
// two daemons and a producer reach them through a redis-sentinel:// URL. The master is
// SIGKILLed under load; Sentinel promotes the replica; every task settles once with
// its own result, none fails because of the failover, and the daemons go on serving.
// A server that turns into a replica (REPLICAOF) answers READONLY: the pool follows.
// Run: node --test __test__/redis-ha.test.js

const { after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { createQueueClient, createWorkerPool } = require('..');
const { request } = require('../lib/control-client');
const { ROOT, fixture, test, waitFor, within, settle, assertGone, tempDir, daemonEnv, sleep } = require('./helpers');
const { startRedis, command } = require('./redis-harness');

const servers = [];
const workerPids = new Set();
let seq = 0;
const qname = () => `ha${process.pid}-${++seq}`;

after(async () => {
  for (const s of servers.reverse()) await s.destroy();
});

async function redis(opts) {
  const s = await startRedis(opts);
  servers.push(s);
  return s;
}

/** A master, a replica linked to it, and three sentinels that know both. */
async function sentinelSet() {
  const master = await redis();
  const replica = await redis({ extra: ['--replicaof', '127.0.0.1', String(master.port)] });
  await waitFor(async () => /master_link_status:up/.test(await command(replica.port, 'INFO replication')), 15000, 'the replica to sync');
  const sentinels = [];
  for (let i = 0; i < 3; i++) sentinels.push(await redis({ sentinel: { masterPort: master.port, name: 'mymaster' } }));
  await waitFor(
    async () => (await command(sentinels[0].port, 'SENTINEL replicas mymaster')).includes(String(replica.port)),
    20000,
    'the sentinels to know the replica',
  );
  const url = `redis-sentinel://${sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}#mymaster`;
  return { master, replica, sentinels, url };
}

/** A daemon serving `name` at `url`; resolves once it serves. Stopped when the test ends. */
async function daemon(t, url, name) {
  const dir = tempDir('wpha-');
  const env = daemonEnv(dir, {
    POOL_SIZE: '2',
    MIN_WORKERS: '1',
    WORKER_SCRIPT: fixture('queue-worker.js'),
    METRICS_LOG_INTERVAL_MS: '0',
    QUEUE_URL: url,
    QUEUE_NAME: name,
    QUEUE_LOCK_MS: '3000',
    QUEUE_STALLED_MS: '1000',
  });
  const child = spawn(process.execPath, [path.join(ROOT, 'scripts', 'daemon.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (s) => (output += s));
  child.stderr.setEncoding('utf8').on('data', (s) => (output += s));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await within(exited, 30000, 'daemon exit').catch(() => child.kill('SIGKILL'));
  });
  await waitFor(() => output.includes('Worker pool daemon ready') || child.exitCode !== null, 30000, () => `daemon ready:\n${output}`);
  assert.equal(child.exitCode, null, output);
  const workers = await request(env.SOCKET_PATH, { cmd: 'workers' }, 5000);
  for (const w of workers.result) workerPids.add(w.pid);
  return { child, output: () => output };
}

/** A pool in this process serving `name` at `url`; shut down when the test ends. */
async function servingPool(t, url, name) {
  const pool = await createWorkerPool({
    poolSize: 2,
    workerScript: fixture('queue-worker.js'),
    logLevel: 'silent',
    queue: { url, name, lockDurationMs: 3000, stalledIntervalMs: 1000 },
  });
  for (const pid of pool.getWorkerPids()) workerPids.add(pid);
  t.after(() => within(pool.shutdown(false), 30000, 'pool shutdown'));
  return pool;
}

test('Sentinel failover under load: 600 tasks settle once with their results, none fails, and serving goes on', async (t) => {
  const { master, url } = await sentinelSet();
  const name = qname();
  const a = await daemon(t, url, name);
  const b = await daemon(t, url, name);
  const client = createQueueClient({ url, name });
  t.after(() => client.close());

  const log = path.join(tempDir('wpha-'), 'runs.log');
  let done = 0;
  let killedAt = null;
  const times = [];
  const settled = Array.from({ length: 600 }, (_, i) =>
    settle(client.submitTask({ type: 'logged', payload: { i, log, ms: 5 } })).then((r) => {
      done++;
      times.push(Date.now());
      return r;
    }),
  );
  await waitFor(() => done >= 150, 60000, 'the first 150 tasks');
  killedAt = Date.now();
  await master.kill();

  const outcomes = await within(Promise.all(settled), 120000, 'every task to settle');
  const failed = outcomes.filter((o) => o.error);
  assert.deepEqual(failed.map((o) => `${o.error.code}: ${o.error.message}`), [], 'no task failed because of the failover');
  outcomes.forEach((o, i) => assert.equal(o.value.i, i));
  const runs = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).length;
  // The failover's window: the longest time after the kill with no task settling.
  let window = 0;
  let prev = killedAt;
  for (const at of times.filter((x) => x >= killedAt)) {
    window = Math.max(window, at - prev);
    prev = at;
  }
  t.diagnostic(`failover: no task settled for ${window} ms after the kill; ${runs} runs for 600 tasks (${runs - 600} ran again)`);

  assert.deepEqual(await within(client.submitTask({ type: 'echo', payload: 'after' }), 30000, 'a task after the failover'), 'after');
  assert.equal(a.child.exitCode, null, a.output());
  assert.equal(b.child.exitCode, null, b.output());
});

test('a server that turns into a replica (READONLY) is left for the master: the pool goes on serving', async (t) => {
  const { master, replica, sentinels, url } = await sentinelSet();
  const name = qname();
  await servingPool(t, url, name);
  const client = createQueueClient({ url, name });
  t.after(() => client.close());
  assert.equal(await client.submitTask({ type: 'echo', payload: 1 }), 1);
  // A manual failover: the master is demoted to a replica (its clients get READONLY),
  // the replica promoted.
  await command(sentinels[0].port, 'SENTINEL failover mymaster');
  await waitFor(async () => /role:master/.test(await command(replica.port, 'INFO replication')), 20000, 'the replica to be promoted');
  await waitFor(async () => /role:slave/.test(await command(master.port, 'INFO replication')), 20000, 'the old master to be demoted');
  const results = await within(
    Promise.all(Array.from({ length: 20 }, (_, i) => client.submitTask({ type: 'echo', payload: { i } }))),
    30000,
    'tasks after the failover',
  );
  results.forEach((r, i) => assert.deepEqual(r, { i }));
});

/** Six nodes (three masters, three replicas) made one cluster by redis-cli; its seed URL. */
async function cluster() {
  const nodes = [];
  for (let i = 0; i < 6; i++) {
    nodes.push(await redis({ extra: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '1000'] }));
  }
  const created = spawnSync(
    'redis-cli',
    ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'],
    { encoding: 'utf8', timeout: 60000 },
  );
  assert.equal(created.status, 0, created.stdout + created.stderr);
  // Ok on every node, and every replica in sync (one that never synced cannot take over).
  await waitFor(
    async () => {
      for (const n of nodes) {
        if (!/cluster_state:ok/.test(await command(n.port, 'CLUSTER INFO'))) return false;
        const repl = await command(n.port, 'INFO replication');
        if (/role:slave/.test(repl) && !/master_link_status:up/.test(repl)) return false;
      }
      return true;
    },
    60000,
    'the cluster to be ok on every node, its replicas in sync',
  );
  return { nodes, url: `redis-cluster://${nodes.slice(0, 3).map((n) => `127.0.0.1:${n.port}`).join(',')}` };
}

/** The master node serving `key`'s slot. */
async function masterOf(nodes, key) {
  const slot = Number(/:(\d+)/.exec(await command(nodes[0].port, `CLUSTER KEYSLOT ${key}`))[1]);
  const table = await command(nodes[0].port, 'CLUSTER NODES');
  for (const line of table.split('\n')) {
    const f = line.trim().split(' ');
    if (!f[2] || !f[2].includes('master')) continue;
    const port = Number(f[1].split('@')[0].split(':')[1]);
    for (const range of f.slice(8)) {
      const [lo, hi = lo] = range.split('-').map(Number);
      if (slot >= lo && slot <= hi) return nodes.find((n) => n.port === port);
    }
  }
  throw new Error(`no master for slot ${slot}`);
}

test('Redis Cluster: a pool and a client serve 100 tasks; the master of the queue\'s slot is SIGKILLed under load; every task settles once', async (t) => {
  const { nodes, url } = await cluster();
  const name = qname();
  const pool = await servingPool(t, url, name);
  assert.equal(pool.config.queue.prefix, '{bull}');
  const client = createQueueClient({ url, name });
  t.after(() => client.close());

  let done = 0;
  const settled = Array.from({ length: 100 }, (_, i) =>
    settle(client.submitTask({ type: 'echo', payload: { i } })).then((r) => {
      done++;
      return r;
    }),
  );
  await waitFor(() => done >= 25, 60000, 'the first 25 tasks');
  const victim = await masterOf(nodes, '{bull}');
  await victim.kill();
  const outcomes = await within(Promise.all(settled), 120000, 'every task to settle');
  assert.deepEqual(outcomes.filter((o) => o.error).map((o) => `${o.error.code}: ${o.error.message}`), []);
  outcomes.forEach((o, i) => assert.deepEqual(o.value, { i }));
  assert.deepEqual(await within(client.submitTask({ type: 'echo', payload: 'after' }), 30000, 'a task after the failover'), 'after');

  // A prefix without a hash tag would put a queue's keys in many slots.
  const bad = await settle(createWorkerPool({ poolSize: 1, workerScript: fixture('queue-worker.js'), queue: { url, name, prefix: 'bull' } }));
  assert.equal(bad.error.code, 'ERR_INVALID_CONFIG');
  assert.match(bad.error.message, /CROSSSLOT/);
  assert.match(bad.error.message, /\{bull\}/);
});

test('no worker process started by this file is left', async () => {
  await sleep(100);
  await assertGone([...workerPids], 20000);
});
