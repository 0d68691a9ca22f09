#!/usr/bin/env node
// `npm start`: runs the worker-pool daemon (scripts/daemon.js, default worker) in the
// foreground and shows a live status line read from its control socket. The daemon's
// output is shown above the status line and appended to $LOG_DIR/worker-pool.log.
// Ctrl-C stops the daemon gracefully (a second Ctrl-C stops the workers at once).
// Environment: everything scripts/daemon.js reads (POOL_SIZE, PID_FILE, SOCKET_PATH,
// LOG_DIR, ...), plus STATUS_INTERVAL_MS (default 1000 on a terminal, 5000 otherwise).
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { call, defaultSocketPath } = require('../lib/control-client');

const PKG_DIR = path.join(__dirname, '..');
const DAEMON_JS = path.join(__dirname, 'daemon.js');
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

let statusLine = '';

function fit(line) {
  const cols = process.stdout.columns || 120;
  return line.length >= cols ? `${line.slice(0, cols - 2)}…` : line;
}

function drawStatus() {
  if (tty && statusLine) process.stdout.write(`\r\x1b[K${fit(statusLine)}`);
}

function clearStatus() {
  if (tty && statusLine) process.stdout.write('\r\x1b[K');
}

/** A line of the daemon's output: above the status line, and into the log file. */
function showLine(line, stream) {
  if (logStream) logStream.write(`${line}\n`);
  clearStatus();
  stream.write(`${line}\n`);
  drawStatus();
}

function pipeLines(readable, stream) {
  let rest = '';
  readable.setEncoding('utf8');
  readable.on('data', (chunk) => {
    rest += chunk;
    let nl;
    while ((nl = rest.indexOf('\n')) !== -1) {
      showLine(rest.slice(0, nl), stream);
      rest = rest.slice(nl + 1);
    }
  });
  readable.on('end', () => {
    if (rest) showLine(rest, stream);
    rest = '';
  });
}

// ------------------------------------------------------------------ the daemon

const child = spawn(process.execPath, [DAEMON_JS], {
  env,
  cwd: process.cwd(),
  // Its own process group: a Ctrl-C reaches only us, and we stop it exactly once.
  // The IPC channel makes it stop gracefully if we disappear.
  detached: true,
  stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
});
pipeLines(child.stdout, process.stdout);
pipeLines(child.stderr, process.stderr);
child.on('error', (e) => {
  showLine(`[npm-start] cannot start the daemon: ${e.message}`, process.stderr);
  process.exit(1);
});

let signals = 0;
let lastSignalAt = 0;
function onSignal(sig) {
  const now = Date.now();
  // npm may forward the terminal's SIGINT that we also got directly: count it once.
  if (signals > 0 && now - lastSignalAt < 1000) return;
  lastSignalAt = now;
  signals++;
  if (child.exitCode !== null || child.signalCode !== null) return;
  if (signals === 1) {
    showLine(`[npm-start] ${sig}: stopping the daemon gracefully (Ctrl-C again to stop the workers at once)`, process.stdout);
    child.kill('SIGTERM');
  } else if (signals === 2) {
    child.kill('SIGINT'); // the daemon's second signal: immediate shutdown
  } else {
    child.kill('SIGKILL');
  }
}
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
    statusLine =
      `[worker-pool] workers ${w.ready} ready / ${w.busy} busy (${w.total})` +
      ` | queue ${t.queued}` +
      ` | completed ${t.completed}` +
      (t.failed ? ` | failed ${t.failed}` : '') +
      ` | ${r.toFixed(1)} tasks/s` +
      ` | ${m.health && m.health.status}` +
      (m.pool.shuttingDown ? ' | shutting down' : '');
  } catch (e) {
    statusLine = e.code === 'ERR_DAEMON_NOT_RUNNING' ? '[worker-pool] starting…' : `[worker-pool] ${e.message}`;
  } finally {
    polling = false;
  }
  if (stopped) return;
  if (tty) drawStatus();
  else process.stdout.write(`${statusLine}\n`);
}

const timer = setInterval(poll, interval);
if (tty) setTimeout(poll, 300);

child.on('close', (code, signal) => {
  stopped = true;
  clearInterval(timer);
  clearStatus();
  statusLine = '';
  const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
  process.stdout.write(`[npm-start] worker-pool daemon ${how}\n`);
  const finish = () => process.exit(signal ? 1 : code ?? 1);
  if (logStream) logStream.end(finish);
  else finish();
});
