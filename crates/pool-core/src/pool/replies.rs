//! Messages from workers: parsing a line and acting on it (ready, heartbeat, task
//! replies single or batched, worker errors, anything else forwarded to JavaScript),
//! and what a reply does: the in-flight bookkeeping, the run-time average of its
//! type, settling the task or failing its attempt, and recycling the worker after it.

use super::state::{HeapUsage, Retire, State, WorkerNo};
use super::PoolTask;
use crate::error::{Code, CoreError};
use crate::protocol::{self, Kind, WorkerError};
use crate::queue::TaskQueue;
use serde_json::json;
use std::time::{Duration, Instant};

/// Weight of the newest run time in its type's moving average.
const TYPE_AVG_WEIGHT: f64 = 0.2;
/// Task types whose averages are kept; past this the table starts again (a pool fed
/// ever new type names must not grow without bound).
const TYPE_AVG_MAX_TYPES: usize = 4096;

impl State {
    pub(super) fn on_line(&mut self, wn: WorkerNo, line: &str) -> Result<(), String> {
        let msg = protocol::parse(line).map_err(|e| format!("a message that is not valid JSON ({e})"))?;
        let now = Instant::now();
        let Some(w) = self.workers.get_mut(&wn) else { return Ok(()) };
        w.last_activity = now;
        match msg.kind() {
            Kind::TaskComplete => {
                if let Some(id) = msg.task_id.as_deref() {
                    let raw = msg.result.map(|r| r.get()).unwrap_or("null");
                    self.on_reply(wn, id, Ok(raw), msg.duration);
                }
            }
            Kind::TaskFailed => {
                if let Some(id) = msg.task_id.as_deref() {
                    let e = msg.error.unwrap_or_default();
                    self.on_reply(wn, id, Err(&e), msg.duration);
                }
            }
            Kind::TaskResults => {
                for r in msg.results.unwrap_or_default() {
                    if r.ok {
                        let raw = r.result.map(|x| x.get()).unwrap_or("null");
                        self.on_reply(wn, &r.task_id, Ok(raw), r.duration);
                    } else {
                        let e = r.error.unwrap_or_default();
                        self.on_reply(wn, &r.task_id, Err(&e), r.duration);
                    }
                }
            }
            Kind::Heartbeat => {
                if let Some(m) = &msg.memory_usage {
                    w.heap = HeapUsage {
                        used: m.heap_used,
                        total: m.heap_total,
                    };
                }
                let id = w.id.clone();
                self.health.heartbeat(&id, None, None);
            }
            Kind::Ready => {
                if !w.ready {
                    let features = msg.features.unwrap_or_default();
                    if !features.is_empty() {
                        // A worker that speaks this package's protocol sends heartbeats:
                        // its clock starts now, so a hang before the first one is seen.
                        let id = w.id.clone();
                        self.health.heartbeat(&id, None, None);
                    }
                    let Some(w) = self.workers.get_mut(&wn) else { return Ok(()) };
                    w.batch = features.iter().any(|f| f == "batch");
                    w.cancel = features.iter().any(|f| f == "cancel");
                    for c in msg.capabilities.unwrap_or_default() {
                        if !w.capabilities.contains(&c) {
                            w.capabilities.push(c);
                        }
                    }
                    self.on_ready(wn);
                }
            }
            Kind::NodeInternal => {}
            Kind::WorkerError => {
                let fatal = msg.fatal.unwrap_or(false);
                let id = w.id.clone();
                let pid = w.pid;
                let message = msg
                    .error
                    .as_ref()
                    .and_then(|e| e.message.as_deref())
                    .unwrap_or("unknown error")
                    .to_string();
                self.emit(
                    "worker-error",
                    json!({ "workerId": id, "pid": pid, "error": message, "fatal": fatal }),
                );
                self.forward_raw(wn, line);
            }
            _ => self.forward_raw(wn, line),
        }
        Ok(())
    }

    pub(super) fn forward_raw(&mut self, wn: WorkerNo, line: &str) {
        let Some(w) = self.workers.get(&wn) else { return };
        let frag = format!("{{\"k\":\"wm\",\"w\":\"{}\",\"p\":{},\"m\":{}}}", w.id, w.pid, line);
        self.push_ev(&frag);
    }

    pub(super) fn on_ready(&mut self, wn: WorkerNo) {
        let now = Instant::now();
        let Some(w) = self.workers.get_mut(&wn) else { return };
        w.ready = true;
        w.ready_at = Some(now);
        w.idle_since = now;
        let slot = w.slot;
        let caps = w.capabilities.clone();
        if let Some(s) = self.slots.get_mut(&slot) {
            s.caps = caps;
        }

        self.sample_worker(wn, now);
        if let Some(op) = self.slots.get_mut(&slot).and_then(|s| s.op.take()) {
            self.op_worker_done(op, true);
        }
        self.finish_ops();
    }

    pub(super) fn on_reply(&mut self, wn: WorkerNo, task_id: &str, outcome: Result<&str, &WorkerError<'_>>, reported_ms: Option<f64>) {
        let Some(seq) = TaskQueue::<PoolTask>::seq_of(task_id) else {
            return;
        };
        let now = Instant::now();
        let Some(w) = self.workers.get_mut(&wn) else { return };
        let Some(pos) = w.in_flight.iter().position(|f| f.seq == seq) else {
            tracing::debug!("discarding a reply for {task_id} that {} does not hold", w.id);
            return;
        };
        let entry = w.remove_in_flight(pos).expect("position is valid");
        let was_head = pos == 0;
        let started = if was_head { w.head_started } else { Some(now) };
        if was_head {
            w.abandon_deadline = None;
            match w.in_flight.front().map(|f| f.seq) {
                Some(next) => {
                    let t = self.queue.get(next).map(|r| r.timeout_ms).unwrap_or(self.cfg.task_timeout);
                    let d = now + Duration::from_millis(t);
                    w.head_started = Some(now);
                    w.head_deadline = Some(d);
                }
                None => {
                    w.head_started = None;
                    w.head_deadline = None;
                    w.idle_since = now;
                }
            }
        }
        let reused = w.tasks_executed > 0;
        if !entry.abandoned {
            w.tasks_executed += 1;
        }
        let head_deadline = w.head_deadline;
        if let Some(d) = head_deadline {
            self.note_deadline(d);
        }
        if entry.abandoned {
            // A late reply from an attempt that already timed out or was cancelled:
            // the worker is free again, and the message settles nothing.
            self.after_task(wn);
            return;
        }
        let duration = started.map(|s| now.duration_since(s).as_millis() as u64).unwrap_or(0);
        let measured = reported_ms
            .filter(|d| d.is_finite() && *d >= 0.0)
            .or_else(|| started.map(|s| now.duration_since(s).as_secs_f64() * 1000.0));
        if let (Some(ms), Some(rec)) = (measured, self.queue.get(seq)) {
            let key = rec.data.type_json.as_str();
            match self.type_avg.get_mut(key) {
                Some(avg) => *avg = *avg * (1.0 - TYPE_AVG_WEIGHT) + ms * TYPE_AVG_WEIGHT,
                None => {
                    if self.type_avg.len() >= TYPE_AVG_MAX_TYPES {
                        self.type_avg.clear();
                    }
                    self.type_avg.insert(key.to_string(), ms);
                }
            }
        }
        match outcome {
            Ok(raw) => {
                if self.queue.complete(seq).is_none() {
                    return;
                }
                self.metrics.completed += 1;
                self.metrics.run.observe(measured.unwrap_or(duration as f64) / 1000.0);
                if reused {
                    self.metrics.reused += 1;
                }
                if let Some(w) = self.workers.get(&wn) {
                    self.health.record_failure(&w.id, false);
                }
                if self.task_events {
                    let wid = self.workers.get(&wn).map(|w| w.id.clone()).unwrap_or_default();
                    self.emit(
                        "task-completed",
                        json!({ "taskId": task_id, "workerId": wid, "duration": duration, "workerReused": reused }),
                    );
                }
                self.settle_ok(seq, raw);
                self.slot_stable(wn);
            }
            Err(e) => {
                let wid = self.workers.get(&wn).map(|w| w.id.clone()).unwrap_or_default();
                let message = e.message.as_deref().unwrap_or("Task failed").to_string();
                let handler_code = e.code_string();
                let code =
                    if handler_code.as_deref() == Some("ERR_NO_HANDLER") || message.starts_with("No handler registered for task type") {
                        Code::NoHandler
                    } else if e.name.as_deref() == Some("AbortError") {
                        Code::Aborted
                    } else {
                        Code::TaskFailed
                    };
                let mut err = CoreError::new(code, message)
                    .with_worker(&wid)
                    .with_stack(e.stack.as_ref().map(|s| s.to_string()));
                if handler_code.as_deref().is_some_and(|c| c != code.as_str()) {
                    err.extra.handler_code = handler_code;
                }
                self.health.record_failure(&wid, true);
                self.slot_stable(wn);
                // A missing handler will not appear on retry: fail at once.
                let retryable = code != Code::NoHandler;
                self.attempt_failed(seq, err, duration, retryable);
            }
        }
        self.after_task(wn);
    }

    /// A worker that completed a task is stable: its slot's unstable count resets.
    pub(super) fn slot_stable(&mut self, wn: WorkerNo) {
        if let Some(w) = self.workers.get(&wn) {
            if let Some(s) = self.slots.get_mut(&w.slot) {
                s.unstable = 0;
            }
        }
    }

    /// After a reply: recycle, drain or retire the worker when it asked for that.
    pub(super) fn after_task(&mut self, wn: WorkerNo) {
        let Some(w) = self.workers.get(&wn) else { return };
        if w.retiring.is_none() {
            if let Some(max) = self.cfg.max_tasks_per_worker {
                if w.tasks_executed >= max {
                    self.retire(wn, Retire::Recycle);
                    return;
                }
            }
        }
        if w.retiring.is_some() && w.in_flight.is_empty() {
            self.send_retire(wn);
        }
    }
}
