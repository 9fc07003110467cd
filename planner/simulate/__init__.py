"""The discrete-event replay of a plan (``planner simulate``; see :mod:`planner.simulate.engine`
for the semantics and :mod:`planner.simulate.config` for every setting).

    from planner.simulate import simulate
    replay = simulate("scenarios/quickstart.yaml", plan, queue="sjf", preemption="swap")
    replay.summary(); replay.to_frame(); replay.memory_frame(); replay.link_frame()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner.instance import Instance
from planner.plan import Plan, Result
from planner.scenario.model import Scenario
from planner.simulate.config import ReplayConfig, make_config
from planner.simulate.engine import run
from planner.simulate.result import LinkStats, Replay, ReplicaStats

__all__ = ["LinkStats", "Replay", "ReplayConfig", "ReplicaStats", "make_config", "simulate"]


def simulate(problem: Scenario | Instance | str | Path, plan: Plan | Result | dict,
             config: ReplayConfig | None = None, **settings: Any) -> Replay:
    """Replay ``plan`` on the scenario through time. ``settings`` (see ReplayConfig) override the
    scenario's ``extra.simulate``; an explicit ``config`` replaces both. A bad setting raises
    OptionError, a plan that does not fit the scenario PlanError."""
    from planner.api import as_instance, as_plan
    from planner.metrics import check_plan
    from planner.plan import order_problems
    from planner.scenario.errors import PlanError

    inst = as_instance(problem)
    plan = as_plan(inst, plan)
    check_plan(inst, plan)
    problems = [] if plan.order is None else order_problems(plan.order, inst, plan.decode)
    if problems:  # a Plan built in Python: its order is read like plan JSON's
        raise PlanError("<plan>", problems)
    path = inst.scenario.path
    cfg = config if config is not None else make_config(
        inst.scenario.extra, file=None if path is None else str(path), **settings)
    return run(inst, plan, cfg)
