//! Socket I/O registered only for what it waits on.
//!
//! A tokio `UnixStream` registers for readable *and* writable events, so every time a
//! worker reads what we wrote, the kernel reports "writable" and the core thread wakes
//! for nothing (seen with strace on every round trip). Here the read side is registered
//! for readability only (and may be shared with a reader on another thread, see
//! `Channel`), and writes are plain non-blocking writes that register for
//! writability only while a backlog waits.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::sync::Notify;

/// A worker's reading end. The core's reader task reads it when tokio reports it
/// readable; an embedder may also read it on its own thread (the binding does, on
/// the JS thread, so a reply needs no thread hop). Whoever is woken first reads:
/// the buffer is behind a mutex, so messages are handled in order either way.
pub struct Channel {
    pub num: u64,
    fd: OwnedFd,
    pub(crate) max_line: usize,
    pub(crate) framed: bool,
    pub(crate) rs: Mutex<ReadState>,
    /// The thread that also polls this channel, while it does (see `attach_poller`).
    poller: OnceLock<Arc<PollerState>>,
    poller_attached: AtomicBool,
    /// The poller's thread was found stuck: the core's reader watches the channel
    /// again until that thread goes round its event loop.
    core_override: AtomicBool,
    /// The poller's loop count when the core last looked, and since when data has
    /// been waiting with that count unchanged.
    seen: Mutex<(u64, Option<Instant>)>,
    /// Wakes the core's reader when a poller attaches or detaches, or the override
    /// changes.
    pub(crate) mode: Notify,
}

pub(crate) struct ReadState {
    pub buf: Vec<u8>,
    /// How far a newline search got, so a long line is not rescanned on every read.
    pub scanned: usize,
    /// No more reads: EOF, an error, or a protocol error.
    pub done: bool,
}

/// What one read round found.
pub(crate) enum Filled {
    /// Read up to "would block": nothing more now.
    Drained,
    /// Stopped early (a short read or the per-round cap): there may be more.
    More,
    /// End of file or a read error.
    Ended,
}

/// Most bytes one read round takes from a channel before it yields (`More`), so one
/// chatty worker cannot keep the reader from the others.
const ROUND_CAP: usize = 4 * READ_CHUNK;
/// Bytes asked for per read(2): 64 KiB, the default capacity of a Linux pipe.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

impl Channel {
    /// `fd` must be non-blocking.
    pub(crate) fn new(num: u64, fd: OwnedFd, max_line: usize, framed: bool) -> Arc<Channel> {
        Arc::new(Channel {
            num,
            fd,
            max_line,
            framed,
            rs: Mutex::new(ReadState {
                buf: Vec::with_capacity(READ_CHUNK),
                scanned: 0,
                done: false,
            }),
            poller: OnceLock::new(),
            poller_attached: AtomicBool::new(false),
            core_override: AtomicBool::new(false),
            seen: Mutex::new((0, None)),
            mode: Notify::new(),
        })
    }

    /// Another thread now also reads this channel when it is readable (level-
    /// triggered, e.g. a libuv poll handle on the JS thread) and counts its loop
    /// iterations in `state`. From now on the core's reader stops watching the
    /// descriptor (so a reply wakes one thread, not two); the core reads it only when
    /// that thread has not gone round its loop for a while (`check_stalled`).
    pub fn attach_poller(&self, state: Arc<PollerState>) {
        let _ = self.poller.set(state);
        self.poller_attached.store(true, Ordering::Release);
        self.mode.notify_one();
    }

    /// The other thread stopped polling: the core's reader watches it again.
    pub fn detach_poller(&self) {
        self.poller_attached.store(false, Ordering::Release);
        self.mode.notify_one();
    }

    /// The poller's thread is back in its loop: the channel is its own again.
    pub fn release_override(&self) {
        self.set_core_override(false);
    }

    pub(crate) fn poller_attached(&self) -> bool {
        self.poller_attached.load(Ordering::Acquire)
    }

    /// Whether the core's reader leaves this channel to the poller now.
    pub(crate) fn left_to_poller(&self) -> bool {
        self.poller_attached() && !self.core_override.load(Ordering::Acquire)
    }

    /// Sets whether the core's reader watches the channel although a poller is attached.
    pub(crate) fn set_core_override(&self, on: bool) {
        if self.core_override.swap(on, Ordering::AcqRel) != on {
            self.mode.notify_one();
        }
    }

    /// Whether data (`readable`, from a `poll` of the descriptor) has been waiting for
    /// `after` while the poller's thread did not go round its loop: it is stuck in a
    /// long callback, or blocked. Then the core takes the channel over until the thread
    /// is back (`release_override`). A thread idle in its event loop is not stuck: it
    /// is woken by the data and moves on.
    pub(crate) fn check_stalled(&self, now: Instant, readable: bool, after: std::time::Duration) -> bool {
        let Some(p) = self.poller.get().filter(|_| self.poller_attached()) else {
            return false;
        };
        let iter = p.iterations.load(Ordering::Acquire);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.0 != iter || !readable {
            *seen = (iter, None);
            return false;
        }
        let since = *seen.1.get_or_insert(now);
        if now.duration_since(since) < after {
            return false;
        }
        drop(seen);
        // Override first: the poller's check phase releases its channels when it sees
        // `overridden`, so by then this one must already be overridden.
        self.set_core_override(true);
        p.overridden.store(true, Ordering::Release);
        true
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn is_done(&self) -> bool {
        self.rs.lock().unwrap_or_else(|e| e.into_inner()).done
    }

    /// Reads what is there into the buffer (the caller holds the read state).
    pub(crate) fn fill(&self, rs: &mut ReadState) -> Filled {
        let mut total = 0;
        loop {
            if rs.buf.capacity() - rs.buf.len() < READ_CHUNK / 4 {
                rs.buf.reserve(READ_CHUNK);
            }
            let spare = rs.buf.spare_capacity_mut();
            let room = spare.len();
            // SAFETY: read(2) writes at most `room` bytes into the spare capacity.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), spare.as_mut_ptr() as *mut libc::c_void, room) };
            if n > 0 {
                let n = n as usize;
                // SAFETY: the kernel initialized these `n` bytes.
                unsafe { rs.buf.set_len(rs.buf.len() + n) };
                total += n;
                if n < room || total >= ROUND_CAP {
                    return Filled::More;
                }
                continue;
            }
            if n == 0 {
                return Filled::Ended;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Filled::Drained,
                _ => return Filled::Ended,
            }
        }
    }
}

/// What the core knows of a thread that polls channels itself (one per JS thread).
#[derive(Default)]
pub struct PollerState {
    /// Incremented every time that thread goes round its event loop.
    pub iterations: AtomicU64,
    /// The core took over one of its channels (see `Channel::check_stalled`).
    pub overridden: AtomicBool,
}

/// The channel as tokio sees it (readability only).
pub(crate) struct ChannelFd(pub Arc<Channel>);

impl AsRawFd for ChannelFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.fd()
    }
}

pub(crate) fn register_readable(ch: Arc<Channel>) -> io::Result<AsyncFd<ChannelFd>> {
    // SAFETY: the descriptor is owned by the channel, which the AsyncFd keeps alive.
    unsafe { AsyncFd::register_with_interest(ChannelFd(ch), Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// Where a worker's writer task sends its backlog.
pub enum Sink {
    Socket(UnixStream),
    Fifo(tokio::net::unix::pipe::Sender),
}

impl Sink {
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Fifo(tx) => tx.write_all(data).await,
            Sink::Socket(sock) => {
                let mut off = 0;
                loop {
                    match (&*sock).write(&data[off..]) {
                        Ok(n) => {
                            off += n;
                            if off == data.len() {
                                return Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                // A backlog: wait for room, registered for writability only until done.
                // SAFETY: the AsyncFd owns the duplicate descriptor for its whole life.
                let afd = unsafe { AsyncFd::register_with_interest(sock.try_clone()?, Interest::WRITABLE)? };
                while off < data.len() {
                    let mut guard = afd.writable().await?;
                    match guard.try_io(|inner| inner.get_ref().write(&data[off..])) {
                        Ok(Ok(n)) => off += n,
                        Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        Ok(Err(e)) => return Err(e),
                        Err(_would_block) => {}
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair() -> (Arc<Channel>, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (Channel::new(7, OwnedFd::from(a), 1024, false), b)
    }

    #[test]
    fn fill_reads_what_is_there_then_reports_drained_and_eof() {
        let (ch, mut peer) = pair();
        let mut rs = ch.rs.lock().unwrap();
        assert!(matches!(ch.fill(&mut rs), Filled::Drained));
        peer.write_all(b"{\"a\":1}\n{\"b\":2}\n").unwrap();
        assert!(matches!(ch.fill(&mut rs), Filled::More)); // a short read
        assert_eq!(&rs.buf[..], b"{\"a\":1}\n{\"b\":2}\n");
        assert!(matches!(ch.fill(&mut rs), Filled::Drained));
        drop(peer);
        assert!(matches!(ch.fill(&mut rs), Filled::Ended));
    }

    #[test]
    fn a_poller_that_stops_going_round_its_loop_loses_the_channel_until_it_is_back() {
        let (ch, _peer) = pair();
        let t0 = Instant::now();
        let stall = Duration::from_millis(2);
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(!ch.check_stalled(t0, true, stall), "no poller: nothing to take over");
        let state = Arc::new(PollerState::default());
        ch.attach_poller(state.clone());
        assert!(ch.left_to_poller());
        assert!(!ch.check_stalled(ms(0), false, stall));
        assert!(
            !ch.check_stalled(ms(50), false, stall),
            "idle in its loop with nothing to read: not stuck"
        );
        assert!(!ch.check_stalled(ms(51), true, stall), "data just arrived");
        state.iterations.fetch_add(1, Ordering::Release);
        assert!(!ch.check_stalled(ms(52), true, stall), "it went round");
        assert!(!ch.check_stalled(ms(53), true, stall), "waiting 1 ms: not yet");
        assert!(ch.check_stalled(ms(55), true, stall), "data waiting 3 ms without a loop turn");
        assert!(!ch.left_to_poller());
        assert!(state.overridden.load(Ordering::Acquire));
        ch.release_override();
        assert!(ch.left_to_poller());
        ch.detach_poller();
        assert!(!ch.left_to_poller());
        assert!(!ch.check_stalled(t0 + Duration::from_secs(10), true, stall));
    }
}
