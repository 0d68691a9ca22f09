//! Test fixtures: a private redis-server, and BullMQ's own JavaScript classes (run
//! with `node` from the repository's node_modules) as the producer and the observer.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn bullmq_dir() -> PathBuf {
    repo_root().join("node_modules/bullmq")
}

/// A redis-server on a free port in a temporary directory, under a shell watchdog
/// that stops it when this test process is gone; stopped on drop.
pub struct Redis {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl Redis {
    pub fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("bullmq-rs-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = r#"parent=$1; shift
redis-server "$@" &
r=$!
trap 'kill -TERM $r 2>/dev/null; wait $r; exit 0' TERM
while kill -0 "$parent" 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.2; done
kill -TERM $r 2>/dev/null
wait $r"#;
        let child = Command::new("sh")
            .args(["-c", script, "sh", &std::process::id().to_string()])
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let r = Redis { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        unsafe {
            libc_kill(self.child.id() as i32, 15);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Runs `body` (JavaScript, inside an async function with `bullmq`, `url` and `queue`
/// in scope) with node; returns what it printed.
pub fn node(url: &str, queue: &str, body: &str) -> String {
    let program = format!(
        "const bullmq = require('bullmq'); const url = {url:?}; const queue = {queue:?};\n\
         const connection = {{ url, maxRetriesPerRequest: null }};\n\
         (async () => {{ {body} }})().then(() => process.exit(0), (e) => {{ console.error(e); process.exit(1); }});"
    );
    let out = Command::new("node")
        .arg("-e")
        .arg(program)
        .current_dir(repo_root())
        .output()
        .expect("node on PATH");
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
