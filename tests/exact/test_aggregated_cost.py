"""``aggregated`` under the ``cost`` objective picks the set of clusters to rent (planner/exact/
aggregated.py, ``open_set_plan``): known optima by construction, on both of its paths (the
request-level model on the chosen set for small instances, the class LP for large ones)."""

from __future__ import annotations

import pytest
from helpers import instance, run

from planner.exact.aggregated import REQUEST_LEVEL_MAX
from planner.metrics import evaluate_arrays

# 1000 tok/s at $1/h (two of them), 3000 tok/s at $1.8/h, 500 tok/s at $0.4/h. Within the
# horizon the work needs 240 k tokens of prefill: one c2 (450 k) at $1.8/h is the cheapest set
# that holds it; c0 + c1 (300 k) costs $2/h, c0 + c3 (225 k) is too small, all four $4.2/h.
CLUSTERS = [{"name": "c0", "cost_per_hour": 1.0}, {"name": "c1", "cost_per_hour": 1.0},
            {"name": "c2", "cost_per_hour": 1.8, "prefill_tokens_per_s": 3000.0},
            {"name": "c3", "cost_per_hour": 0.4, "prefill_tokens_per_s": 500.0}]
HORIZON = 150.0
OPTIMUM = 1.8 * HORIZON / 3600


@pytest.mark.parametrize("n", [24, REQUEST_LEVEL_MAX + 400])
def test_aggregated_rents_the_cheapest_set_that_holds_the_work(n):
    tokens = 240_000 // n
    inst = instance(CLUSTERS, [{"prompt_tokens": tokens}] * n, objective="cost",
                    horizon_s=HORIZON)
    res = run(inst, "aggregated", time_limit=20)
    ev = evaluate_arrays(inst, res.plan)
    assert ev.feasible and ev.makespan_s <= HORIZON
    used = {inst.cluster_names[c] for c in set(res.plan.prefill.tolist())}
    assert used == {"c2"}, (used, res.info.get("open_set"))
    assert res.objective == pytest.approx(OPTIMUM, rel=1e-9)
    # the covering bound is the same set's rent: the plan is proven optimal
    assert res.status == "optimal" and res.bound == pytest.approx(OPTIMUM, rel=1e-6)


def test_aggregated_cost_spreads_less_than_the_live_policy_on_a_loose_horizon():
    """Two datacenters, decode as well as prefill: with a loose horizon a single mixed cluster
    holds everything (no egress, one rent); greedy least-load spreads over the clusters and
    pays their rents. The optimum by construction is the cheapest mixed cluster's rent."""
    clusters = [{"name": "a", "dc": "d0", "cost_per_hour": 2.0},
                {"name": "b", "dc": "d0", "cost_per_hour": 1.5},
                {"name": "p", "dc": "d0", "role": "prefill", "cost_per_hour": 0.5},
                {"name": "d", "dc": "d1", "role": "decode", "cost_per_hour": 0.5}]
    links = [{"between": ["d0", "d1"], "bandwidth_gbps": 1.0, "cost_per_gb": 50.0}]
    reqs = [{"prompt_tokens": 200 + 10 * k, "output_tokens": 5 + k % 3} for k in range(30)]
    horizon = 1000.0
    inst = instance(clusters, reqs, links, objective="cost", horizon_s=horizon)
    greedy = run(inst, "greedy")
    res = run(inst, "aggregated", time_limit=20)
    # p (in d0) + d (in d1) rent for $1/h (0.278 $) but every request then moves its KV over
    # the link at $50/GB (about 0.45 $ in all); p + b costs $2/h: the cheapest plan is b alone,
    # $1.5/h, nothing crosses
    assert res.objective == pytest.approx(1.5 * horizon / 3600, rel=1e-9)
    assert res.objective < greedy.objective


def test_aggregated_cost_on_a_large_fleet_chooses_over_coarse_classes():
    """More than DETAILED_SET_CLUSTERS clusters and REQUEST_LEVEL_MAX requests: the set is chosen
    over the coarse classes with the horizon less the first margin. Thirteen $1/h clusters, one
    3000 tok/s at $1.8/h, one 500 tok/s at $0.4/h: the fast one alone (450 k tokens in 150 s,
    445.5 k with the 1 % margin) holds the 240 k needed and is the cheapest set, as above."""
    from planner.exact.aggregated import DETAILED_SET_CLUSTERS, OPEN_SET_MARGINS

    clusters = [{"name": f"c{k}", "cost_per_hour": 1.0} for k in range(13)]
    clusters += [{"name": "fast", "cost_per_hour": 1.8, "prefill_tokens_per_s": 3000.0},
                 {"name": "slow", "cost_per_hour": 0.4, "prefill_tokens_per_s": 500.0}]
    assert len(clusters) > DETAILED_SET_CLUSTERS
    n = REQUEST_LEVEL_MAX + 400
    inst = instance(clusters, [{"prompt_tokens": 240_000 // n}] * n, objective="cost",
                    horizon_s=HORIZON)
    res = run(inst, "aggregated", time_limit=20)
    note = res.info["open_set"]
    assert f"T <= {HORIZON * (1 - OPEN_SET_MARGINS[0]):.6g} s" in note, note
    assert {inst.cluster_names[c] for c in set(res.plan.prefill.tolist())} == {"fast"}, note
    assert res.objective == pytest.approx(OPTIMUM, rel=1e-9) and res.status == "optimal"


def test_aggregated_cost_closes_a_cluster_the_coarse_set_did_not_need():
    """The coarse set model keeps a 1 % margin below the horizon: the work (447.7 k tokens)
    is 99.5 % of the fast cluster's 450 k, so with the margin it adds the $0.4/h one. The
    placement then finds the fast cluster alone holds it (``drop_clusters``): $1.8/h, the
    optimum, which the covering bound proves."""
    clusters = [{"name": f"c{k}", "cost_per_hour": 1.0} for k in range(13)]
    clusters += [{"name": "fast", "cost_per_hour": 1.8, "prefill_tokens_per_s": 3000.0},
                 {"name": "slow", "cost_per_hour": 0.4, "prefill_tokens_per_s": 500.0}]
    n = REQUEST_LEVEL_MAX + 420
    inst = instance(clusters, [{"prompt_tokens": 185}] * n, objective="cost", horizon_s=HORIZON)
    res = run(inst, "aggregated", time_limit=30)
    note = res.info["open_set"]
    assert ": fast,slow" in note and "without slow" in note, note
    assert {inst.cluster_names[c] for c in set(res.plan.prefill.tolist())} == {"fast"}, note
    assert res.objective == pytest.approx(OPTIMUM, rel=1e-9) and res.status == "optimal"


def test_drop_clusters_swaps_a_dear_cluster_for_a_cheaper_one_when_none_can_close():
    """Four 1000 tok/s clusters at $1, $1, $2 and $1.5 per hour; the work (240 k tokens within
    150 s) needs two of them (150 k each). A plan on the $1 and $2 ones can close neither; the
    swap with the largest saving, $2 -> the closed $1 one, holds the work: $2/h, the cheapest
    pair (the covering optimum)."""
    import time

    import numpy as np

    from planner.exact.aggregated import drop_clusters
    from planner.plan import Plan

    clusters = [{"name": "a", "cost_per_hour": 1.0}, {"name": "b", "cost_per_hour": 1.0},
                {"name": "c", "cost_per_hour": 2.0}, {"name": "d", "cost_per_hour": 1.5}]
    n = REQUEST_LEVEL_MAX + 400
    inst = instance(clusters, [{"prompt_tokens": 240_000 // n}] * n, objective="cost",
                    horizon_s=HORIZON)
    pre = np.where(np.arange(n) % 2 == 0, 0, 2)  # a and c
    start = Plan(pre, np.full(n, -1))
    assert evaluate_arrays(inst, start).feasible
    plan, notes = drop_clusters(inst, start, 1500, time.perf_counter() + 20, 1.0, 1, 0)
    used = {inst.cluster_names[c] for c in set(plan.prefill.tolist())}
    assert used == {"a", "b"}, notes
    assert "without c, with b" in " ".join(notes), notes
    assert evaluate_arrays(inst, plan).objective == pytest.approx(2.0 * HORIZON / 3600, rel=1e-9)
