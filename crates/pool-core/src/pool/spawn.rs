//! Starting a worker for a slot: the child process with its environment, its
//! transport (an IPC socket, or a pair of FIFOs), the `Worker` entry, its reader and
//! writer tasks and its exit waiter; and what a start that failed does to the slot
//! and to a pending initialize.

use super::io::{writer, Outbox, ReaderEnds};
use super::lifecycle::WorkerExit;
use super::state::{HeapUsage, PendingOp, Phase, SlotNo, State, Worker, WorkerNo};
use super::Pool;
use crate::config::PoolConfig;
use crate::error::{Code, CoreError, CoreResult};
use crate::process;
use serde_json::json;
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a worker's exit waits for its reader to take the last messages (bounded:
/// a grandchild may hold the channel open).
const READER_DRAIN_WAIT: Duration = Duration::from_millis(1000);
/// How long the exit of a worker that never got ready waits for its last stderr
/// lines (bounded for the same reason).
const STDERR_DRAIN_WAIT: Duration = Duration::from_millis(500);

impl Pool {
    /// Starts a worker for `slot` if the slot still wants one: the process and its
    /// `Worker` entry under the lock, then its reader, writer and exit waiter.
    pub(super) fn spawn_worker(&self, slot: SlotNo) {
        let mut st = self.lock();
        let Some(group) = st.slot_wanting_worker(slot) else { return };
        let wn = st.roster.next_worker.bump();
        let launch = st.launch_of(group);
        let (spawned, fifos) = match st.start_process(&wn.id(), &launch) {
            Ok(started) => started,
            Err(err) => {
                st.log("error", &err.message);
                st.slot_start_failed(slot, err);
                self.after(st);
                return;
            }
        };
        let out = Arc::new(Outbox::new(direct_handle(&spawned, fifos.as_ref()), fifos.is_some()));
        st.add_worker(wn, slot, group, launch.caps, &spawned, out.clone());
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
        if self.start_transport(wn, spawned.channel, fifos, out, ends, max_line).is_err() {
            process::kill_group(spawned.pid, libc::SIGKILL);
        }
        self.watch_exit(wn, spawned.child, spawned.stderr_done, exited_tx, drained_rx);
    }

    /// The reader and writer tasks of a new worker's channel: its IPC socket, or its
    /// pair of FIFOs.
    fn start_transport(
        &self,
        wn: WorkerNo,
        socket: Option<std::os::unix::net::UnixStream>,
        fifos: Option<Fifos>,
        out: Arc<Outbox>,
        ends: ReaderEnds,
        max_line: usize,
    ) -> std::io::Result<()> {
        match (socket, fifos) {
            (Some(chan), _) => chan.try_clone().map(|w| {
                let ch = crate::fdio::Channel::new(wn.0, OwnedFd::from(chan), max_line, false);
                self.start_reader(ch, ends);
                tokio::spawn(writer(out, crate::fdio::Sink::Socket(w)));
            }),
            (None, Some(Fifos { to_worker, from_worker })) => tokio::net::unix::pipe::Sender::from_file_unchecked(to_worker).map(|tx| {
                let ch = crate::fdio::Channel::new(wn.0, OwnedFd::from(from_worker), max_line, true);
                self.start_reader(ch, ends);
                tokio::spawn(writer(out, crate::fdio::Sink::Fifo(tx)));
            }),
            _ => Err(std::io::Error::other("no channel")),
        }
    }

    /// The task that waits for a worker's exit, lets its reader (and, for a worker
    /// that never got ready, its stderr) drain, then hands the exit to `on_exit`.
    fn watch_exit(
        &self,
        wn: WorkerNo,
        mut child: tokio::process::Child,
        stderr_done: Option<oneshot::Receiver<()>>,
        exited_tx: oneshot::Sender<()>,
        drained_rx: oneshot::Receiver<()>,
    ) {
        let p = self.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = exited_tx.send(());
            let _ = tokio::time::timeout(READER_DRAIN_WAIT, drained_rx).await;
            // A worker that died before it was ready is reported with its last stderr
            // lines: let the stderr reader drain the pipe first (bounded: a grandchild
            // may hold the pipe open).
            let ready = p.lock().roster.workers.get(&wn).is_some_and(|w| w.ready);
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
            p.with(|st| st.on_exit(wn, exit));
        });
    }
}

/// The two named pipes of a worker on the FIFO transport.
struct Fifos {
    /// Pool → worker (the pool writes it).
    to_worker: std::fs::File,
    /// Worker → pool (the pool reads it).
    from_worker: std::fs::File,
}

/// What a worker of a group is started with.
struct Launch {
    program: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    caps: Vec<String>,
}

/// The handle the outbox writes to directly (before falling back to the writer task):
/// a clone of the IPC socket, or of the pool → worker FIFO.
fn direct_handle(spawned: &process::Spawned, fifos: Option<&Fifos>) -> Option<std::fs::File> {
    match (&spawned.channel, fifos) {
        (Some(chan), _) => {
            // Non-blocking before the clone: both handles share one open file description.
            let _ = chan.set_nonblocking(true);
            chan.try_clone().ok().map(|c| std::fs::File::from(OwnedFd::from(c)))
        }
        (None, Some(f)) => f.to_worker.try_clone().ok(),
        _ => None,
    }
}

/// Every worker's program must be there before the pool starts: a `workerScript` is
/// an existing file; a `workerCommand`'s program is an existing file when it has a
/// slash, else found on `PATH` (the workers' own, if their `env` sets one), as
/// `execvp` will look for it.
pub(super) fn check_programs(cfg: &PoolConfig) -> CoreResult<()> {
    let pool = (&cfg.worker_script, &cfg.worker_command, &cfg.env, String::new());
    let groups = cfg
        .worker_groups
        .iter()
        .enumerate()
        .map(|(i, g)| (&g.worker_script, &g.worker_command, &g.env, format!("workerGroups[{i}].")));
    for (script, command, env, prefix) in std::iter::once(pool).chain(groups) {
        match command {
            None if !std::path::Path::new(script).is_file() => {
                return Err(CoreError::config(
                    &format!("{prefix}workerScript"),
                    "the path of an existing file",
                    format!("\"{script}\" (no such file)"),
                ));
            }
            Some(argv) if process::find_program(&argv[0], env.get("PATH")).is_none() => {
                let where_ = if argv[0].contains('/') {
                    "no such file"
                } else {
                    "not found on PATH"
                };
                return Err(CoreError::config(
                    &format!("{prefix}workerCommand"),
                    "an argv array whose program exists (a path, or a name found on PATH)",
                    format!("\"{}\" ({where_})", argv[0]),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

impl State {
    /// The worker group of `slot` when it should get a worker now: the pool is starting
    /// or running and the slot exists, is not given up, and has no worker.
    fn slot_wanting_worker(&self, slot: SlotNo) -> Option<usize> {
        if !matches!(self.phase, Phase::Initializing | Phase::Running) {
            return None;
        }
        let s = self.roster.slots.get(&slot)?;
        (!s.failed && s.worker.is_none()).then_some(s.group)
    }

    /// The program, arguments, extra environment and capabilities of `group`'s
    /// workers (group 0 of a pool without groups is the pool's own).
    fn launch_of(&self, group: usize) -> Launch {
        let (program, args) = self.cfg.launch_argv(group);
        let (env, caps) = match self.cfg.worker_groups.get(group) {
            Some(g) => (g.env.clone(), g.capabilities.clone()),
            None => (self.cfg.env.clone(), Vec::new()),
        };
        Launch { program, args, env, caps }
    }

    /// Creates the worker's FIFOs (FIFO transport) and starts its process.
    fn start_process(&self, id: &str, launch: &Launch) -> CoreResult<(process::Spawned, Option<Fifos>)> {
        let mut spec = process::SpawnSpec {
            program: &launch.program,
            args: &launch.args,
            env: vec![
                ("WORKER_ID".to_string(), id.to_string()),
                ("WORKER_CONFIG".to_string(), self.cfg.worker_config_json(&launch.caps)),
            ],
            extra_env: &launch.env,
            ipc: !self.fifo(),
        };
        let fifos = if self.fifo() {
            let (fifos, env) = self.make_fifos(id)?;
            spec.env.extend(env);
            Some(fifos)
        } else {
            None
        };
        let spawned = process::spawn(&spec).map_err(|e| {
            CoreError::new(
                Code::WorkerStartFailed,
                format!("Could not start worker {id} ({} {}): {e}", launch.program, launch.args.join(" ")),
            )
        })?;
        Ok((spawned, fifos))
    }

    /// Creates and opens the FIFOs of worker `id`; returns them and the environment
    /// variables that tell the worker where they are.
    fn make_fifos(&self, id: &str) -> CoreResult<(Fifos, Vec<(String, String)>)> {
        let (inp, outp) = self.fifo_paths(id);
        let made = process::make_fifo(&inp)
            .and_then(|_| process::make_fifo(&outp))
            .and_then(|_| Ok((process::open_fifo(&inp)?, process::open_fifo(&outp)?)));
        let (to_worker, from_worker) = made.map_err(|e| {
            CoreError::new(
                Code::WorkerStartFailed,
                format!("Could not create the FIFOs of worker {id} in {}: {e}", self.cfg.fifo_dir),
            )
        })?;
        let env = vec![
            ("WORKER_TRANSPORT".into(), "fifo".into()),
            ("WORKER_FIFO_IN".into(), inp.to_string_lossy().into_owned()),
            ("WORKER_FIFO_OUT".into(), outp.to_string_lossy().into_owned()),
            (
                "WORKER_FIFO_MAX_FRAME_BYTES".into(),
                self.cfg.max_message_bytes.min(u32::MAX as u64).to_string(),
            ),
        ];
        Ok((Fifos { to_worker, from_worker }, env))
    }

    /// Enters a just-started worker: its `Worker` entry, its slot, its health record,
    /// and its worker-ready deadline.
    fn add_worker(&mut self, wn: WorkerNo, slot: SlotNo, group: usize, caps: Vec<String>, spawned: &process::Spawned, out: Arc<Outbox>) {
        let id = wn.id();
        let now = Instant::now();
        let ready_deadline = now + Duration::from_millis(self.cfg.ready_timeout_ms);
        self.metrics.workers.spawned += 1;
        self.health.register(&id, spawned.pid, "initializing");
        let worker = Worker {
            num: wn,
            id,
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
            out,
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
        };
        self.roster.workers.insert(wn, worker);
        if let Some(s) = self.roster.slots.get_mut(&slot) {
            s.worker = Some(wn);
        }
        self.note_deadline(ready_deadline);
    }

    fn slot_start_failed(&mut self, slot: SlotNo, err: CoreError) {
        if self.phase == Phase::Initializing && self.fail_init(err.clone()) {
            self.finish_ops();
            self.check_closed();
            return;
        }
        if let Some(op) = self.roster.slots.get_mut(&slot).and_then(|s| s.op.take()) {
            self.op_worker_done(op, false);
            self.roster.slots.remove(&slot);
            self.finish_ops();
        } else if let Some(s) = self.roster.slots.get_mut(&slot) {
            s.failed = true;
        }
        self.reject_unservable();
        self.health
            .raise_alert("critical", None, "worker-spawn-failed", json!({ "message": err.message }));
    }

    /// Records a start failure against a pending initialize; true when there is one.
    pub(super) fn fail_init(&mut self, err: CoreError) -> bool {
        for op in self.ops.pending.iter_mut() {
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
