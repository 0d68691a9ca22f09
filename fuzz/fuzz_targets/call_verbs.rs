//! The `call` verbs (verbs.rs) with their arguments, as the JS facades send them:
//! a pool's `taskQueue` / `healthMonitor` views (report.rs) and the standalone
//! `TaskQueue` / `HealthMonitor` (standalone.rs). Input: a JSON array of calls
//! `[target, verb, args]` (target 0 = the pool's view, 1 = the standalone queue,
//! 2 = the standalone monitor), applied in order to one of each.
//!
//! Properties:
//! - every answer is JSON text; a standalone answer is `{"r": result, "e": [events]}`;
//! - a refusal is ERR_NOT_SUPPORTED naming the verb, or ERR_INVALID_TASK for an
//!   `enqueue` whose task is not an object; nothing else is refused;
//! - sizes stay within what was put in: the queue's depth and a `peek`-ed task never
//!   come from nowhere (depth <= tasks enqueued), a dead-letter queue never holds more
//!   than its capacity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_core::pool::fuzzing::pool_call;
use pool_core::standalone::{StandaloneHealth, StandaloneQueue};
use pool_core::{Code, CoreError};
use serde_json::{json, Value};

const DLQ_CAPACITY: u64 = 5;

fn refused_well(verb: &str, args: &Value, e: &CoreError) {
    match e.code {
        Code::NotSupported => assert!(e.message.contains(verb), "the verb is named: {}", e.message),
        Code::InvalidTask => assert!(verb == "enqueue" && !args.get(0).is_some_and(Value::is_object), "{}", e.message),
        other => panic!("{verb}: refused with {other:?}: {}", e.message),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Array(calls)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let mut q = StandaloneQueue::new(&json!({ "maxDeadLetters": DLQ_CAPACITY, "retryBackoffMs": 0 })).unwrap();
    let mut h = StandaloneHealth::new(&Value::Null).unwrap();
    let mut enqueued = 0u64;
    for c in calls.iter().take(64) {
        let target = c.get(0).and_then(Value::as_u64).unwrap_or(0) % 3;
        let Some(verb) = c.get(1).and_then(Value::as_str) else { continue };
        let args = c.get(2).cloned().unwrap_or(Value::Null);
        let answer = match target {
            0 => pool_call(verb, &args),
            1 => q.call(verb, &args),
            _ => h.call(verb, &args),
        };
        let text = match answer {
            Ok(t) => t,
            Err(e) => {
                refused_well(verb, &args, &e);
                continue;
            }
        };
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{verb}: not JSON ({e}): {text}"));
        if target == 0 {
            continue;
        }
        assert!(v["e"].is_array(), "{verb}: {text}");
        let r = &v["r"];
        if target == 1 {
            if verb == "enqueue" {
                enqueued += 1;
            }
            if verb == "getQueueDepth" {
                assert!(r.as_u64().is_some_and(|d| d <= enqueued), "depth {r} after {enqueued} enqueued");
            }
            if verb == "getDeadLetterQueue" {
                let n = r.as_array().map_or(0, Vec::len) as u64;
                assert!(n <= DLQ_CAPACITY, "{n} dead letters, capacity {DLQ_CAPACITY}");
            }
        }
    }
});
