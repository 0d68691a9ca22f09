//! A job as the worker scripts return it: the job hash (`HGETALL`) and its id.

use crate::error::{Error, Result};
use redis::Value;
use serde_json::Value as Json;

#[derive(Debug, Clone, Default)]
pub struct Job {
    pub id: String,
    pub name: String,
    /// The job's data, as the JSON text stored in Redis (never parsed here).
    pub data: String,
    /// The job's options (`opts`, JSON), parsed.
    pub opts: Json,
    pub timestamp: i64,
    pub delay: i64,
    pub priority: i64,
    /// Attempts finished (`atm`), before this one.
    pub attempts_made: i64,
    /// Attempts started (`ats`), this one included.
    pub attempts_started: i64,
    pub stalled_counter: i64,
    pub processed_on: Option<i64>,
    /// The stack traces of earlier attempts (BullMQ keeps one entry per attempt).
    pub stacktrace: Vec<String>,
    /// Set by the stalled check when the job stalled too often: the attempt must fail
    /// with this reason, unprocessed.
    pub deferred_failure: Option<String>,
    pub parent_key: Option<String>,
    pub repeat_job_key: Option<String>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.trim().parse::<f64>().ok().map(|f| f as i64),
        Value::SimpleString(s) => s.trim().parse::<f64>().ok().map(|f| f as i64),
        _ => None,
    }
}

impl Job {
    /// A job from the fields of its hash (a flat `[field, value, ...]` array, or a map
    /// under RESP3) and its id.
    pub fn from_hash(id: String, hash: &Value) -> Result<Job> {
        let pairs: Vec<(String, &Value)> = match hash {
            Value::Array(items) => items.chunks(2).filter_map(|c| Some((text(c.first()?)?, c.get(1)?))).collect(),
            Value::Map(items) => items.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect(),
            other => return Err(Error::Reply(format!("a job hash, got {other:?}"))),
        };
        let mut job = Job {
            id,
            data: "{}".into(),
            opts: Json::Object(Default::default()),
            ..Job::default()
        };
        for (field, v) in pairs {
            let s = || text(v).unwrap_or_default();
            match field.as_str() {
                "name" => job.name = s(),
                "data" => job.data = s(),
                "opts" => job.opts = serde_json::from_str(&s()).unwrap_or(Json::Object(Default::default())),
                "timestamp" => job.timestamp = int(v).unwrap_or(0),
                "delay" => job.delay = int(v).unwrap_or(0),
                "priority" => job.priority = int(v).unwrap_or(0),
                "atm" | "attemptsMade" => job.attempts_made = int(v).unwrap_or(0),
                "ats" => job.attempts_started = int(v).unwrap_or(0),
                "stc" => job.stalled_counter = int(v).unwrap_or(0),
                "processedOn" => job.processed_on = int(v),
                "stacktrace" => {
                    job.stacktrace = serde_json::from_str::<Vec<Json>>(&s())
                        .map(|v| v.into_iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
                        .unwrap_or_default()
                }
                "defa" => job.deferred_failure = Some(s()),
                "parentKey" => job.parent_key = Some(s()),
                "rjk" => job.repeat_job_key = Some(s()),
                _ => {}
            }
        }
        Ok(job)
    }

    /// `opts.attempts` (1 when absent: one try, no retry).
    pub fn attempts(&self) -> i64 {
        self.opts.get("attempts").and_then(Json::as_i64).unwrap_or(1).max(1)
    }

    /// The `removeOnComplete` / `removeOnFail` option as BullMQ's `keepJobs`:
    /// `(count, age_seconds)`; `count` -1 keeps every job, 0 removes it at once.
    pub fn keep_jobs(&self, completed: bool) -> (i64, Option<i64>) {
        let opt = self.opts.get(if completed { "removeOnComplete" } else { "removeOnFail" });
        match opt {
            None | Some(Json::Null) => (-1, None),
            Some(Json::Bool(true)) => (0, None),
            Some(Json::Bool(false)) => (-1, None),
            Some(Json::Number(n)) => (n.as_i64().unwrap_or(-1), None),
            Some(Json::Object(o)) => (
                o.get("count").and_then(Json::as_i64).unwrap_or(-1),
                o.get("age").and_then(Json::as_i64),
            ),
            Some(_) => (-1, None),
        }
    }

    /// The stack traces to store after this attempt failed with `stack`, kept to
    /// `opts.stackTraceLimit` entries as BullMQ does.
    pub fn stacktrace_after(&self, stack: Option<&str>) -> Vec<String> {
        let mut out = self.stacktrace.clone();
        if let Some(s) = stack {
            out.push(s.to_string());
            match self.opts.get("stackTraceLimit").and_then(Json::as_i64) {
                Some(0) => out.clear(),
                Some(n) if n > 0 && out.len() > n as usize => {
                    out.drain(..out.len() - n as usize);
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_the_job_hash() {
        let h = Value::Array(vec![
            bulk("name"),
            bulk("t"),
            bulk("data"),
            bulk("{\"a\":1}"),
            bulk("opts"),
            bulk("{\"attempts\":3,\"removeOnComplete\":{\"age\":10,\"count\":5},\"stackTraceLimit\":2}"),
            bulk("atm"),
            bulk("1"),
            bulk("ats"),
            bulk("2"),
            bulk("stacktrace"),
            bulk("[\"s1\",\"s2\"]"),
            bulk("priority"),
            bulk("4"),
        ]);
        let j = Job::from_hash("7".into(), &h).unwrap();
        assert_eq!((j.id.as_str(), j.name.as_str(), j.data.as_str()), ("7", "t", "{\"a\":1}"));
        assert_eq!((j.attempts(), j.attempts_made, j.attempts_started, j.priority), (3, 1, 2, 4));
        assert_eq!(j.keep_jobs(true), (5, Some(10)));
        assert_eq!(j.keep_jobs(false), (-1, None));
        assert_eq!(j.stacktrace_after(Some("s3")), vec!["s2".to_string(), "s3".to_string()]);
    }
}
