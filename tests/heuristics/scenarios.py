"""Small variants of the example scenarios (the yaml files, shrunk) for the heuristics tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from planner import load_scenario
from planner.scenario.model import Scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
NAMES = ("quickstart", "two-region-azure", "multi-dc-mooncake", "large-synthetic")


def small(name: str, count: int = 1500) -> Scenario:
    """The example scenario ``name`` with at most ``count`` requests."""
    data = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    wl = data["workload"]
    if "synthetic" in wl:
        wl["synthetic"]["count"] = min(count, wl["synthetic"]["count"])
    elif "file" in wl:
        wl["file"]["path"] = str(SCENARIOS / wl["file"]["path"])
        wl["file"]["limit"] = count
    else:
        wl["requests"] = wl["requests"][:count]
    return load_scenario(data, name=f"{name}.yaml")
