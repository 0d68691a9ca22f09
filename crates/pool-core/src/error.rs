//! The one error table of the core. Every error that reaches JavaScript carries one of
//! these stable codes; the binding converts `CoreError` in exactly one place.

use serde::Serialize;
use std::fmt;

/// Declares `Code` from one list of `Variant => "ERR_CODE"` pairs: the enum, its
/// string (`as_str`, also its JSON form) and `Code::ALL`, so the three cannot drift
/// apart. lib/errors.js keeps the same list (`CORE_CODES`); a test there compares it
/// with `Code::ALL` through the binding's `errorCodes()`.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident => $code:literal,)+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $($(#[$doc])* $variant,)+
        }

        impl Code {
            /// Every code, in the order of the table.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)+
                }
            }
        }
    };
}

codes! {
    InvalidConfig => "ERR_INVALID_CONFIG",
    InvalidTask => "ERR_INVALID_TASK",
    InvalidArgument => "ERR_INVALID_ARGUMENT",
    PoolNotInitialized => "ERR_POOL_NOT_INITIALIZED",
    PoolAlreadyInitialized => "ERR_POOL_ALREADY_INITIALIZED",
    PoolShuttingDown => "ERR_POOL_SHUTTING_DOWN",
    PoolShutdown => "ERR_POOL_SHUTDOWN",
    TaskFailed => "ERR_TASK_FAILED",
    NoHandler => "ERR_NO_HANDLER",
    WorkerCrashed => "ERR_WORKER_CRASHED",
    TaskTimeout => "ERR_TASK_TIMEOUT",
    Aborted => "ABORT_ERR",
    QueueFull => "ERR_QUEUE_FULL",
    QueueCleared => "ERR_QUEUE_CLEARED",
    WorkerStartFailed => "ERR_WORKER_START_FAILED",
    Protocol => "ERR_PROTOCOL",
    NoCapableWorker => "ERR_NO_CAPABLE_WORKER",
    NotSupported => "ERR_NOT_SUPPORTED",
    Internal => "ERR_INTERNAL",
    QueueUnavailable => "ERR_QUEUE_UNAVAILABLE",
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Details that become properties of the JS `Error` (the worker's stack, an exit
/// code, stderr, ...). Boxed: errors are rare and `Result`s stay small.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Extra {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    #[serde(rename = "workerId", skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(rename = "exitCode", skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// A code set by the worker's handler (`err.code`), when it is not one of ours.
    #[serde(rename = "handlerCode", skip_serializing_if = "Option::is_none")]
    pub handler_code: Option<String>,
    /// The `name` of the handler's error (`TypeError`, BullMQ's `UnrecoverableError`):
    /// for the shared queue's outcome only; JavaScript's error keeps its own.
    #[serde(skip)]
    pub handler_name: Option<String>,
    /// The delay before the next attempt that the worker's custom backoff strategy
    /// gave (ms; negative: no retry): for the shared queue's outcome only.
    #[serde(skip)]
    pub backoff_delay: Option<f64>,
}

/// An error as JavaScript will see it: `message`, `code`, and optional details.
#[derive(Debug, Clone, Serialize)]
pub struct CoreError {
    pub code: Code,
    pub message: String,
    #[serde(flatten)]
    pub extra: Box<Extra>,
}

impl CoreError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        CoreError {
            code,
            message: message.into(),
            extra: Box::default(),
        }
    }

    pub fn config(option: &str, allowed: &str, got: impl fmt::Display) -> Self {
        CoreError::new(
            Code::InvalidConfig,
            format!("Invalid option \"{option}\": expected {allowed}, got {got}"),
        )
    }

    pub fn task(field: &str, allowed: &str, got: impl fmt::Display) -> Self {
        CoreError::new(Code::InvalidTask, format!("Invalid task: \"{field}\" must be {allowed}, got {got}"))
    }

    pub fn with_worker(mut self, worker_id: &str) -> Self {
        self.extra.worker_id = Some(worker_id.to_string());
        self
    }

    pub fn with_stack(mut self, stack: Option<String>) -> Self {
        self.extra.stack = stack;
        self
    }

    pub fn with_name(mut self, name: &str) -> Self {
        self.extra.name = Some(name.to_string());
        self
    }

    pub fn aborted(message: impl Into<String>) -> Self {
        CoreError::new(Code::Aborted, message).with_name("AbortError")
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                "{{\"code\":\"ERR_INTERNAL\",\"message\":{}}}",
                serde_json::Value::String(self.message.clone())
            )
        })
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for CoreError {}

pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_are_the_table_strings() {
        for &c in Code::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        let e = CoreError::new(Code::Aborted, "stop").with_name("AbortError");
        assert_eq!(e.to_json(), r#"{"code":"ABORT_ERR","message":"stop","name":"AbortError"}"#);
    }
}
