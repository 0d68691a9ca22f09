'use strict';

// Replies to the pool: single task-complete / task-failed for execute-task, and
// task-results entries for execute-batch, buffered and sent once per macrotask.
// Methods of WorkerProcess (see worker-process.js).

const { makeError, sanitizeResults, serializeError } = require('./errors');
const { now } = require('./util');

/** Methods of WorkerProcess.prototype. */
const methods = {
  _reply(taskId, batch, ok, value, duration) {
    if (batch) {
      if (this._outbox.length === 0) this._outboxSince = now();
      this._outbox.push(ok
        ? { taskId, ok: true, result: value, duration }
        : { taskId, ok: false, error: serializeError(value), duration });
      if (!this._flushScheduled) {
        this._flushScheduled = true;
        setImmediate(this._flushBound);
      }
      return;
    }
    // Keep replies in completion order.
    if (this._outbox.length > 0) this._flush();
    if (ok) {
      const msg = { type: 'task-complete', taskId, workerId: this.workerId, result: value, duration, timestamp: Date.now() };
      const err = this._send(msg);
      if (err !== null) {
        this._send({
          type: 'task-failed', taskId, workerId: this.workerId,
          error: serializeError(makeError(
            `Task result could not be sent: ${err.message}`, 'ERR_RESULT_NOT_SERIALIZABLE')),
          duration, timestamp: msg.timestamp,
        });
      }
    } else {
      this._send({ type: 'task-failed', taskId, workerId: this.workerId, error: serializeError(value), duration, timestamp: Date.now() });
    }
  },

  _flush() {
    this._flushScheduled = false;
    const results = this._outbox;
    if (results.length === 0) return;
    this._outbox = [];
    const msg = { type: 'task-results', workerId: this.workerId, results };
    if (this._send(msg) === null) return;
    // Some result is not JSON-encodable (or the whole message is too big):
    // replace the bad entries, and if that is not enough send them one by one.
    sanitizeResults(results);
    if (this._send(msg) === null) return;
    for (let i = 0; i < results.length; i++) {
      const entry = results[i];
      const err = this._send({ type: 'task-results', workerId: this.workerId, results: [entry] });
      if (err === null) continue;
      // This one result alone cannot be sent (e.g. larger than a FIFO frame).
      this._send({ type: 'task-results', workerId: this.workerId, results: [{
        taskId: entry.taskId,
        ok: false,
        error: serializeError(makeError(
          `Task result could not be sent: ${err.message}`, 'ERR_RESULT_NOT_SERIALIZABLE')),
        duration: entry.duration,
      }] });
    }
  },
};

module.exports = { methods };
