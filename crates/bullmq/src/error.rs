//! The crate's errors: a Redis error, a script that does not match what this code was
//! written for, or a script's own error code.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// The connection or the server failed (retry may help).
    Redis(redis::RedisError),
    /// The installed bullmq's scripts are not the ones this code speaks.
    Scripts(String),
    /// A script answered with one of BullMQ's negative codes (`-1` missing job, `-2`
    /// missing lock, `-3` not active, `-6` lock not owned, ...).
    Script { command: &'static str, code: i64, job_id: String },
    /// A reply whose shape is not what the script returns.
    Reply(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// True when the error came from the connection (lost, timed out, refused), not
    /// from what the server said: the command may be retried.
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_unrecoverable_error()
                    || matches!(e.kind(), redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading))
                    || e.to_string().contains("READONLY")
            }
            _ => false,
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::Redis(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Redis(e) => write!(f, "Redis: {e}"),
            Error::Scripts(m) => f.write_str(m),
            Error::Script { command, code, job_id } => {
                let why = match code {
                    -1 => "the job does not exist",
                    -2 => "the job's lock is missing",
                    -3 => "the job is not in the active state",
                    -4 => "the job has pending children",
                    -6 => "the job's lock is held by another worker",
                    -9 => "the job has failed children",
                    _ => "unknown error",
                };
                write!(f, "{command} for job {job_id}: {why} (code {code})")
            }
            Error::Reply(m) => write!(f, "unexpected reply: {m}"),
        }
    }
}

impl std::error::Error for Error {}
