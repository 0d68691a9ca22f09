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
 *
 * This file holds the class, its fields and its public entry points; its methods
 * live in lib/worker/, one file per concern: transport.js (IPC or FIFOs, start,
 * sending), task-loop.js (messages, the queue, running a handler, cancellation),
 * replies.js (single and batched replies), status.js (logs, heartbeats, status
 * answers), shutdown.js (shutdown, signals, fatal errors); options.js, errors.js and
 * util.js are their helpers.
 */

const { obtainGc, optionBoolean, optionCapabilities, optionNumber, optionsFromConfig, optionsTransport, parseWorkerConfig } =
  require('./lib/worker/options');
const { now } = require('./lib/worker/util');
const { HEAP_CHECK_EVERY, methods: taskLoopMethods } = require('./lib/worker/task-loop');
const { methods: transportMethods } = require('./lib/worker/transport');
const { methods: replyMethods } = require('./lib/worker/replies');
const { methods: statusMethods } = require('./lib/worker/status');
const { methods: shutdownMethods } = require('./lib/worker/shutdown');

class WorkerProcess {
  constructor(workerId, options = {}) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('WorkerProcess options must be an object');
    }
    this.workerId = workerId === undefined || workerId === null || workerId === ''
      ? `worker-${process.pid}`
      : String(workerId);
    readOptions(this, options);
    initTaskState(this);
    initOutputState(this);
    initLifecycleState(this);
    bindCallbacks(this);
  }

  /** fn(payload, signal, { taskId, type, timeout, job? }) -> result | Promise<result> */
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

  /** The handler of every task type without a handler of its own (same signature). */
  registerDefaultHandler(fn) {
    if (typeof fn !== 'function') {
      throw new TypeError('registerDefaultHandler: the handler must be a function');
    }
    this._defaultHandler = fn;
    return this;
  }
}

// The rest of WorkerProcess lives in lib/worker/, one file per concern: each holds
// methods of this one class (they share the instance's fields, set up above).
for (const methods of [transportMethods, taskLoopMethods, replyMethods, statusMethods, shutdownMethods]) {
  for (const [name, desc] of Object.entries(Object.getOwnPropertyDescriptors(methods))) {
    // Non-enumerable, as methods declared in the class body are.
    Object.defineProperty(WorkerProcess.prototype, name, { ...desc, enumerable: false });
  }
}

// The constructor's steps. Each sets one group of the instance's fields (the methods
// in lib/worker/ read them); they run in this order, so every instance gets its
// fields in the same order.

/** The checked options (options.js); throws on a bad one. */
function readOptions(w, options) {
  w.heartbeatInterval = optionNumber(options, 'heartbeatInterval', { min: 1 });
  w.memoryThresholdMB = optionNumber(options, 'memoryThresholdMB', { min: 0 });
  w.idleTimeoutMs = optionNumber(options, 'idleTimeoutMs', { min: 0 });
  w.purgeModuleCache = optionBoolean(options, 'purgeModuleCache');
  w.forceGC = optionBoolean(options, 'forceGC');
  w._gc = w.forceGC ? obtainGc() : null;
  w.capabilities = optionCapabilities(options);
  const transport = optionsTransport(options);
  w._transportOption = transport.transport;
  w._fifoIn = transport.fifoIn;
  w._fifoOut = transport.fifoOut;
  w._fifoMaxFrameBytes = transport.fifoMaxFrameBytes;
  /** 'ipc' or 'fifo' once started. */
  w.transport = null;
}

/** The handlers, the queue of tasks not yet started and the running task (task-loop.js). */
function initTaskState(w) {
  w.state = 'initializing';
  w.tasksExecuted = 0;
  w.currentTask = null;
  w.startTime = Date.now();
  w.taskHandlers = new Map();
  w._defaultHandler = null;
  // Calls about shared-queue jobs waiting for the pool's answer (task-loop.js jobCall).
  w._calls = new Map();
  w._lastCallId = 0;

  // FIFO of tasks not yet started: parallel arrays, consumed from _qHead.
  w._qTasks = [];
  w._qBatch = [];
  w._qHead = 0;

  // The running task.
  w._current = null;
  w._currentBatch = false;
  w._currentAc = null;
  w._tasksSinceHeapCheck = HEAP_CHECK_EVERY - 1;
  w._currentStart = 0;
  w._cancelReason = null;
}

/** Buffered task-results entries (replies.js) and the time slice between yields. */
function initOutputState(w) {
  w._outbox = [];
  w._outboxSince = 0;
  w._flushScheduled = false;

  w._sliceStart = 0;
  w._yieldScheduled = false;
}

/** Start, heartbeats and idleness (status.js), shutdown (shutdown.js), the FIFO end (transport.js). */
function initLifecycleState(w) {
  w._started = false;
  w._heartbeatTimer = null;
  w._lastActivity = now();
  w._idleLogged = false;
  w._lastMemoryWarning = -Infinity;

  w._shuttingDown = false;
  w._shutdownTimer = null;
  w._exiting = false;

  // FIFO transport: the worker end of the channel, frames handed to it whose
  // write has not completed yet, callbacks waiting for that count to reach 0.
  w._fifo = null;
  w._framesPending = 0;
  w._flushWaiters = [];
  w._parentTimer = null;
  w._exitCode = null;
}

/** Callbacks made once, so the hot path allocates no closures. */
function bindCallbacks(w) {
  w._onResolve = (value) => w._settle(true, value);
  w._onReject = (err) => w._settle(false, err);
  w._flushBound = () => w._flush();
  w._afterYieldBound = () => w._afterYield();
  w._frameWrittenBound = () => w._frameWritten();
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
