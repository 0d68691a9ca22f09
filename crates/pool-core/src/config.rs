//! Pool options: the original's names and defaults, validated instead of `x || default`.

use crate::error::{CoreError, CoreResult};
use crate::health::{
    HealthOptions, DEFAULT_CPU_THRESHOLD_PERCENT, DEFAULT_HEALTH_CHECK_INTERVAL_MS, DEFAULT_MAX_RESTART_ATTEMPTS,
    DEFAULT_MEMORY_THRESHOLD_MB, DEFAULT_RESTART_COOLDOWN_MS, DEFAULT_ZOMBIE_THRESHOLD_MS,
};
use crate::queue::{
    QueueOptions, DEFAULT_DLQ_CAPACITY, DEFAULT_MAX_BACKOFF_MS, DEFAULT_MAX_RETRIES, DEFAULT_RETRY_BACKOFF_MS, DEFAULT_TASK_TIMEOUT_MS,
};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    RoundRobin,
    LeastLoaded,
    CapabilityBased,
}

/// The default `loadBalancing`. The original's default was `round-robin`, which sends
/// each lone task to the next (often sleeping) worker in turn; `least-loaded` sends it
/// to the worker used last when every worker is idle, which answers a task that
/// arrives alone in about half the time at the median and far less at the tail
/// (BENCHMARKS.md, "Tail latency"). `round-robin` stays available by name.
pub const DEFAULT_STRATEGY: &str = "least-loaded";

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "round-robin" => Some(Strategy::RoundRobin),
            "least-loaded" => Some(Strategy::LeastLoaded),
            "capability-based" => Some(Strategy::CapabilityBased),
            _ => None,
        }
    }
}

/// One kind of worker in a heterogeneous pool.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerGroup {
    pub size: u32,
    pub worker_script: String,
    /// Set when these workers run a command instead of `worker_script` under Node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_command: Option<Vec<String>>,
    pub capabilities: Vec<String>,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoScale {
    pub queue_depth_high: u64,
    pub busy_low: u64,
    pub step_up: u32,
    pub step_down: u32,
    pub interval_ms: u64,
    pub cooldown_ms: u64,
}

/// The resolved options; serialized as `pool.config`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolConfig {
    pub pool_size: u32,
    pub min_workers: u32,
    pub max_workers: u32,
    pub worker_script: String,
    pub exec_path: String,
    pub exec_argv: Vec<String>,
    /// Set when the workers run this argv instead of `<execPath> <execArgv> <workerScript>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    #[serde(rename = "workerMemoryLimitMB")]
    pub worker_memory_limit_mb: u64,
    pub heartbeat_interval: u64,
    pub zombie_threshold_ms: u64,
    pub health_check_interval: u64,
    pub task_timeout: u64,
    pub max_task_retries: u32,
    pub retry_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub load_balancing: Strategy,
    pub auto_restart: bool,
    pub max_restart_attempts: u32,
    pub restart_cooldown_ms: u64,
    pub min_uptime_ms: u64,
    pub restart_on_memory_limit: bool,
    pub ready_timeout_ms: u64,
    pub grace_period_ms: u64,
    pub shutdown_timeout_ms: u64,
    pub max_queue_size: Option<u64>,
    pub max_message_bytes: u64,
    pub max_tasks_per_worker: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub prefetch: u32,
    /// How long (µs) the JS thread may poll for a reply expected that soon before it
    /// sleeps; 0 never.
    pub spin_wait_us: u64,
    pub fifo_dir: String,
    pub transport: String,
    pub worker_groups: Vec<WorkerGroup>,
    pub auto_scale: Option<AutoScale>,
    pub log_worker_errors: bool,
    pub log_worker_warnings: bool,
    pub log_worker_info: bool,
    pub log_worker_debug: bool,
    pub log_level: String,
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

struct Reader<'a> {
    obj: &'a Map<String, Value>,
}

impl<'a> Reader<'a> {
    fn present(&self, key: &str) -> Option<&'a Value> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn int(&self, key: &str, default: u64, min: u64) -> CoreResult<u64> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => {
                let n = v.as_f64().filter(|f| f.fract() == 0.0 && *f >= min as f64 && *f <= 9.0e15);
                n.map(|f| f as u64).ok_or_else(|| {
                    let allowed = if min == 0 {
                        "an integer >= 0".to_string()
                    } else {
                        format!("an integer >= {min}")
                    };
                    CoreError::config(key, &allowed, describe(v))
                })
            }
        }
    }

    /// An integer option in [min, max]; below min it is reported as `int` does.
    fn int_at_most(&self, key: &str, default: u64, min: u64, max: u64) -> CoreResult<u64> {
        let v = self.int(key, default, min)?;
        if v > max {
            return Err(CoreError::config(key, &format!("an integer from {min} to {max}"), v));
        }
        Ok(v)
    }

    fn opt_int(&self, key: &str, min: u64) -> CoreResult<Option<u64>> {
        match self.present(key) {
            None => Ok(None),
            Some(_) => self.int(key, 0, min).map(Some),
        }
    }

    fn boolean(&self, key: &str, default: bool) -> CoreResult<bool> {
        match self.present(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(CoreError::config(key, "true or false", describe(v))),
        }
    }

    fn string(&self, key: &str, default: &str) -> CoreResult<String> {
        match self.present(key) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(v) => Err(CoreError::config(key, "a non-empty string", describe(v))),
        }
    }

    fn strings(&self, key: &str, default: Vec<String>) -> CoreResult<Vec<String>> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => strings_of(key, v),
        }
    }

    fn env(&self, key: &str) -> CoreResult<BTreeMap<String, String>> {
        match self.present(key) {
            None => Ok(BTreeMap::new()),
            Some(v) => env_of(key, v),
        }
    }
}

fn strings_of(key: &str, v: &Value) -> CoreResult<Vec<String>> {
    let arr = v
        .as_array()
        .ok_or_else(|| CoreError::config(key, "an array of strings", describe(v)))?;
    arr.iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .ok_or_else(|| CoreError::config(key, "an array of strings", describe(v)))
        })
        .collect()
}

fn env_of(key: &str, v: &Value) -> CoreResult<BTreeMap<String, String>> {
    let obj = v
        .as_object()
        .ok_or_else(|| CoreError::config(key, "an object of string values", describe(v)))?;
    let mut out = BTreeMap::new();
    for (k, val) in obj {
        let s = match val {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(CoreError::config(
                    &format!("{key}.{k}"),
                    "a string, number or boolean",
                    describe(other),
                ))
            }
        };
        out.insert(k.clone(), s);
    }
    Ok(out)
}

// Most option defaults are the original pool's and are written beside their option
// names below; the queue's and the health monitor's come from their modules (the
// original pool passed its options on to them). These are the ones with a reason of
// their own.

/// `minWorkers` when not given (the original's), lowered to `poolSize` when that is smaller.
const DEFAULT_MIN_WORKERS: u64 = 5;
/// `maxWorkers` when not given (the original's), raised to `poolSize` when that is larger.
const DEFAULT_MAX_WORKERS: u64 = 50;
/// Missed heartbeat intervals before a missed-heartbeat warning: one or two late
/// beats on a busy machine are not worth a warning.
const HEARTBEAT_TIMEOUT_BEATS: u64 = 3;
/// Largest `prefetch`. What is sent ahead is bounded by about 2 ms of the worker's
/// average run time anyway (pool/dispatch.rs), so more would only matter for tasks of
/// under 2 µs, and a task sent ahead cannot be taken back for another worker.
const PREFETCH_MAX: u64 = 1024;
/// Largest `spinWaitUs`, 1 ms: a longer spin would outlast the 2 ms after which the
/// core takes the channels over from a JS thread that does not go round its loop.
const SPIN_WAIT_MAX_US: u64 = 1000;
/// `maxTaskRetries` is capped here: with the default 30 s backoff cap that is over 8
/// hours of retrying one task; a larger value is a mistake, not a policy.
const MAX_TASK_RETRIES_CAP: u64 = 1000;
/// `maxMessageBytes` when not given: 8 MiB, the same as a worker's own default largest
/// FIFO frame (fifo-frames.js).
const DEFAULT_MAX_MESSAGE_BYTES: u64 = 8 * 1024 * 1024;
/// Smallest `maxMessageBytes`, 1 KiB: the protocol's own small messages (worker-ready,
/// heartbeats) must always fit.
const MIN_MAX_MESSAGE_BYTES: u64 = 1024;

impl PoolConfig {
    /// `raw` is the user's options object; `exec_path` and `default_script` come from
    /// the JS side (`process.execPath`, the package's worker-process.js).
    pub fn from_json(raw: &Value, exec_path: &str, default_script: &str) -> CoreResult<PoolConfig> {
        let empty = Map::new();
        let r = Reader {
            obj: options_object(raw, &empty)?,
        };
        // Read in this order, so that of several bad options the same one is reported.
        let (pool_size, min_workers, max_workers) = sizes(&r)?;
        let worker_script = r.string("workerScript", default_script)?;
        let worker_command = worker_command(&r, "", &["workerScript", "execArgv"])?;
        let heartbeat_interval = r.int("heartbeatInterval", 5000, 1)?;
        let load_balancing = strategy(&r)?;
        let transport = transport(&r)?;
        let log_level = log_level(&r)?;
        let retry_backoff_ms = r.int("retryBackoffMs", DEFAULT_RETRY_BACKOFF_MS, 0)?;
        let max_backoff_ms = r.int("maxBackoffMs", DEFAULT_MAX_BACKOFF_MS, 0)?;
        let env = r.env("env")?;
        let worker_groups = match r.present("workerGroups") {
            None => Vec::new(),
            Some(v) => parse_groups(v, &worker_script, worker_command.as_ref(), &env)?,
        };
        let auto_scale = autoscale_option(&r)?;
        let prefetch = r.int_at_most("prefetch", 256, 1, PREFETCH_MAX)?;
        let spin_wait_us = r.int_at_most("spinWaitUs", 100, 0, SPIN_WAIT_MAX_US)?;

        Ok(PoolConfig {
            pool_size: pool_size.min(u32::MAX as u64) as u32,
            min_workers: min_workers.min(u32::MAX as u64) as u32,
            max_workers: max_workers.min(u32::MAX as u64) as u32,
            worker_script,
            exec_path: exec_path.to_string(),
            exec_argv: r.strings("execArgv", Vec::new())?,
            worker_command,
            env,
            worker_memory_limit_mb: r.int("workerMemoryLimitMB", DEFAULT_MEMORY_THRESHOLD_MB, 1)?,
            heartbeat_interval,
            zombie_threshold_ms: r.int("zombieThresholdMs", DEFAULT_ZOMBIE_THRESHOLD_MS, 1)?,
            health_check_interval: r.int("healthCheckInterval", DEFAULT_HEALTH_CHECK_INTERVAL_MS, 10)?,
            task_timeout: r.int("taskTimeout", DEFAULT_TASK_TIMEOUT_MS, 1)?,
            max_task_retries: r
                .int("maxTaskRetries", u64::from(DEFAULT_MAX_RETRIES), 0)?
                .min(MAX_TASK_RETRIES_CAP) as u32,
            retry_backoff_ms,
            max_backoff_ms,
            load_balancing,
            auto_restart: r.boolean("autoRestart", true)?,
            max_restart_attempts: r
                .int("maxRestartAttempts", u64::from(DEFAULT_MAX_RESTART_ATTEMPTS), 0)?
                .min(u32::MAX as u64) as u32,
            restart_cooldown_ms: r.int("restartCooldownMs", DEFAULT_RESTART_COOLDOWN_MS, 0)?,
            min_uptime_ms: r.int("minUptimeMs", 1000, 0)?,
            restart_on_memory_limit: r.boolean("restartOnMemoryLimit", true)?,
            ready_timeout_ms: r.int("readyTimeoutMs", 10000, 1)?,
            grace_period_ms: r.int("gracePeriodMs", 3000, 0)?,
            shutdown_timeout_ms: r.int("shutdownTimeoutMs", 30000, 0)?,
            max_queue_size: r.opt_int("maxQueueSize", 0)?,
            max_message_bytes: r.int("maxMessageBytes", DEFAULT_MAX_MESSAGE_BYTES, MIN_MAX_MESSAGE_BYTES)?,
            max_tasks_per_worker: r.opt_int("maxTasksPerWorker", 1)?,
            idle_timeout_ms: r.opt_int("idleTimeoutMs", 1)?,
            prefetch: prefetch as u32,
            spin_wait_us,
            fifo_dir: r.string("fifoDir", "/tmp/cortex/workers")?,
            transport,
            worker_groups,
            auto_scale,
            log_worker_errors: r.boolean("logWorkerErrors", true)?,
            log_worker_warnings: r.boolean("logWorkerWarnings", true)?,
            log_worker_info: r.boolean("logWorkerInfo", false)?,
            log_worker_debug: r.boolean("logWorkerDebug", false)?,
            log_level,
        })
    }

    /// Heartbeat timeout: no heartbeat for this long raises a missed-heartbeat warning.
    pub fn heartbeat_timeout_ms(&self) -> u64 {
        self.heartbeat_interval.saturating_mul(HEARTBEAT_TIMEOUT_BEATS)
    }

    /// The pool's queue settings: the one mapping from the pool's options (JavaScript
    /// reads the result back as `pool.taskQueue.options`).
    pub fn queue_options(&self) -> QueueOptions {
        QueueOptions {
            max_retries: self.max_task_retries,
            retry_backoff_ms: self.retry_backoff_ms,
            max_backoff_ms: self.max_backoff_ms,
            task_timeout_ms: self.task_timeout,
            dlq_capacity: DEFAULT_DLQ_CAPACITY,
        }
    }

    /// The pool's health-monitor settings: the one mapping from the pool's options
    /// (JavaScript reads the result back as `pool.healthMonitor.options`).
    pub fn health_options(&self) -> HealthOptions {
        HealthOptions {
            heartbeat_timeout_ms: self.heartbeat_timeout_ms(),
            health_check_interval: self.health_check_interval,
            zombie_threshold_ms: self.zombie_threshold_ms,
            max_restart_attempts: self.max_restart_attempts,
            restart_cooldown_ms: self.restart_cooldown_ms,
            memory_threshold_mb: self.worker_memory_limit_mb,
            cpu_threshold_percent: DEFAULT_CPU_THRESHOLD_PERCENT,
        }
    }

    /// JSON given to each worker as `WORKER_CONFIG`.
    pub fn worker_config_json(&self, capabilities: &[String]) -> String {
        serde_json::json!({
            "heartbeatInterval": self.heartbeat_interval,
            "memoryThresholdMB": self.worker_memory_limit_mb,
            "capabilities": capabilities,
        })
        .to_string()
    }

    pub fn to_json(&self) -> String {
        crate::util::options_json(self)
    }

    /// What `group`'s workers run (group 0 of a pool without groups is the pool
    /// itself): the program, resolved on `PATH` at spawn, and its arguments.
    pub fn launch_argv(&self, group: usize) -> (String, Vec<String>) {
        let (script, command) = match self.worker_groups.get(group) {
            Some(g) => (&g.worker_script, &g.worker_command),
            None => (&self.worker_script, &self.worker_command),
        };
        match command {
            Some(argv) => (argv[0].clone(), argv[1..].to_vec()),
            None => {
                let mut args = self.exec_argv.clone();
                args.push(script.clone());
                (self.exec_path.clone(), args)
            }
        }
    }

    /// How `group`'s workers are named in messages: the script, or the command line.
    pub fn worker_label(&self, group: usize) -> String {
        let (script, command) = match self.worker_groups.get(group) {
            Some(g) => (&g.worker_script, &g.worker_command),
            None => (&self.worker_script, &self.worker_command),
        };
        match command {
            Some(argv) => argv.join(" "),
            None => script.clone(),
        }
    }

    /// The retry delay before attempt `retries + 1` (`retries` counts from 1).
    pub fn backoff_ms(&self, retries: u32) -> u64 {
        backoff_ms(self.retry_backoff_ms, self.max_backoff_ms, retries)
    }
}

/// min(base × 2^(retries−1), cap).
pub fn backoff_ms(base: u64, cap: u64, retries: u32) -> u64 {
    let shift = retries.saturating_sub(1).min(62);
    base.saturating_mul(1u64 << shift).min(cap)
}

/// The options object (`null` reads as no options).
fn options_object<'a>(raw: &'a Value, empty: &'a Map<String, Value>) -> CoreResult<&'a Map<String, Value>> {
    match raw {
        Value::Object(o) => Ok(o),
        Value::Null => Ok(empty),
        other => Err(CoreError::new(
            crate::error::Code::InvalidConfig,
            format!("Invalid options: expected an object, got {}", describe(other)),
        )),
    }
}

/// `poolSize`, `minWorkers`, `maxWorkers`.
fn sizes(r: &Reader<'_>) -> CoreResult<(u64, u64, u64)> {
    let pool_size_given = r.present("poolSize").is_some();
    let pool_size = r.int("poolSize", 20, 1)?;
    // Unlike the original, an explicit small poolSize is not silently raised to the
    // default minWorkers of 5: the defaults bend around what was asked for.
    let min_default = if pool_size_given {
        DEFAULT_MIN_WORKERS.min(pool_size)
    } else {
        DEFAULT_MIN_WORKERS
    };
    let min_workers = r.int("minWorkers", min_default, 1)?;
    let max_default = DEFAULT_MAX_WORKERS.max(pool_size).max(min_workers);
    let max_workers = r.int("maxWorkers", max_default, 1)?;
    if min_workers > max_workers {
        return Err(CoreError::config(
            "minWorkers",
            &format!("a value <= maxWorkers ({max_workers})"),
            min_workers,
        ));
    }
    Ok((pool_size, min_workers, max_workers))
}

fn strategy(r: &Reader<'_>) -> CoreResult<Strategy> {
    let raw = r.string("loadBalancing", DEFAULT_STRATEGY)?;
    Strategy::parse(&raw).ok_or_else(|| {
        CoreError::config(
            "loadBalancing",
            "one of 'round-robin', 'least-loaded', 'capability-based'",
            format!("\"{raw}\""),
        )
    })
}

fn transport(r: &Reader<'_>) -> CoreResult<String> {
    let transport = r.string("transport", "ipc")?;
    if transport != "ipc" && transport != "fifo" {
        return Err(CoreError::config("transport", "'ipc' or 'fifo'", format!("\"{transport}\"")));
    }
    Ok(transport)
}

fn log_level(r: &Reader<'_>) -> CoreResult<String> {
    let log_level = r.string("logLevel", "info")?;
    if !["silent", "error", "warn", "info", "debug"].contains(&log_level.as_str()) {
        return Err(CoreError::config(
            "logLevel",
            "one of 'silent', 'error', 'warn', 'info', 'debug'",
            format!("\"{log_level}\""),
        ));
    }
    Ok(log_level)
}

/// `autoScale`: off, on with the defaults, or an object of settings.
fn autoscale_option(r: &Reader<'_>) -> CoreResult<Option<AutoScale>> {
    match r.present("autoScale") {
        None | Some(Value::Bool(false)) => Ok(None),
        Some(Value::Bool(true)) => Ok(Some(parse_autoscale(&Map::new())?)),
        Some(Value::Object(o)) => Ok(Some(parse_autoscale(o)?)),
        Some(v) => Err(CoreError::config("autoScale", "true, false or an object", describe(v))),
    }
}

/// `workerCommand` (of the pool, or of a group: `prefix` is then `workerGroups[i].`):
/// a non-empty argv array whose program is a non-empty string; none of `replaces` may
/// be given beside it.
fn worker_command(r: &Reader<'_>, prefix: &str, replaces: &[&str]) -> CoreResult<Option<Vec<String>>> {
    let Some(v) = r.present("workerCommand") else { return Ok(None) };
    let key = format!("{prefix}workerCommand");
    let argv = strings_of(&key, v).ok().filter(|a| a.first().is_some_and(|p| !p.is_empty()));
    let argv = argv.ok_or_else(|| {
        CoreError::config(
            &key,
            "a non-empty array of strings: the program (found on PATH, or a path), then its arguments",
            describe(v),
        )
    })?;
    if let Some((other, given)) = replaces.iter().find_map(|k| r.present(k).map(|g| (k, g))) {
        return Err(CoreError::config(
            &key,
            &format!("no \"{prefix}{other}\" beside it (workerCommand replaces workerScript and execArgv)"),
            format!("both (\"{prefix}{other}\" is {})", describe(given)),
        ));
    }
    Ok(Some(argv))
}

fn parse_groups(v: &Value, script: &str, command: Option<&Vec<String>>, env: &BTreeMap<String, String>) -> CoreResult<Vec<WorkerGroup>> {
    // `[]` is no groups, as `pool.config` reports a pool without them: the resolved
    // options read back as options resolve to themselves.
    let arr = v.as_array().ok_or_else(|| {
        CoreError::config(
            "workerGroups",
            "an array of { size, workerScript? | workerCommand?, capabilities?, env? }",
            describe(v),
        )
    })?;
    let mut out = Vec::new();
    for (i, g) in arr.iter().enumerate() {
        let key = format!("workerGroups[{i}]");
        let obj = g.as_object().ok_or_else(|| {
            CoreError::config(
                &key,
                "an object { size, workerScript? | workerCommand?, capabilities?, env? }",
                describe(g),
            )
        })?;
        let r = Reader { obj };
        let size = r.int("size", 0, 1).map_err(|_| {
            CoreError::config(
                &format!("{key}.size"),
                "an integer >= 1",
                obj.get("size").map(describe).unwrap_or_else(|| "nothing".into()),
            )
        })?;
        if r.present("size").is_none() {
            return Err(CoreError::config(&format!("{key}.size"), "an integer >= 1", "nothing"));
        }
        let worker_script = match r.present("workerScript") {
            None => script.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(v) => return Err(CoreError::config(&format!("{key}.workerScript"), "a non-empty string", describe(v))),
        };
        // A group names its own program, or else runs the pool's: its command, or its
        // script under Node.
        let worker_command = match worker_command(&r, &format!("{key}."), &["workerScript"]) {
            Ok(Some(argv)) => Some(argv),
            Ok(None) if r.present("workerScript").is_none() => command.cloned(),
            Ok(None) => None,
            Err(e) => return Err(e),
        };
        let capabilities = match r.present("capabilities") {
            None => Vec::new(),
            Some(v) => strings_of(&format!("{key}.capabilities"), v)?,
        };
        let mut genv = env.clone();
        if let Some(v) = r.present("env") {
            genv.extend(env_of(&format!("{key}.env"), v)?);
        }
        out.push(WorkerGroup {
            size: size.min(u32::MAX as u64) as u32,
            worker_script,
            worker_command,
            capabilities,
            env: genv,
        });
    }
    Ok(out)
}

fn parse_autoscale(obj: &Map<String, Value>) -> CoreResult<AutoScale> {
    let r = Reader { obj };
    let interval_ms = r.int("intervalMs", 30000, 10)?;
    Ok(AutoScale {
        queue_depth_high: r.int("queueDepthHigh", 50, 0)?,
        busy_low: r.int("busyLow", 5, 0)?,
        step_up: r.int("stepUp", 10, 1)?.min(u32::MAX as u64) as u32,
        step_down: r.int("stepDown", 5, 1)?.min(u32::MAX as u64) as u32,
        interval_ms,
        cooldown_ms: r.int("cooldownMs", interval_ms, 0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> CoreResult<PoolConfig> {
        PoolConfig::from_json(&v, "/usr/bin/node", "/pkg/worker-process.js")
    }

    #[test]
    fn defaults_are_the_originals() {
        let c = parse(json!({})).unwrap();
        assert_eq!(c.pool_size, 20);
        assert_eq!(c.min_workers, 5);
        assert_eq!(c.max_workers, 50);
        assert_eq!(c.task_timeout, 300000);
        assert_eq!(c.max_task_retries, 3);
        assert_eq!(c.heartbeat_timeout_ms(), 15000);
        assert_eq!(
            c.health_options().to_json(),
            r#"{"heartbeatTimeoutMs":15000,"healthCheckInterval":5000,"zombieThresholdMs":30000,"maxRestartAttempts":3,"restartCooldownMs":5000,"memoryThresholdMB":512,"cpuThresholdPercent":90.0}"#
        );
        assert_eq!(
            c.queue_options().to_json(),
            r#"{"maxRetries":3,"retryBackoffMs":1000,"maxBackoffMs":30000,"taskTimeoutMs":300000}"#
        );
        assert_eq!(c.load_balancing, Strategy::LeastLoaded);
        assert!(c.auto_restart);
        assert_eq!(c.worker_script, "/pkg/worker-process.js");
    }

    #[test]
    fn zero_is_not_default() {
        let c = parse(json!({ "maxTaskRetries": 0, "retryBackoffMs": 0 })).unwrap();
        assert_eq!(c.max_task_retries, 0);
        assert_eq!(c.retry_backoff_ms, 0);
    }

    #[test]
    fn small_pool_size_bends_min_workers() {
        let c = parse(json!({ "poolSize": 2 })).unwrap();
        assert_eq!(c.min_workers, 2);
        assert_eq!(c.pool_size, 2);
    }

    #[test]
    fn bad_values_name_the_option() {
        let e = parse(json!({ "poolSize": 0 })).unwrap_err();
        assert!(e.message.contains("poolSize"), "{}", e.message);
        let e = parse(json!({ "poolSize": -3 })).unwrap_err();
        assert!(e.message.contains("poolSize"));
        let e = parse(json!({ "minWorkers": 10, "maxWorkers": 2 })).unwrap_err();
        assert!(e.message.contains("minWorkers") && e.message.contains("maxWorkers"));
        let e = parse(json!({ "loadBalancing": "random" })).unwrap_err();
        assert!(e.message.contains("loadBalancing") && e.message.contains("least-loaded"));
        let e = parse(json!({ "autoRestart": "yes" })).unwrap_err();
        assert!(e.message.contains("autoRestart"));
        assert_eq!(e.code, crate::error::Code::InvalidConfig);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(1000, 30000, 1), 1000);
        assert_eq!(backoff_ms(1000, 30000, 2), 2000);
        assert_eq!(backoff_ms(1000, 30000, 3), 4000);
        assert_eq!(backoff_ms(1000, 30000, 10), 30000);
        assert_eq!(backoff_ms(1000, 30000, 200), 30000);
    }

    #[test]
    fn worker_groups_inherit_script_and_env() {
        let c = parse(json!({
            "env": { "A": "1" },
            "workerGroups": [ { "size": 2, "capabilities": ["gpu"], "env": { "B": 2 } }, { "size": 1, "workerScript": "/x.js" } ]
        }))
        .unwrap();
        assert_eq!(c.worker_groups.len(), 2);
        assert_eq!(c.worker_groups[0].worker_script, "/pkg/worker-process.js");
        assert_eq!(c.worker_groups[0].env.get("A").unwrap(), "1");
        assert_eq!(c.worker_groups[0].env.get("B").unwrap(), "2");
        assert_eq!(c.worker_groups[1].worker_script, "/x.js");
        let e = parse(json!({ "workerGroups": [ { "size": 0 } ] })).unwrap_err();
        assert!(e.message.contains("workerGroups[0].size"), "{}", e.message);
    }

    /// `pool.config` given back as options resolves to itself (found by the `config`
    /// fuzz target: `"workerGroups": []` was refused).
    #[test]
    fn resolved_options_resolve_to_themselves() {
        let groups = json!({ "workerGroups": [ { "size": 2, "capabilities": ["gpu"] } ], "autoScale": true, "maxQueueSize": 9 });
        for opts in [Value::Null, json!({ "poolSize": 3, "transport": "fifo" }), groups] {
            let c = parse(opts).unwrap();
            let again = parse(serde_json::from_str(&c.to_json()).unwrap()).unwrap();
            assert_eq!(again.to_json(), c.to_json());
        }
        assert!(parse(json!({ "workerGroups": [] })).unwrap().worker_groups.is_empty());
        let e = parse(json!({ "workerGroups": 5 })).unwrap_err();
        assert!(e.message.contains("\"workerGroups\": expected an array"), "{}", e.message);
    }

    #[test]
    fn worker_command_replaces_script_and_is_inherited_by_groups() {
        let c = parse(json!({ "workerCommand": ["python3", "w.py"] })).unwrap();
        assert_eq!(c.launch_argv(0), ("python3".to_string(), vec!["w.py".to_string()]));
        assert_eq!(c.worker_label(0), "python3 w.py");
        let c = parse(json!({
            "execArgv": ["--x"],
            "workerGroups": [ { "size": 1 }, { "size": 1, "workerCommand": ["py", "-u"] }, { "size": 1, "workerScript": "/y.js" } ]
        }))
        .unwrap();
        assert_eq!(
            c.launch_argv(0),
            (
                "/usr/bin/node".to_string(),
                vec!["--x".to_string(), "/pkg/worker-process.js".to_string()]
            )
        );
        assert_eq!(c.launch_argv(1), ("py".to_string(), vec!["-u".to_string()]));
        assert_eq!(c.launch_argv(2).1, vec!["--x".to_string(), "/y.js".to_string()]);
        let c =
            parse(json!({ "workerCommand": ["py"], "workerGroups": [ { "size": 1 }, { "size": 1, "workerScript": "/y.js" } ] })).unwrap();
        assert_eq!(c.launch_argv(0).0, "py");
        assert_eq!(c.launch_argv(1), ("/usr/bin/node".to_string(), vec!["/y.js".to_string()]));
    }

    #[test]
    fn bad_worker_commands_name_the_option() {
        for bad in [json!([]), json!(["", "x"]), json!("python3 w.py"), json!(["py", 3])] {
            let e = parse(json!({ "workerCommand": bad })).unwrap_err();
            assert!(
                e.message.contains("\"workerCommand\"") && e.message.contains("array of strings"),
                "{}",
                e.message
            );
        }
        let e = parse(json!({ "workerCommand": ["py"], "workerScript": "/x.js" })).unwrap_err();
        assert!(
            e.message.contains("workerCommand") && e.message.contains("\"workerScript\" is \"/x.js\""),
            "{}",
            e.message
        );
        let e = parse(json!({ "workerCommand": ["py"], "execArgv": [] })).unwrap_err();
        assert!(e.message.contains("execArgv"), "{}", e.message);
        let e = parse(json!({ "workerGroups": [ { "size": 1, "workerCommand": ["py"], "workerScript": "/x.js" } ] })).unwrap_err();
        assert!(
            e.message.contains("workerGroups[0].workerCommand") && e.message.contains("workerGroups[0].workerScript"),
            "{}",
            e.message
        );
        assert_eq!(e.code, crate::error::Code::InvalidConfig);
    }
}
