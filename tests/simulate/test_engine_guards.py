"""The replay's reading of a plan's order, and its guards against times it cannot represent."""

from __future__ import annotations

import heapq
import json
import logging

import numpy as np
import pytest

from planner import as_instance, load_scenario, solve
from planner.scenario.errors import ScenarioError
from planner.simulate import simulate
from planner.simulate.config import ReplayConfig
from planner.simulate.engine import READY, XFER, Simulator


def test_order_ranks_only_requests_decoded_on_the_named_cluster(contract_scenario, caplog):
    # a cluster key ranked any request it listed, wherever it decoded, while a replica key
    # ignored them: both now ignore (and log) requests decoded elsewhere
    inst = as_instance(load_scenario(contract_scenario))
    plan = solve(inst, "round_robin").plan  # r1 on ed, r2 on wd, r3 on ed
    plan.order = {"wd": [0, 1], "ed#0": [2, 1]}
    with caplog.at_level(logging.WARNING, logger="planner.simulate.engine"):
        sim = Simulator(inst, plan, ReplayConfig())
    assert sim.rank == [-1, 1, 0] and sim.pin == [-1, -1, sim.cluster_reps[1][0]]
    assert [r.getMessage() for r in caplog.records] == [
        "plan order wd lists 1 requests it does not decode (first: index 0): ignored",
        "plan order ed#0 lists 1 requests it does not decode (first: index 1): ignored"]


# ---------------------------------------------------------------- times the clock cannot resolve
# Found by audit: ``planner simulate`` (and the replay of ``planner compare``) never ended when
# the clock reached times whose float64 resolution is coarser than a decode step (t + step == t):
# arrivals at epoch nanoseconds, a prefill rate of 1e-300 tokens/s, arrivals 1e16 s apart. The
# tests below bound the replay by counting its replica wake-ups, so the old code fails instead of
# hanging.

WAKE_LIMIT = 100_000


@pytest.fixture
def bounded(monkeypatch):
    calls = {"wake": 0, "rebalance": 0}

    def counted(name):
        orig = getattr(Simulator, name)

        def wrapper(self, *args):
            calls[name] += 1
            if calls[name] > WAKE_LIMIT:
                raise RuntimeError(f"{name} called {calls[name]} times: the replay does not end")
            return orig(self, *args)
        return wrapper

    monkeypatch.setattr(Simulator, "wake", counted("wake"))
    monkeypatch.setattr(Simulator, "rebalance", counted("rebalance"))
    return calls


def _scenario(tmp_path, contract_scenario, name="s", arrivals=None, time_scale=None,
              **cluster0):
    d = json.loads(contract_scenario.read_text())
    d["datacenters"][0]["clusters"][0].update(cluster0)
    if arrivals is not None:
        for row, a in zip(d["workload"]["requests"], arrivals, strict=True):
            row["arrival_s"] = a
    if time_scale is not None:
        d["workload"]["time_scale"] = time_scale
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize("shift, offsets", [(1.7e9, [0.0, 0.5, 1.0]),  # epoch seconds
                                            (1.7e18, [0.0, 512.0, 1024.0])])  # epoch ns
def test_epoch_arrivals_replay_like_arrivals_from_zero(tmp_path, contract_scenario, bounded,
                                                       shift, offsets):
    base = as_instance(load_scenario(_scenario(tmp_path, contract_scenario, "base",
                                               arrivals=offsets)))
    far = as_instance(load_scenario(_scenario(tmp_path, contract_scenario, "far",
                                              arrivals=[shift + o for o in offsets])))
    assert far.arrival_s.tolist() == [shift + o for o in offsets]  # exact in float64
    plan = solve(base, "round_robin").plan
    a, b = simulate(base, plan), simulate(far, plan)
    assert b.summary()["completed"] == 3
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert np.array_equal(a.requests[key], b.requests[key]), key
    assert np.array_equal(b.requests["arrival_s"], far.arrival_s)
    assert b.requests["completion_s"] == pytest.approx(a.requests["completion_s"] + shift,
                                                       rel=1e-15)
    assert b.makespan_s == pytest.approx(a.makespan_s + shift, rel=1e-15)
    assert b.replicas[0].memory_t[0] == shift and b.replicas[0].busy_s == a.replicas[0].busy_s


def _slowest(inst):
    """ep prefilling at 1e-300 tokens per second: the loader refuses rates below 1e-6, an
    Instance built in Python can still hold one."""
    import dataclasses

    tps = inst.prefill_tps.copy()
    tps[0] = 1e-300
    return dataclasses.replace(inst, prefill_tps=tps)


def test_times_below_the_clock_resolution_are_a_one_line_error(tmp_path, contract_scenario,
                                                               bounded):
    path = _scenario(tmp_path, contract_scenario, prefill_tokens_per_s=1e-6)
    inst = _slowest(as_instance(load_scenario(path)))  # below the loader's range
    plan = solve(inst, "greedy").plan
    with pytest.raises(ScenarioError) as err:
        simulate(inst, plan)
    assert str(err.value) == (
        f"{path}: datacenters[0].clusters[0].prefill_tokens_per_s: the replay cannot time this "
        "plan: the prefills on ep take 6e+303 s, so its clock reaches 6e+303 s, where float64 "
        "resolves 1.22e+288 s, too coarse for the 0.04 s decode step of ed (1e-300)")


def test_a_served_request_arriving_at_infinity_is_an_error(tmp_path, contract_scenario, bounded):
    # 1e308 * time_scale 10 overflowed to inf: the request never arrived and the replay reported
    # 2 of 3 requests completed, silently. The loader now refuses such a file
    # (tests/scenario/test_load_guards.py); an Instance built in Python can still hold one.
    import dataclasses

    path = _scenario(tmp_path, contract_scenario, arrivals=[1e308, 0.5, 1.0])
    inst = as_instance(load_scenario(path))
    plan = solve(inst, "round_robin").plan
    inst = dataclasses.replace(inst, arrival_s=inst.arrival_s * np.array([np.inf, 1.0, 1.0]))
    with pytest.raises(ScenarioError, match=r": workload: request r1: arrival time is not a "
                       r"finite number of seconds \(inf\)$"):
        simulate(inst, plan)


def test_the_stall_guard_ends_a_replay_whose_clock_stops(tmp_path, contract_scenario, bounded,
                                                         monkeypatch):
    # behind the resolution check, the event loop itself refuses to spin at one instant
    monkeypatch.setattr(Simulator, "_check_resolution", lambda self, plan: None, raising=False)
    path = _scenario(tmp_path, contract_scenario, prefill_tokens_per_s=1e-6)
    inst = _slowest(as_instance(load_scenario(path)))
    with pytest.raises(ScenarioError, match=r": simulate: the replay makes no progress: \d+ "
                       r"events at t = 2e\+303 s"):
        simulate(inst, solve(inst, "greedy").plan)


def test_a_transfer_shorter_than_the_clock_resolution_finishes(contract_scenario):
    # fair link sharing: the remaining time of a transfer below the resolution of t left
    # t + remaining == t, the transfer never advanced and XFER events repeated at t forever
    inst = as_instance(load_scenario(contract_scenario))
    sim = Simulator(inst, solve(inst, "round_robin").plan, ReplayConfig())  # r2: ep -> wd
    t = 3e10  # float64 resolves 3.8e-6 s here
    sim.x_last = t
    rate = sim.bw[0]
    sim.active[1] = [1.5e-6 * rate, (0,), 0.0]  # 1.5 us of transfer left
    sim._x_rates(t)
    when, _, kind, ver, _ = heapq.heappop(sim.heap)
    assert kind == XFER and when == t
    sim.xfer(ver, when)
    assert sim.active == {} and [e[2] for e in sim.heap] == [READY]


def test_a_short_rebalance_period_does_not_tick_through_idle_time(contract_scenario, bounded):
    # load_pair every 1e-9 s over a 12 s replay was 1.2e10 rebalance calls
    inst = as_instance(load_scenario(contract_scenario))
    plan = solve(inst, "round_robin").plan
    slow = simulate(inst, plan, rebalance="load_pair", rebalance_period_s=1.0)
    fast = simulate(inst, plan, rebalance="load_pair", rebalance_period_s=1e-9)
    assert fast.summary()["completed"] == slow.summary()["completed"] == 3
    assert bounded["rebalance"] < 100


def test_rebalance_ticks_stay_on_the_scenarios_clock():
    """load_pair rebalances at the multiples of its period on the scenario's clock. Rebasing the
    engine's clock to the first served arrival moved every tick with that arrival (found by
    review): refusing one request on a cluster of its own changed the others' latencies."""
    from factory import make_scenario

    from planner.plan import Plan

    rng = np.random.default_rng(0)
    reqs = [{"prompt_tokens": 50, "output_tokens": 5, "arrival_s": 0.13}] + [
        {"prompt_tokens": int(rng.integers(100, 2000)), "output_tokens": int(rng.integers(5, 80)),
         "arrival_s": 1.0 + 0.02 * k} for k in range(16)]
    doc = make_scenario([{"name": "iso", "dc": "dc1", "role": "mixed"},
                         {"name": "p", "role": "prefill", "prefill_tokens_per_s": 20000.0},
                         {"name": "d", "role": "decode", "replicas": 2, "max_batch_size": 1}],
                        reqs, links=[{"between": ["dc0", "dc1"], "bandwidth_gbps": 1.0}])
    inst = as_instance(load_scenario(doc))
    pre = np.array([0] + [1] * 16)
    dec = np.array([0] + [2] * 16)
    cfg = ReplayConfig(rebalance="load_pair", rebalance_period_s=0.3)
    both = simulate(inst, Plan(pre, dec), config=cfg)
    pre[0] = dec[0] = -1
    alone = simulate(inst, Plan(pre, dec), config=cfg)
    e2e_both = both.requests["e2e_s"][1:]
    assert np.allclose(alone.requests["e2e_s"][1:], e2e_both, rtol=0, atol=1e-9)
    assert (both.requests["decode_replica"][1:] == 1).any()  # both replicas decode
