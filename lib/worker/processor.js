'use strict';

// The worker of a pool with the `processor` option: a file written for BullMQ's
// sandboxed processors (CommonJS or ES module, exporting `async (job, token, signal)`)
// run for every task, whatever its type. The file is named by CORTEX_WORKER_PROCESSOR
// (the pool sets it). It is loaded before the worker says it is ready: a file that
// does not load is a worker that exits at start, and the pool's restart policy (with
// its crash-loop stop) decides what follows, so a broken file never takes a job.
//
// The job object has what BullMQ gives a sandboxed processor: id, name, data, opts,
// attemptsMade, timestamp, processedOn, ... and updateProgress, log, updateData,
// getChildrenValues, which reach Redis through the pool's core (the worker opens no
// connection), plus `signal`, aborted when the pool cancels the task (timeout, abort).

const path = require('path');
const { pathToFileURL } = require('url');
const WorkerProcess = require('../../worker-process');

const ENV = 'CORTEX_WORKER_PROCESSOR';

/** A job as a BullMQ processor sees it. */
class ProcessorJob {
  constructor(worker, ctx, data, signal) {
    const info = ctx.job;
    const now = Date.now();
    this.id = info ? String(info.id) : ctx.taskId;
    this.name = info ? info.name : ctx.type;
    this.data = data;
    this.opts = info && info.opts && typeof info.opts === 'object' ? info.opts : {};
    this.queueName = info ? info.queueName : undefined;
    this.timestamp = info && Number.isFinite(info.timestamp) ? info.timestamp : now;
    this.delay = info && Number.isFinite(info.delay) ? info.delay : 0;
    this.priority = info && Number.isFinite(info.priority) ? info.priority : 0;
    this.attemptsMade = info && Number.isFinite(info.attemptsMade) ? info.attemptsMade : 0;
    this.attemptsStarted = info && Number.isFinite(info.attemptsStarted) ? info.attemptsStarted : 1;
    this.processedOn = info && Number.isFinite(info.processedOn) ? info.processedOn : now;
    this.stacktrace = info && Array.isArray(info.stacktrace) ? info.stacktrace : [];
    this.parentKey = info && typeof info.parentKey === 'string' ? info.parentKey : undefined;
    this.repeatJobKey = info && typeof info.repeatJobKey === 'string' ? info.repeatJobKey : undefined;
    this.progress = 0;
    this.signal = signal;
    Object.defineProperty(this, '_call', {
      // A task of the shared queue asks the core; a task submitted locally has no
      // job in Redis, so its progress, logs and data stay on this object.
      value: info ? (op, value) => worker.jobCall(ctx.taskId, op, value) : () => Promise.resolve(null),
    });
  }

  /** BullMQ's job.updateProgress: a number or an object, published as a `progress` event. */
  async updateProgress(progress) {
    this.progress = progress;
    await this._call('progress', progress);
  }

  /** BullMQ's job.log: a line in the job's log (Job.getLogs); resolves with the lines it holds. */
  async log(line) {
    const count = await this._call('log', String(line));
    return typeof count === 'number' ? count : 0;
  }

  /** BullMQ's job.updateData: replaces the job's data in Redis. */
  async updateData(data) {
    this.data = data;
    await this._call('update-data', data === undefined ? null : data);
  }

  /** BullMQ's job.getChildrenValues: child job key → its return value (a flow's parent). */
  async getChildrenValues() {
    const values = await this._call('children-values', null);
    return values !== null && typeof values === 'object' ? values : {};
  }

  toJSON() {
    const { signal, ...fields } = this;
    return fields;
  }
}

/**
 * Loads the processor file: require() for CommonJS, import() for ES modules. Returns
 * `{ processor, backoffStrategy }`: the exported function, and the file's optional
 * `backoffStrategy` export (BullMQ's Worker setting of that name, for job options
 * `backoff: { type: '<any other name>' }`).
 */
async function loadProcessor(file) {
  let mod;
  if (file.endsWith('.mjs')) {
    mod = await import(pathToFileURL(file).href);
  } else {
    try {
      mod = require(file);
    } catch (err) {
      // A .js file in a package of "type": "module".
      if (err && err.code === 'ERR_REQUIRE_ESM') mod = await import(pathToFileURL(file).href);
      else throw err;
    }
  }
  let fn = mod;
  if (fn && typeof fn === 'object' && 'default' in fn) fn = fn.default;
  // An ES module's default export seen through CommonJS interop.
  if (fn && typeof fn === 'object' && typeof fn.default === 'function') fn = fn.default;
  if (typeof fn !== 'function') {
    throw new TypeError(`No function is exported by the processor file ${file} (export an async (job) => result, as module.exports or the default export)`);
  }
  const strategy = [mod && mod.backoffStrategy, fn.backoffStrategy].find((s) => s !== undefined);
  if (strategy !== undefined && typeof strategy !== 'function') {
    throw new TypeError(`The backoffStrategy exported by the processor file ${file} must be a function (attemptsMade, type, err, job) => delay in ms (-1: no retry)`);
  }
  return { processor: fn, backoffStrategy: strategy };
}

const BUILT_IN_BACKOFFS = new Set(['fixed', 'exponential']);

/**
 * For a failed job whose backoff type is not BullMQ's own: asks the file's
 * backoffStrategy for the delay before the next attempt (as BullMQ's Worker asks its
 * settings.backoffStrategy), and hands it to the pool with the error.
 */
async function attachBackoff(err, job, strategy) {
  const b = job.opts.backoff;
  const type = typeof b === 'string' ? b : b && typeof b === 'object' ? b.type : undefined;
  if (strategy === undefined || typeof type !== 'string' || BUILT_IN_BACKOFFS.has(type)) return;
  if (err === null || typeof err !== 'object') return;
  try {
    const delay = await strategy(job.attemptsMade + 1, type, err, job);
    if (typeof delay === 'number' && Number.isFinite(delay)) err.backoffDelay = delay;
  } catch (e) {
    process.stderr.write(`processor worker: backoffStrategy threw for job ${job.id}: ${e && e.stack ? e.stack : e}\n`);
  }
}

async function main() {
  const file = process.env[ENV];
  if (!file) throw new Error(`${ENV} is not set: this worker runs a processor file named by the pool's processor option`);
  let loaded;
  try {
    loaded = await loadProcessor(path.resolve(file));
  } catch (err) {
    const what = err && err.stack ? err.stack : String(err);
    process.stderr.write(`processor worker: the processor file ${file} failed to load: ${what}\n`);
    process.exit(1);
  }
  const { optionsFromConfig, parseWorkerConfig } = WorkerProcess;
  const worker = new WorkerProcess(process.env.WORKER_ID, optionsFromConfig(parseWorkerConfig(process.env.WORKER_CONFIG)));
  const { processor, backoffStrategy } = loaded;
  worker.registerDefaultHandler(async (payload, signal, ctx) => {
    const job = new ProcessorJob(worker, ctx, payload, signal);
    try {
      return await processor(job, undefined, signal);
    } catch (err) {
      await attachBackoff(err, job, backoffStrategy);
      throw err;
    }
  });
  worker.start();
}

module.exports = { ProcessorJob, loadProcessor };

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`processor worker: ${err && err.message ? err.message : err}\n`);
    process.exit(1);
  });
}
