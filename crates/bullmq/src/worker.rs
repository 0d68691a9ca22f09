//! BullMQ's worker loop (`worker.js` and `lock-manager.js` in the bullmq package), on
//! tokio: fetch while the processor has room, wait on the queue's marker key when the
//! queue is drained, take the next job in the same call that finishes one, renew the
//! locks of every job held, move stalled jobs back, and write each attempt's outcome
//! (completed, retried after its backoff, failed, or given back unfinished).

use crate::backoff::{self, Backoff};
use crate::conn::Conn;
use crate::conn::RedisConn;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::keys::QueueKeys;
use crate::ops::{self, FetchOpts, Fetched, Finish};
use crate::scripts::Scripts;
use futures_util::future::BoxFuture;
use redis::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// BullMQ's longest blocking wait on the marker (a longer one risks trouble on
/// reconnection), and the shortest.
const MAX_BLOCK_S: f64 = 10.0;
const MIN_BLOCK_S: f64 = 0.001;
/// How often a worker without room for a job looks again, besides being woken.
const ROOM_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queue: String,
    pub prefix: String,
    pub lock_duration_ms: u64,
    pub stalled_interval_ms: u64,
    pub max_stalled_count: u32,
    /// How long a blocking wait lasts when no job is due (BullMQ's `drainDelay`).
    pub drain_delay_ms: u64,
    /// Stored as each job's `processedBy`.
    pub name: Option<String>,
    /// A rate-limited queue is tried again after at most this long.
    pub max_rate_limit_delay_ms: u64,
    /// BullMQ's `limiter`: at most `max` jobs per `duration` ms, across the queue.
    pub limiter: Option<(u64, u64)>,
}

impl WorkerOptions {
    pub fn new(prefix: &str, queue: &str) -> WorkerOptions {
        WorkerOptions {
            queue: queue.to_string(),
            prefix: prefix.to_string(),
            lock_duration_ms: 30_000,
            stalled_interval_ms: 30_000,
            max_stalled_count: 1,
            drain_delay_ms: 5_000,
            name: None,
            max_rate_limit_delay_ms: 30_000,
            limiter: None,
        }
    }
}

/// An attempt that failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Becomes the job's `failedReason`.
    pub message: String,
    /// Appended to the job's `stacktrace` (one entry per attempt).
    pub stack: Option<String>,
    /// Not retried, whatever attempts are left (BullMQ's `UnrecoverableError`).
    pub unrecoverable: bool,
    /// For a job whose backoff type BullMQ does not know: the delay (ms) the processor's
    /// own strategy gave for this failure; negative: no retry. `None`: ask
    /// [`Processor::backoff`].
    pub custom_backoff: Option<i64>,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The result, as JSON text (BullMQ's `returnvalue`).
    Completed(String),
    Failed(Failure),
    /// Not run to its end here (the processor is stopping): back to the queue, with no
    /// attempt used.
    GiveBack,
}

/// What a worker tells its processor besides jobs.
#[derive(Debug)]
pub enum WorkerEvent<'a> {
    /// A command failed; `doing` says which. The worker retries on its own.
    Error { doing: &'static str, error: &'a Error },
    /// A held job's lock could not be renewed: another worker may run it.
    LockLost { job_id: &'a str },
    /// The stalled check put this job back (its worker died).
    Stalled { job_id: &'a str },
    /// The worker reached Redis again after errors.
    Recovered,
}

/// Runs jobs. Implemented by the user of this crate.
pub trait Processor: Send + Sync + 'static {
    /// Whether the worker of `queue`, which holds `held` jobs, may take one more.
    fn may_take(&self, queue: &str, held: usize) -> bool;
    /// Runs one attempt of `job` (its lock token is `token`).
    fn process(&self, queue: &str, job: Job, token: String) -> BoxFuture<'static, Outcome>;
    /// A backoff strategy BullMQ does not know (`opts.backoff.type` = `kind`), for the
    /// retry after `attempts_made` attempts: the delay in ms, or `None` for no retry.
    fn backoff(&self, _job: &Job, _kind: &str, _delay: u64, _attempts_made: i64) -> Option<u64> {
        None
    }
    fn event(&self, _queue: &str, _event: WorkerEvent<'_>) {}
}

/// One queue's worker. Start it with [`Worker::start`]; stop fetching with
/// [`Worker::stop`]; the jobs it holds still finish and are written.
pub struct Worker {
    conn: Conn,
    scripts: Arc<Scripts>,
    keys: QueueKeys,
    opts: WorkerOptions,
    id: String,
    next_token: AtomicU64,
    /// Held jobs: id → lock token.
    held: Mutex<HashMap<String, String>>,
    stopping: AtomicBool,
    /// Woken when room may have appeared, a job finished, or the worker stops.
    wake: Notify,
    failing: AtomicBool,
}

impl Worker {
    pub fn new(conn: Conn, scripts: Arc<Scripts>, opts: WorkerOptions, id: String) -> Arc<Worker> {
        Arc::new(Worker {
            keys: QueueKeys::new(&opts.prefix, &opts.queue),
            conn,
            scripts,
            opts,
            id,
            next_token: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            wake: Notify::new(),
            failing: AtomicBool::new(false),
        })
    }

    pub fn queue(&self) -> &str {
        &self.opts.queue
    }

    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    /// Starts the fetch loop, the lock renewal and the stalled check on the current
    /// tokio runtime.
    pub fn start<P: Processor>(self: &Arc<Self>, p: Arc<P>) {
        let w = self.clone();
        let q = p.clone();
        tokio::spawn(async move { w.fetch_loop(q).await });
        let w = self.clone();
        let q = p.clone();
        tokio::spawn(async move { w.lock_loop(q).await });
        let w = self.clone();
        tokio::spawn(async move { w.stalled_loop(p).await });
    }

    /// Room may have appeared (the processor's capacity grew).
    pub fn wake(&self) {
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// Jobs held now.
    pub fn held(&self) -> usize {
        self.lock_held().len()
    }

    /// Stops fetching (the held jobs finish and are written; no fetch-next).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake();
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Waits until no job is held, at most `limit`; true if none is.
    pub async fn idle_within(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.held() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), self.wake.notified()).await;
        }
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn token(&self) -> String {
        format!("{}:{}", self.id, self.next_token.fetch_add(1, Ordering::Relaxed))
    }

    fn fetch_opts<'a>(&'a self, token: &'a str) -> FetchOpts<'a> {
        FetchOpts {
            token,
            lock_duration_ms: self.opts.lock_duration_ms,
            name: self.opts.name.as_deref(),
            limiter: self.opts.limiter,
        }
    }

    fn report<P: Processor>(&self, p: &P, doing: &'static str, error: &Error) {
        self.failing.store(true, Ordering::Relaxed);
        self.conn.failed(error);
        p.event(&self.opts.queue, WorkerEvent::Error { doing, error });
    }

    fn ok<P: Processor>(&self, p: &P) {
        self.conn.succeeded();
        if self.failing.swap(false, Ordering::Relaxed) {
            p.event(&self.opts.queue, WorkerEvent::Recovered);
        }
    }

    /// Sleeps `d`, or less when woken or stopping.
    async fn pause(&self, d: Duration) {
        if !self.stopping() {
            let _ = tokio::time::timeout(d, self.wake.notified()).await;
        }
    }

    async fn fetch_loop<P: Processor>(self: Arc<Self>, p: Arc<P>) {
        let mut drained = false;
        let mut block_until: i64 = 0;
        let mut blocking: Option<RedisConn> = None;
        let mut errors = 0u32;
        while !self.stopping() {
            if !p.may_take(&self.opts.queue, self.held()) {
                self.pause(ROOM_POLL).await;
                continue;
            }
            if drained {
                let timeout = block_timeout(block_until, self.opts.drain_delay_ms);
                if timeout > 0.0 {
                    let waited = tokio::select! {
                        r = self.wait_for_job(&mut blocking, timeout) => r,
                        _ = self.stopped() => break,
                    };
                    match waited {
                        Ok(next) => {
                            block_until = next.unwrap_or(0);
                            // A due delayed job, or a marker of new jobs: fetch, once
                            // the room is checked again (it may have gone while this
                            // waited: the processor's workers died, say).
                            if block_until <= 0 || block_until - ops::now_ms() < 1 {
                                drained = false;
                            }
                            continue;
                        }
                        Err(e) => {
                            blocking = None;
                            self.report(&*p, "waiting for jobs", &e);
                            errors += 1;
                            self.pause(retry_delay(errors)).await;
                            continue;
                        }
                    }
                }
            }
            let token = self.token();
            let got = ops::move_to_active(&mut self.conn.cmd(), &self.scripts, &self.keys, &self.fetch_opts(&token)).await;
            match got {
                Ok(f) => {
                    errors = 0;
                    self.ok(&*p);
                    let (job, limit) = self.after_fetch(f, &mut block_until);
                    match job {
                        Some(job) => {
                            drained = false;
                            self.take(p.clone(), job, token);
                        }
                        None => drained = true,
                    }
                    if let Some(ms) = limit {
                        self.pause(Duration::from_millis(ms)).await;
                        drained = false;
                    }
                }
                Err(e) => {
                    self.report(&*p, "fetching a job", &e);
                    errors += 1;
                    self.pause(retry_delay(errors)).await;
                }
            }
        }
    }

    async fn stopped(&self) {
        while !self.stopping() {
            let _ = tokio::time::timeout(ROOM_POLL, self.wake.notified()).await;
        }
    }

    /// The job a fetch brought, and how long to wait when the queue is rate limited.
    fn after_fetch(&self, f: Fetched, block_until: &mut i64) -> (Option<Job>, Option<u64>) {
        *block_until = f.delay_until.max(0);
        let limit = (f.rate_limit_delay > 0).then(|| (f.rate_limit_delay as u64).min(self.opts.max_rate_limit_delay_ms));
        (f.job, limit)
    }

    /// Blocks on the marker key (BZPOPMIN) for up to `timeout_s`; returns the time a
    /// delayed job is due (the marker's score), if any. A watchdog bounds the wait: a
    /// blocking command can hang on a connection that died silently.
    async fn wait_for_job(&self, conn: &mut Option<RedisConn>, timeout_s: f64) -> Result<Option<i64>> {
        if conn.is_none() {
            *conn = Some(self.conn.dedicated().await?);
        }
        let c = conn.as_mut().expect("just set");
        let cmd = redis::cmd("BZPOPMIN").arg(&self.keys.marker).arg(timeout_s).to_owned();
        let watchdog = Duration::from_secs_f64(timeout_s) + self.conn.options().command_timeout;
        match tokio::time::timeout(watchdog, cmd.query_async::<Value>(c)).await {
            Ok(Ok(Value::Array(v))) => Ok(v.get(2).and_then(crate::job::int)),
            Ok(Ok(_)) => Ok(None),
            Ok(Err(e)) => {
                *conn = None;
                Err(e.into())
            }
            Err(_) => {
                // Silent connection: drop it (a new one is made next time).
                *conn = None;
                Ok(None)
            }
        }
    }

    fn take<P: Processor>(self: &Arc<Self>, p: Arc<P>, job: Job, token: String) {
        self.lock_held().insert(job.id.clone(), token.clone());
        let w = self.clone();
        tokio::spawn(async move { w.run_job(p, job, token).await });
    }

    /// Runs a job, writes its outcome, and goes on with the job that the write fetched
    /// (fetch-next), as long as there is one and room for it.
    async fn run_job<P: Processor>(self: Arc<Self>, p: Arc<P>, mut job: Job, token: String) {
        loop {
            let outcome = if self.stopping() {
                Outcome::GiveBack
            } else if let Some(reason) = &job.deferred_failure {
                Outcome::Failed(Failure {
                    message: reason.clone(),
                    stack: None,
                    unrecoverable: true,
                    custom_backoff: None,
                })
            } else {
                p.process(&self.opts.queue, job.clone(), token.clone()).await
            };
            let fetch_next = !self.stopping() && p.may_take(&self.opts.queue, self.held().saturating_sub(1));
            let next = self.finish(&*p, &job, &token, outcome, fetch_next).await;
            let mut held = self.lock_held();
            held.remove(&job.id);
            match next {
                Some(n) => {
                    held.insert(n.id.clone(), token.clone());
                    drop(held);
                    job = n;
                }
                None => {
                    drop(held);
                    self.wake();
                    return;
                }
            }
        }
    }

    /// Writes an attempt's outcome; retried while the connection fails, for as long as
    /// the job's lock lasts (after that the job is no longer ours to write). Returns
    /// the next job when `fetch_next` brought one.
    async fn finish<P: Processor>(&self, p: &P, job: &Job, token: &str, outcome: Outcome, fetch_next: bool) -> Option<Job> {
        let give_up = tokio::time::Instant::now() + Duration::from_millis(self.opts.lock_duration_ms);
        let mut tries = 0u32;
        loop {
            match self.write_outcome(p, job, token, &outcome, fetch_next).await {
                Ok(next) => {
                    self.ok(p);
                    return next;
                }
                Err(e) => {
                    self.report(p, "writing a job's outcome", &e);
                    tries += 1;
                    if !e.is_connection() || tokio::time::Instant::now() >= give_up {
                        return None;
                    }
                    tokio::time::sleep(retry_delay(tries)).await;
                }
            }
        }
    }

    async fn write_outcome<P: Processor>(&self, p: &P, job: &Job, token: &str, outcome: &Outcome, fetch_next: bool) -> Result<Option<Job>> {
        let con = &mut self.conn.cmd();
        let (s, k) = (&*self.scripts, &self.keys);
        let fetch = self.fetch_opts(token);
        match outcome {
            Outcome::Completed(rv) => {
                let f = ops::move_to_finished(con, s, k, job, &Finish::Completed { returnvalue: rv }, &fetch, fetch_next).await?;
                Ok(f.job)
            }
            Outcome::GiveBack => {
                ops::move_job_from_active_to_wait(con, s, k, &job.id, token).await?;
                Ok(None)
            }
            Outcome::Failed(f) => {
                let stacktrace = job.stacktrace_after(f.stack.as_deref());
                match self.retry_delay_for(p, job, f) {
                    Some(0) => ops::retry_job(con, s, k, job, token, &f.message, &stacktrace).await.map(|_| None),
                    Some(d) => ops::move_to_delayed(con, s, k, job, token, d, &f.message, &stacktrace)
                        .await
                        .map(|_| None),
                    None => {
                        let finish = Finish::Failed {
                            reason: &f.message,
                            stacktrace: &stacktrace,
                        };
                        Ok(ops::move_to_finished(con, s, k, job, &finish, &fetch, fetch_next).await?.job)
                    }
                }
            }
        }
    }

    /// BullMQ's `shouldRetryJob`: `Some(delay)` when attempts are left and the error
    /// may be retried, `None` for the last attempt.
    fn retry_delay_for<P: Processor>(&self, p: &P, job: &Job, f: &Failure) -> Option<u64> {
        if f.unrecoverable || job.attempts_made + 1 >= job.attempts() {
            return None;
        }
        let made = job.attempts_made + 1;
        match backoff::of(&job.opts, made, random_unit()) {
            Backoff::None => Some(0),
            Backoff::Delay(d) => Some(d),
            Backoff::Custom { kind, delay } => match f.custom_backoff {
                Some(d) if d < 0 => None,
                Some(d) => Some(d as u64),
                None => p.backoff(job, &kind, delay, made),
            },
        }
    }

    async fn lock_loop<P: Processor>(self: Arc<Self>, p: Arc<P>) {
        let every = Duration::from_millis((self.opts.lock_duration_ms / 2).max(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let jobs: Vec<(String, String)> = self.lock_held().iter().map(|(a, b)| (a.clone(), b.clone())).collect();
            if jobs.is_empty() {
                if self.stopping() {
                    return;
                }
                continue;
            }
            match ops::extend_locks(&mut self.conn.cmd(), &self.scripts, &self.keys, &jobs, self.opts.lock_duration_ms).await {
                Ok(lost) => {
                    self.ok(&*p);
                    let still: Vec<String> = {
                        let held = self.lock_held();
                        lost.into_iter().filter(|id| held.contains_key(id)).collect()
                    };
                    for id in &still {
                        p.event(&self.opts.queue, WorkerEvent::LockLost { job_id: id });
                    }
                }
                Err(e) => self.report(&*p, "renewing locks", &e),
            }
        }
    }

    async fn stalled_loop<P: Processor>(self: Arc<Self>, p: Arc<P>) {
        let every = Duration::from_millis(self.opts.stalled_interval_ms.max(1));
        loop {
            if self.stopping() {
                return;
            }
            match ops::move_stalled_jobs_to_wait(
                &mut self.conn.cmd(),
                &self.scripts,
                &self.keys,
                self.opts.max_stalled_count,
                self.opts.stalled_interval_ms,
            )
            .await
            {
                Ok(ids) => {
                    for id in &ids {
                        p.event(&self.opts.queue, WorkerEvent::Stalled { job_id: id });
                    }
                }
                Err(e) => self.report(&*p, "checking for stalled jobs", &e),
            }
            self.pause(every).await;
        }
    }
}

/// BullMQ's `getBlockTimeout`, in seconds: until the next delayed job is due (at
/// least 1 ms, at most 10 s), or the drain delay when none is.
fn block_timeout(block_until: i64, drain_delay_ms: u64) -> f64 {
    if block_until > 0 {
        let delay = block_until - ops::now_ms();
        if delay <= 0 {
            0.0
        } else if (delay as f64) < MIN_BLOCK_S * 1000.0 {
            MIN_BLOCK_S
        } else {
            (delay as f64 / 1000.0).min(MAX_BLOCK_S)
        }
    } else {
        (drain_delay_ms as f64 / 1000.0).max(MIN_BLOCK_S)
    }
}

/// 50 ms, doubling, at most 2 s.
fn retry_delay(tries: u32) -> Duration {
    Duration::from_millis((50u64 << tries.min(6)).min(2000))
}

/// A number in [0, 1) for backoff jitter; cryptographic quality is not needed.
fn random_unit() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos % 1_000_000) as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_timeouts_follow_bullmq() {
        assert_eq!(block_timeout(0, 5000), 5.0);
        assert_eq!(block_timeout(ops::now_ms() - 10, 5000), 0.0);
        let t = block_timeout(ops::now_ms() + 60_000, 5000);
        assert_eq!(t, MAX_BLOCK_S);
        let t = block_timeout(ops::now_ms() + 2_000, 5000);
        assert!(t > 1.5 && t <= 2.0, "{t}");
    }

    #[test]
    fn retry_delays_are_bounded() {
        assert_eq!(retry_delay(0), Duration::from_millis(50));
        assert_eq!(retry_delay(1), Duration::from_millis(100));
        assert_eq!(retry_delay(10), Duration::from_millis(2000));
    }
}
