"""Replay properties: memory within capacity, the fluid makespan as a lower bound for every method
on (small variants of) the example scenarios, queue policies, rebalancing."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from factory import SCENARIOS, make_scenario
from hypothesis import given, settings
from hypothesis import strategies as st

from planner import Plan, build_instance, load_scenario, methods, solve
from planner.metrics import evaluate_arrays
from planner.simulate import simulate


def _small(name: str, count: int) -> dict:
    path = SCENARIOS / name
    data = yaml.safe_load(path.read_text())
    wl = data["workload"]
    if "file" in wl:
        wl["file"]["limit"] = count
        wl["file"]["path"] = str((path.parent / wl["file"]["path"]).resolve())
    else:
        wl["synthetic"]["count"] = count
    return data


EXAMPLES = ["quickstart.yaml", "two-region-azure.yaml", "multi-dc-mooncake.yaml",
            "large-synthetic.yaml"]


@pytest.fixture(scope="module")
def small_examples():
    return {n: build_instance(load_scenario(_small(n, 60))) for n in EXAMPLES}


def test_fluid_makespan_bounds_replay_for_every_method(small_examples):
    names = [m.name for m in methods()]
    checked = 0
    for scen, inst in small_examples.items():
        for name in names:
            res = solve(inst, method=name, time_limit=1.0)
            if res.plan is None:
                continue
            fluid = evaluate_arrays(inst, res.plan).makespan_s
            rep = simulate(inst, res.plan)
            assert rep.memory_ok, (scen, name)
            assert (rep.requests["status"] != "too_large").all(), (scen, name)
            assert rep.makespan_s >= fluid * (1 - 1e-9) - 1e-9, (scen, name, rep.makespan_s, fluid)
            checked += 1
    assert checked >= 4 * 5


@pytest.mark.parametrize("preemption", ["recompute", "swap"])
@pytest.mark.parametrize("queue", ["fcfs", "sjf", "mlq", "aging"])
def test_memory_never_exceeds_capacity_under_pressure(preemption, queue):
    rng = np.random.default_rng(hash((preemption, queue)) % 2**32)
    reqs = [{"arrival_s": float(a), "prompt_tokens": int(p), "output_tokens": int(d),
             "priority": int(q)}
            for a, p, d, q in zip(np.sort(rng.uniform(0, 2, 40)), rng.integers(1, 300, 40),
                                  rng.integers(1, 400, 40), rng.integers(0, 3, 40), strict=True)]
    sc = load_scenario(make_scenario(
        [{"name": "p", "role": "prefill", "replicas": 2},
         {"name": "d", "role": "decode", "replicas": 2, "kv_capacity_gb": 1e-3, "max_batch_size": 8},
         {"name": "m", "kv_capacity_gb": 8e-4, "max_batch_size": 8}], reqs))
    inst = build_instance(sc)
    n = inst.n_requests
    pre = np.where(np.arange(n) % 2 == 0, 0, 2)
    dec = np.where(np.arange(n) % 3 == 0, 2, 1)
    plan = Plan(pre, dec)
    rep = simulate(inst, plan, queue=queue, preemption=preemption, host_bandwidth_gb_s=0.01)
    assert rep.memory_ok
    assert rep.preemptions > 0
    assert (rep.requests["status"] == "done").all()
    fluid = evaluate_arrays(inst, plan).makespan_s
    assert rep.makespan_s >= fluid * (1 - 1e-9)
    for r in rep.replicas:
        assert r.memory_bytes.max() <= r.capacity_bytes * (1 + 1e-9)


def _batch1(requests):
    # one mixed replica decoding one request at a time: step 0.01 s
    sc = load_scenario(make_scenario([{"name": "m", "max_batch_size": 1,
                                       "decode_tokens_per_s": 100.0}], requests))
    inst = build_instance(sc)
    n = inst.n_requests
    return inst, Plan(np.zeros(n, np.int64), np.zeros(n, np.int64))


def test_sjf_lowers_mean_completion_than_fcfs():
    reqs = [{"prompt_tokens": 10, "output_tokens": 200}] + \
        [{"prompt_tokens": 10, "output_tokens": 5}] * 4
    inst, plan = _batch1(reqs)
    fcfs = simulate(inst, plan, queue="fcfs").requests["e2e_s"].mean()
    sjf = simulate(inst, plan, queue="sjf").requests["e2e_s"].mean()
    assert sjf < 0.5 * fcfs
    # the packers' orders replayed give the same ranking
    by = {m: simulate(inst, solve(inst, method=m).plan).requests["e2e_s"].mean()
          for m in ("batch_fcfs", "batch_sjf")}
    assert by["batch_sjf"] < by["batch_fcfs"]


def test_aging_bounds_the_wait_sjf_starves():
    # a long request (200 tokens) at 0.001 behind a stream of short ones (5 tokens, 0.06 s of
    # service each) arriving every 0.04 s for 8 s: SJF serves every short first; aging at 50
    # tokens/s lets the long one pass the shorts that arrive after 0.001 + (200 - 5) / 50 = 3.9 s.
    reqs = [{"arrival_s": 0.0, "prompt_tokens": 10, "output_tokens": 5},
            {"arrival_s": 0.001, "prompt_tokens": 10, "output_tokens": 200}] + \
        [{"arrival_s": 0.04 * k, "prompt_tokens": 10, "output_tokens": 5} for k in range(1, 200)]
    inst, plan = _batch1(reqs)

    def wait(**kw):
        r = simulate(inst, plan, **kw).requests
        return float(r["decode_start_s"][1] - r["arrival_s"][1])

    starved = wait(queue="sjf")
    aged = wait(queue="aging", aging_rate=50.0)
    assert starved > 10.0
    # shorts arriving by 3.9 s hold at most 3.9 / 0.04 + 1 = 98 services of 0.06 s: 5.9 s
    assert aged < 6.0
    assert wait(queue="fcfs") < 0.1


@pytest.mark.parametrize("policy", ["load_pair", "cache_threshold"])
def test_rebalancing_runs_and_keeps_memory(policy):
    rng = np.random.default_rng(5)
    reqs = [{"arrival_s": float(a), "prompt_tokens": int(p), "output_tokens": int(d)}
            for a, p, d in zip(np.sort(rng.uniform(0, 1, 60)), rng.integers(10, 400, 60),
                               rng.integers(1, 600, 60), strict=True)]
    sc = load_scenario(make_scenario(
        [{"name": "p", "role": "prefill", "replicas": 2},
         {"name": "d", "role": "decode", "replicas": 3, "kv_capacity_gb": 2e-3,
          "max_batch_size": 8}], reqs))
    inst = build_instance(sc)
    plan = Plan(np.zeros(60, np.int64), np.ones(60, np.int64))
    base = simulate(inst, plan)
    rep = simulate(inst, plan, rebalance=policy, rebalance_period_s=0.05,
                   long_threshold_tokens=500, long_replicas=1)
    assert rep.memory_ok and (rep.requests["status"] == "done").all()
    assert rep.makespan_s >= evaluate_arrays(inst, plan).makespan_s * (1 - 1e-9)
    assert base.makespan_s > 0
    if policy == "cache_threshold":  # every request that grew past 500 tokens ended on d#2
        r = rep.requests
        long = (r["prompt_tokens"] + r["output_tokens"] > 500)
        assert long.any()


def test_result_tables_and_json():
    inst, plan = _batch1([{"prompt_tokens": 10, "output_tokens": 5}] * 3)
    rep = simulate(inst, plan, slo={"ttft_s": 1.0, "tpot_s": 0.02})
    d = rep.to_dict(requests=True)
    assert d["completed"] == 3 and d["goodput"] == 3 and len(d["requests"]) == 3
    assert set(d["replicas"]) == {"m#0"} and "memory_bytes" in d["replicas"]["m#0"]
    df = rep.to_frame()
    assert list(df["status"]) == ["done"] * 3
    assert len(rep.memory_frame()) >= 2
    import json

    json.dumps(d)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5).flatmap(lambda n_links: st.tuples(
    st.lists(st.floats(0.1, 100.0), min_size=n_links, max_size=n_links),
    st.lists(st.sets(st.integers(0, n_links - 1), min_size=1), min_size=1, max_size=12))))
def test_max_min_rates_are_feasible_and_each_transfer_has_a_bottleneck(case):
    from planner.simulate.engine import max_min_rates

    bw, route_sets = case
    routes = [tuple(sorted(r)) for r in route_sets]
    rate = max_min_rates(routes, bw)
    load = np.zeros(len(bw))
    for f, route in enumerate(routes):
        assert rate[f] > 0
        load[list(route)] += rate[f]
    assert np.all(load <= np.array(bw) * (1 + 1e-9))
    for f, route in enumerate(routes):
        # a full link on the route where no other transfer is faster (max-min optimality)
        assert any(load[lk] >= bw[lk] * (1 - 1e-9)
                   and all(rate[g] <= rate[f] * (1 + 1e-9) for g, r in enumerate(routes) if lk in r)
                   for lk in route), (f, routes, bw, rate)
