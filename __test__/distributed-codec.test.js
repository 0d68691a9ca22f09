'use strict';
// The shared queue's formats, without Redis: Redis URLs and their redaction, queue
// names per capability set, the job a task becomes, errors there and back, the
// backoff schedule, dead-letter records.
// Run: node --test __test__/distributed-codec.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const { parseRedisUrl, redactUrl, resolveQueueOption } = require('../lib/distributed/config');
const codec = require('../lib/distributed/codec');
const { validateTask } = require('../lib/task-validate');

test('Redis URLs become ioredis options; the password never appears in messages', () => {
  assert.deepEqual(parseRedisUrl('redis://127.0.0.1:6380').options, { host: '127.0.0.1', port: 6380, db: 0 });
  assert.deepEqual(parseRedisUrl('redis://:p%40ss@redis/3').options, { host: 'redis', port: 6379, db: 3, password: 'p@ss' });
  assert.deepEqual(parseRedisUrl('redis://user:pw@h:1/0').options, { host: 'h', port: 1, db: 0, username: 'user', password: 'pw' });
  assert.deepEqual(parseRedisUrl('rediss://h').options.tls, { servername: 'h' });
  assert.equal(parseRedisUrl('redis://[::1]:7000').options.host, '::1');
  assert.equal(redactUrl('redis://:secret@h:1'), 'redis://:***@h:1');
  assert.equal(redactUrl('redis://user:secret@h:1/2'), 'redis://user:***@h:1/2');
  assert.equal(redactUrl('redis://h:1'), 'redis://h:1');
  for (const bad of ['', 'h:6379', 'http://h', 'redis://:secret@h/x', 'redis://:secret@/0', 42]) {
    assert.throws(() => parseRedisUrl(bad), (e) => e.code === 'ERR_INVALID_CONFIG' && e.message.includes('queue.url') && !e.message.includes('secret'), String(bad));
  }
});

test('the queue option resolves with its defaults', () => {
  const q = resolveQueueOption({ url: 'redis://h' });
  assert.equal(q.name, 'cortex');
  assert.equal(q.prefix, 'bull');
  assert.equal(q.serve, true);
  assert.equal(q.concurrency, undefined);
  assert.equal(q.lockDurationMs, 30000);
  assert.equal(q.stalledIntervalMs, 30000);
  assert.throws(() => resolveQueueOption({ url: 'redis://h', concurrency: 0 }), /queue\.concurrency/);
  assert.throws(() => resolveQueueOption('redis://h'), /"queue"/);
});

test('each capability set has its own queue name, and the name gives the set back', () => {
  assert.equal(codec.queueNameFor('cortex', []), 'cortex');
  const caps = codec.capabilitySet(['ssd', 'gpu', 'gpu', 'a b+c']);
  assert.deepEqual(caps, ['a b+c', 'gpu', 'ssd']);
  const name = codec.queueNameFor('cortex', caps);
  assert.equal(name, 'cortex@a%20b%2Bc+gpu+ssd');
  assert.deepEqual(codec.capsOfQueue('cortex', name), caps);
  assert.deepEqual(codec.capsOfQueue('cortex', 'cortex'), []);
  assert.equal(codec.capsOfQueue('cortex', 'other@gpu'), null);
});

test('a task becomes a job: priority + 1, attempts = maxRetries + 1, our backoff, data readable by the server', () => {
  const defaults = { maxRetries: 3, retryBackoffMs: 1000, maxBackoffMs: 30000 };
  const t = validateTask({ type: 'analysis', payload: { file: 'a.js' }, priority: 0, timeout: 500, metadata: { k: 1 }, requires: ['gpu'] });
  const job = codec.encodeJob(t, 'abc-1', defaults);
  assert.equal(job.name, 'analysis');
  assert.equal(job.opts.jobId, 'abc-1');
  assert.equal(job.opts.priority, 1);
  assert.equal(job.opts.attempts, 4);
  assert.deepEqual(job.opts.backoff, { type: codec.BACKOFF_TYPE, delay: 1000 });
  assert.deepEqual(job.data, { cortex: 1, type: 'analysis', payload: { file: 'a.js' }, maxBackoffMs: 30000, timeout: 500, metadata: { k: 1 }, requires: ['gpu'] });
  assert.equal(codec.encodeJob(validateTask({ type: 'x', maxRetries: 0 }), 'j', defaults).opts.attempts, 1);
  assert.equal(codec.encodeJob(validateTask({ type: 'x' }), 'j', defaults).opts.priority, 11);
  for (const priority of [-1, 1.5, codec.MAX_PRIORITY + 1]) {
    assert.throws(() => codec.encodeJob(validateTask({ type: 'x', priority }), 'j', defaults), (e) => e.code === 'ERR_INVALID_TASK' && /priority/.test(e.message));
  }
});

test('a failedReason "CODE: message" (as the core writes it) comes back as an error with its code', () => {
  const back = codec.errorFromReason('ERR_TASK_FAILED: disk on fire');
  assert.equal(back.code, 'ERR_TASK_FAILED');
  assert.equal(back.message, 'disk on fire');
  const abort = codec.errorFromReason('ABORT_ERR: stop');
  assert.equal(abort.name, 'AbortError');
  assert.equal(codec.errorFromReason('job stalled more than allowable limit').code, 'ERR_WORKER_CRASHED');
  const foreign = codec.errorFromReason('something else: entirely');
  assert.equal(foreign.code, 'ERR_TASK_FAILED');
  assert.equal(foreign.message, 'something else: entirely');
});

test('a failed job reads as a dead-letter record with every attempt', () => {
  const attempt = (message, at) => JSON.stringify({ code: 'ERR_TASK_FAILED', message, at, workerId: 'worker-1' });
  const rec = codec.deadLetterRecord({
    id: 'j1',
    name: 'analysis',
    queueName: 'cortex',
    data: { cortex: 1, type: 'analysis', payload: { a: 1 }, metadata: { owner: 'x' }, timeout: 100 },
    priority: 4,
    attemptsMade: 3,
    opts: { attempts: 3 },
    timestamp: 10,
    finishedOn: 20,
    failedReason: 'ERR_TASK_FAILED: third',
    stacktrace: [attempt('first', 11), attempt('second', 12), attempt('third', 13)],
  });
  assert.equal(rec.id, 'j1');
  assert.deepEqual(rec.task, { type: 'analysis', payload: { a: 1 }, timeout: 100, metadata: { owner: 'x' } });
  assert.equal(rec.priority, 3);
  assert.equal(rec.retries, 2);
  assert.equal(rec.maxRetries, 2);
  assert.equal(rec.metadata.owner, 'x');
  assert.deepEqual(rec.metadata.attempts.map((a) => a.error), ['first', 'second', 'third']);
  assert.equal(rec.metadata.attempts[0].timestamp, 11);
  assert.deepEqual(rec.finalError, { message: 'third', code: 'ERR_TASK_FAILED', stack: null });
});
