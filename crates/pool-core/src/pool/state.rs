//! The pool's state: `State` and what it is made of (`Worker`, `Slot`, the pending
//! operations, the counters), and the small queries over them that every concern uses
//! (size, capabilities, phase checks, FIFO paths).
//!
//! The behaviour lives in the sibling modules, each a separate `impl State` block.

use super::io::Outbox;
use super::PoolTask;
use crate::balance;
use crate::config::PoolConfig;
use crate::error::{Code, CoreError, CoreResult};
use crate::fdio::Channel;
use crate::health::HealthMonitor;
use crate::process::StderrTail;
use crate::queue::TaskQueue;
use crate::util::FastMap;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Created,
    Initializing,
    Running,
    ShuttingDown,
    Closing,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retire {
    ScaleDown,
    Recycle,
    Memory,
    Idle,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KillReason {
    Timeout,
    Zombie,
    Protocol,
    ReadyTimeout,
    Retire,
    Shutdown,
}

/// A worker's number: its id is `worker-<n>`, and it keys `State::workers`. Never
/// reused within a pool, so a late message or exit of a replaced worker finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct WorkerNo(pub(super) u64);

/// A slot's number: a place for one worker that outlives its workers (restarts refill
/// it); it keys `State::slots`. Never reused within a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct SlotNo(pub(super) u64);

impl WorkerNo {
    /// The worker's id, as JavaScript and the worker itself know it.
    pub(super) fn id(self) -> String {
        format!("worker-{}", self.0)
    }

    /// Hands out this number and moves on to the next.
    pub(super) fn bump(&mut self) -> WorkerNo {
        let n = *self;
        self.0 += 1;
        n
    }
}

impl SlotNo {
    /// Hands out this number and moves on to the next.
    pub(super) fn bump(&mut self) -> SlotNo {
        let n = *self;
        self.0 += 1;
        n
    }
}

/// The heap figures of a worker's last heartbeat (bytes).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct HeapUsage {
    pub(super) used: f64,
    pub(super) total: f64,
}

/// A worker's CPU time (ms, user + system, from /proc) when it was sampled.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuReading {
    pub(super) at: Instant,
    pub(super) cpu_ms: f64,
}

/// A kill under way: why, and what happens next when.
#[derive(Debug, Clone, Copy)]
pub(super) struct Kill {
    pub(super) reason: KillReason,
    pub(super) next: KillStep,
    pub(super) due: Instant,
}

/// The next step of a kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KillStep {
    /// The worker was asked to exit (or not yet signalled): SIGTERM at `due`.
    Sigterm,
    /// SIGTERM (or SIGKILL) went out: SIGKILL at `due`.
    Sigkill,
}

impl Kill {
    pub(super) fn new(reason: KillReason, next: KillStep, due: Instant) -> Kill {
        Kill { reason, next, due }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct InFlight {
    pub(super) seq: u64,
    pub(super) abandoned: bool,
    /// Predicted run time (ms) from its type's history; infinite when unknown.
    pub(super) pred: f64,
    /// Size of its payload (bytes of JSON).
    pub(super) bytes: usize,
}

pub(super) struct Worker {
    pub(super) num: WorkerNo,
    pub(super) id: String,
    pub(super) pid: u32,
    pub(super) slot: SlotNo,
    pub(super) group: usize,
    pub(super) ready: bool,
    pub(super) spawned: Instant,
    pub(super) ready_at: Option<Instant>,
    pub(super) last_activity: Instant,
    pub(super) idle_since: Instant,
    pub(super) tasks_executed: u64,
    pub(super) in_flight: VecDeque<InFlight>,
    pub(super) head_deadline: Option<Instant>,
    pub(super) head_started: Option<Instant>,
    pub(super) abandon_deadline: Option<Instant>,
    pub(super) out: Arc<Outbox>,
    pub(super) batch: bool,
    pub(super) cancel: bool,
    pub(super) capabilities: Vec<String>,
    pub(super) retiring: Option<Retire>,
    pub(super) retire_sent: bool,
    pub(super) kill: Option<Kill>,
    pub(super) stderr: Arc<Mutex<StderrTail>>,
    pub(super) heap: HeapUsage,
    pub(super) cpu_prev: Option<CpuReading>,
    pub(super) rss: u64,
    pub(super) cpu_percent: f64,
    pub(super) ready_deadline: Instant,
    /// Predicted work (ms) and payload bytes sent ahead of the running task.
    pub(super) ahead_ms: f64,
    pub(super) ahead_bytes: usize,
    pub(super) chan: Option<Arc<Channel>>,
    /// `State::uses` when this worker was last given a task (warm-first tie-break).
    pub(super) last_used: u64,
}

impl Worker {
    /// Its channel, while another thread (the JS thread) reads it instead of the core.
    pub(super) fn polled_channel(&self) -> Option<&Arc<Channel>> {
        self.chan.as_ref().filter(|c| c.left_to_poller())
    }

    /// Removes the in-flight entry at `pos`, keeping the sums of what waits behind the
    /// head up to date without a rescan (this runs for every reply, with up to
    /// `prefetch` tasks in flight).
    pub(super) fn remove_in_flight(&mut self, pos: usize) -> Option<InFlight> {
        let entry = self.in_flight.remove(pos)?;
        // What left the "ahead" part: the entry itself, or (when the head finished)
        // the one that becomes the new head.
        let left = if pos == 0 { self.in_flight.front().copied() } else { Some(entry) };
        if let Some(f) = left {
            self.ahead_ms -= f.pred;
            self.ahead_bytes = self.ahead_bytes.saturating_sub(f.bytes);
        }
        if self.in_flight.len() <= 1 || !self.ahead_ms.is_finite() || self.ahead_ms < 0.0 {
            // Nothing ahead (or float drift): start again from exact values.
            self.ahead_ms = self.in_flight.iter().skip(1).map(|f| f.pred).sum();
            self.ahead_bytes = self.in_flight.iter().skip(1).map(|f| f.bytes).sum();
        }
        Some(entry)
    }

    pub(super) fn state_str(&self) -> &'static str {
        if self.retiring.is_some() || self.kill.is_some() {
            "shutting-down"
        } else if !self.ready {
            "initializing"
        } else if !self.in_flight.is_empty() {
            "busy"
        } else {
            "ready"
        }
    }

    pub(super) fn current_task(&self, q: &TaskQueue<PoolTask>) -> Option<String> {
        self.in_flight
            .front()
            .filter(|f| !f.abandoned)
            .and_then(|f| q.get(f.seq))
            .map(|r| r.id.clone())
    }
}

pub(super) struct Slot {
    pub(super) group: usize,
    /// Capabilities of this slot's workers: the group's plus what the last one declared.
    pub(super) caps: Vec<String>,
    /// The initialize/scaleUp operation waiting for this slot's first worker.
    pub(super) op: Option<u64>,
    pub(super) unstable: u32,
    pub(super) restarts: u64,
    pub(super) failed: bool,
    pub(super) respawn_at: Option<Instant>,
    pub(super) worker: Option<WorkerNo>,
}

/// The pool's counters and histograms (`report.rs` shows them).
#[derive(Default)]
pub(super) struct Metrics {
    /// Seconds tasks waited in the queue, and completed tasks ran.
    pub(super) wait: crate::metrics::Histogram,
    pub(super) run: crate::metrics::Histogram,
    pub(super) tasks: TaskCounts,
    pub(super) workers: WorkerCounts,
}

/// Tasks accepted, completed, and failed for good (rejected); `reused`: completed on
/// a worker that had run a task before.
#[derive(Default)]
pub(super) struct TaskCounts {
    pub(super) submitted: u64,
    pub(super) completed: u64,
    pub(super) failed: u64,
    pub(super) reused: u64,
}

/// An initialize or scale call waiting for its workers: to get ready (`waiting`
/// counts them down) or, for a scaleDown, to exit.
pub(super) enum PendingOp {
    Init {
        op: u64,
        waiting: usize,
        failed: Option<CoreError>,
    },
    ScaleUp {
        op: u64,
        waiting: usize,
        added: usize,
    },
    ScaleDown {
        op: u64,
        waiting: Vec<WorkerNo>,
        removed: usize,
    },
}

/// Everything a pool knows, grouped by the concern that owns each part, so a step's
/// signature (or the fields it reaches for) shows what it may touch.
pub(super) struct State {
    pub(super) cfg: PoolConfig,
    pub(super) phase: Phase,
    /// When the pool was created, then when initialize began (its uptime).
    pub(super) started: Instant,
    pub(super) roster: Roster,
    /// Waiting and running tasks, retries and dead letters (`crate::queue`).
    pub(super) queue: TaskQueue<PoolTask>,
    /// Heartbeats, samples, zombies and alerts (`crate::health`).
    pub(super) health: HealthMonitor,
    pub(super) sched: Scheduling,
    pub(super) ops: Operations,
    pub(super) clock: Timers,
    pub(super) effects: Effects,
    pub(super) metrics: Metrics,
    /// Core-owned tasks (`owned.rs`): where each one's outcome goes.
    pub(super) owned: FastMap<u64, tokio::sync::oneshot::Sender<super::owned::Settled>>,
    /// Core-owned tasks whose workers may call back (`job-call`): where the calls go.
    pub(super) owned_calls: FastMap<u64, tokio::sync::mpsc::UnboundedSender<super::owned::JobCall>>,
    pub(super) next_owned: u64,
    /// Only the core's threads read worker replies (`Pool::set_core_reads`).
    pub(super) core_reads: bool,
}

/// The workers and the slots they fill: `spawn.rs` adds workers, `lifecycle.rs`
/// removes them and refills slots, `scale.rs` adds and removes slots.
pub(super) struct Roster {
    pub(super) workers: BTreeMap<WorkerNo, Worker>,
    pub(super) slots: BTreeMap<SlotNo, Slot>,
    pub(super) next_worker: WorkerNo,
    pub(super) next_slot: SlotNo,
}

/// Workers started, started again in a slot, and exited unexpectedly.
#[derive(Default)]
pub(super) struct WorkerCounts {
    pub(super) spawned: u64,
    pub(super) restarted: u64,
    pub(super) crashed: u64,
}

/// What dispatch remembers from one call to the next (`dispatch.rs`, `replies.rs`).
pub(super) struct Scheduling {
    /// The worker that got the last task (round-robin goes on after it).
    pub(super) rr_last: WorkerNo,
    /// Moving average of run time (ms) per task type, to predict what prefetch costs.
    pub(super) type_avg: FastMap<String, f64>,
    /// Tasks handed to workers so far (orders `Worker::last_used`).
    pub(super) uses: u64,
    /// A submit was refused with `ERR_QUEUE_FULL`: `drain` is emitted once the queue
    /// is empty again.
    pub(super) queue_full_seen: bool,
}

/// Initialize, scale and shutdown calls under way (`scale.rs`, `shutdown.rs`).
pub(super) struct Operations {
    /// Initialize and scale operations waiting for workers to get ready or exit.
    pub(super) pending: Vec<PendingOp>,
    /// The shutdown call being carried out, and later ones that wait for it.
    pub(super) shutdown_op: Option<u64>,
    pub(super) shutdown_waiters: Vec<u64>,
    /// When a graceful shutdown stops waiting for the tasks.
    pub(super) shutdown_deadline: Option<Instant>,
    /// A failed initialize, answered once its workers are gone.
    pub(super) init_failure: Option<InitFailure>,
}

/// An initialize that failed: its operation and the error it is rejected with.
pub(super) struct InitFailure {
    pub(super) op: u64,
    pub(super) err: CoreError,
}

/// The timer loop's clock (`supervise.rs`; the autoscaler's in `scale.rs`).
pub(super) struct Timers {
    /// When the timer loop sleeps until (None while it is awake).
    pub(super) next_wake: Option<Instant>,
    pub(super) last_health: Instant,
    pub(super) next_autoscale: Option<Instant>,
    pub(super) scale_cooldown_until: Option<Instant>,
}

/// What the lock's holder leaves to be done once it is released (`events.rs`,
/// `Pool::after`).
pub(super) struct Effects {
    /// The batch of event records being built (JSON array text).
    pub(super) ev: String,
    /// JavaScript listens to per-task events (`task-assigned`, `task-completed`).
    pub(super) task_events: bool,
    /// Slots to start a worker for.
    pub(super) spawn_requests: Vec<SlotNo>,
    /// A deadline moved earlier than the timer loop's sleep: wake it.
    pub(super) wake_hint: bool,
}

impl State {
    /// A pool not initialized yet, with its queue and health monitor set up from `cfg`.
    pub(super) fn new(cfg: PoolConfig) -> State {
        let queue = TaskQueue::new(cfg.queue_options());
        let health = HealthMonitor::new(cfg.health_options());
        let now = Instant::now();
        State {
            cfg,
            phase: Phase::Created,
            started: now,
            roster: Roster {
                workers: BTreeMap::new(),
                slots: BTreeMap::new(),
                next_worker: WorkerNo(0),
                next_slot: SlotNo(0),
            },
            queue,
            health,
            sched: Scheduling {
                rr_last: WorkerNo(u64::MAX),
                type_avg: FastMap::default(),
                uses: 0,
                queue_full_seen: false,
            },
            ops: Operations {
                pending: Vec::new(),
                shutdown_op: None,
                shutdown_waiters: Vec::new(),
                shutdown_deadline: None,
                init_failure: None,
            },
            clock: Timers {
                next_wake: None,
                last_health: now,
                next_autoscale: None,
                scale_cooldown_until: None,
            },
            effects: Effects {
                ev: String::new(),
                task_events: false,
                spawn_requests: Vec::new(),
                wake_hint: false,
            },
            metrics: Metrics::default(),
            owned: FastMap::default(),
            owned_calls: FastMap::default(),
            next_owned: super::owned::OWNED_SEQ_BASE,
            core_reads: false,
        }
    }
}

/// Whether `slot` may be removed: it exists, and it has no capabilities or some other
/// live slot has all of them.
fn slot_removable(slot: SlotNo, slots: &BTreeMap<SlotNo, Slot>) -> bool {
    let Some(caps) = slots.get(&slot).map(|s| &s.caps) else {
        return false;
    };
    caps.is_empty()
        || slots
            .iter()
            .any(|(&o, s)| o != slot && !s.failed && balance::can_serve(caps, &s.caps))
}

impl State {
    pub(super) fn fifo(&self) -> bool {
        self.cfg.transport == "fifo"
    }

    /// `<fifoDir>/worker-<n>-in.fifo` (pool → worker) and `-out.fifo` (worker → pool).
    pub(super) fn fifo_paths(&self, worker_id: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::path::Path::new(&self.cfg.fifo_dir);
        (dir.join(format!("{worker_id}-in.fifo")), dir.join(format!("{worker_id}-out.fifo")))
    }

    pub(super) fn remove_fifos(&self, worker_id: &str) {
        if self.fifo() {
            let (a, b) = self.fifo_paths(worker_id);
            let _ = std::fs::remove_file(a);
            let _ = std::fs::remove_file(b);
        }
    }

    /// Brings the health monitor's view of each worker (state, current task, tasks run)
    /// up to date. Done when someone looks, not on every task.
    pub(super) fn sync_health(&mut self) {
        for w in self.roster.workers.values() {
            let cur = w.current_task(&self.queue);
            self.health.set_state(&w.id, w.state_str(), cur.as_deref(), w.tasks_executed);
        }
    }

    /// Scaling down or idling out never removes the last slot with a set of
    /// capabilities (tasks that need them would have nowhere to go).
    pub(super) fn slot_removable(&self, slot: SlotNo) -> bool {
        slot_removable(slot, &self.roster.slots)
    }

    pub(super) fn require_running(&self) -> CoreResult<()> {
        match self.phase {
            Phase::Running => Ok(()),
            Phase::Created | Phase::Initializing => Err(CoreError::new(
                Code::PoolNotInitialized,
                "Pool not initialized: call initialize() (or use createWorkerPool) first",
            )),
            Phase::ShuttingDown | Phase::Closing => Err(CoreError::new(Code::PoolShuttingDown, "Pool is shutting down")),
            Phase::Shutdown => Err(CoreError::new(Code::PoolShutdown, "Pool has been shut down")),
        }
    }

    pub(super) fn new_slot(&mut self, group: usize) -> SlotNo {
        let n = self.roster.next_slot.bump();
        self.roster.slots.insert(
            n,
            Slot {
                group,
                caps: self
                    .cfg
                    .worker_groups
                    .get(group)
                    .map(|g| g.capabilities.clone())
                    .unwrap_or_default(),
                op: None,
                unstable: 0,
                restarts: 0,
                failed: false,
                respawn_at: None,
                worker: None,
            },
        );
        n
    }

    /// Slots that count toward the pool's size (not given up on).
    pub(super) fn active_size(&self) -> usize {
        self.roster.slots.values().filter(|s| !s.failed).count()
    }

    /// Whether some slot of the pool (its worker now, or the one that replaces it)
    /// has every capability in `requires`.
    pub(super) fn any_worker_could_serve(&self, requires: &[String]) -> bool {
        self.roster
            .slots
            .values()
            .any(|s| !s.failed && balance::can_serve(requires, &s.caps))
    }

    pub(super) fn failed_slots(&self) -> u64 {
        self.roster.slots.values().filter(|s| s.failed).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(caps: &[&str], failed: bool) -> Slot {
        Slot {
            group: 0,
            caps: caps.iter().map(|c| c.to_string()).collect(),
            op: None,
            unstable: 0,
            restarts: 0,
            failed,
            respawn_at: None,
            worker: None,
        }
    }

    #[test]
    fn the_last_slot_with_a_capability_is_not_removable() {
        let mut slots = BTreeMap::new();
        slots.insert(SlotNo(0), slot(&[], false));
        slots.insert(SlotNo(1), slot(&["gpu"], false));
        slots.insert(SlotNo(2), slot(&["gpu", "big"], true));
        assert!(slot_removable(SlotNo(0), &slots));
        // Slot 2 has gpu too, but it was given up.
        assert!(!slot_removable(SlotNo(1), &slots));
        slots.insert(SlotNo(3), slot(&["gpu", "big"], false));
        assert!(slot_removable(SlotNo(1), &slots));
        // Slot 3 cannot: slot 2 is given up, and slot 1 lacks "big".
        assert!(!slot_removable(SlotNo(3), &slots));
        assert!(!slot_removable(SlotNo(9), &slots));
    }
}
