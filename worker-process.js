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

const { MAX_FRAME_LIMIT, TRANSPORTS, obtainGc, optionBoolean, optionNumber, optionsFromConfig, parseWorkerConfig } =
  require('./lib/worker/options');
const { describe, now } = require('./lib/worker/util');
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
}

// The rest of WorkerProcess lives in lib/worker/, one file per concern: each holds
// methods of this one class (they share the instance's fields, set up above).
for (const methods of [transportMethods, taskLoopMethods, replyMethods, statusMethods, shutdownMethods]) {
  for (const [name, desc] of Object.entries(Object.getOwnPropertyDescriptors(methods))) {
    // Non-enumerable, as methods declared in the class body are.
    Object.defineProperty(WorkerProcess.prototype, name, { ...desc, enumerable: false });
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
