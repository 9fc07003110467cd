"""Probes of the 200-request integrality gap (benchmarks/results/exact.md): capped runs, where T's
domain is cut at a multiple of the LP relaxation (a found plan or a proof that none exists), and
partial-integrality relaxations, where only the K heaviest requests are integral (a valid lower
bound, solved by SCIP).

    python benchmarks/probe_gap.py --seed 1 --cap 1.0005                 # CP-SAT, 2 workers
    python benchmarks/probe_gap.py --seed 1 --cap 1.0003 --solver scip   # independent check
    python benchmarks/probe_gap.py --seed 1 --partial 20,40,80 --rank share
    python benchmarks/probe_gap.py --seed 1 --cap 1.0006 --param num_violation_ls=1
    python benchmarks/probe_gap.py --seed 1 --dive 40 --time-limit 30    # LP dive, exact tail
    python benchmarks/probe_gap.py --seed 1 --heavy 100 --cap 1.00066 --param stop_after_first_solution=true
                                              # relax-and-fix by hand: K heaviest fixed, the rest
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_exact import scenario  # noqa: E402

from planner import load_scenario  # noqa: E402
from planner.api import as_instance  # noqa: E402
from planner.exact._backends.rows import RowBuffer  # noqa: E402
from planner.exact._model import PlacementModel, request_items  # noqa: E402
from planner.exact.relax_fix import heavy_order  # noqa: E402
from planner.metrics import evaluate_arrays  # noqa: E402


def lp_relaxation(inst, items):  # noqa: ANN001, ANN201
    from planner.exact._backends.ortools_mip import solve_lp
    from planner.exact.aggregated import lp_directions

    model = PlacementModel(inst, items, symmetry=False)
    buf = RowBuffer()
    v = model.build(buf, float("inf"))
    _, _, f_lp, duals = solve_lp(buf, model.objective(), v.T, time_limit=30.0, num_workers=1)
    return f_lp, lp_directions(inst, model, duals)[0][1:]


def capped(inst, items, lp: float, cap: float, solver: str, time_limit: float, symmetry: bool,
           params: dict[str, str] | None = None) -> str:
    model = PlacementModel(inst, items, symmetry=symmetry)
    buf = RowBuffer()
    v = model.build(buf, lp * cap)
    t0 = time.perf_counter()
    if solver == "scip":
        from planner.exact._backends.ortools_mip import solve_linear_solver
        out = solve_linear_solver(buf, model.objective(), v.T, None, solver="SCIP",
                                  time_limit=time_limit, num_workers=1, seed=0, rel_gap=1e-9)
    else:
        from planner.exact._backends.cpsat_backend import solve_cpsat
        out = solve_cpsat(buf, model.objective(), v.T, None, t_ub=lp * cap, time_limit=time_limit,
                          num_workers=2, seed=0, rel_gap=1e-9, resolution=10**9, bisect=False,
                          params=params)
    wall = time.perf_counter() - t0
    text = f"cap LP x {cap}: {out.status} ({out.termination}) in {wall:.1f} s"
    if out.value is not None:
        t = evaluate_arrays(inst, model.plan_of_values(out.value)).makespan_s
        text += f"; plan makespan {t:.6f} = LP x {t / lp:.6f} (evaluator)"
    return text


def min_t_solver(buf, T: int, name: str, integral=lambda j, sp: False):  # noqa: ANN001, ANN201
    """An OR-Tools linear_solver model of ``buf`` minimising T; ``integral(j, spec)`` picks the
    integer variables. Returns the solver and its variables."""
    from ortools.linear_solver import pywraplp

    s = pywraplp.Solver.CreateSolver(name)
    inf = s.infinity()
    xs = [(s.IntVar if integral(j, sp) else s.NumVar)(sp.lb, inf if math.isinf(sp.ub) else sp.ub, "")
          for j, sp in enumerate(buf.vars)]
    for row in buf.rows:
        ct = s.RowConstraint(-inf if math.isinf(row.lo) else row.lo,
                             inf if math.isinf(row.hi) else row.hi, "")
        for i, c in zip(row.idx.tolist(), row.coef.tolist(), strict=True):
            ct.SetCoefficient(xs[i], c)
    s.Objective().SetCoefficient(xs[T], 1.0)
    s.Objective().SetMinimization()
    return s, xs


def owned_model(inst, items):  # noqa: ANN001, ANN201
    """The model (symmetry rows in, T uncapped), its rows, variables, and each choice variable's
    request."""
    model = PlacementModel(inst, items, symmetry=True)
    buf = RowBuffer()
    v = model.build(buf, float("inf"))
    owner = {x: i for i in range(items.n) for x in [*v.a[i].values(), *v.b[i].values(), *v.w[i].values()]}
    return model, buf, v, owner


def outcome_line(what: str, res, inst, model, lp: float, t0: float) -> str:  # noqa: ANN001
    """A solve's status and its plan's makespan as the evaluator scores it."""
    text = f"{what}: {res.status}"
    if res.value is not None:
        t = evaluate_arrays(inst, model.plan_of_values(res.value)).makespan_s
        text += f", plan makespan {t:.6f} = LP x {t / lp:.6f} (evaluator)"
    return text + f"; {time.perf_counter() - t0:.1f} s in all"


def partial_solver(buf, v, owner, heavy, time_limit: float):  # noqa: ANN001, ANN201
    """SCIP minimising T with only the ``heavy`` requests' variables integral."""
    integral = set(heavy.tolist())
    s, xs = min_t_solver(buf, v.T, "SCIP",
                         lambda j, sp: sp.integer and owner.get(j, -1) in integral)
    s.SetTimeLimit(int(time_limit * 1000))
    return s, xs


def partial(inst, items, lp: float, lam, ks: list[int], rank: str, time_limit: float) -> list[str]:
    from ortools.linear_solver import pywraplp

    from planner.exact.bounds import PairCosts

    if rank == "share":  # the request's largest load on a resource the LP prices
        order = heavy_order(inst, items, lam)
    else:  # the request's cheapest cost at the LP's dual prices
        order = np.argsort(-PairCosts(inst).min_cost(*lam))
    model, buf, v, owner = owned_model(inst, items)
    out = []
    for k in ks:
        s, _ = partial_solver(buf, v, owner, order[:k], time_limit)
        p = pywraplp.MPSolverParameters()
        p.SetDoubleParam(p.RELATIVE_MIP_GAP, 1e-6)
        t0 = time.perf_counter()
        code = s.Solve(p)
        b = s.Objective().BestBound()
        word = {pywraplp.Solver.OPTIMAL: "optimal"}.get(code, f"code {code}")
        out.append(f"K={k} integral ({rank}): {word} in {time.perf_counter() - t0:.1f} s, "
                   f"bound {b:.6f} = LP x {b / lp:.6f}")
    return out


def dive(inst, items, lp: float, lam, free: int, step: int, time_limit: float) -> list[str]:
    """LP diving: fix the heaviest requests (rank ``share``), ``step`` at a time, to their largest
    LP share (prefill and decode cluster), re-solving the LP (GLOP) after each step, until
    ``free`` remain; then solve the rest exactly with CP-SAT (min T, 2 workers)."""

    from planner.exact._backends.cpsat_backend import solve_cpsat

    model = PlacementModel(inst, items, symmetry=False)
    buf = RowBuffer()
    v = model.build(buf, float("inf"))
    t0 = time.perf_counter()
    s, xs = min_t_solver(buf, v.T, "GLOP")
    s.Solve()
    fixed: dict[int, float] = {}
    todo = heavy_order(inst, items, lam)[: max(0, items.n - free)].tolist()
    while todo:
        chunk, todo = todo[:step], todo[step:]
        snap = [x.solution_value() for x in xs]
        for i in chunk:
            for d in (v.a[i], v.b[i]):
                if d:
                    top = max(d, key=lambda k, d=d: snap[d[k]])
                    for k, j in d.items():
                        fixed[j] = 1.0 if k == top else 0.0
                        xs[j].SetBounds(fixed[j], fixed[j])
        s.Solve()
    t_dive = s.Objective().Value()
    out = [f"dive: {items.n - free} requests fixed ({step} per LP), LP of the rest {t_dive:.6f} = "
           f"LP x {t_dive / lp:.6f} ({time.perf_counter() - t0:.1f} s)"]
    for j, val in fixed.items():
        buf.vars[j].lb = buf.vars[j].ub = val
    cap = t_dive * 1.01
    buf.vars[v.T].ub = cap
    res = solve_cpsat(buf, model.objective(), v.T, None, t_ub=cap, time_limit=time_limit, num_workers=2,
                      seed=0, rel_gap=1e-9, resolution=10**9, bisect=False)
    out.append(outcome_line(f"tail ({free} free, CP-SAT)", res, inst, model, lp, t0))
    return out


def heavy(inst, items, lp: float, lam, ks: list[int], time_limit: float, cap: float | None,
          params: dict[str, str] | None = None, stage_limit: float = 10.0) -> list[str]:
    """Heavy first: SCIP solves the model with only the K heaviest requests (rank ``share``)
    integral, those K are fixed to its choice, and CP-SAT (2 workers) then solves the whole model
    for the rest (min T, or feasibility under LP x ``cap``)."""
    from planner.exact._backends.cpsat_backend import solve_cpsat

    order = heavy_order(inst, items, lam)
    model, buf, v, owner = owned_model(inst, items)
    t0 = time.perf_counter()
    out = []
    for kk in ks:
        integral = set(order[:kk].tolist())
        s, xs = partial_solver(buf, v, owner, order[:kk], stage_limit)
        s.Solve()
        t_part = s.Objective().Value()
        out.append(f"heavy K={kk}: partial MIP T {t_part:.6f} = LP x {t_part / lp:.6f} "
                   f"({time.perf_counter() - t0:.1f} s)")
        for i in integral:
            for d in (v.a[i], v.b[i]):
                for j in d.values():
                    buf.vars[j].lb = buf.vars[j].ub = round(xs[j].solution_value())
    k = ks[-1]
    t_ub = lp * cap if cap else lp * 1.01
    buf.vars[v.T].ub = t_ub
    res = solve_cpsat(buf, model.objective(), v.T, None, t_ub=t_ub, time_limit=time_limit,
                      num_workers=2, seed=0, rel_gap=1e-9 if cap else 1e-4, resolution=10**9,
                      bisect=not cap, params=params)
    out.append(outcome_line(f"rest ({items.n - k} free, CP-SAT{' cap ' + str(cap) if cap else ''})",
                            res, inst, model, lp, t0))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--cap", type=float, help="cap T at LP x CAP")
    ap.add_argument("--solver", choices=("cpsat", "scip"), default="cpsat")
    ap.add_argument("--no-symmetry", action="store_true")
    ap.add_argument("--partial", help="K values: only the K heaviest requests integral")
    ap.add_argument("--rank", choices=("cost", "share"), default="cost")
    ap.add_argument("--param", action="append", default=[],
                    help="CP-SAT parameter NAME=VALUE for --cap (repeatable)")
    ap.add_argument("--dive", type=int, metavar="FREE", help="LP dive until FREE requests remain")
    ap.add_argument("--dive-step", type=int, default=5)
    ap.add_argument("--stage-limit", type=float, default=10.0)
    ap.add_argument("--heavy", metavar="K1,K2",
                    help="fix the K heaviest to a partial-integrality solution, solve the rest")
    ap.add_argument("--time-limit", type=float, default=60.0)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    inst = as_instance(load_scenario(scenario(a.requests, seed=a.seed)))
    items = request_items(inst)
    lp, lam = lp_relaxation(inst, items)
    print(f"seed {a.seed}, {a.requests} requests: LP relaxation {lp:.6f}")
    if a.heavy is not None:
        for line in heavy(inst, items, lp, lam, [int(k) for k in a.heavy.split(",")],
                          a.time_limit, a.cap, dict(kv.split("=", 1) for kv in a.param),
                          a.stage_limit):
            print(line, flush=True)
        return 0
    if a.cap:
        params = dict(kv.split("=", 1) for kv in a.param)
        print(capped(inst, items, lp, a.cap, a.solver, a.time_limit, not a.no_symmetry, params))
    if a.dive is not None:
        for line in dive(inst, items, lp, lam, a.dive, a.dive_step, a.time_limit):
            print(line, flush=True)
    if a.partial:
        for line in partial(inst, items, lp, lam, [int(k) for k in a.partial.split(",")], a.rank,
                            a.time_limit):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
