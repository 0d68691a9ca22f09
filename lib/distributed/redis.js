'use strict';
// Redis connections for the shared queue, and the small registry of serving pools.
//
// The registry is bookkeeping beside BullMQ's own keys (the tasks themselves only
// ever travel as BullMQ jobs), under `<prefix>:<name>:_cortex:`:
//   pools          sorted set: pool id → last heartbeat (ms since the epoch)
//   pool:<id>      JSON { host, pid, capabilitySets, workers, held }, expires
//   capsets        set of the capability sets producers have used (JSON arrays)
//   control        pub/sub channel: { cancel: jobId, reason } and { capset: [...] }

const { CODES, withCode } = require('../errors');

const HEARTBEAT_MS = 2000;
const DISCONNECT_TIMEOUT_MS = 100;
// A pool whose heartbeat is older than this is not counted as serving.
const POOL_TTL_MS = 5 * HEARTBEAT_MS;
// Reconnect quickly at first, then every 2 s, forever: a Redis restart must not lose
// a producer or a server, and a command waits in ioredis' offline queue meanwhile.
const retryStrategy = (times) => Math.min(50 * times, 2000);
// A server that became a replica (a failover, an old primary demoted) answers writes
// with READONLY: connect again (to the master, through Sentinel) and resend.
const reconnectOnError = (err) => (/READONLY/.test(err.message) ? 2 : false);

function keys(prefix, name) {
  const base = `${prefix}:${name}:_cortex:`;
  return {
    pools: `${base}pools`,
    pool: (id) => `${base}pool:${id}`,
    capsets: `${base}capsets`,
    control: `${base}control`,
  };
}

/**
 * Opens an ioredis connection and resolves once it is ready; rejects with
 * ERR_QUEUE_UNAVAILABLE (naming the URL without its password) when Redis cannot be
 * reached within `connectTimeoutMs`, and closes the attempt.
 */
function connect(resolved, label = 'shared queue') {
  const Redis = require('ioredis');
  const client = resolved.redis.cluster
    ? clusterClient(resolved, { commandTimeout: resolved.commandTimeoutMs })
    : new Redis({
        ...resolved.redis,
        // BullMQ's blocking commands must wait as long as they need, and commands issued
        // while Redis restarts wait for it instead of failing.
        maxRetriesPerRequest: null,
        enableReadyCheck: true,
        connectTimeout: Math.min(resolved.connectTimeoutMs, 10000),
        retryStrategy,
        sentinelRetryStrategy: retryStrategy,
        reconnectOnError,
        lazyConnect: false,
        // A connection that never got through must not keep the process alive for
        // ioredis' default 2 s after disconnect().
        disconnectTimeout: DISCONNECT_TIMEOUT_MS,
        // A command unanswered this long fails (a silent connection); the caller then
        // replaces the connection (reconnectIfSilent).
        commandTimeout: resolved.commandTimeoutMs,
      });
  return new Promise((resolve, reject) => {
    let lastError = null;
    const onError = (e) => {
      lastError = e;
    };
    client.on('error', onError);
    const timer = setTimeout(() => {
      cleanup();
      client.disconnect();
      const why = lastError ? `: ${lastError.message}` : '';
      reject(withCode(CODES.ERR_QUEUE_UNAVAILABLE, `The ${label} at ${resolved.display} is unavailable (no connection within ${resolved.connectTimeoutMs} ms)${why}`));
    }, resolved.connectTimeoutMs);
    const onReady = () => {
      cleanup();
      // Later errors (Redis restarting) are retried by ioredis; an 'error' event with
      // no listener would throw, so one stays.
      client.on('error', () => {});
      resolve(client);
    };
    function cleanup() {
      clearTimeout(timer);
      client.removeListener('ready', onReady);
      client.removeListener('error', onError);
    }
    client.once('ready', onReady);
  });
}

/**
 * Connection options for BullMQ's own connections (each Queue and QueueEvents owns its
 * own). `blocking`: for a QueueEvents, whose blocking read must not have a command
 * timeout (BullMQ bounds it with a watchdog of its own and replaces the connection).
 */
function bullConnection(resolved, { blocking = false } = {}) {
  // BullMQ takes a Cluster only as a client of its own making (an instance the caller closes).
  if (resolved.redis.cluster) return clusterClient(resolved, blocking ? {} : { commandTimeout: resolved.commandTimeoutMs });
  return {
    ...resolved.redis,
    maxRetriesPerRequest: null,
    retryStrategy,
    sentinelRetryStrategy: retryStrategy,
    reconnectOnError,
    connectTimeout: Math.min(resolved.connectTimeoutMs, 10000),
    disconnectTimeout: DISCONNECT_TIMEOUT_MS,
    ...(blocking ? {} : { commandTimeout: resolved.commandTimeoutMs }),
  };
}

/**
 * An ioredis Cluster on the seed nodes of `resolved` (a redis-cluster:// URL): it
 * discovers the topology and follows MOVED / ASK and failovers.
 */
function clusterClient(resolved, extra = {}) {
  const Redis = require('ioredis');
  const { nodes, redisOptions } = resolved.redis.cluster;
  return new Redis.Cluster(nodes, {
    clusterRetryStrategy: retryStrategy,
    enableReadyCheck: true,
    redisOptions: {
      ...redisOptions,
      maxRetriesPerRequest: null,
      connectTimeout: Math.min(resolved.connectTimeoutMs, 10000),
      disconnectTimeout: DISCONNECT_TIMEOUT_MS,
      reconnectOnError,
      ...extra,
    },
  });
}

/**
 * After a command failed: when it timed out (a connection that went silent: no bytes,
 * no FIN, no RST), drops the connection so that ioredis makes a new one. ioredis
 * itself only reconnects when the socket reports an error, which a silent one never does.
 */
function reconnectIfSilent(client, err) {
  if (client && err && /timed out/i.test(String(err.message)) && client.status === 'ready') {
    client.disconnect(true);
  }
}

/** Resolves true when `promise` settles within `ms`, false otherwise. */
function settlesWithin(promise, ms) {
  let timer;
  return Promise.race([
    promise.then(() => true, () => true),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Closes a BullMQ Queue, QueueEvents or Worker, politely for up to `ms` (a Worker
 * waits for its jobs); past that, or at once when Redis is gone, cuts its connections
 * so that shutting down never waits for a Redis that does not answer.
 */
async function closeBull(obj, ms) {
  const closing = Promise.resolve().then(() => obj.close());
  if (await settlesWithin(closing, ms)) return;
  await settlesWithin(Promise.resolve().then(() => obj.disconnect()), 1000);
  await settlesWithin(closing, 1000);
}

/** True when `client` is connected to Redis right now. */
function isUp(client) {
  return Boolean(client) && client.status === 'ready';
}

/** Closes a connection politely, or at once if Redis is gone or does not answer within 1 s. */
async function quit(client) {
  if (!client || client.status === 'end') return;
  if (!isUp(client)) {
    client.disconnect();
    return;
  }
  let timer;
  try {
    await Promise.race([client.quit(), new Promise((r) => (timer = setTimeout(r, 1000)))]);
  } catch {
    /* already closing */
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

/** Live serving pools: `[{ id, host, pid, capabilitySets, concurrency, since }]`. */
async function livePools(client, k) {
  const now = Date.now();
  await client.zremrangebyscore(k.pools, '-inf', now - POOL_TTL_MS);
  const ids = await client.zrangebyscore(k.pools, now - POOL_TTL_MS, '+inf');
  if (ids.length === 0) return [];
  const infos = await client.mget(ids.map((id) => k.pool(id)));
  const out = [];
  for (let i = 0; i < ids.length; i++) {
    if (!infos[i]) continue;
    try {
      out.push({ id: ids[i], ...JSON.parse(infos[i]) });
    } catch {
      /* not ours */
    }
  }
  return out;
}

module.exports = { HEARTBEAT_MS, POOL_TTL_MS, keys, connect, bullConnection, reconnectIfSilent, closeBull, settlesWithin, quit, isUp, livePools };
