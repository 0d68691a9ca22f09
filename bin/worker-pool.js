#!/usr/bin/env node
// worker-pool: command-line client of the worker-pool daemon's control socket.
'use strict';

const { parseArgs } = require('node:util');
const { request, call, defaultSocketPath } = require('../lib/control-client');

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

Options:
  --socket PATH        control socket (default: $SOCKET_PATH, else worker-pool.sock
                       beside $PID_FILE, else /tmp/cortex/worker-pool.sock)
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
  help: { type: 'boolean', short: 'h' },
};

const ALLOWED = {
  status: ['watch', 'interval', 'json'],
  submit: ['type', 'payload', 'priority', 'timeout'],
  scale: [],
  dlq: ['json'],
  metrics: ['prometheus'],
  ping: [],
  shutdown: [],
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

// ------------------------------------------------------------------ commands

async function cmdStatus(socketPath, values, positionals) {
  if (positionals.length) usage(`status takes no arguments, got "${positionals.join(' ')}"`);
  let interval = 1000;
  if (values.interval !== undefined) {
    interval = Number(values.interval);
    if (!Number.isFinite(interval) || interval < 100) usage(`--interval must be a number of ms >= 100, got "${values.interval}"`);
  }
  if (!values.watch) {
    const s = await fetchStatus(socketPath);
    if (values.json) print(JSON.stringify(s, null, 2));
    else print(renderStatus(socketPath, s.ping, s.metrics, s.workers));
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
        const s = await fetchStatus(socketPath);
        text = values.json ? JSON.stringify(s) : renderStatus(socketPath, s.ping, s.metrics, s.workers);
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

async function cmdSubmit(socketPath, values, positionals) {
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
  // No client-side limit: the task's own timeout and retries bound it (Ctrl-C to give up).
  const result = await call(socketPath, 'submit', { task }, 0);
  print(JSON.stringify(result, null, 2) ?? 'null');
  return 0;
}

async function cmdScale(socketPath, values, positionals) {
  const [direction, n, ...extra] = positionals;
  if (direction !== 'up' && direction !== 'down') usage('scale needs a direction: worker-pool scale up|down N');
  if (extra.length) usage(`unexpected arguments: "${extra.join(' ')}"`);
  const count = n === undefined ? 1 : Number(n);
  if (!Number.isInteger(count) || count <= 0) usage(`scale needs a positive whole number of workers, got "${n}"`);
  const r = await call(socketPath, 'scale', { direction, count }, 60000);
  const verb = direction === 'up' ? 'added' : 'removed';
  print(`${verb} ${r.count} worker(s) (requested ${count}); pool size is now ${r.newSize}`);
  return 0;
}

async function cmdDlq(socketPath, values, positionals) {
  const [sub = 'list', ...rest] = positionals;
  if (sub === 'list') {
    if (rest.length) usage(`dlq list takes no arguments, got "${rest.join(' ')}"`);
    const items = await call(socketPath, 'dlq');
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
    const r = await call(socketPath, 'dlq-requeue', rest[0] ? { taskId: rest[0] } : {});
    print(`requeued ${r.requeued} task(s)`);
    return 0;
  }
  if (sub === 'clear') {
    if (rest.length) usage(`dlq clear takes no arguments, got "${rest.join(' ')}"`);
    const r = await call(socketPath, 'dlq-clear');
    print(`cleared ${r.cleared} task(s) from the dead-letter queue`);
    return 0;
  }
  usage(`unknown dlq command "${sub}": use list, requeue [ID] or clear`);
  return 2;
}

async function cmdMetrics(socketPath, values, positionals) {
  if (positionals.length) usage(`metrics takes no arguments, got "${positionals.join(' ')}"`);
  if (values.prometheus) {
    const text = await call(socketPath, 'prometheus');
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  } else {
    print(JSON.stringify(await call(socketPath, 'metrics'), null, 2));
  }
  return 0;
}

async function cmdPing(socketPath, values, positionals) {
  if (positionals.length) usage(`ping takes no arguments, got "${positionals.join(' ')}"`);
  const t0 = process.hrtime.bigint();
  const r = await call(socketPath, 'ping');
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  print(`pong from PID ${r.pid} (up ${fmtDuration(r.uptimeMs)}) in ${ms.toFixed(1)} ms`);
  return 0;
}

async function cmdShutdown(socketPath, values, positionals) {
  if (positionals.length) usage(`shutdown takes no arguments, got "${positionals.join(' ')}"`);
  const res = await request(socketPath, { cmd: 'shutdown' });
  if (!res.ok) throw Object.assign(new Error(res.error.message), { code: res.error.code });
  print('worker-pool daemon is shutting down (graceful)');
  return 0;
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
    throw new UsageError(e.message);
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || command === 'help') {
    print(USAGE);
    return 0;
  }
  if (!command) usage('no command given');
  const fn = COMMANDS[command];
  if (!fn) usage(`unknown command "${command}"`);
  for (const k of Object.keys(values)) {
    if (k !== 'socket' && k !== 'help' && !ALLOWED[command].includes(k)) usage(`option --${k} does not apply to "${command}"`);
  }
  if (values.socket !== undefined && values.socket === '') usage('--socket needs a path');
  const socketPath = values.socket || defaultSocketPath();
  return fn(socketPath, values, rest);
}

if (require.main === module) {
  process.stdout.on('error', (e) => {
    if (e.code === 'EPIPE') process.exit(0); // `worker-pool status | head`
  });
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      if (e instanceof UsageError) {
        process.stderr.write(`worker-pool: ${e.message}\nRun "worker-pool --help" for usage.\n`);
        process.exitCode = 2;
      } else if (e && e.code === 'ERR_DAEMON_NOT_RUNNING') {
        process.stderr.write(`${e.message}\n`);
        process.exitCode = 1;
      } else {
        process.stderr.write(`worker-pool: ${e && e.code ? `[${e.code}] ` : ''}${e && e.message ? e.message : e}\n`);
        process.exitCode = 1;
      }
    },
  );
}

module.exports = { main, renderStatus, fmtDuration, USAGE };
