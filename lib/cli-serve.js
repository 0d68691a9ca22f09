'use strict';
// `worker-pool serve`: runs the daemon (scripts/daemon.js) in the foreground, serving
// one BullMQ queue with a processor file. The flags become the daemon's environment;
// the daemon gets a private PID file, control socket and FIFO directory in a fresh
// temporary directory (removed at the end), so it never meets a system daemon. Its log
// is passed through, with a live status line read from its control socket. SIGINT,
// SIGTERM or SIGHUP is forwarded to the daemon as SIGTERM (it drains); the exit code
// is the daemon's. The daemon is started with an IPC channel and stops when that
// channel closes, so it never outlives this process, however this process ends.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { call } = require('./control-client');
const { StatusConsole, spawnDaemon, countedSignals } = require('./foreground');

const TEMP_PREFIX = 'worker-pool-serve-';
const PROCESSOR_EXTENSIONS = ['.js', '.cjs', '.mjs'];

/** The options `serve` takes (bin/worker-pool.js merges them into its parseArgs options). */
const SERVE_OPTIONS = {
  processor: { type: 'string' },
  workers: { type: 'string' },
  'memory-limit-mb': { type: 'string' },
  'job-timeout-ms': { type: 'string' },
  'metrics-port': { type: 'string' },
  concurrency: { type: 'string' },
  'lock-duration-ms': { type: 'string' },
  'stalled-interval-ms': { type: 'string' },
  'max-stalled-count': { type: 'string' },
  'limiter-max': { type: 'string' },
  'limiter-duration-ms': { type: 'string' },
  'log-format': { type: 'string' },
};

// Flag → the daemon's variable, and the smallest value it takes. A variable of this
// list that the command line does not set is removed from the daemon's environment:
// what runs is what was typed, not what a shell exported for a system daemon.
const INT_FLAGS = [
  ['workers', 'POOL_SIZE', 1],
  ['memory-limit-mb', 'WORKER_MEMORY_LIMIT_MB', 1],
  ['job-timeout-ms', 'QUEUE_JOB_TIMEOUT_MS', 1],
  ['metrics-port', 'METRICS_PORT', 0, 65535],
  ['concurrency', 'QUEUE_CONCURRENCY', 1],
  ['lock-duration-ms', 'QUEUE_LOCK_MS', 100],
  ['stalled-interval-ms', 'QUEUE_STALLED_MS', 100],
  ['max-stalled-count', 'QUEUE_MAX_STALLED_COUNT', 0],
  ['limiter-max', 'QUEUE_LIMITER_MAX', 1],
  ['limiter-duration-ms', 'QUEUE_LIMITER_DURATION_MS', 1],
];
const OWNED_ENV = [
  'QUEUE_URL',
  'QUEUE_NAME',
  'QUEUE_PREFIX',
  'WORKER_PROCESSOR',
  'LOG_FORMAT',
  ...INT_FLAGS.map(([, name]) => name),
  // The processor replaces the worker script or command.
  'WORKER_SCRIPT',
  'WORKER_COMMAND',
];

const SERVE_USAGE = `Usage: worker-pool serve --queue-url URL --queue NAME --processor FILE --workers N [options]

Serves a BullMQ queue with a processor file, in the foreground: the daemon
(scripts/daemon.js) with its own control socket in a temporary directory, its log on
stdout and a status line. Ctrl-C drains (held jobs finish, or go back to the queue
past SHUTDOWN_TIMEOUT); a second Ctrl-C gives the held jobs back at once.

  --queue-url URL            redis://[:password@]host:port[/db], rediss://, redis-sentinel://, redis-cluster://
  --queue NAME               the BullMQ queue to serve
  --queue-prefix P           its BullMQ key prefix (default bull)
  --processor FILE           the processor module (.js, .cjs or .mjs; path relative to the
                             current directory): async (job, token, signal) => result
  --workers N                worker processes (BullMQ's concurrency of a sandboxed Worker)
  --memory-limit-mb M        recycle a worker whose RSS exceeds M MB (after its job)
  --job-timeout-ms T         a job running longer fails (ERR_TASK_TIMEOUT) and its worker is replaced
  --metrics-port P           Prometheus /metrics, the dashboard and /healthz on 127.0.0.1:P
  --concurrency N            jobs held at once (default: follows the idle workers)
  --lock-duration-ms MS      BullMQ's lockDuration (default 30000)
  --stalled-interval-ms MS   BullMQ's stalledInterval (default 30000)
  --max-stalled-count N      BullMQ's maxStalledCount (default 1)
  --limiter-max N --limiter-duration-ms MS
                             BullMQ's limiter: at most N jobs per MS on this queue
  --log-format text|json     the daemon's log lines

Other daemon settings come from the environment as scripts/daemon.js reads them
(TASK_TIMEOUT, SHUTDOWN_TIMEOUT, LOG_LEVEL, METRICS_HOST, DASHBOARD, DASHBOARD_TOKEN,
QUEUE_COMMAND_TIMEOUT_MS, ...). STATUS_INTERVAL_MS: how often the status line is read
(default 1000 on a terminal, where it is redrawn in place; otherwise a line every 10000).

Exit status: the daemon's (0 after a graceful stop), 2 on a usage error.`;

function intFlag(values, flag, min, max, usage) {
  const raw = values[flag];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(n) || n < min || (max !== undefined && n > max)) {
    usage(`--${flag} must be an integer ${max !== undefined ? `from ${min} to ${max}` : `>= ${min}`}, got "${raw}"`);
  }
  return n;
}

/**
 * Checks the flags and builds the daemon's settings: { env (the variables to set),
 * processor (absolute path), queue: { name, display } }. Every problem is a usage error
 * naming the flag and what it takes.
 */
function serveSettings(values, positionals, { usage, queueOptions, cwd = process.cwd() }) {
  if (positionals.length) usage(`serve takes options only, got "${positionals.join(' ')}"`);
  if (values.socket !== undefined) usage('--socket does not apply to "serve": its daemon gets a private control socket (printed at start)');
  if (values['queue-url'] === undefined || values['queue-url'].trim() === '') usage('serve needs --queue-url URL (redis://[:password@]host:port[/db])');
  if (values.queue === undefined || values.queue === '') usage('serve needs --queue NAME (the BullMQ queue to serve)');
  const queue = queueOptions(values); // checks the URL, name and prefix (usage errors)

  if (values.processor === undefined || values.processor === '') usage('serve needs --processor FILE (a .js, .cjs or .mjs module exporting async (job) => result)');
  const processor = path.resolve(cwd, values.processor);
  let st = null;
  try {
    st = fs.statSync(processor);
  } catch {
    usage(`--processor: no such file ${processor}`);
  }
  if (!st.isFile()) usage(`--processor must be a file, got the directory ${processor}`);
  if (!PROCESSOR_EXTENSIONS.includes(path.extname(processor))) {
    usage(`--processor must be a .js, .cjs or .mjs file, got "${values.processor}"`);
  }

  if (values.workers === undefined) usage('serve needs --workers N (an integer >= 1: the worker processes)');
  const env = {
    QUEUE_URL: queue.url,
    QUEUE_NAME: values.queue,
    WORKER_PROCESSOR: processor,
  };
  if (values['queue-prefix'] !== undefined) env.QUEUE_PREFIX = values['queue-prefix'];
  for (const [flag, name, min, max] of INT_FLAGS) {
    const n = intFlag(values, flag, min, max, usage);
    if (n !== undefined) env[name] = String(n);
  }
  if ((env.QUEUE_LIMITER_MAX === undefined) !== (env.QUEUE_LIMITER_DURATION_MS === undefined)) {
    usage('--limiter-max and --limiter-duration-ms go together: at most N jobs per MS milliseconds');
  }
  if (values['log-format'] !== undefined) {
    const f = values['log-format'].toLowerCase();
    if (f !== 'text' && f !== 'json') usage(`--log-format must be text or json, got "${values['log-format']}"`);
    env.LOG_FORMAT = f;
  }
  const { display } = require('./distributed/config').resolveClientOptions(queue);
  return { env, processor, queue: { name: values.queue, display } };
}

/** The daemon's environment: ours without the variables serve owns, then the flags' and the private paths. */
function daemonEnvironment(base, flagsEnv, dir) {
  const env = { ...base };
  for (const k of OWNED_ENV) delete env[k];
  return {
    ...env,
    ...flagsEnv,
    PID_FILE: path.join(dir, 'worker-pool.pid'),
    SOCKET_PATH: path.join(dir, 'worker-pool.sock'),
    FIFO_DIR: path.join(dir, 'fifo'),
  };
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/**
 * Removes the temporary directories of earlier `serve` runs that were killed (SIGKILL
 * leaves no chance to clean up): `worker-pool-serve-<pid>-*` of this user whose pid is
 * gone. Their daemons stopped when the run died (its IPC channel closed).
 */
function sweepStaleDirs(tmp) {
  let names;
  try {
    names = fs.readdirSync(tmp);
  } catch {
    return;
  }
  const uid = typeof process.getuid === 'function' ? process.getuid() : null;
  for (const name of names) {
    const m = new RegExp(`^${TEMP_PREFIX}(\\d+)-[A-Za-z0-9]+$`).exec(name);
    if (!m || Number(m[1]) === process.pid || pidAlive(Number(m[1]))) continue;
    const dir = path.join(tmp, name);
    try {
      const st = fs.lstatSync(dir);
      if (!st.isDirectory() || (uid !== null && st.uid !== uid)) continue;
      // A daemon still running there (its own PID file names a live process) keeps it.
      const pid = Number(fs.readFileSync(path.join(dir, 'worker-pool.pid'), 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) continue;
    } catch (e) {
      if (e.code !== 'ENOENT') continue;
    }
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      /* someone else's, or gone */
    }
  }
}

function fmtCount(n) {
  return typeof n === 'number' ? n.toLocaleString('en-US') : '-';
}

function fmtSince(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${s % 60}s`;
}

/** The status line from the daemon's metrics (and the completed count of the poll before, for the rate). */
function statusText(queueName, m, rate, draining) {
  const w = m.workers;
  const t = m.tasks;
  const shared = (m.queue && m.queue.shared) || {};
  const parts = [
    `[serve] ${queueName}${draining || (m.pool && m.pool.shuttingDown) ? ' DRAINING' : ''}`,
    `workers ${w.busy} busy, ${w.ready} idle${w.total !== w.busy + w.ready ? ` (${w.total})` : ''}`,
    `held ${fmtCount(shared.held)}`,
    `completed ${fmtCount(t.completed)}${rate !== null ? ` (${rate.toFixed(1)}/s)` : ''}`,
    `failed ${fmtCount(t.failed)}`,
    `waiting ${fmtCount((shared.waiting ?? 0) + (shared.prioritized ?? 0))}`,
    shared.connected === false ? `Redis DISCONNECTED for ${fmtSince(Date.now() - (shared.since || Date.now()))}` : 'Redis connected',
  ];
  return parts.join(' | ');
}

/**
 * Runs the daemon until it exits; resolves with the exit code to use. `values` and
 * `positionals` as bin/worker-pool.js parsed them; `usage(message)` throws its usage error.
 */
async function serve(values, positionals, { usage, queueOptions, print = (s) => process.stdout.write(`${s}\n`) }) {
  const settings = serveSettings(values, positionals, { usage, queueOptions });
  const tmp = fs.existsSync('/tmp') ? '/tmp' : os.tmpdir(); // short: socket paths are limited to 107 bytes
  sweepStaleDirs(tmp);
  const dir = fs.mkdtempSync(path.join(tmp, `${TEMP_PREFIX}${process.pid}-`));
  const env = daemonEnvironment(process.env, settings.env, dir);
  const socketPath = env.SOCKET_PATH;
  const tty = Boolean(process.stdout.isTTY);
  const fromEnv = Number(process.env.STATUS_INTERVAL_MS);
  const interval = Number.isFinite(fromEnv) && fromEnv >= 100 ? fromEnv : tty ? 1000 : 10000;

  let removed = false;
  const removeDir = () => {
    if (removed) return;
    removed = true;
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      /* gone */
    }
  };

  // ---------------------------------------------------------------- output
  const out = new StatusConsole();

  // ---------------------------------------------------------------- the daemon
  const child = spawnDaemon(env, out);
  // Whatever ends this process (an exception, process.exit), the daemon is told to stop
  // and the directory goes; a SIGKILL closes the IPC channel, which stops the daemon.
  const onExit = () => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGTERM');
      } catch {
        /* gone */
      }
    }
    removeDir();
  };
  process.on('exit', onExit);
  const closed = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const spawnError = new Promise((resolve) => child.on('error', resolve));

  print(
    `[serve] serving the BullMQ queue "${settings.queue.name}" at ${settings.queue.display} with ${settings.env.POOL_SIZE} worker(s) running ${settings.processor}`,
  );
  print(`[serve] daemon PID ${child.pid}, control socket ${socketPath} (worker-pool status --socket ${socketPath}); Ctrl-C to stop`);

  // ---------------------------------------------------------------- signals
  let draining = false;
  const onSignal = countedSignals((sig, signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    draining = true;
    if (signals === 1) {
      out.show(`[serve] ${sig}: draining: no new jobs; the held ones finish (or go back to the queue past SHUTDOWN_TIMEOUT). ${sig === 'SIGINT' ? 'Ctrl-C' : 'Signal'} again to give them back now`);
    } else if (signals === 2) {
      out.show(`[serve] ${sig} again: forwarding SIGTERM again; the daemon stops its workers now and gives the held jobs back to the queue (a third signal makes it exit at once)`);
    } else {
      out.show(`[serve] ${sig} again: forwarding SIGTERM a third time; the daemon exits at once (its running jobs return to the queue when their locks expire)`);
    }
    try {
      child.kill('SIGTERM');
    } catch {
      /* gone */
    }
    poll(); // the status line says DRAINING now, not at the next tick
  });
  const handlers = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM'), SIGHUP: () => onSignal('SIGHUP') };
  for (const [sig, fn] of Object.entries(handlers)) process.on(sig, fn);

  // ---------------------------------------------------------------- status
  let stopped = false;
  let polling = false;
  let last = null; // { completed, at }
  let lastPrinted = 0;
  const poll = async () => {
    if (polling || stopped) return;
    polling = true;
    try {
      const m = await call(socketPath, 'metrics', {}, 2000);
      const at = Date.now();
      const rate = last && at > last.at ? ((m.tasks.completed - last.completed) * 1000) / (at - last.at) : null;
      last = { completed: m.tasks.completed, at };
      out.line = statusText(settings.queue.name, m, rate, draining);
    } catch (e) {
      if (draining) out.line = `[serve] ${settings.queue.name} DRAINING`;
      else if (e.code === 'ERR_DAEMON_NOT_RUNNING') out.line = `[serve] ${settings.queue.name}: starting…`;
      else out.line = `[serve] ${settings.queue.name}: ${e.message}`;
    } finally {
      polling = false;
    }
    if (stopped) return;
    if (tty) {
      out.draw();
    } else if (Date.now() - lastPrinted >= interval - 50 && !out.line.endsWith('starting…')) {
      lastPrinted = Date.now();
      process.stdout.write(`${out.line}\n`);
    }
  };
  // On a terminal the line is redrawn every `interval`; otherwise one is printed every
  // `interval` (read a second before, so the rate covers a second).
  const timer = setInterval(poll, tty ? interval : Math.min(interval, 1000));
  const first = setTimeout(poll, 300);

  const outcome = await Promise.race([closed, spawnError.then((e) => ({ error: e }))]);
  stopped = true;
  clearInterval(timer);
  clearTimeout(first);
  out.end();
  for (const [sig, fn] of Object.entries(handlers)) process.removeListener(sig, fn);
  process.removeListener('exit', onExit);
  removeDir();
  if (outcome.error) {
    process.stderr.write(`worker-pool: cannot start the daemon: ${outcome.error.message}\n`);
    return 1;
  }
  const { code, signal } = outcome;
  print(`[serve] daemon ${signal ? `killed by ${signal}` : `exited with code ${code}`}`);
  return signal ? 1 : (code ?? 1);
}

module.exports = { serve, serveSettings, statusText, SERVE_OPTIONS, SERVE_USAGE, TEMP_PREFIX };
