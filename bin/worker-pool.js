#!/usr/bin/env node
// worker-pool: command-line client of the worker-pool daemon's control socket.
'use strict';

const { parseArgs } = require('node:util');
const { request, call, defaultSocketPath } = require('../lib/control-client');
const { SERVE_OPTIONS } = require('../lib/cli-serve');

const USAGE = `Usage: worker-pool <command> [options]

Commands:
  status [--watch] [--interval MS] [--json]
                       pool summary and a table of the workers
                       (--watch: refresh every second until Ctrl-C)
  submit --type TYPE [--payload JSON] [--priority N] [--timeout MS]
                       run a task and print its result as JSON
  scale up|down N      add or remove N workers
  dlq [list|requeue [ID]|clear] [--json]
                       show, resubmit or empty the dead-letter queue
  metrics [--prometheus]
                       pool metrics as JSON (or Prometheus text)
  ping                 check that the daemon answers
  shutdown             stop the daemon gracefully
  serve --queue-url URL --queue NAME --processor FILE --workers N [...]
                       serve a BullMQ queue with a processor file, in the
                       foreground (a daemon of its own; "worker-pool serve --help")

Options:
  --socket PATH        control socket (default: $SOCKET_PATH, else worker-pool.sock
                       beside $PID_FILE, else /tmp/cortex/worker-pool.sock)
  --queue-url URL      talk to a shared queue (redis://[:password@]host:port[/db],
                       rediss:// for TLS) directly instead of a daemon: for
                       status, submit, dlq and metrics
  --queue NAME         the shared queue's name (default cortex; with --queue-url)
  --queue-prefix P     its BullMQ key prefix (default bull; with --queue-url)
  -h, --help           this help

Exit status: 0 success, 1 failure (daemon not running, task failed, ...), 2 usage error.`;

const OPTIONS = {
  socket: { type: 'string' },
  watch: { type: 'boolean' },
  interval: { type: 'string' },
  json: { type: 'boolean' },
  type: { type: 'string' },
  payload: { type: 'string' },
  priority: { type: 'string' },
  timeout: { type: 'string' },
  prometheus: { type: 'boolean' },
  'queue-url': { type: 'string' },
  queue: { type: 'string' },
  'queue-prefix': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  ...SERVE_OPTIONS,
};

// Options that choose what to talk to (a daemon's socket or a shared queue), checked
// apart from each command's own options.
const TARGET_OPTIONS = new Set(['socket', 'queue-url', 'queue', 'queue-prefix', 'help']);
// Commands that can talk to a shared queue directly (the others need a daemon).
const QUEUE_COMMANDS = new Set(['status', 'submit', 'dlq', 'metrics']);
// The CLI gives up on an unreachable Redis after this long (exit 1).
const QUEUE_CONNECT_TIMEOUT_MS = 3000;

const ALLOWED = {
  status: ['watch', 'interval', 'json'],
  submit: ['type', 'payload', 'priority', 'timeout'],
  scale: [],
  dlq: ['json'],
  metrics: ['prometheus'],
  ping: [],
  shutdown: [],
  serve: Object.keys(SERVE_OPTIONS),
};

class UsageError extends Error {}

function usage(message) {
  throw new UsageError(message);
}

// ------------------------------------------------------------------ formatting

function fmtDuration(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.floor(s % 60)}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

function table(headers, rows, rightAligned = new Set()) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) =>
    cells
      .map((c, i) => (rightAligned.has(i) ? String(c).padStart(widths[i]) : String(c).padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

function rssMB(w) {
  const bytes = typeof w.rssBytes === 'number' ? w.rssBytes : typeof w.memoryMB === 'number' ? w.memoryMB * 1048576 : 0;
  return bytes > 0 ? (bytes / 1048576).toFixed(1) : '-';
}

function renderStatus(socketPath, ping, m, workers) {
  const p = m.pool;
  const w = m.workers;
  const t = m.tasks;
  const perf = m.performance;
  const health = m.health || {};
  const out = [];
  out.push(`worker-pool daemon: running (PID ${ping.pid}, up ${fmtDuration(ping.uptimeMs)}, socket ${socketPath})`);
  out.push(
    `pool:        size ${p.size}, health ${health.status ?? '-'}${p.shuttingDown ? ', SHUTTING DOWN' : ''}${p.failedSlots ? `, ${p.failedSlots} failed slot(s)` : ''}`,
  );
  out.push(`workers:     ${w.total} total, ${w.ready} ready, ${w.busy} busy, ${w.unhealthy} unhealthy`);
  out.push(
    `tasks:       ${t.submitted} submitted, ${t.completed} completed, ${t.failed} failed, ${t.queued} queued, ` +
      `${t.running ?? 0} running, ${t.dlq} in dead-letter queue`,
  );
  out.push(
    `performance: reuse ${perf.workerReuseRate}, avg wait ${perf.avgTaskWaitTimeMs} ms, avg run ${perf.avgTaskDurationMs} ms, ` +
      `${perf.workersSpawned} spawned, ${perf.workersRestarted} restarted, ${perf.workersCrashed} crashed`,
  );
  const shared = m.queue && m.queue.shared;
  if (shared) {
    out.push(`shared:      ${servingText(shared.servingPools)}; ${sharedCounts(shared)}`);
    if (shared.connected === false) {
      out.push(`             DISCONNECTED from the shared queue since ${new Date(shared.since).toISOString()} (not serving; reconnecting)`);
    }
  }
  out.push('');
  if (!workers.length) {
    out.push('(no workers)');
  } else {
    const rows = workers.map((x) => [x.id, x.pid ?? '-', x.state, x.tasksExecuted ?? 0, rssMB(x), `${fmtDuration(x.lastActivity)} ago`]);
    out.push(table(['ID', 'PID', 'STATE', 'TASKS', 'RSS MB', 'LAST ACTIVITY'], rows, new Set([1, 3, 4])));
  }
  return out.join('\n');
}

async function fetchStatus(socketPath) {
  const [ping, metrics, workers] = await Promise.all([
    call(socketPath, 'ping'),
    call(socketPath, 'metrics'),
    call(socketPath, 'workers'),
  ]);
  return { ping, metrics, workers };
}

// ------------------------------------------------------------------ targets
//
// A command talks to a target: a daemon (its control socket) or, with --queue-url, a
// shared queue directly (createQueueClient: no daemon needed). Both answer the same
// calls, so submit, dlq, metrics and status print the same way for either.

function daemonTarget(socketPath) {
  return {
    socketPath,
    async status() {
      const s = await fetchStatus(socketPath);
      return { json: s, text: renderStatus(socketPath, s.ping, s.metrics, s.workers) };
    },
    // No client-side limit: the task's own timeout and retries bound it (Ctrl-C to give up).
    submit: (task) => call(socketPath, 'submit', { task }, 0),
    dlq: () => call(socketPath, 'dlq'),
    dlqRequeue: (taskId) => call(socketPath, 'dlq-requeue', taskId ? { taskId } : {}),
    dlqClear: () => call(socketPath, 'dlq-clear'),
    metrics: () => call(socketPath, 'metrics'),
    prometheus: () => call(socketPath, 'prometheus'),
    close: async () => {},
  };
}

/** The shared-queue options, checked (a bad one is a usage error naming the CLI option). */
function queueOptions(values) {
  const opts = { url: values['queue-url'], connectTimeoutMs: QUEUE_CONNECT_TIMEOUT_MS };
  if (values.queue !== undefined) opts.name = values.queue;
  if (values['queue-prefix'] !== undefined) opts.prefix = values['queue-prefix'];
  try {
    // config.js loads neither bullmq nor ioredis: a usage error stays cheap.
    require('../lib/distributed/config').resolveClientOptions(opts);
  } catch (e) {
    const named = String(e.message)
      .replace('"options.url"', '"--queue-url"')
      .replace('"options.name"', '"--queue"')
      .replace('"options.prefix"', '"--queue-prefix"')
      // A URL of another scheme is echoed as given: its password must not be.
      // (everything up to the last "@", which may follow a "/" or "@" in the password).
      .replace(/([a-z][a-z0-9+.-]*:\/\/)([^\s":@/]*):[^\s"]*@/gi, '$1$2:***@');
    usage(named);
  }
  return opts;
}

function queueTarget(values) {
  const opts = queueOptions(values);
  const client = require('..').createQueueClient(opts);
  const { url, name, prefix } = client.options; // url without its password
  const shared = async () => ({ queue: { name, prefix, url, shared: await client.getQueueMetrics() } });
  return {
    socketPath: null,
    async status() {
      const m = await shared();
      return { json: m, text: renderQueueStatus(m.queue) };
    },
    submit: (task, signal) => client.submitTask(task, signal ? { signal } : undefined),
    dlq: () => client.getDeadLetterQueue(),
    async dlqRequeue(taskId) {
      const promises = await client.requeueDeadLetter(taskId || undefined);
      // Nobody waits for these here: the jobs run on the serving pools, and a failure
      // lands in the dead-letter queue again. close() rejects the promises, not the jobs.
      for (const p of promises) if (p && typeof p.catch === 'function') p.catch(() => {});
      if (taskId && promises.length === 0) {
        throw Object.assign(new Error(`No dead-letter task with id ${JSON.stringify(taskId)} in the shared queue "${name}"`), { code: 'ERR_NOT_FOUND' });
      }
      return { requeued: promises.length };
    },
    async dlqClear() {
      return { cleared: await client.clearDeadLetterQueue() };
    },
    metrics: shared,
    async prometheus() {
      return sharedPrometheus(name, await client.getQueueMetrics());
    },
    close: () => client.close(),
  };
}

/** One line of a shared queue's counts (the daemon's status shows it too). */
function sharedCounts(c) {
  return (
    `${c.waiting} waiting, ${c.prioritized} prioritized, ${c.active} active, ${c.delayed} delayed, ` +
    `${c.completed} completed, ${c.failed} failed (dead-letter queue)`
  );
}

function servingText(n) {
  return n > 0 ? `${n} pool(s) serving` : 'no pool serving (jobs wait until a daemon with QUEUE_URL serves this queue)';
}

function renderQueueStatus(q) {
  const c = q.shared;
  return [
    `shared queue "${q.name}" (prefix ${q.prefix}) at ${q.url}: ${servingText(c.servingPools)}`,
    `jobs:        ${sharedCounts(c)}`,
  ].join('\n');
}

/** The shared counts in the Prometheus text format (the same lines a serving daemon exports). */
function sharedPrometheus(name, c) {
  return require('../lib/distributed/codec').sharedPrometheus(name, c);
}

// ------------------------------------------------------------------ commands

async function cmdStatus(target, values, positionals) {
  if (positionals.length) usage(`status takes no arguments, got "${positionals.join(' ')}"`);
  let interval = 1000;
  if (values.interval !== undefined) {
    interval = Number(values.interval);
    if (!Number.isFinite(interval) || interval < 100) usage(`--interval must be a number of ms >= 100, got "${values.interval}"`);
  }
  if (!values.watch) {
    const s = await target.status();
    if (values.json) print(JSON.stringify(s.json, null, 2));
    else print(s.text);
    return 0;
  }
  const tty = Boolean(process.stdout.isTTY);
  let stopped = false;
  let wake = null;
  const onSigint = () => {
    stopped = true;
    if (wake) wake();
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  if (tty) process.stdout.write('\x1b[?25l'); // hide the cursor while refreshing
  try {
    while (!stopped) {
      let text;
      try {
        const s = await target.status();
        text = values.json ? JSON.stringify(s.json) : s.text;
      } catch (e) {
        text = `${e.message}`;
      }
      if (stopped) break;
      const stamp = new Date().toLocaleTimeString();
      if (tty) {
        process.stdout.write(`\x1b[H\x1b[2J${text}\n\nrefreshed ${stamp}, every ${fmtDuration(interval)}; Ctrl-C to exit\n`);
      } else if (values.json) {
        print(text);
      } else {
        print(`--- ${stamp}\n${text}\n`);
      }
      await new Promise((resolve) => {
        const t = setTimeout(resolve, interval);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = null;
    }
  } finally {
    if (tty) process.stdout.write('\x1b[?25h');
    process.removeListener('SIGINT', onSigint);
    process.removeListener('SIGTERM', onSigint);
  }
  return 0;
}

async function cmdSubmit(target, values, positionals) {
  if (positionals.length) usage(`submit takes options only, got "${positionals.join(' ')}"`);
  if (!values.type) usage('submit needs --type TYPE');
  const task = { type: values.type };
  if (values.payload !== undefined) {
    try {
      task.payload = JSON.parse(values.payload);
    } catch (e) {
      usage(`--payload is not valid JSON (${e.message}): ${values.payload}`);
    }
  } else {
    task.payload = null;
  }
  if (values.priority !== undefined) {
    const n = Number(values.priority);
    if (values.priority.trim() === '' || !Number.isFinite(n)) usage(`--priority must be a number (0 is the highest), got "${values.priority}"`);
    task.priority = n;
  }
  if (values.timeout !== undefined) {
    const n = Number(values.timeout);
    if (values.timeout.trim() === '' || !Number.isFinite(n) || n <= 0) usage(`--timeout must be a positive number of ms, got "${values.timeout}"`);
    task.timeout = n;
  }
  let result;
  if (target.socketPath) {
    result = await target.submit(task);
  } else {
    // On a shared queue the job would outlive us: Ctrl-C cancels it (a waiting job is
    // removed, a running one is aborted on its machine); a second Ctrl-C just exits.
    const ac = new AbortController();
    const onSigint = () => {
      if (ac.signal.aborted) process.exit(130);
      process.stderr.write('worker-pool: cancelling the task (Ctrl-C again to exit at once)\n');
      ac.abort(new Error('cancelled from the command line (Ctrl-C)'));
    };
    process.on('SIGINT', onSigint);
    try {
      result = await target.submit(task, ac.signal);
    } finally {
      process.removeListener('SIGINT', onSigint);
    }
  }
  print(JSON.stringify(result, null, 2) ?? 'null');
  return 0;
}

async function cmdScale(target, values, positionals) {
  const [direction, n, ...extra] = positionals;
  if (direction !== 'up' && direction !== 'down') usage('scale needs a direction: worker-pool scale up|down N');
  if (extra.length) usage(`unexpected arguments: "${extra.join(' ')}"`);
  const count = n === undefined ? 1 : Number(n);
  if (!Number.isInteger(count) || count <= 0) usage(`scale needs a positive whole number of workers, got "${n}"`);
  const r = await call(target.socketPath, 'scale', { direction, count }, 60000);
  const verb = direction === 'up' ? 'added' : 'removed';
  print(`${verb} ${r.count} worker(s) (requested ${count}); pool size is now ${r.newSize}`);
  return 0;
}

async function cmdDlq(target, values, positionals) {
  const [sub = 'list', ...rest] = positionals;
  if (sub === 'list') {
    if (rest.length) usage(`dlq list takes no arguments, got "${rest.join(' ')}"`);
    const items = await target.dlq();
    if (values.json) {
      print(JSON.stringify(items, null, 2));
    } else if (!items.length) {
      print('dead-letter queue is empty');
    } else {
      const rows = items.map((d) => {
        const err = d.finalError ? `${d.finalError.code ? `${d.finalError.code}: ` : ''}${d.finalError.message ?? ''}` : '';
        const attempts = d.metadata && Array.isArray(d.metadata.attempts) ? d.metadata.attempts.length : (d.retries ?? 0) + 1;
        const failed = d.failedAt ? `${fmtDuration(Date.now() - d.failedAt)} ago` : '-';
        return [d.id, d.task && d.task.type, d.priority, attempts, failed, err.length > 70 ? `${err.slice(0, 67)}...` : err];
      });
      print(table(['ID', 'TYPE', 'PRIORITY', 'ATTEMPTS', 'FAILED', 'ERROR'], rows, new Set([2, 3])));
      print(`\n${items.length} task(s) in the dead-letter queue`);
    }
    return 0;
  }
  if (sub === 'requeue') {
    if (rest.length > 1) usage(`dlq requeue takes at most one task id, got "${rest.join(' ')}"`);
    const r = await target.dlqRequeue(rest[0]);
    print(`requeued ${r.requeued} task(s)`);
    return 0;
  }
  if (sub === 'clear') {
    if (rest.length) usage(`dlq clear takes no arguments, got "${rest.join(' ')}"`);
    const r = await target.dlqClear();
    print(`cleared ${r.cleared} task(s) from the dead-letter queue`);
    return 0;
  }
  usage(`unknown dlq command "${sub}": use list, requeue [ID] or clear`);
  return 2;
}

async function cmdMetrics(target, values, positionals) {
  if (positionals.length) usage(`metrics takes no arguments, got "${positionals.join(' ')}"`);
  if (values.prometheus) {
    const text = await target.prometheus();
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  } else {
    print(JSON.stringify(await target.metrics(), null, 2));
  }
  return 0;
}

async function cmdPing(target, values, positionals) {
  if (positionals.length) usage(`ping takes no arguments, got "${positionals.join(' ')}"`);
  const t0 = process.hrtime.bigint();
  const r = await call(target.socketPath, 'ping');
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  print(`pong from PID ${r.pid} (up ${fmtDuration(r.uptimeMs)}) in ${ms.toFixed(1)} ms`);
  return 0;
}

async function cmdShutdown(target, values, positionals) {
  if (positionals.length) usage(`shutdown takes no arguments, got "${positionals.join(' ')}"`);
  const res = await request(target.socketPath, { cmd: 'shutdown' });
  if (!res.ok) throw Object.assign(new Error(res.error.message), { code: res.error.code });
  print('worker-pool daemon is shutting down (graceful)');
  return 0;
}

/** serve runs a daemon of its own (a private socket) on the queue it is given: lib/cli-serve.js. */
async function cmdServe(values, positionals) {
  try {
    for (const k of Object.keys(values)) {
      if (!TARGET_OPTIONS.has(k) && !ALLOWED.serve.includes(k)) usage(`option --${k} does not apply to "serve"`);
    }
    return await require('../lib/cli-serve').serve(values, positionals, { usage, queueOptions });
  } catch (e) {
    if (e instanceof UsageError) e.help = 'worker-pool serve --help';
    throw e;
  }
}

const COMMANDS = { status: cmdStatus, submit: cmdSubmit, scale: cmdScale, dlq: cmdDlq, metrics: cmdMetrics, ping: cmdPing, shutdown: cmdShutdown };

function print(text) {
  process.stdout.write(`${text}\n`);
}

async function main(argv) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    const err = new UsageError(e.message);
    if (argv[0] === 'serve') err.help = 'worker-pool serve --help';
    throw err;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (command === 'serve' && values.help) {
    print(require('../lib/cli-serve').SERVE_USAGE);
    return 0;
  }
  if (values.help || command === 'help') {
    print(USAGE);
    return 0;
  }
  if (!command) usage('no command given');
  const fn = COMMANDS[command];
  if (command === 'serve') return cmdServe(values, rest);
  if (!fn) usage(`unknown command "${command}"`);
  for (const k of Object.keys(values)) {
    if (!TARGET_OPTIONS.has(k) && !ALLOWED[command].includes(k)) usage(`option --${k} does not apply to "${command}"`);
  }
  const queueUrl = values['queue-url'];
  let target;
  if (queueUrl === undefined) {
    if (values.queue !== undefined || values['queue-prefix'] !== undefined) usage('--queue and --queue-prefix need --queue-url URL');
    if (values.socket !== undefined && values.socket === '') usage('--socket needs a path');
    target = daemonTarget(values.socket || defaultSocketPath());
  } else {
    if (values.socket !== undefined) usage('--socket and --queue-url exclude each other: talk to a daemon or to the shared queue');
    if (!QUEUE_COMMANDS.has(command)) usage(`${command} needs a daemon (its control socket); --queue-url works with status, submit, dlq and metrics`);
    target = queueTarget(values);
  }
  try {
    return await fn(target, values, rest);
  } finally {
    await target.close();
  }
}

if (require.main === module) {
  process.stdout.on('error', (e) => {
    if (e.code === 'EPIPE') process.exit(0); // `worker-pool status | head`
  });
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      lingerGuard();
    },
    (e) => {
      if (e instanceof UsageError) {
        process.stderr.write(`worker-pool: ${e.message}\nRun "${e.help || 'worker-pool --help'}" for usage.\n`);
        process.exitCode = 2;
      } else if (e && e.code === 'ERR_DAEMON_NOT_RUNNING') {
        process.stderr.write(`${e.message}\n`);
        process.exitCode = 1;
      } else {
        process.stderr.write(`worker-pool: ${e && e.code ? `[${e.code}] ` : ''}${e && e.message ? e.message : e}\n`);
        process.exitCode = 1;
      }
      lingerGuard();
    },
  );
}

/**
 * The command is done and its connections are closed; a timer some library left
 * behind (ioredis waits up to 2 s on a socket that never connected) must not hold
 * the exit. Output is written synchronously (pipes, files, terminals on Linux).
 */
function lingerGuard() {
  setTimeout(() => process.exit(), 100).unref();
}

module.exports = { main, renderStatus, renderQueueStatus, sharedPrometheus, fmtDuration, USAGE };
