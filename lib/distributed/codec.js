'use strict';
// How a task and its outcome are written into BullMQ, and read back. The serving side
// (reading a job, writing its outcome) is the core's (crates/pool-core/src/shared.rs),
// which follows this format:
//
//   queue name   `<name>` for tasks without `requires`; `<name>@<cap>+<cap>` (sorted,
//                URI-encoded) for a capability set: one BullMQ queue per set.
//   job name     the task's type (what bull-board and other tools show).
//   job data     { cortex: 1, type, payload, timeout?, metadata?, requires?, maxBackoffMs }
//   job options  priority = our priority + 1 (BullMQ's 0 means "no priority" and would
//                run before every prioritized job), attempts = maxRetries + 1,
//                backoff { type: 'cortex', delay: retryBackoffMs } (capped by maxBackoffMs
//                in the serving pool's backoff strategy).
//   failure      failedReason `<CODE>: <message>`; each attempt's details as a JSON
//                text in the job's stacktrace (BullMQ keeps one entry per attempt).
//   result       the handler's return value, as BullMQ's returnvalue.

const { CODES, withCode, abortError, invalidTask } = require('../errors');

const JOB_FORMAT = 1;
// BullMQ's priority range is 0 … 2,097,151 and 0 is taken ("no priority").
const MAX_PRIORITY = 2097150;
const BACKOFF_TYPE = 'cortex';
// Finished jobs stay readable for producers that were away (reconnecting) for a while.
const KEEP_COMPLETED = Object.freeze({ age: 3600, count: 100000 });
// BullMQ's own reason for a job whose worker died too often while holding it.
const STALLED_REASON = /stalled more than allowable limit/;

/** The capability set of a task, canonical: sorted, unique; [] for none. */
function capabilitySet(requires) {
  return requires && requires.length ? [...new Set(requires)].sort() : [];
}

/** The BullMQ queue that carries tasks needing exactly this (canonical) capability set. */
function queueNameFor(name, caps) {
  return caps.length === 0 ? name : `${name}@${caps.map(encodeURIComponent).join('+')}`;
}

/** The capability set a queue name carries, or null when the name is not one of `name`'s. */
function capsOfQueue(name, queueName) {
  if (queueName === name) return [];
  if (!queueName.startsWith(`${name}@`)) return null;
  return queueName.slice(name.length + 1).split('+').map(decodeURIComponent);
}

/**
 * A validated task (lib/task-validate.js) as a BullMQ job: `{ name, data, opts }`.
 * `defaults` are the producer's { maxRetries, retryBackoffMs, maxBackoffMs }.
 */
function encodeJob(t, jobId, defaults) {
  if (!Number.isInteger(t.priority) || t.priority < 0 || t.priority > MAX_PRIORITY) {
    throw invalidTask('priority', `an integer from 0 to ${MAX_PRIORITY} on a shared queue (lower runs first)`, t.priority);
  }
  const data = { cortex: JOB_FORMAT, type: t.type, payload: JSON.parse(t.payloadJson), maxBackoffMs: defaults.maxBackoffMs };
  if (t.timeout !== undefined) data.timeout = t.timeout;
  if (t.metadataJson !== undefined) data.metadata = JSON.parse(t.metadataJson);
  const caps = capabilitySet(t.requires);
  if (caps.length) data.requires = caps;
  const maxRetries = t.maxRetries ?? defaults.maxRetries;
  return {
    name: t.type,
    data,
    opts: {
      jobId,
      priority: t.priority + 1,
      attempts: maxRetries + 1,
      backoff: { type: BACKOFF_TYPE, delay: defaults.retryBackoffMs },
      removeOnComplete: KEEP_COMPLETED,
      removeOnFail: false,
    },
  };
}

/** Rebuilds the producer-side Error from a job's failedReason (and the last attempt's details). */
function errorFromReason(reason, lastAttempt) {
  const text = String(reason ?? '');
  const m = /^([A-Z][A-Z0-9_]*): ([\s\S]*)$/.exec(text);
  let err;
  if (m && Object.prototype.hasOwnProperty.call(CODES, m[1])) {
    err = m[1] === CODES.ABORT_ERR ? abortError(m[2]) : withCode(m[1], m[2]);
  } else if (STALLED_REASON.test(text)) {
    err = withCode(CODES.ERR_WORKER_CRASHED, `The task's machine stopped while running it too many times (${text})`);
  } else {
    err = withCode(CODES.ERR_TASK_FAILED, text || 'The job failed without a reason');
  }
  if (lastAttempt) {
    for (const k of ['workerId', 'exitCode', 'signal', 'handlerCode']) if (lastAttempt[k] !== undefined) err[k] = lastAttempt[k];
  }
  return err;
}

/** A job's stacktrace entries as attempt records ({ timestamp, error, code, ... }). */
function attemptsOf(job) {
  return (job.stacktrace || []).map((entry) => {
    try {
      const d = JSON.parse(entry);
      if (d && typeof d === 'object' && d.code) {
        const { at, message, ...rest } = d;
        return { timestamp: at, error: message, ...rest };
      }
    } catch {
      /* an entry written by someone else */
    }
    return { timestamp: null, error: String(entry), code: CODES.ERR_TASK_FAILED };
  });
}

/** A failed job as a dead-letter record, in the shape of the local TaskQueue's records. */
function deadLetterRecord(job) {
  const d = job.data && typeof job.data === 'object' ? job.data : {};
  const attempts = attemptsOf(job);
  const last = errorFromReason(job.failedReason, attempts[attempts.length - 1]);
  const task = { type: d.type ?? job.name, payload: d.payload };
  if (d.requires) task.requires = d.requires;
  if (d.timeout !== undefined) task.timeout = d.timeout;
  if (d.metadata !== undefined) task.metadata = d.metadata;
  return {
    id: job.id,
    task,
    priority: Math.max(0, (job.priority || 1) - 1),
    retries: Math.max(0, (job.attemptsMade || 0) - 1),
    maxRetries: Math.max(0, (job.opts.attempts || 1) - 1),
    enqueuedAt: job.timestamp,
    status: 'failed',
    timeoutMs: d.timeout ?? null,
    metadata: { ...(d.metadata && typeof d.metadata === 'object' ? d.metadata : {}), attempts },
    failedAt: job.finishedOn,
    finalError: { message: last.message, code: last.code, stack: null },
    queue: job.queueName,
  };
}

/** The shared queue's counts in the Prometheus text format (a pool's metrics and the CLI's). */
function sharedPrometheus(name, c) {
  const q = JSON.stringify(name);
  const lines = [
    '# HELP worker_pool_shared_jobs Jobs in the shared queue by state (all machines).',
    '# TYPE worker_pool_shared_jobs gauge',
  ];
  for (const k of ['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed']) lines.push(`worker_pool_shared_jobs{queue=${q},state="${k}"} ${c[k]}`);
  lines.push('# HELP worker_pool_shared_serving_pools Pools serving the shared queue.', '# TYPE worker_pool_shared_serving_pools gauge');
  lines.push(`worker_pool_shared_serving_pools{queue=${q}} ${c.servingPools}`);
  if (c.connected !== undefined) {
    lines.push('# HELP worker_pool_shared_connected 1 while this pool reaches the shared queue, 0 while its commands fail.', '# TYPE worker_pool_shared_connected gauge');
    lines.push(`worker_pool_shared_connected{queue=${q}} ${c.connected ? 1 : 0}`);
  }
  return `${lines.join('\n')}\n`;
}

module.exports = {
  sharedPrometheus,
  BACKOFF_TYPE,
  MAX_PRIORITY,
  capabilitySet,
  queueNameFor,
  capsOfQueue,
  encodeJob,
  errorFromReason,
  attemptsOf,
  deadLetterRecord,
};
