"""Python workers for cortex-worker-pool.

A Python program started by the pool (its ``workerCommand``) serves tasks through
handlers registered on a :class:`Worker`; the pool supervises it exactly as it does
its Node workers. See the package README ("Workers in other languages") and
docs/PROTOCOL.md.
"""

from ._worker import Logger, Task, TaskError, Worker

__all__ = ["Worker", "Task", "TaskError", "Logger"]
__version__ = "0.1.0"
TaskError.__module__ = Task.__module__ = Worker.__module__ = Logger.__module__ = "cortex_worker"
