"""A horizon the work cannot fit (planner/exact/_run.py, ``beyond_horizon``): the domain bound
proves that no plan exists, so the exact methods say ``infeasible`` with the reason at once.
Found by review: a 2,000-request scenario whose KV memory-time needed 64.9 s against a 58.5-s
horizon ran every exact method to its time limit and reported ``timeout_no_solution``."""

from __future__ import annotations

import pytest
from helpers import instance, run

# two 1000 tok/s clusters, 20 prompts of 1000 tokens: 10 s of prefill at best
CLUSTERS = [{"name": "a"}, {"name": "b"}]
REQUESTS = [{"prompt_tokens": 1000}] * 20


@pytest.mark.parametrize("horizon", [9.9, 10.0])
def test_exact_methods_say_infeasible_when_the_domain_bound_passes_the_horizon(method, horizon):
    inst = instance(CLUSTERS, REQUESTS, horizon_s=horizon)
    res = run(inst, method, time_limit=5)
    if horizon < 10.0:
        assert res.status == "infeasible" and res.plan is None
        assert "every plan's makespan is at least 10 s" in res.termination, res.termination
        assert "solver_status" not in res.info  # decided before any solver ran
    else:  # exactly at the bound: the even split fits, and is the optimum
        assert res.status == "optimal" and res.objective == pytest.approx(10.0)


def test_cost_says_infeasible_when_no_set_of_clusters_holds_the_work():
    inst = instance(CLUSTERS, REQUESTS, objective="cost", horizon_s=9.0)
    for method in ("cpsat", "milp", "aggregated"):
        res = run(inst, method, time_limit=5)
        assert res.status == "infeasible" and res.plan is None, (method, res.status)
        assert "no set of clusters holds the work within 9 s" in res.termination, res.termination


def test_cost_says_infeasible_when_one_request_outlasts_the_horizon():
    """The covering rows count capacity only: one 12-s prompt on 1000 tok/s clusters cannot
    end within a 10-s horizon although the two clusters hold 20 s of work. The makespan's
    domain bound (the largest request) proves it."""
    inst = instance(CLUSTERS, [{"prompt_tokens": 12_000}], objective="cost", horizon_s=10.0)
    res = run(inst, "cpsat", time_limit=5)
    assert res.status == "infeasible"
    assert "at least 12 s (domain bound: largest_request)" in res.termination, res.termination
