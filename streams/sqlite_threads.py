"""The threads that run the state stores' big SQLite statements, at a lower CPU priority than the loop.

The event loop's thread is the worker's bottleneck: everything it does is Python under the GIL, while
SQLite works in these threads without the GIL. On a machine with few cores the two compete for CPU time.
When they did at equal priority, the loop was runnable but waiting for a core for a tenth of a
200,000-trace drain. At ``NICE`` above the loop's niceness the kernel runs the loop first, and the
threads take the remaining time. Their statements then take longer, but they only have to be done by
the time the loop needs their result (docs/decisions.md #18).
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

# added to the niceness of the thread that starts a pool's thread; 0 leaves it alone
NICE = 5


def lower_priority() -> None:
    """Make the calling thread ``NICE`` nicer (Linux applies niceness per thread; elsewhere a no-op)."""
    if not NICE or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):  # a platform whose thread ids are not scheduling ids
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + NICE))


def pool(name: str, workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name, initializer=lower_priority)


# Writes: a batch commits each partition's store at once, stage 2 commits, sent records are acknowledged.
WRITES = pool("tracelearn-sqlite", 8)
# Lookups have threads of their own: among the writes they would queue behind the commits they are meant
# to overlap. One per partition that a batch prepares at once is enough.
LOOKUPS = pool("tracelearn-lookup", 4)
