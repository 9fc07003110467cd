"""CP-SAT backend of the placement model; floats become integers by the decimal-exact-or-ceil
rule of :mod:`planner.exact._backends.cpsat_backend`, the plan is re-scored in floats."""

from __future__ import annotations

from typing import Any

from planner.exact._run import COMMON, run_exact
from planner.instance import Instance
from planner.plan import Result
from planner.registry import register

# work_limit: CP-SAT deterministic time for a reproducible run (0: off), planner.exact.work
OPTIONS = {**COMMON, "resolution": 1_000_000_000, "bisect": True, "bisect_min_share": 0.4,
           "work_limit": 0.0}


@register("cpsat", "exact placement model on OR-Tools CP-SAT (loads scaled to integers, "
          "rounded up; plan re-scored in floats), with incumbent/bound history",
          options=OPTIONS, kind="exact", online=False)
def cpsat(inst: Instance, **opts: Any) -> Result:
    from planner.exact._backends.cpsat_backend import solve_cpsat

    resolution = int(opts.get("resolution", OPTIONS["resolution"]))
    bisect = bool(opts.get("bisect", OPTIONS["bisect"]))
    min_share = float(opts.get("bisect_min_share", OPTIONS["bisect_min_share"]))

    def fn(buf, obj, T, hint, **kw):  # noqa: ANN001, ANN003
        return solve_cpsat(buf, obj, T, hint, resolution=resolution, bisect=bisect,
                           min_share=min_share, **kw)

    def relax(buf, obj, T, hint, *, t_ub, t_lb, time_limit, num_workers, seed, rel_gap):  # noqa: ANN001, ANN202, ARG001
        # relax-and-fix's first step has continuous variables, which CP-SAT cannot hold: SCIP,
        # on one thread: its concurrent solvers on several threads ignore an interrupt (review:
        # Ctrl-C 1 s into a 4-s limit ended at 4.1 s)
        from planner.exact._backends.ortools_mip import solve_linear_solver
        return solve_linear_solver(buf, obj, T, hint, solver="SCIP", time_limit=time_limit,
                                   num_workers=1, seed=seed, rel_gap=rel_gap)

    res = run_exact(inst, "cpsat", fn, opts, relax_fn=relax)
    res.info["solver"] = "ortools/cp-sat"
    return res
