//! The one vocabulary of `call` verbs of `TaskQueue` and `HealthMonitor`: the JS method
//! names. The standalone classes answer them as they are (`standalone.rs`); a pool's
//! views send them as `queue.<verb>` / `health.<verb>` (`State::call` in
//! `pool/report.rs`), the prefix only routing them. The reads both answer the same way
//! are answered here, once. The verb table is in docs/ARCHITECTURE.md ("`call` verbs").

use crate::health::HealthMonitor;
use crate::queue::{TaskData, TaskQueue};
use serde_json::Value;

/// Queue verbs a pool's `taskQueue` view and the standalone queue both answer.
pub const QUEUE_VERBS: &[&str] = &[
    "options",
    "peek",
    "getTaskById",
    "getQueueDepth",
    "getDeadLetterQueue",
    "clearDeadLetterQueue",
    "getStats",
    "clear",
];

/// Queue verbs of the standalone queue only: a pool drives its own queue.
pub const QUEUE_STANDALONE_VERBS: &[&str] = &[
    "enqueue",
    "dequeue",
    "completeTask",
    "failTask",
    "promoteDue",
    "nextRetryInMs",
    "takeDeadLetters",
    "checkTimeouts",
];

/// Health verbs a pool's `healthMonitor` view and the standalone monitor both answer.
pub const HEALTH_VERBS: &[&str] = &[
    "options",
    "getWorkerHealth",
    "getAllWorkersHealth",
    "getUnhealthyWorkers",
    "getPoolCapacity",
    "getWorkerMetrics",
    "getAlerts",
    "clearAlerts",
    "getHealthSummary",
];

/// Health verbs of the standalone monitor only: a pool's core registers its workers,
/// records their heartbeats and runs the checks itself.
pub const HEALTH_STANDALONE_VERBS: &[&str] = &[
    "start",
    "stop",
    "checkHealth",
    "registerWorker",
    "unregisterWorker",
    "recordHeartbeat",
    "shouldRestartWorker",
    "recordRestartAttempt",
    "resetRestartCounter",
];

/// Defaults of `getWorkerMetrics(id, limit)`, `getAlerts(limit)` and
/// `clearAlerts(olderThanMs)`, as in the original.
const DEFAULT_SAMPLES_LIMIT: f64 = 100.0;
const DEFAULT_ALERTS_LIMIT: f64 = 50.0;
const DEFAULT_ALERT_MAX_AGE_MS: f64 = 3_600_000.0;

/// Argument `i` of a call (JSON `null` when absent).
pub fn arg(args: &Value, i: usize) -> &Value {
    args.get(i).unwrap_or(&Value::Null)
}

fn count(args: &Value, i: usize, default: f64) -> f64 {
    arg(args, i).as_f64().unwrap_or(default).max(0.0)
}

/// The queue reads answered alike by both queues; `None` for the other verbs.
pub fn queue_read<T: TaskData>(q: &mut TaskQueue<T>, verb: &str) -> Option<String> {
    Some(match verb {
        "options" => q.opts.to_json(),
        "peek" => q.peek().and_then(|s| q.record_json(s)).unwrap_or_else(|| "null".into()),
        "getQueueDepth" => q.depth().to_string(),
        "getDeadLetterQueue" => q.dlq_json(),
        "clearDeadLetterQueue" => q.clear_dlq().to_string(),
        "getStats" => q.stats_json(),
        _ => return None,
    })
}

/// The health reads answered alike by both monitors; `None` for the other verbs.
/// `failed_slots` counts in the summary's capacity (0 for a standalone monitor).
pub fn health_read(h: &mut HealthMonitor, verb: &str, args: &Value, failed_slots: u64) -> Option<String> {
    let id = arg(args, 0).as_str().unwrap_or("");
    let v = match verb {
        "options" => return Some(h.opts.to_json()),
        "getWorkerHealth" => h.worker_json(id),
        "getAllWorkersHealth" => h.all_json(false),
        "getUnhealthyWorkers" => h.all_json(true),
        "getPoolCapacity" => h.capacity_json(),
        "getWorkerMetrics" => h.metrics_json(id, count(args, 1, DEFAULT_SAMPLES_LIMIT) as usize),
        "getAlerts" => h.alerts_json(count(args, 0, DEFAULT_ALERTS_LIMIT) as usize, arg(args, 1).as_str()),
        "clearAlerts" => Value::from(h.clear_alerts(count(args, 0, DEFAULT_ALERT_MAX_AGE_MS) as u64)),
        "getHealthSummary" => h.summary_json(failed_slots),
        _ => return None,
    };
    Some(v.to_string())
}
