'use strict';
// The daemon in the foreground, as `npm start` (scripts/npm-start.js) and `worker-pool
// serve` (lib/cli-serve.js) run it: started in a process group of its own with an IPC
// channel (it stops when the channel closes, so it never outlives us), its output shown
// line by line above a status line that a terminal redraws in place, and the signals
// we get counted once each (npm forwards the terminal's Ctrl-C that we also got).

const { spawn } = require('node:child_process');
const path = require('node:path');

const DAEMON_JS = path.join(__dirname, '..', 'scripts', 'daemon.js');
// Signals within this long of the one before count once.
const SIGNAL_DEDUP_MS = 1000;

/** Lines of output above one status line (redrawn in place on a terminal). */
class StatusConsole {
  /** `tee(line)`: also called with every line shown (a log file). */
  constructor({ tee = null } = {}) {
    this.tty = Boolean(process.stdout.isTTY);
    this.line = '';
    this.tee = tee;
  }

  #fit(line) {
    const cols = process.stdout.columns || 120;
    return line.length >= cols ? `${line.slice(0, cols - 2)}…` : line;
  }

  draw() {
    if (this.tty && this.line) process.stdout.write(`\r\x1b[K${this.#fit(this.line)}`);
  }

  clear() {
    if (this.tty && this.line) process.stdout.write('\r\x1b[K');
  }

  /** A line above the status line. */
  show(line, stream = process.stdout) {
    if (this.tee) this.tee(line);
    this.clear();
    stream.write(`${line}\n`);
    this.draw();
  }

  /** Shows what `readable` carries, line by line, on `stream`. */
  pipe(readable, stream) {
    let rest = '';
    readable.setEncoding('utf8');
    readable.on('data', (chunk) => {
      rest += chunk;
      let nl;
      while ((nl = rest.indexOf('\n')) !== -1) {
        this.show(rest.slice(0, nl), stream);
        rest = rest.slice(nl + 1);
      }
    });
    readable.on('end', () => {
      if (rest) this.show(rest, stream);
      rest = '';
    });
  }

  /** Clears the status line for good. */
  end() {
    this.clear();
    this.line = '';
  }
}

/** Starts scripts/daemon.js with `env`, its output piped to `console`. */
function spawnDaemon(env, console) {
  const child = spawn(process.execPath, [DAEMON_JS], {
    env,
    cwd: process.cwd(),
    // Its own process group: a Ctrl-C reaches only us, and we pass it on once. The IPC
    // channel makes it stop gracefully if we disappear (scripts/daemon.js: 'disconnect').
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  console.pipe(child.stdout, process.stdout);
  console.pipe(child.stderr, process.stderr);
  return child;
}

/**
 * A handler for SIGINT, SIGTERM and SIGHUP that calls `onSignal(sig, n)` with `n` the
 * count so far (1, 2, ...), a repeat within SIGNAL_DEDUP_MS counting once.
 */
function countedSignals(onSignal) {
  let n = 0;
  let lastAt = 0;
  return (sig) => {
    const now = Date.now();
    if (n > 0 && now - lastAt < SIGNAL_DEDUP_MS) return;
    lastAt = now;
    n++;
    onSignal(sig, n);
  };
}

module.exports = { StatusConsole, spawnDaemon, countedSignals, DAEMON_JS };
