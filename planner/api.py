"""The three-line API: ``load_scenario``, ``solve``, ``evaluate``."""

from __future__ import annotations

import logging
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from planner.instance import Instance, build_instance
from planner.metrics import Metrics, evaluate_arrays
from planner.plan import Plan, Result, plan_from_dict, read_plan_file
from planner.registry import get_method, positive_seconds
from planner.scenario.errors import InputError, OptionError, PlanError, Problem, ScenarioError
from planner.scenario.load import load_scenario
from planner.scenario.model import Scenario

log = logging.getLogger(__name__)
_instances: weakref.WeakKeyDictionary[Scenario, Instance] = weakref.WeakKeyDictionary()


def as_instance(problem: Scenario | Instance | str | Path) -> Instance:
    """The Instance of a scenario (built once per Scenario object and cached)."""
    if isinstance(problem, Instance):
        return problem
    if isinstance(problem, (str, Path, dict)):  # a dict: a parsed scenario document
        problem = load_scenario(problem)
    if not isinstance(problem, Scenario):
        raise ScenarioError("<scenario>", [Problem(
            "<top>", "expected a Scenario, an Instance, a scenario file path or a mapping",
            type(problem).__name__)])
    inst = _instances.get(problem)
    if inst is None:
        inst = build_instance(problem)
        _instances[problem] = inst
    return inst


def check_time_limit(value: Any, name: str = "time_limit") -> None:
    """A time limit is a positive, finite number of seconds (None: the method's default)."""
    if value is None:
        return
    if not positive_seconds(value):
        raise OptionError(name, [Problem(name, "must be a positive number of seconds", value)])


def own_time_limit(options: dict[str, Any], default: float | None
                   ) -> tuple[float | None, dict[str, Any]]:
    """A method's own ``time_limit`` option overrides the run's ``default`` (compare's -O,
    a sweep's options): (the limit, the options without it)."""
    rest = dict(options)
    own = rest.pop("time_limit", None)
    return (default if own is None else float(own)), rest


def solve(
    problem: Scenario | Instance | str | Path,
    method: str = "greedy",
    time_limit: float | None = None,
    **options: Any,
) -> Result:
    """Run a registered method. Bad options raise OptionError; a method that fails returns a
    Result with status ``error`` and the reason, never a half plan."""
    inst = as_instance(problem)
    spec = get_method(method)
    check_time_limit(time_limit)
    check_time_limit(options.get("time_limit"))
    opts = spec.resolve({**options, **({"time_limit": time_limit} if time_limit else {})})
    log.info("solving %s with %s (%d requests, %d clusters)", inst.scenario.name, method,
             inst.n_requests, inst.n_clusters)
    t0 = time.perf_counter()
    try:
        out = spec.func(inst, **opts)
    except InputError:
        raise
    except Exception as exc:  # a method's failure is reported, not raised
        log.error("method %s failed: %s: %s", method, type(exc).__name__, exc)
        log.debug("method %s failed", method, exc_info=True)
        return Result(method, "error", None, wall_s=time.perf_counter() - t0,
                      termination=f"{type(exc).__name__}: {exc}", options=opts)
    wall = time.perf_counter() - t0
    if isinstance(out, Plan):
        result = Result(method, "feasible", out, termination="heuristic",
                        refused_by_method=np.flatnonzero(out.refused))
    else:
        result = out
    result.wall_s = wall
    result.options = opts
    if result.plan is not None:
        metrics = evaluate_arrays(inst, result.plan)
        if spec.kind == "heuristic":
            result.objective = metrics.objective
        if not metrics.feasible:
            # hard constraints: such a plan is not a solution, whatever its figures
            result.termination += "; " + "; ".join(metrics.problems) + ": not a feasible plan"
            result.status, result.objective, result.gap = "infeasible", None, None
    return result


def as_plan(inst: Instance, plan: Plan | Result | dict | str | Path) -> Plan:
    """A Plan from a Plan, a Result (its plan), plan JSON or a plan file (both checked against
    the Instance). A path was read as a sequence: "the plan has 14 requests" for a 14-character
    file name (found by review)."""
    if isinstance(plan, Result):
        if plan.plan is None:
            raise ValueError(f"result of {plan.method} has no plan (status {plan.status})")
        return plan.plan
    if isinstance(plan, dict):
        return plan_from_dict(plan, inst)[0]
    if isinstance(plan, (str, Path)):
        return read_plan_file(plan, inst)[0]
    if not isinstance(plan, Plan):
        raise PlanError("<plan>", [Problem("<top>", "expected a Plan, a Result, plan JSON or a "
                                           "plan file path", type(plan).__name__)])
    return plan


def evaluate(problem: Scenario | Instance | str | Path, plan: Plan | Result | dict) -> Metrics:
    """Recompute a plan's figures from the scenario and the plan alone."""
    inst = as_instance(problem)
    return evaluate_arrays(inst, as_plan(inst, plan))
