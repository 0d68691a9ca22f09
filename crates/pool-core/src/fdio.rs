//! Socket I/O registered only for what it waits on.
//!
//! A tokio `UnixStream` registers for readable *and* writable events, so every time a
//! worker reads what we wrote, the kernel reports "writable" and the core thread wakes
//! for nothing (seen with strace on every round trip). Here the read side is registered
//! for readability only, and writes are plain non-blocking writes that register for
//! writability only while a backlog waits.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWriteExt, Interest, ReadBuf};

pub struct ReadHalf(AsyncFd<UnixStream>);

impl ReadHalf {
    /// `sock` must be non-blocking.
    pub fn new(sock: UnixStream) -> io::Result<Self> {
        // SAFETY: the AsyncFd owns `sock`, so the descriptor stays open and the same.
        Ok(ReadHalf(unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE)? }))
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            // SAFETY: read(2) only writes into the buffer; the bytes it reports are
            // then initialized.
            let dst = unsafe { &mut *(buf.unfilled_mut() as *mut [MaybeUninit<u8>] as *mut [u8]) };
            match guard.try_io(|inner| inner.get_ref().read(dst)) {
                Ok(Ok(n)) => {
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
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
