"""Relax-and-fix: a start for the exact methods under ``makespan``, between the local search and
the solver.

1. *Relax*: the model with only the heaviest half of the requests integral (the rest continuous)
   is solved for the least T. The heavy requests are those with the largest single load on a
   resource the LP relaxation prices (its dual is positive): they are what makes the packing
   lumpy, and the continuous rest lets their joint choice see what the others will fill.
2. *Fix*: the heavy requests' prefill and decode clusters are fixed to that choice, and the whole
   model, the rest now integral, is solved by the method's own solver for the least T.

The plan of step 2 is a plan of the full model (nothing is relaxed in it), re-scored by the
evaluator; it becomes the start of the main solve only if it is better than the local search's.
Neither step's bound is a bound of the problem (step 1 fixes nothing but is cut short; step 2 is a
restriction), so none is reported.

Measured on the 200-request benchmark (seed 1, LP 12.704073; ``benchmarks/probe_gap.py --heavy``):
with the 100 heaviest fixed, CP-SAT finds a plan under LP x 1.00066 (what a 1e-4 proof needs)
in about 3 s, where CP-SAT on the full model found none in 60 s with one seed in two. With
more fixed (120) the restriction has no plan under that cap; with a stage per 40 requests
(relax-and-fix in three rounds) the plan was worse (LP x 1.00083).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from planner.exact._backends.rows import RowBuffer, SolveOutcome
from planner.exact._model import Items, Objective, PlacementModel, Vars
from planner.instance import Instance
from planner.metrics import Metrics, evaluate_arrays
from planner.plan import Plan

log = logging.getLogger(__name__)

MIN_REQUESTS = 40  # below, the solver alone is quick: no stage
HEAVY_SHARE = 0.5  # the share of requests integral in step 1 and fixed in step 2
RELAX_SHARE = 0.1  # step 1's share of the run's time limit
FIX_SHARE = 0.25  # step 2's


def heavy_order(inst: Instance, items: Items, prices: tuple[np.ndarray, np.ndarray, np.ndarray]
                ) -> np.ndarray:
    """Requests by their largest single load on a resource the LP prices, heaviest first."""
    lc, lm, ll = (p > 0 for p in prices)
    parts = [(items.mem * lm).max(1), (items.pre * lc).max(1), (items.dec * lc).max(1)]
    if inst.n_links:
        parts.append((items.kvb[:, None] / inst.bandwidth_Bps[None, :] * ll).max(1))
    return np.argsort(-np.maximum.reduce(parts), kind="stable")


def relax_and_fix(inst: Instance, items: Items, model: PlacementModel, buf: RowBuffer, v: Vars,
                  obj: Objective, prices: tuple[np.ndarray, np.ndarray, np.ndarray],
                  relax_fn: Callable[..., SolveOutcome], fix_fn: Callable[..., SolveOutcome],
                  *, t_ub: float, t_lb: float, relax_limit: float, fix_limit: float,
                  num_workers: int, seed: int, rel_gap: float, info: dict[str, Any]
                  ) -> tuple[Plan | None, Metrics | None]:
    """Steps 1 and 2 on the built model ``buf`` (its bounds and integrality are restored
    after). ``relax_fn``, ``fix_fn``: the solvers of steps 1 and 2 (a backend's ``solve_fn``
    signature); step 1 needs one that takes continuous variables. Returns step 2's plan and
    figures (None when a step found nothing)."""
    t0 = time.perf_counter()
    heavy = heavy_order(inst, items, prices)[: int(HEAVY_SHARE * items.n)]
    light = np.ones(items.n, dtype=bool)
    light[heavy] = False
    choice = [j for i in range(items.n) for j in [*v.a[i].values(), *v.b[i].values()]]
    owner = np.repeat(np.arange(items.n),
                      [len(v.a[i]) + len(v.b[i]) for i in range(items.n)])
    saved = {j: dataclasses.replace(buf.vars[j]) for j in choice}
    try:
        for j, i in zip(choice, owner.tolist(), strict=True):
            if light[i]:
                buf.vars[j].integer = False
        out = relax_fn(buf, obj, v.T, None, t_ub=t_ub, t_lb=t_lb, time_limit=relax_limit,
                       num_workers=num_workers, seed=seed, rel_gap=rel_gap)
        info["relax_fix_relaxed"] = out.objective
        for j in choice:
            buf.vars[j].integer = saved[j].integer
        if out.value is None:
            info["relax_fix"] = f"step 1 found nothing ({out.termination})"
            return None, None
        for j, i in zip(choice, owner.tolist(), strict=True):
            if not light[i]:
                buf.vars[j].lb = buf.vars[j].ub = float(round(out.value(j)))
        t1 = time.perf_counter()
        out = fix_fn(buf, obj, v.T, None, t_ub=t_ub, t_lb=t_lb,
                     time_limit=max(0.2, fix_limit + relax_limit - (t1 - t0)),
                     num_workers=num_workers, seed=seed, rel_gap=rel_gap)
    finally:
        for j, spec in saved.items():
            buf.vars[j] = spec
    info["relax_fix_s"] = time.perf_counter() - t0
    if out.info.get("interrupted"):  # Ctrl-C in step 2: the run stops (planner.exact._run)
        info["interrupted"] = True
    if out.value is None:
        info["relax_fix"] = f"step 2 found nothing ({out.termination})"
        return None, None
    plan = model.plan_of_values(out.value)
    m = evaluate_arrays(inst, plan)
    info["relax_fix"] = f"{len(heavy)} requests fixed; {out.termination}"
    info["relax_fix_objective"] = m.objective if m.feasible else None
    return (plan, m) if m.feasible else (None, None)
