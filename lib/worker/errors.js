'use strict';

// Errors as a worker sends them: the wire form { message, stack, code, name }, the
// coded errors of the runtime itself, and the guard for results JSON cannot carry.

/** Turns whatever a handler threw into the wire form { message, stack, code, name, backoffDelay? }. */
function serializeError(err) {
  try {
    if (err !== null && typeof err === 'object' && typeof err.message === 'string') {
      const code = err.code;
      const wire = {
        message: err.message,
        stack: typeof err.stack === 'string' ? err.stack : undefined,
        code: typeof code === 'string' || typeof code === 'number' ? code : 'ERR_TASK_FAILED',
        name: typeof err.name === 'string' ? err.name : 'Error',
      };
      // A custom backoff strategy's delay for this failure (lib/worker/processor.js).
      if (typeof err.backoffDelay === 'number' && Number.isFinite(err.backoffDelay)) wire.backoffDelay = err.backoffDelay;
      return wire;
    }
  } catch {
    // A hostile getter; fall through to String().
  }
  let message;
  try {
    message = String(err);
  } catch {
    message = Object.prototype.toString.call(err);
  }
  return { message, stack: undefined, code: 'ERR_TASK_FAILED', name: 'Error' };
}

function makeError(message, code, name) {
  const err = new Error(message);
  err.code = code;
  if (name) err.name = name;
  return err;
}

function abortError(taskId, reason) {
  return makeError(`Task ${taskId} was cancelled (${reason})`, 'ABORT_ERR', 'AbortError');
}

function isTaskId(id) {
  return (typeof id === 'string' && id.length > 0) || (typeof id === 'number' && Number.isFinite(id));
}

/** Replaces entries of a task-results message whose result cannot be JSON-encoded. */
function sanitizeResults(results) {
  for (let i = 0; i < results.length; i++) {
    const entry = results[i];
    try {
      JSON.stringify(entry);
    } catch (err) {
      results[i] = {
        taskId: entry.taskId,
        ok: false,
        error: serializeError(makeError(
          `Task result could not be sent: ${err && err.message}`, 'ERR_RESULT_NOT_SERIALIZABLE')),
        duration: entry.duration,
      };
    }
  }
}

module.exports = { serializeError, makeError, abortError, isTaskId, sanitizeResults };
