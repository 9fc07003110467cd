"""MILP backends of the placement model (:mod:`planner.exact._model`): PuLP (CBC by default)
and OR-Tools (SCIP through linear_solver, HiGHS through MathOpt)."""

from __future__ import annotations

from typing import Any

from planner.exact._run import COMMON, run_exact
from planner.instance import Instance
from planner.plan import Result
from planner.registry import register
from planner.scenario.errors import OptionError, Problem

# relax-and-fix (planner.exact.relax_fix) is off by default for the MILP backends: on the
# 200-request benchmark (seed 1, 60 s) SCIP found no plan in its second step in 14 s, and the run
# ended where it ends without it (12.7179, gap 7.6e-4); CP-SAT's second step found 12.7115
MILP_OPTIONS = {**COMMON, "relax_fix": False}


@register("milp", "exact MILP of the placement model through PuLP (CBC by default; "
          "solver=<any PuLP solver>): plan, proven bound and gap",
          options={**MILP_OPTIONS, "solver": "CBC"}, kind="exact", online=False)
def milp(inst: Instance, **opts: Any) -> Result:
    from planner.exact._backends.pulp_backend import solve_pulp

    solver = _pulp_solver(str(opts.get("solver", "CBC")))

    def fn(buf, obj, T, hint, *, t_ub, t_lb, **kw):  # noqa: ANN001, ANN003
        return solve_pulp(buf, obj, T, hint, solver=solver, **kw)

    res = run_exact(inst, "milp", fn, opts)
    res.info["solver"] = f"pulp/{solver}"
    return res


def _pulp_solver(name: str) -> str:
    """PuLP's own spelling of a solver name (any case), or OptionError when PuLP does not know
    it or it is not installed here: failing before the model is built, in one line."""
    import pulp

    if name.upper() == "CBC":
        return name
    known = {s.upper(): s for s in pulp.listSolvers()}
    if name.upper() not in known:
        raise OptionError("options", [Problem("solver", "unknown PuLP solver (known: CBC, "
                                              f"{', '.join(known.values())})", name)])
    here = pulp.listSolvers(onlyAvailable=True)
    if known[name.upper()] not in here:
        raise OptionError("options", [Problem("solver", "not available on this machine "
                                              f"(available: CBC, {', '.join(here)})", name)])
    return known[name.upper()]


@register("milp_ortools", "exact MILP of the placement model through OR-Tools (solver=SCIP "
          "or HIGHS): plan, proven bound and gap",
          options={**MILP_OPTIONS, "solver": "SCIP"}, kind="exact", online=False)
def milp_ortools(inst: Instance, **opts: Any) -> Result:
    from planner.exact._backends.ortools_mip import solve_ortools

    solver = str(opts.get("solver", "SCIP"))
    if solver.upper() not in ("SCIP", "HIGHS", "CBC", "CP_SAT"):
        # the MIP solvers OR-Tools ships with; a commercial one needs its own library
        from ortools.linear_solver import pywraplp

        if pywraplp.Solver.CreateSolver(solver.upper()) is None:
            raise OptionError("options", [Problem(
                "solver", "OR-Tools cannot use this solver here (it ships SCIP, HIGHS, CBC)",
                solver)])

    def fn(buf, obj, T, hint, *, t_ub, t_lb, **kw):  # noqa: ANN001, ANN003
        if hint and solver.upper() == "HIGHS":
            # HiGHS with a hint and T capped just above the hinted plan's makespan said
            # "optimal" 10 % above the optimum, with that as its dual bound (fuzzing against
            # brute force; right without either): the hint stays, the cap goes (the horizon,
            # a constraint, stays)
            buf = buf.view(T, inst.horizon_s)
        return solve_ortools(buf, obj, T, hint, solver=solver, **kw)

    res = run_exact(inst, "milp_ortools", fn, opts)
    res.info["solver"] = f"ortools/{solver}" + ("/mathopt" if solver.upper() == "HIGHS" else "")
    return res

