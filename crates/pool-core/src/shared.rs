//! The shared queue, served by the core: the pool's side of BullMQ's worker protocol
//! (the `bullmq` crate), on the core's own threads.
//!
//! BullMQ's rules (fetching, locks, attempts, backoff, stalled jobs) are the `bullmq`
//! crate's; this file holds ours: which queues a pool serves (the base queue and each
//! capability set one of its workers has), how many jobs it holds (no more than the
//! workers that could start them), how a job becomes a task (`decode_job`) and an
//! attempt's outcome a job outcome (`outcome_of`), the registry of serving pools, and
//! cancels from producers. Each job runs as a core-owned task (`Pool::submit_owned`):
//! the JS thread does nothing for it, and its lock is renewed for as long as it runs.
//!
//! Registry keys, beside BullMQ's own, under `<prefix>:<name>:_cortex:`:
//!   pools       sorted set: pool id → last heartbeat (ms since the epoch)
//!   pool:<id>   JSON { host, pid, capabilitySets, workers, held }, expires
//!   capsets     set of the capability sets producers have used (JSON arrays)
//!   control     pub/sub channel: { cancel: jobId, reason } and { capset: [...] }

use crate::error::{Code, CoreError, CoreResult};
use crate::pool::{JobCall, Pool, PoolTask, Settled};
use bullmq::{Conn, ConnOptions, Failure, Job, Outcome, Processor, Scripts, Target, Worker, WorkerEvent, WorkerOptions};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};

const HEARTBEAT: Duration = Duration::from_millis(2000);
/// A pool whose heartbeat is older than this is not counted as serving.
const POOL_TTL_MS: u64 = 10_000;
/// Capability sets announced by producers are re-read this often (the control
/// channel usually tells sooner).
const CAPSETS_POLL: Duration = Duration::from_millis(5000);
/// A cancel for a job this pool does not hold (yet) is remembered this long.
const CANCEL_MEMORY: Duration = Duration::from_secs(60);
/// How long closing waits for the outcomes of the jobs held to be written.
const CLOSE_WAIT: Duration = Duration::from_millis(5000);
/// The job format this package writes (`{ cortex: 1, type, payload, ... }`).
const JOB_FORMAT: i64 = 1;
/// The backoff type our producers set: min(delay · 2^(n−1), data.maxBackoffMs).
const BACKOFF_TYPE: &str = "cortex";
const DEFAULT_MAX_BACKOFF_MS: u64 = 30_000;
/// The name of BullMQ's error for a failure that must not be retried.
const UNRECOVERABLE: &str = "UnrecoverableError";
/// Jobs held per worker that can run them, while short jobs run: the one it runs and
/// one waiting for it, so that a worker that finishes starts its next job without
/// waiting for a Redis round trip. Otherwise one per worker: a long job's successor
/// would wait here while another machine's idle workers could run it. Jobs are held
/// only when there are jobs (a drained queue leaves nothing to hold).
const HOLD_PER_WORKER: usize = 2;
/// "Short": every running job is predicted (from its type's history) to end within
/// this many ms; a held job then waits here no longer than that.
const HOLD_AHEAD_MAX_MS: f64 = 20.0;

/// The serving side's configuration (from the pool's `queue` option, resolved in JS).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedConfig {
    /// A `redis://` or `rediss://` URL (unless `sentinel` is given).
    #[serde(default)]
    pub url: String,
    /// Redis behind Sentinel (a `redis-sentinel://` URL, parsed in JS).
    #[serde(default)]
    pub sentinel: Option<SentinelConfig>,
    /// Redis Cluster (a `redis-cluster://` URL, parsed in JS).
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// The URL without its password, for messages.
    pub display: String,
    pub name: String,
    pub prefix: String,
    pub lock_duration_ms: u64,
    pub stalled_interval_ms: u64,
    /// Jobs held at once per queue; `None` follows the workers that can take them.
    pub concurrency: Option<usize>,
    /// The timeout of a plain BullMQ job (one not in this package's format, which
    /// carries none); `None` is the pool's `taskTimeout`.
    #[serde(default)]
    pub job_timeout_ms: Option<u64>,
    /// BullMQ's `maxStalledCount`: how often a job may stall before it fails.
    #[serde(default = "one")]
    pub max_stalled_count: u32,
    /// BullMQ's worker rate limiter: at most `max` jobs per `duration` ms, queue-wide.
    #[serde(default)]
    pub limiter: Option<Limiter>,
    pub connect_timeout_ms: u64,
    pub command_timeout_ms: u64,
    /// The installed bullmq package (its scripts are loaded from there).
    pub bullmq_dir: PathBuf,
    /// This pool's id in the registry.
    pub pool_id: String,
    pub host: String,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Limiter {
    pub max: u64,
    pub duration: u64,
}

/// The sentinels and the master's name, and how to talk to the master.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentinelConfig {
    pub sentinels: Vec<(String, u16)>,
    pub master_name: String,
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(default)]
    pub db: i64,
    #[serde(default)]
    pub tls: bool,
}

/// The seed nodes of a Redis Cluster, and how to talk to its nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    pub nodes: Vec<(String, u16)>,
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(default)]
    pub tls: bool,
}

impl SharedConfig {
    fn target(&self) -> Target {
        if let Some(c) = &self.cluster {
            return Target::Cluster {
                nodes: c.nodes.clone(),
                username: c.username.clone(),
                password: c.password.clone(),
                tls: c.tls,
            };
        }
        match &self.sentinel {
            Some(s) => Target::Sentinel {
                sentinels: s.sentinels.clone(),
                master: s.master_name.clone(),
                username: s.username.clone(),
                password: s.password.clone(),
                db: s.db,
                tls: s.tls,
            },
            None => Target::Url(self.url.clone()),
        }
    }
}

struct Registry {
    pools: String,
    pool: String,
    capsets: String,
    control: String,
}

/// Queue name → its worker and the capability set it carries.
type Served = HashMap<String, (Arc<Worker>, Vec<String>)>;

struct Inner {
    pool: Pool,
    cfg: SharedConfig,
    conn: Conn,
    scripts: Arc<Scripts>,
    reg: Registry,
    workers: Mutex<Served>,
    /// Job id → the sequence number of the task running it here.
    running: Mutex<HashMap<String, u64>>,
    /// Job id → when a cancel came for it while it was not running here.
    cancelled: Mutex<HashMap<String, Instant>>,
    stopping: AtomicBool,
    stop: Notify,
    /// Whether the last outage was logged as over (one log line per outage, not per retry).
    logged_up: AtomicBool,
}

/// A pool serving the shared queue. Dropping it does not stop it: call `close`.
#[derive(Clone)]
pub struct SharedServer {
    inner: Arc<Inner>,
}

fn unavailable(display: &str, why: impl std::fmt::Display) -> CoreError {
    CoreError::new(
        Code::QueueUnavailable,
        format!("The shared queue at {display} is unavailable: {why}"),
    )
}

impl SharedServer {
    /// Loads bullmq's scripts, connects, and starts serving the base queue (and every
    /// capability set announced so far that a worker of the pool has).
    pub async fn start(pool: Pool, cfg: SharedConfig) -> CoreResult<SharedServer> {
        let scripts = Scripts::load(&cfg.bullmq_dir).map_err(|e| CoreError::new(Code::QueueUnavailable, e.to_string()))?;
        let opts = ConnOptions {
            target: cfg.target(),
            command_timeout: Duration::from_millis(cfg.command_timeout_ms),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
        };
        let limit = Duration::from_millis(cfg.connect_timeout_ms);
        let conn = match tokio::time::timeout(limit, Conn::connect(opts)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(unavailable(&cfg.display, e)),
            Err(_) => {
                return Err(unavailable(
                    &cfg.display,
                    format!("no connection within {} ms", cfg.connect_timeout_ms),
                ))
            }
        };
        let base = format!("{}:{}:_cortex:", cfg.prefix, cfg.name);
        let reg = Registry {
            pools: format!("{base}pools"),
            pool: format!("{base}pool:{}", cfg.pool_id),
            capsets: format!("{base}capsets"),
            control: format!("{base}control"),
        };
        let inner = Arc::new(Inner {
            pool,
            cfg,
            conn,
            scripts: Arc::new(scripts),
            reg,
            workers: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            cancelled: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
            logged_up: AtomicBool::new(true),
        });
        inner.serve(Vec::new());
        inner.heartbeat().await.map_err(|e| unavailable(&inner.cfg.display, e))?;
        let _ = inner.discover().await;
        let i = inner.clone();
        tokio::spawn(async move { i.control_loop().await });
        let i = inner.clone();
        tokio::spawn(async move { i.timer_loop().await });
        Ok(SharedServer { inner })
    }

    /// The pool's workers changed: look for room again.
    pub fn refresh(&self) {
        for (w, _) in self.inner.lock_workers().values() {
            w.wake();
        }
    }

    /// Stops taking jobs. The jobs held finish (or are given back, as the pool's
    /// shutdown decides) and their outcomes are written.
    pub fn stop(&self) {
        if !self.inner.stopping.swap(true, Ordering::SeqCst) {
            for (w, _) in self.inner.lock_workers().values() {
                w.stop();
            }
            self.inner.stop.notify_waiters();
        }
    }

    /// Stops, waits (at most 5 s) for the outcomes of the jobs held to be written, and
    /// leaves the registry. Never waits for a Redis that does not answer: a job whose
    /// outcome could not be written runs again elsewhere once its lock expires.
    pub async fn close(&self) {
        self.stop();
        let workers: Vec<Arc<Worker>> = self.inner.lock_workers().values().map(|(w, _)| w.clone()).collect();
        let deadline = Instant::now() + CLOSE_WAIT;
        for w in workers {
            let left = deadline.saturating_duration_since(Instant::now());
            w.idle_within(left).await;
        }
        let reg = &self.inner.reg;
        let forget = redis::pipe().zrem(&reg.pools, &self.inner.cfg.pool_id).del(&reg.pool).to_owned();
        let mut con = self.inner.conn.cmd();
        let _ = tokio::time::timeout(Duration::from_secs(1), forget.query_async::<()>(&mut con)).await;
    }

    /// `{ held, queues, connected, since }`: what the pool's metrics show of its
    /// serving side; `since` is when commands started failing (ms since the epoch).
    pub fn status(&self) -> Value {
        let workers = self.inner.lock_workers();
        let held: usize = workers.values().map(|(w, _)| w.held()).sum();
        let down = self.inner.conn.down_since();
        json!({
            "held": held,
            "queues": workers.keys().collect::<Vec<_>>(),
            "connected": down.is_none(),
            "since": down,
        })
    }
}

impl Inner {
    fn lock_workers(&self) -> std::sync::MutexGuard<'_, Served> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn log(&self, level: &str, message: &str) {
        self.pool.log("SharedQueue", level, message);
    }

    /// Starts a worker for the queue of capability set `caps` (sorted), unless there
    /// is one, or no worker of the pool has every capability in it.
    fn serve(self: &Arc<Self>, caps: Vec<String>) {
        if self.stopping() {
            return;
        }
        let queue = queue_name_for(&self.cfg.name, &caps);
        let mut workers = self.lock_workers();
        if workers.contains_key(&queue) || (!caps.is_empty() && self.pool.capable_workers(&caps) == 0) {
            return;
        }
        let mut o = WorkerOptions::new(&self.cfg.prefix, &queue);
        o.lock_duration_ms = self.cfg.lock_duration_ms;
        o.stalled_interval_ms = self.cfg.stalled_interval_ms;
        o.max_stalled_count = self.cfg.max_stalled_count;
        o.limiter = self.cfg.limiter.map(|l| (l.max, l.duration));
        o.name = Some(self.cfg.pool_id.clone());
        let w = Worker::new(self.conn.clone(), self.scripts.clone(), o, format!("{}:{queue}", self.cfg.pool_id));
        w.start(Arc::new(Proc(self.clone())));
        workers.insert(queue, (w, caps));
    }

    /// Registers this pool as serving (every `HEARTBEAT`; the entry expires).
    async fn heartbeat(&self) -> bullmq::Result<()> {
        let held: usize = self.lock_workers().values().map(|(w, _)| w.held()).sum();
        let info = json!({
            "host": self.cfg.host,
            "pid": std::process::id(),
            "capabilitySets": self.pool.capability_sets(),
            "workers": self.pool.live_workers(),
            "held": held,
        });
        let now = bullmq::ops::now_ms();
        let mut con = self.conn.cmd();
        // Not MULTI: on a cluster each command is routed by its key (the registry's keys
        // share the prefix's hash tag, so they live on one node anyway).
        redis::pipe()
            .zadd(&self.reg.pools, &self.cfg.pool_id, now)
            .cmd("SET")
            .arg(&self.reg.pool)
            .arg(info.to_string())
            .arg("PX")
            .arg(POOL_TTL_MS)
            .query_async::<()>(&mut con)
            .await?;
        Ok(())
    }

    /// Serves every capability set producers have announced that a worker here has.
    async fn discover(self: &Arc<Self>) -> bullmq::Result<()> {
        let mut con = self.conn.cmd();
        let sets: Vec<String> = redis::cmd("SMEMBERS").arg(&self.reg.capsets).query_async(&mut con).await?;
        for text in sets {
            if let Ok(caps) = serde_json::from_str::<Vec<String>>(&text) {
                self.serve(caps);
            }
        }
        Ok(())
    }

    async fn timer_loop(self: Arc<Self>) {
        let mut since_discover = Duration::ZERO;
        while !self.stopping() {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => {}
                _ = self.stop.notified() => break,
            }
            if self.stopping() {
                break;
            }
            match self.heartbeat().await {
                Ok(()) => self.conn.succeeded(),
                Err(e) => {
                    self.conn.failed(&e);
                    self.log("warn", &format!("Shared queue: registry heartbeat failed: {e}"));
                }
            }
            since_discover += HEARTBEAT;
            if since_discover >= CAPSETS_POLL {
                since_discover = Duration::ZERO;
                let _ = self.discover().await;
            }
            let now = Instant::now();
            self.cancelled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, at| now.duration_since(*at) < CANCEL_MEMORY);
            for (w, _) in self.lock_workers().values() {
                w.wake();
            }
        }
    }

    /// Listens on the control channel (cancels, new capability sets), subscribing again
    /// after a lost connection.
    async fn control_loop(self: Arc<Self>) {
        while !self.stopping() {
            let subscribed = async {
                let mut ps = self.conn.client().get_async_pubsub().await?;
                ps.subscribe(&self.reg.control).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            let ps = tokio::select! {
                r = subscribed => r,
                _ = self.stop.notified() => return,
            };
            match ps {
                Ok(ps) => {
                    // A PING every heartbeat on the subscribed connection: one that went
                    // silent is replaced within a heartbeat and the command timeout.
                    let (mut sink, mut messages) = ps.split();
                    let limit = Duration::from_millis(self.cfg.command_timeout_ms);
                    let mut tick = tokio::time::interval(HEARTBEAT);
                    loop {
                        tokio::select! {
                            m = messages.next() => {
                                let Some(msg) = m else { break };
                                if let Ok(text) = msg.get_payload::<String>() {
                                    self.on_control(&text);
                                }
                            }
                            _ = tick.tick() => {
                                let pong = tokio::time::timeout(limit, sink.ping::<redis::Value>()).await;
                                if !matches!(pong, Ok(Ok(_))) {
                                    break;
                                }
                            }
                            _ = self.stop.notified() => return,
                        }
                    }
                }
                Err(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.stop.notified() => return,
                    }
                }
            }
        }
    }

    fn on_control(self: &Arc<Self>, text: &str) {
        let Ok(msg) = serde_json::from_str::<Value>(text) else { return };
        if let Some(id) = msg.get("cancel").and_then(Value::as_str) {
            let reason = msg.get("reason").and_then(Value::as_str).unwrap_or("");
            let reason = if reason.is_empty() { "aborted by its producer" } else { reason };
            let seq = self.running.lock().unwrap_or_else(|e| e.into_inner()).get(id).copied();
            match seq {
                Some(seq) => {
                    self.pool.cancel(seq, reason);
                }
                None => {
                    self.cancelled
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id.to_string(), Instant::now());
                }
            }
        } else if let Some(caps) = msg
            .get("capset")
            .and_then(|c| serde_json::from_value::<Vec<String>>(c.clone()).ok())
        {
            self.serve(caps);
        }
    }

    fn take_cancel(&self, job_id: &str) -> bool {
        self.cancelled.lock().unwrap_or_else(|e| e.into_inner()).remove(job_id).is_some()
    }

    async fn run(self: Arc<Self>, queue: String, job: Job) -> Outcome {
        let decoded = match decode_job(&job, &queue, self.cfg.job_timeout_ms) {
            Ok(d) => d,
            Err(e) => return self.outcome_of(Err(e), false),
        };
        let plain = decoded.plain;
        if self.take_cancel(&job.id) {
            return self.outcome_of(Err(CoreError::aborted("The task was aborted by its producer")), plain);
        }
        let (tx, mut rx) = oneshot::channel();
        // A plain job's processor may call back (progress, logs, data, children).
        let (calls_tx, mut calls) = match plain {
            true => {
                let (t, r) = mpsc::unbounded_channel();
                (Some(t), Some(r))
            }
            false => (None, None),
        };
        let seq = match self
            .pool
            .submit_owned(decoded.task, decoded.priority, decoded.timeout_ms, tx, calls_tx)
        {
            Ok(s) => s,
            Err(e) => return self.outcome_of(Err(e), plain),
        };
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(job.id.clone(), seq);
        // A cancel that came between the check above and now.
        if self.take_cancel(&job.id) {
            self.pool.cancel(seq, "aborted by its producer");
        }
        let settled = match calls.as_mut() {
            None => rx.await,
            Some(calls) => {
                let settled = loop {
                    tokio::select! {
                        s = &mut rx => break s,
                        Some(call) = calls.recv() => self.job_call(&queue, &job, call).await,
                    }
                };
                // Calls made before the reply are written before the outcome (a progress
                // event comes before `completed`, as with BullMQ's own worker).
                while let Ok(call) = calls.try_recv() {
                    self.job_call(&queue, &job, call).await;
                }
                settled
            }
        };
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&job.id);
        match settled {
            Ok(s) => self.outcome_of(s, plain),
            // The pool dropped the task without settling it (it is gone): give it back.
            Err(_) => Outcome::GiveBack,
        }
    }

    /// Does what a plain job's processor asked (`job.updateProgress`, `job.log`,
    /// `job.updateData`, `job.getChildrenValues`) and answers the worker.
    async fn job_call(&self, queue: &str, job: &Job, call: JobCall) {
        let keys = bullmq::QueueKeys::new(&self.cfg.prefix, queue);
        let (s, id) = (&*self.scripts, job.id.as_str());
        let mut con = self.conn.cmd();
        let done: bullmq::Result<String> = match call.op.as_str() {
            "progress" => bullmq::ops::update_progress(&mut con, s, &keys, id, &call.value)
                .await
                .map(|_| "null".into()),
            "log" => match serde_json::from_str::<String>(&call.value) {
                Ok(line) => {
                    let keep = job.opts.get("keepLogs").and_then(Value::as_u64).unwrap_or(0);
                    bullmq::ops::add_log(&mut con, s, &keys, id, &line, keep)
                        .await
                        .map(|n| n.to_string())
                }
                Err(_) => {
                    return self
                        .pool
                        .answer_call(&call, Err((Code::InvalidTask.as_str(), "job.log takes a string")));
                }
            },
            "update-data" => bullmq::ops::update_data(&mut con, s, &keys, id, &call.value)
                .await
                .map(|_| "null".into()),
            "children-values" => bullmq::ops::children_values(&mut con, &keys, id).await.map(|pairs| {
                let mut out = serde_json::Map::new();
                for (k, v) in pairs {
                    out.insert(k, serde_json::from_str(&v).unwrap_or(Value::String(v)));
                }
                Value::Object(out).to_string()
            }),
            other => {
                let msg = format!("unknown job call \"{other}\" (progress, log, update-data, children-values)");
                return self.pool.answer_call(&call, Err((Code::NotSupported.as_str(), &msg)));
            }
        };
        match done {
            Ok(v) => {
                self.conn.succeeded();
                self.pool.answer_call(&call, Ok(&v));
            }
            Err(e) => {
                self.conn.failed(&e);
                let msg = format!("job {id}: {} failed: {e}", call.op);
                self.pool.answer_call(&call, Err((Code::QueueUnavailable.as_str(), &msg)));
            }
        }
    }

    /// An attempt's outcome as BullMQ's: the result; a failure whose reason is
    /// `<CODE>: <message>` and whose stack entry is this attempt's details as JSON
    /// (not retried when retrying cannot help); or, for a job this pool could not
    /// finish because it is stopping, back to the queue with no attempt used.
    ///
    /// A plain job's handler error is written as BullMQ's own worker writes it: the
    /// error's message as `failedReason`, its stack in `stacktrace`, not retried when
    /// it is named `UnrecoverableError`.
    fn outcome_of(&self, settled: Settled, plain: bool) -> Outcome {
        match settled {
            Ok(raw) => Outcome::Completed(raw),
            Err(e) => {
                let shutting = matches!(e.code, Code::PoolShutdown | Code::PoolShuttingDown);
                // No worker here can run it any more (its slot was given up after a
                // crash loop): another pool may.
                let unable = e.code == Code::NoCapableWorker;
                if shutting || unable || (self.stopping() && e.code == Code::WorkerCrashed) {
                    return Outcome::GiveBack;
                }
                if plain && e.code == Code::TaskFailed {
                    return Outcome::Failed(Failure {
                        unrecoverable: e.extra.handler_name.as_deref() == Some(UNRECOVERABLE),
                        stack: e.extra.stack.clone(),
                        custom_backoff: e.extra.backoff_delay.map(|d| if d < 0.0 { -1 } else { d.ceil() as i64 }),
                        message: e.message,
                    });
                }
                let mut details = json!({
                    "code": e.code.as_str(),
                    "message": e.message,
                    "at": bullmq::ops::now_ms(),
                    "host": self.cfg.host,
                    "pool": self.cfg.pool_id,
                });
                let x = &e.extra;
                for (k, v) in [
                    ("workerId", x.worker_id.clone().map(Value::from)),
                    ("exitCode", x.exit_code.map(Value::from)),
                    ("signal", x.signal.clone().map(Value::from)),
                    ("handlerCode", x.handler_code.clone().map(Value::from)),
                ] {
                    if let Some(v) = v {
                        details[k] = v;
                    }
                }
                Outcome::Failed(Failure {
                    message: format!("{}: {}", e.code.as_str(), e.message),
                    stack: Some(details.to_string()),
                    unrecoverable: not_retried(e.code),
                    custom_backoff: None,
                })
            }
        }
    }
}

/// The pool as BullMQ's processor (the `bullmq` crate's workers hold one each).
struct Proc(Arc<Inner>);

impl Processor for Proc {
    fn may_take(&self, queue: &str, held: usize) -> bool {
        let inner = &self.0;
        if inner.stopping() {
            return false;
        }
        if let Some(c) = inner.cfg.concurrency {
            return held < c;
        }
        let workers = inner.lock_workers();
        let Some((_, caps)) = workers.get(queue) else { return false };
        let others: usize = workers
            .iter()
            .filter(|(q, _)| q.as_str() != queue)
            .map(|(_, (w, _))| w.held())
            .sum();
        let room = inner.pool.room(caps, HOLD_AHEAD_MAX_MS);
        let per = if room.short { HOLD_PER_WORKER } else { 1 };
        held < per * room.capable && others + held < per * room.live
    }

    fn process(&self, queue: &str, job: Job, _token: String) -> BoxFuture<'static, Outcome> {
        self.0.clone().run(queue.to_string(), job).boxed()
    }

    fn backoff(&self, job: &Job, kind: &str, delay: u64, attempts_made: i64) -> Option<u64> {
        (kind == BACKOFF_TYPE).then(|| cortex_backoff(job, delay, attempts_made))
    }

    fn event(&self, queue: &str, event: WorkerEvent<'_>) {
        let inner = &self.0;
        match event {
            WorkerEvent::Error { doing, error } => {
                // One line per outage, not one per retry.
                if inner.logged_up.swap(false, Ordering::Relaxed) || !error.is_connection() {
                    inner.log("warn", &format!("Shared queue ({queue}): {doing}: {error}"));
                }
            }
            WorkerEvent::Recovered => {
                if !inner.logged_up.swap(true, Ordering::Relaxed) {
                    inner.log("info", &format!("Shared queue ({queue}): connected again"));
                }
            }
            WorkerEvent::LockLost { job_id } => inner.log(
                "warn",
                &format!("Shared queue ({queue}): the lock of job {job_id} could not be renewed; another pool may run it"),
            ),
            WorkerEvent::Stalled { job_id } => inner.log(
                "info",
                &format!("Shared queue ({queue}): job {job_id} stalled (its pool stopped while running it) and goes back to the queue"),
            ),
        }
    }
}

fn not_retried(code: Code) -> bool {
    matches!(code, Code::NoHandler | Code::InvalidTask | Code::Aborted)
}

/// A job's data as the task the local pool runs.
pub struct DecodedJob {
    pub task: PoolTask,
    pub priority: f64,
    pub timeout_ms: Option<u64>,
    /// A plain BullMQ job (not in this package's format).
    pub plain: bool,
}

#[derive(Deserialize)]
struct JobData<'a> {
    /// Present (whatever its value, `null` included) marks a job of our format.
    #[serde(default, deserialize_with = "present")]
    cortex: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    timeout: Option<Value>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    requires: Option<Value>,
}

/// Whether a job's data has a `cortex` field (read only when `JobData` cannot be).
#[derive(Deserialize)]
struct Probe {
    #[serde(default, deserialize_with = "is_there")]
    cortex: bool,
}

fn is_there<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// `Some` for a field that is there, even when it is `null` (`Option`'s own
/// deserializer would make that `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Decodes a job of queue `queue`. A job whose data is an object with a `cortex` field
/// was written by this package's producers (`{ cortex: 1, type, payload, timeout?,
/// metadata?, requires?, maxBackoffMs }`) and must be well formed; any other job is a
/// plain BullMQ job: its name is the task type, its data the payload, its timeout
/// `plain_timeout_ms` (`None`: the pool's `taskTimeout`), and the worker is told the
/// job's fields (`job` in the task). Data that is not JSON is `ERR_INVALID_TASK`,
/// naming the job and what is wrong.
pub fn decode_job(job: &Job, queue: &str, plain_timeout_ms: Option<u64>) -> CoreResult<DecodedJob> {
    let not_json = |e: serde_json::Error| {
        CoreError::new(
            Code::InvalidTask,
            format!("Job {} of queue {queue} has data that is not JSON ({e})", job.id),
        )
    };
    // One pass over the data: an object is read as our format (which checks that it is
    // JSON); anything else is only checked.
    // JSON's own whitespace only (`str::trim` would also take, say, a vertical tab,
    // which makes the text not JSON).
    let text = job.data.trim_matches([' ', '\t', '\n', '\r']);
    if text.starts_with('{') {
        match serde_json::from_str::<JobData>(text) {
            Ok(d) if d.cortex.is_some() => return decode_ours(job, d),
            Ok(_) => {}
            Err(e) => {
                // Not JSON; or JSON our reader refuses (a field given twice): a task of
                // ours that is not valid if it has a `cortex` field, else a plain job.
                serde_json::from_str::<&RawValue>(text).map_err(not_json)?;
                if serde_json::from_str::<Probe>(text).map_or(true, |p| p.cortex) {
                    return Err(invalid_ours(job, &e.to_string()));
                }
            }
        }
    } else {
        serde_json::from_str::<&RawValue>(text).map_err(not_json)?;
    }
    let info = json!({
        "id": job.id,
        "name": job.name,
        "queueName": queue,
        "opts": job.opts,
        "timestamp": job.timestamp,
        "delay": job.delay,
        "priority": job.priority,
        "attemptsMade": job.attempts_made,
        "attemptsStarted": job.attempts_started,
        "processedOn": job.processed_on,
        "stacktrace": job.stacktrace,
        "parentKey": job.parent_key,
        "repeatJobKey": job.repeat_job_key,
    });
    Ok(DecodedJob {
        task: PoolTask {
            type_json: Value::String(job.name.clone()).to_string(),
            payload_json: one_line(text),
            metadata_json: None,
            requires: Vec::new(),
            job_json: Some(info.to_string()),
        },
        priority: 0.0,
        timeout_ms: plain_timeout_ms,
        plain: true,
    })
}

/// JSON text on one line: text from Redis (anyone can write it) may hold line breaks
/// between its tokens, and a message to a worker is one line. `raw` is valid JSON, in
/// which a line break can only be whitespace (inside a string it must be escaped), so
/// each becomes a space: the value is unchanged.
fn one_line(raw: &str) -> String {
    if raw.contains(['\n', '\r']) {
        raw.replace(['\n', '\r'], " ")
    } else {
        raw.to_string()
    }
}

/// A job of this package's format.
fn invalid_ours(job: &Job, why: &str) -> CoreError {
    CoreError::new(Code::InvalidTask, format!("Job {} is not a valid Cortex task: {why}", job.id))
}

fn decode_ours(job: &Job, d: JobData<'_>) -> CoreResult<DecodedJob> {
    let bad = |why: &str| invalid_ours(job, why);
    if d.cortex.as_ref().and_then(Value::as_i64) != Some(JOB_FORMAT) {
        return Err(bad(&format!(
            "\"cortex\" must be {JOB_FORMAT} (the format this version writes and reads)"
        )));
    }
    let kind = match &d.kind {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(bad("\"type\" must be a non-empty string")),
    };
    let timeout_ms = match &d.timeout {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_f64().is_some_and(|t| t > 0.0) => Some(n.as_f64().unwrap_or(0.0).ceil() as u64),
        Some(_) => return Err(bad("\"timeout\" must be a positive number")),
    };
    let requires = match &d.requires {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(_) => return Err(bad("\"requires\" must be an array of strings")),
    };
    let payload = d.payload.map(|p| p.get()).filter(|p| *p != "null");
    Ok(DecodedJob {
        task: PoolTask {
            type_json: Value::String(kind).to_string(),
            payload_json: one_line(payload.unwrap_or("null")),
            metadata_json: d.metadata.map(|m| one_line(m.get())),
            requires,
            job_json: None,
        },
        priority: (job.priority.max(1) - 1) as f64,
        timeout_ms,
        plain: false,
    })
}

/// Our backoff: min(delay · 2^(n−1), the job's `maxBackoffMs`).
fn cortex_backoff(job: &Job, delay: u64, attempts_made: i64) -> u64 {
    let cap = serde_json::from_str::<Value>(&job.data)
        .ok()
        .and_then(|d| d.get("maxBackoffMs").and_then(Value::as_f64))
        .map(|c| c.max(0.0) as u64)
        .unwrap_or(DEFAULT_MAX_BACKOFF_MS);
    let exp = (attempts_made - 1).clamp(0, 62) as u32;
    delay.saturating_mul(1u64 << exp.min(40)).min(cap)
}

/// The BullMQ queue that carries tasks needing exactly the capability set `caps`
/// (sorted): `<name>` for none, `<name>@<cap>+<cap>` (URI-encoded) otherwise.
pub fn queue_name_for(name: &str, caps: &[String]) -> String {
    if caps.is_empty() {
        return name.to_string();
    }
    let parts: Vec<String> = caps.iter().map(|c| encode_uri_component(c)).collect();
    format!("{name}@{}", parts.join("+"))
}

/// JavaScript's `encodeURIComponent`.
fn encode_uri_component(s: &str) -> String {
    bullmq::conn::percent_encode(s, b"-_.!~*'()")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(data: &str) -> Job {
        Job {
            id: "9".into(),
            data: data.into(),
            priority: 3,
            ..Job::default()
        }
    }

    #[test]
    fn decodes_our_jobs() {
        let d = decode_job(
            &job(r#"{"cortex":1,"type":"t","payload":{"a":[1,"\t"]},"timeout":1500.5,"metadata":{"m":1},"requires":["gpu"],"maxBackoffMs":10}"#),
            "q",
            Some(5),
        )
        .unwrap();
        assert!(!d.plain);
        assert_eq!(d.task.type_json, "\"t\"");
        assert_eq!(d.task.payload_json, r#"{"a":[1,"\t"]}"#);
        assert_eq!(d.task.metadata_json.as_deref(), Some(r#"{"m":1}"#));
        assert_eq!(d.task.requires, vec!["gpu".to_string()]);
        assert_eq!((d.priority, d.timeout_ms), (2.0, Some(1501)));
        assert!(d.task.job_json.is_none());
        let d = decode_job(&job(r#"{"cortex":1,"type":"t"}"#), "q", None).unwrap();
        assert_eq!(d.task.payload_json, "null");
    }

    #[test]
    fn refuses_malformed_jobs_of_our_format_naming_what_is_wrong() {
        for (data, why) in [
            (r#"{"cortex":2,"type":"t"}"#, "\"cortex\" must be 1"),
            (r#"{"cortex":null,"type":"t"}"#, "\"cortex\" must be 1"),
            (r#"{"cortex":1}"#, "\"type\" must be"),
            (r#"{"cortex":1,"type":"t","timeout":-1}"#, "\"timeout\" must be"),
            (r#"{"cortex":1,"type":"t","requires":[1]}"#, "\"requires\" must be"),
        ] {
            let e = decode_job(&job(data), "q", None).err().unwrap();
            assert_eq!(e.code, Code::InvalidTask);
            assert!(
                e.message.contains("Job 9 is not a valid Cortex task") && e.message.contains(why),
                "{}",
                e.message
            );
        }
        let e = decode_job(&job("not json"), "q", None).err().unwrap();
        assert_eq!(e.code, Code::InvalidTask);
        assert!(e.message.contains("Job 9 of queue q has data that is not JSON"), "{}", e.message);
    }

    #[test]
    fn plain_jobs_run_as_their_name_with_their_data() {
        let mut j = job("{\"w\":\n100}");
        j.name = "resize".into();
        j.attempts_made = 1;
        j.opts = json!({ "attempts": 3 });
        let d = decode_job(&j, "images", Some(700)).unwrap();
        assert!(d.plain);
        assert_eq!(d.task.type_json, "\"resize\"");
        // On one line: a message to a worker is one line.
        assert_eq!(d.task.payload_json, r#"{"w": 100}"#);
        assert_eq!((d.priority, d.timeout_ms), (0.0, Some(700)));
        let info: Value = serde_json::from_str(d.task.job_json.as_deref().unwrap()).unwrap();
        assert_eq!(info["id"], "9");
        assert_eq!(info["queueName"], "images");
        assert_eq!(info["attemptsMade"], 1);
        assert_eq!(info["opts"]["attempts"], 3);
        for data in ["[1]", "\"s\"", "7", "null", r#"{"type":"t"}"#, r#"{"type":1,"type":2}"#] {
            let d = decode_job(&job(data), "q", None).unwrap();
            assert!(d.plain && d.task.payload_json == data, "{data}");
        }
    }

    #[test]
    fn only_json_whitespace_is_whitespace() {
        // Found by the job_data fuzz target: a vertical tab after the object.
        let e = decode_job(&job("{\"cortex\":1,\"type\":\"echo\"}\u{b}"), "q", None).err().unwrap();
        assert!(e.message.contains("has data that is not JSON"), "{}", e.message);
        let d = decode_job(&job(" \t[1]\r\n"), "q", None).unwrap();
        assert!(d.plain);
    }

    #[test]
    fn numbers_beyond_f64_are_passed_on_as_written() {
        // Valid JSON (found by the job_data fuzz target, whose oracle parsed with
        // serde_json's Value, which refuses them): a worker reads them (as Infinity).
        let d = decode_job(
            &job(r#"{"cortex":1,"type":"t","payload":[1e400],"ti~eout":15022222222e2220}"#),
            "q",
            None,
        )
        .unwrap();
        assert_eq!(d.task.payload_json, "[1e400]");
        let d = decode_job(&job("[1e400,\n-1e999]"), "q", None).unwrap();
        assert!(d.plain);
        assert_eq!(d.task.payload_json, "[1e400, -1e999]");
    }

    #[test]
    fn queue_names_follow_the_producers() {
        assert_eq!(queue_name_for("c", &[]), "c");
        assert_eq!(queue_name_for("c", &["gpu".into(), "a b".into()]), "c@gpu+a%20b");
    }

    #[test]
    fn cortex_backoff_doubles_up_to_the_cap() {
        let j = job(r#"{"cortex":1,"type":"t","maxBackoffMs":250}"#);
        assert_eq!(cortex_backoff(&j, 100, 1), 100);
        assert_eq!(cortex_backoff(&j, 100, 2), 200);
        assert_eq!(cortex_backoff(&j, 100, 3), 250);
    }
}
