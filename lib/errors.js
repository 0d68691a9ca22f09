'use strict';
// The one error table of the JS side. Every error this package rejects or throws is
// an `Error` with a stable `code`; core errors arrive as JSON and are rebuilt here.

/**
 * The core's codes, in the order of the `codes!` table in crates/pool-core/src/error.rs
 * (a test compares the two through the addon's `errorCodes()`).
 */
const CORE_CODES = Object.freeze([
  'ERR_INVALID_CONFIG',
  'ERR_INVALID_TASK',
  'ERR_INVALID_ARGUMENT',
  'ERR_POOL_NOT_INITIALIZED',
  'ERR_POOL_ALREADY_INITIALIZED',
  'ERR_POOL_SHUTTING_DOWN',
  'ERR_POOL_SHUTDOWN',
  'ERR_TASK_FAILED',
  'ERR_NO_HANDLER',
  'ERR_WORKER_CRASHED',
  'ERR_TASK_TIMEOUT',
  'ABORT_ERR',
  'ERR_QUEUE_FULL',
  'ERR_QUEUE_CLEARED',
  'ERR_WORKER_START_FAILED',
  'ERR_PROTOCOL',
  'ERR_NO_CAPABLE_WORKER',
  'ERR_NOT_SUPPORTED',
  'ERR_INTERNAL',
  'ERR_QUEUE_UNAVAILABLE',
]);

/** Codes only the JS side raises (none left: the shared queue's serving side is the core's). */
const JS_CODES = Object.freeze([]);

/** `ErrorCodes`: each code keyed by itself. */
const CODES = Object.freeze(Object.fromEntries([...CORE_CODES, ...JS_CODES].map((c) => [c, c])));

const DETAIL_KEYS = ['workerId', 'exitCode', 'signal', 'stderr', 'handlerCode'];

function describe(value) {
  if (value === undefined) return 'undefined';
  if (typeof value === 'bigint') return `${value}n (a BigInt)`;
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function withCode(code, message, props) {
  const err = new Error(message);
  err.code = code;
  if (props) Object.assign(err, props);
  return err;
}

function invalidTask(field, allowed, got) {
  return withCode(CODES.ERR_INVALID_TASK, `Invalid task: "${field}" must be ${allowed}, got ${describe(got)}`);
}

function invalidArgument(name, allowed, got) {
  return withCode(CODES.ERR_INVALID_ARGUMENT, `Invalid argument "${name}": expected ${allowed}, got ${describe(got)}`);
}

function invalidConfig(option, allowed, got) {
  return withCode(CODES.ERR_INVALID_CONFIG, `Invalid option "${option}": expected ${allowed}, got ${describe(got)}`);
}

function abortError(message, cause) {
  const err = withCode(CODES.ABORT_ERR, message);
  err.name = 'AbortError';
  if (cause !== undefined) err.cause = cause;
  return err;
}

/** Rebuilds an error described by the core (`{ code, message, name?, stack?, ... }`). */
function fromCore(info) {
  const err = new Error(info.message);
  if (info.name) err.name = info.name;
  err.code = info.code || CODES.ERR_INTERNAL;
  for (const k of DETAIL_KEYS) if (info[k] !== undefined && info[k] !== null) err[k] = info[k];
  // The worker's stack says where the handler failed; that is the useful one.
  if (info.stack) err.stack = info.stack;
  return err;
}

/** Native calls throw an Error whose message is "\0" + the core error as JSON. */
function fromNative(e) {
  if (e && typeof e.message === 'string' && e.message.charCodeAt(0) === 0) {
    try {
      return fromCore(JSON.parse(e.message.slice(1)));
    } catch {
      /* fall through: not ours */
    }
  }
  return e;
}

function callNative(fn) {
  try {
    return fn();
  } catch (e) {
    throw fromNative(e);
  }
}

module.exports = { CODES, CORE_CODES, JS_CODES, withCode, invalidTask, invalidArgument, invalidConfig, abortError, fromCore, fromNative, callNative, describe };
