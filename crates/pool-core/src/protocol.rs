//! The messages between the pool and a worker (docs/PROTOCOL.md), as types.
//!
//! Workers speak newline-delimited JSON over Node's IPC channel. The core parses only
//! the envelope it needs; task results stay raw JSON text (`RawValue`) all the way to
//! JavaScript, where V8 parses them once.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

#[derive(Debug, Default, Deserialize)]
pub struct WorkerError<'a> {
    #[serde(default, borrow)]
    pub message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub stack: Option<Cow<'a, str>>,
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    /// A custom backoff strategy's delay (ms) before the job's next attempt; < 0: none.
    #[serde(default, rename = "backoffDelay")]
    pub backoff_delay: Option<f64>,
}

impl WorkerError<'_> {
    pub fn code_string(&self) -> Option<String> {
        match &self.code {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct MemoryUsage {
    #[serde(default, rename = "heapUsed")]
    pub heap_used: f64,
    #[serde(default, rename = "heapTotal")]
    pub heap_total: f64,
    #[serde(default)]
    pub rss: f64,
    #[serde(default)]
    pub external: f64,
}

#[derive(Debug, Default, Deserialize)]
pub struct CpuUsage {
    #[serde(default)]
    pub user: f64,
    #[serde(default)]
    pub system: f64,
}

/// One entry of a `task-results` batch.
#[derive(Debug, Deserialize)]
pub struct BatchResult<'a> {
    #[serde(rename = "taskId", borrow)]
    pub task_id: Cow<'a, str>,
    #[serde(default)]
    pub ok: bool,
    #[serde(default, borrow)]
    pub result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub error: Option<WorkerError<'a>>,
    /// Run time in ms as the worker measured it.
    #[serde(default)]
    pub duration: Option<f64>,
}

/// Every field any worker→pool message may carry; unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Incoming<'a> {
    #[serde(default, rename = "type", borrow)]
    pub kind: Option<Cow<'a, str>>,
    /// Node-internal messages (`NODE_*`) carry `cmd` instead of `type`.
    #[serde(default, borrow)]
    pub cmd: Option<Cow<'a, str>>,
    #[serde(default, rename = "taskId", borrow)]
    pub task_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub error: Option<WorkerError<'a>>,
    #[serde(default, borrow)]
    pub results: Option<Vec<BatchResult<'a>>>,
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default, rename = "memoryUsage")]
    pub memory_usage: Option<MemoryUsage>,
    #[serde(default, rename = "cpuUsage")]
    pub cpu_usage: Option<CpuUsage>,
    #[serde(default, borrow)]
    pub state: Option<Cow<'a, str>>,
    #[serde(default)]
    pub fatal: Option<bool>,
    #[serde(default)]
    pub duration: Option<f64>,
    /// `job-call`: the worker's id for the call (a number or string, echoed back).
    #[serde(default, rename = "callId", borrow)]
    pub call_id: Option<&'a RawValue>,
    /// `job-call`: what to do (`progress`, `log`, `update-data`, `children-values`).
    #[serde(default, borrow)]
    pub op: Option<Cow<'a, str>>,
    /// `job-call`: its argument.
    #[serde(default, borrow)]
    pub value: Option<&'a RawValue>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Ready,
    Heartbeat,
    TaskComplete,
    TaskFailed,
    TaskResults,
    WorkerLog,
    WorkerError,
    HighMemoryWarning,
    WorkerShutdown,
    HealthStatus,
    WorkerMetrics,
    JobCall,
    NodeInternal,
    Other,
}

impl Incoming<'_> {
    pub fn kind(&self) -> Kind {
        match self.kind.as_deref() {
            Some("task-complete") => Kind::TaskComplete,
            Some("task-results") => Kind::TaskResults,
            Some("task-failed") => Kind::TaskFailed,
            Some("heartbeat") => Kind::Heartbeat,
            Some("worker-ready") => Kind::Ready,
            Some("worker-log") => Kind::WorkerLog,
            Some("worker-error") => Kind::WorkerError,
            Some("high-memory-warning") => Kind::HighMemoryWarning,
            Some("worker-shutdown") => Kind::WorkerShutdown,
            Some("health-status") => Kind::HealthStatus,
            Some("worker-metrics") => Kind::WorkerMetrics,
            Some("job-call") => Kind::JobCall,
            Some(_) => Kind::Other,
            None if self.cmd.as_deref().is_some_and(|c| c.starts_with("NODE_")) => Kind::NodeInternal,
            None => Kind::Other,
        }
    }
}

pub fn parse(line: &str) -> Result<Incoming<'_>, serde_json::Error> {
    serde_json::from_str(line)
}

/// Appends one task object `{"id":..,"type":..,"payload":..,"timeout":..[,"job":..]}`.
/// `type_json`, `payload_json` and `job_json` are already JSON text.
pub fn write_task(out: &mut Vec<u8>, id: &str, type_json: &str, payload_json: &str, timeout_ms: u64, job_json: Option<&str>) {
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\",\"type\":");
    out.extend_from_slice(type_json.as_bytes());
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(payload_json.as_bytes());
    out.extend_from_slice(b",\"timeout\":");
    out.extend_from_slice(timeout_ms.to_string().as_bytes());
    if let Some(j) = job_json {
        out.extend_from_slice(b",\"job\":");
        out.extend_from_slice(j.as_bytes());
    }
    out.push(b'}');
}

/// The answer to a worker's `job-call` (`call_id` is the worker's id for the call,
/// echoed as JSON text): `value_json` on success, or an error with a code.
pub fn job_call_result(call_id_json: &str, outcome: Result<&str, (&str, &str)>) -> Vec<u8> {
    let mut out = format!("{{\"type\":\"job-call-result\",\"callId\":{call_id_json},");
    match outcome {
        Ok(v) => {
            out.push_str("\"ok\":true,\"value\":");
            out.push_str(v);
        }
        Err((code, message)) => {
            let e = serde_json::json!({ "code": code, "message": message });
            out.push_str("\"ok\":false,\"error\":");
            out.push_str(&e.to_string());
        }
    }
    out.push_str("}\n");
    out.into_bytes()
}

pub fn execute_task_prefix() -> &'static [u8] {
    b"{\"type\":\"execute-task\",\"task\":"
}

pub fn execute_batch_prefix() -> &'static [u8] {
    b"{\"type\":\"execute-batch\",\"tasks\":["
}

pub fn cancel_task(id: &str, reason: &str) -> Vec<u8> {
    format!("{{\"type\":\"cancel-task\",\"taskId\":\"{id}\",\"reason\":\"{reason}\"}}\n").into_bytes()
}

pub fn shutdown(graceful: bool) -> Vec<u8> {
    format!("{{\"type\":\"shutdown\",\"graceful\":{graceful}}}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_task_complete_keeping_result_raw() {
        let m = parse(r#"{"type":"task-complete","taskId":"task-1-2","workerId":"worker-0","result":{"a":[1, 2]},"duration":3}"#).unwrap();
        assert_eq!(m.kind(), Kind::TaskComplete);
        assert_eq!(m.task_id.as_deref(), Some("task-1-2"));
        assert_eq!(m.result.unwrap().get(), r#"{"a":[1, 2]}"#);
    }

    #[test]
    fn parses_batches_and_errors() {
        let m = parse(r#"{"type":"task-results","results":[{"taskId":"t1","ok":true,"result":1},{"taskId":"t2","ok":false,"error":{"message":"no","code":"E1","stack":"s"}}]}"#).unwrap();
        assert_eq!(m.kind(), Kind::TaskResults);
        let r = m.results.unwrap();
        assert_eq!(r.len(), 2);
        assert!(r[0].ok);
        let e = r[1].error.as_ref().unwrap();
        assert_eq!(e.message.as_deref(), Some("no"));
        assert_eq!(e.code_string().as_deref(), Some("E1"));
    }

    #[test]
    fn node_internal_messages_are_recognised() {
        let m = parse(r#"{"cmd":"NODE_HANDLE_ACK"}"#).unwrap();
        assert_eq!(m.kind(), Kind::NodeInternal);
    }

    #[test]
    fn writes_execute_task() {
        let mut out = execute_task_prefix().to_vec();
        write_task(&mut out, "task-1-1", "\"echo\"", "{\"x\":1}", 50, None);
        out.extend_from_slice(b"}\n");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "execute-task");
        assert_eq!(v["task"]["payload"]["x"], 1);
        assert_eq!(v["task"]["timeout"], 50);
    }
}
