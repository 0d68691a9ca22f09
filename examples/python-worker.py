"""A Python worker for cortex-worker-pool: run by examples/python-pool.js.

The pool starts it as `python3 examples/python-worker.py` (its workerCommand) with
PYTHONPATH pointing at the package's python/ directory.
"""

import asyncio
import hashlib
import time

from cortex_worker import TaskError, Worker

worker = Worker()


@worker.handler("word-count")
def word_count(payload, task):
    text = payload.get("text")
    if not isinstance(text, str):
        raise TaskError("payload.text must be a string", code="E_BAD_TEXT")
    counts = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return {"words": sum(counts.values()), "distinct": len(counts)}


@worker.handler("hash")
def hash_rounds(payload, task):
    """CPU work in slices: stops early when the pool cancels the task."""
    digest = payload["seed"].encode()
    for i in range(payload["rounds"]):
        if i % 10000 == 0 and task.cancelled.is_set():
            raise TaskError(f"stopped after {i} rounds ({task.cancel_reason})")
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


@worker.handler("wait")
async def wait(payload, task):
    started = time.monotonic()
    await asyncio.sleep(payload["seconds"])
    worker.log.info(f"waited {payload['seconds']} s", taskId=task.id)
    return round(time.monotonic() - started, 3)


worker.run()
