from __future__ import annotations

import json
import math

import numpy as np
import pytest
from factory import SCENARIOS

from planner import PlanError, Result, as_instance, load_scenario, solve
from planner.plan import plan_from_dict, plan_to_dict, relative_gap, write_json_atomic


def test_plan_json_round_trip(contract_scenario):
    sc = load_scenario(contract_scenario)
    inst = as_instance(sc)
    res = solve(inst, "round_robin")
    res.plan.prefill[1] = res.plan.decode[1] = -1  # one refused request
    data = json.loads(json.dumps(plan_to_dict(inst, res)))
    assert data["requests"][1] == {"id": "r2", "prefill": None, "decode": None}
    back, meta = plan_from_dict(data, inst)
    assert np.array_equal(back.prefill, res.plan.prefill)
    assert np.array_equal(back.decode, res.plan.decode)
    assert meta["method"] == "round_robin" and meta["status"] == "feasible"


def test_plan_from_dict_names_unknown_things(contract_scenario):
    inst = as_instance(load_scenario(contract_scenario))
    with pytest.raises(PlanError, match=r"requests\[0\].id: no such request"):
        plan_from_dict({"requests": [{"id": "zz", "prefill": "ep", "decode": "wd"}]}, inst)
    with pytest.raises(PlanError, match=r"requests\[0\].decode: unknown cluster"):
        plan_from_dict({"requests": [{"id": "r1", "prefill": "ep", "decode": "mars"}]}, inst)
    with pytest.raises(PlanError, match=r"requests\[1\].id: request given twice in the plan"):
        plan_from_dict({"requests": [{"id": "r1", "prefill": "ep", "decode": "wd"},
                                     {"id": "r1", "prefill": None, "decode": None}]}, inst)
    with pytest.raises(PlanError, match="2 requests of the scenario have no entry"):
        plan_from_dict({"requests": [{"id": "r1", "prefill": "ep", "decode": "wd"}]}, inst)


@pytest.mark.parametrize(("text", "expected"), [
    ('{"requests": [], "requests": []}', "not valid JSON: key 'requests' given twice"),
    ('{"wall_s": 1' + "0" * 5000 + "}", "not valid JSON: Exceeds the limit"),
    ('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}", "not valid JSON: maximum recursion depth"),
])
def test_unreadable_plan_files_are_one_line_errors(contract_scenario, tmp_path, text, expected):
    """Found by review: a key given twice was read as its last value; a huge integer or deep
    nesting was an "unexpected" error."""
    from planner.plan import read_plan_file

    inst = as_instance(load_scenario(contract_scenario))
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(PlanError) as err:
        read_plan_file(path, inst)
    assert expected in str(err.value) and len(str(err.value).splitlines()) == 1


def test_plan_from_dict_checks_types_and_order(contract_scenario):
    inst = as_instance(load_scenario(contract_scenario))
    good = plan_to_dict(inst, solve(inst, "round_robin"))
    bad = json.loads(json.dumps(good))
    bad["requests"][0]["prefill"] = ["ep"]
    with pytest.raises(PlanError, match=r"requests\[0\].prefill: a cluster name or null"):
        plan_from_dict(bad, inst)
    for order, expected in (("hello", "order: a mapping of replica to request indices"),
                            ({"ed#0": ["zz"]}, "order.ed#0: a list of request indices"),
                            ({"ed#0": [99]}, "order.ed#0: a list of request indices"),
                            ({"mars#0": [0]}, "order.mars#0: not a cluster or replica")):
        with pytest.raises(PlanError, match=expected):
            plan_from_dict({**good, "order": order}, inst)
    plan, _ = plan_from_dict({**good, "order": {"ed#0": [1, 0], "ed": [0], "_admission": ["x"]}},
                             inst)
    assert plan.order["ed#0"] == [1, 0]


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    f = tmp_path / "p.json"
    write_json_atomic(f, {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(f, {"a": Boom()})
    assert json.loads(f.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]


def test_relative_gap():
    assert relative_gap(10.0, 8.0) == pytest.approx(0.2)
    assert relative_gap(10.0, 10.0) == 0.0
    assert relative_gap(8.0, 10.0, sense="max") == pytest.approx(0.25)
    assert relative_gap(None, 1.0) is None
    # a plan serving nothing against a bound of 194: not 1.94e14 (the old max(|obj|, 1e-12))
    assert relative_gap(0.0, 194.0, sense="max") == math.inf
    assert relative_gap(0.0, 0.0, sense="max") == 0.0
    # relative only (found by review: 3e-10 $ against a bound of 1e-10 $ read as gap 0)
    assert relative_gap(3e-10, 1e-10) == pytest.approx(2 / 3)
    assert relative_gap(1.0 + 1e-12, 1.0) == 0.0  # float noise


def test_result_rejects_unknown_status():
    with pytest.raises(ValueError):
        Result("x", "Optimal", None)


@pytest.mark.parametrize("name", ["quickstart", "two-region-azure", "multi-dc-mooncake", "large-synthetic"])
def test_example_scenarios_validate_and_run(name):
    sc = load_scenario(SCENARIOS / f"{name}.yaml")
    res = solve(sc, "round_robin")
    assert res.status == "feasible" and res.plan is not None
    assert res.objective > 0


def test_write_json_atomic_keeps_modes_follows_symlinks_and_spares_devices(tmp_path):
    # found by review: --out /dev/null replaced the device by a regular 0600 file, a symlink was
    # replaced instead of written through, and an existing 0644 plan became 0600
    import os
    import stat

    target = tmp_path / "plan.json"
    target.write_text("{}\n")
    target.chmod(0o644)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_json_atomic(link, {"a": 1})
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_json_atomic(fifo, {"b": 2})
        assert json.loads(os.read(fd, 100)) == {"b": 2}
    finally:
        os.close(fd)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_plan_row_without_prefill_or_decode_key_is_an_error(contract_scenario):
    # found by audit: a row without "prefill" (or "decode") read as refused; only null refuses
    inst = as_instance(load_scenario(contract_scenario))
    good = plan_to_dict(inst, solve(inst, "round_robin"))
    for drop, fields in ((("prefill",), ["prefill"]), (("decode",), ["decode"]),
                         (("prefill", "decode"), ["prefill", "decode"])):
        bad = json.loads(json.dumps(good))
        for key in drop:
            del bad["requests"][0][key]
        with pytest.raises(PlanError) as err:
            plan_from_dict(bad, inst, file="p.json")
        assert str(err.value).splitlines() == [
            f"p.json: requests[0].{f}: request r1: needs a cluster name, or null for none "
            "(missing)" for f in fields]
    refused = json.loads(json.dumps(good))
    refused["requests"][0].update(prefill=None, decode=None)
    plan, _ = plan_from_dict(refused, inst)
    assert plan.prefill[0] == -1 and plan.decode[0] == -1


@pytest.mark.parametrize("row", [{"id": "zz", "prefill": "ep", "decode": "ed"}, "r1", {"x": 1},
                                 {"id": "r1", "prefill": 5, "decode": "ed"}])
def test_plan_problems_are_capped_on_every_path(contract_scenario, row):
    # found by audit: the cap of 20 problems was skipped by rows that ``continue`` (unknown or
    # repeated ids, rows that are not mappings): 5000 bad rows gave 5000 lines
    inst = as_instance(load_scenario(contract_scenario))
    with pytest.raises(PlanError) as err:
        plan_from_dict({"requests": [row] * 5000}, inst, file="p.json")
    lines = str(err.value).splitlines()
    assert len(lines) <= 22
    assert lines[-1].startswith("p.json: requests: more problems not shown (stopped at row ")


def test_plan_order_is_checked_like_the_replay_reads_it(contract_scenario):
    inst = as_instance(load_scenario(contract_scenario))
    good = plan_to_dict(inst, solve(inst, "round_robin"))  # r1 on ed, r2 on wd, r3 on ed
    for order, expected in (
            ({"ed#0": [0, 0, 2]}, "p.json: order.ed#0: request r1 listed twice (0)"),
            ({"ed#7": [0]}, "p.json: order.ed#7: cluster ed has 1 replica (CLUSTER#0 is the "
                            "first) ('ed#7')"),
            ({"ed#01": [0]}, "p.json: order.ed#01: not a cluster or replica (CLUSTER#k) "
                             "('ed#01')"),
            ({"ep#0": [0]}, "p.json: order.ep#0: cluster ep does not decode: an order ranks "
                            "decode admissions ('ep#0')"),
            ({"_admission": "reserve"}, "p.json: order._admission: a list of words, e.g. "
                                        "[\"reserve\"] ('reserve')"),
            ({"_admission": 5}, "p.json: order._admission: a list of words, e.g. [\"reserve\"] "
                                "(5)"),
            ({"_admision": ["reserve"]}, "p.json: order._admision: unknown order setting "
                                        "(known: _admission) ('_admision')")):
        with pytest.raises(PlanError) as err:
            plan_from_dict({**good, "order": order}, inst, file="p.json")
        assert str(err.value) == expected
    many = {f"mars#{k}": [0] for k in range(100)}
    with pytest.raises(PlanError) as err:
        plan_from_dict({**good, "order": many}, inst, file="p.json")
    assert len(str(err.value).splitlines()) == 21


def test_simulate_checks_the_order_of_a_python_plan(contract_scenario):
    # found by audit: order {"_admission": 5} crashed the replay with a TypeError
    from planner.simulate import simulate

    inst = as_instance(load_scenario(contract_scenario))
    plan = solve(inst, "round_robin").plan
    for order, expected in (({"_admission": 5}, r"order\._admission: a list of words"),
                            ("x", "order: a mapping of replica to request indices")):
        plan.order = order
        with pytest.raises(PlanError, match=expected):
            simulate(inst, plan)
