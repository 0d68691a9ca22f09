//! Supervision on the clock: the timer loop and its next wake-up, the deadlines it
//! enforces (task timeouts, abandoned tasks' grace, kills, worker-ready, respawn
//! backoff, graceful shutdown, idle retirement), the backstop read of channels left
//! to the JS thread, and the periodic health check with its /proc samples.

use super::state::{CpuReading, Kill, KillReason, KillStep, PendingOp, Phase, Retire, SlotNo, State, WorkerNo};
use super::Pool;
use crate::error::{Code, CoreError};
use crate::fdio::Channel;
use crate::health::Sample;
use crate::process;
use crate::util::{epoch_ms, BYTES_PER_MB};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The timer loop sleeps at most this long, whatever else is due (it also notices
/// that the pool was dropped unused).
const MAX_TIMER_SLEEP: Duration = Duration::from_millis(1000);
/// A worker that did not exit after SIGKILL (e.g. stuck in the kernel) is sent it
/// again this much later; its exit waiter is what finally removes it.
const SIGKILL_REPEAT: Duration = Duration::from_secs(3600);

/// While tasks run on workers whose channel another thread polls, the timer loop
/// ticks this often to notice that thread stuck (see `Channel::check_stalled`).
pub(super) const POLLER_BACKSTOP: Duration = Duration::from_millis(1);
/// A poller thread that left data waiting this long without going round its loop is
/// stuck.
const POLLER_STALL: Duration = Duration::from_millis(2);

impl Pool {
    pub(super) async fn timer_loop(self) {
        loop {
            let next = {
                let mut st = self.lock();
                // Ends once the pool is shut down, or was dropped unused by JavaScript
                // (then this loop holds the only reference).
                let unused = Arc::strong_count(&self.inner) <= 1 && matches!(st.phase, Phase::Created);
                if (st.phase == Phase::Shutdown || unused) && st.roster.workers.is_empty() {
                    break;
                }
                let n = st.compute_next_wake();
                st.clock.next_wake = Some(n);
                n
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = self.inner.wake.notified() => {}
            }
            self.backstop_polled_channels();
            self.with(|st| st.on_timers(Instant::now()));
        }
    }

    /// The backstop for channels left to another thread (the JS thread). Reads, before
    /// the timers are judged, every such channel whose worker has a deadline due (a
    /// reply already waiting must not be taken for a timeout) or a health check is
    /// due; and takes over those whose thread has left data waiting for
    /// `POLLER_STALL` without going round its loop, so replies, heartbeats and
    /// dispatch never wait on JavaScript.
    fn backstop_polled_channels(&self) {
        let now = Instant::now();
        let (polled, health_due): (Vec<(Arc<Channel>, bool)>, bool) = {
            let st = self.lock();
            let health_due = st.health_due(now);
            let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
            let polled = st
                .roster
                .workers
                .values()
                .filter_map(|w| {
                    let ch = w.polled_channel()?.clone();
                    let deadline = due(w.head_deadline)
                        || due(w.abandon_deadline)
                        || due(w.kill.map(|k| k.due))
                        || (!w.ready && w.ready_deadline <= now);
                    Some((ch, deadline))
                })
                .collect();
            (polled, health_due)
        };
        if polled.is_empty() {
            return;
        }
        let mut fds: Vec<libc::pollfd> = polled
            .iter()
            .map(|(c, _)| libc::pollfd {
                fd: c.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a valid pollfd array; a zero timeout never blocks.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        for ((ch, deadline), pfd) in polled.iter().zip(&fds) {
            let readable = n > 0 && pfd.revents != 0;
            if ch.check_stalled(now, readable, POLLER_STALL) || (readable && (*deadline || health_due)) {
                self.pump(ch);
            }
        }
    }
}

impl State {
    pub(super) fn note_deadline(&mut self, at: Instant) {
        if self.clock.next_wake.is_none_or(|n| at < n) {
            self.clock.next_wake = Some(at);
            self.effects.wake_hint = true;
        }
    }

    pub(super) fn take_wake_hint(&mut self) -> bool {
        std::mem::take(&mut self.effects.wake_hint)
    }

    fn health_due(&self, now: Instant) -> bool {
        now.duration_since(self.clock.last_health) >= Duration::from_millis(self.cfg.health_check_interval)
    }

    /// When the timer loop must wake next: the earliest deadline of any kind, at most
    /// `MAX_TIMER_SLEEP` (or the health-check interval) away.
    fn compute_next_wake(&self) -> Instant {
        let now = Instant::now();
        let cap = now + Duration::from_millis(self.cfg.health_check_interval).min(MAX_TIMER_SLEEP);
        let pool = [self.queue.next_retry_at(), self.ops.shutdown_deadline, self.clock.next_autoscale];
        let workers = self.roster.workers.values().flat_map(|w| {
            [
                w.head_deadline,
                w.abandon_deadline,
                w.kill.map(|k| k.due),
                (!w.ready).then_some(w.ready_deadline),
            ]
        });
        let slots = self.roster.slots.values().map(|s| s.respawn_at);
        // Replies read by another thread: look in often enough to notice it stuck.
        let polled = self
            .roster
            .workers
            .values()
            .any(|w| !w.in_flight.is_empty() && w.polled_channel().is_some());
        let backstop = polled.then_some(now + POLLER_BACKSTOP);
        next_wake(now, cap, pool.into_iter().chain(workers).chain(slots).chain([backstop]))
    }

    /// What the clock says is due: retries, each worker's deadlines, respawns, the
    /// graceful shutdown's limit, the autoscaler, the health check.
    fn on_timers(&mut self, now: Instant) {
        self.clock.next_wake = None;
        if self.queue.promote_due(now) > 0 {
            self.dispatch();
        }
        let wns: Vec<WorkerNo> = self.roster.workers.keys().copied().collect();
        for wn in wns {
            self.check_worker_deadlines(wn, now);
        }
        self.respawn_due_slots(now);
        if self.ops.shutdown_deadline.is_some_and(|d| d <= now) && self.phase == Phase::ShuttingDown {
            self.log("warn", "Graceful shutdown timed out; rejecting what is left");
            self.force_close();
        }
        if self.phase == Phase::Running && self.clock.next_autoscale.is_some_and(|t| t <= now) {
            self.autoscale_tick(now);
        }
        if self.health_due(now) {
            self.clock.last_health = now;
            self.health_check(now);
        }
        self.maybe_close();
        self.dispatch();
    }

    /// One worker's deadlines, the first that applies: a kill under way, worker-ready,
    /// an abandoned task's grace period; else the running task's timeout, then idle
    /// retirement.
    fn check_worker_deadlines(&mut self, wn: WorkerNo, now: Instant) {
        let Some(w) = self.roster.workers.get(&wn) else { return };
        if let Some(kill) = w.kill {
            if kill.due <= now {
                self.next_kill_step(wn, kill, now);
            }
            return;
        }
        if !w.ready && w.ready_deadline <= now {
            let msg = format!("Worker {} did not send worker-ready within {} ms", w.id, self.cfg.ready_timeout_ms);
            self.log("error", &msg);
            self.kill(wn, KillReason::ReadyTimeout);
            return;
        }
        if w.abandon_deadline.is_some_and(|d| d <= now) {
            let msg = format!(
                "Worker {} did not stop its abandoned task within the grace period ({} ms); killing it",
                w.id, self.cfg.grace_period_ms
            );
            self.log("warn", &msg);
            if let Some(w) = self.roster.workers.get_mut(&wn) {
                w.abandon_deadline = None;
            }
            self.kill(wn, KillReason::Timeout);
            return;
        }
        self.check_task_timeout(wn, now);
        self.retire_if_idle(wn, now);
    }

    /// A kill step is due: SIGTERM (through `kill`, which schedules SIGKILL), or SIGKILL
    /// (repeated much later should the process survive it).
    fn next_kill_step(&mut self, wn: WorkerNo, kill: Kill, now: Instant) {
        match kill.next {
            KillStep::Sigkill => {
                let Some(w) = self.roster.workers.get_mut(&wn) else { return };
                process::kill_group(w.pid, libc::SIGKILL);
                w.kill = Some(Kill::new(kill.reason, KillStep::Sigkill, now + SIGKILL_REPEAT));
            }
            KillStep::Sigterm => self.kill(wn, kill.reason),
        }
    }

    /// The running task's timeout passed: the attempt is abandoned (the worker is asked
    /// to stop it) and fails with `ERR_TASK_TIMEOUT`.
    fn check_task_timeout(&mut self, wn: WorkerNo, now: Instant) {
        let Some(w) = self.roster.workers.get(&wn) else { return };
        let (Some(d), Some(head)) = (w.head_deadline, w.in_flight.front().copied()) else {
            return;
        };
        if d > now || head.abandoned {
            return;
        }
        let timeout = self.queue.get(head.seq).map(|r| r.timeout_ms).unwrap_or(0);
        let dur = w.head_started.map(|s| now.duration_since(s).as_millis() as u64).unwrap_or(timeout);
        let err = CoreError::new(Code::TaskTimeout, format!("Task timeout after {timeout}ms")).with_worker(&w.id);
        self.abandon(wn, head.seq, "timeout");
        self.attempt_failed(head.seq, err, dur, true);
    }

    /// Retires a worker idle for `idleTimeout`, with its slot, while the pool stays at
    /// or above `minWorkers` and no task loses its last capable slot. Not while the
    /// pool is being grown: a worker that got ready first must not be retired before
    /// its scaleUp / initialize has even resolved.
    fn retire_if_idle(&mut self, wn: WorkerNo, now: Instant) {
        let Some(idle) = self.cfg.idle_timeout_ms else { return };
        let growing = self
            .ops
            .pending
            .iter()
            .any(|o| matches!(o, PendingOp::Init { .. } | PendingOp::ScaleUp { .. }));
        let Some(w) = self.roster.workers.get(&wn) else { return };
        if growing || !w.ready || !w.in_flight.is_empty() || w.retiring.is_some() {
            return;
        }
        if now.duration_since(w.idle_since) < Duration::from_millis(idle) || self.active_size() <= self.cfg.min_workers as usize {
            return;
        }
        let slot = w.slot;
        if self.slot_removable(slot) {
            self.roster.slots.remove(&slot);
            self.retire(wn, Retire::Idle);
        }
    }

    /// Slots whose restart backoff has passed get a new worker.
    fn respawn_due_slots(&mut self, now: Instant) {
        let due: Vec<SlotNo> = self
            .roster
            .slots
            .iter()
            .filter(|(_, s)| s.respawn_at.is_some_and(|t| t <= now))
            .map(|(&k, _)| k)
            .collect();
        for s in due {
            if let Some(slot) = self.roster.slots.get_mut(&s) {
                slot.respawn_at = None;
            }
            self.effects.spawn_requests.push(s);
        }
    }

    /// Memory and CPU of a worker from /proc, recorded with the health monitor.
    pub(super) fn sample_worker(&mut self, wn: WorkerNo, now: Instant) {
        let w = match self.roster.workers.get_mut(&wn) {
            Some(w) => w,
            None => return,
        };
        if let Some(s) = process::sample(w.pid) {
            let reading = CpuReading { at: now, cpu_ms: s.cpu_ms };
            let cpu = w.cpu_prev.map_or(0.0, |prev| cpu_percent(prev, reading));
            w.cpu_prev = Some(reading);
            w.rss = s.rss_bytes;
            w.cpu_percent = (cpu * 10.0).round() / 10.0;
            let sample = Sample {
                timestamp: epoch_ms(),
                memory_mb: s.rss_bytes as f64 / BYTES_PER_MB,
                rss_bytes: s.rss_bytes as f64,
                heap_used: w.heap.used,
                heap_total: w.heap.total,
                cpu: w.cpu_percent,
                uptime: now.duration_since(w.spawned).as_millis() as f64,
            };
            let id = w.id.clone();
            self.health.sample(&id, sample);
        }
    }

    fn health_check(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Running | Phase::ShuttingDown) {
            return;
        }
        self.sync_health();
        let nums: Vec<WorkerNo> = self.roster.workers.keys().copied().collect();
        for n in nums {
            self.sample_worker(n, now);
        }
        let out = self.health.check(now);
        for id in out.zombies {
            let Some((&n, w)) = self.roster.workers.iter().find(|(_, w)| w.id == id) else {
                continue;
            };
            if w.kill.is_some() {
                continue;
            }
            let since = self
                .health
                .workers
                .get(&id)
                .map(|h| now.duration_since(h.last_heartbeat.unwrap_or(h.registered)).as_millis() as u64)
                .unwrap_or(0);
            let cur = w.current_task(&self.queue);
            let data = json!({ "workerId": id, "pid": w.pid, "timeSinceHeartbeat": since, "state": w.state_str(), "currentTask": cur });
            self.emit("zombie-detected", data);
            self.log("warn", &format!("Zombie worker {id} (no heartbeat for {since} ms); killing it"));
            self.kill(n, KillReason::Zombie);
        }
        for id in out.high_memory {
            let Some((&n, w)) = self.roster.workers.iter().find(|(_, w)| w.id == id) else {
                continue;
            };
            let mb = w.rss as f64 / BYTES_PER_MB;
            let retiring = w.retiring.is_some();
            let data = json!({ "workerId": id, "memoryMB": (mb * 10.0).round() / 10.0, "threshold": self.cfg.worker_memory_limit_mb });
            self.emit("high-memory", data);
            if self.cfg.restart_on_memory_limit && !retiring && self.phase == Phase::Running {
                self.log(
                    "warn",
                    &format!("Worker {id} is over the memory limit ({mb:.0} MB); recycling it after its current task"),
                );
                self.retire(n, Retire::Memory);
            }
        }
    }
}

/// The next wake-up: the earliest of `deadlines` before `cap`, never in the past.
fn next_wake(now: Instant, cap: Instant, deadlines: impl IntoIterator<Item = Option<Instant>>) -> Instant {
    deadlines.into_iter().flatten().fold(cap, Instant::min).max(now)
}

/// CPU use between two readings, in percent of one core (0 when no time passed).
fn cpu_percent(prev: CpuReading, now: CpuReading) -> f64 {
    let wall_ms = now.at.duration_since(prev.at).as_secs_f64() * 1000.0;
    if wall_ms > 0.0 {
        ((now.cpu_ms - prev.cpu_ms) / wall_ms * 100.0).max(0.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_wake_up_is_the_earliest_deadline_within_the_cap() {
        let now = Instant::now();
        let ms = |n| now + Duration::from_millis(n);
        assert_eq!(next_wake(now, ms(1000), []), ms(1000));
        assert_eq!(next_wake(now, ms(1000), [None, Some(ms(300)), Some(ms(20)), None]), ms(20));
        assert_eq!(next_wake(now, ms(1000), [Some(ms(5000))]), ms(1000));
        // A deadline already passed means now, not a time in the past.
        let past = now - Duration::from_millis(5);
        assert_eq!(next_wake(now, ms(1000), [Some(past)]), now);
    }

    #[test]
    fn cpu_percent_is_cpu_time_over_wall_time() {
        let t0 = Instant::now();
        let prev = CpuReading { at: t0, cpu_ms: 1000.0 };
        let half = CpuReading {
            at: t0 + Duration::from_millis(200),
            cpu_ms: 1100.0,
        };
        assert!((cpu_percent(prev, half) - 50.0).abs() < 1e-9);
        // A clock that did not move, or a counter that went back, gives 0, never NaN
        // or a negative figure.
        assert_eq!(cpu_percent(prev, CpuReading { at: t0, cpu_ms: 2000.0 }), 0.0);
        let back = CpuReading {
            at: t0 + Duration::from_millis(100),
            cpu_ms: 900.0,
        };
        assert_eq!(cpu_percent(prev, back), 0.0);
    }
}
