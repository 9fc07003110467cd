"""The replay against timelines worked by hand (inline cards of conftest.make_scenario: prefill
1000 tok/s, decode 100 tok/s at batch 4, so a decode step takes 4/100 = 0.04 s; kv 1000 B/token)."""

from __future__ import annotations

import numpy as np
import pytest
from factory import make_scenario

from planner import Plan, build_instance, load_scenario
from planner.scenario.errors import OptionError
from planner.simulate import simulate


def _one_mixed(requests, **cluster):
    sc = load_scenario(make_scenario([{"name": "m", **cluster}], requests))
    inst = build_instance(sc)
    n = inst.n_requests
    return inst, Plan(np.zeros(n, np.int64), np.where(inst.output_tokens > 0, 0, -1))


def _row(rep, i, key):
    return float(rep.requests[key][i])


def test_one_replica_three_requests():
    # t=0: r0 (P=1000) and r1 (P=500) are admitted together: prefills 1.0 s + 0.5 s -> decode from
    # 1.5. r2 arrives at 0.2, is admitted at the next boundary, 1.5 (the replica is still
    # prefilling): its 0.1 s prefill moves the first decode step to 1.6..1.64.
    inst, plan = _one_mixed([
        {"arrival_s": 0.0, "prompt_tokens": 1000, "output_tokens": 10},
        {"arrival_s": 0.0, "prompt_tokens": 500, "output_tokens": 5},
        {"arrival_s": 0.2, "prompt_tokens": 100, "output_tokens": 2},
    ])
    rep = simulate(inst, plan)
    assert rep.requests["prefill_end_s"].tolist() == pytest.approx([1.0, 1.5, 1.6])
    assert rep.requests["first_token_s"].tolist() == pytest.approx([1.64, 1.64, 1.64])
    assert rep.requests["completion_s"].tolist() == pytest.approx([2.0, 1.8, 1.68])
    assert rep.requests["ttft_s"].tolist() == pytest.approx([1.64, 1.64, 1.44])
    # on a mixed cluster the decode is ready and starts at the prefill's end (the review found
    # decode_ready_s at the arrival, before the prefill had run)
    assert rep.requests["decode_ready_s"].tolist() == pytest.approx([1.0, 1.5, 1.6])
    assert rep.requests["decode_start_s"].tolist() == pytest.approx([1.0, 1.5, 1.6])
    assert _row(rep, 0, "tpot_s") == pytest.approx(0.04)
    assert rep.makespan_s == pytest.approx(2.0)
    assert rep.preemptions == 0 and rep.memory_ok
    # peak: 1600 prompt tokens + 2*3 + 5 + 8 generated ... at most the sum of prompts + outputs
    assert rep.replicas[0].peak_bytes <= 1000 * (1600 + 17)


def test_prefill_only_request_completes_at_prefill_end():
    inst, plan = _one_mixed([{"arrival_s": 1.0, "prompt_tokens": 300}])
    rep = simulate(inst, plan)
    assert _row(rep, 0, "completion_s") == pytest.approx(1.3)
    assert _row(rep, 0, "ttft_s") == pytest.approx(0.3)
    assert np.isnan(_row(rep, 0, "tpot_s"))  # no gap between output tokens to time
    s = rep.summary()
    assert s["tpot_s"]["p50"] is None
    assert s["goodput"] is None and s["goodput_fraction"] is None  # no SLO, no goodput


def _two_dc(sharing):
    # prefill in dc0 (2 replicas), decode in dc1; the link moves 1e6 B/s (0.008 Gbps), 10 ms.
    # r0: P=1000, prefill ends 1.0, 1e6 bytes; r1: P=1500, prefill ends 1.5, 1.5e6 bytes.
    sc = load_scenario(make_scenario(
        [{"name": "p", "role": "prefill", "replicas": 2, "dc": "dc0"},
         {"name": "d", "role": "decode", "dc": "dc1"}],
        [{"prompt_tokens": 1000, "output_tokens": 1}, {"prompt_tokens": 1500, "output_tokens": 1}],
        links=[{"between": ["dc0", "dc1"], "bandwidth_gbps": 0.008, "latency_ms": 10}]))
    inst = build_instance(sc)
    return simulate(inst, Plan([0, 0], [1, 1]), link_sharing=sharing)


def test_transfer_shares_link_fairly():
    # r0 alone 1.0..1.5 (0.5e6 sent), then both at 0.5e6 B/s: r0 done 2.5; r1 has 1e6 left at
    # 2.5, alone again: done 3.5. +10 ms latency, +one 0.04 s decode step each.
    rep = _two_dc("fair")
    assert rep.requests["decode_ready_s"].tolist() == pytest.approx([2.51, 3.51])
    assert rep.requests["completion_s"].tolist() == pytest.approx([2.55, 3.55])
    link = rep.links[0]
    assert link.bytes == pytest.approx(2.5e6)
    assert link.busy_s == pytest.approx(2.5)
    assert max(link.util) <= 1.0 + 1e-12


def test_transfer_fifo():
    rep = _two_dc("fifo")  # r0 1.0..2.0, r1 waits for the link: 2.0..3.5
    assert rep.requests["decode_ready_s"].tolist() == pytest.approx([2.01, 3.51])
    assert rep.links[0].busy_s == pytest.approx(2.5)


PREEMPT = [{"prompt_tokens": 5, "output_tokens": 10}, {"prompt_tokens": 5, "output_tokens": 10}]


def test_preemption_recompute():
    # capacity 20 tokens. Both admitted at 0 (prefills 5 ms each), decode from 0.01. After 5 steps
    # (t=0.21) they hold 10+10 tokens and the next step needs 22: r1 (latest, then highest index)
    # is preempted; r0 finishes at 0.21 + 5*0.04 = 0.41; r1 recomputes 5+5 tokens (0.01 s) and
    # decodes its last 5 tokens: 0.42 + 0.2 = 0.62.
    inst, plan = _one_mixed(PREEMPT, kv_capacity_gb=20e-9 * 1000)
    rep = simulate(inst, plan, preemption="recompute")
    assert rep.requests["completion_s"].tolist() == pytest.approx([0.41, 0.62])
    assert rep.requests["first_token_s"].tolist() == pytest.approx([0.05, 0.05])
    assert rep.requests["preemptions"].tolist() == [0, 1]
    assert rep.preemptions == 1
    assert rep.replicas[0].peak_bytes == pytest.approx(20_000)
    assert rep.memory_ok


def test_preemption_swap():
    # swap at 1e6 B/s: r1's 10 tokens (10 kB) go out in 0.01 s (the replica pauses: r0 ends 0.42)
    # and come back in 0.01 s: r1 decodes 0.43..0.63.
    inst, plan = _one_mixed(PREEMPT, kv_capacity_gb=20e-9 * 1000)
    rep = simulate(inst, plan, preemption="swap", host_bandwidth_gb_s=0.001)
    assert rep.requests["completion_s"].tolist() == pytest.approx([0.42, 0.63])
    assert rep.preemptions == 1 and rep.memory_ok


def test_reserve_admission_never_preempts():
    inst, plan = _one_mixed(PREEMPT, kv_capacity_gb=20e-9 * 1000)
    rep = simulate(inst, plan, admission="reserve")
    assert rep.preemptions == 0
    # r1 waits for r0 (peak 15 + 15 > 20): r0 0.005..0.045..0.405; r1 prefill 0.405..0.41
    assert rep.requests["completion_s"].tolist() == pytest.approx([0.405, 0.81])


def test_request_too_large_is_dropped_not_looping():
    inst, plan = _one_mixed([{"prompt_tokens": 15, "output_tokens": 10}],
                            kv_capacity_gb=20e-9 * 1000)
    rep = simulate(inst, plan)
    assert rep.requests["status"].tolist() == ["too_large"]


def test_bad_setting_is_an_option_error():
    inst, plan = _one_mixed(PREEMPT)
    with pytest.raises(OptionError, match="simulate.queue"):
        simulate(inst, plan, queue="random")
    with pytest.raises(OptionError, match="simulate.nope"):
        simulate(inst, plan, nope=1)
    for key, value, expected in (("max_batched_tokens", -5, "must be at least 1"),
                                 ("prefix_cache_tokens", -1, "must be >= 0"),
                                 ("slo", {"ttft_s": -1}, "targets must be positive seconds"),
                                 ("host_bandwidth_gb_s", float("inf"), "must be positive"),
                                 ("max_batched_tokens", float("inf"), "bad value")):
        with pytest.raises(OptionError, match=f"simulate.{key}: {expected}"):
            simulate(inst, plan, **{key: value})


def test_settings_from_scenario_extra():
    sc = load_scenario(make_scenario([{"name": "m"}], PREEMPT,
                                     extra={"simulate": {"queue": "sjf"}, "slo": {"ttft_s": 0.01}}))
    inst = build_instance(sc)
    rep = simulate(inst, Plan([0, 0], [0, 0]))
    assert rep.config.queue == "sjf"
    s = rep.summary()
    assert s["goodput"] == 0 and s["completed"] == 2


def _line(sharing):
    # dc0 - dc1 - dc2 in a line: dc0|dc1 moves 1e6 B/s, dc1|dc2 0.25e6 B/s, no latency. Both
    # requests are prefilled in dc0 by 1.0 s (2 replicas) and send 1e6 bytes: r0 to dc2 (both
    # links), r1 to dc1 (the first link only).
    sc = load_scenario(make_scenario(
        [{"name": "p", "role": "prefill", "replicas": 2, "dc": "dc0"},
         {"name": "d1", "role": "decode", "dc": "dc1"}, {"name": "d2", "role": "decode", "dc": "dc2"}],
        [{"prompt_tokens": 1000, "output_tokens": 1}, {"prompt_tokens": 1000, "output_tokens": 1}],
        links=[{"between": ["dc0", "dc1"], "bandwidth_gbps": 0.008, "latency_ms": 0},
               {"between": ["dc1", "dc2"], "bandwidth_gbps": 0.002, "latency_ms": 0}]))
    return simulate(build_instance(sc), Plan([0, 0], [2, 1]), link_sharing=sharing)


def test_fair_sharing_is_max_min_over_a_route():
    # r0 is held to 0.25e6 B/s by dc1|dc2, so r1 gets the other 0.75e6 of dc0|dc1 (an equal split
    # would give it 0.5e6 and leave 0.25e6 idle): r1 done at 1 + 1/0.75 = 2.3333; r0 moves at
    # 0.25e6 throughout: 1 + 4 = 5.0.
    rep = _line("fair")
    assert rep.requests["decode_ready_s"].tolist() == pytest.approx([5.0, 1.0 + 1.0 / 0.75])
    first = rep.links[0]
    assert first.busy_s == pytest.approx(2.0)  # 2e6 bytes at 1e6 B/s, the link was full meanwhile
    assert max(first.util) == pytest.approx(1.0)
    assert rep.links[1].busy_s == pytest.approx(4.0)


def test_max_min_rates_by_hand():
    from planner.simulate.engine import max_min_rates

    # links 0 (10), 1 (2), 2 (6); flows: {0,1}, {0}, {0,2}, {2}
    # link 1 settles flow 0 at 2; link 0 then has 8 for flows 1 and 2 (4 each); link 2 has 6 for
    # flows 2 and 3 (3 each): flows 2, 3 settle at 3 first, flow 1 takes the rest of link 0: 5.
    assert max_min_rates([(0, 1), (0,), (0, 2), (2,)], [10.0, 2.0, 6.0]) == pytest.approx(
        [2.0, 5.0, 3.0, 3.0])


def test_bad_settings_in_scenario_extra_name_the_file_and_field(tmp_path):
    import json

    from planner.cli import main
    from planner.scenario.errors import ScenarioError

    path = tmp_path / "sc.json"
    path.write_text(json.dumps(make_scenario([{"name": "m"}], PREEMPT,
                                             extra={"simulate": {"queue": "random"}})))
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value) == f"{path}: extra.simulate.queue: expected one of fcfs, sjf, mlq, aging ('random')"
    assert main(["validate", str(path)]) == 2
    for bad in ([], 0, False):  # not a mapping of settings
        with pytest.raises(ScenarioError, match="extra.simulate: expected a mapping"):
            load_scenario(make_scenario([{"name": "m"}], PREEMPT, extra={"simulate": bad}))
    # given as a setting (not by the file), the same value is an option error
    sc = load_scenario(make_scenario([{"name": "m"}], PREEMPT))
    with pytest.raises(OptionError, match=r"^simulate: simulate.queue: expected one of"):
        simulate(build_instance(sc), Plan([0, 0], [0, 0]), queue="random")
