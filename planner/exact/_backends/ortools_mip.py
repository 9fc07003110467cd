"""OR-Tools translations: linear_solver for SCIP (and the other MIP solvers it ships), MathOpt
for HiGHS (never ``highspy`` in this process). Measured with OR-Tools 9.15 on the 50-request
benchmark: linear_solver's HiGHS ends a time-limited run with the unknown status 99, no
solution and a zero bound, and crashes on hints; MathOpt's returns its incumbent, its dual
bound and the termination reason."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from typing import Any

import numpy as np

from planner.exact._backends.rows import (
    Clock,
    RowBuffer,
    SolveOutcome,
    float_objective,
    on_sigint,
    served_t_bound,
    to_problem_units,
)
from planner.exact._model import Objective

log = logging.getLogger(__name__)


# SCIP settings that keep its proofs valid: SCIP 10.0 (OR-Tools 9.15) said "optimal" for a plan
# 6.5 times the optimum of a 3-request multi-hop cost model, with that plan as its bound (found
# by review, 1 in about 930 fuzzed runs); CBC and CP-SAT solve the same rows. Turning off its
# weak dual reductions alone fixes it (as does no presolve, or no probing).
SCIP_SAFE = (("misc/allowweakdualreds", "FALSE"),)
# SCIP with several threads solves concurrently after its presolve, and the concurrent solvers
# start their clocks afresh: the run passes its limit by about the presolve's time (found by
# review; `time_limit=8`, 2 threads against 1: 600 requests 3.2 s over against 0.1 s, 1,000
# requests 1.9 s against 0.1 s; 200 requests, 13.8 k nonzeros, 0.3 s against 0.05 s). Above
# this many nonzeros SCIP runs on one thread (`info["scip_threads"]`).
SCIP_CONCURRENT_MAX_NNZ = 20_000


def solve_linear_solver(buf: RowBuffer, obj: Objective, T: int, hint: dict[int, float] | None, *,
                        solver: str, time_limit: float, num_workers: int, seed: int,
                        rel_gap: float) -> SolveOutcome:
    from ortools.linear_solver import pywraplp

    clock = Clock()
    scip_unsafe = False
    s = pywraplp.Solver.CreateSolver(solver.upper())
    if s is None:
        return SolveOutcome("error", None, None, None, f"OR-Tools has no solver {solver}")
    xs = load_model(s, buf, obj, T)
    o = s.Objective()
    if hint:
        keys = list(hint)
        s.SetHint([xs[i] for i in keys], [float(hint[i]) for i in keys])
    budget = max(0.2, time_limit - clock())  # the limit counts the translation above
    s.SetTimeLimit(int(budget * 1000))
    threads = max(1, num_workers)
    info: dict[str, Any] = {}
    if solver.upper() == "SCIP" and buf.nnz > SCIP_CONCURRENT_MAX_NNZ:
        threads = 1
    s.SetNumThreads(threads)
    if solver.upper() == "SCIP":
        info["scip_threads"] = threads
        ok = s.SetSolverSpecificParametersAsString(
            f"randomization/randomseedshift = {seed}\n"
            # Ctrl-C to Python's handler (on_sigint), on the main thread; elsewhere SCIP's own
            + ("misc/catchctrlc = FALSE\n" if threading.current_thread() is threading.main_thread()
               else "")
            + "".join(f"{k} = {v}\n" for k, v in SCIP_SAFE))
        if not ok:  # a renamed parameter in a new SCIP would silently undo the safe setting
            log.warning("SCIP refused its settings (random seed shift %s, %s): its bound is not "
                        "used", seed, ", ".join(f"{k} = {v}" for k, v in SCIP_SAFE))
            scip_unsafe = True
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(params.RELATIVE_MIP_GAP, rel_gap)
    translate_s = clock()
    # SCIP: Ctrl-C stops the search and the run (SCIP's own handler is off)
    guard = on_sigint(s.InterruptSolve, "SCIP") if solver.upper() == "SCIP" \
        else contextlib.nullcontext(threading.Event())
    with guard as hit:
        code = s.Solve(params)
    if hit.is_set():
        info["interrupted"] = True
    solve_s = clock() - translate_s
    names = {pywraplp.Solver.OPTIMAL: "optimal", pywraplp.Solver.FEASIBLE: "feasible",
             pywraplp.Solver.INFEASIBLE: "infeasible", pywraplp.Solver.UNBOUNDED: "unbounded",
             pywraplp.Solver.ABNORMAL: "abnormal", pywraplp.Solver.NOT_SOLVED: "not solved"}
    word = names.get(code, str(code))
    has_sol = code in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE)
    st = {"optimal": "optimal", "feasible": "feasible", "infeasible": "infeasible"}.get(
        word, "no_solution" if word == "not solved" or info.get("interrupted") else "error")
    vals = [x.solution_value() for x in xs] if has_sol else None
    value = vals.__getitem__ if vals is not None else None
    f = o.Value() if has_sol else None
    try:
        bound = o.BestBound()
    except Exception:  # noqa: BLE001 - some solvers do not give one
        bound = None
    if st == "optimal" and bound is None:
        bound = f
    if scip_unsafe:  # its proofs were found wrong without the safe settings: no bound from it
        st = "feasible" if st == "optimal" else st
        bound = None
        word += ", its settings refused: no bound used"
    timed = solve_s >= 0.97 * budget
    term = f"{solver.upper()}: {word}" + (
        " (interrupted (Ctrl-C))" if info.get("interrupted") else
        " (time limit reached)" if timed and st != "optimal" else "")
    t_end = clock()
    hist = [(t_end, to_problem_units(obj, f, False), to_problem_units(obj, bound, True))]
    return SolveOutcome(st, value, to_problem_units(obj, f, False), to_problem_units(obj, bound, True),
                        term, hist, {**info, "translate_s": translate_s, "solve_s": solve_s,
                                     "served_t_bound": served_t_bound(obj, bound)})


LP_MIN_S = 0.2  # an LP given less than this after its translation is not started
LP_LOAD_S_PER_NNZ = 2e-6  # measured: 1.8 s for 875 k nonzeros (load_model); a shorter limit skips


def load_model(s: Any, buf: RowBuffer, obj: Objective, T: int, relax: bool = False) -> list:
    """Load the model into the linear_solver ``s`` through one MPModelProto (a row's indices and
    coefficients copied in one call each: about twice as fast as a call per coefficient, 1.8 s
    against 4.2 s for the 875 k nonzeros of the Mooncake scenario). Returns its variables."""
    from ortools.linear_solver import linear_solver_pb2

    p = linear_solver_pb2.MPModelProto()
    for v in buf.vars:
        x = p.variable.add()
        x.lower_bound, x.upper_bound = v.lb, v.ub
        x.is_integer = bool(v.integer) and not relax
        if v.name:
            x.name = v.name
    terms, _ = float_objective(obj, T)
    for i, c in terms:
        p.variable[i].objective_coefficient += c
    for row in buf.rows:
        ct = p.constraint.add()
        ct.lower_bound, ct.upper_bound = row.lo, row.hi
        ct.var_index.extend(row.idx.tolist())
        ct.coefficient.extend(row.coef.tolist())
    err = s.LoadModelFromProto(p)
    if err:
        raise RuntimeError(f"OR-Tools refused the model: {err}")
    s.Objective().SetMinimization()
    return s.variables()


def solve_lp(buf: RowBuffer, obj: Objective, T: int, *, solver: str = "GLOP",
             time_limit: float = 60.0, num_workers: int = 1, params: str = ""
             ) -> tuple[str, list[float] | None, float | None, list[float] | None]:
    """The LP relaxation (every variable continuous): status, values, objective (solver units)
    and row duals. ``time_limit`` counts the translation; none left: not solved. ``params``:
    the solver's own parameters as text (GLOP: ``use_scaling: false``)."""
    from ortools.linear_solver import pywraplp

    clock = Clock()
    nnz = buf.nnz
    if time_limit < LP_LOAD_S_PER_NNZ * nnz + LP_MIN_S:
        log.info("LP relaxation: %.2f s is too short to load %d nonzeros and solve", time_limit, nnz)
        return "no_solution", None, None, None
    s = pywraplp.Solver.CreateSolver(solver.upper())
    xs = load_model(s, buf, obj, T, relax=True)
    cts = s.constraints()
    o = s.Objective()
    budget = time_limit - clock()
    if budget < LP_MIN_S:
        log.info("LP relaxation: no time left after its translation (%.2f s)", clock())
        return "no_solution", None, None, None
    s.SetTimeLimit(max(1, int(budget * 1000)))
    s.SetNumThreads(max(1, num_workers))
    if params and not s.SetSolverSpecificParametersAsString(params):
        raise ValueError(f"{solver} refused its parameters {params!r}")
    code = s.Solve()
    if code not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return ("infeasible" if code == pywraplp.Solver.INFEASIBLE else "no_solution"), None, None, None
    vals = [x.solution_value() for x in xs]
    duals = [ct.dual_value() for ct in cts]
    st = "optimal" if code == pywraplp.Solver.OPTIMAL else "feasible"
    return st, vals, o.Value(), duals


def solve_ortools(buf: RowBuffer, obj: Objective, T: int, hint: dict[int, float] | None, *,
                  solver: str, **kw: Any) -> SolveOutcome:
    """The model through OR-Tools: HiGHS through MathOpt, the other solvers through
    linear_solver."""
    fn = solve_mathopt if solver.upper() == "HIGHS" else solve_linear_solver
    return fn(buf, obj, T, hint, solver=solver, **kw)


def mathopt_proto(buf: RowBuffer, obj: Objective, T: int) -> Any:
    """The model as a MathOpt ModelProto, built with numpy (rows row-major, repeated entries of a
    row summed, zeros left out): a Python expression per row took 16 s for Mooncake's 875 k
    nonzeros, past an 8-s limit by itself (found by review)."""
    from ortools.math_opt import model_pb2

    n = len(buf.vars)
    proto = model_pb2.ModelProto(name="placement")
    v = proto.variables
    v.ids.extend(range(n))
    v.lower_bounds.extend(float(x.lb) for x in buf.vars)
    v.upper_bounds.extend(float(x.ub) for x in buf.vars)
    v.integers.extend(bool(x.integer) for x in buf.vars)
    rows = buf.rows
    c = proto.linear_constraints
    c.ids.extend(range(len(rows)))
    c.lower_bounds.extend(float(r.lo) for r in rows)
    c.upper_bounds.extend(float(r.hi) for r in rows)
    if rows:
        rid = np.repeat(np.arange(len(rows), dtype=np.int64),
                        [r.idx.size for r in rows])
        cid = np.concatenate([r.idx for r in rows]).astype(np.int64)
        val = np.concatenate([r.coef for r in rows]).astype(np.float64)
        uk, inv = np.unique(rid * n + cid, return_inverse=True)  # sorted: row-major
        sums = np.bincount(inv, weights=val, minlength=uk.size)
        keep = sums != 0
        mat = proto.linear_constraint_matrix
        mat.row_ids.extend((uk[keep] // n).tolist())
        mat.column_ids.extend((uk[keep] % n).tolist())
        mat.coefficients.extend(sums[keep].tolist())
    terms, _ = float_objective(obj, T)
    coef: dict[int, float] = {}
    for i, k in terms:
        coef[int(i)] = coef.get(int(i), 0.0) + float(k)
    ids = sorted(i for i, k in coef.items() if k != 0)
    proto.objective.maximize = False
    proto.objective.linear_coefficients.ids.extend(ids)
    proto.objective.linear_coefficients.values.extend(coef[i] for i in ids)
    return proto


def solve_mathopt(buf: RowBuffer, obj: Objective, T: int, hint: dict[int, float] | None, *,
                  solver: str, time_limit: float, num_workers: int, seed: int,
                  rel_gap: float) -> SolveOutcome:
    """The model through OR-Tools MathOpt with HiGHS. The status is MathOpt's
    termination reason; the bound its dual bound (valid for minimisation). HiGHS takes no
    thread count through MathOpt (``num_workers`` is noted, not used)."""
    import datetime

    from ortools.math_opt.python import mathopt

    clock = Clock()
    m = mathopt.Model.from_model_proto(mathopt_proto(buf, obj, T))
    xs = [m.get_variable(i) for i in range(len(buf.vars))]
    budget = max(0.2, time_limit - clock())  # the limit counts the translation above
    params = mathopt.SolveParameters(time_limit=datetime.timedelta(seconds=budget),
                                     relative_gap_tolerance=rel_gap, random_seed=int(seed))
    # HiGHS given the warm start as a solution hint, with T capped just above that start's
    # makespan, reported "optimal" for a plan 10 % above the optimum, with that as its dual
    # bound (3 of 1,100 fuzzed tiny instances; right without the hint or without the cap):
    # milp_ortools lifts that cap (planner.exact.milp) when it gives HiGHS a hint
    model_params = None
    if hint:
        model_params = mathopt.ModelSolveParameters(solution_hints=[mathopt.SolutionHint(
            variable_values={xs[i]: float(val) for i, val in hint.items()})])
    translate_s = clock()
    try:
        res = mathopt.solve(m, mathopt.SolverType.HIGHS, params=params, model_params=model_params)
    except Exception as exc:  # noqa: BLE001 - MathOpt raises on solver errors
        detail = str(getattr(exc, "__context__", None) or exc)
        return SolveOutcome("error", None, None, None, f"{solver.upper()} (MathOpt): {detail}")
    solve_s = clock() - translate_s
    reason = res.termination.reason
    has_sol = res.has_primal_feasible_solution()
    R = mathopt.TerminationReason
    if reason == R.OPTIMAL:
        st = "optimal"
    elif reason in (R.INFEASIBLE, R.INFEASIBLE_OR_UNBOUNDED):  # every variable is bounded
        st = "infeasible"
    elif has_sol:
        st = "feasible"
    elif reason in (R.NO_SOLUTION_FOUND, R.FEASIBLE):
        st = "no_solution"
    else:
        st = "error"
    vals = [float(x) for x in res.variable_values(xs)] if has_sol else None
    f = float(res.objective_value()) if has_sol else None
    dual = float(res.termination.objective_bounds.dual_bound)
    bound = dual if math.isfinite(dual) else None
    if bound is not None and f is not None:
        bound = min(bound, f)
    word = reason.name.lower()
    if reason in (R.FEASIBLE, R.NO_SOLUTION_FOUND):
        word += f" ({res.termination.limit.name.lower()} limit)"
    if res.termination.detail:
        word += f" ({res.termination.detail})"
    term = f"{solver.upper()} (MathOpt): {word}"
    hist = [(clock(), to_problem_units(obj, f, False), to_problem_units(obj, bound, True))]
    return SolveOutcome(st, vals.__getitem__ if vals is not None else None,
                        to_problem_units(obj, f, False), to_problem_units(obj, bound, True), term,
                        hist, {"translate_s": translate_s, "solve_s": solve_s,
                               "mathopt_termination": reason.name,
                               "served_t_bound": served_t_bound(obj, bound)})
