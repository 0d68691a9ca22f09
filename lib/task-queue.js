'use strict';
const { EventEmitter } = require('node:events');
const { withCode, invalidArgument, CODES } = require('./errors');
const { StandaloneBackend } = require('./call-backend');

function notSupported(method, instead) {
  return withCode(CODES.ERR_NOT_SUPPORTED, `taskQueue.${method}() is not available on a pool's queue: the pool drives it (${instead})`);
}

function checkTaskId(taskId) {
  if (taskId !== undefined && typeof taskId !== 'string') throw invalidArgument('taskId', 'a task id string', taskId);
}

// Lets PoolTaskQueueView give an instance its backend (set in TaskQueue's static block).
let attach;

/**
 * The priority queue with retries, backoff and a dead-letter queue, backed by the
 * same Rust queue the pool uses. Standalone (`new TaskQueue(options)`) you drive it;
 * as `pool.taskQueue` (a `PoolTaskQueueView`) it is a read-and-manage view of the
 * pool's own queue. Every method is one call verb of its backend.
 */
class TaskQueue extends EventEmitter {
  #backend = null;
  #retryTimer = null;

  static {
    attach = (queue, backend) => {
      queue.#backend = backend;
      /** The resolved options, as the core applies them. */
      queue.options = backend.call('options');
    };
  }

  constructor(options = {}) {
    super();
    // A pool's view is given the pool's backend by its own constructor.
    if (new.target.isPoolView) return;
    if (options === null || typeof options !== 'object') throw invalidArgument('options', 'an object', options);
    attach(this, new StandaloneBackend('NativeTaskQueue', options, this));
  }

  #call(verb, args) {
    return this.#backend.call(verb, args);
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
    if (task === null || typeof task !== 'object') throw invalidArgument('task', 'an object', task);
    if (typeof priority !== 'number' || !Number.isFinite(priority)) throw invalidArgument('priority', 'a finite number', priority);
    return this.#call('enqueue', [task, priority]);
  }

  dequeue() {
    return this.#call('dequeue');
  }

  peek() {
    return this.#call('peek');
  }

  getTaskById(id) {
    return this.#call('getTaskById', [String(id)]);
  }

  completeTask(id, _result) {
    return this.#call('completeTask', [String(id)]);
  }

  /** Returns true when a retry was scheduled, false when the task went to the DLQ. */
  failTask(id, error) {
    const e = error instanceof Error ? { message: error.message, stack: error.stack, code: error.code } : error;
    const out = this.#call('failTask', [String(id), e ?? null]);
    if (out.retry) this.#scheduleRetries();
    return out.retry;
  }

  getQueueDepth() {
    return this.#call('getQueueDepth');
  }

  getDeadLetterQueue() {
    return this.#call('getDeadLetterQueue');
  }

  clearDeadLetterQueue() {
    return this.#call('clearDeadLetterQueue');
  }

  /**
   * Submits dead-lettered tasks again (all, or the one with `taskId`). On a pool's
   * queue returns the new tasks' promises; standalone, their new ids.
   */
  requeueDeadLetter(taskId) {
    checkTaskId(taskId);
    const items = this.#call('takeDeadLetters', [taskId ?? null]);
    return items.map((d) => this.#call('enqueue', [d.task, d.priority]));
  }

  getStats() {
    return this.#call('getStats');
  }

  /** Ids of dequeued tasks past their timeout. */
  checkTimeouts() {
    return this.#call('checkTimeouts');
  }

  clear() {
    return this.#call('clear');
  }
}

/**
 * `pool.taskQueue`: the pool's own queue, through the pool's `call` (a PoolBackend).
 * The pool drives it, so the methods that would (enqueue, dequeue, completeTask,
 * failTask) throw ERR_NOT_SUPPORTED; dead letters go back through the pool.
 */
class PoolTaskQueueView extends TaskQueue {
  static isPoolView = true;
  #requeue;

  /** `requeue(taskId?)` resubmits dead letters in the pool and returns their promises. */
  constructor(backend, requeue) {
    super();
    attach(this, backend);
    this.#requeue = requeue;
  }

  enqueue() {
    throw notSupported('enqueue', 'use pool.submitTask(task)');
  }

  dequeue() {
    throw notSupported('dequeue', 'tasks are dispatched to workers by the pool');
  }

  completeTask() {
    throw notSupported('completeTask', 'workers complete tasks');
  }

  failTask() {
    throw notSupported('failTask', 'workers fail tasks');
  }

  requeueDeadLetter(taskId) {
    checkTaskId(taskId);
    return this.#requeue(taskId);
  }

  /** The pool enforces timeouts itself. */
  checkTimeouts() {
    return [];
  }
}

module.exports = { TaskQueue, PoolTaskQueueView };
