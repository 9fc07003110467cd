"""dist_sched takes the locality branch when loads are balanced, least load when not."""

from __future__ import annotations

from factory import make_scenario

from planner import load_scenario, solve


def _two_clusters():
    clusters = [{"name": "c0"}, {"name": "c1"}]
    reqs = [{"arrival_s": 0.0, "prompt_tokens": 2000, "output_tokens": 10, "prefix": "sys"},
            {"arrival_s": 0.0, "prompt_tokens": 2000, "output_tokens": 10, "prefix": "sys"}]
    return load_scenario(make_scenario(clusters, reqs, prefix_caching=True))


def test_balanced_loads_take_the_prefix_match():
    res = solve(_two_clusters(), "dist_sched")  # loads 1 vs 0: balanced under abs 32
    assert res.info["branch"].tolist() == [0, 0]
    assert res.plan.prefill.tolist() == [0, 0]  # the second follows its cached prefix to c0


def test_imbalanced_loads_take_the_least_loaded():
    res = solve(_two_clusters(), "dist_sched", balance_abs=0.5)  # 1 - 0 > 0.5, 1 > 1.0001 * 0
    assert res.info["branch"].tolist() == [0, 1]
    assert res.plan.prefill.tolist() == [0, 1]


def test_relative_threshold_also_matters():
    clusters = [{"name": "c0"}, {"name": "c1"}]
    reqs = [{"arrival_s": 0.0, "prompt_tokens": 2000, "output_tokens": 10, "prefix": p}
            for p in ("a", None, "a", "a")]
    for r in reqs:
        if r["prefix"] is None:
            del r["prefix"]
    sc = load_scenario(make_scenario(clusters, reqs, prefix_caching=True))
    # the last request sees loads 2 vs 1: over abs 0.5; 2 > 1.0001 x 1 is imbalanced ...
    tight = solve(sc, "dist_sched", balance_abs=0.5)
    assert tight.info["branch"].tolist() == [0, 1, 0, 1]
    assert tight.plan.prefill.tolist() == [0, 1, 0, 1]
    # ... but not 2 > 3 x 1: balanced, so it follows prefix "a" to c0
    loose = solve(sc, "dist_sched", balance_abs=0.5, balance_rel=3.0)
    assert loose.info["branch"].tolist() == [0, 1, 0, 0]
    assert loose.plan.prefill.tolist() == [0, 1, 0, 0]
