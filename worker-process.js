'use strict';

/**
 * Worker-side runtime of the pool.
 *
 * A worker process talks to the pool over Node's own IPC channel
 * (process.send / process.on('message')); see docs/PROTOCOL.md.  `WorkerProcess`
 * keeps a FIFO queue of tasks and runs them strictly one at a time.
 *
 * Original protocol (kept): execute-task -> task-complete | task-failed,
 * shutdown, health-check -> health-status, get-metrics -> worker-metrics,
 * worker-ready, heartbeat, worker-log, worker-error, high-memory-warning,
 * worker-shutdown.
 *
 * Extensions (announced by `features` in worker-ready):
 *   pool -> worker  execute-batch { tasks: [task, ...] }
 *   pool -> worker  cancel-task   { taskId, reason }
 *   worker -> pool  task-results  { workerId, results: [entry, ...] }
 *     entry: { taskId, ok: true, result, duration }
 *          | { taskId, ok: false, error: { message, stack, code, name }, duration }
 *
 * Tasks that arrived through execute-task are answered with the original
 * single task-complete / task-failed messages; tasks that arrived through
 * execute-batch are answered with task-results, buffered and flushed once per
 * macrotask (setImmediate), so tasks finishing together share one message.
 *
 * Transports. By default the channel is Node's IPC channel (above). With
 * WORKER_TRANSPORT=fifo (or the option transport: 'fifo') the worker has no IPC
 * channel; it talks over two named pipes created by the pool instead:
 *   WORKER_FIFO_IN   pool -> worker pipe (the worker reads it)
 *   WORKER_FIFO_OUT  worker -> pool pipe (the worker writes it)
 *   WORKER_FIFO_MAX_FRAME_BYTES  optional, largest frame either way (default 8 MiB)
 * Every message is one frame: a 4-byte big-endian unsigned length, then that
 * many bytes of UTF-8 JSON (see fifo-channel.js); the message objects are the
 * same as over IPC. Both pipes are opened O_RDWR, so neither end ever sees EOF:
 * the worker notices its parent's death by polling process.ppid (once a
 * second) and exits 0 when it has been reparented. Writes never block: what
 * the pipe cannot take yet is queued in memory, in order, and exit paths wait
 * (1 s at most) for the queue to reach the pipe.
 *
 * Run directly (`node worker-process.js`) this file is the default worker.
 */

const v8 = require('v8');
const { MAX_FRAME_LIMIT, TRANSPORTS, obtainGc, optionBoolean, optionNumber, optionsFromConfig, parseWorkerConfig } =
  require('./lib/worker/options');
const { BYTES_PER_MB, describe, now } = require('./lib/worker/util');
const { abortError, isTaskId, makeError, sanitizeResults, serializeError } = require('./lib/worker/errors');

const path = require('path');

const FEATURES = Object.freeze(['batch', 'cancel']);
const LOG_LEVELS = new Set(['error', 'warning', 'info', 'debug']);

const GRACEFUL_SHUTDOWN_MS = 30000;
const EXIT_FLUSH_MS = 2000; // upper bound for a final message to be written before exit
const FIFO_EXIT_FLUSH_MS = 1000; // same, for the frames still queued on the FIFO transport
const PARENT_POLL_MS = 1000; // FIFO transport: how often process.ppid is checked
const HIGH_MEMORY_WARNING_INTERVAL_MS = 10000;
// A run of tasks that complete without giving the event loop a turn is cut
// after this many ms so that cancel-task, health-check and heartbeats get in.
const SLICE_MS = 10;
const NODE_MODULES = `${path.sep}node_modules${path.sep}`;

const HEAP_CHECK_EVERY = 16;
const OUTBOX_MAX_AGE_MS = 1;

class WorkerProcess {
  constructor(workerId, options = {}) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('WorkerProcess options must be an object');
    }
    this.workerId = workerId === undefined || workerId === null || workerId === ''
      ? `worker-${process.pid}`
      : String(workerId);

    this.heartbeatInterval = optionNumber(options, 'heartbeatInterval', { min: 1 });
    this.memoryThresholdMB = optionNumber(options, 'memoryThresholdMB', { min: 0 });
    this.idleTimeoutMs = optionNumber(options, 'idleTimeoutMs', { min: 0 });
    this.purgeModuleCache = optionBoolean(options, 'purgeModuleCache');
    this.forceGC = optionBoolean(options, 'forceGC');
    this._gc = this.forceGC ? obtainGc() : null;
    const caps = options.capabilities;
    if (caps === undefined || caps === null) {
      this.capabilities = [];
    } else if (Array.isArray(caps) && caps.every((c) => typeof c === 'string')) {
      this.capabilities = caps.slice();
    } else {
      throw new TypeError('WorkerProcess option "capabilities" must be an array of strings');
    }

    // Transport: an explicit option wins over WORKER_TRANSPORT (read by start()).
    const transport = options.transport;
    if (transport !== undefined && transport !== null && !TRANSPORTS.has(transport)) {
      throw new TypeError(`WorkerProcess option "transport" must be "ipc" or "fifo", got ${describe(transport)}`);
    }
    this._transportOption = transport === undefined || transport === null ? null : transport;
    for (const name of ['fifoIn', 'fifoOut']) {
      const value = options[name];
      if (value !== undefined && value !== null && (typeof value !== 'string' || value.length === 0)) {
        throw new TypeError(`WorkerProcess option "${name}" must be a non-empty string (a FIFO path)`);
      }
    }
    this._fifoIn = options.fifoIn || null;
    this._fifoOut = options.fifoOut || null;
    const maxFrame = options.fifoMaxFrameBytes;
    if (maxFrame !== undefined && maxFrame !== null &&
        (!Number.isInteger(maxFrame) || maxFrame < 1 || maxFrame > MAX_FRAME_LIMIT)) {
      throw new RangeError(
        `WorkerProcess option "fifoMaxFrameBytes" must be a whole number in [1, ${MAX_FRAME_LIMIT}], got ${describe(maxFrame)}`);
    }
    this._fifoMaxFrameBytes = maxFrame === undefined || maxFrame === null ? null : maxFrame;
    /** 'ipc' or 'fifo' once started. */
    this.transport = null;

    this.state = 'initializing';
    this.tasksExecuted = 0;
    this.currentTask = null;
    this.startTime = Date.now();
    this.taskHandlers = new Map();

    // FIFO of tasks not yet started: parallel arrays, consumed from _qHead.
    this._qTasks = [];
    this._qBatch = [];
    this._qHead = 0;

    // The running task.
    this._current = null;
    this._currentBatch = false;
    this._currentAc = null;
    this._tasksSinceHeapCheck = HEAP_CHECK_EVERY - 1;
    this._currentStart = 0;
    this._cancelReason = null;

    // Buffered task-results entries.
    this._outbox = [];
    this._outboxSince = 0;
    this._flushScheduled = false;

    this._sliceStart = 0;
    this._yieldScheduled = false;

    this._started = false;
    this._heartbeatTimer = null;
    this._lastActivity = now();
    this._idleLogged = false;
    this._lastMemoryWarning = -Infinity;

    this._shuttingDown = false;
    this._shutdownTimer = null;
    this._exiting = false;

    // FIFO transport: the worker end of the channel, frames handed to it whose
    // write has not completed yet, callbacks waiting for that count to reach 0.
    this._fifo = null;
    this._framesPending = 0;
    this._flushWaiters = [];
    this._parentTimer = null;
    this._exitCode = null;

    this._onResolve = (value) => this._settle(true, value);
    this._onReject = (err) => this._settle(false, err);
    this._flushBound = () => this._flush();
    this._afterYieldBound = () => this._afterYield();
    this._frameWrittenBound = () => this._frameWritten();
  }

  /** fn(payload, signal, { taskId, type, timeout }) -> result | Promise<result> */
  registerTaskHandler(type, fn) {
    if (typeof type !== 'string' || type.length === 0) {
      throw new TypeError('registerTaskHandler: type must be a non-empty string');
    }
    if (typeof fn !== 'function') {
      throw new TypeError(`registerTaskHandler: handler for "${type}" must be a function`);
    }
    this.taskHandlers.set(type, fn);
    return this;
  }

  start() {
    if (this._started) return this;
    const fifo = this._fifoSettings();
    if (fifo === false) return this; // bad settings: reported, exiting
    if (fifo !== null) return this._startFifo(fifo);
    if (typeof process.send !== 'function') {
      process.stderr.write(
        `worker-process: ${this.workerId} has no IPC channel (process.send is missing).\n` +
        'A worker must be started by the pool (child_process.fork or an equivalent IPC ' +
        'channel named by NODE_CHANNEL_FD); it cannot run on its own.\n');
      process.exit(1);
      return this;
    }
    this._started = true;
    this.transport = 'ipc';

    process.on('message', (msg) => this._onMessage(msg));
    // The parent is gone: nothing can be reported any more.
    process.on('disconnect', () => process.exit(0));
    // Asynchronous IPC write failures (EPIPE while the parent goes away) are
    // emitted on `process`; without a listener they would become fatal.
    // Never answer them over IPC: a failing write would fail again and loop.
    process.on('error', (err) => this._onChannelError(err));
    return this._begin();
  }

  /**
   * The FIFO settings when this worker is to use the FIFO transport, null for
   * IPC, false after reporting unusable settings (the process is exiting).
   */
  _fifoSettings() {
    const env = process.env;
    const kind = this._transportOption !== null ? this._transportOption : (env.WORKER_TRANSPORT || 'ipc');
    if (kind === 'ipc') return null;
    const fail = (problem) => {
      process.stderr.write(`worker-process: ${this.workerId}: ${problem}\n`);
      process.exit(1);
      return false;
    };
    if (kind !== 'fifo') {
      return fail(`WORKER_TRANSPORT must be "ipc" or "fifo", got ${describe(kind)}`);
    }
    const inPath = this._fifoIn || env.WORKER_FIFO_IN;
    const outPath = this._fifoOut || env.WORKER_FIFO_OUT;
    if (!inPath || !outPath) {
      return fail('transport "fifo" needs the pipe paths in WORKER_FIFO_IN and WORKER_FIFO_OUT ' +
        '(or the fifoIn / fifoOut options)');
    }
    let maxFrameBytes = this._fifoMaxFrameBytes;
    if (maxFrameBytes === null && env.WORKER_FIFO_MAX_FRAME_BYTES) {
      const text = env.WORKER_FIFO_MAX_FRAME_BYTES;
      maxFrameBytes = /^[0-9]+$/.test(text) ? Number(text) : NaN;
      if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes > MAX_FRAME_LIMIT) {
        return fail(`WORKER_FIFO_MAX_FRAME_BYTES must be a whole number in [1, ${MAX_FRAME_LIMIT}], got ${describe(text)}`);
      }
    }
    return { inPath, outPath, maxFrameBytes };
  }

  _startFifo({ inPath, outPath, maxFrameBytes }) {
    let endpoint;
    try {
      const FIFOChannel = require('./fifo-channel.js');
      endpoint = FIFOChannel.openWorkerSide(
        maxFrameBytes === null ? { inPath, outPath } : { inPath, outPath, maxFrameBytes });
    } catch (err) {
      process.stderr.write(
        `worker-process: ${this.workerId} cannot open its FIFOs (in: ${inPath}, out: ${outPath}): ` +
        `${err && err.message ? err.message : String(err)}\n`);
      process.exit(1);
      return this;
    }
    this._started = true;
    this.transport = 'fifo';
    this._fifo = endpoint;
    // Processes this worker starts must not take these pipes for their own.
    delete process.env.WORKER_TRANSPORT;
    delete process.env.WORKER_FIFO_IN;
    delete process.env.WORKER_FIFO_OUT;
    delete process.env.WORKER_FIFO_MAX_FRAME_BYTES;

    endpoint.on('message', (msg) => this._onMessage(msg));
    endpoint.on('error', (err) => this._onFifoError(err));
    // The descriptors are gone (not expected with O_RDWR): nothing can be
    // reported any more.
    endpoint.on('close', () => process.exit(this._exitCode !== null ? this._exitCode : 0));
    this._watchParent();
    return this._begin();
  }

  /** Exits 0 once the parent is gone (we were reparented); FIFO transport only. */
  _watchParent() {
    const parent = process.ppid;
    this._parentTimer = setInterval(() => {
      if (process.ppid !== parent) process.exit(0);
    }, PARENT_POLL_MS);
    this._parentTimer.unref();
  }

  /** Common part of start(): signals, error hooks, worker-ready, heartbeats. */
  _begin() {
    process.on('SIGTERM', () => this._onSignal());
    process.on('SIGINT', () => this._onSignal());
    process.on('uncaughtException', (err) => this._onUncaught(err));
    process.on('unhandledRejection', (reason) => this._reportError(reason, 'unhandledRejection', false));

    this.state = 'ready';
    this._send({
      type: 'worker-ready',
      workerId: this.workerId,
      pid: process.pid,
      timestamp: Date.now(),
      capabilities: this.capabilities,
      features: FEATURES,
    });
    this._startHeartbeat();
    this.log('info', 'Worker started');
    return this;
  }

  /** Sends a worker-log message: level is error, warning, info or debug. */
  log(level, message, extra) {
    const msg = {
      type: 'worker-log',
      level: LOG_LEVELS.has(level) ? level : (level === 'warn' ? 'warning' : 'info'),
      workerId: this.workerId,
      pid: process.pid,
      message: String(message),
      timestamp: Date.now(),
    };
    if (extra !== null && typeof extra === 'object') {
      Object.assign(msg, extra);
      msg.type = 'worker-log';
      if (extra.error instanceof Error) msg.error = serializeError(extra.error);
    }
    this._send(msg);
  }

  stopHeartbeat() {
    if (this._heartbeatTimer !== null) {
      clearInterval(this._heartbeatTimer);
      this._heartbeatTimer = null;
    }
  }

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
  }

  // ---------------------------------------------------------------- messages

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
      default:
        // Unknown messages are ignored so that newer pools can talk to older workers.
        break;
    }
  }

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
  }

  _kick() {
    if (this._current === null && !this._yieldScheduled) {
      this._sliceStart = now();
      this._pump();
    }
  }

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
  }

  // ------------------------------------------------------------- task loop

  _isIdle() {
    return this._current === null && this._qHead >= this._qTasks.length;
  }

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
  }

  _afterYield() {
    this._yieldScheduled = false;
    this._sliceStart = now();
    this._pump();
  }

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

    const handler = this.taskHandlers.get(task.type);
    if (handler === undefined) {
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
        result = handler(task.payload, ac.signal, { taskId: task.id, type: task.type, timeout: task.timeout });
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
  }

  _settle(ok, value) {
    if (this._current === null || this._exiting) return;
    this._finish(ok, value);
    this._pump();
  }

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
  }

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
  }

  // --------------------------------------------------------------- replies

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
  }

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
  }

  /** process.send (or a FIFO frame) that never throws; returns the error (or null). */
  _send(msg, callback) {
    if (this._fifo !== null) return this._sendFrame(msg, callback);
    if (!process.connected) return null;
    try {
      if (callback) process.send(msg, callback);
      else process.send(msg);
      return null;
    } catch (err) {
      return err;
    }
  }

  /**
   * FIFO transport: encodes msg as one frame and queues it on the out-pipe.
   * Returns the encoding error (nothing written then), else null.
   */
  _sendFrame(msg, callback) {
    const fifo = this._fifo;
    if (!fifo.isConnected()) return null;
    this._framesPending++;
    try {
      fifo.send(msg, callback
        ? (err) => { this._frameWritten(); callback(err); }
        : this._frameWrittenBound);
      return null;
    } catch (err) {
      this._framesPending--;
      return err;
    }
  }

  _frameWritten() {
    if (--this._framesPending === 0 && this._flushWaiters.length > 0) {
      const waiters = this._flushWaiters;
      this._flushWaiters = [];
      for (const fn of waiters) fn();
    }
  }

  /** Runs fn once every frame queued so far has reached the pipe, or after timeoutMs. */
  _whenFlushed(timeoutMs, fn) {
    if (this._framesPending === 0) {
      fn();
      return;
    }
    let done = false;
    const once = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      fn();
    };
    const timer = setTimeout(once, timeoutMs);
    this._flushWaiters.push(once);
  }

  // ------------------------------------------------- heartbeats and status

  _startHeartbeat() {
    this.stopHeartbeat();
    this._heartbeatTimer = setInterval(() => this._heartbeat(), this.heartbeatInterval);
    this._heartbeatTimer.unref();
  }

  _heartbeat() {
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage();
    this._send({
      type: 'heartbeat',
      workerId: this.workerId,
      pid: process.pid,
      state: this.state,
      tasksExecuted: this.tasksExecuted,
      uptime: Date.now() - this.startTime,
      memoryUsage: { heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, rss: mem.rss, external: mem.external },
      cpuUsage: { user: cpu.user, system: cpu.system },
      currentTask: this.currentTask,
      timestamp: Date.now(),
    });
    if (!this._idleLogged && this.state === 'ready' && this._isIdle()) {
      const idleMs = now() - this._lastActivity;
      if (idleMs >= this.idleTimeoutMs) {
        this._idleLogged = true;
        this.log('debug', `Worker idle for ${Math.round(idleMs)}ms`);
      }
    }
  }

  _healthStatus() {
    const mem = process.memoryUsage();
    const memoryMB = Math.round(mem.heapUsed / BYTES_PER_MB);
    return {
      type: 'health-status',
      workerId: this.workerId,
      pid: process.pid,
      state: this.state,
      healthy: !this._shuttingDown && memoryMB < this.memoryThresholdMB,
      memoryMB,
      memoryTotalMB: Math.round(mem.heapTotal / BYTES_PER_MB),
      tasksExecuted: this.tasksExecuted,
      uptime: Date.now() - this.startTime,
      lastTaskAge: Math.round(now() - this._lastActivity),
      timestamp: Date.now(),
    };
  }

  _metrics() {
    return {
      type: 'worker-metrics',
      metrics: {
        workerId: this.workerId,
        pid: process.pid,
        tasksExecuted: this.tasksExecuted,
        uptime: Date.now() - this.startTime,
        memory: process.memoryUsage(),
        cpu: process.cpuUsage(),
        heap: v8.getHeapStatistics(),
        loadAverage: require('os').loadavg(),
      },
      timestamp: Date.now(),
    };
  }

  // ------------------------------------------------------- shutdown, errors

  _onChannelError(err) {
    const code = err && err.code;
    if (!process.connected || code === 'EPIPE' || code === 'ECONNRESET' ||
        code === 'ERR_IPC_CHANNEL_CLOSED') {
      // The parent's end is gone: nobody is left to report to.
      process.exit(0);
    }
    try {
      process.stderr.write(`worker-process ${this.workerId}: IPC error: ${err && err.stack ? err.stack : String(err)}\n`);
    } catch {
      // stderr may be closed too.
    }
  }

  /** Errors of the FIFO transport; never answered with an I/O-level retry. */
  _onFifoError(err) {
    const code = err && err.code;
    if (code === 'ERR_FRAME_TOO_LARGE' || code === 'ERR_FRAME_INVALID_JSON') {
      // The frame is skipped; the ones around it still arrive.
      this.log('warning', `Ignored a frame from the pool: ${err.message}`, { error: err });
      return;
    }
    try {
      process.stderr.write(`worker-process ${this.workerId}: FIFO error: ${err && err.stack ? err.stack : String(err)}\n`);
    } catch {
      // stderr may be closed too.
    }
  }

  _onSignal() {
    if (this._shuttingDown) this.shutdown(false);
    else this.shutdown(true);
  }

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
  }

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
  }

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
  }

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
  }

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
  }
}

function defaultHandler(payload) {
  return { status: 'completed', result: payload };
}

module.exports = WorkerProcess;
module.exports.WorkerProcess = WorkerProcess;
module.exports.parseWorkerConfig = parseWorkerConfig;
module.exports.optionsFromConfig = optionsFromConfig;

if (require.main === module) {
  let worker;
  try {
    const config = parseWorkerConfig(process.env.WORKER_CONFIG);
    worker = new WorkerProcess(process.env.WORKER_ID, optionsFromConfig(config));
  } catch (err) {
    process.stderr.write(`worker-process: ${err.message}\n`);
    process.exit(1);
  }
  worker.registerTaskHandler('implementation', defaultHandler);
  worker.registerTaskHandler('analysis', defaultHandler);
  worker.registerTaskHandler('test', defaultHandler);
  worker.start();
}
