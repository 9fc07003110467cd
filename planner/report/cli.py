"""``planner compare``: the command, its progress bars (stderr) and its summary (stdout)."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from planner.api import check_time_limit
from planner.plan import SOLVED
from planner.report.compare import DEFAULT_TIME_LIMIT, compare
from planner.report.io import not_empty
from planner.scenario.errors import InputError, Problem


class ProgressBars:
    """One tqdm bar per method on stderr: a time bar up to the time limit for exact methods
    (ticked by a thread), a one-step bar for heuristics."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __call__(self, event: str, method: str, info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if event == "start":
            k, n = info["index"] + 1, info["total"]
            limit = info.get("time_limit")
            timed = info["kind"] == "exact" and bool(limit)
            self.bar = tqdm(total=float(limit) if timed else 1, desc=f"[{k}/{n}] {method}",
                            unit="s" if timed else "run", file=sys.stderr, leave=True,
                            dynamic_ncols=True, disable=None,  # no bars when stderr is no tty
                            bar_format="{l_bar}{bar}| {elapsed}{postfix}")
            if timed:
                self._stop.clear()
                self._ticker = threading.Thread(target=self._tick, args=(self.bar,), daemon=True)
                self._ticker.start()
        elif event == "done" and self.bar is not None:
            self._stop.set()
            if self._ticker:
                self._ticker.join()
                self._ticker = None
            ms = info.get("makespan_s")
            self.bar.n = self.bar.total
            self.bar.set_postfix_str(info["status"] + (f", makespan {ms:.4g} s" if ms is not None
                                                       else ""))
            self.bar.close()
            self.bar = None

    def _tick(self, bar: tqdm) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(0.5):
            bar.n = min(time.monotonic() - t0, bar.total)
            bar.refresh()


def _method_options(pairs: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        method, dot, opt = key.partition(".")
        if not sep or not dot or not method or not opt:
            raise InputError("--option", [Problem("--option", "expected METHOD.KEY=VALUE", item)])
        out.setdefault(method.strip(), {})[opt.strip()] = value.strip()
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    check_time_limit(args.time_limit, "--time-limit")
    check_time_limit(args.hard_timeout, "--hard-timeout")
    names = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods is not None \
        else None
    if names is not None and not names:
        raise InputError("--methods", [Problem("--methods", "no method given", args.methods)])
    not_empty(args.out, "--out")
    out = Path(args.out) if args.out else Path("reports") / f"{Path(args.scenario).stem}.html"
    bars = ProgressBars(enabled=not args.no_progress)
    with logging_redirect_tqdm():
        data, paths = compare(args.scenario, names, args.time_limit, out, progress=bars,
                              options=_method_options(args.option), hard_timeout=args.hard_timeout)
    print(f"{'method':<16} {'status':<20} {'makespan_s':>12} {'cost_$':>12} {'served':>8} "
          f"{'gap_best':>9} {'wall_s':>8}")
    for r in data["table"]:
        def f(x: Any, spec: str = ".6g") -> str:
            return "-" if x is None else format(x, spec)

        print(f"{r['method']:<16} {r['status']:<20} {f(r['makespan_s']):>12} {f(r['cost_usd']):>12} "
              f"{f(r['served'], 'd'):>8} {f(r['gap_to_best_bound'], '.2%'):>9} "
              f"{f(r['solve_wall_s'], '.3f'):>8}")
        if r["makespan_s"] is None:
            print(f"    {r['termination']}")
    if paths is None:
        print(f"planner compare: no method found a plan: no report written ({out} and its files "
              "are left as they were)", file=sys.stderr)
        return 1
    print(f"report written: {paths['html']} (numbers: {paths['csv']}, {paths['json']}; plans: "
          f"{paths['plans']}/)")
    for note in data.get("notes") or []:
        print(f"note: {note}", file=sys.stderr)
    if not any(r["status"] in SOLVED for r in data["table"]):
        # plans were written (their figures, their replay) but none is a solution: the exit of
        # `solve` for the same outcome
        print("planner compare: no method found a solution (every plan breaks a hard "
              "constraint)", file=sys.stderr)
        return 1
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("compare", help="run several methods on one scenario and write an HTML report")
    s.add_argument("scenario")
    s.add_argument("--methods", default=None,
                   help="comma-separated method names (default: every heuristic plus the best "
                        "exact method)")
    s.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT,
                   help=f"seconds per method (default {DEFAULT_TIME_LIMIT:g})")
    s.add_argument("--out", "-o", default=None,
                   help="report NAME.html (default reports/SCENARIO.html); NAME.csv, NAME.json "
                        "and NAME.plans/ beside it")
    s.add_argument("--option", "-O", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method option, repeatable, e.g. -O random.seed=3")
    s.add_argument("--hard-timeout", type=float, default=None, metavar="SECONDS",
                   help="run each method in its own process and kill it after SECONDS (start-up "
                        "included: about 1 s, more on a first run while numba compiles): a "
                        "method that overruns its time limit becomes a timeout_no_solution row")
    s.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    s.set_defaults(func=cmd_compare)
