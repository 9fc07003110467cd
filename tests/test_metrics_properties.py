"""Property tests: random valid scenarios and random valid plans."""

from __future__ import annotations

import numpy as np
import pytest
from factory import make_scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner import Plan, as_instance, evaluate, load_scenario

roles = st.sampled_from(["prefill", "decode", "mixed"])


@st.composite
def scenario_and_plan(draw):
    n_dc = draw(st.integers(1, 3))
    dcs = [f"d{i}" for i in range(n_dc)]
    n_cl = draw(st.integers(1, 5))
    clusters = []
    for i in range(n_cl):
        clusters.append({
            "name": f"c{i}", "role": draw(roles), "dc": draw(st.sampled_from(dcs)),
            "replicas": draw(st.integers(1, 4)),
            "prefill_tokens_per_s": draw(st.floats(10, 1e5)),
            "decode_tokens_per_s": draw(st.floats(1, 1e4)),
            "kv_capacity_gb": draw(st.floats(0.1, 100)),
            "max_batch_size": draw(st.integers(1, 512)),
            "cost_per_hour": draw(st.floats(0, 10)),
        })
    # make the roles valid: at least one prefill-capable and one decode-capable cluster
    clusters[0]["role"] = "mixed"
    # a path d0 - d1 - d2 so every decode cluster is reachable
    links = [{"between": [dcs[i], dcs[i + 1]], "bandwidth_gbps": draw(st.floats(0.001, 400)),
              "latency_ms": draw(st.floats(0, 100)), "cost_per_gb": draw(st.floats(0, 1))}
             for i in range(n_dc - 1)]
    n_req = draw(st.integers(1, 30))
    groups = st.one_of(st.none(), st.sampled_from(["g0", "g1"]))
    reqs = [{"prompt_tokens": draw(st.integers(0, 20000)), "output_tokens": draw(st.integers(0, 3000)),
             "prefix": draw(groups)} for _ in range(n_req)]
    horizon = draw(st.one_of(st.none(), st.floats(1, 1e5)))
    top = {"prefix_caching": draw(st.booleans())}
    if horizon is not None:
        top["horizon_s"] = horizon
    data = make_scenario(clusters, reqs, links=links, datacenters=dcs, **top)
    sc = load_scenario(data)
    inst = as_instance(sc)
    valid = np.argwhere(inst.valid_pairs)
    picks = [draw(st.integers(-1, len(valid) - 1)) for _ in range(n_req)]
    pre = np.array([valid[k][0] if k >= 0 else -1 for k in picks])
    dec = np.array([valid[k][1] if k >= 0 else -1 for k in picks])
    return sc, inst, Plan(pre, dec)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario_and_plan())
def test_evaluator_invariants(case):
    sc, inst, plan = case
    m = evaluate(sc, plan)
    assert np.all(m.load_s >= 0) and np.all(m.memory_load_s >= 0) and np.all(m.link_load_s >= 0)
    assert m.served + m.refused == inst.n_requests
    assert m.makespan_s >= max(m.load_s.max(initial=0), m.link_load_s.max(initial=0)) - 1e-12
    assert m.cost >= 0
    served = plan.prefill >= 0
    decoding = served & (inst.output_tokens > 0)
    # total work: the sum of cluster work equals the work of the requests (less reused prefix)
    pre_s = ((inst.prompt_tokens / inst.prefill_tps[plan.prefill])[served]).sum()
    dec_s = ((inst.output_tokens / inst.decode_tps[plan.decode])[decoding]).sum()
    reused_s = pre_s - (m.prefill_s * inst.replicas).sum()
    assert (m.decode_s * inst.replicas).sum() == pytest.approx(dec_s, rel=1e-9, abs=1e-9)
    assert reused_s >= -1e-9
    if not inst.prefix_caching:
        assert reused_s == pytest.approx(0.0, abs=1e-6)
        assert m.prefix_tokens_reused == 0
    # link bytes: every moving request's KV on each link of its route
    moving = decoding & (inst.cluster_dc[np.maximum(plan.prefill, 0)] !=
                         inst.cluster_dc[np.maximum(plan.decode, 0)])
    if inst.n_links:
        assert m.link_bytes.sum() >= inst.kv_bytes[moving].sum() - 1e-6
    else:
        assert not moving.any()
