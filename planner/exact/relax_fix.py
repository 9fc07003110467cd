"""Relax-and-fix: a start for the exact methods under ``makespan``, between the local search and
the solver (:data:`ROUNDS`: one round by default, half the requests heavy):

1. *Relax*: the model with only the heavy requests' cluster choices integral (the others'
   continuous; the prefix-block variables stay integral) is solved for the least T. The heavy
   requests are those with the largest single load on a resource the LP relaxation prices (its
   dual is positive; without the LP's prices there is no stage): they are what makes the
   packing lumpy, and the continuous rest lets their joint choice see what the others will fill.
2. *Fix*: the heavy requests' prefill and decode clusters are fixed to that choice, and the whole
   model, the rest now integral, is solved by the method's own solver for the least T.

The plan of step 2 is a plan of the full model (nothing is relaxed in it), re-scored by the
evaluator; it becomes the start of the main solve only if it is better than the local search's.
Neither step's bound is a bound of the problem (step 1 is cut short, step 2 is a restriction:
its "optimal" in ``info["relax_fix_rounds"]`` is the restriction's), so none is reported.

Measured on the 200-request benchmark (seed 1, LP 12.704073; ``benchmarks/probe_gap.py --heavy``):
with the 100 heaviest fixed, CP-SAT finds a plan under LP x 1.00066 (what a 1e-4 proof needs)
in about 3 s, where CP-SAT on the full model found none in 60 s with one seed in two. With
more fixed (120) the restriction has no plan under that cap. The best share differs between
workloads (seed 5: 80 fixed gave 13.7126, 100 fixed 13.7221); more rounds were measured and
not kept (see ROUNDS).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from planner.exact._backends.rows import RowBuffer, SolveOutcome
from planner.exact._model import Items, Objective, PlacementModel, Vars
from planner.instance import Instance
from planner.metrics import Metrics, evaluate_arrays
from planner.plan import Plan

MIN_REQUESTS = 40  # below, the solver alone is quick: no stage
# one round per (share of the requests integral in step 1 and fixed in step 2, share of the
# stage's time), in this order. One round: with three ((0.5, 0.6), (0.4, 0.2), (0.3, 0.2)) and
# 55 % of the time, seed 5 of the 200-request benchmark ended at gap 2.5e-4 instead of 7.8e-4,
# but seed 1 was proven in one run of three, the later rounds taking the proof's time
ROUNDS = ((0.5, 1.0),)
SHARE_OF_RUN = 0.35  # the stage's share of the time left to the run
STEP1_SHARE = 0.3  # step 1's share of a round's time
# a round with less time is not started: at the default time_limit=10 (2 s rounds) a review's
# runs on 40 to 1,000 requests never got a better start from it (step 1 unsolved in its 0.7 s,
# or step 2 without a plan)
MIN_ROUND_S = 5.0


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
                  *, t_ub: float, t_lb: float, time_limit: float, num_workers: int, seed: int,
                  rel_gap: float, info: dict[str, Any],
                  rounds: tuple[tuple[float, float], ...] = ROUNDS
                  ) -> tuple[Plan | None, Metrics | None]:
    """One round of steps 1 and 2 per (share of heavy requests, share of ``time_limit``) in
    ``rounds``, on the built model ``buf`` (left as it is: each round solves a copy). Time a round
    leaves goes to the next. ``relax_fn``, ``fix_fn``: the solvers of steps 1 and 2 (a backend's
    ``solve_fn`` signature); step 1 needs one that takes continuous variables. It gets no hint:
    from the start's values SCIP returned heavy choices near the start's, and step 2 then ended
    at 12.7145 and 12.7156 where without the hint it reached 12.7117 (200 requests, seed 1, two
    runs each). Each later round looks only for a
    plan better than the best so far; the rounds stop once a plan is within ``rel_gap`` of
    ``t_lb``, or on Ctrl-C (``info["interrupted"]``). Returns the best plan and its figures (None
    when no round found one)."""
    t0 = time.perf_counter()
    order = heavy_order(inst, items, prices)
    choice = np.array([j for i in range(items.n) for j in [*v.a[i].values(), *v.b[i].values()]],
                      dtype=np.int64)
    owner = np.repeat(np.arange(items.n), [len(v.a[i]) + len(v.b[i]) for i in range(items.n)])
    # the symmetry rows (identical clusters ordered by load) stay: with the heavy requests fixed
    # they can bar the plans of the other orientation (found by review: 10.4 against the optimum
    # 9.9, or no plan under a horizon; the main solve, unrestricted, then finds the optimum), but
    # without them step 2 searched worse: on the 200-request benchmark's five workloads, one run
    # each, 1 proven against 2 with them (seed 3: gap 1.7e-4 against optimal in 18 s)
    best: tuple[Plan, Metrics] | None = None
    done: list[dict[str, Any]] = []
    info["relax_fix_rounds"] = done
    ends = np.cumsum([w for _, w in rounds]) * time_limit
    for (share, _), end in zip(rounds, ends, strict=True):
        budget = end - (time.perf_counter() - t0)
        if budget < MIN_ROUND_S:
            continue
        cap = t_ub if best is None else min(t_ub, best[1].makespan_s)
        heavy = np.zeros(items.n, dtype=bool)
        heavy[order[: int(share * items.n)]] = True
        work = RowBuffer()
        work.vars, work.rows = list(buf.vars), buf.rows
        work.vars[v.T] = dataclasses.replace(buf.vars[v.T], ub=min(buf.vars[v.T].ub, cap))
        plan, m, note = _round(model, work, v, obj, relax_fn, fix_fn, choice, heavy[owner],
                               t_ub=cap, t_lb=t_lb, budget=budget, num_workers=num_workers,
                               seed=seed, rel_gap=rel_gap)
        done.append({"share": share, "fixed": int(heavy.sum()), "note": note,
                     "objective": None if m is None else m.objective,
                     "s": round(time.perf_counter() - t0, 2)})
        if m is not None and (best is None or m.objective < best[1].objective):
            best = plan, m
        if note == "interrupted":
            info["interrupted"] = True
            break
        if best is not None and t_lb > 0 and best[1].objective <= t_lb * (1 + rel_gap):
            break
    info["relax_fix_s"] = time.perf_counter() - t0
    info["relax_fix_objective"] = None if best is None else best[1].objective
    kept = [r for r in done if best is not None and r["objective"] == best[1].objective]
    info["relax_fix"] = (f"{len(done)} round(s); the best fixed {kept[0]['fixed']} requests"
                         if kept else f"{len(done)} round(s), no plan")
    return best if best is not None else (None, None)


def _round(model: PlacementModel, work: RowBuffer, v: Vars, obj: Objective,
           relax_fn: Callable[..., SolveOutcome], fix_fn: Callable[..., SolveOutcome],
           choice: np.ndarray, fixed: np.ndarray, *, t_ub: float, t_lb: float, budget: float,
           num_workers: int, seed: int, rel_gap: float
           ) -> tuple[Plan | None, Metrics | None, str]:
    """Steps 1 and 2 on ``work`` (a copy of the model's variable list, whose entries it
    replaces) with the choice variables ``choice[fixed]`` integral, then fixed: the plan, its
    figures (None if a step found nothing or the plan fails the evaluator) and a note."""
    t0 = time.perf_counter()
    specs = list(work.vars)
    for j in choice[~fixed]:
        work.vars[j] = dataclasses.replace(specs[j], integer=False)
    out = relax_fn(work, obj, v.T, None, t_ub=t_ub, t_lb=t_lb, time_limit=STEP1_SHARE * budget,
                   num_workers=num_workers, seed=seed, rel_gap=rel_gap)
    if out.info.get("interrupted"):
        return None, None, "interrupted"
    if out.value is None:
        return None, None, f"step 1 found nothing ({out.termination})"
    for j in choice[~fixed]:
        work.vars[j] = specs[j]
    for j in choice[fixed]:
        val = float(round(out.value(int(j))))
        work.vars[j] = dataclasses.replace(specs[j], lb=val, ub=val)
    out = fix_fn(work, obj, v.T, None, t_ub=t_ub, t_lb=t_lb,
                 time_limit=max(0.2, budget - (time.perf_counter() - t0)),
                 num_workers=num_workers, seed=seed, rel_gap=rel_gap)
    # Ctrl-C in step 2: its plan so far is kept, and the run stops (planner.exact._run)
    stopped = bool(out.info.get("interrupted"))
    if out.value is None:
        return None, None, "interrupted" if stopped else f"step 2 found nothing ({out.termination})"
    plan = model.plan_of_values(out.value)
    m = evaluate_arrays(model.inst, plan)
    if not m.feasible:
        return None, None, "interrupted" if stopped else "step 2's plan fails the evaluator"
    return plan, m, "interrupted" if stopped else f"step 2: {out.termination}"
