//! One function per script: the keys and arguments as BullMQ's Redis backend builds
//! them (`redis-queue-backend.js` in the bullmq package), and the reply decoded.

use crate::error::{Error, Result};
use crate::job::{int, Job};
use crate::keys::QueueKeys;
use crate::msgpack::{pack, V};
use crate::scripts::Scripts;
use redis::aio::ConnectionLike;
use redis::Value;

/// What a fetch (`moveToActive`, or a finish with fetch-next) answered.
#[derive(Debug, Default)]
pub struct Fetched {
    pub job: Option<Job>,
    /// The queue is rate limited for this many ms.
    pub rate_limit_delay: i64,
    /// No job now; the next delayed job is due at this time (ms since the epoch).
    pub delay_until: i64,
}

/// What the worker says of itself in each fetch (BullMQ's `opts` argument).
pub struct FetchOpts<'a> {
    pub token: &'a str,
    pub lock_duration_ms: u64,
    /// The worker's name, stored as the job's `processedBy`.
    pub name: Option<&'a str>,
    /// BullMQ's worker rate limiter: at most `.0` jobs per `.1` ms, across the queue.
    pub limiter: Option<(u64, u64)>,
}

impl FetchOpts<'_> {
    fn limiter_value(&self) -> V<'static> {
        match self.limiter {
            Some((max, duration)) => V::Map(vec![("max", V::Int(max as i64)), ("duration", V::Int(duration as i64))]),
            None => V::Nil,
        }
    }

    fn packed(&self) -> Vec<u8> {
        pack(&V::Map(vec![
            ("token", V::Str(self.token)),
            ("lockDuration", V::Int(self.lock_duration_ms as i64)),
            ("limiter", self.limiter_value()),
            ("name", self.name.map(V::Str).unwrap_or(V::Nil)),
        ]))
    }
}

/// The first ten keys of the scripts that fetch a job (`moveToActive`, and
/// `moveToFinished` with its fetch-next), in BullMQ's order.
fn fetch_keys<'a, 'b>(inv: &'b mut redis::ScriptInvocation<'a>, k: &QueueKeys) -> &'b mut redis::ScriptInvocation<'a> {
    inv.key(&k.wait)
        .key(&k.active)
        .key(&k.prioritized)
        .key(&k.events)
        .key(&k.stalled)
        .key(&k.limiter)
        .key(&k.delayed)
        .key(&k.paused)
        .key(&k.meta)
        .key(&k.pc)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn fetched(v: &Value) -> Result<Fetched> {
    match v {
        Value::Array(items) if items.len() >= 4 => {
            let job = match (&items[0], &items[1]) {
                (h @ (Value::Array(_) | Value::Map(_)), id) => {
                    let id = match id {
                        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                        Value::SimpleString(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        other => return Err(Error::Reply(format!("a job id, got {other:?}"))),
                    };
                    Some(Job::from_hash(id, h)?)
                }
                _ => None,
            };
            Ok(Fetched {
                job,
                rate_limit_delay: int(&items[2]).unwrap_or(0),
                delay_until: int(&items[3]).unwrap_or(0),
            })
        }
        Value::Int(_) | Value::Nil | Value::Array(_) => Ok(Fetched::default()),
        other => Err(Error::Reply(format!("a fetch result, got {other:?}"))),
    }
}

fn check(command: &'static str, job_id: &str, v: &Value) -> Result<()> {
    match v {
        Value::Int(code) if *code < 0 => Err(Error::Script {
            command,
            code: *code,
            job_id: job_id.to_string(),
        }),
        _ => Ok(()),
    }
}

pub async fn move_to_active(con: &mut impl ConnectionLike, s: &Scripts, k: &QueueKeys, opts: &FetchOpts<'_>) -> Result<Fetched> {
    let mut inv = s.get("moveToActive").prepare_invoke();
    let v: Value = fetch_keys(&mut inv, k)
        .key(&k.marker)
        .arg(&k.base)
        .arg(now_ms())
        .arg(opts.packed())
        .invoke_async(con)
        .await?;
    fetched(&v)
}

/// How a finished attempt is written.
pub enum Finish<'a> {
    /// `returnvalue`: the result as JSON text.
    Completed { returnvalue: &'a str },
    /// The last attempt failed: `failedReason` and the stack traces to keep.
    Failed { reason: &'a str, stacktrace: &'a [String] },
}

/// `moveToFinished`: completes or fails the job (its lock must be `token`'s), and,
/// with `fetch_next`, takes the next job in the same call.
pub async fn move_to_finished(
    con: &mut impl ConnectionLike,
    s: &Scripts,
    k: &QueueKeys,
    job: &Job,
    finish: &Finish<'_>,
    fetch: &FetchOpts<'_>,
    fetch_next: bool,
) -> Result<Fetched> {
    let (target, prop, value, completed) = match finish {
        Finish::Completed { returnvalue } => (&k.completed, "returnvalue", *returnvalue, true),
        Finish::Failed { reason, .. } => (&k.failed, "failedReason", *reason, false),
    };
    let target_name = if completed { "completed" } else { "failed" };
    let (count, age) = job.keep_jobs(completed);
    let mut keep = vec![("count", V::Int(count))];
    if let Some(a) = age {
        keep.push(("age", V::Int(a)));
    }
    let opt_bool = |name: &str| job.opts.get(name).and_then(|v| v.as_bool()).unwrap_or(false);
    let opts = pack(&V::Map(vec![
        ("token", V::Str(fetch.token)),
        ("name", fetch.name.map(V::Str).unwrap_or(V::Nil)),
        ("keepJobs", V::Map(keep)),
        ("limiter", fetch.limiter_value()),
        ("lockDuration", V::Int(fetch.lock_duration_ms as i64)),
        ("attempts", V::Int(job.attempts())),
        ("maxMetricsSize", V::Str("")),
        ("fpof", V::Bool(opt_bool("fpof"))),
        ("cpof", V::Bool(opt_bool("cpof"))),
        ("idof", V::Bool(opt_bool("idof"))),
        ("rdof", V::Bool(opt_bool("rdof"))),
    ]));
    let fields = match finish {
        Finish::Failed { reason, stacktrace } => failure_fields(reason, stacktrace),
        Finish::Completed { .. } => Vec::new(),
    };
    let mut inv = s.get("moveToFinished").prepare_invoke();
    let v: Value = fetch_keys(&mut inv, k)
        .key(target)
        .key(k.job(&job.id))
        .key(format!("{}metrics:{target_name}", k.base))
        .key(&k.marker)
        .arg(&job.id)
        .arg(now_ms())
        .arg(prop)
        .arg(value)
        .arg(target_name)
        .arg(if fetch_next { "1" } else { "0" })
        .arg(&k.base)
        .arg(opts)
        .arg(fields)
        .invoke_async(con)
        .await?;
    check("moveToFinished", &job.id, &v)?;
    fetched(&v)
}

fn failure_fields(reason: &str, stacktrace: &[String]) -> Vec<u8> {
    let st = serde_json::to_string(stacktrace).unwrap_or_else(|_| "[]".into());
    pack(&V::Arr(vec![
        V::Str("failedReason"),
        V::Str(reason),
        V::Str("stacktrace"),
        V::Str(&st),
    ]))
}

/// `moveToDelayed`: a failed attempt to be retried after `delay_ms`.
#[allow(clippy::too_many_arguments)]
pub async fn move_to_delayed(
    con: &mut impl ConnectionLike,
    s: &Scripts,
    k: &QueueKeys,
    job: &Job,
    token: &str,
    delay_ms: u64,
    reason: &str,
    stacktrace: &[String],
) -> Result<()> {
    let v: Value = s
        .get("moveToDelayed")
        .key(&k.marker)
        .key(&k.active)
        .key(&k.prioritized)
        .key(&k.delayed)
        .key(k.job(&job.id))
        .key(&k.events)
        .key(&k.meta)
        .key(&k.stalled)
        .key(&k.wait)
        .key(&k.limiter)
        .key(&k.pc)
        .arg(&k.base)
        .arg(now_ms())
        .arg(&job.id)
        .arg(token)
        .arg(delay_ms)
        .arg("0")
        .arg(failure_fields(reason, stacktrace))
        .arg("0")
        .arg("")
        .invoke_async(con)
        .await?;
    check("moveToDelayed", &job.id, &v)
}

/// `retryJob`: a failed attempt to be retried at once.
pub async fn retry_job(
    con: &mut impl ConnectionLike,
    s: &Scripts,
    k: &QueueKeys,
    job: &Job,
    token: &str,
    reason: &str,
    stacktrace: &[String],
) -> Result<()> {
    let lifo = job.opts.get("lifo").and_then(|v| v.as_bool()).unwrap_or(false);
    let v: Value = s
        .get("retryJob")
        .key(&k.active)
        .key(&k.wait)
        .key(&k.paused)
        .key(k.job(&job.id))
        .key(&k.meta)
        .key(&k.events)
        .key(&k.delayed)
        .key(&k.prioritized)
        .key(&k.pc)
        .key(&k.marker)
        .key(&k.stalled)
        .arg(&k.base)
        .arg(now_ms())
        .arg(if lifo { "RPUSH" } else { "LPUSH" })
        .arg(&job.id)
        .arg(token)
        .arg(failure_fields(reason, stacktrace))
        .invoke_async(con)
        .await?;
    check("retryJob", &job.id, &v)
}

/// `moveJobFromActiveToWait`: gives a job back unfinished (no attempt used).
pub async fn move_job_from_active_to_wait(
    con: &mut impl ConnectionLike,
    s: &Scripts,
    k: &QueueKeys,
    job_id: &str,
    token: &str,
) -> Result<()> {
    let v: Value = s
        .get("moveJobFromActiveToWait")
        .key(&k.active)
        .key(&k.wait)
        .key(&k.stalled)
        .key(&k.paused)
        .key(&k.meta)
        .key(&k.limiter)
        .key(&k.prioritized)
        .key(&k.marker)
        .key(&k.events)
        .arg(job_id)
        .arg(token)
        .arg(k.job(job_id))
        .invoke_async(con)
        .await?;
    check("moveJobFromActiveToWait", job_id, &v)
}

/// `extendLocks`: renews the locks of `(id, token)` pairs; returns the ids whose lock
/// could not be renewed (lost: the job is no longer ours).
pub async fn extend_locks(
    con: &mut impl ConnectionLike,
    s: &Scripts,
    k: &QueueKeys,
    jobs: &[(String, String)],
    lock_duration_ms: u64,
) -> Result<Vec<String>> {
    let ids = pack(&V::Arr(jobs.iter().map(|(id, _)| V::Str(id)).collect()));
    let tokens = pack(&V::Arr(jobs.iter().map(|(_, t)| V::Str(t)).collect()));
    let v: Value = s
        .get("extendLocks")
        .key(&k.stalled)
        .arg(&k.base)
        .arg(tokens)
        .arg(ids)
        .arg(lock_duration_ms)
        .invoke_async(con)
        .await?;
    Ok(strings(&v))
}

/// `moveStalledJobsToWait`: puts back the active jobs whose lock expired (their worker
/// died); returns their ids.
pub async fn move_stalled_jobs_to_wait(
    con: &mut impl ConnectionLike,
    s: &Scripts,
    k: &QueueKeys,
    max_stalled_count: u32,
    stalled_interval_ms: u64,
) -> Result<Vec<String>> {
    let v: Value = s
        .get("moveStalledJobsToWait")
        .key(&k.stalled)
        .key(&k.wait)
        .key(&k.active)
        .key(&k.stalled_check)
        .key(&k.meta)
        .key(&k.paused)
        .key(&k.marker)
        .key(&k.events)
        .key(&k.repeat)
        .arg(max_stalled_count)
        .arg(&k.base)
        .arg(now_ms())
        .arg(stalled_interval_ms)
        .invoke_async(con)
        .await?;
    Ok(strings(&v))
}

/// `updateProgress`: the job's progress (JSON text), published as a `progress` event.
pub async fn update_progress(con: &mut impl ConnectionLike, s: &Scripts, k: &QueueKeys, job_id: &str, progress_json: &str) -> Result<()> {
    let v: Value = s
        .get("updateProgress")
        .key(k.job(job_id))
        .key(&k.events)
        .key(&k.meta)
        .arg(job_id)
        .arg(progress_json)
        .invoke_async(con)
        .await?;
    check("updateProgress", job_id, &v)
}

/// `addLog`: a line in the job's log (`keep_logs` lines kept; 0 keeps all); returns the
/// number of lines the log now holds (what BullMQ's `job.log` resolves with).
pub async fn add_log(con: &mut impl ConnectionLike, s: &Scripts, k: &QueueKeys, job_id: &str, line: &str, keep_logs: u64) -> Result<i64> {
    let keep = if keep_logs == 0 { String::new() } else { keep_logs.to_string() };
    let v: Value = s
        .get("addLog")
        .key(k.job(job_id))
        .key(format!("{}:logs", k.job(job_id)))
        .arg(job_id)
        .arg(line)
        .arg(keep)
        .invoke_async(con)
        .await?;
    check("addLog", job_id, &v)?;
    Ok(int(&v).unwrap_or(0))
}

/// `updateData`: replaces the job's data (JSON text).
pub async fn update_data(con: &mut impl ConnectionLike, s: &Scripts, k: &QueueKeys, job_id: &str, data_json: &str) -> Result<()> {
    let v: Value = s.get("updateData").key(k.job(job_id)).arg(data_json).invoke_async(con).await?;
    check("updateData", job_id, &v)
}

/// The return values of a parent job's finished children, as BullMQ's
/// `job.getChildrenValues()` gives them: child job key → its value (JSON text).
pub async fn children_values(con: &mut impl ConnectionLike, k: &QueueKeys, job_id: &str) -> Result<Vec<(String, String)>> {
    let v: Value = redis::cmd("HGETALL")
        .arg(format!("{}:processed", k.job(job_id)))
        .query_async(con)
        .await?;
    Ok(match v {
        Value::Map(pairs) => pairs.iter().filter_map(|(a, b)| Some((text_of(a)?, text_of(b)?))).collect(),
        other => {
            let flat = strings(&other);
            flat.chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| (c[0].clone(), c[1].clone()))
                .collect()
        }
    })
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) | Value::Set(items) => items
            .iter()
            .filter_map(|i| match i {
                Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                Value::SimpleString(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}
