"""Worker for bench/python-workers.js on this package's Python runtime: the same echo
as the Node workers' (bench/workers/tasks.js)."""

import os

from cortex_worker import Worker

worker = Worker()


@worker.handler("echo")
def echo(payload, task):
    return payload


@worker.handler("whoami")
def whoami(payload, task):
    return os.getpid()


worker.run()
