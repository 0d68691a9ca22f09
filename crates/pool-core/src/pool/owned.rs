//! Tasks the core submits itself (the shared queue's jobs, `crate::shared`): they run
//! like any task, but their outcome goes to a Rust channel instead of an event record
//! for JavaScript, so the JS thread does no work for them at all.
//!
//! Their sequence numbers come from a range JavaScript never uses (it numbers its
//! tasks from 1 up to 2^53 − 1), so settling looks them up only when they can be one.

use super::state::{State, WorkerNo};
use super::{Pool, PoolTask};
use crate::balance;
use crate::error::{CoreError, CoreResult};
use crate::protocol::{self, Incoming};
use crate::queue::Now;
use tokio::sync::{mpsc, oneshot};

/// The first sequence number of a core-owned task.
pub(super) const OWNED_SEQ_BASE: u64 = 1 << 60;

/// A settled owned task: the handler's result as raw JSON text, or the error.
pub type Settled = Result<String, CoreError>;

/// A worker's request about the job its owned task runs (a `job-call` message):
/// answer it with `Pool::answer_call`.
#[derive(Debug)]
pub struct JobCall {
    worker: WorkerNo,
    /// The worker's id for the call, as JSON text (echoed back).
    call_id: String,
    /// What to do: `progress`, `log`, `update-data`, `children-values`.
    pub op: String,
    /// Its argument, as JSON text (`null` when absent).
    pub value: String,
}

/// See `Pool::room`.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    pub capable: usize,
    pub live: usize,
    pub short: bool,
}

impl State {
    /// Sends a settled owned task's outcome to its owner; false when `seq` is not one.
    pub(super) fn settle_owned(&mut self, seq: u64, outcome: impl FnOnce() -> Settled) -> bool {
        if seq < OWNED_SEQ_BASE {
            return false;
        }
        self.owned_calls.remove(&seq);
        match self.owned.remove(&seq) {
            Some(tx) => {
                // The owner may have gone (it stopped waiting): nothing to tell then.
                let _ = tx.send(outcome());
                true
            }
            None => false,
        }
    }

    /// A `job-call` from worker `wn`: passed to the owner of the task it names when the
    /// task is an owned one that worker runs and its owner takes calls; otherwise
    /// answered at once with `ERR_NOT_SUPPORTED`.
    pub(super) fn on_job_call(&mut self, wn: WorkerNo, msg: &Incoming<'_>) {
        let Some(call_id) = msg.call_id.map(|c| c.get().to_string()) else {
            return;
        };
        let call = JobCall {
            worker: wn,
            call_id,
            op: msg.op.as_deref().unwrap_or("").to_string(),
            value: msg.value.map(|v| v.get()).unwrap_or("null").to_string(),
        };
        // The owner of the task named, if this worker runs it (not abandoned).
        let owner = msg
            .task_id
            .as_deref()
            .and_then(crate::queue::TaskQueue::<PoolTask>::seq_of)
            .filter(|seq| {
                self.roster
                    .workers
                    .get(&wn)
                    .is_some_and(|w| w.in_flight.iter().any(|f| f.seq == *seq && !f.abandoned))
            })
            .and_then(|seq| self.owned_calls.get(&seq));
        let refused = match owner {
            Some(tx) => match tx.send(call) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            None => call,
        };
        let answer = protocol::job_call_result(
            &refused.call_id,
            Err((
                "ERR_NOT_SUPPORTED",
                "job calls are answered only for jobs of a shared queue that this worker is running",
            )),
        );
        if let Some(w) = self.roster.workers.get(&wn) {
            w.out.push(&answer);
        }
    }

    /// Live workers (not on their way out) that have every capability in `caps`.
    pub(super) fn capable_workers(&self, caps: &[String]) -> usize {
        self.roster
            .workers
            .values()
            .filter(|w| w.retiring.is_none() && balance::can_serve(caps, &w.capabilities))
            .count()
    }

    /// Of those, the ones that said they are ready (a worker still starting may never
    /// be: its script may not load).
    fn ready_workers(&self, caps: &[String]) -> usize {
        self.roster
            .workers
            .values()
            .filter(|w| w.ready && w.retiring.is_none() && balance::can_serve(caps, &w.capabilities))
            .count()
    }
}

impl Pool {
    /// Submits a task whose outcome is sent to `done` (never to JavaScript); returns
    /// its sequence number (for `cancel`). `timeout_ms` `None` is `taskTimeout`; the
    /// task is tried once (`maxRetries` 0): its owner decides about retries. With
    /// `calls`, the worker's `job-call`s for it go there until it settles.
    pub fn submit_owned(
        &self,
        task: PoolTask,
        priority: f64,
        timeout_ms: Option<u64>,
        done: oneshot::Sender<Settled>,
        calls: Option<mpsc::UnboundedSender<JobCall>>,
    ) -> CoreResult<u64> {
        self.with(|st| {
            st.require_running()?;
            let seq = st.next_owned;
            st.next_owned += 1;
            let line = Ok(super::tasks::SubmitLine {
                priority,
                timeout_ms,
                max_retries: Some(0),
                task,
            });
            st.submit_line(seq, line, Now::read())?;
            st.owned.insert(seq, done);
            if let Some(c) = calls {
                st.owned_calls.insert(seq, c);
            }
            st.dispatch();
            Ok(seq)
        })
    }

    /// Answers a worker's `job-call` (nothing happens if that worker is gone).
    pub fn answer_call(&self, call: &JobCall, outcome: Result<&str, (&str, &str)>) {
        let answer = protocol::job_call_result(&call.call_id, outcome);
        let st = self.lock();
        if let Some(w) = st.roster.workers.get(&call.worker) {
            w.out.push(&answer);
        }
    }

    /// How many live workers could run a task requiring `caps`.
    pub fn capable_workers(&self, caps: &[String]) -> usize {
        self.lock().capable_workers(caps)
    }

    /// The capability sets of the live workers (each sorted, without repeats).
    pub fn capability_sets(&self) -> Vec<Vec<String>> {
        let st = self.lock();
        let mut sets: Vec<Vec<String>> = Vec::new();
        for w in st.roster.workers.values().filter(|w| w.retiring.is_none()) {
            let mut caps = w.capabilities.clone();
            caps.sort();
            caps.dedup();
            if !sets.contains(&caps) {
                sets.push(caps);
            }
        }
        sets
    }

    /// What the shared queue's holding rule looks at, under one lock: the ready workers
    /// that can run a task requiring `caps`, all ready workers, and whether some worker
    /// runs a task and every running task is predicted (from its type's history) to end
    /// within `short_ms` of its start.
    pub fn room(&self, caps: &[String], short_ms: f64) -> Room {
        let st = self.lock();
        let (mut busy, mut short) = (false, true);
        for w in st.roster.workers.values() {
            if let Some(head) = w.in_flight.front() {
                busy = true;
                // An unknown type predicts infinity (and NaN never passes).
                short &= head.pred <= short_ms;
            }
        }
        Room {
            capable: st.ready_workers(caps),
            live: st.ready_workers(&[]),
            short: busy && short,
        }
    }

    /// Live workers, in all.
    pub fn live_workers(&self) -> usize {
        self.capable_workers(&[])
    }

    /// The worker replies are read by the core's own threads only (not also by the JS
    /// thread's event loop): for a pool whose tasks are the core's own. Takes effect
    /// for workers started afterwards.
    pub fn set_core_reads(&self, on: bool) {
        self.lock().core_reads = on;
    }

    /// Ends an operation JavaScript waits for (an `op` record).
    pub fn finish_op(&self, op: u64, result: Result<serde_json::Value, CoreError>) {
        self.with(|st| st.op_done(op, result));
    }

    /// A log line of the pool from `component` (a `log` record for JavaScript, and tracing).
    pub fn log(&self, component: &str, level: &str, message: &str) {
        self.with(|st| st.log_as(component, level, message));
    }
}
