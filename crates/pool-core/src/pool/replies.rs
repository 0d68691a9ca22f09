//! Messages from workers: parsing a line and acting on it (ready, heartbeat, task
//! replies single or batched, worker errors, anything else forwarded to JavaScript),
//! and what a reply does: the in-flight bookkeeping, the run-time average of its
//! type, settling the task or failing its attempt, and recycling the worker after it.

use super::state::{HeapUsage, Retire, State, WorkerNo};
use super::PoolTask;
use crate::error::{Code, CoreError};
use crate::protocol::{self, Incoming, Kind, WorkerError};
use crate::queue::TaskQueue;
use serde_json::json;
use std::time::{Duration, Instant};

/// Weight of the newest run time in its type's moving average.
const TYPE_AVG_WEIGHT: f64 = 0.2;
/// Task types whose averages are kept; past this the table starts again (a pool fed
/// ever new type names must not grow without bound).
const TYPE_AVG_MAX_TYPES: usize = 4096;

impl State {
    /// One message from worker `wn`. Err (the line is not JSON) is a protocol error.
    pub(super) fn on_line(&mut self, wn: WorkerNo, line: &str) -> Result<(), String> {
        let msg = protocol::parse(line).map_err(|e| format!("a message that is not valid JSON ({e})"))?;
        let now = Instant::now();
        let Some(w) = self.roster.workers.get_mut(&wn) else { return Ok(()) };
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
            Kind::Heartbeat => self.on_heartbeat(wn, &msg),
            Kind::Ready => self.on_ready_message(wn, msg),
            Kind::NodeInternal => {}
            Kind::JobCall => self.on_job_call(wn, &msg),
            Kind::WorkerError => {
                self.on_worker_error(wn, &msg);
                self.forward_raw(wn, line);
            }
            _ => self.forward_raw(wn, line),
        }
        Ok(())
    }

    fn on_heartbeat(&mut self, wn: WorkerNo, msg: &Incoming<'_>) {
        let Some(w) = self.roster.workers.get_mut(&wn) else { return };
        if let Some(m) = &msg.memory_usage {
            w.heap = HeapUsage {
                used: m.heap_used,
                total: m.heap_total,
            };
        }
        let id = w.id.clone();
        self.health.heartbeat(&id, None, None);
    }

    /// `worker-ready`: the features and capabilities it declares, then `on_ready`.
    fn on_ready_message(&mut self, wn: WorkerNo, msg: Incoming<'_>) {
        let Some(w) = self.roster.workers.get_mut(&wn) else { return };
        if w.ready {
            return;
        }
        let features = msg.features.unwrap_or_default();
        if !features.is_empty() {
            // A worker that speaks this package's protocol sends heartbeats: its clock
            // starts now, so a hang before the first one is seen.
            let id = w.id.clone();
            self.health.heartbeat(&id, None, None);
        }
        let Some(w) = self.roster.workers.get_mut(&wn) else { return };
        w.batch = features.iter().any(|f| f == "batch");
        w.cancel = features.iter().any(|f| f == "cancel");
        for c in msg.capabilities.unwrap_or_default() {
            if !w.capabilities.contains(&c) {
                w.capabilities.push(c);
            }
        }
        self.on_ready(wn);
    }

    /// `worker-error`: the pool's `worker-error` event (the message itself is also
    /// forwarded).
    fn on_worker_error(&mut self, wn: WorkerNo, msg: &Incoming<'_>) {
        let Some(w) = self.roster.workers.get(&wn) else { return };
        let fatal = msg.fatal.unwrap_or(false);
        let (id, pid) = (w.id.clone(), w.pid);
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
    }

    fn forward_raw(&mut self, wn: WorkerNo, line: &str) {
        let Some(w) = self.roster.workers.get(&wn) else { return };
        let frag = super::events::worker_message_record(&w.id, w.pid, line);
        self.push_ev(&frag);
    }

    fn on_ready(&mut self, wn: WorkerNo) {
        let now = Instant::now();
        let Some(w) = self.roster.workers.get_mut(&wn) else { return };
        w.ready = true;
        w.ready_at = Some(now);
        w.idle_since = now;
        let slot = w.slot;
        let caps = w.capabilities.clone();
        if let Some(s) = self.roster.slots.get_mut(&slot) {
            s.caps = caps;
        }

        self.sample_worker(wn, now);
        if let Some(op) = self.roster.slots.get_mut(&slot).and_then(|s| s.op.take()) {
            self.op_worker_done(op, true);
        }
        self.finish_ops();
    }

    /// A worker answered task `task_id`: the in-flight bookkeeping, the run time of its
    /// type, then the settlement or the failed attempt, and what the worker does next.
    fn on_reply(&mut self, wn: WorkerNo, task_id: &str, outcome: Result<&str, &WorkerError<'_>>, reported_ms: Option<f64>) {
        let Some(seq) = TaskQueue::<PoolTask>::seq_of(task_id) else {
            return;
        };
        let now = Instant::now();
        let Some(done) = self.take_in_flight(wn, seq, task_id, now) else {
            return;
        };
        if done.abandoned {
            // A late reply from an attempt that already timed out or was cancelled:
            // the worker is free again, and the message settles nothing.
            self.after_task(wn);
            return;
        }
        let duration = done.started.map(|s| now.duration_since(s).as_millis() as u64).unwrap_or(0);
        let measured = reported_ms
            .filter(|d| d.is_finite() && *d >= 0.0)
            .or_else(|| done.started.map(|s| now.duration_since(s).as_secs_f64() * 1000.0));
        if let Some(ms) = measured {
            self.learn_run_time(seq, ms);
        }
        match outcome {
            Ok(raw) => {
                let run = Run {
                    duration,
                    run_ms: measured.unwrap_or(duration as f64),
                    reused: done.reused,
                };
                if !self.reply_completed(wn, seq, task_id, raw, run) {
                    return;
                }
            }
            Err(e) => self.reply_failed(wn, seq, e, duration),
        }
        self.after_task(wn);
    }

    /// Takes the entry of `seq` off the worker's in-flight list; when it was the head,
    /// the next one becomes the running task with its own deadline (or the worker goes
    /// idle). None when the worker does not hold `seq`.
    fn take_in_flight(&mut self, wn: WorkerNo, seq: u64, task_id: &str, now: Instant) -> Option<Answered> {
        let w = self.roster.workers.get_mut(&wn)?;
        let Some(pos) = w.in_flight.iter().position(|f| f.seq == seq) else {
            tracing::debug!("discarding a reply for {task_id} that {} does not hold", w.id);
            return None;
        };
        let entry = w.remove_in_flight(pos).expect("position is valid");
        let was_head = pos == 0;
        // A task sent ahead ran right before its reply: its start is not known.
        let started = if was_head { w.head_started } else { Some(now) };
        if was_head {
            w.abandon_deadline = None;
            match w.in_flight.front().map(|f| f.seq) {
                Some(next) => {
                    let t = self.queue.get(next).map(|r| r.timeout_ms).unwrap_or(self.cfg.task_timeout);
                    w.head_started = Some(now);
                    w.head_deadline = Some(now + Duration::from_millis(t));
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
        if let Some(d) = w.head_deadline {
            self.note_deadline(d);
        }
        Some(Answered {
            abandoned: entry.abandoned,
            started,
            reused,
        })
    }

    /// Folds a measured run time into its task type's moving average (what prefetch
    /// and the spin budget predict from).
    fn learn_run_time(&mut self, seq: u64, ms: f64) {
        let Some(rec) = self.queue.get(seq) else { return };
        let key = rec.data.type_json.as_str();
        match self.sched.type_avg.get_mut(key) {
            Some(avg) => *avg = moving_average(*avg, ms),
            None => {
                if self.sched.type_avg.len() >= TYPE_AVG_MAX_TYPES {
                    self.sched.type_avg.clear();
                }
                self.sched.type_avg.insert(key.to_string(), ms);
            }
        }
    }

    /// Settles a task the worker completed. False when the task was no longer live
    /// (then nothing more happens for this reply).
    fn reply_completed(&mut self, wn: WorkerNo, seq: u64, task_id: &str, raw: &str, run: Run) -> bool {
        if self.queue.complete(seq).is_none() {
            return false;
        }
        let Run { duration, run_ms, reused } = run;
        self.metrics.tasks.completed += 1;
        self.metrics.run.observe(run_ms / 1000.0);
        if reused {
            self.metrics.tasks.reused += 1;
        }
        if let Some(w) = self.roster.workers.get(&wn) {
            self.health.record_failure(&w.id, false);
        }
        if self.effects.task_events {
            let wid = self.roster.workers.get(&wn).map(|w| w.id.clone()).unwrap_or_default();
            self.emit(
                "task-completed",
                json!({ "taskId": task_id, "workerId": wid, "duration": duration, "workerReused": reused }),
            );
        }
        self.settle_ok(seq, raw);
        self.slot_stable(wn);
        true
    }

    /// A task failed on the worker: this attempt fails (retried unless the failure
    /// cannot go away on retry).
    fn reply_failed(&mut self, wn: WorkerNo, seq: u64, e: &WorkerError<'_>, duration: u64) {
        let wid = self.roster.workers.get(&wn).map(|w| w.id.clone()).unwrap_or_default();
        let message = e.message.as_deref().unwrap_or("Task failed").to_string();
        let handler_code = e.code_string();
        let code = classify_failure(handler_code.as_deref(), &message, e.name.as_deref());
        let mut err = CoreError::new(code, message)
            .with_worker(&wid)
            .with_stack(e.stack.as_ref().map(|s| s.to_string()));
        err.extra.handler_name = e.name.as_ref().map(|n| n.to_string());
        err.extra.backoff_delay = e.backoff_delay.filter(|d| d.is_finite());
        if handler_code.as_deref().is_some_and(|c| c != code.as_str()) {
            err.extra.handler_code = handler_code;
        }
        self.health.record_failure(&wid, true);
        self.slot_stable(wn);
        // A missing handler will not appear on retry: fail at once.
        let retryable = code != Code::NoHandler;
        self.attempt_failed(seq, err, duration, retryable);
    }

    /// A worker that completed a task is stable: its slot's unstable count resets.
    fn slot_stable(&mut self, wn: WorkerNo) {
        if let Some(w) = self.roster.workers.get(&wn) {
            if let Some(s) = self.roster.slots.get_mut(&w.slot) {
                s.unstable = 0;
            }
        }
    }

    /// After a reply: recycle, drain or retire the worker when it asked for that.
    fn after_task(&mut self, wn: WorkerNo) {
        let Some(w) = self.roster.workers.get(&wn) else { return };
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

/// What `take_in_flight` found about the attempt a reply answers.
struct Answered {
    /// The attempt was given up already (timeout, cancel): the reply settles nothing.
    abandoned: bool,
    started: Option<Instant>,
    /// The worker had completed tasks before this one.
    reused: bool,
}

/// How a completed attempt ran.
struct Run {
    /// Milliseconds from its start (as the pool saw it) to the reply.
    duration: u64,
    /// Its run time for the metrics: the worker's own measure when it sent one.
    run_ms: f64,
    reused: bool,
}

/// The next moving average of a task type's run time after a run of `ms`.
fn moving_average(avg: f64, ms: f64) -> f64 {
    avg * (1.0 - TYPE_AVG_WEIGHT) + ms * TYPE_AVG_WEIGHT
}

/// The pool's error code for a task a worker reports failed: a missing handler (by
/// its code, or the message of workers that predate the code), an abort, or a plain
/// task failure.
fn classify_failure(handler_code: Option<&str>, message: &str, name: Option<&str>) -> Code {
    if handler_code == Some("ERR_NO_HANDLER") || message.starts_with("No handler registered for task type") {
        Code::NoHandler
    } else if name == Some("AbortError") {
        Code::Aborted
    } else {
        Code::TaskFailed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_by_code_then_message_then_name() {
        assert_eq!(classify_failure(Some("ERR_NO_HANDLER"), "whatever", None), Code::NoHandler);
        assert_eq!(
            classify_failure(None, "No handler registered for task type: x", None),
            Code::NoHandler
        );
        assert_eq!(classify_failure(Some("E_MINE"), "boom", Some("AbortError")), Code::Aborted);
        assert_eq!(classify_failure(Some("E_MINE"), "boom", Some("TypeError")), Code::TaskFailed);
        assert_eq!(classify_failure(None, "boom", None), Code::TaskFailed);
    }

    #[test]
    fn the_moving_average_weighs_the_newest_run_by_a_fifth() {
        assert_eq!(moving_average(10.0, 10.0), 10.0);
        assert!((moving_average(10.0, 20.0) - 12.0).abs() < 1e-12);
        // Same arithmetic as before the constant was named.
        assert_eq!(moving_average(3.7, 1.3), 3.7 * 0.8 + 1.3 * 0.2);
    }
}
