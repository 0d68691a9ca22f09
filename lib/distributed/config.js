'use strict';
// The `queue` option and createQueueClient()'s options: validated here, once, with the
// same ERR_INVALID_CONFIG words as the rest of the pool's options. Nothing in this file
// loads bullmq or ioredis: a pool without `queue` never pays for them.

const { CODES, withCode, invalidConfig } = require('../errors');

const DEFAULTS = Object.freeze({
  name: 'cortex',
  prefix: 'bull',
  serve: true,
  lockDurationMs: 30000,
  stalledIntervalMs: 30000,
  maxStalledCount: 1,
  connectTimeoutMs: 5000,
  commandTimeoutMs: 5000,
});

// BullMQ keeps queue names and key prefixes inside Redis key names separated by ':'.
const NAME_RE = /^[A-Za-z0-9_.-]{1,100}$/;

/**
 * Parses a Redis URL (`redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS)
 * into ioredis options. Throws ERR_INVALID_CONFIG naming `field`; the message never
 * contains the password.
 */
function parseRedisUrl(url, field = 'queue.url') {
  if (typeof url !== 'string' || url.length === 0) {
    throw invalidConfig(field, 'a Redis URL like "redis://host:6379" (or rediss:// for TLS)', url);
  }
  if (/^rediss?-sentinel:/i.test(url)) return parseSentinelUrl(url, field);
  if (/^rediss?-cluster:/i.test(url)) return parseClusterUrl(url, field);
  let u;
  try {
    u = new URL(url);
  } catch {
    throw withCode(CODES.ERR_INVALID_CONFIG, `Invalid option "${field}": expected a Redis URL like "redis://host:6379", got ${JSON.stringify(redactUrl(url))}`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw withCode(CODES.ERR_INVALID_CONFIG, `Invalid option "${field}": expected a redis://, rediss://, redis-sentinel:// or redis-cluster:// URL, got ${JSON.stringify(redactUrl(url))}`);
  }
  if (!u.hostname) {
    throw withCode(CODES.ERR_INVALID_CONFIG, `Invalid option "${field}": the URL names no host, got ${JSON.stringify(redactUrl(url))}`);
  }
  const port = u.port === '' ? 6379 : Number(u.port);
  const dbText = u.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0) {
    throw withCode(CODES.ERR_INVALID_CONFIG, `Invalid option "${field}": the database after the host must be an integer >= 0, got ${JSON.stringify(dbText)}`);
  }
  const options = { host: u.hostname.replace(/^\[|\]$/g, ''), port, db };
  if (u.username) options.username = decodeURIComponent(u.username);
  if (u.password) options.password = decodeURIComponent(u.password);
  if (u.protocol === 'rediss:') options.tls = { servername: options.host };
  return { options, display: redactUrl(url) };
}

const SENTINEL_FORM = 'redis-sentinel://[[user]:password@]host:port[,host:port...][/db]#masterName';

/**
 * `redis-sentinel://[[user]:password@]host:port[,host:port...][/db]#masterName` (the form
 * Lettuce uses; `rediss-sentinel://` for TLS): the sentinels (port 26379 by default) and
 * the master's name; user, password and database are the master's. Returns ioredis'
 * Sentinel options and `sentinel` for the core.
 */
function parseSentinelUrl(url, field) {
  const bad = (why) => withCode(CODES.ERR_INVALID_CONFIG, `Invalid option "${field}": ${why}; expected ${SENTINEL_FORM}, got ${JSON.stringify(redactUrl(url))}`);
  const m = /^(rediss?)-sentinel:\/\/(?:(.*)@)?([^@/#]+)(?:\/([^#]*))?#(.+)$/i.exec(url);
  if (!m) throw bad('a sentinel URL names its sentinels and, after "#", the master');
  const [, scheme, auth, hostList, dbText = '', master] = m;
  const sentinels = hostsOf(hostList, 26379, bad);
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0) throw bad(`the database must be an integer >= 0 (got ${JSON.stringify(dbText)})`);
  const { username, password } = credentialsOf(auth);
  const masterName = decodeURIComponent(master);
  const tls = scheme.toLowerCase() === 'rediss';
  const options = { sentinels, name: masterName, db };
  if (username) options.username = username;
  if (password) options.password = password;
  if (tls) Object.assign(options, { tls: {}, enableTLSForSentinelMode: true });
  return { options, display: redactUrl(url), sentinel: { sentinels: sentinels.map((s) => [s.host, s.port]), masterName, username, password, db, tls } };
}

const CLUSTER_FORM = 'redis-cluster://[[user]:password@]host:port[,host:port...]';

/**
 * `redis-cluster://[[user]:password@]host:port[,host:port...]` (`rediss-cluster://` for
 * TLS): the seed nodes of a Redis Cluster. Returns ioredis' Cluster options and
 * `cluster` for the core.
 */
function parseClusterUrl(url, field) {
  const bad = (why) => withCode(CODES.ERR_INVALID_CONFIG, `Invalid option "${field}": ${why}; expected ${CLUSTER_FORM}, got ${JSON.stringify(redactUrl(url))}`);
  const m = /^(rediss?)-cluster:\/\/(?:(.*)@)?([^@/#]+)\/?$/i.exec(url);
  if (!m) throw bad('a cluster URL names its seed nodes (and no database: a cluster has one)');
  const [, scheme, auth, hostList] = m;
  const nodes = hostsOf(hostList, 6379, bad);
  const { username, password } = credentialsOf(auth);
  const tls = scheme.toLowerCase() === 'rediss';
  const redisOptions = {};
  if (username) redisOptions.username = username;
  if (password) redisOptions.password = password;
  if (tls) redisOptions.tls = {};
  return { options: { cluster: { nodes, redisOptions } }, display: redactUrl(url), cluster: { nodes: nodes.map((n) => [n.host, n.port]), username, password, tls } };
}

/** `host[:port],host[:port]...` (IPv6 in brackets) as `[{ host, port }]`. */
function hostsOf(list, defaultPort, bad) {
  return list.split(',').map((h) => {
    const hm = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(h.trim());
    if (!hm) throw bad(`"${h}" is not host[:port]`);
    const port = hm[2] === undefined ? defaultPort : Number(hm[2]);
    if (!(port > 0 && port < 65536)) throw bad(`the port of "${h}" is not a port`);
    return { host: hm[1].replace(/^\[|\]$/g, ''), port };
  });
}

/** `user:password`, `:password` or `user` (percent-encoded) as { username, password }. */
function credentialsOf(auth) {
  if (auth === undefined) return { username: undefined, password: undefined };
  const i = auth.indexOf(':');
  return {
    username: decodeURIComponent(i < 0 ? auth : auth.slice(0, i)) || undefined,
    password: i < 0 ? undefined : decodeURIComponent(auth.slice(i + 1)),
  };
}

/** The URL with its password replaced by "***" (for messages and logs), whatever its scheme. */
function redactUrl(url) {
  // Up to the last "@": a password may hold "/" or a raw "@" in a malformed URL.
  return String(url).replace(/^([a-z][a-z0-9+.-]*:\/\/)(.*)@/i, (m, scheme, auth) => {
    const i = auth.indexOf(':');
    return i < 0 ? `${scheme}${auth}@` : `${scheme}${auth.slice(0, i)}:***@`;
  });
}

function checkName(value, field, def) {
  if (value === undefined) return def;
  if (typeof value !== 'string' || !NAME_RE.test(value)) {
    throw invalidConfig(field, 'a string of 1 to 100 letters, digits, "_", "." or "-"', value);
  }
  return value;
}

// A key prefix may also hold a Redis Cluster hash tag: "{bull}", "app:{jobs}".
const PREFIX_RE = /^[A-Za-z0-9_.:{}-]{1,100}$/;

/**
 * The key prefix. On a Redis Cluster every key of a queue must hash to one slot (BullMQ's
 * scripts touch several keys at once): the prefix must hold a `{hash tag}`, and the
 * default is `{bull}`.
 */
function checkPrefix(value, field, cluster) {
  if (value === undefined) return cluster ? '{bull}' : DEFAULTS.prefix;
  if (typeof value !== 'string' || !PREFIX_RE.test(value)) {
    throw invalidConfig(field, 'a string of 1 to 100 letters, digits, "_", ".", ":", "-" (and a "{hash tag}" on a cluster)', value);
  }
  if (cluster && !/\{[^{}]+\}/.test(value)) {
    throw withCode(
      CODES.ERR_INVALID_CONFIG,
      `Invalid option "${field}": on a Redis Cluster the prefix must hold a hash tag, like "{bull}" or "${value.replace(/[{}]/g, '')}:{q}": BullMQ's scripts use several keys of a queue at once, and keys in different slots fail with CROSSSLOT; got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function checkInt(value, field, def, min, max = Number.MAX_SAFE_INTEGER) {
  if (value === undefined) return def;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalidConfig(field, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

function checkKeys(obj, allowed, field) {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      throw withCode(CODES.ERR_INVALID_CONFIG, `Invalid option "${field}.${k}": unknown; allowed are ${allowed.join(', ')}`);
    }
  }
}

const CLIENT_KEYS = ['url', 'name', 'prefix', 'connectTimeoutMs', 'commandTimeoutMs'];
const POOL_KEYS = [...CLIENT_KEYS, 'serve', 'concurrency', 'lockDurationMs', 'stalledIntervalMs', 'jobTimeoutMs', 'maxStalledCount', 'limiter'];

/** createQueueClient()'s options, resolved: `{ url, redis, display, name, prefix, connectTimeoutMs }`. */
function resolveClientOptions(opts, field = 'options', keys = CLIENT_KEYS) {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    throw invalidConfig(field, 'an object like { url: "redis://host:6379" }', opts);
  }
  checkKeys(opts, keys, field);
  const { options: redis, display, sentinel, cluster } = parseRedisUrl(opts.url, `${field}.url`);
  return {
    url: opts.url,
    redis,
    display,
    sentinel: sentinel ?? null,
    cluster: cluster ?? null,
    name: checkName(opts.name, `${field}.name`, DEFAULTS.name),
    prefix: checkPrefix(opts.prefix, `${field}.prefix`, Boolean(cluster)),
    connectTimeoutMs: checkInt(opts.connectTimeoutMs, `${field}.connectTimeoutMs`, DEFAULTS.connectTimeoutMs, 100, 600000),
    commandTimeoutMs: checkInt(opts.commandTimeoutMs, `${field}.commandTimeoutMs`, DEFAULTS.commandTimeoutMs, 100, 600000),
  };
}

/** `queue.limiter`: BullMQ's worker rate limiter, `{ max, duration }` (jobs per ms). */
function checkLimiter(limiter) {
  if (limiter === undefined || limiter === null) return null;
  const shape = 'an object { max, duration }: at most max jobs (integer >= 1) per duration ms (integer >= 1)';
  if (typeof limiter !== 'object' || Array.isArray(limiter)) throw invalidConfig('queue.limiter', shape, limiter);
  checkKeys(limiter, ['max', 'duration'], 'queue.limiter');
  if (limiter.max === undefined || limiter.duration === undefined) throw invalidConfig('queue.limiter', shape, limiter);
  return {
    max: checkInt(limiter.max, 'queue.limiter.max', undefined, 1, 1e9),
    duration: checkInt(limiter.duration, 'queue.limiter.duration', undefined, 1, 24 * 3600 * 1000),
  };
}

/** The pool's `queue` option, resolved (adds `serve`, `concurrency`, lock and stalled timings). */
function resolveQueueOption(opts) {
  const base = resolveClientOptions(opts, 'queue', POOL_KEYS);
  if (opts.serve !== undefined && typeof opts.serve !== 'boolean') throw invalidConfig('queue.serve', 'true or false', opts.serve);
  const lockDurationMs = checkInt(opts.lockDurationMs, 'queue.lockDurationMs', DEFAULTS.lockDurationMs, 100, 24 * 3600 * 1000);
  return {
    ...base,
    serve: opts.serve ?? DEFAULTS.serve,
    // undefined: follows the number of workers that can take a job.
    concurrency: checkInt(opts.concurrency, 'queue.concurrency', undefined, 1, 100000),
    lockDurationMs,
    stalledIntervalMs: checkInt(opts.stalledIntervalMs, 'queue.stalledIntervalMs', DEFAULTS.stalledIntervalMs, 100, 24 * 3600 * 1000),
    // Plain BullMQ jobs carry no timeout: this one (undefined: the pool's taskTimeout).
    jobTimeoutMs: checkInt(opts.jobTimeoutMs, 'queue.jobTimeoutMs', undefined, 1, 2 ** 31 - 1),
    maxStalledCount: checkInt(opts.maxStalledCount, 'queue.maxStalledCount', DEFAULTS.maxStalledCount, 0, 1000),
    limiter: checkLimiter(opts.limiter),
    // A command unanswered this long fails and its connection is replaced: well under
    // the lock, so a silent connection is replaced before the locks it renews expire.
    commandTimeoutMs: checkInt(
      opts.commandTimeoutMs,
      'queue.commandTimeoutMs',
      Math.min(DEFAULTS.commandTimeoutMs, Math.max(100, Math.floor(lockDurationMs / 2))),
      100,
      600000,
    ),
  };
}

module.exports = { DEFAULTS, parseRedisUrl, redactUrl, resolveClientOptions, resolveQueueOption };
