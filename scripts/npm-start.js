#!/usr/bin/env node
// `npm start`: runs the worker-pool daemon (scripts/daemon.js, default worker) in the
// foreground and shows a live status line read from its control socket. The daemon's
// output is shown above the status line and appended to $LOG_DIR/worker-pool.log.
// Ctrl-C stops the daemon gracefully (a second Ctrl-C stops the workers at once).
// Environment: everything scripts/daemon.js reads (POOL_SIZE, PID_FILE, SOCKET_PATH,
// LOG_DIR, ...), plus STATUS_INTERVAL_MS (default 1000 on a terminal, 5000 otherwise).
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { call, defaultSocketPath } = require('../lib/control-client');
const { StatusConsole, spawnDaemon, countedSignals } = require('../lib/foreground');

const PKG_DIR = path.join(__dirname, '..');
const tty = Boolean(process.stdout.isTTY);
const env = { ...process.env };
env.PID_FILE = env.PID_FILE || '/tmp/cortex/worker-pool.pid';
const socketPath = defaultSocketPath(env);
env.SOCKET_PATH = socketPath;
const logDir = env.LOG_DIR || path.join(PKG_DIR, 'logs');
const interval = Number(env.STATUS_INTERVAL_MS) > 0 ? Number(env.STATUS_INTERVAL_MS) : tty ? 1000 : 5000;

let logStream = null;
try {
  fs.mkdirSync(logDir, { recursive: true });
  logStream = fs.createWriteStream(path.join(logDir, 'worker-pool.log'), { flags: 'a' });
  logStream.on('error', () => {
    logStream = null;
  });
} catch (e) {
  process.stderr.write(`[npm-start] cannot write the log in ${logDir}: ${e.message}\n`);
}

// ------------------------------------------------------------------ output

// The daemon's output is shown above the status line, and appended to the log file.
const out = new StatusConsole({ tee: (line) => logStream && logStream.write(`${line}\n`) });

// ------------------------------------------------------------------ the daemon

const child = spawnDaemon(env, out);
child.on('error', (e) => {
  out.show(`[npm-start] cannot start the daemon: ${e.message}`, process.stderr);
  process.exit(1);
});

const onSignal = countedSignals((sig, n) => {
  if (child.exitCode !== null || child.signalCode !== null) return;
  if (n === 1) {
    out.show(`[npm-start] ${sig}: stopping the daemon gracefully (Ctrl-C again to stop the workers at once)`, process.stdout);
    child.kill('SIGTERM');
  } else if (n === 2) {
    child.kill('SIGINT'); // the daemon's second signal: immediate shutdown
  } else {
    child.kill('SIGKILL');
  }
});
process.on('SIGINT', () => onSignal('SIGINT'));
process.on('SIGTERM', () => onSignal('SIGTERM'));
process.on('SIGHUP', () => onSignal('SIGHUP'));

// ------------------------------------------------------------------ status

let last = null; // { completed, at }
let polling = false;
let stopped = false;

function rate(completed) {
  const now = Date.now();
  let r = 0;
  if (last && now > last.at) r = ((completed - last.completed) * 1000) / (now - last.at);
  last = { completed, at: now };
  return r;
}

async function poll() {
  if (polling || stopped) return;
  polling = true;
  try {
    const m = await call(socketPath, 'metrics', {}, 2000);
    const w = m.workers;
    const t = m.tasks;
    const r = rate(t.completed);
    out.line =
      `[worker-pool] workers ${w.ready} ready / ${w.busy} busy (${w.total})` +
      ` | queue ${t.queued}` +
      ` | completed ${t.completed}` +
      (t.failed ? ` | failed ${t.failed}` : '') +
      ` | ${r.toFixed(1)} tasks/s` +
      ` | ${m.health && m.health.status}` +
      (m.pool.shuttingDown ? ' | shutting down' : '');
  } catch (e) {
    out.line = e.code === 'ERR_DAEMON_NOT_RUNNING' ? '[worker-pool] starting…' : `[worker-pool] ${e.message}`;
  } finally {
    polling = false;
  }
  if (stopped) return;
  if (tty) out.draw();
  else process.stdout.write(`${out.line}\n`);
}

const timer = setInterval(poll, interval);
if (tty) setTimeout(poll, 300);

child.on('close', (code, signal) => {
  stopped = true;
  clearInterval(timer);
  out.end();
  const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
  process.stdout.write(`[npm-start] worker-pool daemon ${how}\n`);
  const finish = () => process.exit(signal ? 1 : code ?? 1);
  if (logStream) logStream.end(finish);
  else finish();
});
