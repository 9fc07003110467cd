"""Greedy (2 - 1/m) and LPT (4/3 - 1/(3m)) on identical clusters, against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from factory import make_scenario

from planner import evaluate, load_scenario, solve

M = 3


def _pool(sizes: list[int]):
    """M identical mixed clusters (1000 prefill tok/s, 1 replica); prefill-only requests whose
    prefill seconds are ``sizes``."""
    clusters = [{"name": f"c{k}"} for k in range(M)]
    reqs = [{"arrival_s": float(i), "prompt_tokens": int(s) * 1000} for i, s in enumerate(sizes)]
    return load_scenario(make_scenario(clusters, reqs))


def _optimum(sizes: list[int]) -> float:
    a = np.array(list(itertools.product(range(M), repeat=len(sizes))))  # (M^n, n)
    loads = np.stack([(a == k) @ np.asarray(sizes, float) for k in range(M)], axis=1)
    return float(loads.max(axis=1).min())


def test_greedy_and_lpt_within_their_bounds_on_random_cases():
    rng = np.random.default_rng(2024)
    worst_g = worst_l = 0.0
    for _ in range(200):
        n = int(rng.integers(4, 9))
        sizes = rng.integers(1, 20, size=n).tolist()
        sc = _pool(sizes)
        opt = _optimum(sizes)
        g = solve(sc, "greedy")
        lp = solve(sc, "lpt")
        assert g.info["path"] == "pool-heap"
        assert g.objective <= (2 - 1 / M) * opt + 1e-9
        assert lp.objective <= (4 / 3 - 1 / (3 * M)) * opt + 1e-9
        assert g.objective >= opt - 1e-9 and lp.objective >= opt - 1e-9
        worst_g = max(worst_g, g.objective / opt)
        worst_l = max(worst_l, lp.objective / opt)
        # the heap path and the general vectorized path make the same decisions
        g2 = solve(sc, "greedy", fast=False)
        assert g2.info["path"] == "general"
        assert np.array_equal(g.plan.prefill, g2.plan.prefill)
    assert worst_g > 1.0  # the cases are not all trivial


def test_greedy_tight_instance_reaches_two_minus_one_over_m():
    # m(m-1) unit jobs then one job of length m: greedy m - 1 + m, optimum m
    sizes = [1] * (M * (M - 1)) + [M]
    sc = _pool(sizes)
    g = solve(sc, "greedy")
    assert g.objective == pytest.approx(2 * M - 1)
    assert g.objective / _optimum(sizes) == pytest.approx(2 - 1 / M)
    # LPT places the long job first and is optimal here
    assert solve(sc, "lpt").objective == pytest.approx(M)


def test_greedy_pool_path_checks_memory_and_matches_general_path():
    # decode-heavy requests on tiny KV memory: memory binds, so the heap top is not always right
    rng = np.random.default_rng(5)
    # (3500 tokens per replica: every request, at most 1500 + 1500 tokens, fits one)
    clusters = [{"name": f"c{k}", "kv_capacity_gb": 0.0035} for k in range(4)]
    reqs = [{"arrival_s": float(i), "prompt_tokens": int(rng.integers(10, 1500)),
             "output_tokens": int(rng.integers(0, 1500))} for i in range(60)]
    sc = load_scenario(make_scenario(clusters, reqs))
    g, g2 = solve(sc, "greedy"), solve(sc, "greedy", fast=False)
    assert g.info["path"] == "pool-heap" and g.status == "feasible"
    assert evaluate(sc, g.plan).bottleneck.startswith("memory")
    assert np.array_equal(g.plan.prefill, g2.plan.prefill)
    assert g.objective == pytest.approx(g2.objective)
    assert g.info["model_makespan_s"] == pytest.approx(g.objective, rel=1e-9)
