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


def test_cost_says_infeasible_when_the_work_needs_longer_than_the_horizon():
    inst = instance(CLUSTERS, REQUESTS, objective="cost", horizon_s=9.0)
    for method in ("cpsat", "milp", "aggregated"):
        res = run(inst, method, time_limit=5)
        assert res.status == "infeasible" and res.plan is None, (method, res.status)
        assert "every plan's makespan is at least 10 s" in res.termination, res.termination


def test_a_horizon_within_the_evaluators_tolerance_of_the_work_is_not_called_infeasible():
    """The even split ends at 10 s, and the evaluator accepts it within 1e-9 of a horizon of
    9.99999999 s. The covering bound is infinite there (its rows allow that 1e-9 and no more),
    and was read as a proof (found by review); the proof now needs the makespan's bound past
    the horizon by 1e-6 of it, and the solvers decide."""
    for objective in ("cost", "makespan"):
        inst = instance(CLUSTERS, REQUESTS, objective=objective, horizon_s=9.99999999)
        for method in ("cpsat", "milp", "aggregated"):
            res = run(inst, method, time_limit=5)
            assert res.status == "optimal", (objective, method, res.status, res.termination)


def test_cost_says_infeasible_when_one_request_outlasts_the_horizon():
    """The covering rows count capacity only: one 12-s prompt on 1000 tok/s clusters cannot
    end within a 10-s horizon although the two clusters hold 20 s of work. The makespan's
    domain bound (the largest request) proves it."""
    inst = instance(CLUSTERS, [{"prompt_tokens": 12_000}], objective="cost", horizon_s=10.0)
    res = run(inst, "cpsat", time_limit=5)
    assert res.status == "infeasible"
    assert "at least 12 s (domain bound: largest_request)" in res.termination, res.termination


@pytest.mark.parametrize("objective", ["makespan", "cost"])
def test_aggregated_decides_before_its_class_lp(objective):
    """It checked after the class LP: on 100 k requests GLOP ran 25.6 s of a 30-s limit
    before the answer (found by review)."""
    inst = instance(CLUSTERS, REQUESTS, objective=objective, horizon_s=9.0)
    res = run(inst, "aggregated", time_limit=5)
    assert res.status == "infeasible" and "lp_status" not in res.info, res.info
