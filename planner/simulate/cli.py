"""``planner simulate SCENARIO PLAN.json [--json] [--set KEY=VALUE ...]``."""

from __future__ import annotations

import argparse
from typing import Any

from planner.scenario.errors import InputError, Problem


def _settings(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError("--set", [Problem("--set", "expected key=value", item)])
        key = key.strip()
        if key.startswith("slo."):
            out.setdefault("slo", {})[key[4:]] = value.strip()
        else:
            out[key] = value.strip()
    return out


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.1f}"


def cmd_simulate(args: argparse.Namespace) -> int:
    from planner.api import as_instance
    from planner.metrics import evaluate_arrays
    from planner.plan import read_plan_file
    from planner.report.io import dumps
    from planner.scenario.load import load_scenario
    from planner.simulate import make_config, simulate

    sc = load_scenario(args.scenario)
    inst = as_instance(sc)
    plan, meta = read_plan_file(args.plan, inst)
    cfg = make_config(sc.extra, file=args.scenario, **_settings(args.set))
    replay = simulate(inst, plan, config=cfg)
    fluid = evaluate_arrays(inst, plan, check=False).makespan_s
    if args.json:
        d = replay.to_dict(timelines=args.timelines, requests=args.requests)
        d["method"] = meta.get("method")
        d["fluid_makespan_s"] = fluid
        print(dumps(d), end="")  # strict JSON: a non-finite figure is null
        return 0
    s = replay.summary()
    print(f"{sc.name} / plan of {meta.get('method', '?')}: replayed {inst.n_requests} requests in "
          f"{s['wall_s']:.2f} s ({s['events']} events)")
    # a proven lower bound with decode_step=full only (planner/simulate/engine.py)
    what = "fluid bound" if cfg.decode_step == "full" else "fluid makespan, not a bound here"
    print(f"  makespan {s['makespan_s'] or 0:.6g} s ({what} {fluid:.6g} s), completed "
          f"{s['completed']}, refused {s['refused']}, too large {s['too_large']}, "
          f"preemptions {s['preemptions']}")
    print(f"  {'latency (ms)':<14} {'mean':>10} {'p50':>10} {'p90':>10} {'p99':>10}")
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        lat = s[key]
        print(f"  {key[:-2]:<14} " + " ".join(f"{_ms(lat[k]):>10}" for k in
                                              ("mean", "p50", "p90", "p99")))
    if cfg.slo:
        print(f"  goodput {s['goodput']} ({s['goodput_fraction']:.1%}, {s['goodput_rps']:.4g}/s) "
              f"within SLO {cfg.slo}")
    print(f"  {'replica':<22} {'peak GB':>9} {'cap GB':>8} {'busy s':>10} {'preempt':>8}")
    for r in replay.replicas:
        print(f"  {r.name:<22} {r.peak_bytes / 1e9:>9.3f} {r.capacity_bytes / 1e9:>8.3g} "
              f"{r.busy_s:>10.4g} {r.preemptions:>8}")
    for lk in replay.links:
        util = lk.busy_s / replay.makespan_s if replay.makespan_s > 0 else 0.0
        print(f"  link {lk.name:<17} {lk.bytes / 1e9:>9.3f} GB, busy {lk.busy_s:.4g} s "
              f"({util:.1%})")
    return 0


def add_commands(sub: Any) -> None:
    s = sub.add_parser("simulate", help="replay a plan through time (continuous batching, KV growth)")
    s.add_argument("scenario")
    s.add_argument("plan")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")
    s.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE",
                   help="a replay setting, repeatable (queue=sjf, preemption=swap, slo.ttft_s=2)")
    s.add_argument("--timelines", action="store_true", help="with --json: memory/link timelines")
    s.add_argument("--requests", action="store_true", help="with --json: one row per request")
    s.set_defaults(func=cmd_simulate)
