//! Spawning, signalling and measuring worker processes.
//!
//! Each worker is `node <execArgv> <script>` (or the pool's `workerCommand`) with one
//! end of a Unix socketpair as fd 3 and `NODE_CHANNEL_FD=3`, so Node's own IPC channel
//! (`process.send`) works in the child exactly as under `child_process.fork`, and a
//! worker in another language finds its channel by the same variable. Each child gets its own process
//! group (so a kill reaches anything it spawned) and a parent-death signal (so it
//! cannot outlive the pool's process, even on SIGKILL).

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// The worker's fd for its IPC channel (`NODE_CHANNEL_FD`): the first after stdin,
/// stdout and stderr, where Node's own `fork` puts it.
pub const CHANNEL_FD: i32 = 3;

pub struct SpawnSpec<'a> {
    /// Found on `PATH` (the child's) when it has no slash, as `execvp` does.
    pub program: &'a str,
    pub args: &'a [String],
    pub env: Vec<(String, String)>,
    pub extra_env: &'a BTreeMap<String, String>,
    /// Give the child Node's IPC channel (fd 3). Off for the FIFO transport.
    pub ipc: bool,
}

pub struct Spawned {
    pub child: Child,
    pub pid: u32,
    pub channel: Option<StdUnixStream>,
    pub stderr_tail: Arc<Mutex<StderrTail>>,
    /// Fires when the worker's stderr reached EOF (everything it wrote is in the tail).
    pub stderr_done: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// The last lines a worker wrote to stderr (for start-failure reports).
#[derive(Default)]
pub struct StderrTail {
    lines: VecDeque<String>,
    partial: String,
}

/// Lines of a worker's stderr kept for a start failure's message: enough for a stack
/// trace's top, short enough to read in an error.
const TAIL_LINES: usize = 20;
/// Most bytes of an unfinished stderr line kept (its end): a worker that writes
/// without newlines must not grow the tail without bound.
const PARTIAL_LINE_MAX: usize = 4096;
/// Clock ticks per second if sysconf cannot say: Linux's USER_HZ, 100 on every
/// architecture.
const FALLBACK_CLOCK_TICKS: f64 = 100.0;
/// Page size if sysconf cannot say: 4 KiB, the usual size on Linux.
const FALLBACK_PAGE_SIZE: u64 = 4096;

impl StderrTail {
    fn push(&mut self, chunk: &[u8]) {
        self.partial.push_str(&String::from_utf8_lossy(chunk));
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            self.lines.push_back(line.trim_end().to_string());
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
        if self.partial.len() > PARTIAL_LINE_MAX {
            let cut = self.partial.len() - PARTIAL_LINE_MAX;
            let cut = (cut..self.partial.len()).find(|i| self.partial.is_char_boundary(*i)).unwrap_or(0);
            self.partial.drain(..cut);
        }
    }

    pub fn text(&self) -> String {
        let mut v: Vec<&str> = self.lines.iter().map(String::as_str).collect();
        if !self.partial.is_empty() {
            v.push(&self.partial);
        }
        v.join("\n")
    }
}

/// Bytes read from a worker's stderr at a time.
const STDERR_READ_CHUNK: usize = 8192;

/// Spawns a worker. Must run inside the core's runtime, on one of its long-lived
/// threads: the parent-death signal is tied to the thread that forks.
pub fn spawn(spec: &SpawnSpec<'_>) -> io::Result<Spawned> {
    let (parent_end, child_fd) = if spec.ipc {
        let (p, c) = StdUnixStream::pair()?;
        (Some(p), Some(OwnedFd::from(c)))
    } else {
        (None, None)
    };
    let raw_child_fd = child_fd.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
    let parent_pid = unsafe { libc::getpid() };

    let mut cmd = Command::new(spec.program);
    cmd.args(spec.args)
        .envs(spec.extra_env.iter())
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if spec.ipc {
        cmd.env("NODE_CHANNEL_FD", CHANNEL_FD.to_string())
            .env("NODE_CHANNEL_SERIALIZATION_MODE", "json");
    } else {
        cmd.env_remove("NODE_CHANNEL_FD").env_remove("NODE_CHANNEL_SERIALIZATION_MODE");
    }
    // SAFETY: only async-signal-safe calls (dup2, fcntl, prctl, getppid, raise) run
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if raw_child_fd < 0 {
                // No IPC channel (FIFO transport).
            } else if raw_child_fd == CHANNEL_FD {
                let flags = libc::fcntl(CHANNEL_FD, libc::F_GETFD);
                if flags < 0 || libc::fcntl(CHANNEL_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(raw_child_fd, CHANNEL_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent_pid {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(child_fd);
    let pid = child.id().unwrap_or(0);
    let tail = Arc::new(Mutex::new(StderrTail::default()));
    let stderr_done = child.stderr.take().map(|err| read_stderr(err, tail.clone()));
    Ok(Spawned {
        child,
        pid,
        channel: parent_end,
        stderr_tail: tail,
        stderr_done,
    })
}

/// Reads a worker's stderr until EOF: forwarded to ours, and its last lines kept in
/// `tail`. The receiver fires at EOF.
fn read_stderr(mut err: tokio::process::ChildStderr, tail: Arc<Mutex<StderrTail>>) -> tokio::sync::oneshot::Receiver<()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; STDERR_READ_CHUNK];
        loop {
            match err.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    forward_stderr(&buf[..n]);
                    if let Ok(mut t) = tail.lock() {
                        t.push(&buf[..n]);
                    }
                }
            }
        }
        let _ = done_tx.send(());
    });
    done_rx
}

/// A worker's stderr goes to ours, as with `fork` (whose stdio is inherited).
fn forward_stderr(bytes: &[u8]) {
    let mut off = 0;
    while off < bytes.len() {
        let n = unsafe { libc::write(2, bytes[off..].as_ptr().cast(), bytes.len() - off) };
        if n <= 0 {
            break;
        }
        off += n as usize;
    }
}

/// Where `execvp` would find `program`: itself when it has a slash, else the first
/// executable file of that name in `path` (or this process's `PATH`).
pub fn find_program(program: &str, path: Option<&String>) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return runnable(&p).then_some(p);
    }
    let path = path.cloned().or_else(|| std::env::var("PATH").ok()).unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| runnable(p))
}

/// Signals the worker's whole process group (it leads its own group).
pub fn kill_group(pid: u32, sig: i32) {
    if pid == 0 {
        return;
    }
    unsafe {
        if libc::kill(-(pid as i32), sig) != 0 {
            libc::kill(pid as i32, sig);
        }
    }
}

/// Memory and CPU of a process, as the kernel sees them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    pub rss_bytes: u64,
    /// user + system CPU time in milliseconds since the process started
    pub cpu_ms: f64,
    pub state: char,
}

pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    let tick = clock_ticks();
    let page = page_size();
    Some(ProcSample {
        rss_bytes: rss_pages * page,
        cpu_ms: (utime + stime) * 1000.0 / tick,
        state,
    })
}

fn clock_ticks() -> f64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        FALLBACK_CLOCK_TICKS
    }
}

fn page_size() -> u64 {
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        FALLBACK_PAGE_SIZE
    }
}

/// Creates a named pipe with mode 0600, replacing a stale one.
pub fn make_fifo(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(io::Error::last_os_error());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Opens a FIFO read-write and non-blocking: the open never waits for the peer, and
/// the pipe never reports EOF while we hold it (the worker's exit is watched instead).
pub fn open_fifo(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_last_lines() {
        let mut t = StderrTail::default();
        for i in 0..30 {
            t.push(format!("line {i}\n").as_bytes());
        }
        t.push(b"partial");
        let text = t.text();
        assert!(text.starts_with("line 10"));
        assert!(text.ends_with("partial"));
    }

    #[test]
    fn samples_own_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(matches!(s.state, 'R' | 'S'));
    }

    #[test]
    fn spawned_child_gets_the_channel_and_is_reaped() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let env = BTreeMap::new();
            let argv = vec!["-c".to_string(), "echo '{\"type\":\"worker-ready\"}' >&3".to_string()];
            let spec = SpawnSpec {
                program: "sh",
                args: &argv,
                env: vec![],
                extra_env: &env,
                ipc: true,
            };
            let mut s = spawn(&spec).unwrap();
            let stream = tokio::net::UnixStream::from_std({
                let c = s.channel.take().unwrap();
                c.set_nonblocking(true).unwrap();
                c
            })
            .unwrap();
            let mut r = tokio::io::BufReader::new(stream);
            let mut line = String::new();
            tokio::io::AsyncBufReadExt::read_line(&mut r, &mut line).await.unwrap();
            assert_eq!(line.trim(), "{\"type\":\"worker-ready\"}");
            let st = s.child.wait().await.unwrap();
            assert!(st.success());
        });
    }
}
