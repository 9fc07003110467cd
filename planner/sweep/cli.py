"""``planner sweep SWEEP.yaml [--workers N] [--engine pool|ray] [--address A]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from planner.report.io import check_output, not_empty
from planner.scenario.errors import InputError, Problem
from planner.sweep.run import ENGINES, run_sweep
from planner.sweep.spec import load_sweep


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise InputError("--workers", [Problem("--workers", "must be at least 1", args.workers)])
    if args.limit is not None and args.limit < 1:
        raise InputError("--limit", [Problem("--limit", "must be at least 1", args.limit)])
    if args.threads is not None and args.threads < 1:
        raise InputError("--threads", [Problem("--threads", "must be at least 1", args.threads)])
    not_empty(args.out, "--out")
    not_empty(args.report, "--report")
    if args.out:
        check_output(args.out, "--out")
    if args.report:
        check_output(args.report, "--report")
    if args.address and args.engine != "ray":
        raise InputError("--address", [Problem("--address", "only with --engine ray", args.address)])
    sw = load_sweep(args.sweep)
    if args.threads is not None:
        sw.threads = args.threads
    state: dict[str, Any] = {}

    def progress(event: str, info: dict[str, Any]) -> None:
        if event == "plan":
            print(f"sweep {sw.name}: {info['total']} points, {info['done']} already in the table, "
                  f"{info['missing']} to run ({info['engine']}"
                  + (f", {info['workers']} workers x {info['threads']} threads"
                     if info["engine"] == "pool" else "") + ")", file=sys.stderr)
            state["bar"] = tqdm(total=info["missing"], unit="point", file=sys.stderr,
                                dynamic_ncols=True, disable=None if not args.no_progress else True)
        elif event == "ray":
            print(f"ray ({info['address']}): {info['cpus']} CPUs, {info['concurrent']} concurrent "
                  f"tasks x {info['threads']} solver threads", file=sys.stderr)
        elif event == "row":
            r = info["row"]
            bar = state["bar"]
            bar.set_postfix_str(f"{r['method']} {r['status']}", refresh=False)
            bar.update(1)

    with logging_redirect_tqdm():
        try:
            run = run_sweep(sw, workers=args.workers, engine_name=args.engine, address=args.address,
                            out=args.out, report=False if args.no_report else args.report,
                            progress=progress, limit=args.limit)
        finally:
            if "bar" in state:
                state["bar"].close()
    print(f"{run.computed} points computed ({run.failed} without a solution), {run.reused} reused; "
          f"{len(run.table)} of {run.total} in {run.results}")
    if run.report:
        print(f"report written: {run.report}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sweep", help="run a what-if sweep (grid of overrides x methods), resumable")
    s.add_argument("sweep", help="sweep file (YAML/JSON/TOML)")
    s.add_argument("--workers", "-j", type=int, default=1,
                   help="parallel points (pool: spawn processes; ray: max concurrent tasks)")
    s.add_argument("--engine", choices=ENGINES, default="pool")
    s.add_argument("--address", default=None, help="an existing Ray cluster (with --engine ray)")
    s.add_argument("--threads", type=int, default=None,
                   help="solver threads per point (default: the sweep file's, else 1)")
    s.add_argument("--out", "-o", default=None, help="results CSV (default: from the sweep file)")
    s.add_argument("--report", default=None, help="sweep report HTML (default: beside the CSV)")
    s.add_argument("--no-report", action="store_true")
    s.add_argument("--limit", type=int, default=None, help="run at most this many missing points")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_sweep)
