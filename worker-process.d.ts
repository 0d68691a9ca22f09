// Type definitions for cortex-worker-pool/worker-process: the runtime inside each
// worker. `module.exports` is the WorkerProcess class itself (as in the original),
// with `WorkerProcess`, `parseWorkerConfig` and `optionsFromConfig` attached.

/// <reference types="node" />

declare namespace WorkerProcessClass {
  /** Constructor options. */
  interface WorkerProcessOptions {
    /** ms between heartbeats. @default 5000 */
    heartbeatInterval?: number;
    /** Heap threshold for `high-memory-warning`, MB. @default 512 */
    memoryThresholdMB?: number;
    /** Idle time after which a debug line is logged, ms. @default 300000 */
    idleTimeoutMs?: number;
    /** Capabilities announced in `worker-ready`. @default [] */
    capabilities?: string[];
    /** Purge the module cache (outside node_modules) after every task, as the original did. @default false */
    purgeModuleCache?: boolean;
    /** Run `global.gc()` after every task (needs --expose-gc), as the original did. @default false */
    forceGC?: boolean;
  }

  /** Third argument of a handler. */
  interface TaskContext {
    taskId: string | number;
    type: string;
    timeout?: number;
    /** A plain BullMQ job's fields (shared queue); undefined for other tasks. */
    job?: BullJobInfo;
  }

  /** What a worker is told about a plain BullMQ job (docs/PROTOCOL.md, `task.job`). */
  interface BullJobInfo {
    id: string;
    name: string;
    queueName: string;
    opts: Record<string, unknown>;
    timestamp: number;
    delay: number;
    priority: number;
    attemptsMade: number;
    attemptsStarted: number;
    processedOn: number | null;
    stacktrace: string[];
    parentKey: string | null;
    repeatJobKey: string | null;
  }

  /** What `jobCall` can ask about a shared-queue job. */
  type JobCallOp = 'progress' | 'log' | 'update-data' | 'children-values';

  /**
   * A task handler: returns the result (or a promise of it). A handler declared with
   * exactly one parameter is called with the payload alone (no AbortSignal is made).
   */
  type TaskHandler<P = any, R = unknown> = (payload: P, signal: AbortSignal, context: TaskContext) => R | PromiseLike<R>;

  /** Levels of `log()`; 'warn' is accepted as 'warning'. */
  type LogLevel = 'error' | 'warning' | 'warn' | 'info' | 'debug';

  type WorkerState = 'initializing' | 'ready' | 'busy' | 'shutting-down';

  /** The same class, as a named property. */
  export import WorkerProcess = WorkerProcessClass;

  /** Parses WORKER_CONFIG (JSON object text; '' or undefined give {}); throws on anything else. */
  function parseWorkerConfig(text: string | undefined): Record<string, unknown>;

  /** Picks the constructor options out of a WORKER_CONFIG object (other keys ignored). */
  function optionsFromConfig(config: Record<string, unknown>): WorkerProcessOptions;
}

/**
 * Worker-side runtime: receives tasks over Node's IPC channel, runs them one at a
 * time with the registered handlers, and reports results, heartbeats and logs.
 */
declare class WorkerProcessClass {
  /** @param workerId defaults to `worker-<pid>` when empty */
  constructor(workerId?: string | null, options?: WorkerProcessClass.WorkerProcessOptions);

  readonly workerId: string;
  readonly heartbeatInterval: number;
  readonly memoryThresholdMB: number;
  readonly idleTimeoutMs: number;
  readonly purgeModuleCache: boolean;
  readonly forceGC: boolean;
  readonly capabilities: string[];
  state: WorkerProcessClass.WorkerState;
  tasksExecuted: number;
  currentTask: string | number | null;
  readonly startTime: number;
  readonly taskHandlers: Map<string, WorkerProcessClass.TaskHandler>;

  /** Registers the handler for a task type; chainable. */
  registerTaskHandler<P = any, R = unknown>(type: string, fn: WorkerProcessClass.TaskHandler<P, R>): this;
  /** The handler of every task type without a handler of its own; chainable. */
  registerDefaultHandler<P = any, R = unknown>(fn: WorkerProcessClass.TaskHandler<P, R>): this;
  /** Asks the pool about the plain BullMQ job task `taskId` runs; resolves with the pool's answer. */
  jobCall(taskId: string | number, op: WorkerProcessClass.JobCallOp, value?: unknown): Promise<unknown>;
  /** Connects to the pool (exits with an explanation when there is no IPC channel); chainable. */
  start(): this;
  /** Sends a worker-log message to the pool. */
  log(level: WorkerProcessClass.LogLevel, message: unknown, extra?: Record<string, unknown>): void;
  stopHeartbeat(): void;
  /** graceful (default): finish running and queued tasks (30 s at most), then exit; else exit now. */
  shutdown(graceful?: boolean): void;
}

export = WorkerProcessClass;
