//! The standalone `TaskQueue` and `HealthMonitor` of the JS API, driven by method
//! name (the verbs of `crate::verbs`, shared with a pool's views) with JSON arguments. Each call answers `{"r": result, "e": [events]}` so the
//! JS facade can emit the events synchronously, as the original classes did.

use crate::error::{Code, CoreError, CoreResult};
use crate::health::{self, HealthMonitor, HealthOptions, Sample};
use crate::queue::{self, Attempt, FailOutcome, JsonTask, QueueOptions, TaskQueue};
use crate::util::epoch_ms;
use crate::verbs::{self, arg};
use serde_json::{json, Value};
use std::time::Instant;

fn num(v: &Value, key: &str, default: f64) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(default)
}

fn answer(result: String, events: String) -> String {
    format!("{{\"r\":{result},\"e\":[{events}]}}")
}

pub struct StandaloneQueue {
    q: TaskQueue<JsonTask>,
}

impl StandaloneQueue {
    pub fn new(opts: &Value) -> CoreResult<Self> {
        let get = |k: &str, d: f64| -> CoreResult<f64> {
            match opts.get(k) {
                None | Some(Value::Null) => Ok(d),
                Some(v) => v
                    .as_f64()
                    .filter(|x| *x >= 0.0 && x.fract() == 0.0)
                    .ok_or_else(|| CoreError::config(k, "an integer >= 0", v)),
            }
        };
        let mut q = TaskQueue::new(QueueOptions {
            max_retries: get("maxRetries", f64::from(queue::DEFAULT_MAX_RETRIES))? as u32,
            retry_backoff_ms: get("retryBackoffMs", queue::DEFAULT_RETRY_BACKOFF_MS as f64)? as u64,
            max_backoff_ms: get("maxBackoffMs", queue::DEFAULT_MAX_BACKOFF_MS as f64)? as u64,
            task_timeout_ms: get("taskTimeoutMs", queue::DEFAULT_TASK_TIMEOUT_MS as f64)? as u64,
            dlq_capacity: get("maxDeadLetters", queue::DEFAULT_DLQ_CAPACITY as f64)? as usize,
        });
        q.emit = true;
        Ok(StandaloneQueue { q })
    }

    fn events(&mut self) -> String {
        let evs = std::mem::take(&mut self.q.events);
        evs.iter()
            .filter_map(|e| serde_json::to_string(e).ok())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `enqueue(task, priority)`: the new task's id.
    fn enqueue(&mut self, args: &Value) -> CoreResult<String> {
        let task = arg(args, 0);
        if !task.is_object() {
            return Err(CoreError::new(Code::InvalidTask, "Invalid task: expected an object"));
        }
        let priority = arg(args, 1).as_f64().unwrap_or(10.0);
        let timeout = task.get("timeout").and_then(Value::as_u64);
        let max_retries = task.get("maxRetries").and_then(Value::as_u64).map(|x| x as u32);
        let (_, id) = self.q.enqueue(JsonTask(task.to_string()), priority, timeout, max_retries);
        Ok(Value::String(id).to_string())
    }

    /// `failTask(id, error)`: whether the task is retried, and after how long.
    fn fail_task(&mut self, args: &Value) -> String {
        let Some(seq) = arg(args, 0).as_str().and_then(TaskQueue::<JsonTask>::seq_of) else {
            return "false".into();
        };
        let e = arg(args, 1);
        let message = e
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| match e {
                Value::String(s) => s.clone(),
                Value::Null => "Task failed".into(),
                other => other.to_string(),
            });
        let attempt = Attempt {
            timestamp: epoch_ms(),
            error: message,
            code: e.get("code").and_then(Value::as_str).unwrap_or("ERR_TASK_FAILED").to_string(),
            stack: e.get("stack").and_then(Value::as_str).map(str::to_string),
            worker_id: e.get("workerId").and_then(Value::as_str).map(str::to_string),
        };
        match self.q.fail(seq, attempt) {
            Some(FailOutcome::Retry { backoff_ms }) => json!({ "retry": true, "backoffMs": backoff_ms }).to_string(),
            Some(FailOutcome::Dead) => json!({ "retry": false }).to_string(),
            None => json!({ "retry": false, "unknown": true }).to_string(),
        }
    }

    /// `takeDeadLetters(id?)`: the dead letters taken out, as `{ task, priority }`.
    fn take_dead_letters(&mut self, id: Option<&str>) -> String {
        let items: Vec<Value> = self
            .q
            .take_dead_letters(id)
            .into_iter()
            .map(|d| json!({ "task": serde_json::from_str::<Value>(&d.data.0).unwrap_or(Value::Null), "priority": d.priority }))
            .collect();
        Value::Array(items).to_string()
    }

    /// A method of the standalone queue by name (the verbs of `crate::verbs`).
    pub fn call(&mut self, method: &str, args: &Value) -> CoreResult<String> {
        let r = match verbs::queue_read(&mut self.q, method) {
            Some(r) => r,
            None => self.call_own(method, args)?,
        };
        Ok(answer(r, self.events()))
    }

    /// The verbs the pool's view does not share (or answers its own way).
    fn call_own(&mut self, method: &str, args: &Value) -> CoreResult<String> {
        let id_seq = |a: &Value| a.as_str().and_then(TaskQueue::<JsonTask>::seq_of);
        Ok(match method {
            "enqueue" => self.enqueue(args)?,
            "dequeue" => match self.q.pop() {
                Some(s) => self.q.record_json(s).unwrap_or_else(|| "null".into()),
                None => "null".into(),
            },
            "getTaskById" => id_seq(arg(args, 0))
                .and_then(|s| self.q.record_json(s))
                .unwrap_or_else(|| "null".into()),
            "completeTask" => {
                let seq = id_seq(arg(args, 0));
                seq.and_then(|s| self.q.complete(s)).is_some().to_string()
            }
            "failTask" => self.fail_task(args),
            "promoteDue" => self.q.promote_due(Instant::now()).to_string(),
            "nextRetryInMs" => match self.q.next_retry_at() {
                Some(t) => t.saturating_duration_since(Instant::now()).as_millis().to_string(),
                None => "null".into(),
            },
            "takeDeadLetters" => self.take_dead_letters(arg(args, 0).as_str()),
            "checkTimeouts" => serde_json::to_string(&self.q.check_timeouts(Instant::now())).unwrap_or_else(|_| "[]".into()),
            "clear" => self.q.clear().len().to_string(),
            _ => return Err(CoreError::new(Code::NotSupported, format!("TaskQueue has no method \"{method}\""))),
        })
    }
}

pub struct StandaloneHealth {
    h: HealthMonitor,
}

impl StandaloneHealth {
    pub fn new(opts: &Value) -> CoreResult<Self> {
        let get = |k: &str, d: f64| -> CoreResult<f64> {
            match opts.get(k) {
                None | Some(Value::Null) => Ok(d),
                Some(v) => v
                    .as_f64()
                    .filter(|x| *x >= 0.0)
                    .ok_or_else(|| CoreError::config(k, "a number >= 0", v)),
            }
        };
        let mut h = HealthMonitor::new(HealthOptions {
            heartbeat_timeout_ms: get("heartbeatTimeoutMs", health::DEFAULT_HEARTBEAT_TIMEOUT_MS as f64)? as u64,
            health_check_interval: get("healthCheckInterval", health::DEFAULT_HEALTH_CHECK_INTERVAL_MS as f64)? as u64,
            zombie_threshold_ms: get("zombieThresholdMs", health::DEFAULT_ZOMBIE_THRESHOLD_MS as f64)? as u64,
            max_restart_attempts: get("maxRestartAttempts", f64::from(health::DEFAULT_MAX_RESTART_ATTEMPTS))? as u32,
            restart_cooldown_ms: get("restartCooldownMs", health::DEFAULT_RESTART_COOLDOWN_MS as f64)? as u64,
            memory_threshold_mb: get("memoryThresholdMB", health::DEFAULT_MEMORY_THRESHOLD_MB as f64)? as u64,
            cpu_threshold_percent: get("cpuThresholdPercent", health::DEFAULT_CPU_THRESHOLD_PERCENT)?,
        });
        h.emit = true;
        Ok(StandaloneHealth { h })
    }

    fn events(&mut self) -> String {
        let evs = std::mem::take(&mut self.h.events);
        evs.iter().map(Value::to_string).collect::<Vec<_>>().join(",")
    }

    /// `registerWorker(id, { pid, state })`.
    fn register_worker(&mut self, id: &str, info: &Value) -> String {
        let pid = info.get("pid").and_then(Value::as_u64).unwrap_or(0) as u32;
        let state = info.get("state").and_then(Value::as_str).unwrap_or("initializing");
        self.h.register(id, pid, state);
        "true".into()
    }

    /// `recordHeartbeat(id, heartbeat)`: a sample from what the heartbeat says.
    fn record_heartbeat(&mut self, id: &str, d: &Value) -> String {
        let mem = d.get("memoryUsage").cloned().unwrap_or(Value::Null);
        let heap_used = num(&mem, "heapUsed", 0.0);
        let sample = Sample {
            timestamp: epoch_ms(),
            // The standalone monitor has only the worker's word: its heap.
            memory_mb: heap_used / crate::util::BYTES_PER_MB,
            rss_bytes: num(&mem, "rss", 0.0),
            heap_used,
            heap_total: num(&mem, "heapTotal", 0.0),
            cpu: d
                .get("cpuUsage")
                .map(|c| num(c, "user", 0.0) + num(c, "system", 0.0))
                .unwrap_or(0.0),
            uptime: num(d, "uptime", 0.0),
        };
        let state = d.get("state").and_then(Value::as_str);
        self.h.heartbeat(id, Some(sample), state);
        if let Some(w) = self.h.workers.get_mut(id) {
            if let Some(n) = d.get("tasksExecuted").and_then(Value::as_u64) {
                w.tasks_executed = n;
            }
            if let Some(t) = d.get("currentTask") {
                w.current_task = t.as_str().map(str::to_string);
            }
        }
        "true".into()
    }

    /// A method of the standalone monitor by name (the verbs of `crate::verbs`).
    pub fn call(&mut self, method: &str, args: &Value) -> CoreResult<String> {
        let r = match verbs::health_read(&mut self.h, method, args, 0) {
            Some(r) => r,
            None => self.call_own(method, args)?,
        };
        Ok(answer(r, self.events()))
    }

    /// The verbs only a standalone monitor has: it is fed by whoever calls it.
    fn call_own(&mut self, method: &str, args: &Value) -> CoreResult<String> {
        let id = arg(args, 0).as_str().unwrap_or("").to_string();
        Ok(match method {
            "start" => {
                self.h.set_monitoring(true);
                "true".into()
            }
            "stop" => {
                self.h.set_monitoring(false);
                "true".into()
            }
            "registerWorker" => self.register_worker(&id, arg(args, 1)),
            "unregisterWorker" => self.h.unregister(&id).to_string(),
            "recordHeartbeat" => self.record_heartbeat(&id, arg(args, 1)),
            "checkHealth" => {
                let o = self.h.check(Instant::now());
                json!({ "zombies": o.zombies, "missed": o.missed, "highMemory": o.high_memory }).to_string()
            }
            "shouldRestartWorker" => self.h.should_restart(&id).to_string(),
            "recordRestartAttempt" => self.h.record_restart_attempt(&id).to_string(),
            "resetRestartCounter" => {
                self.h.reset_restart_counter(&id);
                "true".into()
            }
            _ => {
                return Err(CoreError::new(
                    Code::NotSupported,
                    format!("HealthMonitor has no method \"{method}\""),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(q: &mut StandaloneQueue, m: &str, a: Value) -> Value {
        serde_json::from_str(&q.call(m, &a).unwrap()).unwrap()
    }

    #[test]
    fn priority_then_fifo() {
        let mut q = StandaloneQueue::new(&json!({})).unwrap();
        for (name, p) in [("a", 10), ("b", 0), ("c", 10), ("d", 5), ("e", 0)] {
            call(&mut q, "enqueue", json!([{ "name": name }, p]));
        }
        let order: Vec<String> = (0..5)
            .map(|_| {
                call(&mut q, "dequeue", json!([]))["r"]["task"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(order, ["b", "e", "d", "a", "c"]);
        assert_eq!(call(&mut q, "dequeue", json!([]))["r"], Value::Null);
    }

    #[test]
    fn fail_retries_then_dead_letters() {
        let mut q = StandaloneQueue::new(&json!({ "maxRetries": 2, "retryBackoffMs": 0 })).unwrap();
        let id = call(&mut q, "enqueue", json!([{ "x": 1 }]))["r"].as_str().unwrap().to_string();
        for expect_retry in [true, true, false] {
            call(&mut q, "promoteDue", json!([]));
            let rec = call(&mut q, "dequeue", json!([]));
            assert_eq!(rec["r"]["id"], id.as_str());
            let out = call(&mut q, "failTask", json!([id, { "message": "nope", "stack": "at x" }]));
            assert_eq!(out["r"]["retry"], expect_retry);
        }
        let dlq = call(&mut q, "getDeadLetterQueue", json!([]))["r"].clone();
        let rec = &dlq[0];
        assert_eq!(rec["status"], "failed");
        assert_eq!(rec["retries"], 2);
        assert_eq!(rec["finalError"]["message"], "nope");
        assert_eq!(rec["metadata"]["attempts"].as_array().unwrap().len(), 3);
        let stats = call(&mut q, "getStats", json!([]))["r"].clone();
        assert_eq!(stats["dlqSize"], 1);
        assert_eq!(stats["queueDepth"], 0);
        assert_eq!(call(&mut q, "clearDeadLetterQueue", json!([]))["r"], 1);
    }

    #[test]
    fn finished_tasks_are_forgotten() {
        let mut q = StandaloneQueue::new(&json!({})).unwrap();
        for _ in 0..1000 {
            let id = call(&mut q, "enqueue", json!([{}]))["r"].as_str().unwrap().to_string();
            call(&mut q, "dequeue", json!([]));
            call(&mut q, "completeTask", json!([id]));
        }
        assert_eq!(q.q.live(), 0);
        let stats = call(&mut q, "getStats", json!([]))["r"].clone();
        assert_eq!(stats["totalTasks"], 1000);
        assert_eq!(stats["byStatus"]["completed"], 1000);
    }
}
