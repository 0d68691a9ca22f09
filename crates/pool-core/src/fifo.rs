//! The FIFO transport's directory: claimed by one pool at a time, cleared of stale
//! pipes at start and of all of ours at shutdown.

use crate::error::{Code, CoreError, CoreResult};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const LOCK_FILE: &str = ".worker-pool.lock";

static CLAIMED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn pid_alive(pid: i32) -> bool {
    pid > 0 && (unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

fn is_pool_fifo(name: &str) -> bool {
    name.starts_with("worker-") && (name.ends_with("-in.fifo") || name.ends_with("-out.fifo"))
}

/// Creates the directory (0700), refuses it when another live pool holds it, and
/// removes pipes a previous run left behind.
pub fn claim_dir(dir: &str) -> CoreResult<()> {
    use std::os::unix::fs::DirBuilderExt;
    let path = PathBuf::from(dir);
    let fail = |why: String| CoreError::new(Code::InvalidConfig, format!("Invalid option \"fifoDir\": {why}"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&path)
        .map_err(|e| fail(format!("cannot create {dir}: {e}")))?;
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    let set = claimed.get_or_insert_with(HashSet::new);
    if set.contains(&path) {
        return Err(fail(format!("{dir} is in use by another pool of this process")));
    }
    let lock = path.join(LOCK_FILE);
    if let Ok(text) = std::fs::read_to_string(&lock) {
        let pid: i32 = text.trim().parse().unwrap_or(0);
        if pid != std::process::id() as i32 && pid_alive(pid) {
            return Err(fail(format!("{dir} is in use by the pool of process {pid}")));
        }
    }
    std::fs::write(&lock, format!("{}\n", std::process::id())).map_err(|e| fail(format!("cannot write {}: {e}", lock.display())))?;
    if let Ok(entries) = std::fs::read_dir(&path) {
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(is_pool_fifo) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    set.insert(path);
    Ok(())
}

/// Removes every pool pipe and the lock file.
pub fn release_dir(dir: &str) {
    let path = Path::new(dir);
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(is_pool_fifo) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = std::fs::remove_file(path.join(LOCK_FILE));
    if let Some(set) = CLAIMED.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        set.remove(path);
    }
}
