//! Health bookkeeping: heartbeats, samples, alerts, restart accounting, status rules.
//!
//! Used inside the pool (fed from the core's own threads, with memory and CPU from
//! /proc) and by the standalone `HealthMonitor` (fed by whoever calls it).

use crate::util::epoch_ms;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The monitor's settings; serialized (`to_json`) as `healthMonitor.options`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthOptions {
    pub heartbeat_timeout_ms: u64,
    pub health_check_interval: u64,
    pub zombie_threshold_ms: u64,
    pub max_restart_attempts: u32,
    pub restart_cooldown_ms: u64,
    #[serde(rename = "memoryThresholdMB")]
    pub memory_threshold_mb: u64,
    pub cpu_threshold_percent: f64,
}

impl HealthOptions {
    /// The options as JavaScript shows them (`healthMonitor.options`).
    pub fn to_json(&self) -> String {
        crate::util::options_json(self)
    }
}

// The defaults are the original HealthMonitor's, so that a monitor built without
// options behaves as it did.

/// No heartbeat for this long is a missed heartbeat: three of the workers' default
/// 5 s heartbeats, so one late beat is not reported.
pub const DEFAULT_HEARTBEAT_TIMEOUT_MS: u64 = 15_000;
/// How often workers are checked.
pub const DEFAULT_HEALTH_CHECK_INTERVAL_MS: u64 = 5_000;
/// No heartbeat for this long makes a worker a zombie: twice the heartbeat timeout,
/// so a worker is reported missed well before it is treated as stuck.
pub const DEFAULT_ZOMBIE_THRESHOLD_MS: u64 = 30_000;
/// Restarts of one worker before it is given up on.
pub const DEFAULT_MAX_RESTART_ATTEMPTS: u32 = 3;
/// Least time between two restarts of one worker.
pub const DEFAULT_RESTART_COOLDOWN_MS: u64 = 5_000;
/// Memory (MB) above which a worker raises high-memory.
pub const DEFAULT_MEMORY_THRESHOLD_MB: u64 = 512;
/// CPU use (percent of one core, over a check interval) that counts as high: a worker
/// at this level has hardly any time left for anything but its task. The pool uses it
/// as is (it is not a pool option).
pub const DEFAULT_CPU_THRESHOLD_PERCENT: f64 = 90.0;

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            heartbeat_timeout_ms: DEFAULT_HEARTBEAT_TIMEOUT_MS,
            health_check_interval: DEFAULT_HEALTH_CHECK_INTERVAL_MS,
            zombie_threshold_ms: DEFAULT_ZOMBIE_THRESHOLD_MS,
            max_restart_attempts: DEFAULT_MAX_RESTART_ATTEMPTS,
            restart_cooldown_ms: DEFAULT_RESTART_COOLDOWN_MS,
            memory_threshold_mb: DEFAULT_MEMORY_THRESHOLD_MB,
            cpu_threshold_percent: DEFAULT_CPU_THRESHOLD_PERCENT,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    pub timestamp: f64,
    #[serde(rename = "memoryMB")]
    pub memory_mb: f64,
    #[serde(rename = "rssBytes")]
    pub rss_bytes: f64,
    #[serde(rename = "heapUsed")]
    pub heap_used: f64,
    #[serde(rename = "heapTotal")]
    pub heap_total: f64,
    pub cpu: f64,
    pub uptime: f64,
}

/// Samples kept per worker (the oldest go first): the default `getMetrics` limit, so
/// that a default call sees a full history and memory stays bounded per worker.
const SAMPLES_KEPT: usize = 100;
/// Alerts kept (the oldest go first): bounds memory in a pool whose workers keep
/// failing, with room for far more than a dashboard shows.
const ALERTS_KEPT: usize = 1000;

// The status rules (summary_json), as in the original.

/// Capacity (percent of workers healthy) under which the pool is critical: most of
/// it cannot take work.
const CRITICAL_CAPACITY_PERCENT: f64 = 50.0;
/// Capacity under which the pool is degraded (and capacity_json says `degraded`).
const DEGRADED_CAPACITY_PERCENT: f64 = 80.0;
/// Utilization (percent of workers busy) over which the pool is degraded: little
/// headroom is left for a burst.
const DEGRADED_UTILIZATION_PERCENT: f64 = 90.0;
/// A critical alert younger than this makes the pool critical (5 minutes, as in the
/// original): the status stays critical for a while after an incident, so a probe
/// polling now and then still sees it.
const RECENT_ALERT_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct WorkerHealth {
    pub worker_id: String,
    pub pid: u32,
    pub state: String,
    pub tasks_executed: u64,
    pub current_task: Option<String>,
    pub registered: Instant,
    pub last_heartbeat: Option<Instant>,
    pub restart_attempts: u32,
    pub last_restart: Option<Instant>,
    pub consecutive_failures: u32,
    pub samples: VecDeque<Sample>,
    pub missed: bool,
    pub zombie: bool,
    pub high_memory: bool,
    pub last: Sample,
}

impl WorkerHealth {
    fn since_heartbeat_ms(&self, now: Instant) -> u64 {
        now.duration_since(self.last_heartbeat.unwrap_or(self.registered)).as_millis() as u64
    }

    pub fn healthy(&self) -> bool {
        !self.missed && !self.zombie && !self.high_memory
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: String,
    pub severity: &'static str,
    #[serde(rename = "workerId")]
    pub worker_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: f64,
    #[serde(flatten)]
    pub details: BTreeMap<String, Value>,
    #[serde(skip)]
    at: Option<Instant>,
}

/// What a periodic check found; the owner decides what to do (the pool kills
/// zombies and recycles workers over the memory limit).
#[derive(Debug, Default)]
pub struct CheckOutcome {
    pub zombies: Vec<String>,
    pub missed: Vec<String>,
    pub high_memory: Vec<String>,
}

pub struct HealthMonitor {
    pub opts: HealthOptions,
    pub workers: BTreeMap<String, WorkerHealth>,
    alerts: VecDeque<Alert>,
    alert_seq: u64,
    pub monitoring: bool,
    pub emit: bool,
    /// Events as `{ "event": name, ...fields }` JSON values.
    pub events: Vec<Value>,
}

impl HealthMonitor {
    pub fn new(opts: HealthOptions) -> Self {
        HealthMonitor {
            opts,
            workers: BTreeMap::new(),
            alerts: VecDeque::new(),
            alert_seq: 0,
            monitoring: false,
            emit: false,
            events: Vec::new(),
        }
    }

    fn event(&mut self, name: &str, mut fields: Value) {
        if !self.emit {
            return;
        }
        if let Value::Object(ref mut m) = fields {
            m.insert("event".into(), Value::String(name.into()));
        }
        self.events.push(fields);
    }

    pub fn set_monitoring(&mut self, on: bool) {
        if self.monitoring != on {
            self.monitoring = on;
            self.event(
                if on { "monitoring-started" } else { "monitoring-stopped" },
                json!({ "timestamp": epoch_ms() }),
            );
        }
    }

    pub fn register(&mut self, id: &str, pid: u32, state: &str) {
        let prev = self.workers.get(id).map(|w| (w.restart_attempts, w.last_restart));
        let (restart_attempts, last_restart) = prev.unwrap_or((0, None));
        self.workers.insert(
            id.to_string(),
            WorkerHealth {
                worker_id: id.to_string(),
                pid,
                state: state.to_string(),
                tasks_executed: 0,
                current_task: None,
                registered: Instant::now(),
                last_heartbeat: None,
                restart_attempts,
                last_restart,
                consecutive_failures: 0,
                samples: VecDeque::new(),
                missed: false,
                zombie: false,
                high_memory: false,
                last: Sample::default(),
            },
        );
        self.event("worker-registered", json!({ "workerId": id, "pid": pid }));
    }

    pub fn unregister(&mut self, id: &str) -> bool {
        let had = self.workers.remove(id).is_some();
        if had {
            self.event("worker-unregistered", json!({ "workerId": id }));
        }
        had
    }

    pub fn set_state(&mut self, id: &str, state: &str, current_task: Option<&str>, tasks_executed: u64) {
        if let Some(w) = self.workers.get_mut(id) {
            if w.state != state {
                w.state = state.to_string();
            }
            w.current_task = current_task.map(str::to_string);
            w.tasks_executed = tasks_executed;
        }
    }

    pub fn record_failure(&mut self, id: &str, failed: bool) {
        if let Some(w) = self.workers.get_mut(id) {
            if failed {
                w.consecutive_failures += 1;
            } else {
                w.consecutive_failures = 0;
            }
        }
    }

    /// A heartbeat arrived: the worker is alive. Clears missed/zombie flags.
    pub fn heartbeat(&mut self, id: &str, sample: Option<Sample>, state: Option<&str>) {
        let now = Instant::now();
        let Some(w) = self.workers.get_mut(id) else { return };
        let recovered = w.missed || w.zombie;
        w.last_heartbeat = Some(now);
        w.missed = false;
        w.zombie = false;
        if let Some(s) = state {
            w.state = s.to_string();
        }
        if let Some(s) = sample {
            push_sample(w, s);
        }
        let pid = w.pid;
        if recovered {
            self.event("worker-recovered", json!({ "workerId": id, "pid": pid }));
        }
        if self.emit {
            let w = &self.workers[id];
            let ev = json!({ "workerId": id, "pid": pid, "state": w.state, "memoryMB": w.last.memory_mb, "cpu": w.last.cpu, "timestamp": epoch_ms() });
            self.event("heartbeat-received", ev);
        }
    }

    /// A kernel sample (RSS, CPU) for a worker, taken by the pool.
    pub fn sample(&mut self, id: &str, s: Sample) {
        if let Some(w) = self.workers.get_mut(id) {
            push_sample(w, s);
        }
    }

    pub fn raise_alert(&mut self, severity: &'static str, worker_id: Option<&str>, kind: &str, details: Value) -> Alert {
        self.alert_seq += 1;
        let mut map = BTreeMap::new();
        if let Value::Object(m) = details {
            for (k, v) in m {
                map.insert(k, v);
            }
        }
        let alert = Alert {
            id: format!("alert-{}-{}", epoch_ms() as u64, self.alert_seq),
            severity,
            worker_id: worker_id.map(str::to_string),
            kind: kind.to_string(),
            timestamp: epoch_ms(),
            details: map,
            at: Some(Instant::now()),
        };
        self.alerts.push_back(alert.clone());
        if self.alerts.len() > ALERTS_KEPT {
            self.alerts.pop_front();
        }
        if self.emit {
            let v = serde_json::to_value(&alert).unwrap_or(Value::Null);
            self.event("alert", json!({ "alert": v }));
        }
        alert
    }

    /// One periodic check. `memory_of` gives the memory in MB the limit is checked
    /// against (the pool passes kernel RSS; standalone uses the heartbeat's).
    pub fn check(&mut self, now: Instant) -> CheckOutcome {
        let mut out = CheckOutcome::default();
        let ids: Vec<String> = self.workers.keys().cloned().collect();
        for id in ids {
            let (since, pid, state, task, was_missed, was_zombie, mem, was_high, has_beat) = {
                let w = &self.workers[&id];
                (
                    w.since_heartbeat_ms(now),
                    w.pid,
                    w.state.clone(),
                    w.current_task.clone(),
                    w.missed,
                    w.zombie,
                    w.last.memory_mb,
                    w.high_memory,
                    w.last_heartbeat.is_some(),
                )
            };
            // Workers that never sent a heartbeat (fork-style scripts) are watched by
            // their process and their task timeouts only.
            if has_beat && since > self.opts.zombie_threshold_ms {
                if !was_zombie {
                    self.workers.get_mut(&id).unwrap().zombie = true;
                    let ev = json!({ "workerId": id, "pid": pid, "timeSinceHeartbeat": since, "state": state, "currentTask": task });
                    self.event("zombie-detected", ev.clone());
                    self.raise_alert("critical", Some(&id), "zombie-detected", ev);
                }
                out.zombies.push(id.clone());
            } else if has_beat && since > self.opts.heartbeat_timeout_ms {
                if !was_missed {
                    self.workers.get_mut(&id).unwrap().missed = true;
                    let ev = json!({ "workerId": id, "pid": pid, "timeSinceHeartbeat": since });
                    self.event("missed-heartbeat", ev.clone());
                    self.raise_alert("warning", Some(&id), "missed-heartbeat", ev);
                }
                out.missed.push(id.clone());
            }
            let limit = self.opts.memory_threshold_mb as f64;
            if mem > limit {
                if !was_high {
                    self.workers.get_mut(&id).unwrap().high_memory = true;
                    let ev = json!({ "workerId": id, "memoryMB": round1(mem), "threshold": self.opts.memory_threshold_mb });
                    self.event("high-memory", ev.clone());
                    self.raise_alert("warning", Some(&id), "high-memory", ev);
                }
                out.high_memory.push(id.clone());
            } else if was_high {
                self.workers.get_mut(&id).unwrap().high_memory = false;
            }
        }
        out
    }

    pub fn should_restart(&self, id: &str) -> bool {
        let Some(w) = self.workers.get(id) else { return false };
        let cooled = w
            .last_restart
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(self.opts.restart_cooldown_ms));
        !w.healthy() && w.restart_attempts < self.opts.max_restart_attempts && cooled
    }

    pub fn record_restart_attempt(&mut self, id: &str) -> u32 {
        let Some(w) = self.workers.get_mut(id) else { return 0 };
        w.restart_attempts += 1;
        w.last_restart = Some(Instant::now());
        let n = w.restart_attempts;
        self.event(
            "restart-attempted",
            json!({ "workerId": id, "attempt": n, "maxAttempts": self.opts.max_restart_attempts }),
        );
        n
    }

    pub fn reset_restart_counter(&mut self, id: &str) {
        if let Some(w) = self.workers.get_mut(id) {
            w.restart_attempts = 0;
            w.last_restart = None;
            self.event("restart-counter-reset", json!({ "workerId": id }));
        }
    }

    pub fn worker_json(&self, id: &str) -> Value {
        let Some(w) = self.workers.get(id) else { return Value::Null };
        let now = Instant::now();
        json!({
            "workerId": w.worker_id,
            "pid": w.pid,
            "healthy": w.healthy(),
            "state": w.state,
            "tasksExecuted": w.tasks_executed,
            "currentTask": w.current_task,
            "timeSinceHeartbeat": w.since_heartbeat_ms(now),
            "lastHeartbeat": w.last_heartbeat.map(|t| epoch_ms() - now.duration_since(t).as_millis() as f64),
            "uptime": now.duration_since(w.registered).as_millis() as u64,
            "restartAttempts": w.restart_attempts,
            "consecutiveFailures": w.consecutive_failures,
            "metrics": {
                "memory": w.last.memory_mb,
                "rssBytes": w.last.rss_bytes,
                "heapUsed": w.last.heap_used,
                "heapTotal": w.last.heap_total,
                "cpu": w.last.cpu,
                "uptime": w.last.uptime,
            },
        })
    }

    pub fn all_json(&self, only_unhealthy: bool) -> Value {
        Value::Array(
            self.workers
                .values()
                .filter(|w| !only_unhealthy || !w.healthy())
                .map(|w| self.worker_json(&w.worker_id))
                .collect(),
        )
    }

    pub fn capacity_json(&self) -> Value {
        let total = self.workers.len() as f64;
        let healthy = self.workers.values().filter(|w| w.healthy()).count() as f64;
        let busy = self.workers.values().filter(|w| w.state == "busy").count() as f64;
        let capacity = if total > 0.0 { healthy / total * 100.0 } else { 0.0 };
        let utilization = if total > 0.0 { busy / total * 100.0 } else { 0.0 };
        json!({
            "total": total as u64,
            "healthy": healthy as u64,
            "unhealthy": (total - healthy) as u64,
            "busy": busy as u64,
            "idle": (total - busy) as u64,
            "capacityPercent": round1(capacity),
            "utilizationPercent": round1(utilization),
            "degraded": capacity < DEGRADED_CAPACITY_PERCENT,
        })
    }

    pub fn metrics_json(&self, id: &str, limit: usize) -> Value {
        let Some(w) = self.workers.get(id) else {
            return Value::Array(vec![]);
        };
        let n = w.samples.len();
        let skip = n.saturating_sub(limit);
        serde_json::to_value(w.samples.iter().skip(skip).collect::<Vec<_>>()).unwrap_or(Value::Array(vec![]))
    }

    pub fn alerts_json(&self, limit: usize, severity: Option<&str>) -> Value {
        Value::Array(
            self.alerts
                .iter()
                .rev()
                .filter(|a| severity.is_none_or(|s| a.severity == s))
                .take(limit)
                .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
                .collect(),
        )
    }

    pub fn clear_alerts(&mut self, older_than_ms: u64) -> u64 {
        let before = self.alerts.len();
        let cutoff = Duration::from_millis(older_than_ms);
        self.alerts.retain(|a| a.at.is_some_and(|t| t.elapsed() < cutoff));
        let n = (before - self.alerts.len()) as u64;
        self.event("alerts-cleared", json!({ "count": n }));
        n
    }

    /// Status: `critical` when a critical alert is under 5 minutes old or capacity is
    /// under 50%; `degraded` when capacity is under 80% or utilization over 90%.
    /// `extra_failed` counts slots the pool gave up on (they lower capacity).
    pub fn summary_json(&self, extra_failed: u64) -> Value {
        let now = Instant::now();
        let total = self.workers.len() as u64 + extra_failed;
        let healthy = self.workers.values().filter(|w| w.healthy()).count() as u64;
        let busy = self.workers.values().filter(|w| w.state == "busy").count() as u64;
        let capacity = if total > 0 { healthy as f64 / total as f64 * 100.0 } else { 0.0 };
        let utilization = if total > 0 { busy as f64 / total as f64 * 100.0 } else { 0.0 };
        let recent: Vec<&Alert> = self
            .alerts
            .iter()
            .filter(|a| a.at.is_some_and(|t| now.duration_since(t) < RECENT_ALERT_WINDOW))
            .collect();
        let recent_critical = recent.iter().filter(|a| a.severity == "critical").count();
        let status = if total > 0 && (recent_critical > 0 || capacity < CRITICAL_CAPACITY_PERCENT) {
            "critical"
        } else if total > 0 && (capacity < DEGRADED_CAPACITY_PERCENT || utilization > DEGRADED_UTILIZATION_PERCENT) {
            "degraded"
        } else {
            "healthy"
        };
        let mut cap = self.capacity_json();
        if extra_failed > 0 {
            cap["total"] = json!(total);
            cap["unhealthy"] = json!(total - healthy);
            cap["capacityPercent"] = json!(round1(capacity));
            cap["degraded"] = json!(capacity < DEGRADED_CAPACITY_PERCENT);
        }
        json!({
            "timestamp": epoch_ms(),
            "monitoring": self.monitoring,
            "capacity": cap,
            "alerts": {
                "total": self.alerts.len(),
                "recent": recent.len(),
                "critical": self.alerts.iter().filter(|a| a.severity == "critical").count(),
            },
            "workers": { "total": total, "healthy": healthy, "unhealthy": total - healthy },
            "status": status,
        })
    }
}

fn push_sample(w: &mut WorkerHealth, s: Sample) {
    w.last = s;
    w.samples.push_back(s);
    if w.samples.len() > SAMPLES_KEPT {
        w.samples.pop_front();
    }
}

/// `x` to one decimal, as the original reported percentages and megabytes.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mon() -> HealthMonitor {
        let mut m = HealthMonitor::new(HealthOptions {
            heartbeat_timeout_ms: 30,
            zombie_threshold_ms: 80,
            ..Default::default()
        });
        m.emit = true;
        m
    }

    #[test]
    fn silent_worker_goes_missed_then_zombie() {
        let mut m = mon();
        m.register("worker-0", 1, "ready");
        m.heartbeat("worker-0", None, None);
        let t0 = Instant::now();
        assert!(m.check(t0).zombies.is_empty());
        let o = m.check(t0 + Duration::from_millis(50));
        assert_eq!(o.missed, vec!["worker-0"]);
        let o = m.check(t0 + Duration::from_millis(100));
        assert_eq!(o.zombies, vec!["worker-0"]);
        assert!(m.events.iter().any(|e| e["event"] == "zombie-detected"));
        assert_eq!(m.alerts_json(10, Some("critical")).as_array().unwrap().len(), 1);
        assert_eq!(m.summary_json(0)["status"], "critical");
        m.heartbeat("worker-0", None, None);
        assert!(m.events.iter().any(|e| e["event"] == "worker-recovered"));
    }

    #[test]
    fn worker_without_heartbeats_is_not_a_zombie() {
        let mut m = mon();
        m.register("worker-0", 1, "ready");
        let o = m.check(Instant::now() + Duration::from_secs(10));
        assert!(o.zombies.is_empty() && o.missed.is_empty());
    }

    #[test]
    fn memory_over_threshold_alerts_once() {
        let mut m = mon();
        m.opts.memory_threshold_mb = 100;
        m.register("worker-0", 1, "busy");
        m.sample(
            "worker-0",
            Sample {
                memory_mb: 150.0,
                ..Default::default()
            },
        );
        assert_eq!(m.check(Instant::now()).high_memory, vec!["worker-0"]);
        m.check(Instant::now());
        assert_eq!(m.events.iter().filter(|e| e["event"] == "high-memory").count(), 1);
    }

    #[test]
    fn samples_are_capped() {
        let mut m = mon();
        m.register("w", 1, "ready");
        for i in 0..150 {
            m.sample(
                "w",
                Sample {
                    cpu: i as f64,
                    ..Default::default()
                },
            );
        }
        let v = m.metrics_json("w", 1000);
        assert_eq!(v.as_array().unwrap().len(), 100);
        assert_eq!(m.metrics_json("w", 5).as_array().unwrap().len(), 5);
    }

    #[test]
    fn restart_accounting() {
        let mut m = mon();
        m.opts.restart_cooldown_ms = 0;
        m.register("w", 1, "ready");
        assert!(!m.should_restart("w"), "healthy workers are not restarted");
        m.workers.get_mut("w").unwrap().zombie = true;
        assert!(m.should_restart("w"));
        for _ in 0..3 {
            m.record_restart_attempt("w");
        }
        assert!(!m.should_restart("w"));
        m.reset_restart_counter("w");
        assert!(m.should_restart("w"));
    }

    #[test]
    fn status_rules() {
        let mut m = mon();
        for i in 0..10 {
            m.register(&format!("w{i}"), i, "ready");
        }
        assert_eq!(m.summary_json(0)["status"], "healthy");
        for i in 0..10 {
            m.set_state(&format!("w{i}"), "busy", None, 0);
        }
        assert_eq!(m.summary_json(0)["status"], "degraded");
        assert_eq!(m.summary_json(20)["status"], "critical");
    }
}
