'use strict';
// TaskQueue and HealthMonitor used on their own (no pool, no processes).
// Run: node --test __test__/standalone.test.js

const assert = require('node:assert/strict');
const { EventEmitter } = require('node:events');
const { test, ROOT, waitFor } = require('./helpers');

const { TaskQueue, HealthMonitor } = require(ROOT);
const TASK_ID = /^task-\d+-\d+$/;

function recorder(emitter, names) {
  const got = Object.fromEntries(names.map((n) => [n, []]));
  const order = [];
  for (const n of names) {
    emitter.on(n, (d) => {
      got[n].push(d);
      order.push(n);
    });
  }
  got.order = order;
  return got;
}

const QUEUE_EVENTS = ['task-enqueued', 'task-dequeued', 'task-completed', 'task-retry-scheduled', 'task-retried',
  'task-failed', 'task-timeout', 'dlq-cleared', 'queue-cleared', 'warning'];

test('TaskQueue: defaults, enqueue / peek / dequeue / getTaskById and their events', () => {
  const q = new TaskQueue();
  assert.ok(q instanceof EventEmitter);
  assert.deepEqual(q.options, { maxRetries: 3, retryBackoffMs: 1000, maxBackoffMs: 30000, taskTimeoutMs: 300000 });
  const got = recorder(q, QUEUE_EVENTS);
  assert.equal(q.peek(), null);
  assert.equal(q.dequeue(), null);
  assert.equal(q.getQueueDepth(), 0);

  const id = q.enqueue({ type: 'a', payload: { x: 1 } });
  assert.match(id, TASK_ID);
  assert.deepEqual(got['task-enqueued'], [{ taskId: id, priority: 10, queueDepth: 1 }]);
  assert.equal(q.getQueueDepth(), 1);

  const peeked = q.peek();
  assert.equal(peeked.id, id);
  assert.equal(q.getQueueDepth(), 1, 'peek does not remove');
  for (const k of ['id', 'task', 'priority', 'retries', 'maxRetries', 'enqueuedAt', 'status', 'timeoutMs', 'metadata']) {
    assert.ok(k in peeked, `record.${k}`);
  }
  assert.deepEqual(peeked.task, { type: 'a', payload: { x: 1 } });
  assert.equal(peeked.priority, 10);
  assert.equal(peeked.retries, 0);
  assert.equal(peeked.maxRetries, 3);
  assert.equal(peeked.status, 'queued');
  assert.equal(peeked.timeoutMs, 300000);
  assert.equal(typeof peeked.enqueuedAt, 'number');
  assert.deepEqual(peeked.metadata.attempts, []);
  assert.equal(q.getTaskById(id).id, id);
  assert.equal(q.getTaskById('task-0-999999'), null);

  const rec = q.dequeue();
  assert.equal(rec.id, id);
  assert.equal(rec.status, 'dequeued');
  assert.equal(typeof rec.dequeuedAt, 'number');
  assert.equal(q.getQueueDepth(), 0);
  assert.equal(got['task-dequeued'].length, 1);
  const d = got['task-dequeued'][0];
  assert.equal(d.taskId, id);
  assert.equal(d.priority, 10);
  assert.equal(typeof d.waitTimeMs, 'number');
  assert.equal(d.queueDepth, 0);

  q.completeTask(id, { done: true });
  assert.equal(got['task-completed'].length, 1);
  assert.equal(got['task-completed'][0].taskId, id);
  assert.equal(typeof got['task-completed'][0].durationMs, 'number');
  assert.equal(got['task-completed'][0].retries, 0);
  assert.equal(q.getStats().byStatus.completed, 1);
});

test('TaskQueue: priority order, FIFO among equal priorities (same millisecond)', () => {
  const q = new TaskQueue();
  const plan = [['p10a', 10], ['p0a', 0], ['p5', 5], ['p0b', 0], ['p100', 100], ['p10b', 10], ['p0c', 0], ['pneg', -1], ['p2.5', 2.5]];
  for (const [name, p] of plan) q.enqueue({ name }, p);
  for (let i = 0; i < 300; i++) q.enqueue({ name: `eq-${i}` }, 50);
  const out = [];
  for (let r = q.dequeue(); r !== null; r = q.dequeue()) out.push(r.task.name);
  assert.deepEqual(out.slice(0, 9), ['pneg', 'p0a', 'p0b', 'p0c', 'p2.5', 'p5', 'p10a', 'p10b', 'eq-0']);
  assert.deepEqual(out.slice(8, 308), Array.from({ length: 300 }, (_, i) => `eq-${i}`));
  assert.equal(out[308], 'p100');
  assert.equal(out.length, 309);
});

test('TaskQueue: failTask schedules a retry, task-retried after the backoff, then the DLQ', async () => {
  const q = new TaskQueue({ maxRetries: 2, retryBackoffMs: 40, maxBackoffMs: 60 });
  const got = recorder(q, QUEUE_EVENTS);
  const id = q.enqueue({ type: 'x', payload: 1 }, 3);

  // Attempt 1 fails: retry in 40 ms.
  assert.equal(q.dequeue().id, id);
  let t0 = Date.now();
  assert.equal(q.failTask(id, new Error('first')), true);
  const rs1 = got['task-retry-scheduled'][0];
  assert.equal(rs1.taskId, id);
  assert.equal(rs1.retries, 1);
  assert.equal(rs1.maxRetries, 2);
  assert.equal(rs1.backoffMs, 40);
  assert.match(typeof rs1.error === 'string' ? rs1.error : rs1.error.message, /first/);
  const pending = q.getTaskById(id);
  assert.equal(pending.status, 'retry-pending');
  assert.equal(typeof pending.nextRetryAt, 'number');
  assert.equal(q.getQueueDepth(), 0, 'not back in the queue before the backoff');
  assert.equal(q.dequeue(), null);
  await waitFor(() => got['task-retried'].length === 1, 5000, { message: 'task-retried #1' });
  assert.ok(Date.now() - t0 >= 35, 'waited for the backoff');
  assert.deepEqual(got['task-retried'][0], { taskId: id, retries: 1, queueDepth: 1 });
  assert.equal(q.getQueueDepth(), 1);
  assert.equal(q.getTaskById(id).status, 'queued');

  // Attempt 2 fails: retry in min(40 * 2, 60) = 60 ms.
  assert.equal(q.dequeue().id, id);
  t0 = Date.now();
  assert.equal(q.failTask(id, new Error('second')), true);
  assert.equal(got['task-retry-scheduled'][1].backoffMs, 60, 'capped by maxBackoffMs');
  await waitFor(() => got['task-retried'].length === 2, 5000, { message: 'task-retried #2' });
  assert.ok(Date.now() - t0 >= 55);

  // Attempt 3 fails: dead-lettered.
  const rec = q.dequeue();
  assert.equal(rec.id, id);
  assert.equal(rec.retries, 2);
  assert.equal(q.failTask(id, new Error('third')), false);
  assert.equal(got['task-failed'].length, 1);
  const f = got['task-failed'][0];
  assert.equal(f.taskId, id);
  assert.equal(f.retries, 2);
  assert.equal(f.dlqSize, 1);
  assert.match(typeof f.error === 'string' ? f.error : f.error.message, /third/);

  const dlq = q.getDeadLetterQueue();
  assert.equal(dlq.length, 1);
  const dead = dlq[0];
  assert.equal(dead.id, id);
  assert.deepEqual(dead.task, { type: 'x', payload: 1 });
  assert.equal(dead.retries, 2);
  assert.equal(dead.status, 'failed');
  assert.equal(typeof dead.failedAt, 'number');
  assert.match(typeof dead.finalError === 'string' ? dead.finalError : dead.finalError.message, /third/);
  assert.equal(dead.metadata.attempts.length, 3);
  assert.deepEqual(dead.metadata.attempts.map((a) => (typeof a.error === 'string' ? a.error : a.error.message)), ['first', 'second', 'third']);
  for (const a of dead.metadata.attempts) assert.equal(typeof a.timestamp, 'number');
  // getDeadLetterQueue returns a copy.
  dlq.length = 0;
  assert.equal(q.getDeadLetterQueue().length, 1);
  assert.deepEqual(got['task-retried'].length, 2, 'no retry after the DLQ');

  const stats = q.getStats();
  assert.equal(stats.dlqSize, 1);
  assert.equal(q.clearDeadLetterQueue(), 1);
  assert.deepEqual(got['dlq-cleared'], [{ count: 1 }]);
  assert.deepEqual(q.getDeadLetterQueue(), []);
});

test('TaskQueue: getStats keys, clear(), checkTimeouts(), bad input', async () => {
  const q = new TaskQueue({ taskTimeoutMs: 30 });
  const got = recorder(q, QUEUE_EVENTS);
  q.enqueue({ n: 1 }, 1);
  q.enqueue({ n: 2 }, 1);
  q.enqueue({ n: 3 }, 7);
  const stats = q.getStats();
  for (const k of ['queueDepth', 'totalTasks', 'dlqSize', 'byStatus', 'byPriority', 'avgWaitTimeMs', 'avgDurationMs', 'oldestTaskAge']) {
    assert.ok(k in stats, `stats.${k}`);
  }
  assert.equal(stats.queueDepth, 3);
  assert.equal(stats.totalTasks, 3);
  assert.equal(stats.dlqSize, 0);
  assert.equal(stats.byStatus.queued, 3);
  assert.equal(stats.byPriority['1'], 2);
  assert.equal(stats.byPriority['7'], 1);
  assert.equal(typeof stats.oldestTaskAge, 'number');

  const running = q.dequeue();
  assert.deepEqual(q.checkTimeouts(), []);
  await waitFor(() => q.checkTimeouts().includes(running.id), 5000, { message: 'timeout' });
  assert.ok(got['task-timeout'].length >= 1);
  const to = got['task-timeout'][0];
  assert.equal(to.taskId, running.id);
  assert.equal(to.timeoutMs, 30);
  assert.ok(to.elapsedMs >= 30);

  assert.equal(q.clear(), 2);
  assert.deepEqual(got['queue-cleared'], [{ count: 2 }]);
  assert.equal(q.getQueueDepth(), 0);
  assert.equal(q.dequeue(), null);

  for (const bad of [null, undefined, 'str', 5]) {
    assert.throws(() => q.enqueue(bad), (e) => e instanceof Error && typeof e.code === 'string', `enqueue(${String(bad)})`);
  }
  assert.throws(() => q.enqueue({}, 'high'), (e) => e instanceof Error && /priority/.test(e.message));
  assert.throws(() => q.enqueue({}, NaN), (e) => e instanceof Error && /priority/.test(e.message));
});

const HEALTH_EVENTS = ['monitoring-started', 'monitoring-stopped', 'worker-registered', 'worker-unregistered',
  'heartbeat-received', 'zombie-detected', 'missed-heartbeat', 'high-memory', 'worker-recovered',
  'restart-attempted', 'restart-counter-reset', 'alert', 'alerts-cleared', 'warning'];

const MB = 1024 * 1024;
function beat(mon, id, extra = {}) {
  mon.recordHeartbeat(id, {
    state: 'ready',
    tasksExecuted: 1,
    uptime: 1000,
    memoryUsage: { heapUsed: 20 * MB, heapTotal: 40 * MB, rss: 60 * MB, external: 0 },
    cpuUsage: { user: 1000, system: 500 },
    currentTask: null,
    ...extra,
  });
}

test('HealthMonitor: missed-heartbeat then zombie-detected, alerts, summary, recovery, stop', async (t) => {
  const mon = new HealthMonitor({ heartbeatTimeoutMs: 50, zombieThresholdMs: 100, healthCheckInterval: 20 });
  t.after(() => mon.stop());
  assert.ok(mon instanceof EventEmitter);
  const got = recorder(mon, HEALTH_EVENTS);

  mon.registerWorker('w1', { pid: 4242, state: 'ready' });
  assert.deepEqual(got['worker-registered'].map((e) => e.workerId), ['w1']);
  beat(mon, 'w1');
  assert.equal(got['heartbeat-received'].length, 1);
  const h = mon.getWorkerHealth('w1');
  for (const k of ['workerId', 'pid', 'healthy', 'state', 'tasksExecuted', 'currentTask', 'timeSinceHeartbeat', 'uptime',
    'restartAttempts', 'consecutiveFailures', 'metrics']) {
    assert.ok(k in h, `getWorkerHealth().${k}`);
  }
  assert.equal(h.workerId, 'w1');
  assert.equal(h.pid, 4242);
  assert.equal(h.healthy, true);
  assert.equal(h.tasksExecuted, 1);
  for (const k of ['memory', 'cpu', 'uptime']) assert.ok(k in h.metrics, `metrics.${k}`);
  assert.equal(mon.getWorkerMetrics('w1').length, 1);
  assert.equal(mon.getHealthSummary().status, 'healthy');
  assert.equal(mon.getHealthSummary().monitoring, false);

  mon.start();
  assert.equal(got['monitoring-started'].length, 1);
  assert.equal(mon.getHealthSummary().monitoring, true);
  await waitFor(() => got['zombie-detected'].length === 1, 5000, { message: 'zombie-detected' });
  const firstMissed = got.order.indexOf('missed-heartbeat');
  const firstZombie = got.order.indexOf('zombie-detected');
  assert.ok(firstMissed !== -1 && firstMissed < firstZombie, `missed-heartbeat before zombie-detected: ${got.order}`);
  const z = got['zombie-detected'][0];
  assert.equal(z.workerId, 'w1');
  assert.equal(z.pid, 4242);
  assert.ok(z.timeSinceHeartbeat > 100);
  assert.equal(got['missed-heartbeat'][0].workerId, 'w1');

  const alerts = mon.getAlerts();
  assert.equal(alerts.length, 2);
  assert.deepEqual(alerts.map((a) => a.type), ['zombie-detected', 'missed-heartbeat'], 'newest first');
  assert.deepEqual(alerts.map((a) => a.severity), ['critical', 'warning']);
  for (const a of alerts) {
    assert.equal(typeof a.id, 'string');
    assert.equal(a.workerId, 'w1');
    assert.equal(typeof a.timestamp, 'number');
  }
  assert.equal(mon.getAlerts(1).length, 1);
  assert.deepEqual(mon.getAlerts(50, 'critical').map((a) => a.type), ['zombie-detected']);
  assert.deepEqual(mon.getAlerts(50, 'warning').map((a) => a.type), ['missed-heartbeat']);

  const sum = mon.getHealthSummary();
  for (const k of ['timestamp', 'monitoring', 'capacity', 'alerts', 'workers', 'status']) assert.ok(k in sum, `summary.${k}`);
  assert.equal(sum.status, 'critical', 'a recent critical alert');
  assert.deepEqual(sum.workers, { total: 1, healthy: 0, unhealthy: 1 });
  assert.equal(sum.alerts.total, 2);
  assert.equal(sum.alerts.critical, 1);
  assert.deepEqual(mon.getUnhealthyWorkers().map((w) => w.workerId), ['w1']);
  assert.equal(mon.getWorkerHealth('w1').healthy, false);

  // Restart bookkeeping.
  assert.equal(mon.shouldRestartWorker('w1'), true);
  mon.recordRestartAttempt('w1');
  assert.equal(got['restart-attempted'].length, 1);
  assert.equal(mon.getWorkerHealth('w1').restartAttempts, 1);
  mon.resetRestartCounter('w1');
  assert.equal(mon.getWorkerHealth('w1').restartAttempts, 0);

  // A heartbeat brings it back.
  beat(mon, 'w1');
  assert.equal(got['worker-recovered'].length, 1);
  assert.equal(mon.getWorkerHealth('w1').healthy, true);
  assert.deepEqual(mon.getUnhealthyWorkers(), []);
  assert.equal(mon.shouldRestartWorker('w1'), false, 'healthy workers are not restarted');

  mon.stop();
  assert.equal(got['monitoring-stopped'].length, 1);
  const zombies = got['zombie-detected'].length;
  const missed = got['missed-heartbeat'].length;
  await new Promise((r) => setTimeout(r, 250));
  assert.equal(got['zombie-detected'].length, zombies, 'no checks after stop()');
  assert.equal(got['missed-heartbeat'].length, missed);

  assert.equal(mon.clearAlerts(0), 2);
  assert.equal(got['alerts-cleared'].length, 1);
  assert.deepEqual(mon.getAlerts(), []);
  assert.equal(mon.unregisterWorker('w1'), true);
  assert.equal(got['worker-unregistered'].length, 1);
  assert.equal(mon.getWorkerHealth('w1'), null);
});

test('HealthMonitor: status rules (healthy / degraded / critical) and capacity', (t) => {
  const mon = new HealthMonitor({ memoryThresholdMB: 100 });
  t.after(() => mon.stop());
  const got = recorder(mon, HEALTH_EVENTS);
  const ids = Array.from({ length: 10 }, (_, i) => `w${i}`);
  for (const id of ids) {
    mon.registerWorker(id, { pid: 1000, state: 'ready' });
    beat(mon, id);
  }
  let cap = mon.getPoolCapacity();
  for (const k of ['total', 'healthy', 'unhealthy', 'busy', 'idle', 'capacityPercent', 'utilizationPercent', 'degraded']) {
    assert.ok(k in cap, `capacity.${k}`);
  }
  assert.equal(cap.total, 10);
  assert.equal(cap.capacityPercent, 100);
  assert.equal(cap.degraded, false);
  assert.equal(mon.getHealthSummary().status, 'healthy');

  // Utilization over 90%: degraded.
  for (const id of ids) beat(mon, id, { state: 'busy' });
  cap = mon.getPoolCapacity();
  assert.equal(cap.busy, 10);
  assert.equal(cap.utilizationPercent, 100);
  assert.equal(mon.getHealthSummary().status, 'degraded');
  for (const id of ids) beat(mon, id, { state: 'ready' });
  assert.equal(mon.getHealthSummary().status, 'healthy');

  // 3 of 10 over the memory threshold: capacity 70% (< 80%): degraded.
  for (const id of ids.slice(0, 3)) beat(mon, id, { memoryUsage: { heapUsed: 200 * MB, heapTotal: 300 * MB, rss: 300 * MB, external: 0 } });
  mon.checkHealth();
  assert.equal(got['high-memory'].length, 3);
  assert.equal(got['high-memory'][0].threshold, 100);
  cap = mon.getPoolCapacity();
  assert.equal(cap.healthy, 7);
  assert.equal(cap.capacityPercent, 70);
  assert.equal(cap.degraded, true);
  assert.equal(mon.getHealthSummary().status, 'degraded');

  // 6 of 10: capacity 40% (< 50%): critical.
  for (const id of ids.slice(3, 6)) beat(mon, id, { memoryUsage: { heapUsed: 200 * MB, heapTotal: 300 * MB, rss: 300 * MB, external: 0 } });
  mon.checkHealth();
  assert.equal(mon.getPoolCapacity().capacityPercent, 40);
  assert.equal(mon.getHealthSummary().status, 'critical');
  assert.ok(mon.getAlerts(50, 'warning').every((a) => a.type === 'high-memory'));
  assert.equal(mon.getAlerts(50, 'critical').length, 0);
});

test('HealthMonitor: keeps the last 100 samples per worker', (t) => {
  const mon = new HealthMonitor();
  t.after(() => mon.stop());
  mon.registerWorker('w', { pid: 1 });
  for (let i = 0; i < 150; i++) beat(mon, 'w', { uptime: i });
  assert.equal(mon.getWorkerMetrics('w').length, 100);
  assert.equal(mon.getWorkerMetrics('w', 5).length, 5);
  assert.deepEqual(mon.getWorkerMetrics('nope'), []);
});
