"""``work_limit``: a ``cpsat`` run that stops by counts, not clocks, gives the same plan and
figures every time; a stage that the wall clock ends makes the run say it is not reproducible."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from planner import load_scenario, solve
from planner.api import as_instance
from planner.exact import bounds
from planner.exact._model import PlacementModel, request_items
from planner.exact._run import warm_plan
from planner.exact.bounds import domain_bound
from planner.exact.improve import improve_makespan
from planner.exact.work import ls_moves, tracking
from planner.metrics import evaluate_arrays


def _scenario(n: int, **kw) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_exact import scenario

    return scenario(n, **kw)


def _bench(n: int):
    return as_instance(load_scenario(_scenario(n)))


def test_a_work_limited_run_repeats_its_plan_and_figures():
    inst = _bench(120)
    runs = [solve(inst, "cpsat", time_limit=120, work_limit=1.0, num_workers=2)
            for _ in range(2)]
    a, b = runs
    for r in runs:
        assert r.info["reproducible"] is True and r.info["clock_cuts"] == []
        # the work, not a proof, ended the search: where it stops is what must repeat
        assert r.status == "feasible" and r.gap > 0, r.termination
        assert "not reproducible" not in r.termination
    assert np.array_equal(a.plan.prefill, b.plan.prefill)
    assert np.array_equal(a.plan.decode, b.plan.decode)
    assert (a.objective, a.bound, a.gap) == (b.objective, b.bound, b.gap)
    assert [r[:3] for r in a.info["bisection_rounds"]] == \
        [r[:3] for r in b.info["bisection_rounds"]]
    # the budget was spent by deterministic time (interleaved workers), not seconds
    assert a.info["cpsat_work_budget"] == pytest.approx(1.0)
    assert a.info["cpsat_work_spent"] >= 1.0 - 0.05 and "work limit" in a.termination


def test_the_search_is_the_same_whatever_the_workers():
    # found by review: 0 workers meant the cores, so the plan depended on the machine
    inst = _bench(60)
    runs = [solve(inst, "cpsat", time_limit=120, work_limit=1.0, num_workers=k) for k in (0, 2, 4)]
    assert [r.info["num_workers"] for r in runs] == [2, 2, 4]
    for r in runs[1:]:
        assert r.info["reproducible"] is True
        assert (r.objective, r.bound) == (runs[0].objective, runs[0].bound)
        assert np.array_equal(r.plan.decode, runs[0].plan.decode)


def test_a_time_limited_warm_start_or_lp_is_a_clock_cut(monkeypatch):
    # found by review: neither was recorded
    from planner.exact._backends import ortools_mip

    inst = _bench(40)
    r = solve(inst, "cpsat", time_limit=60, work_limit=0.5, warm_start="cpsat")
    assert r.info["clock_cuts"] == ["warm start (cpsat)"] and not r.info["reproducible"]
    real = ortools_mip.solve_lp

    def stopped(*a, **kw):  # GLOP at its time limit: a feasible point, not the optimum
        st, vals, f, duals = real(*a, **kw)
        return "feasible", vals, f, duals

    monkeypatch.setattr(ortools_mip, "solve_lp", stopped)
    r = solve(inst, "cpsat", time_limit=60, work_limit=0.5)
    assert r.info["clock_cuts"] == ["LP relaxation"] and not r.info["reproducible"]


def test_a_served_run_cut_by_the_clock_says_so():
    # the path without bisection (found by review: no test noticed when it recorded nothing)
    sc = _scenario(200, seed=1, objective="served")
    sc["horizon_s"] = 11
    r = solve(load_scenario(sc), "cpsat", time_limit=3, work_limit=50.0)
    assert "bisection_rounds" not in r.info
    assert r.info["clock_cuts"] == ["CP-SAT"] and "not reproducible" in r.termination


def test_a_run_the_wall_clock_ends_says_it_is_not_reproducible():
    inst = _bench(120)
    r = solve(inst, "cpsat", time_limit=1.5, work_limit=50.0, num_workers=2)
    assert r.info["reproducible"] is False
    assert r.info["clock_cuts"], r.termination
    assert "not reproducible" in r.termination
    assert r.plan is not None and r.status == "feasible"  # still the best plan, honestly


def test_without_a_work_limit_nothing_is_tracked():
    r = solve(_bench(40), "cpsat", time_limit=5)
    assert "reproducible" not in r.info and "cpsat_work_budget" not in r.info


def test_the_local_search_counts_moves_and_records_a_clock_that_stops_it():
    inst = _bench(120)
    items = request_items(inst)
    model = PlacementModel(inst, items, symmetry=False)
    start, _ = warm_plan(inst, "greedy")
    target = domain_bound(inst)["bound"]  # 7.006 s against the start's 8.299 s
    with tracking() as cuts:
        p1 = improve_makespan(model, start, target, 60.0, max_moves=100)
        p2 = improve_makespan(model, start, target, 60.0, max_moves=100)
    assert cuts == []
    assert np.array_equal(p1.prefill, p2.prefill) and np.array_equal(p1.decode, p2.decode)
    # fewer moves, a worse plan: the budget is what stopped the search
    p3 = improve_makespan(model, start, target, 60.0, max_moves=15)
    assert evaluate_arrays(inst, p3).makespan_s > evaluate_arrays(inst, p1).makespan_s
    with tracking() as cuts:
        improve_makespan(model, start, target, 0.0, max_moves=15)
    assert cuts == ["local search"]
    assert ls_moves(1.0, 100) == 250 and ls_moves(1e-9, 10**9) == 1


def test_a_covering_milp_cut_by_its_clock_is_recorded(monkeypatch):
    from tests.exact.test_bounds import _prefill_only

    rng = np.random.default_rng(7)
    n = 40
    w = rng.uniform(1, 100, n)
    w /= w.sum()
    rent = w * 1000 + rng.uniform(0, 0.2, n)
    pc = _prefill_only(n)
    with tracking() as cuts:
        full = bounds._milp_cover(pc, [w], [0.5], rent)
    assert cuts == [] and full is not None  # decided within its node and 60-s limits
    # under a work limit a node limit stops it, the same every time, and no clock
    monkeypatch.setattr(bounds, "COVER_MILP_NODES", 1)
    with tracking() as cuts:
        a = bounds._milp_cover(pc, [w], [0.5], rent)
        b = bounds._milp_cover(pc, [w], [0.5], rent)
    assert cuts == [] and a == b and a <= full
    monkeypatch.setattr(bounds, "COVER_MILP_WORK_S", 0.001)
    with tracking() as cuts:
        bounds._milp_cover(pc, [w], [0.5], rent)
    assert cuts == ["covering MILP"]


def test_a_small_budget_is_not_taken_for_a_clock():
    # found by review: work left between 0.05 and 0.2 units was compared with 0.2 s, and the run
    # was called "not reproducible" with no clock involved
    r = solve(_bench(60), "cpsat", time_limit=60, work_limit=0.3)
    assert r.info["reproducible"] is True and r.info["clock_cuts"] == [], r.termination
    assert "work limit" in r.termination


def test_a_warm_start_by_an_exact_method_runs_untracked(monkeypatch):
    # found by review: the nested run saw the outer work limit's tracking (its covering MILP
    # took the node limit, its cuts went into the outer list)
    from planner import registry
    from planner.exact.work import tracked

    seen = []
    spec = registry.get_method("greedy")

    def spy(inst, **kw):
        seen.append(tracked())
        return spec.func(inst, **kw)

    monkeypatch.setattr(registry, "get_method",
                        lambda name: dataclasses.replace(spec, func=spy, kind="exact"))
    with tracking() as cuts:
        plan, _ = warm_plan(_bench(20), "greedy")
    assert seen == [False] and plan is not None
    assert cuts == ["warm start (greedy)"]  # an exact method's start is still a clock's
