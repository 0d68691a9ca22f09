//! Shutting the pool down: graceful (drain the queue and the running tasks, then
//! close the workers, bounded by `shutdownTimeout`) or immediate (reject what is
//! live, close now), and the end of it once the last worker has exited.

use super::lifecycle::WORKER_EXIT_WAIT;
use super::state::{InitFailure, Kill, KillReason, KillStep, PendingOp, Phase, Retire, State, WorkerNo};
use crate::error::{Code, CoreError};
use crate::protocol;
use serde_json::json;
use std::time::{Duration, Instant};

impl State {
    pub(super) fn begin_shutdown(&mut self, graceful: bool, op: u64) {
        match self.phase {
            Phase::Shutdown => {
                self.op_done(op, Ok(json!({ "alreadyShutDown": true })));
                return;
            }
            Phase::ShuttingDown | Phase::Closing => {
                if !graceful && self.phase == Phase::ShuttingDown {
                    self.force_close();
                }
                self.ops.shutdown_waiters.push(op);
                return;
            }
            Phase::Created => {
                self.phase = Phase::Shutdown;
                self.emit("pool-shutdown", json!({}));
                self.op_done(op, Ok(json!({})));
                return;
            }
            _ => {}
        }
        // A pending initialize or scale operation ends now.
        for o in std::mem::take(&mut self.ops.pending) {
            let id = match o {
                PendingOp::Init { op, .. } | PendingOp::ScaleUp { op, .. } | PendingOp::ScaleDown { op, .. } => op,
            };
            self.op_done(id, Err(CoreError::new(Code::PoolShuttingDown, "Pool is shutting down")));
        }
        self.ops.shutdown_op = Some(op);
        self.health.set_monitoring(false);
        self.log(
            "info",
            &format!("Shutting down ({})", if graceful { "graceful" } else { "immediate" }),
        );
        if graceful {
            self.phase = Phase::ShuttingDown;
            let at = Instant::now() + Duration::from_millis(self.cfg.shutdown_timeout_ms);
            self.ops.shutdown_deadline = Some(at);
            self.note_deadline(at);
            self.maybe_close();
        } else {
            self.phase = Phase::ShuttingDown;
            self.force_close();
        }
    }

    /// Graceful shutdown: once nothing is queued or running, close the workers.
    pub(super) fn maybe_close(&mut self) {
        if self.phase != Phase::ShuttingDown {
            return;
        }
        let running = self.roster.workers.values().any(|w| w.in_flight.iter().any(|f| !f.abandoned));
        if self.queue.live() == 0 && !running {
            self.close_workers(true);
        }
    }

    /// Rejects everything still live and closes the workers now.
    pub(super) fn force_close(&mut self) {
        let err = CoreError::new(Code::PoolShutdown, "Pool was shut down before the task finished");
        for rec in self.queue.drain_all() {
            self.metrics.tasks.failed += 1;
            self.settle_err(rec.seq, &err);
        }
        for w in self.roster.workers.values_mut() {
            for f in w.in_flight.iter_mut() {
                f.abandoned = true;
            }
            w.head_deadline = None;
        }
        self.close_workers(false);
    }

    fn close_workers(&mut self, graceful: bool) {
        self.phase = Phase::Closing;
        self.ops.shutdown_deadline = None;
        let now = Instant::now();
        let wait = if graceful { WORKER_EXIT_WAIT } else { Duration::ZERO };
        let nums: Vec<WorkerNo> = self.roster.workers.keys().copied().collect();
        for n in nums {
            let w = self.roster.workers.get_mut(&n).expect("worker exists");
            w.retiring.get_or_insert(Retire::Shutdown);
            w.out.push(&protocol::shutdown(graceful));
            if graceful {
                let at = now + wait;
                w.kill = Some(Kill::new(KillReason::Shutdown, KillStep::Sigterm, at));
                self.note_deadline(at);
            } else {
                w.kill = Some(Kill::new(KillReason::Shutdown, KillStep::Sigterm, now));
                self.kill(n, KillReason::Shutdown);
            }
        }
        self.check_closed();
    }

    pub(super) fn check_closed(&mut self) {
        if self.phase != Phase::Closing || !self.roster.workers.is_empty() {
            return;
        }
        self.phase = Phase::Shutdown;
        if self.fifo() {
            crate::fifo::release_dir(&self.cfg.fifo_dir);
        }
        if let Some(InitFailure { op, err }) = self.ops.init_failure.take() {
            // A failed initialize leaves the pool as it was before: it may be retried.
            self.phase = Phase::Created;
            self.op_done(op, Err(err));
            for op in std::mem::take(&mut self.ops.shutdown_waiters) {
                self.op_done(op, Ok(json!({})));
            }
            return;
        }
        self.log("info", "Pool shutdown complete");
        self.emit("pool-shutdown", json!({}));
        if let Some(op) = self.ops.shutdown_op.take() {
            self.op_done(op, Ok(json!({})));
        }
        for op in std::mem::take(&mut self.ops.shutdown_waiters) {
            self.op_done(op, Ok(json!({})));
        }
    }
}
