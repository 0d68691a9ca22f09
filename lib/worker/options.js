'use strict';

// Options of a WorkerProcess: defaults, their checks, and WORKER_CONFIG (the settings
// the pool hands each worker as JSON).

const v8 = require('v8');
const { describe } = require('./util');

const DEFAULTS = Object.freeze({
  heartbeatInterval: 5000,
  memoryThresholdMB: 512,
  idleTimeoutMs: 300000,
  capabilities: Object.freeze([]),
  purgeModuleCache: false,
  forceGC: false,
});

const TRANSPORTS = new Set(['ipc', 'fifo']);

const MAX_FRAME_LIMIT = 0xffffffff; // what a 4-byte length prefix can announce

function optionNumber(options, name, { min, integer = false }) {
  const value = options[name];
  if (value === undefined || value === null) return DEFAULTS[name];
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min ||
      (integer && !Number.isInteger(value))) {
    throw new RangeError(
      `WorkerProcess option "${name}" must be a ${integer ? 'whole ' : ''}number >= ${min}, got ${describe(value)}`);
  }
  return value;
}

function optionBoolean(options, name) {
  const value = options[name];
  if (value === undefined || value === null) return DEFAULTS[name];
  if (typeof value !== 'boolean') {
    throw new TypeError(`WorkerProcess option "${name}" must be a boolean, got ${describe(value)}`);
  }
  return value;
}

function parseWorkerConfig(text) {
  if (text === undefined || text === '') return {};
  let config;
  try {
    config = JSON.parse(text);
  } catch (err) {
    throw new Error(`WORKER_CONFIG is not valid JSON: ${err.message}`);
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new Error('WORKER_CONFIG must be a JSON object');
  }
  return config;
}

/** Options for the WorkerProcess constructor from a WORKER_CONFIG object (other keys ignored). */
function optionsFromConfig(config) {
  const options = {};
  for (const key of Object.keys(DEFAULTS)) {
    if (config[key] !== undefined) options[key] = config[key];
  }
  return options;
}

/**
 * The garbage collector, for the forceGC option. Workers are not started with
 * --expose-gc by default (it costs startup time: no startup snapshot), so it is
 * exposed here on demand.
 */
function obtainGc() {
  if (typeof global.gc === 'function') return global.gc;
  try {
    v8.setFlagsFromString('--expose-gc');
    return require('vm').runInNewContext('gc');
  } catch {
    return null;
  }
}

module.exports = {
  TRANSPORTS, MAX_FRAME_LIMIT, optionNumber, optionBoolean, parseWorkerConfig, optionsFromConfig, obtainGc,
};
