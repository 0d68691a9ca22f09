//! A task's way through the queue apart from dispatch: admitting a submitted line,
//! rejecting what no worker can serve, and the outcomes of an attempt other than
//! success: failed (retried with backoff or settled), cancelled, abandoned (the
//! worker is asked to stop it), failed because its worker is being taken down; and
//! taking dead letters out for resubmission.

use super::state::{Phase, State, WorkerNo};
use super::PoolTask;
use crate::error::{Code, CoreError, CoreResult};
use crate::protocol;
use crate::queue::{Attempt, FailOutcome, Now};
use crate::util::epoch_ms;
use serde_json::json;
use std::time::{Duration, Instant};

impl State {
    /// Admits one task of a submit batch (`Pool::submit_batch`), decoded by
    /// `decode_submit_line`.
    pub(super) fn submit_line(&mut self, seq: u64, line: CoreResult<SubmitLine>, now: Now) -> CoreResult<()> {
        let SubmitLine {
            priority,
            timeout_ms,
            max_retries,
            task,
        } = line?;
        let requires = &task.requires;
        if self.queue.contains(seq) {
            return Err(CoreError::new(
                Code::InvalidTask,
                format!("Task sequence number {seq} is already in use"),
            ));
        }
        if let Some(max) = self.cfg.max_queue_size {
            if self.queue.depth() >= max {
                self.sched.queue_full_seen = true;
                return Err(CoreError::new(
                    Code::QueueFull,
                    format!("Queue is full: maxQueueSize is {max}; retry later or raise maxQueueSize"),
                ));
            }
        }
        if !requires.is_empty() && !self.any_worker_could_serve(requires) {
            return Err(CoreError::new(
                Code::NoCapableWorker,
                format!("No worker of this pool has every capability the task requires: {requires:?}"),
            ));
        }
        self.queue.enqueue_as(seq, task, priority, timeout_ms, max_retries, now);
        self.metrics.tasks.submitted += 1;
        Ok(())
    }

    /// Rejects waiting tasks that no slot can serve any more (the last capable worker
    /// was scaled down, idled out or given up): a task never waits forever.
    pub(super) fn reject_unservable(&mut self) {
        if !matches!(self.phase, Phase::Running | Phase::ShuttingDown) {
            return;
        }
        for seq in self.queue.waiting() {
            let Some(rec) = self.queue.get(seq) else { continue };
            if rec.data.requires.is_empty() || self.any_worker_could_serve(&rec.data.requires) {
                continue;
            }
            let err = CoreError::new(
                Code::NoCapableWorker,
                format!(
                    "No worker of this pool has every capability the task requires any more: {:?}",
                    rec.data.requires
                ),
            );
            self.queue.remove(seq);
            self.metrics.tasks.failed += 1;
            self.settle_err(seq, &err);
        }
    }

    /// One attempt of `seq` failed with `err`: retry with backoff or settle.
    pub(super) fn attempt_failed(&mut self, seq: u64, err: CoreError, duration: u64, retryable: bool) {
        let Some(rec) = self.queue.get_mut(seq) else { return };
        if !retryable {
            rec.max_retries = rec.retries;
        }
        let task_id = rec.id.clone();
        let attempt = Attempt {
            timestamp: epoch_ms(),
            error: err.message.clone(),
            code: err.code.as_str().to_string(),
            stack: err.extra.stack.clone(),
            worker_id: err.extra.worker_id.clone(),
        };
        let outcome = self.queue.fail(seq, attempt);
        let retried = matches!(outcome, Some(FailOutcome::Retry { .. }));
        self.emit(
            "task-failed",
            json!({ "taskId": task_id, "workerId": err.extra.worker_id, "error": err.message, "code": err.code.as_str(), "duration": duration, "retried": retried }),
        );
        match outcome {
            Some(FailOutcome::Retry { .. }) => {
                if let Some(at) = self.queue.next_retry_at() {
                    self.note_deadline(at);
                }
            }
            Some(FailOutcome::Dead) => {
                self.metrics.tasks.failed += 1;
                self.settle_err(seq, &err);
            }
            None => {}
        }
    }

    pub(super) fn cancel_task(&mut self, seq: u64, reason: &str) -> bool {
        let Some(rec) = self.queue.get(seq) else { return false };
        let id = rec.id.clone();
        let err = CoreError::aborted(format!(
            "Task {id} was aborted{}",
            if reason.is_empty() { String::new() } else { format!(": {reason}") }
        ));
        // Running somewhere?
        let holder = self
            .roster
            .workers
            .iter()
            .find(|(_, w)| w.in_flight.iter().any(|f| f.seq == seq && !f.abandoned))
            .map(|(&n, _)| n);
        if let Some(wn) = holder {
            self.abandon(wn, seq, "cancelled");
        }
        self.queue.remove(seq);
        self.metrics.tasks.failed += 1;
        self.settle_err(seq, &err);
        self.dispatch();
        true
    }

    /// Gives up on an attempt a worker holds: the worker is asked to stop it and gets
    /// the grace period to report back before it is killed.
    pub(super) fn abandon(&mut self, wn: WorkerNo, seq: u64, reason: &str) {
        let grace = Duration::from_millis(self.cfg.grace_period_ms);
        let now = Instant::now();
        let id = self.queue.get(seq).map(|r| r.id.clone());
        let Some(w) = self.roster.workers.get_mut(&wn) else { return };
        let Some(pos) = w.in_flight.iter().position(|f| f.seq == seq && !f.abandoned) else {
            return;
        };
        if pos > 0 && w.cancel {
            // Not started yet: the worker drops it and answers at once.
            w.in_flight[pos].abandoned = true;
        } else if pos > 0 {
            w.remove_in_flight(pos);
        } else {
            w.in_flight[0].abandoned = true;
            w.head_deadline = None;
            let d = now + grace;
            w.abandon_deadline = Some(d);
            self.note_deadline(d);
        }
        let w = self.roster.workers.get(&wn).expect("worker exists");
        if w.cancel {
            if let Some(tid) = id {
                w.out.push(&protocol::cancel_task(&tid, reason));
            }
        }
    }

    /// Fails the running attempt of a worker that is being taken down now.
    pub(super) fn fail_head(&mut self, wn: WorkerNo, err: CoreError) {
        let Some(w) = self.roster.workers.get_mut(&wn) else { return };
        let Some(head) = w.in_flight.front().copied() else { return };
        if head.abandoned {
            return;
        }
        w.in_flight[0].abandoned = true;
        w.head_deadline = None;
        let dur = w.head_started.map(|s| s.elapsed().as_millis() as u64).unwrap_or(0);
        self.attempt_failed(head.seq, err, dur, true);
    }
}

/// One task of a submit batch, as `encodeSubmitLine` in lib/wire.js encodes it (the
/// table is in docs/ARCHITECTURE.md, "Submit line"): tab-separated `seq, priority,
/// timeout, maxRetries, typeJson, payloadJson, metadataJson, requiresJson`; empty =
/// absent.
#[derive(Debug)]
pub(super) struct SubmitLine {
    pub(super) priority: f64,
    pub(super) timeout_ms: Option<u64>,
    pub(super) max_retries: Option<u32>,
    pub(super) task: PoolTask,
}

/// Decodes one submit line, the counterpart of `encodeSubmitLine` in lib/wire.js:
/// its sequence number, and its task or why the task is malformed. `None` for a line
/// without a sequence number (nothing to answer to; it is ignored).
pub(super) fn decode_submit_line(line: &str) -> Option<(u64, CoreResult<SubmitLine>)> {
    let mut f = line.split('\t');
    let seq = f.next()?.parse::<u64>().ok()?;
    Some((seq, decode_submit_fields(&mut f)))
}

/// The fields of a submit line that follow its sequence number.
fn decode_submit_fields<'a>(f: &mut impl Iterator<Item = &'a str>) -> CoreResult<SubmitLine> {
    let bad = |what: &str| CoreError::new(Code::InvalidTask, format!("Invalid task: malformed {what} in a submit batch"));
    // What lib/task-validate.js lets through: a finite priority, a finite positive
    // timeout. Rust's float parser also takes "NaN" and "inf", which JS never sends.
    let priority: f64 = f
        .next()
        .and_then(|x| x.parse().ok())
        .filter(|p: &f64| p.is_finite())
        .ok_or_else(|| bad("priority"))?;
    let timeout_ms = match f.next() {
        Some("") | None => None,
        Some(x) => match x.parse::<f64>() {
            Ok(t) if t.is_finite() && t > 0.0 => Some(t.ceil() as u64),
            _ => return Err(bad("timeout")),
        },
    };
    let max_retries = match f.next() {
        Some("") | None => None,
        Some(x) => Some(x.parse::<u32>().map_err(|_| bad("maxRetries"))?),
    };
    let type_json = f.next().filter(|x| !x.is_empty()).ok_or_else(|| bad("type"))?.to_string();
    let payload_json = f.next().filter(|x| !x.is_empty()).unwrap_or("null").to_string();
    let metadata_json = f.next().filter(|x| !x.is_empty()).map(str::to_string);
    let requires: Vec<String> = match f.next() {
        Some("") | None => Vec::new(),
        Some(x) => serde_json::from_str(x).map_err(|_| bad("requires"))?,
    };
    Ok(SubmitLine {
        priority,
        timeout_ms,
        max_retries,
        task: PoolTask {
            type_json,
            payload_json,
            metadata_json,
            requires,
            job_json: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> CoreResult<SubmitLine> {
        decode_submit_fields(&mut line.split('\t'))
    }

    #[test]
    fn a_line_starts_with_its_sequence_number() {
        let (seq, l) = decode_submit_line("9007199254740991\t1\t\t\t\"t\"").unwrap();
        assert_eq!(seq, 9_007_199_254_740_991);
        assert_eq!(l.unwrap().task.type_json, "\"t\"");
        assert!(decode_submit_line("x\t1\t\t\t\"t\"").is_none());
        let (seq, l) = decode_submit_line("3\thigh").unwrap();
        assert!(seq == 3 && l.unwrap_err().message.contains("priority"));
    }

    #[test]
    fn a_full_submit_line_decodes_every_field() {
        let l = parse("2.5\t1500.2\t4\t\"resize\"\t{\"w\":1}\t{\"user\":\"a\"}\t[\"gpu\"]").unwrap();
        assert_eq!(l.priority, 2.5);
        assert_eq!(l.timeout_ms, Some(1501));
        assert_eq!(l.max_retries, Some(4));
        assert_eq!(l.task.type_json, "\"resize\"");
        assert_eq!(l.task.payload_json, "{\"w\":1}");
        assert_eq!(l.task.metadata_json.as_deref(), Some("{\"user\":\"a\"}"));
        assert_eq!(l.task.requires, vec!["gpu".to_string()]);
    }

    #[test]
    fn empty_fields_are_absent() {
        let l = parse("0\t\t\t\"t\"\t\t\t").unwrap();
        assert_eq!((l.timeout_ms, l.max_retries), (None, None));
        assert_eq!(l.task.payload_json, "null");
        assert!(l.task.metadata_json.is_none() && l.task.requires.is_empty());
        // Trailing fields may be left out altogether.
        assert!(parse("1\t\t\t\"t\"").is_ok());
    }

    #[test]
    fn a_malformed_field_is_named() {
        let msg = |line: &str| parse(line).unwrap_err().message;
        assert!(msg("high\t\t\t\"t\"").contains("priority"));
        assert!(msg("1\tsoon\t\t\"t\"").contains("timeout"));
        // What JS never sends is refused, not read as 0 ms or an unordered priority.
        for t in ["-5", "0", "NaN", "inf"] {
            assert!(msg(&format!("1\t{t}\t\t\"t\"")).contains("timeout"), "timeout {t}");
        }
        for p in ["NaN", "inf", "-infinity"] {
            assert!(msg(&format!("{p}\t\t\t\"t\"")).contains("priority"), "priority {p}");
        }
        assert!(msg("1\t\t-1\t\"t\"").contains("maxRetries"));
        assert!(msg("1\t\t\t").contains("type"));
        assert!(msg("1\t\t\t\"t\"\t\t\t{}").contains("requires"));
    }
}
