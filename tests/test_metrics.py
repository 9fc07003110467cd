"""The evaluator against figures worked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from factory import make_scenario

from planner import Plan, PlanError, as_instance, evaluate, load_scenario
from planner.plan import plan_from_dict


def test_contract_figures(contract_scenario, contract_plan):
    sc = load_scenario(contract_scenario)
    plan, _ = plan_from_dict(json.loads(contract_plan.read_text()), as_instance(sc))
    d = evaluate(sc, plan).to_dict()
    assert d["clusters"]["ep"]["load_s"] == pytest.approx(3.0)
    assert d["clusters"]["ed"]["load_s"] == pytest.approx(2.5)
    assert d["clusters"]["wd"]["load_s"] == pytest.approx(2.0)
    assert d["links"]["east|west"]["bytes"] == pytest.approx(2_000_000)
    assert d["links"]["east|west"]["load_s"] == pytest.approx(2.0)
    assert d["makespan_s"] == pytest.approx(3.0)
    assert d["clusters"]["wd"]["memory_time_Bs"] == pytest.approx(16_400_000)
    assert d["clusters"]["ed"]["memory_time_Bs"] == pytest.approx(26_850_000)
    assert d["cost"] == pytest.approx(0.0076667, rel=1e-4)
    assert (d["served"], d["refused"]) == (3, 0)


def _line_scenario(**top):
    """a - b - c in a line; prefill in a, decode in c: the KV crosses two links."""
    return make_scenario(
        [
            {"name": "pa", "role": "prefill", "dc": "a", "replicas": 2, "cost_per_hour": 4.0},
            {"name": "dc", "role": "decode", "dc": "c", "decode_tokens_per_s": 50.0},
            {"name": "mb", "role": "mixed", "dc": "b"},
        ],
        [
            {"prompt_tokens": 4000, "output_tokens": 100},
            {"prompt_tokens": 1000, "output_tokens": 0},
            {"prompt_tokens": 2000, "output_tokens": 20},
        ],
        links=[
            {"between": ["a", "b"], "bandwidth_gbps": 0.016, "cost_per_gb": 1.0},  # 2e6 B/s
            {"between": ["b", "c"], "bandwidth_gbps": 0.008, "cost_per_gb": 2.0},  # 1e6 B/s
        ],
        datacenters=["a", "b", "c"],
        **top,
    )


def test_two_hop_route_bytes_memory_and_cost():
    sc = load_scenario(_line_scenario(horizon_s=3600))
    inst = as_instance(sc)
    c = {n: i for i, n in enumerate(inst.cluster_names)}
    plan = Plan([c["pa"], c["pa"], c["mb"]], [c["dc"], -1, c["mb"]])
    m = evaluate(sc, plan)
    d = m.to_dict()
    # r0 crosses a|b and b|c with 1000 B/token x 4000 tokens; r2 stays in b
    assert d["links"]["a|b"]["bytes"] == pytest.approx(4e6)
    assert d["links"]["b|c"]["bytes"] == pytest.approx(4e6)
    assert d["links"]["a|b"]["load_s"] == pytest.approx(2.0)
    assert d["links"]["b|c"]["load_s"] == pytest.approx(4.0)
    # pa: (4000 + 1000) / 1000 / 2 replicas; mb: 2000/1000 + 20/100; dc: 100/50
    assert d["clusters"]["pa"]["load_s"] == pytest.approx(2.5)
    assert d["clusters"]["mb"]["load_s"] == pytest.approx(2.2)
    assert d["clusters"]["dc"]["load_s"] == pytest.approx(2.0)
    # dc: step at batch 4 = 4/50 = 0.08 s; memory-time 1000 x (4000 + 50) x 100 x 0.08
    assert d["clusters"]["dc"]["memory_time_Bs"] == pytest.approx(1000 * 4050 * 100 * 0.08)
    assert d["clusters"]["mb"]["memory_time_Bs"] == pytest.approx(1000 * 2010 * 20 * 0.04)
    assert m.makespan_s == pytest.approx(4.0)
    assert m.bottleneck == "link:b|c"
    # rent over the horizon: pa 2 x $4, dc $1, mb $1 for one hour; egress 4e6 B at $1 + $2 / GB
    assert m.cost == pytest.approx(8 + 1 + 1 + 0.004 * 1 + 0.004 * 2)
    assert m.within_horizon


def test_unused_cluster_costs_nothing_and_horizon_violation_is_flagged():
    sc = load_scenario(_line_scenario(horizon_s=3.0))
    inst = as_instance(sc)
    mb = inst.cluster_index("mb")
    plan = Plan([mb, mb, mb], [mb, -1, mb])
    m = evaluate(sc, plan)
    assert m.makespan_s == pytest.approx(4.0 + 1.0 + 2.0 + 1.0 + 0.2)  # all on one replica
    assert not m.within_horizon
    assert m.cost == pytest.approx(1.0 * 3.0 / 3600)  # only mb rented, no link crossed
    assert m.to_dict()["clusters"]["pa"]["used"] is False


def test_prefill_only_single_replica_is_classic_machine_load():
    jobs = [3000, 1000, 2000, 2500, 500]
    speeds = {"m0": 1000.0, "m1": 500.0}
    sc = load_scenario(make_scenario(
        [{"name": n, "role": "mixed", "prefill_tokens_per_s": s} for n, s in speeds.items()],
        [{"prompt_tokens": p} for p in jobs]))
    plan = Plan([0, 1, 0, 1, 0], [-1] * 5)
    m = evaluate(sc, plan)
    loads = {"m0": (3000 + 2000 + 500) / 1000, "m1": (1000 + 2500) / 500}
    assert m.to_dict()["clusters"]["m0"]["load_s"] == pytest.approx(loads["m0"])
    assert m.makespan_s == pytest.approx(max(loads.values()))
    assert m.bottleneck == "cluster:m1"


def test_refused_requests_are_counted_and_cost_nothing():
    sc = load_scenario(make_scenario([{"name": "m"}], [{"prompt_tokens": 100}] * 3))
    m = evaluate(sc, Plan([0, -1, -1], [-1, -1, -1]))
    assert (m.served, m.refused) == (1, 2)
    assert m.makespan_s == pytest.approx(0.1)


def test_prefix_blocks_are_prefilled_once_per_cluster():
    reqs = [
        {"prompt_tokens": 1500, "prefix": "sys", "prefix_tokens": 1000},
        {"prompt_tokens": 1200, "prefix": "sys", "prefix_tokens": 1000},
        {"prompt_tokens": 1100, "prefix": "sys", "prefix_tokens": 1000},
    ]
    sc = load_scenario(make_scenario([{"name": "m0"}, {"name": "m1"}], reqs, prefix_caching=True))
    # r0 and r1 on m0 share the prefix; r2 alone on m1 pays it again
    m = evaluate(sc, Plan([0, 0, 1], [-1, -1, -1]))
    assert m.prefix_tokens_reused == 1000
    assert m.to_dict()["clusters"]["m0"]["load_s"] == pytest.approx((1500 + 200) / 1000)
    assert m.to_dict()["clusters"]["m1"]["load_s"] == pytest.approx(1.1)
    all_on_one = evaluate(sc, Plan([0, 0, 0], [-1] * 3))
    assert all_on_one.prefix_tokens_reused == 2000
    off = load_scenario(make_scenario([{"name": "m0"}, {"name": "m1"}], reqs, prefix_caching=False))
    assert evaluate(off, Plan([0, 0, 0], [-1] * 3)).prefix_tokens_reused == 0


def test_block_chains_share_only_their_common_leading_blocks():
    reqs = [
        {"prompt_tokens": 1536, "prefix": [1, 2, 3]},
        {"prompt_tokens": 1200, "prefix": [1, 2, 9]},  # shares blocks 1, 2 (1024 tokens)
        {"prompt_tokens": 600, "prefix": [7, 8]},
    ]
    sc = load_scenario(make_scenario([{"name": "m"}], reqs, prefix_caching=True))
    m = evaluate(sc, Plan([0, 0, 0], [-1] * 3))
    assert m.prefix_tokens_reused == 1024
    assert m.makespan_s == pytest.approx((1536 + 1200 + 600 - 1024) / 1000)


@pytest.mark.parametrize("reqs, shared", [
    # one group given two lengths: the two requests share at most the shorter one
    ([{"prompt_tokens": 1000, "prefix": "g", "prefix_tokens": 100},
      {"prompt_tokens": 1000, "prefix": "g", "prefix_tokens": 1000}], 100),
    # block 2 is the 88-token tail of the first prompt and a full 512-token block of the second
    ([{"prompt_tokens": 600, "prefix": [1, 2]}, {"prompt_tokens": 1100, "prefix": [1, 2]}], 600),
])
def test_a_shared_block_is_credited_at_its_shortest_length(reqs, shared, caplog):
    sc = load_scenario(make_scenario([{"name": "m"}], reqs, prefix_caching=True))
    with caplog.at_level("WARNING", logger="planner.instance"):
        m = evaluate(sc, Plan([0, 0], [-1, -1]))
    total = sum(r["prompt_tokens"] for r in reqs)
    # never fewer tokens prefilled than the longest prompt: only what was computed is reused
    assert m.prefix_tokens_reused == shared
    assert m.makespan_s == pytest.approx((total - shared) / 1000)
    assert m.makespan_s >= max(r["prompt_tokens"] for r in reqs) / 1000
    assert "shortest occurrence" in caplog.text


@pytest.mark.parametrize("plan, field, words", [
    (([1, 0], [0, 1]), "requests[0].prefill", "cannot prefill"),
    (([0, 0], [0, 0]), "requests[0].decode", "cannot decode"),
    (([0, -1], [1, 1]), "requests[1].decode", "refused request"),
    (([0, 0], [1, -1]), "requests[1].decode", "needs a decode cluster"),
])
def test_role_mismatch_is_an_invalid_plan(plan, field, words):
    sc = load_scenario(make_scenario(
        [{"name": "p", "role": "prefill"}, {"name": "d", "role": "decode"}],
        [{"id": "a", "prompt_tokens": 10, "output_tokens": 5},
         {"id": "b", "prompt_tokens": 10, "output_tokens": 5}]))
    with pytest.raises(PlanError) as err:
        evaluate(sc, Plan(*plan))
    assert field in str(err.value) and words in str(err.value)


def test_unreachable_pair_is_an_invalid_plan():
    sc = load_scenario(make_scenario(
        [{"name": "p", "role": "prefill", "dc": "x"}, {"name": "m", "role": "mixed", "dc": "y"},
         {"name": "d", "role": "decode", "dc": "x"}],
        [{"prompt_tokens": 10, "output_tokens": 5}]))
    with pytest.raises(PlanError, match="no route"):
        evaluate(sc, Plan([1], [2]))


def test_work_is_conserved_on_a_large_random_plan():
    sc = load_scenario(make_scenario(
        [{"name": f"c{i}", "replicas": 1 + i % 3, "prefill_tokens_per_s": 500.0 + 100 * i}
         for i in range(5)],
        [{"prompt_tokens": 10 + 7 * k, "output_tokens": k % 11} for k in range(300)]))
    inst = as_instance(sc)
    rng = np.random.default_rng(0)
    pre = rng.integers(0, 5, 300)
    dec = rng.integers(0, 5, 300)
    m = evaluate(sc, Plan(pre, dec))
    total = (inst.prompt_tokens / inst.prefill_tps[pre]).sum() + \
        (inst.output_tokens / inst.decode_tps[dec]).sum()
    assert (m.load_s * inst.replicas).sum() == pytest.approx(total)
