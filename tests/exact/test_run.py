"""The run around the backends: which LP solver the relaxation gets, and no solver at all when the
start is already proven by the domain bound."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import brute_force, instance, run

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
    assert items.n_blocks > 0 and lp_solver_for("auto", items, inst, 20.0) == "glop_unscaled"
    assert lp_solver_for("glop", items, inst, 20.0) == "glop"
    # at makespans of 1e-7 s unscaled GLOP stalled and its duals were far off (review)
    assert lp_solver_for("auto", items, inst, 1e-7) == "glop"
    plain = request_items(_balanced())
    assert plain.n_blocks == 0 and lp_solver_for("auto", plain, _balanced(), 20.0) == "glop"
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


def _tiny():
    """Found by review: at makespans of 1e-8 s unscaled GLOP reported an LP value of 1.0424e-8
    (the LP's optimum is 9.62e-9, the integer optimum 1.0018e-8); taken as a bound it made the
    plan at 1.0424e-8 "optimal" with no solver run."""
    clusters = [{"name": "c1", "prefill_tokens_per_s": 1e11, "decode_tokens_per_s": 3e8},
                {"name": "c2", "prefill_tokens_per_s": 4e11,
                 "decode_tokens_per_s": 5588264621.000711, "replicas": 3}]
    reqs = [{"prompt_tokens": 2000, "output_tokens": 80, "prefix": [0]},
            {"prompt_tokens": 1000, "output_tokens": 60, "prefix": [0]}]
    return instance(clusters, reqs, prefix_caching=True)


@pytest.mark.parametrize("lp_solver", ["auto", "glop_unscaled"])
def test_an_lp_value_the_duals_do_not_prove_is_no_bound(method, lp_solver):
    inst = _tiny()
    opt, _ = brute_force(inst)
    res = run(inst, method, lp_solver=lp_solver)
    assert res.bound <= opt * (1 + 1e-9)
    assert res.objective == pytest.approx(opt, rel=1e-4)
    assert res.info["lp_dual_bound"] is None or res.info["lp_dual_bound"] <= opt


def test_the_dual_bound_is_a_bound_for_any_prices():
    """rows.dual_bound: the LP value for the LP's own duals, and below it for any others."""
    import numpy as np

    from planner.exact._backends.rows import dual_bound

    for inst in (_mooncake(60), _balanced()):
        model = PlacementModel(inst, request_items(inst), symmetry=False)
        buf = RowBuffer()
        v = model.build(buf, float("inf"))
        obj = model.objective()
        st, _, f, duals = solve_lp(buf, obj, v.T, time_limit=30)
        assert st == "optimal"
        assert dual_bound(buf, obj, v.T, duals) == pytest.approx(f, rel=1e-9)
        rng = np.random.default_rng(0)
        y = np.asarray(duals)
        for _ in range(200):
            noisy = y * rng.uniform(0, 2, y.size) + rng.normal(0, 1e-3, y.size)
            assert dual_bound(buf, obj, v.T, noisy) <= f * (1 + 1e-12)
