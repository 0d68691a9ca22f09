use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// The number of runnable threads in `/proc/loadavg` text (the kernel's instantaneous
/// count: "0.62 0.57 0.25 2/150 1234" -> 2). The binding's reply spin runs only while
/// it is at most the CPU count.
pub fn runnable_in_loadavg(text: &[u8]) -> Option<usize> {
    let field = std::str::from_utf8(text).ok()?.split_ascii_whitespace().nth(3)?;
    field.split_once('/')?.0.parse().ok()
}

/// A fast multiplicative hasher (the "Fx" hash of rustc) for the core's own keys:
/// task sequence numbers and task type names, hashed per task on the hot path. The
/// keys come from the embedding program, not from a network peer, so resistance to
/// chosen collisions (what the default SipHash pays for) buys nothing here.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

/// FxHash's multiplier (from rustc's FxHasher): an odd constant whose bits are well
/// spread, so one multiply mixes every input bit into the high bits.
const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(n as u64);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
pub type FastSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// Bytes in a megabyte as the pool reports memory (MiB, like Node's figures).
pub const BYTES_PER_MB: f64 = 1_048_576.0;

pub fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
        .floor()
}

/// Options and settings as JSON text for JavaScript (plain structs: serializing one
/// cannot fail, "{}" is only a guard).
pub fn options_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

/// Appends `s` as a JSON string literal.
pub fn json_str(out: &mut String, s: &str) {
    // serde_json's escaping is correct for every code point; a string never fails.
    out.push_str(&serde_json::Value::String(s.to_string()).to_string());
}

pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGXCPU => "SIGXCPU",
        _ => return format!("SIG{sig}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::runnable_in_loadavg;

    #[test]
    fn reads_the_runnable_count_of_proc_loadavg() {
        assert_eq!(runnable_in_loadavg(b"0.62 0.57 0.25 2/150 1234\n"), Some(2));
        assert_eq!(runnable_in_loadavg(b"15.93 13.62 8.56 14/233 28862\n"), Some(14));
        assert_eq!(runnable_in_loadavg(b"0.62 0.57"), None);
        assert_eq!(runnable_in_loadavg(b"0.62 0.57 0.25 x/150 1"), None);
    }
}
