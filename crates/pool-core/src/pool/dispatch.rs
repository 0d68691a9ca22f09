//! Giving queued tasks to workers: the run-time prediction per task type, which
//! worker may take a task now (including prefetch, tasks sent ahead to a busy
//! worker), picking the worker by the load-balancing strategy, recording the
//! assignment, and writing the execute messages.

use super::state::{InFlight, Phase, State, Worker, WorkerNo};
use super::supervise::POLLER_BACKSTOP;
use crate::balance::{self, Candidate};
use crate::protocol;
use serde_json::json;
use std::time::{Duration, Instant};

/// Work (by average run time) a worker may hold queued ahead of the running task.
const PREFETCH_BUDGET_MS: f64 = 2.0;

/// Largest payload sent ahead, and most payload bytes a worker may hold ahead.
const PREFETCH_MAX_PAYLOAD: usize = 64 * 1024;
const PREFETCH_MAX_BYTES: usize = 1024 * 1024;

/// Queued tasks per worker before any is sent ahead.
const PREFETCH_MIN_DEPTH: u64 = 32;
/// How far down the queue a free worker looks for a task it can serve when the head
/// needs a capability it lacks.
const CAPABILITY_LOOKAHEAD: usize = 256;

impl State {
    /// Predicted run time of a queued task, from its type's history.
    pub(super) fn predict(&self, seq: u64) -> f64 {
        self.queue.get(seq).map_or(f64::INFINITY, |r| self.predict_type(&r.data.type_json))
    }

    /// Predicted run time (ms) of a task of this type; infinite when never seen.
    fn predict_type(&self, type_json: &str) -> f64 {
        self.sched.type_avg.get(type_json).copied().unwrap_or(f64::INFINITY)
    }

    /// Whether worker `w` may take one more task predicted to run `pred` ms now.
    ///
    /// An idle worker always may. A busy one gets tasks sent ahead (prefetch) only if
    /// it batches, the queue is deep, and everything that would wait inside it (the
    /// rest of the running task plus what is already ahead plus this task) is
    /// predicted to fit in PREFETCH_BUDGET_MS (`prefetch_allowed`). So a task is never
    /// committed behind a long or unknown task, and priorities and fairness hold
    /// within that budget.
    fn can_take(&self, w: &Worker, pred: f64, bytes: usize, now: Instant) -> bool {
        if !w.ready || w.retiring.is_some() || w.kill.is_some() {
            return false;
        }
        if let Some(max) = self.cfg.max_tasks_per_worker {
            // A worker due for recycling takes no more than its quota.
            if w.tasks_executed + w.in_flight.len() as u64 >= max {
                return false;
            }
        }
        let Some(head) = w.in_flight.front() else { return true };
        if !w.batch || w.in_flight.len() >= self.cfg.prefetch as usize || head.abandoned {
            return false;
        }
        let held = Held {
            count: w.in_flight.len(),
            head_pred: head.pred,
            head_elapsed_ms: w.head_started.map(|t| now.duration_since(t).as_secs_f64() * 1000.0).unwrap_or(0.0),
            ahead_ms: w.ahead_ms,
            ahead_bytes: w.ahead_bytes,
        };
        let backlog = Backlog {
            depth: self.queue.depth(),
            workers: self.roster.workers.len().max(1) as u64,
        };
        prefetch_allowed(backlog, held, pred, bytes)
    }

    pub(super) fn dispatch(&mut self) {
        if !matches!(self.phase, Phase::Running | Phase::ShuttingDown) {
            return;
        }
        let mut sends: Vec<(WorkerNo, Vec<u64>)> = Vec::new();
        let now = Instant::now();
        while let Some(seq) = self.queue.peek() {
            // Looking past the head only helps when the head waits for a capability.
            let head_requires = self.queue.get(seq).is_some_and(|r| !r.data.requires.is_empty());
            let target = self
                .pick_worker(seq, now)
                .map(|w| (w, seq))
                .or_else(|| if head_requires { self.pick_any_task(now) } else { None });
            let Some((wn, seq)) = target else { break };
            self.queue.take(seq);
            self.sched.rr_last = wn;
            match sends.iter_mut().find(|(w, _)| *w == wn) {
                Some((_, v)) => v.push(seq),
                None => sends.push((wn, vec![seq])),
            }
            self.assign(wn, seq, now);
        }
        for (wn, seqs) in sends {
            self.send_tasks(wn, &seqs);
        }
        if self.sched.queue_full_seen && self.queue.depth() == 0 {
            self.sched.queue_full_seen = false;
            self.emit("drain", json!({}));
        }
    }

    fn pick_worker(&self, seq: u64, now: Instant) -> Option<WorkerNo> {
        let rec = self.queue.get(seq)?;
        let requires: &[String] = &rec.data.requires;
        let pred = self.predict_type(&rec.data.type_json);
        let bytes = rec.data.payload_json.len();
        for idle_only in [true, false] {
            let cands = self
                .roster
                .workers
                .values()
                .filter(|w| (!idle_only || w.in_flight.is_empty()) && self.can_take(w, pred, bytes, now))
                .map(|w| Candidate {
                    num: w.num.0,
                    in_flight: w.in_flight.len(),
                    last_used: w.last_used,
                    capabilities: &w.capabilities,
                });
            if let Some(n) = balance::choose(self.cfg.load_balancing, requires, cands, self.sched.rr_last.0) {
                return Some(WorkerNo(n));
            }
        }
        None
    }

    /// When the first queued task can't run anywhere now (capabilities), look further
    /// down the queue for a task a free worker can serve.
    fn pick_any_task(&self, now: Instant) -> Option<(WorkerNo, u64)> {
        let free = self.roster.workers.values().any(|w| self.can_take(w, 0.0, 0, now));
        if !free {
            return None;
        }
        for seq in self.queue.peek_many(CAPABILITY_LOOKAHEAD).into_iter().skip(1) {
            if let Some(w) = self.pick_worker(seq, now) {
                return Some((w, seq));
            }
        }
        None
    }

    fn assign(&mut self, wn: WorkerNo, seq: u64, now: Instant) {
        let (timeout, queued_ms) = match self.queue.get(seq) {
            Some(r) => (r.timeout_ms, now.duration_since(r.enqueued_instant).as_millis() as u64),
            None => return,
        };
        let task_events = self.effects.task_events;
        let pred = self.predict(seq);
        let bytes = self.queue.get(seq).map(|r| r.data.payload_json.len()).unwrap_or(0);
        self.sched.uses += 1;
        let uses = self.sched.uses;
        let Some(w) = self.roster.workers.get_mut(&wn) else { return };
        w.last_used = uses;
        if !w.in_flight.is_empty() {
            w.ahead_ms += pred;
            w.ahead_bytes += bytes;
        }
        w.in_flight.push_back(InFlight {
            seq,
            abandoned: false,
            pred,
            bytes,
        });
        let mut deadline = None;
        if w.in_flight.len() == 1 {
            let d = now + Duration::from_millis(timeout);
            w.head_started = Some(now);
            w.head_deadline = Some(d);
            deadline = Some(d);
        }
        w.last_activity = w.last_activity.max(now);
        self.metrics.wait.observe(queued_ms as f64 / 1000.0);
        if let Some(d) = deadline {
            self.note_deadline(d);
            if self.roster.workers.get(&wn).is_some_and(|w| w.polled_channel().is_some()) {
                self.note_deadline(now + POLLER_BACKSTOP);
            }
        }
        if task_events {
            let wid = self.roster.workers.get(&wn).map(|w| w.id.clone()).unwrap_or_default();
            let task_id = self.queue.get(seq).map(|r| r.id.clone()).unwrap_or_default();
            self.emit(
                "task-assigned",
                json!({ "taskId": task_id, "workerId": wid, "queuedTimeMs": queued_ms }),
            );
        }
    }

    fn send_tasks(&mut self, wn: WorkerNo, seqs: &[u64]) {
        let Some(w) = self.roster.workers.get(&wn) else { return };
        let mut buf = Vec::with_capacity(128 * seqs.len());
        let write_one = |buf: &mut Vec<u8>, seq: u64| {
            if let Some(r) = self.queue.get(seq) {
                protocol::write_task(
                    buf,
                    &r.id,
                    &r.data.type_json,
                    &r.data.payload_json,
                    r.timeout_ms,
                    r.data.job_json.as_deref(),
                );
            }
        };
        if seqs.len() > 1 && w.batch {
            buf.extend_from_slice(protocol::execute_batch_prefix());
            for (i, &seq) in seqs.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_one(&mut buf, seq);
            }
            buf.extend_from_slice(b"]}\n");
        } else {
            for &seq in seqs {
                buf.extend_from_slice(protocol::execute_task_prefix());
                write_one(&mut buf, seq);
                buf.extend_from_slice(b"}\n");
            }
        }
        w.out.push(&buf);
    }
}

/// The queue as prefetch sees it.
#[derive(Debug, Clone, Copy)]
struct Backlog {
    depth: u64,
    workers: u64,
}

/// What a busy worker holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// Tasks in flight, the running one included.
    count: usize,
    /// Predicted run time (ms) of the running task, and how long it has run.
    head_pred: f64,
    head_elapsed_ms: f64,
    /// Predicted work (ms) and payload bytes sent ahead of it.
    ahead_ms: f64,
    ahead_bytes: usize,
}

/// Whether one more task (predicted `pred` ms, `bytes` of payload) may be sent ahead
/// to a busy worker that batches.
fn prefetch_allowed(backlog: Backlog, held: Held, pred: f64, bytes: usize) -> bool {
    // Only a real backlog is spread ahead; tasks that trickle in wait in the queue,
    // where priorities decide.
    let n = backlog.workers;
    if backlog.depth < PREFETCH_MIN_DEPTH * n || held.count as u64 > backlog.depth / n {
        return false;
    }
    if held.head_pred > PREFETCH_BUDGET_MS || held.head_elapsed_ms > PREFETCH_BUDGET_MS {
        return false;
    }
    // Large payloads are not sent ahead: the replies of a batch share one message,
    // which maxMessageBytes bounds.
    if bytes > PREFETCH_MAX_PAYLOAD || held.ahead_bytes + bytes > PREFETCH_MAX_BYTES {
        return false;
    }
    let remaining = (held.head_pred - held.head_elapsed_ms).max(0.0);
    remaining + held.ahead_ms + pred <= PREFETCH_BUDGET_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEEP: Backlog = Backlog { depth: 1000, workers: 4 };
    const SHORT_HEAD: Held = Held {
        count: 1,
        head_pred: 0.2,
        head_elapsed_ms: 0.1,
        ahead_ms: 0.0,
        ahead_bytes: 0,
    };

    #[test]
    fn short_tasks_of_a_deep_queue_are_sent_ahead() {
        assert!(prefetch_allowed(DEEP, SHORT_HEAD, 0.3, 100));
        // Up to the budget, counting what is already ahead.
        let ahead = Held {
            ahead_ms: 1.5,
            ..SHORT_HEAD
        };
        assert!(!prefetch_allowed(DEEP, ahead, 0.5, 100));
        assert!(prefetch_allowed(DEEP, ahead, 0.3, 100));
    }

    #[test]
    fn a_shallow_queue_waits_where_priorities_decide() {
        let shallow = Backlog {
            depth: PREFETCH_MIN_DEPTH * 4 - 1,
            workers: 4,
        };
        assert!(!prefetch_allowed(shallow, SHORT_HEAD, 0.1, 10));
        // Nor does one worker hold more than its share of the queue.
        let share = Held { count: 251, ..SHORT_HEAD };
        assert!(!prefetch_allowed(DEEP, share, 0.1, 10));
    }

    #[test]
    fn nothing_goes_behind_a_long_or_unknown_task() {
        let long = Held {
            head_pred: 50.0,
            ..SHORT_HEAD
        };
        assert!(!prefetch_allowed(DEEP, long, 0.1, 10));
        let late = Held {
            head_elapsed_ms: PREFETCH_BUDGET_MS + 1.0,
            ..SHORT_HEAD
        };
        assert!(!prefetch_allowed(DEEP, late, 0.1, 10));
        assert!(!prefetch_allowed(DEEP, SHORT_HEAD, f64::INFINITY, 10));
        let unknown_head = Held {
            head_pred: f64::INFINITY,
            ..SHORT_HEAD
        };
        assert!(!prefetch_allowed(DEEP, unknown_head, 0.1, 10));
    }

    #[test]
    fn large_payloads_are_not_sent_ahead() {
        assert!(!prefetch_allowed(DEEP, SHORT_HEAD, 0.1, PREFETCH_MAX_PAYLOAD + 1));
        let full = Held {
            ahead_bytes: PREFETCH_MAX_BYTES - 10,
            ..SHORT_HEAD
        };
        assert!(!prefetch_allowed(DEEP, full, 0.1, 11));
        assert!(prefetch_allowed(DEEP, full, 0.1, 10));
    }
}
