"""The ``tracelearn`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from learning.models import CONTRACTS
from streams.settings import Settings, check_environment


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "bootstrap_servers", None):
        overrides["bootstrap_servers"] = args.bootstrap_servers
    return Settings(**overrides)


def cmd_schema(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else sorted(CONTRACTS)
    unknown = [n for n in names if n not in CONTRACTS]
    if unknown:
        print(f"unknown contract {unknown[0]!r}; choose from {', '.join(sorted(CONTRACTS))}", file=sys.stderr)
        return 2
    schemas = {name: CONTRACTS[name].model_json_schema() for name in names}
    print(json.dumps(schemas[names[0]] if args.name else schemas, indent=2))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from streams.settings import settings_markdown, settings_rows

    if args.markdown:
        print(settings_markdown(), end="")
        return 0
    rows = settings_rows(_settings(args))
    width = max(len(env) for env, *_ in rows)
    for env, value, default, description in rows:
        mark = " " if value == default else "*"
        print(f"{mark} {env:<{width}}  {value or '-':<24}  {description} (default: {default or '-'})")
    print("\n* differs from the default")
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from streams.kafka.broker import EmbeddedBroker

    broker = EmbeddedBroker(args.port).start()
    print(f"tracelearn: embedded broker on {broker.bootstrap} (memory only; Ctrl-C stops it)", flush=True)
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop["now"] and broker._proc is not None and broker._proc.poll() is None:
            time.sleep(0.2)
    finally:
        broker.stop()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.worker.service import run_worker

    check_environment(os.environ, service="worker")
    run_worker(_settings(args), loglevel=args.loglevel)
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    from streams.cli.routes import print_routes

    return asyncio.run(print_routes(_settings(args), follow=args.follow, wait=args.wait))


def cmd_replay(args: argparse.Namespace) -> int:
    from streams.cli.replay import replay

    sent = asyncio.run(replay(_settings(args), args.path, page_size=args.page_size))
    print(f"replayed {sent} traces into {_settings(args).traces_topic}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.cli.demo import run_demo

    return run_demo(
        _settings(args),
        duration=args.duration,
        rate=args.rate,
        drift_at=args.drift_at,
        seed=args.seed,
        open_loop=args.open_loop,
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from learning.simulation.scenario import DEFAULT_SCENARIO, load
    from streams.cli.simulate import simulate

    if args.print_scenario:
        print(DEFAULT_SCENARIO, end="")
        return 0
    scenario = load(Path(args.scenario) if args.scenario else None)
    if args.queries:
        from dataclasses import replace

        scenario = replace(scenario, queries_per_class=args.queries)
    simulate(
        scenario,
        _settings(args),
        policies=[p.strip() for p in args.policies.split(",") if p.strip()],
        offline=args.offline,
        round_size=args.round_size,
        chart_path=None if args.chart == "-" else Path(args.chart),
        workdir=Path(args.workdir),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracelearn", description="Learning from LLM agent traces, as they stream.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_kafka(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--bootstrap-servers",
            help="Kafka host:port list (default: $TRACELEARN_BOOTSTRAP_SERVERS; the worker and demo start the "
            "embedded broker when neither is set)",
        )
        return p

    p = sub.add_parser("schema", help="print the JSON Schemas of the event contracts")
    p.add_argument("name", nargs="?", help=f"one of {', '.join(sorted(CONTRACTS))}")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("settings", help="print every setting: its value, default and meaning (secrets masked)")
    p.add_argument("--markdown", action="store_true", help="the defaults as the table of docs/settings.md")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("broker", help="run the embedded Kafka-protocol broker (Tansu, memory only)")
    p.add_argument("--port", type=int, default=9092)
    p.set_defaults(func=cmd_broker)

    p = with_kafka(sub.add_parser("worker", help="run a stream worker (both stages, /metrics)"))
    p.add_argument("--loglevel", default="WARNING")
    p.set_defaults(func=cmd_worker)

    p = with_kafka(sub.add_parser("routes", help="print the live routing table"))
    p.add_argument("--follow", action="store_true", help="keep printing as updates arrive")
    p.add_argument("--wait", type=float, default=3.0, help="seconds to read before printing")
    p.set_defaults(func=cmd_routes)

    p = with_kafka(sub.add_parser("replay", help="publish the traces of an OpenJarvis traces.db"))
    p.add_argument("path")
    p.add_argument("--page-size", type=int, default=1000)
    p.set_defaults(func=cmd_replay)

    p = with_kafka(sub.add_parser("demo", help="embedded broker + worker + a synthetic agent fleet"))
    p.add_argument("--duration", type=float, default=40.0, help="seconds the fleet runs")
    p.add_argument("--rate", type=float, default=400.0, help="traces per second")
    p.add_argument("--drift-at", type=float, default=0.6, help="fraction of the run after which 'general' drifts")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--open-loop", action="store_true", help="route at random instead of with LearnedRouter")
    p.set_defaults(func=cmd_demo)

    p = with_kafka(
        sub.add_parser("simulate", help="closed-loop routing: a synthetic fleet routes with LearnedRouter, scored")
    )
    p.add_argument("--scenario", help="a TOML scenario (default: the built-in one; see --print-scenario)")
    p.add_argument("--print-scenario", action="store_true", help="print the built-in scenario and exit")
    p.add_argument(
        "--policies", default="thompson,greedy,reference", help="comma-separated: thompson, greedy, reference"
    )
    p.add_argument("--offline", action="store_true", help="build the tables in this process (no broker, no worker)")
    p.add_argument("--round-size", type=int, default=5, help="queries of each class between two table refreshes")
    p.add_argument("--queries", type=int, help="queries of each class (default: the scenario's)")
    p.add_argument("--chart", default="simulate.png", help="the PNG of regret over time ('-': none)")
    p.add_argument("--workdir", default=".tracelearn/simulate", help="worker logs and state")
    p.set_defaults(func=cmd_simulate)

    from streams.cli.trainer import add_trainer_commands

    add_trainer_commands(sub, with_kafka)
    from streams.cli.optimize import add_optimize_command

    add_optimize_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from learning.errors import TracelearnError

        if isinstance(exc, TracelearnError | ValueError | FileNotFoundError) and not args.verbose:
            print(f"tracelearn: error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
