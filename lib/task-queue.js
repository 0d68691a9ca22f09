'use strict';
const { EventEmitter } = require('node:events');
const { callNative, withCode, invalidArgument, CODES } = require('./errors');

function emitAll(emitter, events) {
  for (const e of events) {
    const { event, ...data } = e;
    emitter.emit(event, data);
  }
}

function notSupported(method, instead) {
  return withCode(CODES.ERR_NOT_SUPPORTED, `taskQueue.${method}() is not available on a pool's queue: the pool drives it (${instead})`);
}

/**
 * The priority queue with retries, backoff and a dead-letter queue, backed by the
 * same Rust queue the pool uses. Standalone (`new TaskQueue(options)`) you drive it;
 * as `pool.taskQueue` it is a read-and-manage view of the pool's own queue.
 */
class TaskQueue extends EventEmitter {
  #native = null;
  #pool = null;
  #retryTimer = null;

  constructor(options = {}, internal = undefined) {
    super();
    if (internal && internal.pool) {
      this.#pool = internal.pool;
      this.options = internal.options;
      return;
    }
    if (options === null || typeof options !== 'object') throw invalidArgument('options', 'an object', options);
    const { NativeTaskQueue } = require('./native');
    this.#native = callNative(() => new NativeTaskQueue(JSON.stringify(options)));
    this.options = {
      maxRetries: options.maxRetries ?? 3,
      retryBackoffMs: options.retryBackoffMs ?? 1000,
      maxBackoffMs: options.maxBackoffMs ?? 30000,
      taskTimeoutMs: options.taskTimeoutMs ?? 300000,
    };
  }

  #call(method, args = []) {
    if (this.#pool) {
      return JSON.parse(this.#pool.call(`queue.${method}`, args));
    }
    const out = JSON.parse(callNative(() => this.#native.call(method, JSON.stringify(args))));
    emitAll(this, out.e);
    return out.r;
  }

  #scheduleRetries() {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const next = this.#call('nextRetryInMs');
    if (next === null) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#call('promoteDue');
      this.#scheduleRetries();
    }, next);
    this.#retryTimer.unref();
  }

  enqueue(task, priority = 10) {
    if (this.#pool) throw notSupported('enqueue', 'use pool.submitTask(task)');
    if (task === null || typeof task !== 'object') throw invalidArgument('task', 'an object', task);
    if (typeof priority !== 'number' || !Number.isFinite(priority)) throw invalidArgument('priority', 'a finite number', priority);
    return this.#call('enqueue', [task, priority]);
  }

  dequeue() {
    if (this.#pool) throw notSupported('dequeue', 'tasks are dispatched to workers by the pool');
    return this.#call('dequeue');
  }

  peek() {
    return this.#call('peek');
  }

  getTaskById(id) {
    return this.#pool ? this.#call('get', [String(id)]) : this.#call('getTaskById', [String(id)]);
  }

  completeTask(id, _result) {
    if (this.#pool) throw notSupported('completeTask', 'workers complete tasks');
    return this.#call('completeTask', [String(id)]);
  }

  /** Returns true when a retry was scheduled, false when the task went to the DLQ. */
  failTask(id, error) {
    if (this.#pool) throw notSupported('failTask', 'workers fail tasks');
    const e = error instanceof Error ? { message: error.message, stack: error.stack, code: error.code } : error;
    const out = this.#call('failTask', [String(id), e ?? null]);
    if (out.retry) this.#scheduleRetries();
    return out.retry;
  }

  getQueueDepth() {
    return this.#pool ? this.#call('depth') : this.#call('getQueueDepth');
  }

  getDeadLetterQueue() {
    return this.#pool ? this.#call('dlq') : this.#call('getDeadLetterQueue');
  }

  clearDeadLetterQueue() {
    return this.#pool ? this.#call('clearDlq') : this.#call('clearDeadLetterQueue');
  }

  /**
   * Submits dead-lettered tasks again (all, or the one with `taskId`). On a pool's
   * queue returns the new tasks' promises; standalone, their new ids.
   */
  requeueDeadLetter(taskId) {
    if (taskId !== undefined && typeof taskId !== 'string') throw invalidArgument('taskId', 'a task id string', taskId);
    if (this.#pool) return this.#pool.requeueDeadLetters(taskId);
    const items = this.#call('takeDeadLetters', [taskId ?? null]);
    return items.map((d) => this.#call('enqueue', [d.task, d.priority]));
  }

  getStats() {
    return this.#pool ? this.#call('stats') : this.#call('getStats');
  }

  /** Ids of dequeued tasks past their timeout. The pool enforces timeouts itself. */
  checkTimeouts() {
    if (this.#pool) return [];
    return this.#call('checkTimeouts');
  }

  clear() {
    return this.#call('clear');
  }
}

module.exports = { TaskQueue, emitAll };
