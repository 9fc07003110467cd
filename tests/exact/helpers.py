"""Small instances and a brute force over every plan, scored by the evaluator."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np

from planner import load_scenario
from planner.api import as_instance, solve
from planner.metrics import evaluate_arrays
from planner.plan import Plan

_spec = importlib.util.spec_from_file_location(
    "tests_root_conftest", Path(__file__).resolve().parents[1] / "conftest.py")
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
make_scenario = _root.make_scenario


def instance(*args, **kw):
    return as_instance(load_scenario(make_scenario(*args, **kw)))


def run(inst, method: str, **opts):
    name, _, solver = method.partition(":")
    if solver:
        opts["solver"] = solver
    opts.setdefault("time_limit", 10)
    res = solve(inst, method=name, **opts)
    if res.plan is not None:
        ev = evaluate_arrays(inst, res.plan).objective
        assert res.objective is not None and abs(res.objective - ev) <= 1e-9 * max(1, abs(ev)), \
            (method, res.objective, ev)
    if res.status == "optimal":  # optimal means proven within the stated tolerance, no more
        assert res.gap is not None and res.gap <= res.info["rel_gap"], (method, res.gap, res.info)
    return res


def all_plans(inst):
    """Every plan: each request on each valid (prefill, decode) pair, or refused for ``served``
    with a horizon."""
    c = inst.n_clusters
    options = []
    for r in range(inst.n_requests):
        opts = []
        for p in range(c):
            if not inst.can_prefill[p]:
                continue
            if inst.output_tokens[r] == 0:
                opts.append((p, -1))
                continue
            opts += [(p, d) for d in range(c) if inst.valid_pairs[p, d]]
        if inst.objective == "served" and inst.horizon_s is not None:
            opts.append((-1, -1))
        options.append(opts)
    for combo in itertools.product(*options):
        yield Plan(np.array([x[0] for x in combo]), np.array([x[1] for x in combo]))


def brute_force(inst) -> tuple[float, Plan]:
    """The optimum over every assignment (and refusal for ``served``), lexicographic for served
    (most served within the horizon, then least makespan)."""
    best, best_key, best_plan = None, None, None
    for plan in all_plans(inst):
        m = evaluate_arrays(inst, plan, check=False)
        if inst.objective in ("served", "cost") and not m.within_horizon:
            continue
        key = {"makespan": (m.makespan_s,), "cost": (m.cost,),
               "served": (-m.served, m.makespan_s)}[inst.objective]
        if best_key is None or key < best_key:
            best_key, best, best_plan = key, m.objective, plan
    return best, best_plan
