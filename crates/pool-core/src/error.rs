//! The one error table of the core. Every error that reaches JavaScript carries one of
//! these stable codes; the binding converts `CoreError` in exactly one place.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Code {
    #[serde(rename = "ERR_INVALID_CONFIG")]
    InvalidConfig,
    #[serde(rename = "ERR_INVALID_TASK")]
    InvalidTask,
    #[serde(rename = "ERR_POOL_NOT_INITIALIZED")]
    PoolNotInitialized,
    #[serde(rename = "ERR_POOL_ALREADY_INITIALIZED")]
    PoolAlreadyInitialized,
    #[serde(rename = "ERR_POOL_SHUTTING_DOWN")]
    PoolShuttingDown,
    #[serde(rename = "ERR_POOL_SHUTDOWN")]
    PoolShutdown,
    #[serde(rename = "ERR_TASK_FAILED")]
    TaskFailed,
    #[serde(rename = "ERR_NO_HANDLER")]
    NoHandler,
    #[serde(rename = "ERR_WORKER_CRASHED")]
    WorkerCrashed,
    #[serde(rename = "ERR_TASK_TIMEOUT")]
    TaskTimeout,
    #[serde(rename = "ABORT_ERR")]
    Aborted,
    #[serde(rename = "ERR_QUEUE_FULL")]
    QueueFull,
    #[serde(rename = "ERR_QUEUE_CLEARED")]
    QueueCleared,
    #[serde(rename = "ERR_WORKER_START_FAILED")]
    WorkerStartFailed,
    #[serde(rename = "ERR_PROTOCOL")]
    Protocol,
    #[serde(rename = "ERR_NO_CAPABLE_WORKER")]
    NoCapableWorker,
    #[serde(rename = "ERR_NOT_FOUND")]
    NotFound,
    #[serde(rename = "ERR_NOT_SUPPORTED")]
    NotSupported,
    #[serde(rename = "ERR_INVALID_ARGUMENT")]
    InvalidArgument,
    #[serde(rename = "ERR_SPAWN_FAILED")]
    SpawnFailed,
    #[serde(rename = "ERR_INTERNAL")]
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidConfig => "ERR_INVALID_CONFIG",
            Code::InvalidTask => "ERR_INVALID_TASK",
            Code::PoolNotInitialized => "ERR_POOL_NOT_INITIALIZED",
            Code::PoolAlreadyInitialized => "ERR_POOL_ALREADY_INITIALIZED",
            Code::PoolShuttingDown => "ERR_POOL_SHUTTING_DOWN",
            Code::PoolShutdown => "ERR_POOL_SHUTDOWN",
            Code::TaskFailed => "ERR_TASK_FAILED",
            Code::NoHandler => "ERR_NO_HANDLER",
            Code::WorkerCrashed => "ERR_WORKER_CRASHED",
            Code::TaskTimeout => "ERR_TASK_TIMEOUT",
            Code::Aborted => "ABORT_ERR",
            Code::QueueFull => "ERR_QUEUE_FULL",
            Code::QueueCleared => "ERR_QUEUE_CLEARED",
            Code::WorkerStartFailed => "ERR_WORKER_START_FAILED",
            Code::Protocol => "ERR_PROTOCOL",
            Code::NoCapableWorker => "ERR_NO_CAPABLE_WORKER",
            Code::NotFound => "ERR_NOT_FOUND",
            Code::NotSupported => "ERR_NOT_SUPPORTED",
            Code::InvalidArgument => "ERR_INVALID_ARGUMENT",
            Code::SpawnFailed => "ERR_SPAWN_FAILED",
            Code::Internal => "ERR_INTERNAL",
        }
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
