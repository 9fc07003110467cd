"""Heatmap cells against a direct computation of the best pair, and its save/load forms."""

from __future__ import annotations

import json

import numpy as np
import pytest
from factory import make_scenario

from heuristics.scenarios import small
from planner import load_scenario, solve
from planner.api import as_instance
from planner.heuristics.heatmap import Heatmap, build_heatmap


def _direct_latency(inst, P: float, D: float, p: int, d: int) -> float:
    """Serve one request of shape (P, D) on an idle fleet: prefill, KV over the route, decode."""
    t = P / inst.prefill_tps[p] + D * inst.step_full_s[d]
    if D > 0 and inst.cluster_dc[p] != inst.cluster_dc[d]:
        links = np.flatnonzero(inst.pair_links[p * inst.n_clusters + d])
        t += P * inst.kv_bytes_per_token / inst.bandwidth_Bps[links].min()
        t += inst.route_latency_s[p, d]
    return t


@pytest.mark.parametrize("name", ["quickstart", "multi-dc-mooncake", "large-synthetic"])
def test_cells_hold_the_directly_computed_best_pair(name: str):
    inst = as_instance(small(name, 500))
    hm = build_heatmap(inst, prefill_buckets=5, decode_buckets=4)
    valid = inst.valid_pairs
    mixed = inst.can_prefill & inst.can_decode
    pairs = [(p, d) for p in range(inst.n_clusters) for d in range(inst.n_clusters)
             if valid[p, d] and not (p != d and mixed[p] and mixed[d])]
    for i, P in enumerate(hm.prefill_shape):
        for j, D in enumerate(hm.decode_shape):
            costs = sorted(_direct_latency(inst, P, D, p, d) for p, d in pairs)
            got = _direct_latency(inst, P, D, hm.best_prefill[i, j], hm.best_decode[i, j])
            assert got == pytest.approx(costs[0], rel=1e-12)
            assert hm.best_cost[i, j] == pytest.approx(costs[0], rel=1e-12)
            assert hm.margin[i, j] == pytest.approx(costs[1] - costs[0], rel=1e-9, abs=1e-12)
    assert hm.counts.sum() == inst.n_requests


def test_heatmap_routes_by_lookup_and_round_trips(tmp_path):
    clusters = [{"name": "fast", "prefill_tokens_per_s": 4000.0, "decode_tokens_per_s": 50.0},
                {"name": "slow", "prefill_tokens_per_s": 500.0, "decode_tokens_per_s": 400.0}]
    reqs = [{"arrival_s": float(i), "prompt_tokens": p, "output_tokens": o}
            for i, (p, o) in enumerate([(4000, 1), (100, 800), (3000, 2), (50, 900)])]
    sc = load_scenario(make_scenario(clusters, reqs))
    res = solve(sc, "heatmap", prefill_edges="0,1000,10000", decode_edges="0,100,1000")
    hm = res.info["heatmap"]
    assert hm.shape == (2, 2)
    # long prompt, short output: prefill speed wins; short prompt, long output: decode speed
    assert res.plan.prefill.tolist() == [0, 1, 0, 1]
    back = Heatmap.from_dict(json.loads(json.dumps(hm.to_dict())))
    assert np.array_equal(back.best_prefill, hm.best_prefill)
    assert np.allclose(back.best_cost, hm.best_cost)
    hm.to_csv(tmp_path / "h.csv")
    hm.to_json(tmp_path / "h.json")
    assert Heatmap.from_json(tmp_path / "h.json").cluster_names == ("fast", "slow")
    lines = (tmp_path / "h.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 and lines[0].startswith("prefill_lo,")


def test_quantile_edges_follow_the_workload():
    inst = as_instance(small("large-synthetic", 2000))
    hm = build_heatmap(inst, prefill_buckets=4, decode_buckets=4)
    assert hm.prefill_edges[0] == inst.prompt_tokens.min()
    assert hm.prefill_edges[-1] == inst.prompt_tokens.max()
    q = np.quantile(inst.output_tokens, [0, 0.25, 0.5, 0.75, 1])
    assert np.array_equal(hm.decode_edges, np.unique(q))
    share = hm.counts.sum(axis=0) / inst.n_requests  # decode buckets hold about a quarter each
    assert np.all(np.abs(share - 0.25) < 0.05)
