"""planner: where LLM inference runs, exactly (MILP, CP-SAT) and with live policies.

    from planner import load_scenario, solve, evaluate
    scenario = load_scenario("scenarios/quickstart.yaml")
    print(evaluate(scenario, solve(scenario, method="greedy").plan).makespan_s)
"""

from planner.api import as_instance, evaluate, solve
from planner.instance import Instance, build_instance
from planner.metrics import Metrics
from planner.plan import Plan, Result
from planner.registry import methods, register
from planner.scenario import InputError, PlanError, Scenario, ScenarioError, load_scenario
from planner.simulate import simulate

__all__ = [
    "InputError", "Instance", "Metrics", "Plan", "PlanError", "Result", "Scenario",
    "ScenarioError", "as_instance", "build_instance", "evaluate", "load_scenario", "methods",
    "register", "simulate", "solve",
]
__version__ = "0.1.0"
