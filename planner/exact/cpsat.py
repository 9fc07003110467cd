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

    res = run_exact(inst, "cpsat", fn, opts)
    res.info["solver"] = "ortools/cp-sat"
    return res
