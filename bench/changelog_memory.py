"""The worker's resident memory after a 200,000-trace drain with the changelogs and the decayed figures on
and off, each configuration in turn, twice (one broker; docs/benchmarks.md).

    .venv/bin/python bench/changelog_memory.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import machine, pipeline_settings, produce, rss_mib
from bench.pipeline_bench import drain, start_worker, stop_worker
from streams.kafka.broker import EmbeddedBroker, free_port

CONFIGS = [
    ("default", {}),
    ("no changelog", {"changelog": False}),
    ("no half-life", {"half_life_seconds": None}),
    ("neither", {"changelog": False, "half_life_seconds": None}),
]


def main() -> None:
    with EmbeddedBroker(free_port()) as broker, tempfile.TemporaryDirectory() as tmp:
        for round_ in range(2):
            for i, (name, over) in enumerate(CONFIGS):
                k = round_ * 10 + i
                s = pipeline_settings(
                    broker.bootstrap, Path(tmp) / f"s{k}", topic_prefix=f"rss{k}", app_id=f"rss{k}", **over
                )
                asyncio.run(produce(broker.bootstrap, s.traces_topic, 200_000, prefix=f"x{k}-"))
                w = start_worker(s, s.state_dir, Path(tmp) / f"w{k}.log")
                try:
                    rate, _ = drain(f"http://127.0.0.1:{s.web_port}/metrics", 200_000, w)
                    print(f"{name:14} rss {rss_mib(w.pid):.0f} MiB  {rate:,.0f} traces/s", flush=True)
                finally:
                    stop_worker(w)
    print(machine())


if __name__ == "__main__":
    main()
