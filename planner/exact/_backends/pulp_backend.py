"""PuLP translation: CBC (bundled) by default, any other PuLP solver by name."""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from planner.exact._backends.rows import (
    Clock,
    RowBuffer,
    SolveOutcome,
    cbc_bound,
    float_objective,
    parse_cbc_log,
    served_t_bound,
    to_problem_units,
)
from planner.exact._model import Objective

log = logging.getLogger(__name__)

CBC_THREADS = 0  # CBC's default, its serial code (see cbc_threads)
# integer variables from which CBC gets num_workers threads
CBC_PARALLEL_MIN_INTS = 200


def cbc_threads(n_integer: int, num_workers: int) -> int:
    """CBC's thread count: serial below ``CBC_PARALLEL_MIN_INTS`` integer variables, else
    ``num_workers``. CBC 2.10.3 (PuLP's bundled binary) with threads can leave its main thread
    waiting for a worker that never starts until the time limit (coin-or/Cbc#640; measured: 1
    run in 40 of a 4-request model under load ran its whole 10 s and ended "Stopped on time
    limit", its log showing "Thread 1 used 0 times, waiting to start 10.0"): a millisecond proof
    turned into an unproven time-out. On larger models threads help on some runs (50
    requests, 60 s, six runs with 2 threads: optimal once in 33 s, gaps 1.5e-4 once and 2.8e-3
    to 4.7e-3 four times; serial, two runs: 4.2e-3 both)."""
    return CBC_THREADS if n_integer < CBC_PARALLEL_MIN_INTS else max(1, num_workers)


def solve_pulp(buf: RowBuffer, obj: Objective, T: int, hint: dict[int, float] | None, *,
               solver: str, time_limit: float, num_workers: int, seed: int, rel_gap: float,
               ) -> SolveOutcome:
    import pulp

    clock = Clock()
    prob = pulp.LpProblem("placement", pulp.LpMinimize)
    xs = [pulp.LpVariable(v.name, lowBound=v.lb, upBound=None if math.isinf(v.ub) else v.ub,
                          cat=pulp.LpInteger if v.integer else pulp.LpContinuous)
          for v in buf.vars]
    terms, _ = float_objective(obj, T)
    prob.setObjective(pulp.LpAffineExpression([(xs[i], c) for i, c in terms]))
    for k, row in enumerate(buf.rows):
        e = pulp.LpAffineExpression(list(zip([xs[i] for i in row.idx], row.coef.tolist(),
                                             strict=True)))
        if row.lo == row.hi:
            prob.addConstraint(pulp.LpConstraint(e, pulp.LpConstraintEQ, f"r{k}", row.lo))
        else:
            if not math.isinf(row.hi):
                prob.addConstraint(pulp.LpConstraint(e, pulp.LpConstraintLE, f"r{k}", row.hi))
            if not math.isinf(row.lo):
                prob.addConstraint(pulp.LpConstraint(e, pulp.LpConstraintGE, f"r{k}g", row.lo))
    if hint:
        for i, val in hint.items():
            xs[i].setInitialValue(val)
    translate_s = clock()
    tmp = tempfile.mkdtemp(prefix="planner-cbc-")
    log_path = Path(tmp) / "cbc.log"
    name = solver.upper()
    budget = max(1.0, time_limit - clock())  # the limit counts the translation above
    info: dict[str, Any] = {}
    if name in ("CBC", "PULP_CBC_CMD"):
        threads = cbc_threads(sum(v.integer for v in buf.vars), num_workers)
        info["cbc_threads"] = threads
        s = pulp.PULP_CBC_CMD(msg=False, timeLimit=budget, threads=threads,
                              gapRel=rel_gap, warmStart=bool(hint), logPath=str(log_path),
                              options=[f"randomCbcSeed {max(1, seed)}"])
    else:
        s = pulp.getSolver(solver, msg=False, timeLimit=budget, gapRel=rel_gap,
                           warmStart=bool(hint), threads=num_workers)
    t0 = clock()
    try:
        code = prob.solve(s)
    except pulp.PulpSolverError as exc:
        return SolveOutcome("error", None, None, None, f"{solver}: {exc}")
    solve_s = clock() - t0
    status = pulp.LpStatus.get(code, str(code))
    sol_status = pulp.LpSolution.get(prob.sol_status, str(prob.sol_status))
    info.update(translate_s=translate_s, solve_s=solve_s, pulp_status=status,
                pulp_solution_status=sol_status)
    has_sol = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) or (
        status == "Optimal")
    value = (lambda i: float(xs[i].varValue or 0.0)) if has_sol else None
    f = pulp.value(prob.objective) if has_sol else None
    bound_f = None
    history = []
    if name in ("CBC", "PULP_CBC_CMD") and log_path.exists():
        cbc = parse_cbc_log(log_path.read_text(errors="replace"))
        info["cbc_result"] = cbc["result"]
        st, bound_f = cbc_bound(cbc, f, rel_gap)
        history = [(t, to_problem_units(obj, inc, False), to_problem_units(obj, b, True))
                   for t, inc, b in cbc["history"]]
        termination = f"CBC: {cbc['result'] or status}"
    else:
        # other solvers: PuLP's word only; "Optimal" at the time limit is not trusted
        timed_out = solve_s >= 0.97 * budget
        if status == "Optimal" and not timed_out:
            st = "optimal"
            bound_f = f - float(rel_gap) * abs(f) if (rel_gap > 0 and f is not None) else f
        elif status == "Infeasible":
            st = "infeasible"
        elif has_sol:
            st = "feasible"
        else:
            st = "no_solution"
        termination = f"{solver}: {status}" + (" (time limit reached)" if timed_out else "")
    try:
        for p in Path(tmp).iterdir():
            p.unlink()
        os.rmdir(tmp)
    except OSError:
        pass
    info["served_t_bound"] = served_t_bound(obj, bound_f)
    return SolveOutcome(st, value, to_problem_units(obj, f, False),
                        to_problem_units(obj, bound_f, True), termination, history, info)
