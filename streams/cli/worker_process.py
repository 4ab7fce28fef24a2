"""A worker in a child process, for the commands that run one beside what they drive (demo, simulate)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``tracelearn worker`` with ``env``, its output in ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "WARNING"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def stop_worker(worker: subprocess.Popen[bytes], wait: float = 15.0) -> None:
    """SIGTERM (the worker finishes its batch and stops), then SIGKILL if it has not stopped in ``wait`` s."""
    worker.terminate()
    try:
        worker.wait(wait)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
