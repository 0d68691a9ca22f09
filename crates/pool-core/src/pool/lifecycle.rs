//! A worker's end: retiring it (drain, then ask it to exit), killing it (SIGTERM, then
//! SIGKILL), a protocol error, and its exit: the tasks it held, the events, and the
//! decision to replace it, back off, or give its slot up.

use super::state::{Kill, KillReason, KillStep, Phase, Retire, State, WorkerNo};
use crate::error::{Code, CoreError};
use crate::process;
use crate::protocol;
use crate::util::signal_name;
use serde_json::json;
use std::time::{Duration, Instant};

/// How long a worker asked to shut down gracefully has to exit on its own (on top of
/// the grace period when it is retired), before it is sent SIGTERM.
pub(super) const WORKER_EXIT_WAIT: Duration = Duration::from_millis(5000);
/// The least time between SIGTERM and SIGKILL, whatever `gracePeriod` says.
const MIN_KILL_GRACE: Duration = Duration::from_millis(100);
/// A worker killed for a protocol error got SIGKILL at once; if it still has not exited
/// this much later it gets SIGKILL again.
const SIGKILL_REPEAT_PROTOCOL: Duration = Duration::from_secs(1);
/// The longest wait before an unstable slot is restarted (the backoff doubles from
/// `restartCooldown` up to this).
const RESTART_BACKOFF_MAX_MS: u64 = 300_000;

pub(super) fn exit_desc(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (_, Some(s)) => format!("signal {}", signal_name(s)),
        (Some(c), None) => format!("code {c}"),
        _ => "an unknown status".into(),
    }
}

impl State {
    pub(super) fn retire(&mut self, wn: WorkerNo, why: Retire) {
        let Some(w) = self.workers.get_mut(&wn) else { return };
        if w.retiring.is_some() {
            return;
        }
        w.retiring = Some(why);

        if self.workers[&wn].in_flight.is_empty() {
            self.send_retire(wn);
        }
    }

    /// Asks a drained worker to exit; kills it if it does not within the grace period.
    pub(super) fn send_retire(&mut self, wn: WorkerNo) {
        let grace = self.cfg.grace_period_ms;
        let Some(w) = self.workers.get_mut(&wn) else { return };
        if w.retire_sent {
            return;
        }
        w.retire_sent = true;
        w.out.push(&protocol::shutdown(true));
        let at = Instant::now() + WORKER_EXIT_WAIT + Duration::from_millis(grace);
        w.kill = Some(Kill::new(KillReason::Retire, KillStep::Sigterm, at));
        self.note_deadline(at);
    }

    /// Kills a worker: SIGTERM to its group now, SIGKILL after the grace period.
    pub(super) fn kill(&mut self, wn: WorkerNo, why: KillReason) {
        let grace = Duration::from_millis(self.cfg.grace_period_ms).max(MIN_KILL_GRACE);
        let Some(w) = self.workers.get_mut(&wn) else { return };
        if w.kill.is_some_and(|k| k.next == KillStep::Sigkill) {
            return;
        }
        process::kill_group(w.pid, libc::SIGTERM);
        let at = Instant::now() + grace;
        let reason = match w.kill {
            Some(k) if why == KillReason::Retire => k.reason,
            _ => why,
        };
        w.kill = Some(Kill::new(reason, KillStep::Sigkill, at));
        self.note_deadline(at);
    }

    pub(super) fn protocol_error(&mut self, wn: WorkerNo, why: &str) {
        let Some(w) = self.workers.get(&wn) else { return };
        let (id, pid) = (w.id.clone(), w.pid);
        let msg = format!("Worker {id} sent {why}; it was killed");
        self.log("error", &msg);
        self.emit(
            "worker-error",
            json!({ "workerId": id, "pid": pid, "error": msg, "code": "ERR_PROTOCOL" }),
        );
        self.health
            .raise_alert("warning", Some(&id), "protocol-error", json!({ "message": msg }));
        self.fail_head(wn, CoreError::new(Code::Protocol, msg).with_worker(&id));
        if let Some(w) = self.workers.get(&wn) {
            process::kill_group(w.pid, libc::SIGKILL);
        }
        if let Some(w) = self.workers.get_mut(&wn) {
            w.kill = Some(Kill::new(
                KillReason::Protocol,
                KillStep::Sigkill,
                Instant::now() + SIGKILL_REPEAT_PROTOCOL,
            ));
        }
    }

    pub(super) fn on_exit(&mut self, wn: WorkerNo, code: Option<i32>, signal: Option<i32>) {
        let Some(w) = self.workers.remove(&wn) else { return };
        self.remove_fifos(&w.id);
        w.out.inner.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        w.out.notify.notify_one();
        w.out.close.notify_one();
        let now = Instant::now();
        let uptime = now.duration_since(w.spawned).as_millis() as u64;
        let desc = exit_desc(code, signal);
        self.health.unregister(&w.id);
        // Tasks it held: the running one fails this attempt now (never waits for its
        // timeout); prefetched ones go back to the queue untouched.
        let mut first = true;
        for f in w.in_flight.iter() {
            if f.abandoned {
                first = false;
                continue;
            }
            if first {
                let reason = match w.kill {
                    Some(Kill {
                        reason: KillReason::Zombie,
                        ..
                    }) => format!(
                        "Worker {} was killed: unresponsive (no heartbeat for {} ms) while running the task",
                        w.id, self.cfg.zombie_threshold_ms
                    ),
                    _ => format!("Worker {} exited with {desc} while running the task", w.id),
                };
                let mut err = CoreError::new(Code::WorkerCrashed, reason).with_worker(&w.id);
                err.extra.exit_code = code;
                err.extra.signal = signal.map(signal_name);
                let dur = w.head_started.map(|s| now.duration_since(s).as_millis() as u64).unwrap_or(0);
                self.attempt_failed(f.seq, err, dur, true);
            } else {
                self.queue.unpop(f.seq);
            }
            first = false;
        }
        let expected = w
            .kill
            .is_some_and(|k| matches!(k.reason, KillReason::Retire | KillReason::Shutdown))
            || matches!(self.phase, Phase::Closing | Phase::Shutdown);
        if !expected && w.retiring.is_none() {
            self.metrics.crashed += 1;
        }
        self.emit(
            "worker-exited",
            json!({ "workerId": w.id, "pid": w.pid, "code": code, "signal": signal.map(signal_name), "uptime": uptime }),
        );
        if !expected && self.phase == Phase::Running {
            self.log("warn", &format!("Worker {} exited unexpectedly with {desc}", w.id));
        }

        // Start failures during initialize reject it.
        if !w.ready {
            let stderr = w.stderr.lock().map(|t| t.text()).unwrap_or_default();
            let what = if w.kill.is_some_and(|k| k.reason == KillReason::ReadyTimeout) {
                format!("did not send worker-ready within {} ms (killed)", self.cfg.ready_timeout_ms)
            } else {
                format!("exited with {desc} before it was ready")
            };
            let mut err = CoreError::new(
                Code::WorkerStartFailed,
                format!(
                    "Worker {} ({}) {what}{}",
                    w.id,
                    self.script_of(w.group),
                    if stderr.is_empty() {
                        String::new()
                    } else {
                        format!("; stderr:\n{stderr}")
                    }
                ),
            )
            .with_worker(&w.id);
            err.extra.exit_code = code;
            err.extra.signal = signal.map(signal_name);
            err.extra.stderr = Some(stderr);
            if self.fail_init(err.clone()) {
                self.finish_ops();
                self.check_closed();
                return;
            }
            if let Some(op) = self.slots.get_mut(&w.slot).and_then(|s| s.op.take()) {
                // The first worker of a slot a scaleUp added never started: the slot is
                // dropped and the scaleUp reports one worker fewer.
                self.op_worker_done(op, false);
                self.slots.remove(&w.slot);
                self.log("error", &err.message);
            }
        }

        // Replacement, with crash-loop protection for unstable starts.
        let slot_id = w.slot;
        let min_uptime = Duration::from_millis(self.cfg.min_uptime_ms);
        // A worker that dies while running a task is not an unstable start: the task is
        // to blame, and its own retry limit bounds the damage (a poison task must not
        // disable the pool's slots).
        let serving = !w.in_flight.is_empty();
        let unstable = !w.ready || (w.tasks_executed == 0 && !serving && w.ready_at.is_some_and(|r| now.duration_since(r) < min_uptime));
        let replace = match w.retiring {
            Some(Retire::ScaleDown) | Some(Retire::Idle) | Some(Retire::Shutdown) => false,
            Some(Retire::Recycle) | Some(Retire::Memory) => true,
            None => self.cfg.auto_restart,
        } && matches!(self.phase, Phase::Running | Phase::Initializing);
        if let Some(slot) = self.slots.get_mut(&slot_id) {
            slot.worker = None;
            if replace {
                if unstable {
                    slot.unstable += 1;
                } else {
                    slot.unstable = 0;
                }
                if slot.unstable >= self.cfg.max_restart_attempts.max(1) && unstable {
                    slot.failed = true;
                    let n = slot.unstable;
                    let msg = format!(
                        "Worker slot of {} gave up after {n} unstable starts in a row (last exit: {desc}); the pool keeps serving with fewer workers",
                        w.id
                    );
                    self.health.raise_alert(
                        "critical",
                        Some(&w.id),
                        "worker-restart-failed",
                        json!({ "message": msg, "attempts": n }),
                    );
                    self.log("error", &msg);
                } else {
                    slot.restarts += 1;
                    self.metrics.restarted += 1;
                    if unstable {
                        let delay = crate::config::backoff_ms(self.cfg.restart_cooldown_ms, RESTART_BACKOFF_MAX_MS, slot.unstable);
                        let at = now + Duration::from_millis(delay);
                        slot.respawn_at = Some(at);
                        self.note_deadline(at);
                        self.log("warn", &format!("Worker {} was unstable; restarting its slot in {delay} ms", w.id));
                    } else {
                        self.spawn_requests.push(slot_id);
                    }
                }
            } else if w.retiring.is_none() && !self.cfg.auto_restart && self.phase == Phase::Running {
                // autoRestart off: the slot stays empty.
                slot.failed = true;
            }
        }
        self.reject_unservable();
        self.finish_ops();
        self.check_closed();
        self.dispatch();
    }
}
