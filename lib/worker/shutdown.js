'use strict';

// The way out: graceful or immediate shutdown, signals, fatal errors and uncaught
// exceptions; every outstanding task is answered and the last message written before
// the process exits. Methods of WorkerProcess (see worker-process.js).

const { abortError, makeError, serializeError } = require('./errors');
const { now } = require('./util');

const GRACEFUL_SHUTDOWN_MS = 30000;
const EXIT_FLUSH_MS = 2000; // upper bound for a final message to be written before exit
const FIFO_EXIT_FLUSH_MS = 1000; // same, for the frames still queued on the FIFO transport

/** Methods of WorkerProcess.prototype. */
const methods = {
  /** Graceful: let the running and queued tasks finish (30 s at most); else stop now. */
  shutdown(graceful = true) {
    if (this._exiting) return;
    if (this._shuttingDown) {
      if (!graceful) this._finishShutdown();
      return;
    }
    this._shuttingDown = true;
    this.state = 'shutting-down';
    // Heartbeats continue while draining so the pool does not take us for a zombie.
    if (!graceful || this._isIdle()) {
      this._finishShutdown();
      return;
    }
    this._shutdownTimer = setTimeout(() => this._finishShutdown(), GRACEFUL_SHUTDOWN_MS);
    this._shutdownTimer.unref();
  },

  _onSignal() {
    if (this._shuttingDown) this.shutdown(false);
    else this.shutdown(true);
  },

  /** Replies for everything still outstanding, says goodbye, exits 0. */
  _finishShutdown() {
    if (this._exiting) return;
    this._exiting = true;
    if (this._shutdownTimer !== null) clearTimeout(this._shutdownTimer);
    this.stopHeartbeat();
    this._failOutstanding(makeError(
      `Worker ${this.workerId} shut down before the task finished`, 'ERR_WORKER_SHUTDOWN'));
    this._flush();
    this._exitAfter({
      type: 'worker-shutdown',
      workerId: this.workerId,
      tasksExecuted: this.tasksExecuted,
      uptime: Date.now() - this.startTime,
      timestamp: Date.now(),
    }, 0);
  },

  _failOutstanding(err) {
    if (this._current !== null) {
      const task = this._current;
      const reason = this._cancelReason;
      this._current = null;
      this.currentTask = null;
      this._reply(task.id, this._currentBatch, false,
        reason !== null ? abortError(task.id, reason) : err, now() - this._currentStart);
    }
    for (let i = this._qHead; i < this._qTasks.length; i++) {
      this._reply(this._qTasks[i].id, this._qBatch[i], false, err, 0);
    }
    this._qTasks.length = 0;
    this._qBatch.length = 0;
    this._qHead = 0;
  },

  /** Sends a last message and exits once it is written (or after EXIT_FLUSH_MS). */
  _exitAfter(msg, code) {
    if (this._fifo !== null) {
      // Everything queued before (results, logs) goes out first: frames keep order.
      this._exitCode = code;
      this._send(msg);
      this._whenFlushed(FIFO_EXIT_FLUSH_MS, () => process.exit(code));
      return;
    }
    if (!process.connected) process.exit(code);
    const err = this._send(msg, () => process.exit(code));
    if (err !== null) process.exit(code);
    setTimeout(() => process.exit(code), EXIT_FLUSH_MS);
  },

  _reportError(err, kind, fatal) {
    const e = serializeError(err);
    const msg = {
      type: 'worker-error',
      workerId: this.workerId,
      error: { message: e.message, stack: e.stack, type: kind },
      fatal,
      timestamp: Date.now(),
    };
    if (!fatal) {
      this._send(msg);
      return;
    }
    this._flush();
    this._exitAfter(msg, 1);
  },

  _onUncaught(err) {
    if (this._exiting) {
      // Already on the way out; keep the first exit path.
      return;
    }
    this._exiting = true;
    this.state = 'shutting-down';
    this.stopHeartbeat();
    try {
      process.stderr.write(`worker-process ${this.workerId}: uncaught exception: ${
        err && err.stack ? err.stack : String(err)}\n`);
    } catch {
      // stderr may be closed.
    }
    this._reportError(err, 'uncaughtException', true);
  },
};

module.exports = { methods };
