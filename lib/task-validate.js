'use strict';
// One validation of a task and its submit options, shared by the local pool and the
// shared-queue producer, so both refuse the same input with the same codes and words.

const { CODES, invalidTask, invalidArgument, abortError, withCode } = require('./errors');

/**
 * Checks `task` and `options` and returns the task in the form the pool sends on:
 * `{ type, payloadJson, priority, timeout?, maxRetries?, requires?, metadataJson?, signal? }`
 * (JSON fields as text: each value is serialized once, here). Throws a coded Error
 * (`ERR_INVALID_TASK`, `ERR_INVALID_ARGUMENT`, or `ABORT_ERR` for a signal that is
 * already aborted).
 */
function validateTask(task, options) {
  if (task === null || typeof task !== 'object' || Array.isArray(task)) {
    throw invalidTask('task', 'an object like { type, payload }', task);
  }
  if (typeof task.type !== 'string' || task.type.length === 0) {
    throw invalidTask('type', 'a non-empty string', task.type);
  }
  let payloadJson;
  try {
    payloadJson = task.payload === undefined ? 'null' : JSON.stringify(task.payload);
  } catch (e) {
    throw withCode(CODES.ERR_INVALID_TASK, `Invalid task: "payload" must be a JSON-serializable value (${e.message})`);
  }
  if (payloadJson === undefined) throw invalidTask('payload', 'a JSON-serializable value', task.payload);
  const priority = task.priority ?? 10;
  if (typeof priority !== 'number' || !Number.isFinite(priority)) {
    throw invalidTask('priority', 'a finite number (lower runs first; 0 is the highest)', task.priority);
  }
  const timeout = task.timeout ?? undefined;
  if (timeout !== undefined && !(typeof timeout === 'number' && Number.isFinite(timeout) && timeout > 0)) {
    throw invalidTask('timeout', 'a positive number of milliseconds', task.timeout);
  }
  const maxRetries = task.maxRetries ?? undefined;
  if (maxRetries !== undefined && !(Number.isInteger(maxRetries) && maxRetries >= 0)) {
    throw invalidTask('maxRetries', 'an integer >= 0', task.maxRetries);
  }
  const requires = task.requires ?? undefined;
  if (requires !== undefined && !(Array.isArray(requires) && requires.every((r) => typeof r === 'string'))) {
    throw invalidTask('requires', 'an array of capability strings', task.requires);
  }
  let metadataJson;
  if (task.metadata !== undefined) {
    try {
      metadataJson = JSON.stringify(task.metadata);
    } catch (e) {
      throw withCode(CODES.ERR_INVALID_TASK, `Invalid task: "metadata" must be JSON-serializable (${e.message})`);
    }
  }
  const signal = validateSignal(options);
  return { type: task.type, payloadJson, priority, timeout, maxRetries, requires, metadataJson, signal };
}

/** `options.signal`, checked: undefined, or an AbortSignal that has not fired yet. */
function validateSignal(options) {
  const signal = options && options.signal;
  if (signal === undefined || signal === null) return undefined;
  if (typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function') {
    throw invalidArgument('options.signal', 'an AbortSignal', signal);
  }
  if (signal.aborted) throw abortError('The task was aborted before it was submitted', signal.reason);
  return signal;
}

/**
 * `submit(validated)` for a valid task; a rejected promise (never a throw) for bad
 * input, as every submitTask() answers.
 */
function submitValidated(task, options, submit) {
  let t;
  try {
    t = validateTask(task, options);
  } catch (e) {
    return Promise.reject(e);
  }
  return submit(t);
}

module.exports = { validateTask, submitValidated };
