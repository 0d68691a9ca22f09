"""The worker's end of its channel to the pool: the IPC socket or the pair of FIFOs.

IPC: a stream socket whose descriptor number is in ``NODE_CHANNEL_FD`` (the pool puts
it at 3); every message is one line of JSON. FIFO: the pipe paths are in
``WORKER_FIFO_IN`` / ``WORKER_FIFO_OUT``; every message is a frame: a 4-byte big-endian
length, then that many bytes of UTF-8 JSON. See docs/PROTOCOL.md.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, List, Mapping, Optional

# Bytes asked for per read: the default capacity of a Linux pipe.
READ_CHUNK = 64 * 1024
# Largest frame either way when WORKER_FIFO_MAX_FRAME_BYTES is not set (the pool's
# default maxMessageBytes).
DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024
_HEADER = 4
# Variables that name this worker's channel: removed from os.environ once it is open,
# so processes a handler starts do not take the pool's channel for their own.
CHANNEL_VARS = (
    "NODE_CHANNEL_FD",
    "NODE_CHANNEL_SERIALIZATION_MODE",
    "WORKER_TRANSPORT",
    "WORKER_FIFO_IN",
    "WORKER_FIFO_OUT",
    "WORKER_FIFO_MAX_FRAME_BYTES",
)


class ChannelError(RuntimeError):
    """The worker was not started by a pool, or its channel cannot be opened."""


class Channel:
    """Reads raw messages, writes encoded ones. Writes are whole and in order (a
    lock); reads are done by one thread at a time (the caller's ``read_lock``)."""

    kind = ""

    def __init__(self, rfd: int, wfd: int, max_frame: Optional[int]) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self.max_frame = max_frame
        self.read_lock = threading.Lock()
        self._write_lock = threading.Lock()

    def read(self) -> Optional[bytes]:
        """Blocks for the next bytes; None at end of file (the pool is gone)."""
        try:
            data = os.read(self.rfd, READ_CHUNK)
        except InterruptedError:  # pragma: no cover - PEP 475 retries reads
            return b""
        except OSError:
            return None
        return data if data else None

    def write(self, data: bytes) -> bool:
        """Writes all of data; False when the pool's end is gone."""
        view = memoryview(data)
        with self._write_lock:
            try:
                while view:
                    n = os.write(self.wfd, view)
                    view = view[n:]
            except OSError:
                return False
        return True

    def split(self, data: bytes, on_message: Callable[[str], None], on_bad: Callable[[str], None]) -> None:
        raise NotImplementedError

    def encode(self, text: str) -> bytes:
        raise NotImplementedError


class IpcChannel(Channel):
    """Newline-delimited JSON on the socket the pool passed (Node's IPC framing)."""

    kind = "ipc"

    def __init__(self, fd: int) -> None:
        super().__init__(fd, fd, None)
        self._parts: List[bytes] = []

    def split(self, data: bytes, on_message: Callable[[str], None], on_bad: Callable[[str], None]) -> None:
        nl = data.rfind(b"\n")
        if nl < 0:
            # No line ends here: keep the pieces, join them once the line is whole
            # (a large message arrives in many reads).
            self._parts.append(data)
            return
        if self._parts:
            self._parts.append(data)
            data = b"".join(self._parts)
            self._parts = []
            nl = data.rfind(b"\n")
        if nl + 1 < len(data):
            self._parts.append(data[nl + 1 :])
        try:
            text = data[:nl].decode("utf-8")
        except UnicodeDecodeError as err:
            on_bad(f"a message from the pool is not UTF-8 ({err}); ignored")
            text = data[:nl].decode("utf-8", "replace")
        for line in text.split("\n"):
            if line:
                on_message(line)

    def encode(self, text: str) -> bytes:
        return (text + "\n").encode("utf-8")


class FifoChannel(Channel):
    """Length-prefixed frames on two named pipes, both opened read-write so that
    neither end ever sees end of file (the parent's death is watched instead)."""

    kind = "fifo"

    def __init__(self, in_path: str, out_path: str, max_frame: int) -> None:
        rfd = os.open(in_path, os.O_RDWR | os.O_CLOEXEC)
        try:
            wfd = os.open(out_path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            os.close(rfd)
            raise
        super().__init__(rfd, wfd, max_frame)
        self._buf = bytearray()
        self._skip = 0

    def split(self, data: bytes, on_message: Callable[[str], None], on_bad: Callable[[str], None]) -> None:
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        max_frame = self.max_frame or DEFAULT_MAX_FRAME_BYTES
        while True:
            if self._skip:
                n = min(self._skip, end - pos)
                pos += n
                self._skip -= n
                if self._skip:
                    break
            if end - pos < _HEADER:
                break
            length = int.from_bytes(buf[pos : pos + _HEADER], "big")
            if length > max_frame:
                on_bad(f"a frame of {length} bytes from the pool exceeds {max_frame}; skipped")
                pos += _HEADER
                self._skip = length
                continue
            if end - pos - _HEADER < length:
                break
            payload = bytes(buf[pos + _HEADER : pos + _HEADER + length])
            pos += _HEADER + length
            try:
                on_message(payload.decode("utf-8"))
            except UnicodeDecodeError as err:
                on_bad(f"a frame from the pool is not UTF-8 ({err}); skipped")
        del buf[:pos]

    def encode(self, text: str) -> bytes:
        body = text.encode("utf-8")
        if self.max_frame is not None and len(body) > self.max_frame:
            raise ValueError(f"message of {len(body)} bytes exceeds the largest frame ({self.max_frame} bytes)")
        return len(body).to_bytes(_HEADER, "big") + body


def open_channel(env: Mapping[str, str]) -> Channel:
    """The channel the pool gave this process, from its environment."""
    kind = env.get("WORKER_TRANSPORT") or "ipc"
    if kind == "fifo":
        in_path = env.get("WORKER_FIFO_IN")
        out_path = env.get("WORKER_FIFO_OUT")
        if not in_path or not out_path:
            raise ChannelError("WORKER_TRANSPORT is fifo but WORKER_FIFO_IN / WORKER_FIFO_OUT are not set")
        text = env.get("WORKER_FIFO_MAX_FRAME_BYTES")
        max_frame = DEFAULT_MAX_FRAME_BYTES
        if text:
            if not text.isdigit() or not 1 <= int(text) <= 0xFFFFFFFF:
                raise ChannelError(f"WORKER_FIFO_MAX_FRAME_BYTES must be a whole number in [1, 4294967295], got {text!r}")
            max_frame = int(text)
        try:
            return FifoChannel(in_path, out_path, max_frame)
        except OSError as err:
            raise ChannelError(f"cannot open the FIFOs (in: {in_path}, out: {out_path}): {err}") from err
    if kind != "ipc":
        raise ChannelError(f'WORKER_TRANSPORT must be "ipc" or "fifo", got {kind!r}')
    text = env.get("NODE_CHANNEL_FD")
    if text is None or not text.isdigit():
        raise ChannelError(
            "no channel to a pool: a worker must be started by cortex-worker-pool "
            "(workerCommand), which passes its channel in NODE_CHANNEL_FD or the FIFO variables"
        )
    fd = int(text)
    try:
        os.fstat(fd)
    except OSError as err:
        raise ChannelError(f"NODE_CHANNEL_FD names descriptor {fd}, which is not open: {err}") from err
    # Processes a handler starts must not hold the channel open: the pool notices a
    # worker's end of the channel closing.
    os.set_inheritable(fd, False)
    return IpcChannel(fd)
