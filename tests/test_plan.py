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
