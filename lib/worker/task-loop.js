'use strict';

// The task loop: messages from the pool, the FIFO queue of tasks run one at a time
// (synchronous handlers complete in the same turn; a run of them is cut every SLICE_MS
// so messages get in), the handler call with its AbortSignal, cancellation, and what
// follows each task. Methods of WorkerProcess (see worker-process.js).

const v8 = require('v8');
const path = require('path');
const { abortError, isTaskId, makeError } = require('./errors');
const { BYTES_PER_MB, now } = require('./util');

// A run of tasks that complete without giving the event loop a turn is cut
// after this many ms so that cancel-task, health-check and heartbeats get in.
const SLICE_MS = 10;
// Batched results wait at most this long (ms) for the end of the macrotask.
const OUTBOX_MAX_AGE_MS = 1;
// The heap is checked against memoryThresholdMB after every this many tasks.
const HEAP_CHECK_EVERY = 16;
// Least time (ms) between two high-memory-warning messages.
const HIGH_MEMORY_WARNING_INTERVAL_MS = 10000;
// purgeModuleCache keeps the modules under node_modules.
const NODE_MODULES = `${path.sep}node_modules${path.sep}`;

/** Methods of WorkerProcess.prototype. */
const methods = {
  _onMessage(msg) {
    if (msg === null || typeof msg !== 'object' || this._exiting) return;
    switch (msg.type) {
      case 'execute-task':
        this._accept(msg.task, false);
        this._kick();
        break;
      case 'execute-batch': {
        const tasks = msg.tasks;
        if (!Array.isArray(tasks)) {
          this.log('warning', 'execute-batch without a tasks array ignored');
          break;
        }
        for (let i = 0; i < tasks.length; i++) this._accept(tasks[i], true);
        this._kick();
        break;
      }
      case 'cancel-task':
        this._cancel(msg.taskId, msg.reason);
        break;
      case 'shutdown':
        this.shutdown(msg.graceful !== false);
        break;
      case 'health-check':
        this._send(this._healthStatus());
        break;
      case 'get-metrics':
        this._send(this._metrics());
        break;
      case 'job-call-result':
        this._onJobCallResult(msg);
        break;
      default:
        // Unknown messages are ignored so that newer pools can talk to older workers.
        break;
    }
  },

  /**
   * Asks the pool to act on the shared-queue job that task `taskId` runs (`op`:
   * progress, log, update-data, children-values); resolves with the pool's answer.
   * Only the core's own tasks (a job of the shared queue) can be asked about.
   */
  jobCall(taskId, op, value) {
    const callId = ++this._lastCallId;
    return new Promise((resolve, reject) => {
      this._calls.set(callId, { resolve, reject, op });
      this._send({ type: 'job-call', taskId, callId, op, value: value === undefined ? null : value });
    });
  },

  _onJobCallResult(msg) {
    const call = this._calls.get(msg.callId);
    if (call === undefined) return;
    this._calls.delete(msg.callId);
    if (msg.ok === true) {
      call.resolve(msg.value);
      return;
    }
    const e = msg.error !== null && typeof msg.error === 'object' ? msg.error : {};
    call.reject(makeError(typeof e.message === 'string' ? e.message : `job call ${call.op} failed`,
      typeof e.code === 'string' ? e.code : 'ERR_JOB_CALL'));
  },

  _accept(task, batch) {
    if (task === null || typeof task !== 'object' || !isTaskId(task.id)) {
      this.log('warning', 'Task without a valid id ignored');
      return;
    }
    if (this._shuttingDown) {
      this._reply(task.id, batch, false,
        makeError(`Worker ${this.workerId} is shutting down`, 'ERR_WORKER_SHUTTING_DOWN'), 0);
      return;
    }
    this._qTasks.push(task);
    this._qBatch.push(batch);
  },

  _kick() {
    if (this._current === null && !this._yieldScheduled) {
      this._sliceStart = now();
      this._pump();
    }
  },

  _cancel(taskId, reason) {
    if (!isTaskId(taskId)) return;
    const why = typeof reason === 'string' && reason.length > 0 ? reason : 'cancelled';
    const current = this._current;
    if (current !== null && current.id === taskId) {
      if (this._cancelReason === null) {
        this._cancelReason = why;
        // Listeners run synchronously; one that throws surfaces as uncaughtException.
        if (this._currentAc !== null) this._currentAc.abort(abortError(taskId, why));
      }
      return;
    }
    const tasks = this._qTasks;
    for (let i = this._qHead; i < tasks.length; i++) {
      if (tasks[i].id === taskId) {
        const batch = this._qBatch[i];
        tasks.splice(i, 1);
        this._qBatch.splice(i, 1);
        this._reply(taskId, batch, false, abortError(taskId, why), 0);
        if (this._shuttingDown && this._isIdle()) this._finishShutdown();
        return;
      }
    }
    // Unknown or already answered: nothing to do.
  },

  _isIdle() {
    return this._current === null && this._qHead >= this._qTasks.length;
  },

  _pump() {
    while (this._current === null && !this._exiting) {
      const head = this._qHead;
      const tasks = this._qTasks;
      if (head >= tasks.length) {
        tasks.length = 0;
        this._qBatch.length = 0;
        this._qHead = 0;
        if (this._shuttingDown) this._finishShutdown();
        return;
      }
      if (now() - this._sliceStart > SLICE_MS) {
        this._yieldScheduled = true;
        setImmediate(this._afterYieldBound);
        return;
      }
      // Results wait for the end of the macrotask to share one message, but not for
      // long: a slow next task must not hold back replies that are ready.
      if (this._outbox.length > 0 && now() - this._outboxSince > OUTBOX_MAX_AGE_MS) this._flush();
      const task = tasks[head];
      const batch = this._qBatch[head];
      tasks[head] = undefined;
      this._qHead = head + 1;
      if (head >= 4096 && head * 2 >= tasks.length) {
        tasks.splice(0, head + 1);
        this._qBatch.splice(0, head + 1);
        this._qHead = 0;
      }
      this._run(task, batch);
    }
  },

  _afterYield() {
    this._yieldScheduled = false;
    this._sliceStart = now();
    this._pump();
  },

  /** Starts a task; completes it synchronously when the handler is synchronous. */
  _run(task, batch) {
    this._current = task;
    this._currentBatch = batch;
    this._cancelReason = null;
    this.currentTask = task.id;
    if (!this._shuttingDown) this.state = 'busy';
    this._idleLogged = false;
    const start = now();
    this._currentStart = start;

    const handler = this.taskHandlers.get(task.type) ?? this._defaultHandler;
    if (handler === undefined || handler === null) {
      this._currentAc = null;
      this._finish(false, makeError(
        `No handler registered for task type: ${task.type}`, 'ERR_NO_HANDLER'));
      return;
    }
    // Creating an AbortSignal costs more than a no-op task: make one only for
    // handlers that can take it (a handler declared with exactly one parameter,
    // `(payload) => ...`, cannot).
    let result;
    try {
      if (handler.length === 1) {
        this._currentAc = null;
        result = handler(task.payload);
      } else {
        const ac = new AbortController();
        this._currentAc = ac;
        result = handler(task.payload, ac.signal, { taskId: task.id, type: task.type, timeout: task.timeout, job: task.job });
      }
    } catch (err) {
      this._finish(false, err);
      return;
    }
    if (result !== null && (typeof result === 'object' || typeof result === 'function')) {
      if (result instanceof Promise) {
        Promise.prototype.then.call(result, this._onResolve, this._onReject);
        return;
      }
      let then;
      try {
        then = result.then;
      } catch (err) {
        this._finish(false, err);
        return;
      }
      if (typeof then === 'function') {
        // A foreign thenable: let a native promise enforce settle-once.
        Promise.resolve(result).then(this._onResolve, this._onReject);
        return;
      }
    }
    this._finish(true, result);
  },

  _settle(ok, value) {
    if (this._current === null || this._exiting) return;
    this._finish(ok, value);
    this._pump();
  },

  _finish(ok, value) {
    const task = this._current;
    const end = now();
    const duration = end - this._currentStart;
    const batch = this._currentBatch;
    const reason = this._cancelReason;
    this._current = null;
    this._currentAc = null;
    this._cancelReason = null;
    this.currentTask = null;
    this.tasksExecuted++;
    this._lastActivity = end;
    if (!this._shuttingDown) this.state = 'ready';

    if (reason !== null) {
      this._reply(task.id, batch, false, abortError(task.id, reason), duration);
    } else {
      this._reply(task.id, batch, ok, value, duration);
    }
    this._afterTask();
  },

  _afterTask() {
    if (this.purgeModuleCache) {
      const cache = require.cache;
      for (const key of Object.keys(cache)) {
        if (!key.includes(NODE_MODULES)) delete cache[key];
      }
    }
    if (this._gc !== null) this._gc();

    // The heap is sampled every HEAP_CHECK_EVERY tasks, not after each one (it shows
    // in the profile of a no-op task).
    if (++this._tasksSinceHeapCheck < HEAP_CHECK_EVERY) return;
    this._tasksSinceHeapCheck = 0;
    const heapUsed = v8.getHeapStatistics().used_heap_size;
    if (heapUsed > this.memoryThresholdMB * BYTES_PER_MB) {
      const t = now();
      if (t - this._lastMemoryWarning >= HIGH_MEMORY_WARNING_INTERVAL_MS) {
        this._lastMemoryWarning = t;
        this._send({
          type: 'high-memory-warning',
          workerId: this.workerId,
          memoryMB: Math.round(heapUsed / BYTES_PER_MB),
          threshold: this.memoryThresholdMB,
        });
      }
    }
  },
};

module.exports = { HEAP_CHECK_EVERY, methods };
