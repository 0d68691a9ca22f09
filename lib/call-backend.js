'use strict';
// What `TaskQueue` and `HealthMonitor` send their calls to: one `call(verb, args)` for
// both kinds of instance, with the verbs of the core (crates/pool-core/src/verbs.rs;
// the table is in docs/ARCHITECTURE.md, "`call` verbs"), the JS method names.
const { callNative } = require('./errors');

function emitAll(emitter, events) {
  for (const e of events) {
    const { event, ...data } = e;
    emitter.emit(event, data);
  }
}

/**
 * A standalone queue or monitor's own core object. Each answer carries the events the
 * call caused, emitted here before the call returns, as the original classes did.
 */
class StandaloneBackend {
  #native;
  #emitter;

  /** `className`: the addon's `NativeTaskQueue` or `NativeHealthMonitor`. */
  constructor(className, options, emitter) {
    const Native = require('./native')[className];
    this.#native = callNative(() => new Native(JSON.stringify(options)));
    this.#emitter = emitter;
  }

  call(verb, args = []) {
    const out = JSON.parse(callNative(() => this.#native.call(verb, JSON.stringify(args))));
    emitAll(this.#emitter, out.e);
    return out.r;
  }
}

/**
 * A pool's queue or monitor, reached through the pool's `call`: the verb goes as
 * `queue.<verb>` or `health.<verb>`, the prefix only routing it. Its events come with
 * the pool's event records.
 */
class PoolBackend {
  #call;
  #prefix;

  /** `poolCall(method, args)` answers JSON text; `prefix` is `'queue.'` or `'health.'`. */
  constructor(poolCall, prefix) {
    this.#call = poolCall;
    this.#prefix = prefix;
  }

  call(verb, args = []) {
    return JSON.parse(this.#call(this.#prefix + verb, args));
  }
}

module.exports = { StandaloneBackend, PoolBackend };
