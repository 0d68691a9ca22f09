"""The worker: handlers, the task loop, replies, heartbeats and the way out.

Threads. The main thread (the one that calls ``run()``) reads the channel, runs the
tasks one at a time in arrival order and writes the replies; coroutine handlers run
on its asyncio loop. A daemon "watch" thread sends heartbeats every
``heartbeatInterval`` (so a handler that holds the CPU is not taken for a zombie),
notices that the pool is gone, and, while a handler has been running for a while,
reads the channel in its place, so that ``cancel-task`` reaches a running task (it
sets ``task.cancelled`` and cancels a coroutine). Which thread reads is settled by the
channel's read lock: the main thread holds it while it waits for input, the watch
thread takes it only while the main thread is inside a handler. Either way messages
go, in order, to one inbox the main thread works through.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import json
import os
import select
import sys
import threading
import time
import traceback
from typing import Any, Awaitable, Callable, Deque, Dict, List, Mapping, Optional, Tuple, TypeVar, Union

from ._channel import CHANNEL_VARS, Channel, ChannelError, open_channel

__all__ = ["Worker", "Task", "TaskError", "Logger"]

FEATURES = ("batch", "cancel")
# How often the watch thread wakes (s): a cancel-task reaches a running handler within
# about two of these, and a FIFO worker notices a dead pool within PARENT_CHECK_S.
WATCH_TICK_S = 0.05
PARENT_CHECK_S = 1.0
# Batched results wait at most this long (s) for the tasks after them (as the Node
# runtime's OUTBOX_MAX_AGE_MS).
OUTBOX_MAX_AGE_S = 0.001
# Least time (s) between two high-memory-warning messages.
HIGH_MEMORY_WARNING_INTERVAL_S = 10.0
DEFAULT_HEARTBEAT_MS = 5000
DEFAULT_MEMORY_THRESHOLD_MB = 512
BYTES_PER_MB = 1024 * 1024
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_LOG_LEVELS = {"error": "error", "warning": "warning", "warn": "warning", "info": "info", "debug": "debug"}

Handler = Callable[[Any, "Task"], Any]
F = TypeVar("F", bound=Callable[..., Any])

# NaN and Infinity are not JSON (the pool would take the line for a protocol error).
# No circular check: it costs about a seventh of encoding a small result, and a circular
# result still fails its task (RecursionError).
_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":"), check_circular=False).encode
_decode = json.JSONDecoder().decode
_perf = time.perf_counter
_SHUTDOWN = object()
# Creating a threading.Event costs more than a no-op task: a task's `cancelled` event
# is made on first use, under this lock (the watch thread may be cancelling it then).
_EVENT_LOCK = threading.Lock()


class TaskError(Exception):
    """Fails the task's attempt with this message and, if given, this code (the pool's
    error is ERR_TASK_FAILED with ``handlerCode`` set to it)."""

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Task:
    """What a handler is told about its task."""

    __slots__ = ("id", "type", "timeout", "_event", "_reason")

    def __init__(self, task_id: Union[str, int, float], task_type: str, timeout: Optional[float]) -> None:
        self.id = task_id
        self.type = task_type
        #: The attempt's timeout in ms (the pool enforces it).
        self.timeout = timeout
        self._event: Optional[threading.Event] = None
        self._reason: Optional[str] = None

    @property
    def cancelled(self) -> threading.Event:
        """Set when the pool cancels the task (its timeout passed, or its AbortSignal
        fired): a long synchronous handler may poll it and stop early."""
        ev = self._event
        if ev is None:
            with _EVENT_LOCK:
                ev = self._event
                if ev is None:
                    ev = threading.Event()
                    if self._reason is not None:
                        ev.set()
                    self._event = ev
        return ev

    @property
    def cancel_reason(self) -> Optional[str]:
        """``"timeout"`` or ``"cancelled"`` once cancelled, else None."""
        return self._reason

    def _cancel(self, reason: str) -> None:
        with _EVENT_LOCK:
            if self._reason is None:
                self._reason = reason
            ev = self._event
        if ev is not None:
            ev.set()

    def __repr__(self) -> str:
        return f"Task(id={self.id!r}, type={self.type!r}, timeout={self.timeout!r})"


class Logger:
    """``worker.log``: messages the pool forwards as its ``worker-log`` events (and
    prints, per its logWorker* options)."""

    def __init__(self, worker: "Worker") -> None:
        self._worker = worker

    def error(self, message: str, **extra: Any) -> None:
        self._worker._log("error", message, extra)

    def warning(self, message: str, **extra: Any) -> None:
        self._worker._log("warning", message, extra)

    warn = warning

    def info(self, message: str, **extra: Any) -> None:
        self._worker._log("info", message, extra)

    def debug(self, message: str, **extra: Any) -> None:
        self._worker._log("debug", message, extra)


def _error_body(message: str, code: Optional[str], name: str, stack: Optional[str]) -> Dict[str, Any]:
    body: Dict[str, Any] = {"message": message, "name": name, "code": code if code is not None else "ERR_TASK_FAILED"}
    if stack:
        body["stack"] = stack
    return body


def _exception_body(exc: BaseException) -> Dict[str, Any]:
    name = type(exc).__name__
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, TaskError):
        return _error_body(str(exc.message), exc.code if isinstance(exc.code, str) else None, name, stack)
    message = str(exc) or name
    return _error_body(message, None, name, stack)


def _abort_body(task_id: Any, reason: str) -> Dict[str, Any]:
    return _error_body(f"Task {task_id} was cancelled ({reason})", "ABORT_ERR", "AbortError", None)


def _memory() -> Tuple[int, int]:
    """(resident bytes, resident bytes not backed by files) of this process, from
    /proc/self/statm; (0, 0) where there is no /proc."""
    try:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
        rss = int(fields[1]) * _PAGE_SIZE
        shared = int(fields[2]) * _PAGE_SIZE
        return rss, max(rss - shared, 0)
    except (OSError, IndexError, ValueError):
        return 0, 0


def _read_config(text: Optional[str]) -> Dict[str, Any]:
    if not text:
        return {}
    try:
        cfg = json.loads(text)
    except ValueError as err:
        raise ValueError(f"WORKER_CONFIG is not JSON: {err}") from err
    if not isinstance(cfg, dict):
        raise ValueError(f"WORKER_CONFIG must be a JSON object, got {text!r}")
    return cfg


def _valid_id(task_id: Any) -> bool:
    t = type(task_id)
    return (t is str and task_id != "") or ((t is int or t is float) and task_id == task_id)


class Worker:
    """A worker process of the pool. Register handlers, then ``run()``.

    Reads ``WORKER_ID``, ``WORKER_CONFIG`` (heartbeatInterval, memoryThresholdMB,
    capabilities) and the transport variables from ``env`` (``os.environ``)."""

    def __init__(self, env: Optional[Mapping[str, str]] = None) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env
        cfg = _read_config(self._env.get("WORKER_CONFIG"))
        self.id: str = self._env.get("WORKER_ID") or f"worker-{os.getpid()}"
        hb = cfg.get("heartbeatInterval", DEFAULT_HEARTBEAT_MS)
        self.heartbeat_interval: float = hb if isinstance(hb, (int, float)) and hb > 0 else DEFAULT_HEARTBEAT_MS
        mem = cfg.get("memoryThresholdMB", DEFAULT_MEMORY_THRESHOLD_MB)
        self.memory_threshold_mb: float = mem if isinstance(mem, (int, float)) and mem > 0 else DEFAULT_MEMORY_THRESHOLD_MB
        caps = cfg.get("capabilities", [])
        self.capabilities: List[str] = [c for c in caps if isinstance(c, str)] if isinstance(caps, list) else []
        self.log = Logger(self)
        self.tasks_executed = 0
        self._handlers: Dict[str, Tuple[Callable[..., Any], bool]] = {}
        self._channel: Optional[Channel] = None
        self._id_json = _encode(self.id)
        self._inbox: Deque[Any] = collections.deque()
        # Ids of tasks cancelled before they started (cleared whenever the inbox is
        # empty: a leftover id is one already answered).
        self._cancelled: Dict[Any, str] = {}
        self._outbox: List[Dict[str, Any]] = []
        self._outbox_since = 0.0
        self._current: Optional[Task] = None
        self._atask: Optional["asyncio.Future[Any]"] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._started = 0.0
        self._closing = False
        self._exiting = threading.Lock()
        self._last_memory_warning = -HIGH_MEMORY_WARNING_INTERVAL_S
        # The pool's process, taken as early as possible: once this changes, the pool
        # is gone (we were reparented).
        self._parent = os.getppid()

    # ----------------------------------------------------------------- handlers

    def handler(self, task_type: str) -> Callable[[F], F]:
        """Decorator: ``@worker.handler("type")`` registers ``fn(payload, task)`` for
        tasks of that type. Coroutine functions run on the worker's asyncio loop."""
        if not isinstance(task_type, str) or not task_type:
            raise TypeError(f"handler: the task type must be a non-empty string, got {task_type!r}")

        def register(fn: F) -> F:
            if not callable(fn):
                raise TypeError(f'handler for "{task_type}" must be callable, got {fn!r}')
            self._handlers[task_type] = (fn, inspect.iscoroutinefunction(fn))
            return fn

        return register

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> None:
        """Serves the pool until it says shutdown (then returns, after the last reply
        is written). Exits the process when the pool is gone."""
        if self._channel is not None:
            raise RuntimeError("run() was already called")
        try:
            self._channel = open_channel(self._env)
        except ChannelError as err:
            sys.stderr.write(f"cortex_worker: {self.id}: {err}\n")
            sys.stderr.flush()
            raise SystemExit(1) from None
        if self._env is os.environ:
            for name in CHANNEL_VARS:
                os.environ.pop(name, None)
        self._started = time.time()
        self._send(
            {
                "type": "worker-ready",
                "workerId": self.id,
                "pid": os.getpid(),
                "timestamp": int(self._started * 1000),
                "capabilities": self.capabilities,
                "features": list(FEATURES),
                "runtime": f"python {sys.version.split()[0]}",
            }
        )
        watch = threading.Thread(target=self._watch, name="cortex-worker-watch", daemon=True)
        watch.start()
        try:
            self._serve()
        finally:
            self._closing = True
            if self._loop is not None:
                self._loop.close()

    def _serve(self) -> None:
        inbox = self._inbox
        popleft = inbox.popleft
        channel = self._channel
        assert channel is not None
        read_lock = channel.read_lock
        run_task = self._run_task
        while True:
            while inbox:
                item = popleft()
                if item is _SHUTDOWN:
                    self._graceful_exit()
                    return
                run_task(item[0], item[1])
            if self._outbox:
                self._flush()
            with read_lock:
                # The watch thread may have read while the last task ran.
                if inbox:
                    continue
                if self._cancelled:
                    self._cancelled.clear()
                data = channel.read()
                if data is None:
                    # The pool's end is closed: nobody is left to answer.
                    os._exit(0)
                channel.split(data, self._on_message, self._on_bad_input)

    # ------------------------------------------------------------ the messages

    def _on_message(self, line: str) -> None:
        try:
            msg = _decode(line)
        except ValueError as err:
            self._on_bad_input(f"a message from the pool is not JSON ({err}); ignored")
            return
        if type(msg) is not dict:
            return
        kind = msg.get("type")
        if kind == "execute-batch":
            tasks = msg.get("tasks")
            if type(tasks) is not list:
                self._log("warning", "execute-batch without a tasks array ignored", None)
                return
            self._inbox.extend(zip(tasks, itertools.repeat(True)))
        elif kind == "execute-task":
            self._inbox.append((msg.get("task"), False))
        elif kind == "cancel-task":
            self._cancel(msg.get("taskId"), msg.get("reason"))
        elif kind == "shutdown":
            if msg.get("graceful") is False:
                self._immediate_exit()
            else:
                self._inbox.append(_SHUTDOWN)
        elif kind == "health-check":
            self._send(self._health_status())
        elif kind == "get-metrics":
            self._send(self._metrics())
        # Anything else is ignored, so a newer pool can talk to this worker.

    def _on_bad_input(self, problem: str) -> None:
        self._log("warning", f"Ignored input: {problem}", None)

    def _cancel(self, task_id: Any, reason: Any) -> None:
        if not _valid_id(task_id):
            return
        why = reason if isinstance(reason, str) and reason else "cancelled"
        current = self._current
        if current is not None and current.id == task_id:
            current._cancel(why)
            atask = self._atask
            loop = self._loop
            if atask is not None and loop is not None:
                try:
                    loop.call_soon_threadsafe(atask.cancel)
                except RuntimeError:
                    pass  # the loop was closed: run() is returning
            return
        # Not running: it may wait in the inbox (it is answered when its turn comes).
        self._cancelled[task_id] = why

    # --------------------------------------------------------------- the tasks

    def _run_task(self, raw: Any, batch: bool) -> None:
        task_id: Any = raw.get("id") if type(raw) is dict else None
        if not _valid_id(task_id):
            self._log("warning", "Task without a valid id ignored", None)
            return
        start = _perf()
        # Results wait for the tasks behind them to share one message, but not for
        # long: a slow task must not hold back replies that are ready.
        if self._outbox and start - self._outbox_since > OUTBOX_MAX_AGE_S:
            self._flush()
        if self._cancelled:
            reason = self._cancelled.pop(task_id, None)
            if reason is not None:
                self._fail(task_id, batch, _abort_body(task_id, reason), 0.0)
                return
        task_type = raw.get("type")
        entry = self._handlers.get(task_type) if type(task_type) is str else None
        if entry is None:
            self.tasks_executed += 1
            body = _error_body(f"No handler registered for task type: {task_type}", "ERR_NO_HANDLER", "Error", None)
            self._fail(task_id, batch, body, (_perf() - start) * 1000.0)
            return
        fn, is_async = entry
        task = Task(task_id, task_type, raw.get("timeout"))
        self._current = task
        ok = True
        try:
            result = fn(raw.get("payload"), task)
            if is_async or getattr(type(result), "__await__", None) is not None:
                result = self._await(result, task)
        except asyncio.CancelledError:
            ok = False
            result = _error_body(f"Task {task_id} was cancelled", "ERR_TASK_FAILED", "CancelledError", None)
        except Exception as exc:  # noqa: BLE001 - every handler failure is the task's
            ok = False
            result = _exception_body(exc)
        self._current = None
        self.tasks_executed += 1
        duration = (_perf() - start) * 1000.0
        reason = task._reason
        if reason is not None:
            self._fail(task_id, batch, _abort_body(task_id, reason), duration)
        elif ok:
            if batch:
                outbox = self._outbox
                if not outbox:
                    self._outbox_since = start
                outbox.append({"taskId": task_id, "ok": True, "result": result, "duration": duration})
            else:
                self._complete(task_id, result, duration)
        else:
            self._fail(task_id, batch, result, duration)

    def _await(self, awaitable: Awaitable[Any], task: Task) -> Any:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.new_event_loop()
        atask = asyncio.ensure_future(awaitable, loop=loop)
        self._atask = atask
        # A cancel that came before _atask was set (the watch thread sets the reason
        # first, then looks at _atask).
        if task._reason is not None:
            atask.cancel()
        try:
            return loop.run_until_complete(atask)
        finally:
            self._atask = None

    # ----------------------------------------------------------------- replies

    def _complete(self, task_id: Any, result: Any, duration: float) -> None:
        if self._outbox:
            self._flush()
        msg = {"type": "task-complete", "taskId": task_id, "workerId": self.id, "result": result, "duration": duration}
        try:
            data = self._encode_message(msg)
        except (TypeError, ValueError, OverflowError, RecursionError) as err:
            self._fail(task_id, False, _unsendable(err), duration)
            return
        self._write(data)

    def _fail(self, task_id: Any, batch: bool, error: Dict[str, Any], duration: float) -> None:
        if batch:
            if not self._outbox:
                self._outbox_since = _perf()
            self._outbox.append({"taskId": task_id, "ok": False, "error": error, "duration": duration})
            return
        if self._outbox:
            self._flush()
        self._send({"type": "task-failed", "taskId": task_id, "workerId": self.id, "error": error, "duration": duration})

    def _flush(self) -> None:
        results = self._outbox
        if not results:
            return
        self._outbox = []
        channel = self._channel
        assert channel is not None
        try:
            data = channel.encode('{"type":"task-results","workerId":%s,"results":%s}' % (self._id_json, _encode(results)))
        except (TypeError, ValueError, OverflowError, RecursionError):
            # Some result cannot be sent (not JSON, or too large together): send them
            # one by one, each failure in place of its result.
            for entry in results:
                self._send_results([entry])
            return
        self._write(data)

    def _send_results(self, results: List[Dict[str, Any]]) -> None:
        msg = {"type": "task-results", "workerId": self.id, "results": results}
        try:
            data = self._encode_message(msg)
        except (TypeError, ValueError, OverflowError, RecursionError) as err:
            entry = results[0]
            msg["results"] = [{"taskId": entry["taskId"], "ok": False, "error": _unsendable(err), "duration": entry["duration"]}]
            data = self._encode_message(msg)
        self._write(data)

    def _encode_message(self, msg: Dict[str, Any]) -> bytes:
        channel = self._channel
        assert channel is not None
        return channel.encode(_encode(msg))

    def _send(self, msg: Dict[str, Any]) -> None:
        """Sends a message of the runtime's own (always encodable)."""
        if self._channel is None:
            return
        try:
            data = self._encode_message(msg)
        except (TypeError, ValueError, OverflowError, RecursionError) as err:
            sys.stderr.write(f"cortex_worker: {self.id}: could not send a {msg.get('type')} message: {err}\n")
            return
        self._write(data)

    def _write(self, data: bytes) -> None:
        channel = self._channel
        if channel is not None and not channel.write(data):
            # The pool's end is gone: nobody is left to answer.
            os._exit(0)

    # ------------------------------------------------------------ what it says

    def _log(self, level: str, message: Any, extra: Optional[Dict[str, Any]]) -> None:
        msg: Dict[str, Any] = {}
        if extra:
            msg.update(extra)
        msg.update(
            {
                "type": "worker-log",
                "level": _LOG_LEVELS.get(level, "info"),
                "workerId": self.id,
                "pid": os.getpid(),
                "message": str(message),
                "timestamp": int(time.time() * 1000),
            }
        )
        if self._channel is None:
            # Not started yet: nobody to tell but stderr.
            sys.stderr.write(f"cortex_worker: {self.id}: [{level}] {message}\n")
            return
        try:
            data = self._encode_message(msg)
        except (TypeError, ValueError, OverflowError, RecursionError):
            if not extra:
                return
            # Extra fields JSON cannot carry: the message alone.
            data = self._encode_message({k: v for k, v in msg.items() if k not in extra})
        self._write(data)

    def _heartbeat(self) -> None:
        rss, anon = _memory()
        current = self._current
        self._send(
            {
                "type": "heartbeat",
                "workerId": self.id,
                "pid": os.getpid(),
                "state": "busy" if current is not None else ("shutting-down" if self._closing else "ready"),
                "tasksExecuted": self.tasks_executed,
                "uptime": int((time.time() - self._started) * 1000),
                # Python has no heap figures of V8's kind: heapUsed is the resident
                # memory not backed by files (what the interpreter allocated), heapTotal
                # the whole resident set.
                "memoryUsage": {"heapUsed": anon, "heapTotal": rss, "rss": rss, "external": 0},
                "currentTask": current.id if current is not None else None,
                "timestamp": int(time.time() * 1000),
            }
        )
        if rss > self.memory_threshold_mb * BYTES_PER_MB:
            now = time.monotonic()
            if now - self._last_memory_warning >= HIGH_MEMORY_WARNING_INTERVAL_S:
                self._last_memory_warning = now
                self._send(
                    {
                        "type": "high-memory-warning",
                        "workerId": self.id,
                        "memoryMB": round(rss / BYTES_PER_MB),
                        "threshold": self.memory_threshold_mb,
                    }
                )

    def _health_status(self) -> Dict[str, Any]:
        rss, _ = _memory()
        return {
            "type": "health-status",
            "workerId": self.id,
            "pid": os.getpid(),
            "state": "busy" if self._current is not None else "ready",
            "healthy": not self._closing and rss < self.memory_threshold_mb * BYTES_PER_MB,
            "memoryMB": round(rss / BYTES_PER_MB),
            "tasksExecuted": self.tasks_executed,
            "uptime": int((time.time() - self._started) * 1000),
            "timestamp": int(time.time() * 1000),
        }

    def _metrics(self) -> Dict[str, Any]:
        rss, anon = _memory()
        times = os.times()
        return {
            "type": "worker-metrics",
            "metrics": {
                "workerId": self.id,
                "pid": os.getpid(),
                "tasksExecuted": self.tasks_executed,
                "uptime": int((time.time() - self._started) * 1000),
                "memory": {"rss": rss, "heapUsed": anon},
                "cpu": {"user": int(times.user * 1e6), "system": int(times.system * 1e6)},
                "loadAverage": list(os.getloadavg()),
            },
            "timestamp": int(time.time() * 1000),
        }

    # -------------------------------------------------------- the watch thread

    def _watch(self) -> None:
        channel = self._channel
        assert channel is not None
        parent = self._parent
        beat_every = self.heartbeat_interval / 1000.0
        next_beat = time.monotonic() + beat_every
        next_parent_check = time.monotonic() + PARENT_CHECK_S
        tick = min(WATCH_TICK_S, beat_every)
        seen: Optional[Task] = None
        poller = select.poll()
        poller.register(channel.rfd, select.POLLIN)
        while not self._closing:
            time.sleep(tick)
            now = time.monotonic()
            if now >= next_parent_check:
                next_parent_check = now + PARENT_CHECK_S
                # Reparented: the pool's process is gone (the FIFOs never report
                # end of file; over IPC this backs up the end of file).
                if os.getppid() != parent:
                    os._exit(0)
            current = self._current
            # The same task as a tick ago: it has run for a while, so read for it.
            if current is not None and current is seen:
                self._read_for(current, poller)
            seen = current
            if now >= next_beat and not self._closing:
                next_beat = now + beat_every
                self._heartbeat()

    def _read_for(self, current: Task, poller: "select.poll") -> None:
        channel = self._channel
        assert channel is not None
        if not channel.read_lock.acquire(blocking=False):
            return
        try:
            while self._current is current and poller.poll(0):
                data = channel.read()
                if data is None:
                    os._exit(0)
                channel.split(data, self._on_message, self._on_bad_input)
        finally:
            channel.read_lock.release()

    # ---------------------------------------------------------------- the end

    def _graceful_exit(self) -> None:
        """shutdown {graceful: true}: everything before it is answered; what came
        after it is refused; then goodbye."""
        while self._inbox:
            item = self._inbox.popleft()
            if item is not _SHUTDOWN and type(item[0]) is dict and _valid_id(item[0].get("id")):
                body = _error_body(f"Worker {self.id} is shutting down", "ERR_WORKER_SHUTTING_DOWN", "Error", None)
                self._fail(item[0]["id"], item[1], body, 0.0)
        self._flush()
        self._closing = True
        self._send(self._goodbye())

    def _immediate_exit(self) -> None:
        """shutdown {graceful: false}: fail what is outstanding, say goodbye, exit 0
        now (from whichever thread read it)."""
        if not self._exiting.acquire(blocking=False):
            return
        self._closing = True
        body = _error_body(f"Worker {self.id} shut down before the task finished", "ERR_WORKER_SHUTDOWN", "Error", None)
        results: List[Dict[str, Any]] = []
        current = self._current
        if current is not None:
            reason = current._reason
            results.append(
                {"taskId": current.id, "ok": False, "error": _abort_body(current.id, reason) if reason else body, "duration": 0}
            )
        for item in list(self._inbox):
            if item is not _SHUTDOWN and type(item[0]) is dict and _valid_id(item[0].get("id")):
                results.append({"taskId": item[0]["id"], "ok": False, "error": body, "duration": 0})
        if results:
            # task-results settles tasks sent either way (execute-task or -batch).
            self._send({"type": "task-results", "workerId": self.id, "results": results})
        self._send(self._goodbye())
        os._exit(0)

    def _goodbye(self) -> Dict[str, Any]:
        return {
            "type": "worker-shutdown",
            "workerId": self.id,
            "tasksExecuted": self.tasks_executed,
            "uptime": int((time.time() - self._started) * 1000),
            "timestamp": int(time.time() * 1000),
        }


def _unsendable(err: BaseException) -> Dict[str, Any]:
    return _error_body(f"Task result could not be sent: {err}", "ERR_RESULT_NOT_SERIALIZABLE", "Error", None)
