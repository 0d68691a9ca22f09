// Type definitions for cortex-worker-pool: a persistent worker-process pool with a
// Rust core, a drop-in replacement for Cortex's `require('./lib/worker-pool')`.

/// <reference types="node" />

import { EventEmitter } from 'node:events';

// ---------------------------------------------------------------------------- errors

/** Stable `code`s of every Error this package throws or rejects with. */
export declare const ErrorCodes: Readonly<{
  ERR_INVALID_CONFIG: 'ERR_INVALID_CONFIG';
  ERR_INVALID_TASK: 'ERR_INVALID_TASK';
  ERR_INVALID_ARGUMENT: 'ERR_INVALID_ARGUMENT';
  ERR_POOL_NOT_INITIALIZED: 'ERR_POOL_NOT_INITIALIZED';
  ERR_POOL_ALREADY_INITIALIZED: 'ERR_POOL_ALREADY_INITIALIZED';
  ERR_POOL_SHUTTING_DOWN: 'ERR_POOL_SHUTTING_DOWN';
  ERR_POOL_SHUTDOWN: 'ERR_POOL_SHUTDOWN';
  ERR_TASK_FAILED: 'ERR_TASK_FAILED';
  ERR_NO_HANDLER: 'ERR_NO_HANDLER';
  ERR_WORKER_CRASHED: 'ERR_WORKER_CRASHED';
  ERR_TASK_TIMEOUT: 'ERR_TASK_TIMEOUT';
  ABORT_ERR: 'ABORT_ERR';
  ERR_QUEUE_FULL: 'ERR_QUEUE_FULL';
  ERR_QUEUE_CLEARED: 'ERR_QUEUE_CLEARED';
  ERR_WORKER_START_FAILED: 'ERR_WORKER_START_FAILED';
  ERR_PROTOCOL: 'ERR_PROTOCOL';
  ERR_NO_CAPABLE_WORKER: 'ERR_NO_CAPABLE_WORKER';
  ERR_NOT_SUPPORTED: 'ERR_NOT_SUPPORTED';
  ERR_QUEUE_UNAVAILABLE: 'ERR_QUEUE_UNAVAILABLE';
  ERR_INTERNAL: 'ERR_INTERNAL';
}>;

/** One of the codes in {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** The shape of the errors the pool rejects with. */
export interface WorkerPoolError extends Error {
  code: ErrorCode | (string & {});
  /** The worker that ran the failed attempt, when there was one. */
  workerId?: string;
  /** Exit code of a worker that crashed. */
  exitCode?: number;
  /** Signal that killed a worker that crashed. */
  signal?: NodeJS.Signals | string;
  /** The end of a worker's stderr when it failed to start. */
  stderr?: string;
  /** The `code` the task's handler put on the error it threw, if any. */
  handlerCode?: string | number;
  /** For ABORT_ERR: the signal's reason. */
  cause?: unknown;
}

// ---------------------------------------------------------------------------- config

/** Load-balancing strategies. */
export type LoadBalancingStrategy = 'round-robin' | 'least-loaded' | 'capability-based';

/** The pool's own log verbosity. */
export type LogLevel = 'silent' | 'error' | 'warn' | 'info' | 'debug';

/** One kind of worker in a heterogeneous pool. */
export interface WorkerGroupConfig {
  /** Workers of this kind (>= 1). */
  size: number;
  /** Script these workers run under Node. @default the pool's `workerScript` (or its `workerCommand`) */
  workerScript?: string;
  /**
   * These workers run this argv instead (not with `workerScript`), e.g.
   * `['python3', 'worker.py']`: one pool can have Node and Python workers.
   * @default the pool's `workerCommand`, unless this group gives a `workerScript`
   */
  workerCommand?: string[];
  /** Capabilities these workers serve (matched against a task's `requires`). @default [] */
  capabilities?: string[];
  /** Extra environment for these workers (on top of the pool's `env`). */
  env?: Record<string, string | number | boolean>;
}

/** Automatic scaling on queue depth. */
export interface AutoScaleConfig {
  /** Scale up when more tasks than this are queued. @default 50 */
  queueDepthHigh?: number;
  /** Scale down when fewer workers than this are busy. @default 5 */
  busyLow?: number;
  /** Workers added per step. @default 10 */
  stepUp?: number;
  /** Workers removed per step. @default 5 */
  stepDown?: number;
  /** How often to look, ms (>= 10). @default 30000 */
  intervalMs?: number;
  /** Minimum time between two scaling steps, ms. @default intervalMs */
  cooldownMs?: number;
}

/**
 * Pool options. Names and defaults are the original's; values that make no sense
 * (0 or negative sizes, minWorkers > maxWorkers, unknown strategies, a workerScript
 * that does not exist, ...) are rejected with ERR_INVALID_CONFIG naming the option.
 */
export interface WorkerPoolConfig {
  /** Workers at start; `initialize` clamps it into [minWorkers, maxWorkers]. @default 20 */
  poolSize?: number;
  /** Lower bound for scaling. @default 5 (min(5, poolSize) when poolSize is given) */
  minWorkers?: number;
  /** Upper bound for scaling. @default 50 (or more, to fit poolSize and minWorkers) */
  maxWorkers?: number;
  /** Script each worker runs (resolved against the current directory). @default the package's worker-process.js */
  workerScript?: string;
  /**
   * Start each worker as this argv instead of `<node> <execArgv> <workerScript>`
   * (both given: ERR_INVALID_CONFIG), e.g. `['python3', 'worker.py']` for the Python
   * runtime in `python/`. The program is found on `PATH` like `execvp`; the worker
   * gets its own process group, the same environment variables, and its channel as
   * fd 3 (`NODE_CHANNEL_FD`) or the FIFO paths (docs/PROTOCOL.md).
   */
  workerCommand?: string[];
  /**
   * A BullMQ processor file (`.js`, `.cjs`, `.mjs`) exporting `async (job, token, signal) => result`
   * (and optionally `backoffStrategy`): every worker runs it for every task. Not with
   * `workerScript` or `workerCommand`.
   */
  processor?: string;
  /** Memory threshold per worker, MB. @default 512 */
  workerMemoryLimitMB?: number;
  /** Milliseconds between worker heartbeats; the heartbeat timeout is 3 × this. @default 5000 */
  heartbeatInterval?: number;
  /** No heartbeat for this long: the worker is a zombie, ms. @default 30000 */
  zombieThresholdMs?: number;
  /** How often the health monitor checks workers, ms (>= 10). @default 5000 */
  healthCheckInterval?: number;
  /** Default per-task timeout, ms. @default 300000 */
  taskTimeout?: number;
  /** Retries after the first attempt. @default 3 */
  maxTaskRetries?: number;
  /** First retry delay, ms; doubles on each retry. @default 1000 */
  retryBackoffMs?: number;
  /** Cap on the retry delay, ms. @default 30000 */
  maxBackoffMs?: number;
  /**
   * How tasks are spread over workers: 'least-loaded' takes the fewest in flight, ties
   * to the worker used last (fastest for tasks that arrive one at a time);
   * 'round-robin' (the original's default) cycles through the free workers;
   * 'capability-based' the tightest fit of `requires`, then like 'least-loaded'.
   * @default 'least-loaded'
   */
  loadBalancing?: LoadBalancingStrategy;
  /** Restart workers that crash or turn unhealthy (false only when given as false). @default true */
  autoRestart?: boolean;
  /** Restarts per worker slot. @default 3 */
  maxRestartAttempts?: number;
  /** Minimum time between two restarts of a worker slot, ms. @default 5000 */
  restartCooldownMs?: number;
  /** A worker that dies sooner than this after its start counts as unstable, ms. @default 1000 */
  minUptimeMs?: number;
  /** Recycle a worker whose memory goes over workerMemoryLimitMB. @default true */
  restartOnMemoryLimit?: boolean;
  /** How long each worker has to send `worker-ready`, ms. @default 10000 */
  readyTimeoutMs?: number;
  /** Time a worker gets to stop an abandoned task (or to exit after SIGTERM) before it is killed, ms. @default 3000 */
  gracePeriodMs?: number;
  /** How long a graceful shutdown waits for accepted tasks, ms. @default 30000 */
  shutdownTimeoutMs?: number;
  /** Queued tasks beyond this are rejected with ERR_QUEUE_FULL. @default unlimited */
  maxQueueSize?: number;
  /** Largest message a worker may send, bytes (>= 1024). @default 8388608 */
  maxMessageBytes?: number;
  /** Recycle a worker after this many tasks. @default unlimited */
  maxTasksPerWorker?: number;
  /** Retire workers idle for this long (down to minWorkers), ms. @default never */
  idleTimeoutMs?: number;
  /**
   * Most tasks sent ahead to a worker that supports batching (1–1024), bounded by
   * about 2 ms of its average run time; 1 turns prefetching off. @default 256
   */
  prefetch?: number;
  /**
   * How long (µs, 0–1000) the JS thread may poll for a reply predicted to arrive that
   * soon instead of sleeping in its event loop; 0 never spins. @default 100
   */
  spinWaitUs?: number;
  /** Node options for the worker processes (the original used --expose-gc; `forceGC` workers expose it on demand). @default [] */
  execArgv?: string[];
  /** Extra environment variables for the workers. @default {} */
  env?: Record<string, string | number | boolean>;
  /** Directory for FIFO channels. @default '/tmp/cortex/workers' */
  fifoDir?: string;
  /** Pool ↔ worker channel: Node's IPC channel, or a pair of named pipes per worker in fifoDir. @default 'ipc' */
  transport?: 'ipc' | 'fifo';
  /** Several kinds of workers (overrides poolSize). */
  workerGroups?: WorkerGroupConfig[];
  /** Automatic scaling on queue depth. @default false */
  autoScale?: boolean | AutoScaleConfig;
  /** Print worker error logs. @default true */
  logWorkerErrors?: boolean;
  /** Print worker warning logs. @default true */
  logWorkerWarnings?: boolean;
  /** Print worker info logs. @default false */
  logWorkerInfo?: boolean;
  /** Print worker debug logs. @default false */
  logWorkerDebug?: boolean;
  /** Verbosity of the pool's own `[PoolManager]` lines; 'silent' prints nothing. @default 'info' */
  logLevel?: LogLevel;
  /**
   * Many machines, one queue: submitTask goes through a shared BullMQ queue on Redis,
   * and (serve) this pool's workers take jobs from it. See the README's "Many machines".
   */
  queue?: SharedQueueConfig;
}

/** Where the shared queue is: createQueueClient()'s options. */
export interface QueueClientOptions {
  /** `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS. */
  url: string;
  /** BullMQ queue name (capability sets use `<name>@<cap>+<cap>`). @default 'cortex' */
  name?: string;
  /** BullMQ key prefix. @default 'bull' */
  prefix?: string;
  /** How long the first connection may take before ERR_QUEUE_UNAVAILABLE, ms. @default 5000 */
  connectTimeoutMs?: number;
  /**
   * A Redis command unanswered this long fails and its connection is replaced (a silent
   * connection), ms. @default 5000 for a client; min(5000, lockDurationMs / 2) for a pool
   */
  commandTimeoutMs?: number;
}

/** The pool's `queue` option. */
export interface SharedQueueConfig extends QueueClientOptions {
  /** This pool's workers take jobs from the queue; false: only submit (poolSize 0 allowed). @default true */
  serve?: boolean;
  /** Jobs held at once per queue; default: follows the workers that can take a job. */
  concurrency?: number;
  /** BullMQ lock duration, ms: a dead machine's jobs return after about this (+ stalledIntervalMs). @default 30000 */
  lockDurationMs?: number;
  /** BullMQ stalled-job check interval, ms. @default 30000 */
  stalledIntervalMs?: number;
  /** BullMQ's maxStalledCount: stalls allowed before a job fails. @default 1 */
  maxStalledCount?: number;
  /** BullMQ's worker rate limiter: at most `max` jobs start per `duration` ms, queue-wide. */
  limiter?: { max: number; duration: number };
  /** Timeout of a plain BullMQ job (not added by this package), ms. @default the pool's taskTimeout */
  jobTimeoutMs?: number;
}

/** `pool.config.queue`: the resolved option, with the URL's password hidden. */
export interface ResolvedSharedQueueConfig {
  url: string;
  name: string;
  prefix: string;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  serve: boolean;
  concurrency: number | undefined;
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  limiter: { max: number; duration: number } | null;
  jobTimeoutMs: number | undefined;
}

/** Counts of the shared queue, over every machine (`getPoolMetrics().queue.shared`). */
export interface SharedQueueCounts {
  waiting: number;
  active: number;
  delayed: number;
  completed: number;
  failed: number;
  prioritized: number;
  /** Pools whose heartbeat is recent (they serve the queue). */
  servingPools: number;
}

/** This pool's link to the shared queue (`getPoolMetrics().queue.shared`). */
export interface SharedQueueConnection {
  /** False while the serving side's Redis commands fail (or the producer's connection is down). */
  connected: boolean;
  /** When it went down (ms since the epoch), or null while connected. */
  since: number | null;
  /** Jobs this pool holds (fetched, running or about to). */
  held: number;
}

/** `pool.taskQueue`'s dead-letter methods on a pool with `queue` set (Redis is remote). */
export interface SharedDeadLetters {
  getDeadLetterQueue<T = any>(): Promise<TaskRecord<T>[]>;
  requeueDeadLetter(taskId?: string): Promise<Array<Promise<any>>>;
  clearDeadLetterQueue(): Promise<number>;
}

/** A producer for the shared queue, with no workers. */
export declare class QueueClient {
  readonly options: Required<QueueClientOptions>;
  /** Same task shape, validation and error codes as `pool.submitTask`. */
  submitTask<R = any, P = unknown>(task: Task<P>, options?: SubmitOptions): Promise<R>;
  getQueueMetrics(): Promise<SharedQueueCounts>;
  /** The shared failed set as dead-letter records (each attempt's error in `metadata.attempts`). */
  getDeadLetterQueue<T = any>(): Promise<TaskRecord<T>[]>;
  /** Runs failed jobs again (all, or one); resolves with a promise of each one's result. */
  requeueDeadLetter(taskId?: string): Promise<Array<Promise<any>>>;
  /** Empties the failed set; resolves with the count. */
  clearDeadLetterQueue(): Promise<number>;
  /** Closes its connections; pending tasks reject with ERR_POOL_SHUTDOWN unless they settle within `timeoutMs`. */
  close(timeoutMs?: number): Promise<void>;
}

/** A producer for the shared queue; connects on its first call. */
export declare function createQueueClient(options: QueueClientOptions): QueueClient;

/** `pool.config`: every option, resolved. */
export interface ResolvedWorkerPoolConfig {
  poolSize: number;
  minWorkers: number;
  maxWorkers: number;
  workerScript: string;
  execPath: string;
  execArgv: string[];
  /** Present when the workers run a command instead of the script. */
  workerCommand?: string[];
  /** Present when the workers run a processor file (its absolute path). */
  processor?: string;
  env: Record<string, string>;
  workerMemoryLimitMB: number;
  heartbeatInterval: number;
  zombieThresholdMs: number;
  healthCheckInterval: number;
  taskTimeout: number;
  maxTaskRetries: number;
  retryBackoffMs: number;
  maxBackoffMs: number;
  loadBalancing: LoadBalancingStrategy;
  autoRestart: boolean;
  maxRestartAttempts: number;
  restartCooldownMs: number;
  minUptimeMs: number;
  restartOnMemoryLimit: boolean;
  readyTimeoutMs: number;
  gracePeriodMs: number;
  shutdownTimeoutMs: number;
  maxQueueSize: number | null;
  maxMessageBytes: number;
  maxTasksPerWorker: number | null;
  idleTimeoutMs: number | null;
  prefetch: number;
  spinWaitUs: number;
  fifoDir: string;
  transport: 'ipc' | 'fifo';
  workerGroups: Array<Required<Omit<WorkerGroupConfig, 'env'>> & { env: Record<string, string> }>;
  autoScale: Required<AutoScaleConfig> | null;
  logWorkerErrors: boolean;
  logWorkerWarnings: boolean;
  logWorkerInfo: boolean;
  logWorkerDebug: boolean;
  logLevel: LogLevel;
  /** Present when the pool was given `queue`. */
  queue?: ResolvedSharedQueueConfig;
}

// ---------------------------------------------------------------------------- tasks

/** JSON values: what a payload and a result can be. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A task for `submitTask`. */
export interface Task<P = unknown> {
  /** Selects the handler in the worker. */
  type: string;
  /** Any JSON value; it travels as JSON. */
  payload?: P;
  /** Lower runs first: 0 highest, 10 default, 100 lowest; FIFO among equals. @default 10 */
  priority?: number;
  /** Per-task timeout, ms; overrides `taskTimeout`. */
  timeout?: number;
  /** Retries for this task; overrides `maxTaskRetries`. */
  maxRetries?: number;
  /** Capabilities a worker must have to run it (see `workerGroups`). */
  requires?: string[];
  /** Any JSON data kept with the task record. */
  metadata?: unknown;
}

/** Second argument of `submitTask`. */
export interface SubmitOptions {
  /** Cancels the task (rejects with ABORT_ERR); a running task's handler sees its signal abort. */
  signal?: AbortSignal;
}

/** Worker states. */
export type WorkerState = 'initializing' | 'ready' | 'busy' | 'shutting-down';

// ---------------------------------------------------------------------------- status / metrics

/** `healthMonitor.getWorkerHealth(id)`. */
export interface WorkerHealth {
  workerId: string;
  pid: number;
  healthy: boolean;
  state: string;
  tasksExecuted: number;
  currentTask: string | null;
  /** ms since the last heartbeat (or since registration). */
  timeSinceHeartbeat: number;
  uptime: number;
  restartAttempts: number;
  consecutiveFailures: number;
  lastHeartbeat?: number | null;
  metrics: { memory: number; cpu: number; uptime: number; [key: string]: number };
}

/** `pool.getWorkerStatus(id)`. */
export interface WorkerStatus {
  id: string;
  pid: number;
  state: WorkerState;
  healthy: boolean;
  tasksExecuted: number;
  currentTask: string | null;
  /** ms since the worker started. */
  uptime: number;
  /** ms since the worker last sent anything. */
  lastActivity: number;
  restartCount: number;
  health: WorkerHealth | null;
  inFlight?: number;
  capabilities?: string[];
  rssBytes?: number;
  memoryMB?: number;
  cpuPercent?: number;
}

/** `healthMonitor.getPoolCapacity()`. */
export interface PoolCapacity {
  total: number;
  healthy: number;
  unhealthy: number;
  busy: number;
  idle: number;
  capacityPercent: number;
  utilizationPercent: number;
  /** capacity < 80% */
  degraded: boolean;
}

export type HealthStatus = 'healthy' | 'degraded' | 'critical';

/** `healthMonitor.getHealthSummary()`. */
export interface HealthSummary {
  timestamp: number;
  monitoring: boolean;
  capacity: PoolCapacity;
  alerts: { total: number; recent: number; critical: number };
  workers: { total: number; healthy: number; unhealthy: number };
  status: HealthStatus;
}

export type TaskStatus = 'queued' | 'dequeued' | 'completed' | 'retry-pending' | 'failed';

/** `taskQueue.getStats()`. */
export interface QueueStats {
  queueDepth: number;
  totalTasks: number;
  dlqSize: number;
  byStatus: Partial<Record<TaskStatus, number>>;
  byPriority: Record<string, number>;
  avgWaitTimeMs: number;
  avgDurationMs: number;
  oldestTaskAge: number;
  [key: string]: unknown;
}

/** `pool.getPoolMetrics()`. */
export interface PoolMetrics {
  pool: { size: number; initialized: boolean; shuttingDown: boolean; uptime: number; [key: string]: unknown };
  workers: { total: number; ready: number; busy: number; unhealthy: number };
  tasks: { submitted: number; completed: number; failed: number; queued: number; dlq: number; [key: string]: number };
  performance: {
    /** e.g. '97%': share of completed tasks that ran on an already-used worker. */
    workerReuseRate: string;
    workersSpawned: number;
    workersRestarted: number;
    workersCrashed: number;
    avgTaskWaitTimeMs: number;
    avgTaskDurationMs: number;
    [key: string]: unknown;
  };
  health: HealthSummary;
  /** `shared`: the shared queue's counts (latest snapshot, read every second), when `queue` is set. */
  queue: QueueStats & { shared?: SharedQueueCounts & SharedQueueConnection & { updatedAt: number | null } };
}

// ---------------------------------------------------------------------------- pool events

export interface PoolInitializedEvent { poolSize: number; config: ResolvedWorkerPoolConfig }
export interface TaskAssignedEvent { taskId: string; workerId: string; queuedTimeMs: number }
export interface TaskCompletedEvent { taskId: string; workerId: string; duration: number; workerReused: boolean }
export interface TaskFailedEvent {
  taskId: string;
  workerId: string | null;
  /** The error message. */
  error: string;
  code?: string;
  duration: number;
  /** true when another attempt was scheduled. */
  retried: boolean;
}
export interface WorkerLogEvent {
  workerId: string;
  level: 'error' | 'warning' | 'info' | 'debug';
  message: string;
  pid?: number;
  timestamp?: number;
  error?: { message: string; stack?: string; code?: string | number; name?: string };
  [key: string]: unknown;
}
export interface WorkerErrorEvent { workerId: string; pid: number; error: string; fatal?: boolean; code?: string }
export interface WorkerExitedEvent { workerId: string; pid: number; code: number | null; signal: NodeJS.Signals | null; uptime: number }
export interface ZombieDetectedEvent { workerId: string; pid: number; timeSinceHeartbeat: number; state: string; currentTask: string | null }
export interface PoolScaledEvent { count: number; newSize: number }
export interface PoolLogEvent { level: 'error' | 'warn' | 'info' | 'debug'; component: string; message: string; timestamp: number; [key: string]: unknown }
export interface HighMemoryEvent { workerId: string; memoryMB: number; threshold: number; pid?: number }
export interface WorkerMessageEvent { workerId: string; pid: number; message: { type: string; [key: string]: unknown } }
export type AutoscaleEvent =
  | { action: 'scale-up' | 'scale-down'; from: number; to: number; queueDepth: number; busyWorkers: number }
  | { action: 'cooldown'; direction: 'up' | 'down' | (string & {}); size: number; queueDepth: number; busyWorkers: number };

/** Pool events and their payloads. */
export interface WorkerPoolEvents {
  'pool-initialized': PoolInitializedEvent;
  'task-assigned': TaskAssignedEvent;
  'task-completed': TaskCompletedEvent;
  'task-failed': TaskFailedEvent;
  'worker-log': WorkerLogEvent;
  'worker-error': WorkerErrorEvent;
  'worker-exited': WorkerExitedEvent;
  'zombie-detected': ZombieDetectedEvent;
  'high-memory': HighMemoryEvent;
  'worker-high-memory': HighMemoryEvent;
  'worker-message': WorkerMessageEvent;
  'pool-scaled-up': PoolScaledEvent;
  'pool-scaled-down': PoolScaledEvent;
  'pool-shutdown': void;
  /** The queue emptied after a submit was refused with ERR_QUEUE_FULL. */
  drain: Record<string, never>;
  autoscale: AutoscaleEvent;
  log: PoolLogEvent;
}

type Listener<T> = [T] extends [void] ? () => void : (payload: T) => void;

// ---------------------------------------------------------------------------- pool

/** The pool. Extends Node's EventEmitter. */
export declare class WorkerPoolManager extends EventEmitter {
  constructor(config?: WorkerPoolConfig);

  /** The resolved options. */
  readonly config: ResolvedWorkerPoolConfig;
  /**
   * A read-and-manage view of the pool's own queue. With `queue` set, its dead-letter
   * methods act on the shared failed set and return promises: see {@link SharedDeadLetters}.
   */
  readonly taskQueue: TaskQueue;
  /** The pool's health monitor (it runs in the core, on its own timer). */
  readonly healthMonitor: HealthMonitor;

  /**
   * Spawns the workers (poolSize, or `poolSize` clamped into [minWorkers, maxWorkers])
   * and waits until each is ready. A second call rejects ("Pool already initialized").
   */
  initialize(poolSize?: number): Promise<this>;
  /** Resolves with the handler's result; rejects with a {@link WorkerPoolError}. */
  submitTask<R = any, P = unknown>(task: Task<P>, options?: SubmitOptions): Promise<R>;
  /** `null` for an unknown id. */
  getWorkerStatus(workerId: string): WorkerStatus | null;
  getAllWorkersStatus(): WorkerStatus[];
  getPoolMetrics(): PoolMetrics;
  /** Adds up to `count` workers (never above maxWorkers); resolves when they are ready. */
  scaleUp(count?: number): Promise<PoolScaledEvent>;
  /** Removes up to `count` workers (never below minWorkers), idle ones first; resolves when they have exited. */
  scaleDown(count?: number): Promise<PoolScaledEvent>;
  /**
   * graceful (default): stop taking tasks, finish what was accepted (up to
   * shutdownTimeoutMs), then stop the workers. Immediate: reject everything with
   * ERR_POOL_SHUTDOWN and kill the workers. A second call is a no-op.
   */
  shutdown(graceful?: boolean): Promise<void>;
  /** Pids of the current worker processes. */
  getWorkerPids(): number[];

  on<K extends keyof WorkerPoolEvents>(event: K, listener: Listener<WorkerPoolEvents[K]>): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once<K extends keyof WorkerPoolEvents>(event: K, listener: Listener<WorkerPoolEvents[K]>): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;
  addListener<K extends keyof WorkerPoolEvents>(event: K, listener: Listener<WorkerPoolEvents[K]>): this;
  addListener(event: string | symbol, listener: (...args: any[]) => void): this;
  prependListener<K extends keyof WorkerPoolEvents>(event: K, listener: Listener<WorkerPoolEvents[K]>): this;
  prependListener(event: string | symbol, listener: (...args: any[]) => void): this;
  prependOnceListener<K extends keyof WorkerPoolEvents>(event: K, listener: Listener<WorkerPoolEvents[K]>): this;
  prependOnceListener(event: string | symbol, listener: (...args: any[]) => void): this;
  off<K extends keyof WorkerPoolEvents>(event: K, listener: Listener<WorkerPoolEvents[K]>): this;
  off(event: string | symbol, listener: (...args: any[]) => void): this;
  removeListener<K extends keyof WorkerPoolEvents>(event: K, listener: Listener<WorkerPoolEvents[K]>): this;
  removeListener(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** Builds a pool and initializes it. */
export declare function createWorkerPool(config?: WorkerPoolConfig): Promise<WorkerPoolManager>;
/** Builds a pool without initializing it (call `pool.initialize(poolSize?)`). */
export declare function createPool(config?: WorkerPoolConfig): WorkerPoolManager;
export { createWorkerPool as default };

// ---------------------------------------------------------------------------- TaskQueue

export interface TaskQueueOptions {
  /** @default 3 */
  maxRetries?: number;
  /** @default 1000 */
  retryBackoffMs?: number;
  /** @default 30000 */
  maxBackoffMs?: number;
  /** @default 300000 */
  taskTimeoutMs?: number;
  /** Dead letters kept (oldest dropped first). @default 10000 */
  maxDeadLetters?: number;
}

export interface TaskAttempt {
  timestamp: number;
  error: string;
  stack?: string | null;
  code?: string;
  workerId?: string | null;
}

/** A queue record. */
export interface TaskRecord<T = any> {
  id: string;
  task: T;
  priority: number;
  retries: number;
  maxRetries: number;
  enqueuedAt: number;
  status: TaskStatus;
  timeoutMs: number;
  metadata: { attempts: TaskAttempt[]; [key: string]: unknown };
  dequeuedAt?: number;
  completedAt?: number;
  durationMs?: number;
  result?: unknown;
  nextRetryAt?: number;
  failedAt?: number;
  finalError?: { message: string; code: string; stack: string | null };
}

export interface TaskQueueEvents {
  'task-enqueued': { taskId: string; priority: number; queueDepth: number };
  'task-dequeued': { taskId: string; priority: number; waitTimeMs: number; queueDepth: number };
  'task-completed': { taskId: string; durationMs: number; retries: number };
  'task-retry-scheduled': { taskId: string; retries: number; maxRetries: number; backoffMs: number; error: string };
  'task-retried': { taskId: string; retries: number; queueDepth: number };
  'task-failed': { taskId: string; retries: number; error: string; dlqSize: number };
  'task-timeout': { taskId: string; elapsedMs: number; timeoutMs: number };
  'dlq-cleared': { count: number };
  'queue-cleared': { count: number };
  warning: { message: string; taskId?: string };
}

/**
 * The priority queue with retries, backoff and a dead-letter queue. Standalone
 * (`new TaskQueue(options)`) you drive it; as `pool.taskQueue` it is a view of the
 * pool's queue (enqueue, dequeue, completeTask and failTask throw ERR_NOT_SUPPORTED).
 */
export declare class TaskQueue extends EventEmitter {
  constructor(options?: TaskQueueOptions);
  readonly options: Required<Omit<TaskQueueOptions, 'maxDeadLetters'>>;
  /** Returns the task id. */
  enqueue(task: object, priority?: number): string;
  dequeue<T = any>(): TaskRecord<T> | null;
  peek<T = any>(): TaskRecord<T> | null;
  getTaskById<T = any>(id: string): TaskRecord<T> | null;
  completeTask(id: string, result?: unknown): boolean;
  /** true when a retry is scheduled, false when the task went to the dead-letter queue. */
  failTask(id: string, error: Error | string | { message: string; stack?: string; code?: string }): boolean;
  getQueueDepth(): number;
  /** A copy of the dead-letter records. */
  getDeadLetterQueue<T = any>(): TaskRecord<T>[];
  /** Empties it; returns the count. */
  clearDeadLetterQueue(): number;
  /** Submits dead letters again: on a pool's queue, the new tasks' promises; standalone, their new ids. */
  requeueDeadLetter(taskId?: string): Array<Promise<any>> | string[];
  getStats(): QueueStats;
  /** Ids of dequeued tasks running longer than their timeout. */
  checkTimeouts(): string[];
  /** Drops everything queued; returns the count. */
  clear(): number;

  on<K extends keyof TaskQueueEvents>(event: K, listener: (payload: TaskQueueEvents[K]) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once<K extends keyof TaskQueueEvents>(event: K, listener: (payload: TaskQueueEvents[K]) => void): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;
}

// ---------------------------------------------------------------------------- HealthMonitor

export interface HealthMonitorOptions {
  /** @default 15000 */
  heartbeatTimeoutMs?: number;
  /** @default 5000 */
  healthCheckInterval?: number;
  /** @default 30000 */
  zombieThresholdMs?: number;
  /** @default 3 */
  maxRestartAttempts?: number;
  /** @default 5000 */
  restartCooldownMs?: number;
  /** @default 512 */
  memoryThresholdMB?: number;
  /** @default 90 */
  cpuThresholdPercent?: number;
}

export type AlertSeverity = 'info' | 'warning' | 'critical';

export interface HealthAlert {
  id: string;
  severity: AlertSeverity;
  workerId: string | null;
  type: string;
  timestamp: number;
  [detail: string]: unknown;
}

/** What `recordHeartbeat` reads (the worker's heartbeat message). */
export interface HeartbeatData {
  state?: string;
  tasksExecuted?: number;
  uptime?: number;
  currentTask?: string | null;
  memoryUsage?: { heapUsed?: number; heapTotal?: number; rss?: number; external?: number };
  cpuUsage?: { user?: number; system?: number };
  [key: string]: unknown;
}

/** One heartbeat / kernel sample of a worker. */
export interface HealthSample {
  timestamp: number;
  memoryMB: number;
  rssBytes: number;
  heapUsed: number;
  heapTotal: number;
  cpu: number;
  uptime: number;
}

export interface HealthMonitorEvents {
  'monitoring-started': { timestamp: number };
  'monitoring-stopped': { timestamp: number };
  'worker-registered': { workerId: string; pid: number };
  'worker-unregistered': { workerId: string };
  'heartbeat-received': { workerId: string; pid: number; state: string; memoryMB: number; cpu: number; timestamp: number };
  'zombie-detected': ZombieDetectedEvent;
  'missed-heartbeat': { workerId: string; pid: number; timeSinceHeartbeat: number };
  'high-memory': { workerId: string; memoryMB: number; threshold: number };
  'worker-recovered': { workerId: string; pid: number };
  'restart-attempted': { workerId: string; attempt: number; maxAttempts: number };
  'restart-counter-reset': { workerId: string };
  alert: { alert: HealthAlert };
  'alerts-cleared': { count: number };
  warning: { message: string; [key: string]: unknown };
}

/**
 * Worker health: heartbeats, zombie and memory checks, alerts, restart bookkeeping.
 * Standalone you feed it; as `pool.healthMonitor` the registration and heartbeat
 * methods throw ERR_NOT_SUPPORTED (the pool's core does that itself).
 */
export declare class HealthMonitor extends EventEmitter {
  constructor(options?: HealthMonitorOptions);
  readonly options: Required<HealthMonitorOptions>;
  start(): void;
  stop(): void;
  /** Runs one check now (standalone). */
  checkHealth(): { zombies: string[]; missed: string[]; highMemory: string[] };
  registerWorker(workerId: string, info?: { pid?: number; state?: string; [key: string]: unknown }): boolean;
  unregisterWorker(workerId: string): boolean;
  recordHeartbeat(workerId: string, data?: HeartbeatData): boolean;
  shouldRestartWorker(workerId: string): boolean;
  /** Returns the attempts so far. */
  recordRestartAttempt(workerId: string): number;
  resetRestartCounter(workerId: string): boolean;
  getWorkerHealth(workerId: string): WorkerHealth | null;
  getAllWorkersHealth(): WorkerHealth[];
  getUnhealthyWorkers(): WorkerHealth[];
  getPoolCapacity(): PoolCapacity;
  /** The latest samples, oldest first. @param limit default 100 */
  getWorkerMetrics(workerId: string, limit?: number): HealthSample[];
  /** Newest first. @param limit default 50 */
  getAlerts(limit?: number, severity?: AlertSeverity): HealthAlert[];
  /** Clears alerts older than `olderThanMs` (default 3600000); returns how many. */
  clearAlerts(olderThanMs?: number): number;
  getHealthSummary(): HealthSummary;

  on<K extends keyof HealthMonitorEvents>(event: K, listener: (payload: HealthMonitorEvents[K]) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once<K extends keyof HealthMonitorEvents>(event: K, listener: (payload: HealthMonitorEvents[K]) => void): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;
}

// ---------------------------------------------------------------------------- FIFOChannel

export interface FIFOPaths {
  inPath: string;
  outPath: string;
}

export interface FIFOChannelOptions {
  /** Largest frame accepted or sent, bytes. @default 8388608 */
  maxFrameBytes?: number;
  /** How long close() lets queued frames reach the pipe, ms. @default 1000 */
  closeFlushTimeoutMs?: number;
}

export interface FIFOChannelEvents {
  'channel-created': { workerId: string; inPath: string; outPath: string };
  connected: { workerId: string; inPath: string; outPath: string };
  'message-sent': { workerId: string; message: unknown; bytes: number };
  'message-received': any;
  message: any;
  disconnected: { workerId: string; reason: 'closed' | 'stream-closed' };
  'channel-closed': { workerId: string };
  drain: void;
  error: Error & { code?: string; workerId?: string; operation?: 'read' | 'write' };
}

/** The worker's end of a FIFO channel (`FIFOChannel.openWorkerSide`; a type only at the package root). */
declare class FIFOWorkerEndpoint extends EventEmitter {
  constructor(opts: { inPath?: string; outPath?: string; workerId?: string | number; fifoDir?: string; maxFrameBytes?: number });
  readonly inPath: string;
  readonly outPath: string;
  readonly maxFrameBytes: number;
  send(message: unknown): boolean;
  isConnected(): boolean;
  unref(): this;
  ref(): this;
  close(): void;
}

/** Incremental decoder of length-prefixed JSON frames (`FIFOChannel.FrameDecoder`; a type only at the package root). */
declare class FrameDecoder {
  constructor(options?: { maxFrameBytes?: number });
  readonly maxFrameBytes: number;
  readonly bufferedBytes: number;
  reset(): void;
  push(chunk?: Buffer | Uint8Array | null): unknown[];
}

/**
 * Named-pipe channel to one worker: `worker-<id>-in.fifo` (pool → worker) and
 * `worker-<id>-out.fifo` (worker → pool) in `fifoDir`, carrying 4-byte big-endian
 * length-prefixed JSON frames.
 */
export declare class FIFOChannel extends EventEmitter {
  constructor(workerId: string | number, fifoDir?: string, options?: FIFOChannelOptions);
  readonly workerId: string;
  readonly fifoDir: string;
  readonly inPath: string;
  readonly outPath: string;
  readonly maxFrameBytes: number;
  readonly closeFlushTimeoutMs: number;
  messagesSent: number;
  messagesReceived: number;
  /** Bytes queued in user space waiting for the pipe. */
  readonly writableLength: number;

  static getPaths(workerId: string | number, fifoDir?: string): FIFOPaths;
  static openWorkerSide(opts: { inPath?: string; outPath?: string; workerId?: string | number; fifoDir?: string; maxFrameBytes?: number }): FIFOWorkerEndpoint;
  static readonly FIFOChannel: typeof FIFOChannel;
  static readonly FIFOWorkerEndpoint: typeof FIFOWorkerEndpoint;
  static readonly FrameDecoder: typeof FrameDecoder;
  static encodeFrame(obj: unknown, options?: { maxFrameBytes?: number }): Buffer;
  static fifoPaths(workerId: string | number, fifoDir?: string): FIFOPaths;
  static readonly DEFAULT_FIFO_DIR: string;
  static readonly DEFAULT_MAX_FRAME_BYTES: number;

  /** mkdir -p fifoDir, remove stale pipes, create both FIFOs (mode 0600). */
  createChannel(): Promise<FIFOPaths>;
  /** Opens both pipes; never waits for the worker. */
  connect(): Promise<void>;
  /** Writes one frame; throws ERR_CHANNEL_CLOSED when not connected. */
  sendToWorker(message: unknown): boolean;
  isConnected(): boolean;
  isClosed(): boolean;
  unref(): this;
  ref(): this;
  /** Closes the descriptors and removes both pipe files; idempotent. */
  close(): Promise<void>;

  on<K extends keyof FIFOChannelEvents>(event: K, listener: Listener<FIFOChannelEvents[K]>): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once<K extends keyof FIFOChannelEvents>(event: K, listener: Listener<FIFOChannelEvents[K]>): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;
}

export type { FIFOWorkerEndpoint, FrameDecoder };
