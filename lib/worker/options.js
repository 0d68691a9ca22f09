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

/** The `capabilities` option: a copy of an array of strings, [] when absent. */
function optionCapabilities(options) {
  const caps = options.capabilities;
  if (caps === undefined || caps === null) return [];
  if (Array.isArray(caps) && caps.every((c) => typeof c === 'string')) return caps.slice();
  throw new TypeError('WorkerProcess option "capabilities" must be an array of strings');
}

/**
 * The transport options: { transport, fifoIn, fifoOut, fifoMaxFrameBytes }, each null
 * when absent (start() then reads WORKER_TRANSPORT and the WORKER_FIFO_* variables;
 * an explicit option wins).
 */
function optionsTransport(options) {
  const transport = options.transport;
  if (transport !== undefined && transport !== null && !TRANSPORTS.has(transport)) {
    throw new TypeError(`WorkerProcess option "transport" must be "ipc" or "fifo", got ${describe(transport)}`);
  }
  for (const name of ['fifoIn', 'fifoOut']) {
    const value = options[name];
    if (value !== undefined && value !== null && (typeof value !== 'string' || value.length === 0)) {
      throw new TypeError(`WorkerProcess option "${name}" must be a non-empty string (a FIFO path)`);
    }
  }
  const maxFrame = options.fifoMaxFrameBytes;
  if (maxFrame !== undefined && maxFrame !== null &&
      (!Number.isInteger(maxFrame) || maxFrame < 1 || maxFrame > MAX_FRAME_LIMIT)) {
    throw new RangeError(
      `WorkerProcess option "fifoMaxFrameBytes" must be a whole number in [1, ${MAX_FRAME_LIMIT}], got ${describe(maxFrame)}`);
  }
  return {
    transport: transport === undefined || transport === null ? null : transport,
    fifoIn: options.fifoIn || null,
    fifoOut: options.fifoOut || null,
    fifoMaxFrameBytes: maxFrame === undefined || maxFrame === null ? null : maxFrame,
  };
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
  TRANSPORTS,
  MAX_FRAME_LIMIT,
  optionNumber,
  optionBoolean,
  optionCapabilities,
  optionsTransport,
  parseWorkerConfig,
  optionsFromConfig,
  obtainGc,
};
