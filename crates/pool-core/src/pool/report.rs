//! What the pool tells about itself when asked: a worker's status, the metrics JSON,
//! the Prometheus text, and the small `call` verbs of `pool.taskQueue` and
//! `pool.healthMonitor`.

use super::state::{Phase, State, Worker};
use super::PoolTask;
use crate::error::{Code, CoreError, CoreResult};
use crate::queue::TaskQueue;
use crate::util::BYTES_PER_MB;
use crate::verbs;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

impl State {
    pub(super) fn worker_status(&self, w: &Worker) -> Value {
        let now = Instant::now();
        let restarts = self.roster.slots.get(&w.slot).map(|s| s.restarts).unwrap_or(0);
        let health = self.health.worker_json(&w.id);
        json!({
            "id": w.id,
            "pid": w.pid,
            "state": w.state_str(),
            "healthy": health.get("healthy").cloned().unwrap_or(Value::Bool(true)),
            "tasksExecuted": w.tasks_executed,
            "currentTask": w.current_task(&self.queue),
            "inFlight": w.in_flight.iter().filter(|f| !f.abandoned).count(),
            "uptime": now.duration_since(w.spawned).as_millis() as u64,
            "lastActivity": now.duration_since(w.last_activity).as_millis() as u64,
            "restartCount": restarts,
            "capabilities": w.capabilities,
            "rssBytes": w.rss,
            "memoryMB": ((w.rss as f64 / BYTES_PER_MB) * 10.0).round() / 10.0,
            "cpuPercent": w.cpu_percent,
            "health": health,
        })
    }

    pub(super) fn prometheus(&self) -> String {
        use crate::metrics::{family, sample};
        let mut o = String::with_capacity(4096);
        family(&mut o, "worker_pool_workers", "gauge", "Workers by state.");
        let mut by_state: BTreeMap<&str, u64> = ["initializing", "ready", "busy", "shutting-down"].iter().map(|s| (*s, 0)).collect();
        for w in self.roster.workers.values() {
            *by_state.entry(w.state_str()).or_default() += 1;
        }
        for (state, n) in &by_state {
            sample(&mut o, "worker_pool_workers", &[("state", state)], *n as f64);
        }
        family(&mut o, "worker_pool_size", "gauge", "Configured pool size (slots).");
        sample(&mut o, "worker_pool_size", &[], self.active_size() as f64);
        family(&mut o, "worker_pool_queue_depth", "gauge", "Tasks waiting in the queue.");
        sample(&mut o, "worker_pool_queue_depth", &[], self.queue.depth() as f64);
        family(&mut o, "worker_pool_dead_letters", "gauge", "Tasks in the dead-letter queue.");
        sample(&mut o, "worker_pool_dead_letters", &[], self.queue.dlq_len() as f64);
        family(
            &mut o,
            "worker_pool_worker_rss_bytes",
            "gauge",
            "Resident memory of each worker, from /proc.",
        );
        for w in self.roster.workers.values() {
            let pid = w.pid.to_string();
            sample(
                &mut o,
                "worker_pool_worker_rss_bytes",
                &[("worker", &w.id), ("pid", &pid)],
                w.rss as f64,
            );
        }
        family(
            &mut o,
            "worker_pool_worker_cpu_percent",
            "gauge",
            "CPU use of each worker over the last health check.",
        );
        for w in self.roster.workers.values() {
            sample(&mut o, "worker_pool_worker_cpu_percent", &[("worker", &w.id)], w.cpu_percent);
        }
        let (tasks, workers) = (&self.metrics.tasks, &self.metrics.workers);
        let counters: [(&str, &str, u64); 7] = [
            ("worker_pool_tasks_submitted_total", "Tasks submitted.", tasks.submitted),
            ("worker_pool_tasks_completed_total", "Tasks completed.", tasks.completed),
            (
                "worker_pool_tasks_failed_total",
                "Tasks that failed for good (rejected).",
                tasks.failed,
            ),
            ("worker_pool_tasks_retried_total", "Task attempts retried.", self.queue.retried()),
            ("worker_pool_worker_restarts_total", "Workers restarted.", workers.restarted),
            ("worker_pool_workers_spawned_total", "Workers spawned.", workers.spawned),
            (
                "worker_pool_worker_crashes_total",
                "Workers that exited unexpectedly.",
                workers.crashed,
            ),
        ];
        for (name, help, v) in counters {
            family(&mut o, name, "counter", help);
            sample(&mut o, name, &[], v as f64);
        }
        self.metrics.wait.write(
            &mut o,
            "worker_pool_task_wait_seconds",
            "Time tasks waited in the queue before a worker took them.",
        );
        self.metrics
            .run
            .write(&mut o, "worker_pool_task_run_seconds", "Run time of completed tasks.");
        o
    }

    pub(super) fn metrics_json(&self) -> Value {
        let total = self.roster.workers.len();
        let busy = self.roster.workers.values().filter(|w| w.ready && !w.in_flight.is_empty()).count();
        let ready = self
            .roster
            .workers
            .values()
            .filter(|w| w.ready && w.in_flight.is_empty() && w.retiring.is_none())
            .count();
        let unhealthy = self.health.workers.values().filter(|h| !h.healthy()).count();
        let ratio = if self.metrics.tasks.completed > 0 {
            self.metrics.tasks.reused as f64 / self.metrics.tasks.completed as f64
        } else {
            0.0
        };
        let queue: Value = serde_json::from_str(&self.queue.stats_json()).unwrap_or(Value::Null);
        json!({
            "pool": {
                "size": self.active_size(),
                "initialized": matches!(self.phase, Phase::Running | Phase::ShuttingDown | Phase::Closing),
                "shuttingDown": matches!(self.phase, Phase::ShuttingDown | Phase::Closing | Phase::Shutdown),
                "uptime": self.started.elapsed().as_millis() as u64,
                "failedSlots": self.failed_slots(),
            },
            "workers": { "total": total, "ready": ready, "busy": busy, "unhealthy": unhealthy },
            "tasks": {
                "submitted": self.metrics.tasks.submitted,
                "completed": self.metrics.tasks.completed,
                "failed": self.metrics.tasks.failed,
                "queued": self.queue.depth(),
                "running": self.roster.workers.values().map(|w| w.in_flight.iter().filter(|f| !f.abandoned).count()).sum::<usize>(),
                "retried": self.queue.retried(),
                "dlq": self.queue.dlq_len(),
            },
            "performance": {
                "workerReuseRate": format!("{}%", (ratio * 100.0).round() as u64),
                "workerReuseRatio": (ratio * 10000.0).round() / 10000.0,
                "workersSpawned": self.metrics.workers.spawned,
                "workersRestarted": self.metrics.workers.restarted,
                "workersCrashed": self.metrics.workers.crashed,
                "avgTaskWaitTimeMs": self.queue.avg_wait_ms(),
                "avgTaskDurationMs": self.queue.avg_duration_ms(),
            },
            "health": self.health.summary_json(self.failed_slots()),
            "queue": queue,
        })
    }

    /// A `call` of a pool's view: `queue.<verb>` or `health.<verb>`, the verbs of
    /// `crate::verbs` that a pool's views answer.
    pub(super) fn call(&mut self, method: &str, args: &Value) -> CoreResult<String> {
        let answer = if let Some(verb) = method.strip_prefix("queue.") {
            self.queue_call(verb, args)
        } else if let Some(verb) = method.strip_prefix("health.") {
            self.sync_health();
            let failed = self.failed_slots();
            verbs::health_read(&mut self.health, verb, args, failed)
        } else {
            None
        };
        answer.ok_or_else(|| CoreError::new(Code::NotSupported, format!("Unknown pool call \"{method}\"")))
    }

    /// The queue verbs of a pool's view: the shared reads, and the two that differ
    /// from the standalone queue's (an id must match exactly; clearing rejects the
    /// tasks' promises).
    fn queue_call(&mut self, verb: &str, args: &Value) -> Option<String> {
        match verb {
            "getTaskById" => {
                let id = verbs::arg(args, 0).as_str();
                let rec = id.and_then(TaskQueue::<PoolTask>::seq_of).and_then(|s| self.queue.get(s));
                Some(
                    rec.filter(|r| Some(r.id.as_str()) == id)
                        .map_or_else(|| "null".into(), |r| r.to_json()),
                )
            }
            "clear" => {
                let err = CoreError::new(Code::QueueCleared, "Task was removed from the queue by taskQueue.clear()");
                let recs = self.queue.clear();
                for r in &recs {
                    self.metrics.tasks.failed += 1;
                    self.settle_err(r.seq, &err);
                }
                Some(recs.len().to_string())
            }
            _ => verbs::queue_read(&mut self.queue, verb),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PoolConfig;
    use crate::standalone::{StandaloneHealth, StandaloneQueue};
    use crate::verbs::{HEALTH_STANDALONE_VERBS, HEALTH_VERBS, QUEUE_STANDALONE_VERBS, QUEUE_VERBS};

    /// Whether the dispatcher knows the verb (bad arguments may still fail it).
    fn answered(r: CoreResult<String>) -> bool {
        !matches!(r, Err(e) if e.code == Code::NotSupported)
    }

    fn pool_state() -> State {
        State::new(PoolConfig::from_json(&Value::Null, "node", "worker.js").unwrap())
    }

    /// One vocabulary: every shared verb is answered by a pool's view and by the
    /// standalone class; the standalone-only verbs are refused by a pool's view.
    #[test]
    fn both_dispatchers_answer_the_same_verbs() {
        let mut st = pool_state();
        let mut q = StandaloneQueue::new(&json!({})).unwrap();
        let mut h = StandaloneHealth::new(&json!({})).unwrap();
        let none = json!([]);
        for verb in QUEUE_VERBS {
            assert!(answered(st.call(&format!("queue.{verb}"), &none)), "pool queue.{verb}");
            assert!(answered(q.call(verb, &none)), "standalone queue {verb}");
        }
        for verb in HEALTH_VERBS {
            assert!(answered(st.call(&format!("health.{verb}"), &none)), "pool health.{verb}");
            assert!(answered(h.call(verb, &none)), "standalone health {verb}");
        }
        for verb in QUEUE_STANDALONE_VERBS {
            assert!(!answered(st.call(&format!("queue.{verb}"), &none)), "pool queue.{verb}");
            assert!(answered(q.call(verb, &none)), "standalone queue {verb}");
        }
        for verb in HEALTH_STANDALONE_VERBS {
            assert!(!answered(st.call(&format!("health.{verb}"), &none)), "pool health.{verb}");
            assert!(answered(h.call(verb, &none)), "standalone health {verb}");
        }
        assert!(!answered(q.call("bogus", &none)) && !answered(h.call("bogus", &none)));
        assert!(!answered(st.call("getStats", &none)), "a pool's verbs are routed by prefix");
    }

    #[test]
    fn a_pool_reports_the_options_it_mapped() {
        let mut st = pool_state();
        let none = json!([]);
        let health: Value = serde_json::from_str(&st.call("health.options", &none).unwrap()).unwrap();
        assert_eq!(health["heartbeatTimeoutMs"], 15000);
        assert_eq!(health["memoryThresholdMB"], 512);
        let queue: Value = serde_json::from_str(&st.call("queue.options", &none).unwrap()).unwrap();
        assert_eq!(
            queue,
            json!({ "maxRetries": 3, "retryBackoffMs": 1000, "maxBackoffMs": 30000, "taskTimeoutMs": 300000 })
        );
    }
}
