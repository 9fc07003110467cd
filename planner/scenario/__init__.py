"""Scenario files: schema, loading, validated dataclasses, errors."""

from planner.scenario.errors import InputError, PlanError, Problem, ScenarioError
from planner.scenario.load import load_scenario
from planner.scenario.model import (
    AcceleratorCard,
    Cluster,
    Link,
    ModelCard,
    Scenario,
    Workload,
)

__all__ = [
    "AcceleratorCard", "Cluster", "InputError", "Link", "ModelCard", "PlanError", "Problem",
    "Scenario", "ScenarioError", "Workload", "load_scenario",
]
