//! A worker's end: retiring it (drain, then ask it to exit), killing it (SIGTERM, then
//! SIGKILL), a protocol error, and its exit: the tasks it held, the events, and the
//! decision to replace it, back off, or give its slot up.

use super::state::{Kill, KillReason, KillStep, Phase, Retire, State, Worker, WorkerNo};
use crate::config::PoolConfig;
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

impl State {
    pub(super) fn retire(&mut self, wn: WorkerNo, why: Retire) {
        let Some(w) = self.roster.workers.get_mut(&wn) else { return };
        if w.retiring.is_some() {
            return;
        }
        w.retiring = Some(why);

        if self.roster.workers[&wn].in_flight.is_empty() {
            self.send_retire(wn);
        }
    }

    /// Asks a drained worker to exit; kills it if it does not within the grace period.
    pub(super) fn send_retire(&mut self, wn: WorkerNo) {
        let grace = self.cfg.grace_period_ms;
        let Some(w) = self.roster.workers.get_mut(&wn) else { return };
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
        let Some(w) = self.roster.workers.get_mut(&wn) else { return };
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
        let Some(w) = self.roster.workers.get(&wn) else { return };
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
        if let Some(w) = self.roster.workers.get(&wn) {
            process::kill_group(w.pid, libc::SIGKILL);
        }
        if let Some(w) = self.roster.workers.get_mut(&wn) {
            w.kill = Some(Kill::new(
                KillReason::Protocol,
                KillStep::Sigkill,
                Instant::now() + SIGKILL_REPEAT_PROTOCOL,
            ));
        }
    }

    /// A worker process ended: its tasks, the events, a failed start, and its slot.
    pub(super) fn on_exit(&mut self, wn: WorkerNo, exit: WorkerExit) {
        let Some(w) = self.roster.workers.remove(&wn) else { return };
        self.release_worker(&w);
        let now = Instant::now();
        self.fail_held_tasks(&w, exit, now);
        self.report_exit(&w, exit, now);
        if !w.ready && self.on_start_failure(&w, exit) {
            // The pending initialize fails as a whole; there is no slot to refill.
            self.finish_ops();
            self.check_closed();
            return;
        }
        self.refill_slot(&w, exit, now);
        self.reject_unservable();
        self.finish_ops();
        self.check_closed();
        self.dispatch();
    }

    /// What an exited worker holds outside the state: its FIFOs, its writer task (woken
    /// to finish), its health record.
    fn release_worker(&mut self, w: &Worker) {
        self.remove_fifos(&w.id);
        w.out.inner.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        w.out.notify.notify_one();
        w.out.close.notify_one();
        self.health.unregister(&w.id);
    }

    /// Tasks an exited worker held: the running one fails this attempt now (never waits
    /// for its timeout); prefetched ones go back to the queue untouched.
    fn fail_held_tasks(&mut self, w: &Worker, exit: WorkerExit, now: Instant) {
        for (i, f) in w.in_flight.iter().enumerate() {
            if f.abandoned {
                continue;
            }
            if i > 0 {
                self.queue.unpop(f.seq);
                continue;
            }
            let reason = match w.kill {
                Some(Kill {
                    reason: KillReason::Zombie,
                    ..
                }) => format!(
                    "Worker {} was killed: unresponsive (no heartbeat for {} ms) while running the task",
                    w.id, self.cfg.zombie_threshold_ms
                ),
                _ => format!("Worker {} exited with {} while running the task", w.id, exit.describe()),
            };
            let mut err = CoreError::new(Code::WorkerCrashed, reason).with_worker(&w.id);
            exit.annotate(&mut err);
            let dur = w.head_started.map(|s| now.duration_since(s).as_millis() as u64).unwrap_or(0);
            self.attempt_failed(f.seq, err, dur, true);
        }
    }

    /// Counts a crash, emits `worker-exited`, and warns about an unexpected exit.
    fn report_exit(&mut self, w: &Worker, exit: WorkerExit, now: Instant) {
        let expected = w
            .kill
            .is_some_and(|k| matches!(k.reason, KillReason::Retire | KillReason::Shutdown))
            || matches!(self.phase, Phase::Closing | Phase::Shutdown);
        if !expected && w.retiring.is_none() {
            self.metrics.workers.crashed += 1;
        }
        let uptime = now.duration_since(w.spawned).as_millis() as u64;
        self.emit(
            "worker-exited",
            json!({ "workerId": w.id, "pid": w.pid, "code": exit.code, "signal": exit.signal_name(), "uptime": uptime }),
        );
        if !expected && self.phase == Phase::Running {
            self.log("warn", &format!("Worker {} exited unexpectedly with {}", w.id, exit.describe()));
        }
    }

    /// A worker that exited before it was ready. A pending initialize fails with it
    /// (true: the caller stops there); the slot a scaleUp added for it is dropped, and
    /// the scaleUp reports one worker fewer.
    fn on_start_failure(&mut self, w: &Worker, exit: WorkerExit) -> bool {
        let err = self.start_failure_error(w, exit);
        if self.fail_init(err.clone()) {
            return true;
        }
        if let Some(op) = self.roster.slots.get_mut(&w.slot).and_then(|s| s.op.take()) {
            self.op_worker_done(op, false);
            self.roster.slots.remove(&w.slot);
            self.log("error", &err.message);
        }
        false
    }

    /// `ERR_WORKER_START_FAILED` for a worker that never got ready, with its last stderr
    /// lines.
    fn start_failure_error(&self, w: &Worker, exit: WorkerExit) -> CoreError {
        let stderr = w.stderr.lock().map(|t| t.text()).unwrap_or_default();
        let what = if w.kill.is_some_and(|k| k.reason == KillReason::ReadyTimeout) {
            format!("did not send worker-ready within {} ms (killed)", self.cfg.ready_timeout_ms)
        } else {
            format!("exited with {} before it was ready", exit.describe())
        };
        let tail = if stderr.is_empty() {
            String::new()
        } else {
            format!("; stderr:\n{stderr}")
        };
        let message = format!("Worker {} ({}) {what}{tail}", w.id, self.cfg.worker_label(w.group));
        let mut err = CoreError::new(Code::WorkerStartFailed, message).with_worker(&w.id);
        exit.annotate(&mut err);
        err.extra.stderr = Some(stderr);
        err
    }

    /// Replaces an exited worker in its slot, backs off, or leaves the slot empty, as
    /// `restart_decision` says.
    fn refill_slot(&mut self, w: &Worker, exit: WorkerExit, now: Instant) {
        let unstable = unstable_start(w, now, Duration::from_millis(self.cfg.min_uptime_ms));
        let policy = RestartPolicy::of(&self.cfg);
        let phase = self.phase;
        let Some(slot) = self.roster.slots.get_mut(&w.slot) else { return };
        slot.worker = None;
        match restart_decision(w.retiring, unstable, slot.unstable, phase, &policy) {
            RestartDecision::Respawn => {
                slot.unstable = 0;
                slot.restarts += 1;
                self.metrics.workers.restarted += 1;
                self.effects.spawn_requests.push(w.slot);
            }
            RestartDecision::Backoff { delay_ms, streak } => {
                slot.unstable = streak;
                slot.restarts += 1;
                let at = now + Duration::from_millis(delay_ms);
                slot.respawn_at = Some(at);
                self.metrics.workers.restarted += 1;
                self.note_deadline(at);
                self.log(
                    "warn",
                    &format!("Worker {} was unstable; restarting its slot in {delay_ms} ms", w.id),
                );
            }
            RestartDecision::GiveUp { streak } => {
                slot.unstable = streak;
                slot.failed = true;
                let msg = format!(
                    "Worker slot of {} gave up after {streak} unstable starts in a row (last exit: {}); the pool keeps serving with fewer workers",
                    w.id,
                    exit.describe()
                );
                self.health.raise_alert(
                    "critical",
                    Some(&w.id),
                    "worker-restart-failed",
                    json!({ "message": msg, "attempts": streak }),
                );
                self.log("error", &msg);
            }
            RestartDecision::LeaveEmpty => slot.failed = true,
            RestartDecision::NotReplaced => {}
        }
    }
}

/// Whether a worker's end counts as an unstable start (for crash-loop protection): it
/// never got ready, or it died idle, having run nothing, within `minUptime` of getting
/// ready. A worker that dies while running a task is not one: the task is to blame,
/// and its own retry limit bounds the damage (a poison task must not disable the
/// pool's slots).
fn unstable_start(w: &Worker, now: Instant, min_uptime: Duration) -> bool {
    let serving = !w.in_flight.is_empty();
    let up_for = w.ready_at.map(|r| now.duration_since(r));
    unstable_exit(w.ready, w.tasks_executed, serving, up_for, min_uptime)
}

fn unstable_exit(ready: bool, tasks_executed: u64, serving: bool, up_for: Option<Duration>, min_uptime: Duration) -> bool {
    !ready || (tasks_executed == 0 && !serving && up_for.is_some_and(|d| d < min_uptime))
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WorkerExit {
    pub(super) code: Option<i32>,
    pub(super) signal: Option<i32>,
}

impl WorkerExit {
    /// "code 1", "signal SIGKILL", for messages.
    fn describe(&self) -> String {
        match (self.code, self.signal) {
            (_, Some(s)) => format!("signal {}", signal_name(s)),
            (Some(c), None) => format!("code {c}"),
            _ => "an unknown status".into(),
        }
    }

    fn signal_name(&self) -> Option<String> {
        self.signal.map(signal_name)
    }

    /// Records the exit code and signal on an error about this exit.
    fn annotate(&self, err: &mut CoreError) {
        err.extra.exit_code = self.code;
        err.extra.signal = self.signal_name();
    }
}

/// The restart settings of the pool's config.
struct RestartPolicy {
    auto_restart: bool,
    /// Unstable starts in a row after which a slot is given up (at least 1).
    max_unstable: u32,
    /// The first backoff after an unstable start; it doubles with each one after.
    cooldown_ms: u64,
}

impl RestartPolicy {
    fn of(cfg: &PoolConfig) -> RestartPolicy {
        RestartPolicy {
            auto_restart: cfg.auto_restart,
            max_unstable: cfg.max_restart_attempts.max(1),
            cooldown_ms: cfg.restart_cooldown_ms,
        }
    }
}

/// What becomes of a slot whose worker exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RestartDecision {
    /// A stable worker ended (crash or recycling): a new one starts now; the slot's
    /// streak of unstable starts ends.
    Respawn,
    /// An unstable start: a new one starts after `delay_ms`; `streak` unstable starts
    /// in a row so far.
    Backoff { delay_ms: u64, streak: u32 },
    /// Too many unstable starts in a row: the slot is given up.
    GiveUp { streak: u32 },
    /// `autoRestart` is off: the slot stays empty (and counts as failed).
    LeaveEmpty,
    /// The worker was meant to go (scaled down, idle, shutdown) or the pool is not
    /// running: nothing to do.
    NotReplaced,
}

/// The restart decision for a slot whose worker exited: `retiring` is why the pool
/// was retiring it (if it was), `unstable` whether this was an unstable start,
/// `streak` the slot's unstable starts in a row before this one.
fn restart_decision(retiring: Option<Retire>, unstable: bool, streak: u32, phase: Phase, p: &RestartPolicy) -> RestartDecision {
    let wanted = match retiring {
        Some(Retire::ScaleDown | Retire::Idle | Retire::Shutdown) => false,
        Some(Retire::Recycle | Retire::Memory) => true,
        None => p.auto_restart,
    };
    if !wanted || !matches!(phase, Phase::Running | Phase::Initializing) {
        let crashed_without_restart = retiring.is_none() && !p.auto_restart && phase == Phase::Running;
        return if crashed_without_restart {
            RestartDecision::LeaveEmpty
        } else {
            RestartDecision::NotReplaced
        };
    }
    if !unstable {
        return RestartDecision::Respawn;
    }
    let streak = streak + 1;
    if streak >= p.max_unstable {
        RestartDecision::GiveUp { streak }
    } else {
        RestartDecision::Backoff {
            delay_ms: crate::config::backoff_ms(p.cooldown_ms, RESTART_BACKOFF_MAX_MS, streak),
            streak,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RestartPolicy = RestartPolicy {
        auto_restart: true,
        max_unstable: 3,
        cooldown_ms: 1000,
    };

    #[test]
    fn a_stable_crash_respawns_at_once() {
        assert_eq!(restart_decision(None, false, 2, Phase::Running, &POLICY), RestartDecision::Respawn);
        // Recycled and memory-retired workers are replaced even with autoRestart off.
        let off = RestartPolicy {
            auto_restart: false,
            ..POLICY
        };
        assert_eq!(
            restart_decision(Some(Retire::Recycle), false, 0, Phase::Running, &off),
            RestartDecision::Respawn
        );
        assert_eq!(
            restart_decision(Some(Retire::Memory), false, 0, Phase::Initializing, &off),
            RestartDecision::Respawn
        );
    }

    #[test]
    fn unstable_starts_back_off_doubling_then_give_up() {
        let d = |streak| restart_decision(None, true, streak, Phase::Running, &POLICY);
        assert_eq!(d(0), RestartDecision::Backoff { delay_ms: 1000, streak: 1 });
        assert_eq!(d(1), RestartDecision::Backoff { delay_ms: 2000, streak: 2 });
        assert_eq!(d(2), RestartDecision::GiveUp { streak: 3 });
        let capped = RestartPolicy {
            max_unstable: 100,
            cooldown_ms: 100_000,
            ..POLICY
        };
        let far = restart_decision(None, true, 10, Phase::Running, &capped);
        assert_eq!(
            far,
            RestartDecision::Backoff {
                delay_ms: RESTART_BACKOFF_MAX_MS,
                streak: 11
            }
        );
    }

    #[test]
    fn a_single_allowed_attempt_gives_up_on_the_first_unstable_start() {
        let one = RestartPolicy { max_unstable: 1, ..POLICY };
        assert_eq!(
            restart_decision(None, true, 0, Phase::Running, &one),
            RestartDecision::GiveUp { streak: 1 }
        );
    }

    #[test]
    fn workers_meant_to_go_are_not_replaced() {
        for why in [Retire::ScaleDown, Retire::Idle, Retire::Shutdown] {
            assert_eq!(
                restart_decision(Some(why), false, 0, Phase::Running, &POLICY),
                RestartDecision::NotReplaced
            );
        }
        for phase in [Phase::ShuttingDown, Phase::Closing, Phase::Shutdown] {
            assert_eq!(restart_decision(None, false, 0, phase, &POLICY), RestartDecision::NotReplaced);
        }
    }

    #[test]
    fn without_auto_restart_a_crashed_slot_stays_empty() {
        let off = RestartPolicy {
            auto_restart: false,
            ..POLICY
        };
        assert_eq!(restart_decision(None, false, 0, Phase::Running, &off), RestartDecision::LeaveEmpty);
        assert_eq!(restart_decision(None, true, 0, Phase::Running, &off), RestartDecision::LeaveEmpty);
        // During initialize the failed start is reported instead.
        assert_eq!(
            restart_decision(None, true, 0, Phase::Initializing, &off),
            RestartDecision::NotReplaced
        );
    }

    #[test]
    fn unstable_means_never_ready_or_idle_death_soon_after_ready() {
        let min = Duration::from_millis(1000);
        let soon = Some(Duration::from_millis(10));
        let late = Some(Duration::from_millis(5000));
        assert!(unstable_exit(false, 0, false, None, min));
        assert!(unstable_exit(true, 0, false, soon, min));
        assert!(!unstable_exit(true, 0, false, late, min));
        // It ran a task, or died running one: the task is to blame, not the start.
        assert!(!unstable_exit(true, 1, false, soon, min));
        assert!(!unstable_exit(true, 0, true, soon, min));
    }

    #[test]
    fn exits_are_described_by_signal_first() {
        let e = |code, signal| WorkerExit { code, signal }.describe();
        assert_eq!(e(Some(1), None), "code 1");
        assert_eq!(e(None, Some(9)), "signal SIGKILL");
        assert_eq!(e(Some(0), Some(15)), "signal SIGTERM");
        assert_eq!(e(None, None), "an unknown status");
    }
}
