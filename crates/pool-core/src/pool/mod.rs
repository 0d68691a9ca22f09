//! The pool: workers, dispatch, the task lifecycle, supervision and metrics.
//!
//! This file holds the `Pool` handle, its locking, and the public API. Everything the
//! pool knows is one `State` (in `state`) behind a mutex; each concern is a separate
//! `impl State` (or `impl Pool`) block in its own file:
//!
//! | file           | owns                                                                 |
//! |----------------|----------------------------------------------------------------------|
//! | `state.rs`     | `State`, `Worker`, `Slot`, pending operations, counters, small queries |
//! | `events.rs`    | the batch of event records for JavaScript                            |
//! | `io.rs`        | outbox and writer, the core's reader, `Pool::pump`, message splitting |
//! | `spawn.rs`     | starting a worker process and its transport; failed starts           |
//! | `dispatch.rs`  | prediction, prefetch admission, picking a worker, sending tasks      |
//! | `replies.rs`   | messages from workers and what a reply does                          |
//! | `tasks.rs`     | admitting a task; failed, cancelled and abandoned attempts           |
//! | `lifecycle.rs` | retire, kill, protocol errors, a worker's exit and its replacement   |
//! | `scale.rs`     | initialize/scale operations, adding and removing slots, autoscale    |
//! | `shutdown.rs`  | graceful and immediate shutdown                                      |
//! | `supervise.rs` | the timer loop, deadlines, the poller backstop, health checks        |
//! | `report.rs`    | worker status, metrics JSON, Prometheus text, `call` verbs           |
//! | `owned.rs`     | core-owned tasks (the shared queue's jobs), settled to a channel     |
//! | `fuzzing.rs`   | the private parsers and encoders, for the fuzz targets in `fuzz/`    |
//!
//! Locking: the JS thread takes the lock to submit, query, and handle the worker
//! messages it reads itself (`Pool::pump`); the core's own threads take it for exits,
//! timers, and the messages they read while the JS thread is busy. A write to a worker
//! under the lock never blocks: what its socket does not take at once waits in its
//! outbox for its writer task. Events for JavaScript are appended to one buffer as
//! JSON text and handed to the `EventSink` as one batch per lock, in order
//! (`Pool::after`).

mod dispatch;
mod events;
#[doc(hidden)]
pub mod fuzzing;
mod io;
mod lifecycle;
mod owned;
mod replies;
mod report;
mod scale;
mod shutdown;
mod spawn;
mod state;
mod supervise;
mod tasks;

pub use events::append_batch;
pub use io::Pumped;
pub use owned::{JobCall, Room, Settled};
use state::{PendingOp, Phase, State};

use crate::config::PoolConfig;
use crate::error::{Code, CoreError, CoreResult};
use crate::fdio::Channel;
use crate::process;
use crate::queue::{Now, TaskData};
use crate::runtime;
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Receives batches of events as a JSON array text.
pub trait EventSink: Send + Sync + 'static {
    fn deliver(&self, batch: String);
    /// A worker's channel opened: the sink may also read it on its own thread with
    /// `Pool::pump` (and must stop once `pump` says `Closed` or `channel_closed` is called).
    fn watch(&self, _pool: &Pool, _ch: Arc<Channel>) {}
    /// The core's reader of this channel finished; no more messages will come from it.
    fn channel_closed(&self, _ch: &Arc<Channel>) {}
}

/// What a pool task carries: the type and payload as JSON text, never parsed here.
#[derive(Debug, Clone)]
pub struct PoolTask {
    pub type_json: String,
    pub payload_json: String,
    pub metadata_json: Option<String>,
    pub requires: Vec<String>,
    /// What the worker is told about the job this task runs (a shared-queue job that is
    /// not in this package's format: its id, name, options, attempts; JSON text), sent
    /// as the task's `job` field. Never part of JavaScript's own tasks.
    pub job_json: Option<String>,
}

impl TaskData for PoolTask {
    fn write_task_json(&self, out: &mut String) {
        out.push_str("{\"type\":");
        out.push_str(&self.type_json);
        out.push_str(",\"payload\":");
        out.push_str(&self.payload_json);
        if let Some(m) = &self.metadata_json {
            out.push_str(",\"metadata\":");
            out.push_str(m);
        }
        if !self.requires.is_empty() {
            out.push_str(",\"requires\":");
            out.push_str(&serde_json::to_string(&self.requires).unwrap_or_else(|_| "[]".into()));
        }
        out.push('}');
    }
}

pub struct Inner {
    state: Mutex<State>,
    wake: Notify,
    sink: Box<dyn EventSink>,
}

/// The pool handle. Cheap to clone; the pool lives while workers or tasks need it.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    pub fn new(cfg: PoolConfig, sink: Box<dyn EventSink>) -> CoreResult<Pool> {
        spawn::check_programs(&cfg)?;
        let inner = Arc::new(Inner {
            state: Mutex::new(State::new(cfg)),
            wake: Notify::new(),
            sink,
        });
        let pool = Pool { inner };
        let rt = runtime::handle();
        let p = pool.clone();
        rt.spawn(async move { p.timer_loop().await });
        Ok(pool)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state, then moves queued events out and wakes whoever must act.
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.lock();
        let r = f(&mut st);
        self.after(st);
        r
    }

    fn after(&self, mut st: MutexGuard<'_, State>) {
        st.maybe_close();
        st.forward_queue_and_health_events();
        let spawns = std::mem::take(&mut st.effects.spawn_requests);
        let wake = st.take_wake_hint();
        let batch = st.take_events();
        if !batch.is_empty() {
            // Delivered under the lock so batches reach JS in the order they were made;
            // the call only queues (non-blocking threadsafe function).
            self.inner.sink.deliver(batch);
        }
        drop(st);
        if wake {
            self.inner.wake.notify_one();
        }
        for slot in spawns {
            let p = self.clone();
            runtime::handle().spawn(async move { p.spawn_worker(slot) });
        }
    }

    // ---------------------------------------------------------------- JS-facing API

    pub fn config_json(&self) -> String {
        self.lock().cfg.to_json()
    }

    pub fn set_interest(&self, task_events: bool, queue_events: bool, health_events: bool) {
        let mut st = self.lock();
        st.effects.task_events = task_events;
        st.queue.emit = queue_events;
        st.health.emit = health_events;
    }

    pub fn initialize(&self, size: Option<u32>, op: u64) -> CoreResult<()> {
        self.with(|st| {
            match st.phase {
                Phase::Created => {}
                Phase::Shutdown | Phase::ShuttingDown | Phase::Closing => {
                    return Err(CoreError::new(Code::PoolShutdown, "Pool has been shut down; create a new pool"))
                }
                _ => return Err(CoreError::new(Code::PoolAlreadyInitialized, "Pool already initialized")),
            }
            let mut plan: Vec<usize> = Vec::new();
            if st.cfg.worker_groups.is_empty() {
                let n = size.unwrap_or(st.cfg.pool_size).clamp(st.cfg.min_workers, st.cfg.max_workers);
                plan.extend(std::iter::repeat_n(0, n as usize));
            } else {
                for (g, grp) in st.cfg.worker_groups.iter().enumerate() {
                    plan.extend(std::iter::repeat_n(g, grp.size as usize));
                }
            }
            if st.fifo() {
                crate::fifo::claim_dir(&st.cfg.fifo_dir)?;
            }
            st.phase = Phase::Initializing;
            st.started = Instant::now();
            st.health.set_monitoring(true);
            st.ops.pending.push(PendingOp::Init {
                op,
                waiting: plan.len(),
                failed: None,
            });
            for g in plan {
                let slot = st.new_slot(g);
                st.roster.slots.get_mut(&slot).expect("new slot").op = Some(op);
                st.effects.spawn_requests.push(slot);
            }
            st.log("info", &format!("Initializing pool with {} workers", st.roster.slots.len()));
            Ok(())
        })
    }

    /// Submits many tasks in one call. `batch` has one submit line per task (decoded by
    /// `tasks::decode_submit_line`; the format table is in docs/ARCHITECTURE.md).
    /// Returns the tasks refused at once, with their errors; the rest are queued and
    /// settle through events.
    pub fn submit_batch(&self, batch: &str) -> Vec<(u64, CoreError)> {
        self.with(|st| {
            let mut refused = Vec::new();
            let phase_err = st.require_running().err();
            let now = Now::read();
            for line in batch.split('\n').filter(|l| !l.is_empty()) {
                let Some((seq, task)) = tasks::decode_submit_line(line) else {
                    continue;
                };
                if let Some(e) = &phase_err {
                    refused.push((seq, e.clone()));
                    continue;
                }
                match st.submit_line(seq, task, now) {
                    Ok(()) => {}
                    Err(e) => refused.push((seq, e)),
                }
            }
            if !batch.is_empty() && phase_err.is_none() {
                st.dispatch();
            }
            refused
        })
    }

    /// Cancels a task (AbortSignal). Returns false when the task is not live.
    pub fn cancel(&self, seq: u64, reason: &str) -> bool {
        self.with(|st| st.cancel_task(seq, reason))
    }

    pub fn scale_up(&self, count: u32, op: u64) -> CoreResult<()> {
        self.with(|st| {
            st.require_running()?;
            st.scale_up(count as usize, op);
            Ok(())
        })
    }

    pub fn scale_down(&self, count: u32, op: u64) -> CoreResult<()> {
        self.with(|st| {
            st.require_running()?;
            st.scale_down(count as usize, op);
            Ok(())
        })
    }

    pub fn shutdown(&self, graceful: bool, op: u64) {
        self.with(|st| st.begin_shutdown(graceful, op));
    }

    /// Last resort when the JS side goes away (process exit, GC): kill everything now.
    pub fn kill_all(&self) {
        let mut st = self.lock();
        // No respawning from here on.
        if !matches!(st.phase, Phase::Shutdown | Phase::Created) {
            st.phase = Phase::Closing;
        }
        for w in st.roster.workers.values() {
            process::kill_group(w.pid, libc::SIGKILL);
        }
    }

    pub fn worker_status_json(&self, id: &str) -> String {
        let mut st = self.lock();
        st.sync_health();
        st.roster
            .workers
            .values()
            .find(|w| w.id == id)
            .map(|w| st.worker_status(w).to_string())
            .unwrap_or_else(|| "null".into())
    }

    pub fn all_workers_json(&self) -> String {
        let mut st = self.lock();
        st.sync_health();
        Value::Array(st.roster.workers.values().map(|w| st.worker_status(w)).collect()).to_string()
    }

    pub fn metrics_json(&self) -> String {
        let mut st = self.lock();
        st.sync_health();
        st.metrics_json().to_string()
    }

    pub fn prometheus(&self) -> String {
        self.lock().prometheus()
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        self.lock().roster.workers.values().map(|w| w.pid).collect()
    }

    /// What a thread that polls the workers' channels itself (the JS thread) needs
    /// to decide whether to spin for a reply before it sleeps in its event loop:
    /// how many of this pool's workers are busy, and for how long it may spin for
    /// them (`None`: not at all). Sleeping costs a wake-up per reply (tens of µs on a
    /// VM when the CPU went idle); spinning pays only when the reply is due sooner.
    /// So a budget exists only while every busy worker runs a task predicted (from
    /// its type's history) to finish within `spinWaitUs` of its start, and lasts at
    /// most until `spinWaitUs` after that start. The caller adds up the busy workers
    /// of all its pools: the spinner must not take a busy worker's CPU. The channels
    /// of the busy workers (the ones to poll) are appended to `fds`.
    pub fn spin_budget(&self, fds: &mut Vec<std::os::fd::RawFd>) -> (usize, Option<Duration>) {
        let st = self.lock();
        let cap = Duration::from_micros(st.cfg.spin_wait_us);
        let mut spin = !cap.is_zero() && st.phase == Phase::Running;
        let now = Instant::now();
        let (mut busy, mut budget) = (0, Duration::ZERO);
        for w in st.roster.workers.values() {
            let Some(head) = w.in_flight.front() else { continue };
            busy += 1;
            // An unknown type predicts infinity (and NaN never passes).
            match w.polled_channel() {
                Some(ch) if spin && !head.pred.is_nan() && head.pred * 1000.0 <= st.cfg.spin_wait_us as f64 => {
                    fds.push(ch.fd());
                    let elapsed = now.duration_since(w.head_started.unwrap_or(now));
                    budget = budget.max(cap.saturating_sub(elapsed));
                }
                _ => spin = false,
            }
        }
        (busy, (spin && !budget.is_zero()).then_some(budget))
    }

    /// Whether two handles are the same pool.
    pub fn same(&self, other: &Pool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The `call` verbs of `pool.taskQueue` / `pool.healthMonitor`: `queue.<verb>` or
    /// `health.<verb>`, with the verbs of `crate::verbs`.
    pub fn call(&self, method: &str, args: &Value) -> CoreResult<String> {
        self.with(|st| st.call(method, args))
    }

    /// Resubmits dead-lettered tasks (all, or the one with `id`) under sequence numbers
    /// `first_seq`, `first_seq + 1`, ...; returns them.
    pub fn requeue_dead_letters(&self, id: Option<&str>, first_seq: u64) -> CoreResult<Vec<(u64, String)>> {
        self.with(|st| {
            st.require_running()?;
            let letters = st.queue.take_dead_letters(id);
            let mut out = Vec::new();
            for (i, d) in letters.into_iter().enumerate() {
                let seq = first_seq + i as u64;
                let r = st
                    .queue
                    .enqueue_as(seq, d.data, d.priority, Some(d.timeout_ms), Some(d.max_retries), Now::read());
                st.metrics.tasks.submitted += 1;
                out.push(r);
            }
            st.reject_unservable();
            st.dispatch();
            Ok(out)
        })
    }
}
