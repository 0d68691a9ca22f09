//! The bytes between the pool and a worker: the `Outbox` and the writer task that
//! drain what goes to a worker, the core's reader of a worker's channel, `Pool::pump`
//! (read a channel and handle its complete messages, called by the core's reader and
//! by the JS thread), and the splitting of a byte stream into messages
//! (newline-delimited JSON over IPC, length-prefixed frames over FIFOs).

use super::state::{KillReason, WorkerNo};
use super::Pool;
use crate::fdio::{Channel, Filled, READ_CHUNK};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// After its worker exited, a channel that stays silent this long is finished (a FIFO
/// never reports EOF: the pool holds it read-write).
const AFTER_EXIT_SILENCE: Duration = Duration::from_millis(50);
/// A read buffer grown past this many read chunks (by a large message) is given back
/// once it is nearly empty again.
const SHRINK_ABOVE_CHUNKS: usize = 4;

/// Bytes waiting for a worker's socket. Whoever pushes first tries a non-blocking
/// write straight to the socket (saving a thread hop on the submit path); what does
/// not fit goes to the buffer, which the worker's writer task drains.
pub(super) struct Outbox {
    pub(super) inner: Mutex<OutboxInner>,
    pub(super) notify: Notify,
    /// Wakes a writer blocked on a full pipe when the worker is gone.
    pub(super) close: Notify,
    pub(super) direct: Option<std::fs::File>,
    /// FIFO transport: each message goes out as a 4-byte big-endian length + JSON.
    pub(super) framed: bool,
}

#[derive(Default)]
pub(super) struct OutboxInner {
    pub(super) buf: Vec<u8>,
    pub(super) writing: bool,
    pub(super) closed: bool,
}

impl Outbox {
    /// An empty outbox; `direct` is the handle pushes may write to at once, `framed`
    /// whether messages go out as length-prefixed frames (FIFO transport).
    pub(super) fn new(direct: Option<std::fs::File>, framed: bool) -> Outbox {
        Outbox {
            inner: Mutex::new(OutboxInner::default()),
            notify: Notify::new(),
            close: Notify::new(),
            direct,
            framed,
        }
    }

    pub(super) fn push(&self, bytes: &[u8]) {
        if self.framed {
            let framed = frame_lines(bytes);
            return self.push_raw(&framed);
        }
        self.push_raw(bytes)
    }

    fn push_raw(&self, bytes: &[u8]) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.closed {
            return;
        }
        let mut rest = bytes;
        if !g.writing && g.buf.is_empty() {
            if let Some(sock) = &self.direct {
                match (&*sock).write(bytes) {
                    Ok(n) => rest = &bytes[n..],
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        // The worker is gone; its exit is handled by the waiter.
                        g.closed = true;
                        return;
                    }
                }
            }
        }
        if rest.is_empty() {
            return;
        }
        let was_empty = g.buf.is_empty();
        g.buf.extend_from_slice(rest);
        drop(g);
        if was_empty {
            self.notify.notify_one();
        }
    }
}

/// Re-encodes newline-delimited messages as length-prefixed frames.
pub(super) fn frame_lines(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        out.extend_from_slice(&(line.len() as u32).to_be_bytes());
        out.extend_from_slice(line);
    }
    out
}

/// Between a worker's exit waiter and its reader.
pub(super) struct ReaderEnds {
    pub(super) exited: tokio::sync::oneshot::Receiver<()>,
    pub(super) drained: tokio::sync::oneshot::Sender<()>,
}

/// What `Pool::pump` left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// The channel is empty for now.
    Drained,
    /// It stopped early; read again.
    More,
    /// The channel is finished (EOF, error, protocol error): stop polling it.
    Closed,
}

/// Finds the complete messages in `buf`: their byte ranges and how many bytes they
/// use. `scanned` remembers how far a newline search got, so a long line is not
/// rescanned on every read.
pub(super) fn split_messages(buf: &[u8], scanned: &mut usize, max: usize, framed: bool) -> Result<(Vec<(usize, usize)>, usize), String> {
    let too_long = || format!("a message longer than maxMessageBytes ({max} bytes)");
    let mut out = Vec::new();
    let mut pos = 0;
    if framed {
        while buf.len() - pos >= 4 {
            let len = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
            if len > max {
                return Err(too_long());
            }
            if buf.len() - pos - 4 < len {
                break;
            }
            out.push((pos + 4, pos + 4 + len));
            pos += 4 + len;
        }
        return Ok((out, pos));
    }
    let start = (*scanned).max(pos);
    match buf[start..].iter().rposition(|&b| b == b'\n') {
        None => {
            *scanned = buf.len();
            if buf.len() > max {
                return Err(too_long());
            }
            Ok((out, 0))
        }
        Some(i) => {
            let last_nl = start + i;
            for line in buf[..last_nl].split(|&b| b == b'\n') {
                let a = line.as_ptr() as usize - buf.as_ptr() as usize;
                if line.len() > max {
                    return Err(too_long());
                }
                if !line.is_empty() {
                    out.push((a, a + line.len()));
                }
            }
            if buf.len() - last_nl - 1 > max {
                return Err(too_long());
            }
            *scanned = last_nl + 1;
            Ok((out, last_nl + 1))
        }
    }
}

/// Drops the `consumed` bytes of handled messages from a read buffer, and gives
/// back the room a large message needed. `pump` calls it after every read, also when
/// the bytes held only empty lines: kept, a stream of bare newlines would grow the
/// buffer without bound and be split again on every read.
pub(super) fn after_split(buf: &mut Vec<u8>, scanned: &mut usize, consumed: usize) {
    buf.drain(..consumed);
    *scanned = scanned.saturating_sub(consumed);
    if buf.capacity() > SHRINK_ABOVE_CHUNKS * READ_CHUNK && buf.len() < READ_CHUNK {
        buf.shrink_to(READ_CHUNK);
    }
}

pub(super) async fn writer(out: Arc<Outbox>, mut wr: crate::fdio::Sink) {
    loop {
        let data = {
            let mut g = out.inner.lock().unwrap_or_else(|e| e.into_inner());
            if g.closed {
                break;
            }
            if g.buf.is_empty() {
                None
            } else {
                g.writing = true;
                Some(std::mem::take(&mut g.buf))
            }
        };
        let Some(data) = data else {
            if Arc::strong_count(&out) == 1 {
                break;
            }
            out.notify.notified().await;
            continue;
        };
        let ok = tokio::select! {
            r = wr.write_all(&data) => r.is_ok(),
            _ = out.close.notified() => false,
        };
        let mut g = out.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.writing = false;
        if !ok {
            g.closed = true;
            break;
        }
    }
}

impl Pool {
    pub(super) fn start_reader(&self, ch: Arc<Channel>, ends: ReaderEnds) {
        if let Some(w) = self.lock().roster.workers.get_mut(&WorkerNo(ch.num)) {
            w.chan = Some(ch.clone());
        }
        if !self.lock().core_reads {
            self.inner.sink.watch(self, ch.clone());
        }
        let p = self.clone();
        tokio::spawn(async move { p.reader(ch, ends).await });
    }

    /// The core's reader of a worker's channel. It reads whenever tokio reports the
    /// channel readable, unless another thread polls it (the JS thread, see
    /// `Channel::attach_poller`): then it does not watch the descriptor at all (so a
    /// reply wakes one thread, not two) and the timer loop reads it as a backstop
    /// while that thread is busy. After the worker exited it takes what is left; a
    /// FIFO never reports EOF (we hold it read-write), so a short silence ends that.
    pub(super) async fn reader(self, ch: Arc<Channel>, ends: ReaderEnds) {
        let ReaderEnds {
            exited: mut exited_rx,
            drained,
        } = ends;
        let mut exited = false;
        let mut afd = None;
        loop {
            if !exited && ch.left_to_poller() {
                afd = None;
                tokio::select! {
                    _ = ch.mode.notified() => {}
                    _ = &mut exited_rx => exited = true,
                }
                continue;
            }
            if afd.is_none() {
                match crate::fdio::register_readable(ch.clone()) {
                    Ok(a) => afd = Some(a),
                    Err(e) => {
                        // Unread, the worker would hold its tasks until they time out:
                        // replace it now (its tasks are retried).
                        self.with(|st| {
                            let id = st.roster.workers.get(&WorkerNo(ch.num)).map(|w| w.id.clone()).unwrap_or_default();
                            st.log(
                                "error",
                                &format!("Worker {id}: its channel could not be watched ({e}); it is replaced"),
                            );
                            st.kill(WorkerNo(ch.num), KillReason::Protocol);
                        });
                        break;
                    }
                }
            }
            let Some(a) = afd.as_ref() else { break };
            let ready = if exited {
                match tokio::time::timeout(AFTER_EXIT_SILENCE, a.readable()).await {
                    Ok(r) => r,
                    Err(_) => break,
                }
            } else {
                tokio::select! {
                    r = a.readable() => r,
                    _ = ch.mode.notified() => continue,
                    _ = &mut exited_rx => {
                        exited = true;
                        continue;
                    }
                }
            };
            let Ok(mut guard) = ready else { break };
            match self.pump(&ch) {
                Pumped::Drained => guard.clear_ready(),
                Pumped::More => {}
                Pumped::Closed => break,
            }
        }
        ch.rs.lock().unwrap_or_else(|e| e.into_inner()).done = true;
        drop(afd);
        self.inner.sink.channel_closed(&ch);
        let _ = drained.send(());
    }

    /// Reads what a worker's channel holds and handles every complete message:
    /// newline-delimited JSON (IPC) or length-prefixed frames (FIFO). A message over
    /// `maxMessageBytes`, or one that is not JSON, is a protocol error: the worker is
    /// killed and at most that many bytes are buffered. Called by the core's reader
    /// and by an embedder polling the channel on its own thread.
    pub fn pump(&self, ch: &Channel) -> Pumped {
        let mut rs = ch.rs.lock().unwrap_or_else(|e| e.into_inner());
        if rs.done {
            return Pumped::Closed;
        }
        let filled = ch.fill(&mut rs);
        let rs = &mut *rs;
        let mut scanned = rs.scanned;
        let split = split_messages(&rs.buf, &mut scanned, ch.max_line, ch.framed);
        rs.scanned = scanned;
        let (msgs, consumed) = match split {
            Ok(x) => x,
            Err(why) => {
                rs.done = true;
                self.with(|st| st.protocol_error(WorkerNo(ch.num), &why));
                return Pumped::Closed;
            }
        };
        if !msgs.is_empty() {
            let mut st = self.lock();
            let mut bad = None;
            for (a, b) in msgs {
                match std::str::from_utf8(&rs.buf[a..b]) {
                    Ok(text) => {
                        if let Err(why) = st.on_line(WorkerNo(ch.num), text) {
                            bad = Some(why);
                            break;
                        }
                    }
                    Err(_) => {
                        bad = Some("a message that is not UTF-8".into());
                        break;
                    }
                }
            }
            if let Some(why) = &bad {
                st.protocol_error(WorkerNo(ch.num), why);
            } else {
                st.dispatch();
            }
            self.after(st);
            if bad.is_some() {
                rs.done = true;
                return Pumped::Closed;
            }
        }
        after_split(&mut rs.buf, &mut rs.scanned, consumed);
        match filled {
            Filled::Drained => Pumped::Drained,
            Filled::More => Pumped::More,
            Filled::Ended => {
                rs.done = true;
                Pumped::Closed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_keeps_the_partial_one() {
        let buf = b"{\"a\":1}\n{\"b\":2}\n{\"c\"";
        let mut scanned = 0;
        let (msgs, used) = split_messages(buf, &mut scanned, 100, false).unwrap();
        let texts: Vec<&[u8]> = msgs.iter().map(|&(a, b)| &buf[a..b]).collect();
        assert_eq!(texts, vec![&b"{\"a\":1}"[..], &b"{\"b\":2}"[..]]);
        assert_eq!(used, 16);
    }

    #[test]
    fn a_line_over_the_limit_is_a_protocol_error_even_without_newline() {
        let buf = vec![b'x'; 200];
        let mut scanned = 0;
        assert!(split_messages(&buf, &mut scanned, 100, false).is_err());
        let mut buf = vec![b'x'; 150];
        buf.push(b'\n');
        let mut scanned = 0;
        assert!(split_messages(&buf, &mut scanned, 100, false).is_err());
    }

    #[test]
    fn bare_newlines_are_consumed_not_kept() {
        // A worker writing only empty lines: each round must leave the buffer empty.
        let mut buf = Vec::new();
        let mut scanned = 0;
        for _ in 0..1000 {
            buf.extend_from_slice(&[b'\n'; 64]);
            let (msgs, used) = split_messages(&buf, &mut scanned, 100, false).unwrap();
            assert!(msgs.is_empty());
            after_split(&mut buf, &mut scanned, used);
            assert!(buf.is_empty() && scanned == 0);
        }
    }

    #[test]
    fn frames_round_trip() {
        let framed = frame_lines(b"{\"a\":1}\n{\"bb\":22}\n");
        let mut scanned = 0;
        let (msgs, used) = split_messages(&framed[..framed.len() - 2], &mut scanned, 100, true).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(&framed[msgs[0].0..msgs[0].1], b"{\"a\":1}");
        assert_eq!(used, 4 + 7);
        let (msgs, _) = split_messages(&framed, &mut scanned, 100, true).unwrap();
        assert_eq!(msgs.len(), 2);
        let mut big = (1000u32).to_be_bytes().to_vec();
        big.extend_from_slice(&[b' '; 10]);
        assert!(split_messages(&big, &mut 0, 100, true).is_err());
    }
}
