"""A host lost: from the kill to the other worker having every trace counted, and where the time goes.

    .venv/bin/python bench/failover_bench.py [--before 20000] [--after 5000] [--runs 3] [--standby 0,1]

Against the embedded broker: two workers with state directories of their own share the traffic; once
``--before`` traces are counted, the worker that does not merge the deltas is killed (SIGKILL) and its state
directory deleted, and ``--after`` more traces are produced. Prints, from the kill: when the survivor was
given the lost partitions (the group's detection), when it had taken the last of them over (restored from
the changelog, or caught up from a warm copy with ``--standby 1``), and when the routing tables counted
every trace.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import metric_sum, pipeline_settings, produce
from bench.pipeline_bench import start_worker, stop_worker
from bench.startup_bench import STAMP
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.sdk import RoutingTableView
from streams.settings import Settings


def owned(log: str) -> tuple[list[int], bool | None]:
    parts = re.findall(r"stage 1 partitions: (\[.*?\])", log)
    stage2 = re.findall(r"stage 2: (this|another) worker", log)
    mine = [int(p) for p in re.findall(r"'[^']*\.traces', (\d+)", parts[-1])] if parts else []
    return mine, (stage2[-1] == "this") if stage2 else None


def last_stamp(log: str, pattern: str, after: float) -> float:
    """Seconds after ``after`` of the last log line matching ``pattern`` (nan if none came after it)."""
    found = float("nan")
    for line in log.splitlines():
        stamp = STAMP.search(line)
        if stamp and re.search(pattern, line):
            at = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - after
            if at >= 0:
                found = at
    return found


async def counted(settings: Settings, total: int, timeout: float = 180) -> float:
    async with RoutingTableView(settings) as view:
        ok = await view.wait_for(lambda table: sum(u.sample_count for u in table.values()) >= total, timeout)
        if not ok:
            # which side is short: the tables the worker holds, or what the routing view read of them
            seen = sum(u.sample_count for u in view.table.values())
            held = metric_sum(f"http://127.0.0.1:{settings.web_port}/metrics", "tracelearn_class_samples")
            print(
                f"not every trace counted after {timeout:.0f} s: {total:,} sent, the routing view saw {seen:,}, "
                f"the worker's tables (tracelearn_class_samples) hold {held:,.0f}",
                flush=True,
            )
    return time.time() if ok else float("nan")


def one_run(bootstrap: str, before: int, after: int, tmp: Path, run: int, standby: int) -> dict[str, float]:
    base = pipeline_settings(
        bootstrap, tmp / f"r{run}" / "a", topic_prefix=f"fo{run}", app_id=f"tracelearn-fo{run}"
    ).model_copy(update={"standby_replicas": standby})
    hosts = {}
    for name in ("a", "b"):
        settings = base.model_copy(update={"state_dir": tmp / f"r{run}" / name, "web_port": free_port()})
        log = tmp / f"r{run}-{name}.log"
        hosts[name] = (settings, log, start_worker(settings, settings.state_dir, log, loglevel="INFO"))
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            roles = [owned(log.read_text(errors="replace")) for _, log, _ in hosts.values()]
            if all(parts for parts, _ in roles) and {r for _, r in roles} == {True, False}:
                break
            time.sleep(0.2)
        asyncio.run(produce(bootstrap, base.traces_topic, before, prefix=f"f{run}-"))
        asyncio.run(counted(base, before))
        lost = next(n for n, (_, log, _) in hosts.items() if owned(log.read_text(errors="replace"))[1] is False)
        survivor = "b" if lost == "a" else "a"
        settings, _, proc = hosts[lost]
        killed = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        shutil.rmtree(settings.state_dir)
        asyncio.run(produce(bootstrap, base.traces_topic, after, prefix=f"g{run}-"))
        done = asyncio.run(counted(hosts[survivor][0], before + after)) - killed
        log = hosts[survivor][1].read_text(errors="replace")
        return {
            "lost partitions given to the other worker (detection)": last_stamp(
                log, r"stage 1 partitions: \[\(", killed
            ),
            "the last of them taken over (restore)": last_stamp(log, r"taken over at epoch", killed),
            "every trace counted (caught up)": done,
        }
    finally:
        for _, _, proc in hosts.values():
            if proc.poll() is None:
                stop_worker(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=int, default=20_000)
    parser.add_argument("--after", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--standby", default="0", help="standby replicas, comma-separated: each run tries every value in turn"
    )
    args = parser.parse_args()
    standbys = [int(n) for n in args.standby.split(",")]
    plan = [(i, n) for i in range(args.runs) for n in standbys]
    with EmbeddedBroker(free_port()) as broker, tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(broker.bootstrap, args.before, args.after, Path(tmp), k, n) for k, (_, n) in enumerate(plan)]
    print(
        "\n| seconds from the kill | "
        + " | ".join(f"run {i + 1}" + (f", {n} standby" if len(standbys) > 1 else "") for i, n in plan)
        + " |"
    )
    print("|---|" + "---|" * len(runs))
    for name in runs[0]:
        print(f"| {name} | " + " | ".join(f"{run[name]:.2f}" for run in runs) + " |")


if __name__ == "__main__":
    main()
