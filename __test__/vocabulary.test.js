'use strict';
// The tables kept on both sides of the binding agree: the error codes (error.rs's
// codes! list and lib/errors.js), and the `call` verbs (verbs.rs, the table in
// docs/ARCHITECTURE.md, and the methods of TaskQueue and HealthMonitor).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test, openPool, ROOT } = require('./helpers');
const native = require('../lib/native');
const { CODES, CORE_CODES, JS_CODES } = require('../lib/errors');
const { TaskQueue, HealthMonitor, ErrorCodes } = require('..');

test("lib/errors.js lists the core's error codes, in the core's order", () => {
  assert.deepEqual(native.errorCodes(), [...CORE_CODES]);
  assert.deepEqual(Object.keys(CODES).sort(), [...CORE_CODES, ...JS_CODES].sort());
  for (const [k, v] of Object.entries(CODES)) assert.equal(k, v);
  assert.equal(ErrorCodes, CODES);
  assert.ok(JS_CODES.every((c) => !CORE_CODES.includes(c)));
});

/** The verb table of docs/ARCHITECTURE.md as { queue, queueStandalone, health, healthStandalone }. */
function documentedVerbs() {
  const text = fs.readFileSync(path.join(ROOT, 'docs', 'ARCHITECTURE.md'), 'utf8');
  const section = text.slice(text.indexOf('### `call` verbs'), text.indexOf('### Error codes'));
  const out = { queue: [], queueStandalone: [], health: [], healthStandalone: [] };
  for (const line of section.split('\n')) {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    if (cells.length < 3 || !cells[0].startsWith('`')) continue;
    const key = cells[1] + (cells[2] === 'standalone' ? 'Standalone' : '');
    for (const m of cells[0].matchAll(/`(\w+)`/g)) out[key].push(m[1]);
  }
  return out;
}

test('the documented verb table is the core verb list', () => {
  assert.deepEqual(documentedVerbs(), JSON.parse(native.callVerbs()));
});

// Verbs the JS classes send for their own bookkeeping, not methods of theirs.
const INTERNAL = ['options', 'promoteDue', 'nextRetryInMs', 'takeDeadLetters'];

test("every verb that is not internal is a method of the class, and a pool's view answers the shared ones", async (t) => {
  const verbs = JSON.parse(native.callVerbs());
  const methods = (proto) => Object.getOwnPropertyNames(proto).filter((n) => n !== 'constructor');
  const queueVerbs = [...verbs.queue, ...verbs.queueStandalone].filter((v) => !INTERNAL.includes(v));
  const healthVerbs = [...verbs.health, ...verbs.healthStandalone].filter((v) => !INTERNAL.includes(v));
  for (const v of queueVerbs) assert.ok(methods(TaskQueue.prototype).includes(v), `TaskQueue#${v}`);
  for (const v of healthVerbs) assert.ok(methods(HealthMonitor.prototype).includes(v), `HealthMonitor#${v}`);

  const { pool } = await openPool(t, { poolSize: 1 }, { init: false });
  assert.ok(pool.taskQueue instanceof TaskQueue && pool.healthMonitor instanceof HealthMonitor);
  for (const v of verbs.queue.filter((x) => !INTERNAL.includes(x))) {
    assert.doesNotThrow(() => pool.taskQueue[v]('task-0-0'), `pool.taskQueue.${v}`);
  }
  for (const v of verbs.health.filter((x) => !INTERNAL.includes(x))) {
    assert.doesNotThrow(() => pool.healthMonitor[v]('worker-0'), `pool.healthMonitor.${v}`);
  }
  for (const v of ['enqueue', 'dequeue', 'completeTask', 'failTask']) {
    assert.throws(() => pool.taskQueue[v]({}), { code: 'ERR_NOT_SUPPORTED' }, `pool.taskQueue.${v}`);
  }
  for (const v of verbs.healthStandalone.filter((x) => x !== 'start' && x !== 'stop')) {
    assert.throws(() => pool.healthMonitor[v]('worker-0'), { code: 'ERR_NOT_SUPPORTED' }, `pool.healthMonitor.${v}`);
  }
});

test("a pool's views show the options the core mapped from the pool's", async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, heartbeatInterval: 1000, workerMemoryLimitMB: 256, maxTaskRetries: 5, taskTimeout: 1234 }, { init: false });
  assert.deepEqual(pool.healthMonitor.options, {
    heartbeatTimeoutMs: 3000,
    healthCheckInterval: 5000,
    zombieThresholdMs: 30000,
    maxRestartAttempts: 3,
    restartCooldownMs: 5000,
    memoryThresholdMB: 256,
    cpuThresholdPercent: 90,
  });
  assert.deepEqual(pool.taskQueue.options, { maxRetries: 5, retryBackoffMs: 1000, maxBackoffMs: 30000, taskTimeoutMs: 1234 });
  assert.deepEqual(new HealthMonitor({ memoryThresholdMB: 100 }).options.memoryThresholdMB, 100);
});
