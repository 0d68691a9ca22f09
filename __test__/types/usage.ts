// Type-level usage of the whole public API; checked by `npx tsc -p tsconfig.json`
// (never run). `@ts-expect-error` lines must stay errors.

import { EventEmitter } from 'node:events';
import createDefault, {
  createWorkerPool,
  createPool,
  WorkerPoolManager,
  TaskQueue,
  HealthMonitor,
  FIFOChannel,
  ErrorCodes,
  createQueueClient,
  type QueueClient,
  type SharedQueueCounts,
  type SharedDeadLetters,
  type FIFOWorkerEndpoint,
  type FrameDecoder,
  type ErrorCode,
  type WorkerPoolConfig,
  type ResolvedWorkerPoolConfig,
  type Task,
  type WorkerPoolError,
  type WorkerStatus,
  type PoolMetrics,
  type HealthSummary,
  type TaskRecord,
  type QueueStats,
  type HealthAlert,
  type WorkerHealth,
  type PoolCapacity,
  type FIFOPaths,
} from '../../index';
import * as root from '../../index';
import WorkerProcess = require('../../worker-process');

async function poolUsage(): Promise<void> {
  const config: WorkerPoolConfig = {
    poolSize: 4,
    minWorkers: 1,
    maxWorkers: 8,
    workerScript: './worker.js',
    workerMemoryLimitMB: 256,
    heartbeatInterval: 3000,
    zombieThresholdMs: 15000,
    healthCheckInterval: 1000,
    taskTimeout: 60000,
    maxTaskRetries: 2,
    retryBackoffMs: 500,
    maxBackoffMs: 5000,
    loadBalancing: 'least-loaded',
    autoRestart: true,
    maxRestartAttempts: 5,
    restartCooldownMs: 1000,
    minUptimeMs: 500,
    restartOnMemoryLimit: false,
    readyTimeoutMs: 10000,
    gracePeriodMs: 1000,
    shutdownTimeoutMs: 10000,
    maxQueueSize: 1000,
    maxMessageBytes: 1 << 20,
    maxTasksPerWorker: 10000,
    idleTimeoutMs: 60000,
    prefetch: 4,
    spinWaitUs: 50,
    execArgv: ['--max-old-space-size=256'],
    env: { MODE: 'test', LEVEL: 3, DEBUG: false },
    fifoDir: '/tmp/cortex/workers',
    transport: 'ipc',
    workerGroups: [
      { size: 2, capabilities: ['gpu'], env: { GPU: 1 } },
      { size: 1, workerScript: './other.js' },
      { size: 1, workerCommand: ['python3', 'worker.py'], capabilities: ['python'], env: { PYTHONPATH: './python' } },
    ],
    autoScale: { queueDepthHigh: 10, busyLow: 1, stepUp: 2, stepDown: 1, intervalMs: 1000, cooldownMs: 2000 },
    logWorkerErrors: true,
    logWorkerWarnings: true,
    logWorkerInfo: false,
    logWorkerDebug: false,
    logLevel: 'silent',
  };
  // @ts-expect-error unknown strategy
  const bad: WorkerPoolConfig = { loadBalancing: 'random' };
  void bad;
  const python: WorkerPoolConfig = { workerCommand: ['python3', 'worker.py'], env: { PYTHONPATH: './python' } };
  void python;
  // @ts-expect-error workerCommand is an argv array, not a command line
  const commandLine: WorkerPoolConfig = { workerCommand: 'python3 worker.py' };
  void commandLine;

  const pool: WorkerPoolManager = await createWorkerPool(config);
  const same: Promise<WorkerPoolManager> = createDefault({ poolSize: 1 });
  void same;
  const lazy = createPool();
  const initialized: WorkerPoolManager = await lazy.initialize(2);
  void initialized;
  const emitter: EventEmitter = pool;
  void emitter;
  const direct = new WorkerPoolManager({ poolSize: 1, autoScale: true });
  void direct;

  const resolved: ResolvedWorkerPoolConfig = pool.config;
  const size: number = resolved.poolSize;
  const strategy: 'round-robin' | 'least-loaded' | 'capability-based' = resolved.loadBalancing;
  const command: string[] | undefined = resolved.workerCommand;
  void size;
  void strategy;
  void command;

  const task: Task<{ feature: string }> = { type: 'implementation', payload: { feature: 'x' }, priority: 5, timeout: 60000, metadata: { by: 'me' } };
  const r1 = await pool.submitTask<{ status: string; result: { feature: string } }>(task);
  const status: string = r1.status;
  void status;
  const ac = new AbortController();
  const r2: unknown = await pool.submitTask({ type: 'gpu-task', requires: ['gpu'], maxRetries: 0 }, { signal: ac.signal });
  void r2;
  // @ts-expect-error type is required
  void pool.submitTask({ payload: 1 });

  try {
    await pool.submitTask({ type: 'x' });
  } catch (e) {
    const err = e as WorkerPoolError;
    const code: string = err.code;
    if (err.code === ErrorCodes.ERR_TASK_TIMEOUT || err.code === 'ERR_WORKER_CRASHED') {
      const who: string | undefined = err.workerId;
      void who;
    }
    void code;
  }
  const someCode: ErrorCode = ErrorCodes.ERR_NO_HANDLER;
  void someCode;

  const st: WorkerStatus | null = pool.getWorkerStatus('worker-0');
  if (st) {
    const fields: [string, number, string, boolean, number, string | null, number, number, number] = [
      st.id, st.pid, st.state, st.healthy, st.tasksExecuted, st.currentTask, st.uptime, st.lastActivity, st.restartCount,
    ];
    void fields;
    const h: WorkerHealth | null = st.health;
    void h;
  }
  const all: WorkerStatus[] = pool.getAllWorkersStatus();
  void all;
  const m: PoolMetrics = pool.getPoolMetrics();
  const reuse: string = m.performance.workerReuseRate;
  const dlqCount: number = m.tasks.dlq;
  const hs: HealthSummary = m.health;
  const qs: QueueStats = m.queue;
  void reuse;
  void dlqCount;
  void hs;
  void qs;
  const pids: number[] = pool.getWorkerPids();
  void pids;

  const up = await pool.scaleUp(2);
  const newSize: number = up.newSize;
  void newSize;
  await pool.scaleDown(1);

  // Typed pool events.
  pool.on('pool-initialized', ({ poolSize, config: c }) => void [poolSize.toFixed(), c.workerScript]);
  pool.on('task-assigned', ({ taskId, workerId, queuedTimeMs }) => void [taskId, workerId, queuedTimeMs.toFixed()]);
  pool.on('task-completed', ({ taskId, workerId, duration, workerReused }) => void [taskId, workerId, duration, workerReused === true]);
  pool.on('task-failed', ({ taskId, error, retried, duration }) => void [taskId, error.toUpperCase(), retried, duration]);
  pool.on('worker-log', ({ workerId, level, message }) => void [workerId, level, message]);
  pool.on('worker-error', ({ workerId, pid, error }) => void [workerId, pid, error]);
  pool.on('worker-exited', ({ workerId, pid, code, signal, uptime }) => void [workerId, pid, code, signal, uptime]);
  pool.on('zombie-detected', ({ workerId, timeSinceHeartbeat, state, currentTask }) => void [workerId, timeSinceHeartbeat, state, currentTask]);
  pool.once('pool-scaled-up', ({ count, newSize: n }) => void [count, n]);
  pool.on('pool-scaled-down', ({ count, newSize: n }) => void [count, n]);
  pool.on('pool-shutdown', () => undefined);
  pool.on('log', ({ level, component, message, timestamp }) => void [level, component, message, timestamp]);
  pool.on('autoscale', (e) => void (e.action === 'cooldown' ? e.size : e.to));
  pool.on('drain', () => undefined);
  pool.on('some-other-event', (...args: unknown[]) => void args);
  // @ts-expect-error payload fields are typed
  pool.on('task-completed', (e) => e.nope);
  const onDone = (e: { taskId: string }) => void e;
  pool.off('task-completed', onDone);

  // pool.taskQueue / pool.healthMonitor
  const dlq: TaskRecord[] = pool.taskQueue.getDeadLetterQueue();
  const depth: number = pool.taskQueue.getQueueDepth();
  const cleared: number = pool.taskQueue.clearDeadLetterQueue();
  void [dlq, depth, cleared];
  const requeued = pool.taskQueue.requeueDeadLetter();
  void requeued;
  const summary: HealthSummary = pool.healthMonitor.getHealthSummary();
  const st2: 'healthy' | 'degraded' | 'critical' = summary.status;
  void st2;

  await pool.shutdown(true);
  await pool.shutdown(false);
  await pool.shutdown();
}

function queueUsage(): void {
  const q = new TaskQueue({ maxRetries: 2, retryBackoffMs: 10, maxBackoffMs: 100, taskTimeoutMs: 1000 });
  const q2 = new TaskQueue();
  void q2;
  const maxRetries: number = q.options.maxRetries;
  void maxRetries;
  const id: string = q.enqueue({ type: 'x', payload: 1 }, 0);
  q.enqueue({ type: 'y' });
  const peeked: TaskRecord<{ type: string }> | null = q.peek();
  const rec = q.dequeue<{ type: string; payload: number }>();
  if (rec) {
    const t: string = rec.task.type;
    const attempts = rec.metadata.attempts.map((a) => a.error);
    void [t, attempts, rec.status, rec.retries, rec.enqueuedAt];
  }
  void peeked;
  const byId: TaskRecord | null = q.getTaskById(id);
  void byId;
  const done: boolean = q.completeTask(id, { ok: true });
  const retry: boolean = q.failTask(id, new Error('boom'));
  q.failTask(id, 'plain');
  void [done, retry];
  const stats: QueueStats = q.getStats();
  const timeouts: string[] = q.checkTimeouts();
  const n: number = q.clear();
  void [stats.queueDepth, stats.byStatus.queued, timeouts, n];
  q.on('task-enqueued', ({ taskId, priority, queueDepth }) => void [taskId, priority, queueDepth]);
  q.on('task-retry-scheduled', ({ backoffMs }) => void backoffMs.toFixed());
  q.on('task-retried', ({ retries }) => void retries);
  q.once('task-failed', ({ dlqSize }) => void dlqSize);
  q.on('dlq-cleared', ({ count }) => void count);
  const dead = q.getDeadLetterQueue();
  const fe = dead[0]?.finalError?.message;
  void fe;
}

function healthUsage(): void {
  const h = new HealthMonitor({
    heartbeatTimeoutMs: 50,
    healthCheckInterval: 20,
    zombieThresholdMs: 100,
    maxRestartAttempts: 3,
    restartCooldownMs: 5000,
    memoryThresholdMB: 512,
    cpuThresholdPercent: 90,
  });
  new HealthMonitor();
  h.registerWorker('w1', { pid: 1, state: 'ready' });
  h.recordHeartbeat('w1', { state: 'ready', memoryUsage: { heapUsed: 1 }, cpuUsage: { user: 1, system: 1 }, uptime: 1, tasksExecuted: 0 });
  h.start();
  const check = h.checkHealth();
  void check.zombies;
  const should: boolean = h.shouldRestartWorker('w1');
  const attempts: number = h.recordRestartAttempt('w1');
  h.resetRestartCounter('w1');
  void [should, attempts];
  const wh: WorkerHealth | null = h.getWorkerHealth('w1');
  const allH: WorkerHealth[] = h.getAllWorkersHealth();
  const bad: WorkerHealth[] = h.getUnhealthyWorkers();
  const cap: PoolCapacity = h.getPoolCapacity();
  const samples = h.getWorkerMetrics('w1', 10);
  const alerts: HealthAlert[] = h.getAlerts(10, 'critical');
  const clearedAlerts: number = h.clearAlerts(0);
  const sum: HealthSummary = h.getHealthSummary();
  void [wh, allH, bad, cap.capacityPercent, samples[0]?.memoryMB, alerts[0]?.severity, clearedAlerts, sum.status];
  h.on('missed-heartbeat', ({ workerId, timeSinceHeartbeat }) => void [workerId, timeSinceHeartbeat]);
  h.on('zombie-detected', ({ workerId, pid }) => void [workerId, pid]);
  h.on('alert', ({ alert }) => void alert.type);
  h.on('high-memory', ({ memoryMB, threshold }) => void [memoryMB, threshold]);
  h.unregisterWorker('w1');
  h.stop();
}

async function fifoUsage(): Promise<void> {
  const paths: FIFOPaths = FIFOChannel.getPaths('worker-0', '/tmp/x');
  void paths.inPath;
  const ch = new FIFOChannel('worker-0', '/tmp/x', { maxFrameBytes: 1024, closeFlushTimeoutMs: 100 });
  ch.on('message-received', (msg: unknown) => void msg);
  ch.on('connected', ({ inPath }) => void inPath);
  ch.on('error', (err) => void err.code);
  const created: FIFOPaths = await ch.createChannel();
  void created;
  await ch.connect();
  const ok: boolean = ch.sendToWorker({ type: 'ping' });
  const connected: boolean = ch.isConnected();
  void [ok, connected, ch.writableLength, ch.messagesSent];
  const endpoint: FIFOWorkerEndpoint = FIFOChannel.openWorkerSide({ workerId: 'worker-0', fifoDir: '/tmp/x' });
  endpoint.on('message', (m: unknown) => void m);
  endpoint.send({ type: 'pong' });
  endpoint.close();
  const frame: Buffer = FIFOChannel.encodeFrame({ a: 1 });
  const dec: FrameDecoder = new FIFOChannel.FrameDecoder({ maxFrameBytes: 1 << 20 });
  const values: unknown[] = dec.push(frame);
  void values;
  void FIFOChannel.DEFAULT_FIFO_DIR;
  // @ts-expect-error FrameDecoder is not a value export of the package root
  void root.FrameDecoder;
  await ch.close();
}

function workerUsage(): void {
  const w = new WorkerProcess(process.env.WORKER_ID, WorkerProcess.optionsFromConfig(WorkerProcess.parseWorkerConfig(process.env.WORKER_CONFIG)));
  const Named: typeof WorkerProcess = WorkerProcess.WorkerProcess;
  const w2 = new Named('worker-9', { heartbeatInterval: 1000, memoryThresholdMB: 256, idleTimeoutMs: 1000, capabilities: ['gpu'], purgeModuleCache: false, forceGC: false });
  void w2;
  w.registerTaskHandler('implementation', (payload: unknown) => ({ status: 'completed', result: payload }))
    .registerTaskHandler('sleep', async (payload: { ms: number }, signal) => {
      await new Promise((resolve) => setTimeout(resolve, payload.ms));
      return { aborted: signal.aborted };
    })
    .registerTaskHandler('ctx', (_p, _s, ctx) => ctx.taskId)
    .start();
  w.log('warning', 'careful', { detail: 1 });
  w.log('info', 'hello');
  const id: string = w.workerId;
  const state: 'initializing' | 'ready' | 'busy' | 'shutting-down' = w.state;
  void [id, state, w.tasksExecuted];
  w.stopHeartbeat();
  w.shutdown(true);
  // @ts-expect-error handlers must be functions
  w.registerTaskHandler('x', 42);
  w.registerDefaultHandler(async (payload: unknown, _signal, ctx) => {
    const attempts: number | undefined = ctx.job?.attemptsMade;
    if (ctx.job) await w.jobCall(ctx.taskId, 'progress', 50);
    return { payload, attempts };
  });
  // @ts-expect-error only the known job calls
  void w.jobCall('t', 'remove');
}

async function sharedQueueUsage(): Promise<void> {
  const pool = await createWorkerPool({
    poolSize: 4,
    queue: { url: 'redis://:pw@redis:6379/0', name: 'cortex', prefix: 'bull', serve: true, lockDurationMs: 30000, stalledIntervalMs: 30000, commandTimeoutMs: 2000 },
  });
  const r: number = await pool.submitTask<number>({ type: 'analysis', payload: { file: 'a.js' }, priority: 1, requires: ['gpu'] });
  const shared: SharedQueueCounts | undefined = pool.getPoolMetrics().queue.shared;
  const link = pool.getPoolMetrics().queue.shared;
  const down: number | null | undefined = link?.connected === false ? link.since : null;
  const held: number | undefined = link?.held;
  void [down, held];
  const served: boolean | undefined = pool.config.queue?.serve;
  const dlq = pool.taskQueue as unknown as SharedDeadLetters;
  const failed = await dlq.getDeadLetterQueue();
  const again: Array<Promise<any>> = await dlq.requeueDeadLetter(failed[0]?.id);
  const cleared: number = await dlq.clearDeadLetterQueue();
  const producerOnly = await createWorkerPool({ poolSize: 0, queue: { url: 'redis://redis:6379', serve: false } });
  const processorPool = await createWorkerPool({
    poolSize: 8,
    processor: './processor.js',
    queue: { url: 'redis://redis:6379', name: 'emails', jobTimeoutMs: 60000, maxStalledCount: 2, limiter: { max: 10, duration: 1000 } },
  });
  const file: string | undefined = processorPool.config.processor;
  const limit: { max: number; duration: number } | null | undefined = processorPool.config.queue?.limiter;
  void [file, limit];
  const client: QueueClient = createQueueClient({ url: 'rediss://redis:6380', name: 'cortex', commandTimeoutMs: 1000 });
  const counts: SharedQueueCounts = await client.getQueueMetrics();
  const out: string = await client.submitTask<string>({ type: 'echo', payload: 'x' }, { signal: AbortSignal.timeout(1000) });
  const records = await client.getDeadLetterQueue();
  const n: number = await client.clearDeadLetterQueue();
  await client.requeueDeadLetter();
  await client.close(1000);
  // @ts-expect-error url is required
  createQueueClient({ name: 'x' });
  // @ts-expect-error serve is a boolean
  await createWorkerPool({ queue: { url: 'redis://h', serve: 'yes' } });
  void [r, shared, served, again, cleared, producerOnly, counts, out, records, n, ErrorCodes.ERR_QUEUE_UNAVAILABLE];
}

void sharedQueueUsage;
void poolUsage;
void queueUsage;
void healthUsage;
void fifoUsage;
void workerUsage;
