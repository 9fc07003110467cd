"""The run around the backends: which LP solver the relaxation gets, and no solver at all when the
start is already proven by the domain bound."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import instance, run

from planner import load_scenario
from planner.api import as_instance, solve
from planner.exact._backends.ortools_mip import solve_lp
from planner.exact._backends.rows import RowBuffer
from planner.exact._model import PlacementModel, request_items
from planner.exact._run import lp_solver_for
from planner.scenario.errors import OptionError

ROOT = Path(__file__).resolve().parents[2]


def _balanced():
    # five requests that the local search splits exactly at the domain bound (gap 0)
    return instance([{"name": "m0", "role": "mixed"}, {"name": "m1", "role": "mixed"}],
                    [{"prompt_tokens": 100 + 7 * k, "output_tokens": 10 + k} for k in range(5)])


def test_a_start_proven_by_the_domain_bound_runs_no_solver(method):
    res = run(_balanced(), method)
    assert res.status == "optimal" and res.gap <= 1e-4
    assert res.info["solver_status"] == "skipped" and res.info["solver_bound"] is None
    assert res.info["plan_from"] == "improved_start"
    assert "no solver run" in res.termination


def test_without_the_local_search_the_solver_runs(method):
    res = run(_balanced(), method, improve=False, lp_bound=False)
    assert res.info["solver_status"] != "skipped"
    assert res.status == "optimal"


def _mooncake(n: int):
    doc = yaml.safe_load((ROOT / "scenarios" / "multi-dc-mooncake.yaml").read_text())
    doc["workload"]["file"]["limit"] = n
    doc["workload"]["file"]["path"] = str(ROOT / "scenarios" / doc["workload"]["file"]["path"])
    return as_instance(load_scenario(doc))


def test_the_lp_solver_rule():
    inst = _mooncake(300)
    items = request_items(inst)
    assert items.n_blocks > 0 and lp_solver_for("auto", items) == "glop_unscaled"
    assert lp_solver_for("glop", items) == "glop"
    plain = request_items(_balanced())
    assert plain.n_blocks == 0 and lp_solver_for("auto", plain) == "glop"
    res = solve(inst, "cpsat", time_limit=10)
    assert res.info["lp_solver"] == "glop_unscaled" and res.info["lp_status"] == "optimal"
    with pytest.raises(OptionError, match="lp_solver"):
        solve(inst, "cpsat", lp_solver="pdlp")


def test_glop_without_scaling_finds_the_same_lp_value():
    """Unscaled GLOP is 4 to 5 times faster on the Mooncake trace (prefix-block chains); its
    LP value must be the scaled one's, since the value is used as a bound."""
    inst = _mooncake(1000)
    model = PlacementModel(inst, request_items(inst), symmetry=False)
    buf = RowBuffer()
    v = model.build(buf, float("inf"))
    obj = model.objective()
    st0, _, f0, _ = solve_lp(buf, obj, v.T, time_limit=60)
    st1, _, f1, _ = solve_lp(buf, obj, v.T, time_limit=60, params="use_scaling: false")
    assert st0 == st1 == "optimal"
    assert f1 == pytest.approx(f0, rel=1e-9)
    with pytest.raises(ValueError, match="refused"):
        solve_lp(buf, obj, v.T, time_limit=60, params="no_such_parameter: 1")
