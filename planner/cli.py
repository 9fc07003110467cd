"""The command line: the only place that prints or configures logging.

Exit codes: 0 success, 1 a method failed or found no plan, 2 bad input (scenario, plan, option).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

from planner.api import as_instance, check_time_limit, evaluate, solve
from planner.catalog import check_models_dir
from planner.metrics import arrival_notes, unplaceable
from planner.plan import SOLVED, fmt, plan_to_dict, read_plan_file, write_json_atomic
from planner.registry import methods
from planner.report.io import check_output, dumps, not_empty
from planner.scenario.errors import InputError, Problem
from planner.scenario.load import load_scenario

log = logging.getLogger("planner")

# modules that add subcommands: each has add_commands(subparsers), its handlers return exit codes
_COMMAND_MODULES = ("planner.report.cli", "planner.sweep.cli", "planner.simulate.cli")


def _options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError("--option", [Problem("--option", "expected key=value", item)])
        out[key.strip()] = value.strip()
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    sc = load_scenario(args.scenario)
    wl = sc.workload
    print(f"OK {args.scenario}: {sc.name}: {len(wl)} requests ({wl.source}), "
          f"{len(sc.clusters)} clusters in {len(sc.datacenters)} datacenters, "
          f"{len(sc.links)} links, objective {sc.objective}")
    inst = as_instance(sc)
    big, most = unplaceable(inst)
    if big.size:
        r = int(big[0])
        print(f"warning: {big.size} request(s) fit no decode cluster's KV (e.g. {inst.ids[r]}: "
              f"{int(inst.prompt_tokens[r] + inst.output_tokens[r])} tokens; the largest replica "
              f"holds {most}): only the served objective with a horizon can refuse them",
              file=sys.stderr)
    for note in arrival_notes(inst):
        print(f"warning: {note}", file=sys.stderr)
    return 0


def cmd_solve(args: argparse.Namespace) -> int:
    sc = load_scenario(args.scenario)
    inst = as_instance(sc)
    check_time_limit(args.time_limit, "--time-limit")
    options = _options(args.option)
    time_limit = args.time_limit
    if "time_limit" in options:  # -O time_limit=5 is --time-limit 5, once
        if time_limit is not None:
            raise InputError("--option", [Problem(
                "--option", "time_limit given twice (--time-limit and -O time_limit)",
                options["time_limit"])])
        check_time_limit(options["time_limit"], "--option time_limit")
        time_limit = float(options.pop("time_limit"))
    not_empty(args.out, "--out")
    out = Path(args.out) if args.out else Path(f"{Path(args.scenario).stem}.{args.method}.plan.json")
    check_output(out, "--out", inputs=sc.input_files())
    from planner.report.compare import warm_heuristic

    warm_heuristic(args.method)  # its wall_s without the one-time compile (as compare's)
    result = solve(inst, method=args.method, time_limit=time_limit, **options)
    batch = result.info.get("batch_objective")
    what, unit = ((f"batch {batch} of the decode replicas", "s") if batch else
                  (sc.objective, {"makespan": "s", "cost": "$", "served": "requests"}[sc.objective]))
    print(f"{args.method}: status {result.status}, objective ({what}, {unit}) "
          f"{fmt(result.objective)}, bound {fmt(result.bound)}, gap {fmt(result.gap)}, "
          f"{result.wall_s:.3f} s" + (f" [{result.termination}]" if result.termination else ""))
    if result.plan is None:
        print(f"no plan written: {result.termination or result.status}", file=sys.stderr)
        return 1
    write_json_atomic(out, plan_to_dict(inst, result))
    m = evaluate(inst, result.plan)
    print(f"plan written to {out}: fluid makespan {m.makespan_s:.6g} s ({m.bottleneck}), cost "
          f"${m.cost:.6g}, served {m.served}, refused {m.refused}")
    for note in arrival_notes(inst, m.makespan_s):
        print(f"note: {note}", file=sys.stderr)
    if result.info.get("interrupted"):
        return 130  # Ctrl-C: the best plan so far, kept
    if result.status not in SOLVED:
        # a plan that is no solution (over the horizon, refusing, a KV misfit) is written for its
        # figures and replay, but the method found no solution: the same exit as no plan
        print(f"the plan is no solution ({result.status}): "
              f"{'; '.join(m.problems) or result.termination}", file=sys.stderr)
        return 1
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    sc = load_scenario(args.scenario)
    inst = as_instance(sc)
    plan, meta = read_plan_file(args.plan, inst)
    m = evaluate(inst, plan)
    d = m.to_dict()
    # the file's status and figures are its method's claims, read back but not re-proven; the
    # objective is the evaluator's, and a plan that is no solution claims none
    if args.json:
        d["method"] = meta.get("method")
        d["status_claimed"] = meta.get("status")
        d["solution"] = not m.problems
        if m.problems:
            d["objective"] = None
            d["problems"] = list(m.problems)
        print(dumps(d), end="")  # strict JSON: a non-finite figure is null
        return 0
    own = meta.get("objective_name")
    claim = f" for its {own}" if own and own != sc.objective else ""  # a batch method's problem
    said = meta.get("status", "?")
    print(f"{sc.name} / plan of {meta.get('method', '?')} (the file says {said}{claim}; "
          "figures below recomputed from the plan)")
    if m.problems:
        print(f"  NOT A SOLUTION ({m.objective_name} not claimed): {'; '.join(m.problems)}")
    else:
        print(f"  objective ({m.objective_name}): {m.objective:.6g}")
    print(f"  makespan: {m.makespan_s:.6g} s (bottleneck {m.bottleneck})")
    print(f"  cost: ${m.cost:.6g} (rent ${m.rent:.6g} over {m.period_s:.6g} s, "
          f"egress ${m.egress_cost:.6g})")
    print(f"  served {m.served}, refused {m.refused}, prefix tokens reused "
          f"{m.prefix_tokens_reused}" + ("" if m.within_horizon else "  EXCEEDS HORIZON"))
    print(f"  {'cluster':<20} {'load_s':>12} {'memory_load_s':>14} {'util':>7}")
    for n, c in d["clusters"].items():
        print(f"  {n:<20} {c['load_s']:>12.6g} {c['memory_load_s']:>14.6g} "
              f"{c['utilization']:>7.1%}")
    if d["links"]:
        print(f"  {'link':<20} {'GB':>12} {'load_s':>14} {'util':>7}")
        for n, lk in d["links"].items():
            print(f"  {n:<20} {lk['bytes'] / 1e9:>12.6g} {lk['load_s']:>14.6g} "
                  f"{lk['utilization']:>7.1%}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    for spec in methods():
        opts = ", ".join(f"{k}={v!r}" for k, v in spec.options.items())
        print(f"{spec.name:<16} [{spec.kind}] {spec.description}" + (f"  (options: {opts})"
                                                                     if opts else ""))
    return 0


class _Parser(argparse.ArgumentParser):
    """A usage error is one line (which command, what is wrong, where the help is) and exit 2,
    like every other input error; ``-h`` still prints the full usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} ({self.prog} -h shows the usage)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="planner", description="Plan where LLM inference runs.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("validate", help="check a scenario file")
    s.add_argument("scenario")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("solve", help="run one method and write its plan")
    s.add_argument("scenario")
    s.add_argument("--method", "-m", default="greedy")
    s.add_argument("--time-limit", type=float, default=None, help="seconds")
    s.add_argument("--out", "-o", default=None, help="plan JSON (default SCENARIO.METHOD.plan.json)")
    s.add_argument("--option", "-O", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, repeatable")
    s.set_defaults(func=cmd_solve)

    s = sub.add_parser("evaluate", help="score a plan with the independent evaluator")
    s.add_argument("scenario")
    s.add_argument("plan")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("methods", help="list the registered methods")
    s.set_defaults(func=cmd_methods)
    for mod in _COMMAND_MODULES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name is not None and mod.startswith(exc.name):
                continue
            raise
        module.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else
                                                 logging.INFO if args.verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_models_dir()  # a typo would fall back to the project's cards unseen
        return int(args.func(args))
    except InputError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 0
    except OSError as exc:  # a path the system refuses (a folder for a file, no permission...)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("out of memory: the scenario is too large for this machine (fewer requests or "
              "replicas?)", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a user never sees a traceback; -vv logs it
        log.debug("unexpected error", exc_info=True)
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"planner: unexpected {type(exc).__name__}: {first} (planner -vv ... shows where)",
              file=sys.stderr)
        return 1
