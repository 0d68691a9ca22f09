"""The cortex_worker runtime on its own: real worker processes driven over a real
socketpair (the IPC transport) or real named pipes (FIFO), speaking the protocol of
docs/PROTOCOL.md the way the pool does.

Run: python3 -m unittest discover -s python/tests -t python
"""

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

from cortex_worker import Task, TaskError, Worker
from cortex_worker._channel import FifoChannel, IpcChannel, open_channel, ChannelError

PY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from cortex_worker import Worker, TaskError

    worker = Worker()

    @worker.handler("echo")
    def echo(payload, task):
        return payload

    @worker.handler("fail")
    def fail(payload, task):
        raise TaskError(payload["message"], code=payload.get("code"))

    @worker.handler("value-error")
    def value_error(payload, task):
        raise ValueError("not a number: " + repr(payload))

    @worker.handler("nan")
    def nan(payload, task):
        return float("nan")

    @worker.handler("set")
    def a_set(payload, task):
        return {1, 2}

    @worker.handler("spin")
    def spin(payload, task):
        end = time.monotonic() + payload
        while time.monotonic() < end:
            pass
        return "spun"

    @worker.handler("watch-cancel")
    def watch_cancel(payload, task):
        stopped = task.cancelled.wait(payload)
        return {"stopped": stopped, "reason": task.cancel_reason}

    @worker.handler("sleep")
    async def sleep(payload, task):
        await asyncio.sleep(payload)
        return "slept"

    @worker.handler("log")
    def log(payload, task):
        worker.log.info("hello", n=1)
        worker.log.error("bad", obj=object())
        return None

    worker.run()
    sys.stderr.write("run returned\\n")
    """
)


class Peer:
    """The pool's side of one worker process."""

    def __init__(self, test, config=None, transport="ipc", script=WORKER_SCRIPT):
        self.buf = b""
        self.fifo = None
        env = dict(os.environ)
        env.pop("NODE_CHANNEL_FD", None)
        env.update(
            PYTHONPATH=PY_ROOT,
            WORKER_ID="worker-7",
            WORKER_CONFIG=json.dumps(config or {"heartbeatInterval": 60000, "capabilities": ["py"]}),
        )
        pass_fds = ()
        if transport == "ipc":
            self.sock, child = socket.socketpair()
            env["NODE_CHANNEL_FD"] = str(child.fileno())
            pass_fds = (child.fileno(),)
            self.rfd = self.sock.fileno()
        else:
            d = tempfile.mkdtemp()
            test.addCleanup(shutil.rmtree, d, True)
            inp, out = os.path.join(d, "w-in.fifo"), os.path.join(d, "w-out.fifo")
            os.mkfifo(inp, 0o600)
            os.mkfifo(out, 0o600)
            # The pool's ends: it writes "in" and reads "out" (both read-write, as it does).
            self.fifo = FifoChannel(out, inp, 1 << 20)
            self.rfd = self.fifo.rfd
            env.update(WORKER_TRANSPORT="fifo", WORKER_FIFO_IN=inp, WORKER_FIFO_OUT=out, WORKER_FIFO_MAX_FRAME_BYTES=str(1 << 20))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script], env=env, pass_fds=pass_fds, stderr=subprocess.PIPE
        )
        if transport == "ipc":
            child.close()
        test.addCleanup(self.close)
        self.pending = []

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()
        if self.fifo is None:
            self.sock.close()
        else:
            os.close(self.fifo.rfd)
            os.close(self.fifo.wfd)

    def send(self, msg):
        if self.fifo is None:
            self.sock.sendall((json.dumps(msg) + "\n").encode())
        else:
            self.fifo.write(self.fifo.encode(json.dumps(msg)))

    def _read_some(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self.rfd], [], [], left)[0]:
            raise AssertionError("no message from the worker in time")
        data = os.read(self.rfd, 65536)
        if not data:
            raise EOFError("the worker closed its channel")
        if self.fifo is None:
            self.buf += data
            *lines, self.buf = self.buf.split(b"\n")
            self.pending.extend(json.loads(line) for line in lines if line)
        else:
            self.fifo.split(data, lambda text: self.pending.append(json.loads(text)), self.fail_bad)

    @staticmethod
    def fail_bad(problem):
        raise AssertionError(problem)

    def recv(self, kind=None, timeout=10.0):
        """The next message (of that type: others before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                msg = self.pending.pop(0)
                if kind is None or msg.get("type") == kind:
                    return msg
            self._read_some(deadline)

    def results(self, n, timeout=10.0):
        """n task results, whichever way they come (task-complete / -failed / -results)."""
        out = []
        while len(out) < n:
            msg = self.recv(timeout=timeout)
            if msg["type"] == "task-results":
                out.extend(msg["results"])
            elif msg["type"] == "task-complete":
                out.append({"taskId": msg["taskId"], "ok": True, "result": msg["result"], "duration": msg["duration"]})
            elif msg["type"] == "task-failed":
                out.append({"taskId": msg["taskId"], "ok": False, "error": msg["error"], "duration": msg["duration"]})
        return out


def task(task_id, kind, payload=None, timeout=30000):
    return {"id": task_id, "type": kind, "payload": payload, "timeout": timeout}


class ProtocolTest(unittest.TestCase):
    def test_ready_announces_features_capabilities_and_id(self):
        peer = Peer(self)
        ready = peer.recv("worker-ready")
        self.assertEqual(ready["workerId"], "worker-7")
        self.assertEqual(ready["features"], ["batch", "cancel"])
        self.assertEqual(ready["capabilities"], ["py"])
        self.assertEqual(ready["pid"], peer.proc.pid)

    def test_execute_task_answers_with_task_complete(self):
        peer = Peer(self)
        payload = {"s": 'ü "q" \t\n \u2028 \U0001d11e', "n": [1, 2.5, None, True]}
        peer.send({"type": "execute-task", "task": task("t-1", "echo", payload)})
        msg = peer.recv("task-complete")
        self.assertEqual(msg["taskId"], "t-1")
        self.assertEqual(msg["result"], payload)
        self.assertIsInstance(msg["duration"], (int, float))

    def test_a_batch_is_answered_in_order_with_each_failure_classified(self):
        peer = Peer(self)
        peer.send(
            {
                "type": "execute-batch",
                "tasks": [
                    task(1, "echo", "a"),
                    task(2, "fail", {"message": "nope", "code": "E_X"}),
                    task(3, "value-error", 5),
                    task(4, "missing"),
                    task(5, "echo", "b"),
                ],
            }
        )
        r = peer.results(5)
        self.assertEqual([e["taskId"] for e in r], [1, 2, 3, 4, 5])
        self.assertEqual((r[0]["ok"], r[0]["result"]), (True, "a"))
        self.assertEqual(r[1]["error"]["message"], "nope")
        self.assertEqual(r[1]["error"]["code"], "E_X")
        self.assertEqual(r[1]["error"]["name"], "TaskError")
        self.assertEqual(r[2]["error"]["message"], "not a number: 5")
        self.assertEqual(r[2]["error"]["name"], "ValueError")
        self.assertEqual(r[2]["error"]["code"], "ERR_TASK_FAILED")
        self.assertIn("Traceback", r[2]["error"]["stack"])
        self.assertEqual(r[3]["error"]["code"], "ERR_NO_HANDLER")
        self.assertTrue(r[3]["error"]["message"].startswith("No handler registered for task type: missing"))
        self.assertEqual(r[4]["result"], "b")

    def test_results_json_cannot_carry_fail_their_task_only(self):
        peer = Peer(self)
        peer.send({"type": "execute-batch", "tasks": [task("a", "nan"), task("b", "set"), task("c", "echo", 1)]})
        r = {e["taskId"]: e for e in peer.results(3)}
        for tid in ("a", "b"):
            self.assertFalse(r[tid]["ok"])
            self.assertEqual(r[tid]["error"]["code"], "ERR_RESULT_NOT_SERIALIZABLE")
            self.assertIn("could not be sent", r[tid]["error"]["message"])
        self.assertEqual(r["c"]["result"], 1)
        peer.send({"type": "execute-task", "task": task("d", "nan")})
        self.assertEqual(peer.recv("task-failed")["error"]["code"], "ERR_RESULT_NOT_SERIALIZABLE")

    def test_cancel_task_cancels_a_running_coroutine(self):
        peer = Peer(self)
        peer.send({"type": "execute-task", "task": task("s", "sleep", 60)})
        time.sleep(0.3)
        t0 = time.monotonic()
        peer.send({"type": "cancel-task", "taskId": "s", "reason": "cancelled"})
        msg = peer.recv("task-failed", timeout=5)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(msg["error"]["name"], "AbortError")
        self.assertEqual(msg["error"]["code"], "ABORT_ERR")
        self.assertIn("cancelled", msg["error"]["message"])
        peer.send({"type": "execute-task", "task": task("e", "echo", 2)})
        self.assertEqual(peer.recv("task-complete")["result"], 2)

    def test_cancel_task_sets_task_cancelled_for_a_sync_handler(self):
        peer = Peer(self)
        peer.send({"type": "execute-task", "task": task("w", "watch-cancel", 30)})
        time.sleep(0.3)
        peer.send({"type": "cancel-task", "taskId": "w", "reason": "timeout"})
        msg = peer.recv("task-failed", timeout=5)
        self.assertEqual(msg["error"]["name"], "AbortError")
        self.assertIn("(timeout)", msg["error"]["message"])

    def test_a_queued_task_cancelled_while_another_runs_is_never_run(self):
        peer = Peer(self)
        peer.send({"type": "execute-batch", "tasks": [task("long", "spin", 0.6), task("next", "log")]})
        time.sleep(0.2)
        peer.send({"type": "cancel-task", "taskId": "next", "reason": "cancelled"})
        r = {e["taskId"]: e for e in peer.results(2)}
        self.assertEqual(r["long"]["result"], "spun")
        self.assertEqual(r["next"]["error"]["code"], "ABORT_ERR")
        # The handler never ran: it would have logged.
        peer.send({"type": "execute-task", "task": task("e", "echo", 3)})
        while True:
            msg = peer.recv()
            self.assertNotEqual(msg["type"], "worker-log")
            if msg["type"] == "task-complete":
                break

    def test_heartbeats_flow_while_a_handler_holds_the_cpu(self):
        peer = Peer(self, config={"heartbeatInterval": 100})
        peer.recv("worker-ready")
        peer.send({"type": "execute-task", "task": task("spin", "spin", 1.2)})
        beats = []
        while True:
            msg = peer.recv(timeout=10)
            if msg["type"] == "heartbeat":
                beats.append(msg)
            elif msg["type"] == "task-complete":
                break
        busy = [b for b in beats if b["state"] == "busy" and b["currentTask"] == "spin"]
        self.assertGreaterEqual(len(busy), 4, beats)
        mem = busy[-1]["memoryUsage"]
        self.assertGreater(mem["rss"], 1 << 20)
        self.assertGreater(mem["heapUsed"], 0)
        self.assertLessEqual(mem["heapUsed"], mem["rss"])

    def test_logs_are_worker_log_messages(self):
        peer = Peer(self)
        peer.send({"type": "execute-task", "task": task("l", "log")})
        info = peer.recv("worker-log")
        self.assertEqual((info["level"], info["message"], info["n"]), ("info", "hello", 1))
        err = peer.recv("worker-log")
        # An extra field JSON cannot carry is dropped, the message is not.
        self.assertEqual((err["level"], err["message"]), ("error", "bad"))
        self.assertNotIn("obj", err)
        self.assertIsNone(peer.recv("task-complete")["result"])

    def test_health_check_and_unknown_messages(self):
        peer = Peer(self)
        peer.send({"type": "some-future-message"})
        peer.send({"type": "health-check"})
        status = peer.recv("health-status")
        self.assertTrue(status["healthy"])
        self.assertGreater(status["memoryMB"], 0)

    def test_a_line_that_is_not_json_is_reported_and_skipped(self):
        peer = Peer(self)
        peer.sock.sendall(b"{not json\n")
        peer.send({"type": "execute-task", "task": task("ok", "echo", 1)})
        warn = peer.recv("worker-log")
        self.assertEqual(warn["level"], "warning")
        self.assertIn("not JSON", warn["message"])
        self.assertEqual(peer.recv("task-complete")["result"], 1)

    def test_graceful_shutdown_answers_what_came_before_then_exits_0(self):
        peer = Peer(self)
        peer.send({"type": "execute-task", "task": task("before", "spin", 0.3)})
        peer.send({"type": "shutdown", "graceful": True})
        peer.send({"type": "execute-task", "task": task("after", "echo", 1)})
        self.assertEqual(peer.recv("task-complete")["taskId"], "before")
        msg = peer.recv()
        if msg["type"] == "task-failed":
            self.assertEqual(msg["taskId"], "after")
            self.assertEqual(msg["error"]["code"], "ERR_WORKER_SHUTTING_DOWN")
            msg = peer.recv()
        self.assertEqual(msg["type"], "worker-shutdown")
        self.assertEqual(peer.proc.wait(10), 0)
        self.assertIn(b"run returned", peer.proc.stderr.read())

    def test_immediate_shutdown_fails_the_running_task_and_exits_0(self):
        peer = Peer(self)
        peer.send({"type": "execute-task", "task": task("long", "spin", 30)})
        time.sleep(0.3)
        peer.send({"type": "shutdown", "graceful": False})
        r = peer.results(1, timeout=5)
        self.assertEqual(r[0]["error"]["code"], "ERR_WORKER_SHUTDOWN")
        self.assertEqual(peer.recv("worker-shutdown")["workerId"], "worker-7")
        self.assertEqual(peer.proc.wait(10), 0)

    def test_the_worker_exits_when_the_pool_end_closes(self):
        peer = Peer(self)
        peer.recv("worker-ready")
        peer.sock.close()
        peer.sock = socket.socket()  # for close()
        self.assertEqual(peer.proc.wait(10), 0)

    def test_fifo_transport(self):
        peer = Peer(self, transport="fifo")
        self.assertEqual(peer.recv("worker-ready")["workerId"], "worker-7")
        peer.send({"type": "execute-batch", "tasks": [task(i, "echo", {"i": i, "s": "\u2603\n"}) for i in range(200)]})
        r = peer.results(200)
        self.assertEqual([e["result"]["i"] for e in r], list(range(200)))
        peer.send({"type": "execute-task", "task": task("f", "fail", {"message": "over fifo"})})
        self.assertEqual(peer.recv("task-failed")["error"]["message"], "over fifo")

    def test_a_fifo_worker_exits_once_its_parent_is_gone(self):
        # The FIFOs never report end of file: the worker notices it was reparented.
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        inp, out = os.path.join(d, "in.fifo"), os.path.join(d, "out.fifo")
        os.mkfifo(inp, 0o600)
        os.mkfifo(out, 0o600)
        keep = [os.open(inp, os.O_RDWR), os.open(out, os.O_RDWR)]
        self.addCleanup(lambda: [os.close(fd) for fd in keep])
        env = dict(os.environ, PYTHONPATH=PY_ROOT, WORKER_TRANSPORT="fifo", WORKER_FIFO_IN=inp, WORKER_FIFO_OUT=out)
        env.pop("NODE_CHANNEL_FD", None)
        middle = (
            "import subprocess, sys; "
            "p = subprocess.Popen([sys.executable, '-c', sys.argv[1]], "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid, flush=True); "
            # Alive while the worker starts, as a pool is.
            "import time; time.sleep(1.5)"
        )
        r = subprocess.run([sys.executable, "-c", middle, WORKER_SCRIPT], env=env, capture_output=True, timeout=30)
        pid = int(r.stdout.split()[0])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
            time.sleep(0.05)
        os.kill(pid, 9)
        self.fail("the worker outlived its parent by 10 s")

    def test_without_a_channel_it_says_so_and_exits_1(self):
        env = dict(os.environ, PYTHONPATH=PY_ROOT)
        env.pop("NODE_CHANNEL_FD", None)
        env.pop("WORKER_TRANSPORT", None)
        p = subprocess.run([sys.executable, "-c", WORKER_SCRIPT], env=env, capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"no channel to a pool", p.stderr)


class UnitTest(unittest.TestCase):
    def test_ipc_split_joins_lines_cut_anywhere_even_inside_a_character(self):
        ch = IpcChannel(-1)
        text = json.dumps({"s": "\u2603 \U0001d11e"}, ensure_ascii=False) + "\n" + json.dumps([1]) + "\n"
        data = text.encode()
        got = []
        for i in range(len(data)):
            ch.split(data[i : i + 1], got.append, self.fail)
        self.assertEqual([json.loads(x) for x in got], [{"s": "\u2603 \U0001d11e"}, [1]])

    def test_fifo_split_skips_an_oversize_frame_and_keeps_the_rest(self):
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        ch = FifoChannel.__new__(FifoChannel)
        ch.max_frame = 10
        ch._buf = bytearray()
        ch._skip = 0
        frames = (3).to_bytes(4, "big") + b'"a"' + (50).to_bytes(4, "big") + b"x" * 50 + (3).to_bytes(4, "big") + b'"b"'
        got, bad = [], []
        for i in range(0, len(frames), 7):
            ch.split(frames[i : i + 7], got.append, bad.append)
        self.assertEqual(got, ['"a"', '"b"'])
        self.assertEqual(len(bad), 1)
        self.assertIn("50 bytes", bad[0])
        with self.assertRaises(ValueError):
            ch.encode("x" * 11)

    def test_open_channel_reports_bad_settings(self):
        for env, text in [
            ({}, "no channel to a pool"),
            ({"WORKER_TRANSPORT": "smoke"}, 'must be "ipc" or "fifo"'),
            ({"WORKER_TRANSPORT": "fifo"}, "WORKER_FIFO_IN"),
            ({"NODE_CHANNEL_FD": "999"}, "not open"),
        ]:
            with self.assertRaises(ChannelError) as cm:
                open_channel(env)
            self.assertIn(text, str(cm.exception))

    def test_task_cancelled_event_is_set_whenever_it_is_first_asked_for(self):
        t = Task("x", "t", 100)
        self.assertFalse(t.cancelled.is_set())
        t._cancel("timeout")
        self.assertTrue(t.cancelled.is_set())
        u = Task("y", "t", None)
        u._cancel("cancelled")
        self.assertTrue(u.cancelled.is_set())
        self.assertEqual(u.cancel_reason, "cancelled")

    def test_worker_reads_its_config_and_checks_handlers(self):
        w = Worker(env={"WORKER_ID": "w-1", "WORKER_CONFIG": json.dumps({"heartbeatInterval": 250, "capabilities": ["a", 3]})})
        self.assertEqual((w.id, w.heartbeat_interval, w.capabilities), ("w-1", 250, ["a"]))
        with self.assertRaises(TypeError):
            w.handler("")
        with self.assertRaises(TypeError):
            w.handler("x")(42)
        with self.assertRaises(ValueError):
            Worker(env={"WORKER_CONFIG": "[1]"})

    def test_task_error_keeps_message_and_code(self):
        e = TaskError("m", code="E_M")
        self.assertEqual((str(e), e.message, e.code), ("m", "m", "E_M"))
        self.assertIsNone(TaskError("n").code)


if __name__ == "__main__":
    unittest.main()
