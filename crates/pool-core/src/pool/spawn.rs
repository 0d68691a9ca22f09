//! Starting a worker for a slot: the child process with its environment, its
//! transport (an IPC socket, or a pair of FIFOs), the `Worker` entry, its reader and
//! writer tasks and its exit waiter; and what a start that failed does to the slot
//! and to a pending initialize.

use super::io::{writer, Outbox, OutboxInner, ReaderEnds};
use super::lifecycle::WorkerExit;
use super::state::{HeapUsage, PendingOp, Phase, SlotNo, State, Worker};
use super::Pool;
use crate::error::{Code, CoreError};
use crate::process;
use serde_json::json;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a worker's exit waits for its reader to take the last messages (bounded:
/// a grandchild may hold the channel open).
const READER_DRAIN_WAIT: Duration = Duration::from_millis(1000);
/// How long the exit of a worker that never got ready waits for its last stderr
/// lines (bounded for the same reason).
const STDERR_DRAIN_WAIT: Duration = Duration::from_millis(500);

impl Pool {
    pub(super) fn spawn_worker(&self, slot: SlotNo) {
        let mut st = self.lock();
        if !matches!(st.phase, Phase::Initializing | Phase::Running) {
            return;
        }
        let Some(s) = st.slots.get(&slot) else { return };
        if s.failed || s.worker.is_some() {
            return;
        }
        let group = s.group;
        let num = st.next_worker.bump();
        let id = format!("worker-{}", num.0);
        let (script, env, caps) = match st.cfg.worker_groups.get(group) {
            Some(g) => (g.worker_script.clone(), g.env.clone(), g.capabilities.clone()),
            None => (st.cfg.worker_script.clone(), st.cfg.env.clone(), Vec::new()),
        };
        let spec = process::SpawnSpec {
            exec_path: &st.cfg.exec_path,
            exec_argv: &st.cfg.exec_argv,
            script: &script,
            env: vec![
                ("WORKER_ID".to_string(), id.clone()),
                ("WORKER_CONFIG".to_string(), st.cfg.worker_config_json(&caps)),
            ],
            extra_env: &env,
            ipc: !st.fifo(),
        };
        let mut spec = spec;
        let mut fifo_files = None;
        if st.fifo() {
            let (inp, outp) = st.fifo_paths(&id);
            let made = process::make_fifo(&inp)
                .and_then(|_| process::make_fifo(&outp))
                .and_then(|_| Ok((process::open_fifo(&inp)?, process::open_fifo(&outp)?)));
            match made {
                Ok(files) => fifo_files = Some(files),
                Err(e) => {
                    let err = CoreError::new(
                        Code::WorkerStartFailed,
                        format!("Could not create the FIFOs of worker {id} in {}: {e}", st.cfg.fifo_dir),
                    );
                    st.log("error", &err.message);
                    st.slot_start_failed(slot, err);
                    self.after(st);
                    return;
                }
            }
            spec.env.push(("WORKER_TRANSPORT".into(), "fifo".into()));
            spec.env.push(("WORKER_FIFO_IN".into(), inp.to_string_lossy().into_owned()));
            spec.env.push(("WORKER_FIFO_OUT".into(), outp.to_string_lossy().into_owned()));
            spec.env.push((
                "WORKER_FIFO_MAX_FRAME_BYTES".into(),
                st.cfg.max_message_bytes.min(u32::MAX as u64).to_string(),
            ));
        }
        let spawned = match process::spawn(&spec) {
            Ok(s) => s,
            Err(e) => {
                let err = CoreError::new(
                    Code::WorkerStartFailed,
                    format!("Could not start worker {id} ({} {}): {e}", st.cfg.exec_path, script),
                );
                st.log("error", &err.message);
                st.slot_start_failed(slot, err);
                self.after(st);
                return;
            }
        };
        let now = Instant::now();
        // Non-blocking before the clone: both handles share one open file description.
        let direct: Option<std::fs::File> = match (&spawned.channel, &fifo_files) {
            (Some(chan), _) => {
                let _ = chan.set_nonblocking(true);
                chan.try_clone().ok().map(|c| std::fs::File::from(std::os::fd::OwnedFd::from(c)))
            }
            (None, Some((inp, _))) => inp.try_clone().ok(),
            _ => None,
        };
        let out = Arc::new(Outbox {
            inner: Mutex::new(OutboxInner::default()),
            notify: Notify::new(),
            close: Notify::new(),
            direct,
            framed: fifo_files.is_some(),
        });
        st.metrics.spawned += 1;
        let ready_deadline = now + Duration::from_millis(st.cfg.ready_timeout_ms);
        st.workers.insert(
            num,
            Worker {
                num,
                id: id.clone(),
                pid: spawned.pid,
                slot,
                group,
                ready: false,
                spawned: now,
                ready_at: None,
                last_activity: now,
                idle_since: now,
                tasks_executed: 0,
                in_flight: VecDeque::new(),
                head_deadline: None,
                head_started: None,
                abandon_deadline: None,
                out: out.clone(),
                batch: false,
                cancel: false,
                capabilities: caps,
                retiring: None,
                retire_sent: false,
                kill: None,
                stderr: spawned.stderr_tail.clone(),
                heap: HeapUsage::default(),
                cpu_prev: None,
                rss: 0,
                cpu_percent: 0.0,
                ready_deadline,
                ahead_ms: 0.0,
                ahead_bytes: 0,
                chan: None,
                last_used: 0,
            },
        );
        if let Some(s) = st.slots.get_mut(&slot) {
            s.worker = Some(num);
        }
        st.health.register(&id, spawned.pid, "initializing");
        st.note_deadline(ready_deadline);
        let max_line = st.cfg.max_message_bytes as usize;
        self.after(st);

        // The exit waiter tells the reader the child is gone; the reader reads what the
        // worker wrote before dying and says when it is done, so replies sent just
        // before an exit are never mistaken for a crash.
        let (exited_tx, exited_rx) = tokio::sync::oneshot::channel::<()>();
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
        let ends = ReaderEnds {
            exited: exited_rx,
            drained: drained_tx,
        };
        let started = match (spawned.channel, fifo_files) {
            (Some(chan), _) => chan.try_clone().map(|w| {
                let ch = crate::fdio::Channel::new(num.0, OwnedFd::from(chan), max_line, false);
                self.start_reader(ch, ends);
                tokio::spawn(writer(out, crate::fdio::Sink::Socket(w)));
            }),
            (None, Some((inp, outp))) => tokio::net::unix::pipe::Sender::from_file_unchecked(inp).map(|tx| {
                let ch = crate::fdio::Channel::new(num.0, OwnedFd::from(outp), max_line, true);
                self.start_reader(ch, ends);
                tokio::spawn(writer(out, crate::fdio::Sink::Fifo(tx)));
            }),
            _ => Err(std::io::Error::other("no channel")),
        };
        if started.is_err() {
            process::kill_group(spawned.pid, libc::SIGKILL);
        }
        let p = self.clone();
        let mut child = spawned.child;
        let stderr_done = spawned.stderr_done;
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = exited_tx.send(());
            let _ = tokio::time::timeout(READER_DRAIN_WAIT, drained_rx).await;
            // A worker that died before it was ready is reported with its last stderr
            // lines: let the stderr reader drain the pipe first (bounded: a grandchild
            // may hold the pipe open).
            let ready = p.lock().workers.get(&num).is_some_and(|w| w.ready);
            if let (false, Some(done)) = (ready, stderr_done) {
                let _ = tokio::time::timeout(STDERR_DRAIN_WAIT, done).await;
            }
            let exit = match status {
                Ok(s) => WorkerExit {
                    code: s.code(),
                    signal: s.signal(),
                },
                Err(_) => WorkerExit { code: None, signal: None },
            };
            p.with(|st| st.on_exit(num, exit));
        });
    }
}

impl State {
    pub(super) fn slot_start_failed(&mut self, slot: SlotNo, err: CoreError) {
        if self.phase == Phase::Initializing && self.fail_init(err.clone()) {
            self.finish_ops();
            self.check_closed();
            return;
        }
        if let Some(op) = self.slots.get_mut(&slot).and_then(|s| s.op.take()) {
            self.op_worker_done(op, false);
            self.slots.remove(&slot);
            self.finish_ops();
        } else if let Some(s) = self.slots.get_mut(&slot) {
            s.failed = true;
        }
        self.reject_unservable();
        self.health
            .raise_alert("critical", None, "worker-spawn-failed", json!({ "message": err.message }));
    }

    /// Records a start failure against a pending initialize; true when there is one.
    pub(super) fn fail_init(&mut self, err: CoreError) -> bool {
        for op in self.ops.iter_mut() {
            if let PendingOp::Init { failed, .. } = op {
                if failed.is_none() {
                    *failed = Some(err);
                }
                return true;
            }
        }
        false
    }
}
