#!/usr/bin/env node
// The worker-pool daemon: one pool, a control socket, optional HTTP metrics.
// Started by scripts/worker-pool-daemon.sh (or directly: `node scripts/daemon.js`);
// configured entirely through the environment (see docs/OPERATIONS.md).
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const PKG_DIR = path.join(__dirname, '..');
const { createPool } = require(PKG_DIR);
const { startControlServer } = require('../lib/control-server');
const { startMetricsServer } = require('../lib/metrics-http');
const { checkToken } = require('../lib/dashboard');

const env = process.env;

// ------------------------------------------------------------------ logging

const LOG_LEVELS = { error: 1, warn: 2, info: 3, debug: 4 };
const LOG_JSON = String(env.LOG_FORMAT || 'text').toLowerCase() === 'json';
const LOG_THRESHOLD = LOG_LEVELS[String(env.LOG_LEVEL || 'info').toLowerCase()] ?? LOG_LEVELS.info;

// The log goes to a pipe (tee) or a terminal; a reader that went away must not kill us.
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});

function write(line) {
  try {
    process.stdout.write(`${line}\n`);
  } catch {
    /* stdout closed */
  }
}

/** One log line: text `[time] [component] message`, or a JSON object per line. */
function log(level, component, message, fields = undefined) {
  const norm = level === 'warning' ? 'warn' : level;
  if ((LOG_LEVELS[norm] ?? LOG_LEVELS.info) > LOG_THRESHOLD) return;
  const time = new Date().toISOString();
  if (LOG_JSON) {
    write(JSON.stringify({ time, level: norm, component, message, ...fields }));
  } else {
    let line = `[${time}] [${component}] ${message}`;
    if (fields && fields.error) line += ` ${typeof fields.error === 'string' ? fields.error : JSON.stringify(fields.error)}`;
    write(line);
  }
}
const dlog = (level, message, fields) => log(level, 'Daemon', message, fields);

// ------------------------------------------------------------------ configuration

class ConfigError extends Error {}

function intEnv(name, { min = 1, def } = {}) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(`${name} must be an integer >= ${min}, got "${raw}"`);
  return n;
}

function boolEnv(name) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  if (/^(1|true|yes|on)$/i.test(raw.trim())) return true;
  if (/^(0|false|no|off)$/i.test(raw.trim())) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

/** AUTO_SCALE: true/false, or a JSON object of autoScale settings. */
function autoScaleEnv() {
  const raw = env.AUTO_SCALE;
  if (raw === undefined || raw.trim() === '') return undefined;
  if (raw.trim().startsWith('{')) {
    try {
      return JSON.parse(raw);
    } catch (e) {
      throw new ConfigError(`AUTO_SCALE must be true, false or a JSON object, got "${raw}" (${e.message})`);
    }
  }
  return boolEnv('AUTO_SCALE');
}

/** QUEUE_LIMITER_MAX and QUEUE_LIMITER_DURATION_MS: BullMQ's rate limiter (both or neither). */
function limiterEnv() {
  const max = intEnv('QUEUE_LIMITER_MAX', { min: 1 });
  const duration = intEnv('QUEUE_LIMITER_DURATION_MS', { min: 1 });
  if (max === undefined && duration === undefined) return undefined;
  if (max === undefined || duration === undefined) {
    throw new ConfigError('QUEUE_LIMITER_MAX and QUEUE_LIMITER_DURATION_MS go together (at most MAX jobs per DURATION ms); set both or neither');
  }
  return { max, duration };
}

/** WORKER_PROCESSOR=./processor.js: a BullMQ processor file run by every worker. */
function processorEnv() {
  const raw = env.WORKER_PROCESSOR;
  if (raw === undefined || raw.trim() === '') return undefined;
  for (const other of ['WORKER_SCRIPT', 'WORKER_COMMAND']) {
    if (env[other]) throw new ConfigError(`WORKER_PROCESSOR and ${other} cannot both be set (the processor file is what the workers run)`);
  }
  return path.resolve(raw.trim());
}

/** QUEUE_URL and its companions: the pool's `queue` option (serve the shared queue). */
function queueEnv() {
  const url = env.QUEUE_URL;
  if (url === undefined || url.trim() === '') return undefined;
  const q = {
    url: url.trim(),
    name: env.QUEUE_NAME || undefined,
    prefix: env.QUEUE_PREFIX || undefined,
    concurrency: intEnv('QUEUE_CONCURRENCY'),
    lockDurationMs: intEnv('QUEUE_LOCK_MS', { min: 100 }),
    stalledIntervalMs: intEnv('QUEUE_STALLED_MS', { min: 100 }),
    commandTimeoutMs: intEnv('QUEUE_COMMAND_TIMEOUT_MS', { min: 100 }),
    jobTimeoutMs: intEnv('QUEUE_JOB_TIMEOUT_MS', { min: 1 }),
    maxStalledCount: intEnv('QUEUE_MAX_STALLED_COUNT', { min: 0 }),
    limiter: limiterEnv(),
  };
  for (const k of Object.keys(q)) if (q[k] === undefined) delete q[k];
  return q;
}

/** WORKER_CAPABILITIES=a,b: every worker has these capabilities (for `requires`). */
function capabilityGroups(poolSize, script) {
  const raw = env.WORKER_CAPABILITIES;
  if (raw === undefined || raw.trim() === '') return undefined;
  const capabilities = raw.split(',').map((c) => c.trim()).filter(Boolean);
  return [{ size: poolSize, capabilities, ...(script ? { workerScript: script } : {}) }];
}

/** WORKER_COMMAND='["python3", "worker.py"]': the workers' argv (the pool checks the rest). */
function commandEnv() {
  const raw = env.WORKER_COMMAND;
  if (raw === undefined || raw.trim() === '') return undefined;
  let argv;
  try {
    argv = JSON.parse(raw);
  } catch (e) {
    throw new ConfigError(`WORKER_COMMAND must be a JSON array of strings, e.g. ["python3", "worker.py"], got "${raw}" (${e.message})`);
  }
  if (!Array.isArray(argv)) {
    throw new ConfigError(`WORKER_COMMAND must be a JSON array of strings, e.g. ["python3", "worker.py"], got "${raw}"`);
  }
  if (env.WORKER_SCRIPT) throw new ConfigError('WORKER_COMMAND and WORKER_SCRIPT cannot both be set (the command replaces the script)');
  return argv;
}

function readSettings() {
  const pidFile = path.resolve(env.PID_FILE || '/tmp/cortex/worker-pool.pid');
  const s = {
    pidFile,
    socketPath: path.resolve(env.SOCKET_PATH || path.join(path.dirname(pidFile), 'worker-pool.sock')),
    metricsLogIntervalMs: intEnv('METRICS_LOG_INTERVAL_MS', { min: 0, def: 30000 }),
    metricsPort: intEnv('METRICS_PORT', { min: 0 }),
    metricsHost: env.METRICS_HOST || '127.0.0.1',
    dashboard: boolEnv('DASHBOARD') ?? true,
    dashboardToken: env.DASHBOARD_TOKEN || undefined,
    pool: {
      poolSize: intEnv('POOL_SIZE', { def: 20 }),
      minWorkers: intEnv('MIN_WORKERS'),
      maxWorkers: intEnv('MAX_WORKERS'),
      heartbeatInterval: intEnv('HEARTBEAT_INTERVAL'),
      taskTimeout: intEnv('TASK_TIMEOUT'),
      loadBalancing: env.LOAD_BALANCING || undefined,
      autoRestart: boolEnv('AUTO_RESTART'),
      fifoDir: env.FIFO_DIR || '/tmp/cortex/workers',
      transport: env.TRANSPORT || undefined,
      autoScale: autoScaleEnv(),
      workerScript: env.WORKER_SCRIPT ? path.resolve(env.WORKER_SCRIPT) : undefined,
      workerCommand: commandEnv(),
      processor: processorEnv(),
      // Per-worker RSS limit (a worker over it is recycled after its task): with
      // POOL_SIZE it sizes a container's memory limit (deploy/kubernetes/).
      workerMemoryLimitMB: intEnv('WORKER_MEMORY_LIMIT_MB'),
      // Graceful drain bound; below the 30 s the stop command waits before killing.
      shutdownTimeoutMs: intEnv('SHUTDOWN_TIMEOUT', { def: 20000 }),
      // The daemon prints the pool's log through its events (timestamps, JSON mode).
      logLevel: 'silent',
      queue: queueEnv(),
    },
  };
  s.pool.workerGroups = capabilityGroups(s.pool.poolSize, s.pool.workerScript);
  if (env.LOG_FORMAT && !['text', 'json'].includes(env.LOG_FORMAT.toLowerCase())) {
    throw new ConfigError(`LOG_FORMAT must be text or json, got "${env.LOG_FORMAT}"`);
  }
  if (env.LOG_LEVEL && !(env.LOG_LEVEL.toLowerCase() in LOG_LEVELS)) {
    throw new ConfigError(`LOG_LEVEL must be error, warn, info or debug, got "${env.LOG_LEVEL}"`);
  }
  if (s.metricsPort !== undefined && s.metricsPort > 65535) throw new ConfigError(`METRICS_PORT must be at most 65535, got "${env.METRICS_PORT}"`);
  try {
    checkToken(s.dashboardToken);
  } catch (e) {
    throw new ConfigError(e.message);
  }
  // Workers inherit this environment, and the task code they run needs no token.
  delete env.DASHBOARD_TOKEN;
  for (const k of Object.keys(s.pool)) if (s.pool[k] === undefined) delete s.pool[k];
  return s;
}

// ------------------------------------------------------------------ PID file

/** True when pid is a live (not zombie) process that looks like a daemon.js. */
function isDaemonProcess(pid) {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if (e.code === 'ESRCH') return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') return false;
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('daemon.js');
  } catch {
    return true; // no /proc: a live pid is assumed to be ours
  }
}

function readPid(file) {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

let ownPidFile = null;

function acquirePidFile(file) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
      ownPidFile = file;
      return;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    const other = readPid(file);
    if (other && other !== process.pid && isDaemonProcess(other)) {
      throw new ConfigError(`worker-pool daemon is already running (PID ${other}, PID file ${file})`);
    }
    dlog('warn', `Replacing stale PID file ${file} (PID ${other ?? 'unreadable'} is not a running daemon)`);
    try {
      fs.unlinkSync(file);
    } catch {
      /* someone else removed it */
    }
  }
  throw new ConfigError(`Could not create PID file ${file}`);
}

function removePidFile() {
  if (ownPidFile && readPid(ownPidFile) === process.pid) {
    try {
      fs.unlinkSync(ownPidFile);
    } catch {
      /* gone */
    }
  }
  ownPidFile = null;
}

// ------------------------------------------------------------------ the daemon

let settings = null;
let pool = null;
let control = null;
let socketId = null; // { dev, ino } of our socket file, for the exit-time cleanup
let metricsHttp = null;
let metricsTimer = null;
let stopping = null;
let signalsSeen = 0;
let poolReady = false;

function removeOwnSocketSync() {
  if (!socketId || !settings) return;
  try {
    const st = fs.lstatSync(settings.socketPath);
    if (st.isSocket() && st.dev === socketId.dev && st.ino === socketId.ino) fs.unlinkSync(settings.socketPath);
  } catch {
    /* gone */
  }
}

// Whatever happens, the PID file and socket do not outlive us (the pool's own exit
// hook kills the workers).
process.on('exit', () => {
  removeOwnSocketSync();
  removePidFile();
});

function metricsSummary(m) {
  const w = m.workers;
  const t = m.tasks;
  const p = m.performance;
  return (
    `metrics: workers ${w.total} total, ${w.ready} ready, ${w.busy} busy, ${w.unhealthy} unhealthy | ` +
    `tasks ${t.submitted} submitted, ${t.completed} completed, ${t.failed} failed, ${t.queued} queued, ` +
    `${t.running ?? 0} running, ${t.dlq} in DLQ | reuse ${p.workerReuseRate} | ` +
    `avg wait ${p.avgTaskWaitTimeMs} ms, avg run ${p.avgTaskDurationMs} ms | health ${m.health && m.health.status}` +
    (m.queue && m.queue.shared ? ` | ${sharedSummary(m.queue.shared)}` : '')
  );
}

function sharedSummary(c) {
  return `shared queue: ${c.waiting + c.prioritized} waiting, ${c.active} active, ${c.delayed} delayed, ${c.failed} failed, ${c.servingPools} pool(s) serving`;
}

function logMetrics(label = 'metrics') {
  if (!pool) return;
  let m;
  try {
    m = pool.getPoolMetrics();
  } catch (e) {
    dlog('error', `Could not read pool metrics: ${e.message}`);
    return;
  }
  if (LOG_JSON) {
    dlog('info', label, {
      metrics: { pool: m.pool, workers: m.workers, tasks: m.tasks, performance: m.performance, health: m.health && m.health.status },
    });
  } else {
    dlog('info', metricsSummary(m).replace(/^metrics/, label));
  }
}

const WORKER_LOG_OPTION = { error: 'logWorkerErrors', warning: 'logWorkerWarnings', warn: 'logWorkerWarnings', info: 'logWorkerInfo', debug: 'logWorkerDebug' };

function subscribe(p) {
  p.on('log', (e) => log(e.level, e.component || 'PoolManager', e.message));
  p.on('worker-log', (e) => {
    const option = WORKER_LOG_OPTION[e.level];
    if (!option || !p.config[option]) return;
    const { level, message, workerId } = e;
    const rest = {};
    for (const [k, v] of Object.entries(e)) if (!['level', 'message', 'workerId', 'timestamp', 'type'].includes(k)) rest[k] = v;
    log(level, `Worker ${workerId}`, message, LOG_JSON ? { workerId, ...rest } : rest.error ? { error: rest.error } : undefined);
  });
  // The pool logs crashes, zombies and worker errors itself; clean exits (scale-down,
  // recycling) only at debug level.
  p.on('worker-exited', (e) => {
    if (e.code === 0 && !e.signal) log('debug', 'PoolManager', `Worker ${e.workerId} (PID ${e.pid}) exited`, LOG_JSON ? e : undefined);
  });
  // An EventEmitter 'error' without a listener would throw; the pool does not emit
  // it today, but a daemon must not die of it.
  p.on('error', (e) => dlog('error', `Pool error: ${e && e.message}`));
}

/** Graceful stop: no new connections, drain the pool, close, clean up, exit. */
function stop(reason, exitCode = 0) {
  if (stopping) return stopping;
  dlog('info', `${reason}: shutting down gracefully`);
  stopping = (async () => {
    if (metricsTimer) clearInterval(metricsTimer);
    metricsTimer = null;
    if (control) await control.stopAccepting().catch(() => {});
    if (metricsHttp) await metricsHttp.close().catch(() => {});
    if (pool) {
      try {
        await pool.shutdown(true);
      } catch (e) {
        dlog('error', `Pool shutdown failed: ${e.message}`);
        exitCode = exitCode || 1;
      }
      if (poolReady) logMetrics('final metrics');
    }
    // Let the replies of tasks settled by the shutdown reach their clients.
    await new Promise((r) => setImmediate(r));
    if (control) await control.close().catch(() => {});
    removeOwnSocketSync();
    removePidFile();
    dlog('info', 'Worker pool daemon stopped');
    process.exit(exitCode);
  })();
  return stopping;
}

function onSignal(signal) {
  signalsSeen++;
  if (signalsSeen === 1) {
    stop(`Received ${signal}`);
  } else if (signalsSeen === 2) {
    dlog('warn', `Received ${signal} again: stopping the workers now (running tasks fail with ERR_POOL_SHUTDOWN)`);
    if (pool) pool.shutdown(false).catch(() => {});
  } else {
    dlog('warn', `Received ${signal} a third time: exiting at once`);
    process.exit(1);
  }
}

async function main() {
  try {
    settings = readSettings();
    acquirePidFile(settings.pidFile);
  } catch (e) {
    dlog('error', e.message);
    process.exit(1);
  }
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('uncaughtException', (e) => {
    dlog('error', `Uncaught exception: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  });
  process.on('unhandledRejection', (e) => {
    dlog('error', `Unhandled rejection: ${e && e.stack ? e.stack : e}`);
  });
  // Started by a parent with an IPC channel (scripts/npm-start.js): go when it goes.
  if (process.channel) {
    process.on('disconnect', () => stop('Parent process went away'));
    process.channel.unref();
  }

  const cfg = settings.pool;
  dlog(
    'info',
    `Starting worker pool daemon (PID ${process.pid}, pool size ${cfg.poolSize}, worker ${cfg.processor ? `processor ${cfg.processor}` : cfg.workerCommand ? JSON.stringify(cfg.workerCommand) : cfg.workerScript || 'default'}, socket ${settings.socketPath})`,
  );
  try {
    fs.mkdirSync(cfg.fifoDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    dlog('warn', `Cannot create FIFO_DIR ${cfg.fifoDir}: ${e.message}`);
  }

  try {
    pool = createPool(cfg);
  } catch (e) {
    dlog('error', `Invalid pool configuration: ${e.message}`);
    removePidFile();
    process.exit(1);
  }
  subscribe(pool);
  try {
    await pool.initialize();
  } catch (e) {
    if (stopping) return;
    dlog('error', `Pool failed to start: ${e.message}`);
    await stop('Start failed', 1);
    return;
  }
  if (stopping) return;
  poolReady = true;

  control = startControlServer(pool, settings.socketPath, {
    onShutdown: () => stop('Shutdown requested through the control socket'),
    log: (level, message) => dlog(level, message),
  });
  try {
    await control.ready;
    const st = fs.lstatSync(settings.socketPath);
    socketId = { dev: st.dev, ino: st.ino };
  } catch (e) {
    dlog('error', `Cannot listen on ${settings.socketPath}: ${e.message}`);
    await stop('Start failed', 1);
    return;
  }
  if (stopping) return;

  if (settings.metricsPort !== undefined) {
    try {
      const dashboard = settings.dashboard && { token: settings.dashboardToken, log: (level, message) => dlog(level, message) };
      metricsHttp = await startMetricsServer(pool, { port: settings.metricsPort, host: settings.metricsHost, dashboard });
      const base = `http://${metricsHttp.host.includes(':') ? `[${metricsHttp.host}]` : metricsHttp.host}:${metricsHttp.port}`;
      dlog('info', `Prometheus metrics at ${base}/metrics`);
      if (dashboard) dlog('info', `Dashboard at ${base}/ (${settings.dashboardToken ? 'actions allowed with DASHBOARD_TOKEN' : 'read-only'})`);
    } catch (e) {
      if (e.code === 'ERR_NOT_SUPPORTED') dlog('warn', `METRICS_PORT is set, but the HTTP metrics endpoint is disabled: ${e.message}`);
      else dlog('error', `Cannot serve metrics on ${settings.metricsHost}:${settings.metricsPort}: ${e.message}`);
    }
  }

  if (settings.metricsLogIntervalMs > 0) {
    metricsTimer = setInterval(logMetrics, settings.metricsLogIntervalMs);
  }
  const m = pool.getPoolMetrics();
  const q = pool.config.queue;
  const serving = q ? `, serving the shared queue "${q.name}" at ${q.url}` : '';
  dlog('info', `Worker pool daemon ready: ${m.workers.total} workers, control socket ${settings.socketPath}${serving}`);
}

main().catch((e) => {
  dlog('error', `Daemon failed: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
