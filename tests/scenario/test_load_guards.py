"""Loader guards: YAML alias bombs and recursive aliases are refused in one line; parts of the
fleet that no plan can use are warned about."""

from __future__ import annotations

import logging

import pytest
import yaml
from factory import ROOT

from planner import load_scenario
from planner.scenario.errors import ScenarioError

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{a}: &{a} [{', '.join([f'*{p}'] * 9)}]\n" for p, a in zip("abcdefgh", "bcdefghi",
                                                               strict=True)) + "name: *i\n"


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text(BOMB)
    assert len(yaml.safe_load(BOMB)["i"]) == 9  # nine lines that stand for 9^9 strings
    with pytest.raises(ScenarioError) as err:
        load_scenario(f)
    assert str(err.value).startswith(f"{f}: <file>: not valid yaml: aliases expand 29 written "
                                     "nodes to 9.26e+08")


def test_a_recursive_alias_is_refused(tmp_path):
    f = tmp_path / "rec.yaml"
    f.write_text("name: &a [*a]\n")
    with pytest.raises(ScenarioError, match="a recursive alias"):
        load_scenario(f)


def test_modest_anchors_still_load(tmp_path):
    text = (ROOT / "tests" / "data" / "two-dc.json").read_text()
    import json

    doc = json.loads(text)
    f = tmp_path / "anchors.yaml"
    f.write_text(yaml.safe_dump(doc).replace("name: contract-two-dc", "name: &n contract-two-dc")
                 + "description: *n\n")
    assert load_scenario(f).description == "contract-two-dc"


def test_unusable_prefill_cluster_and_isolated_origin_are_warned(tmp_path, caplog):
    import json

    doc = json.loads((ROOT / "tests" / "data" / "two-dc.json").read_text())
    doc["datacenters"].append({"name": "iso", "clusters": [
        {**doc["datacenters"][0]["clusters"][0], "name": "isop", "role": "prefill"}]})
    f = tmp_path / "s.json"
    f.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="planner"):
        load_scenario(f)
    assert [r.getMessage() for r in caplog.records] == [
        "cluster isop (prefill, in iso) reaches no decode cluster: no plan can use it"]
    for r in doc["workload"]["requests"]:
        r["origin"] = "iso"
    doc["datacenters"][-1]["clusters"] = []
    f.write_text(json.dumps(doc))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="planner"):
        load_scenario(f)
    assert [r.getMessage() for r in caplog.records] == [
        f"datacenter iso is the origin of {len(doc['workload']['requests'])} request(s) but no "
        "prefill cluster is reachable from it: they are placed as if they arrived elsewhere"]


def test_an_arrival_that_overflows_with_time_scale_is_an_error(tmp_path):
    """1e308 s times a time_scale of 10 is inf: the replay never timed such a request (it was
    silently left out), and numpy's overflow warning leaked to stderr."""
    import json
    import warnings

    doc = json.loads((ROOT / "tests" / "data" / "two-dc.json").read_text())
    # an inline arrival is at most 1e12 s and time_scale at most 1e9: a synthetic workload's
    # arrivals at 1e-300 requests per second reach inf instead
    doc["workload"] = {"synthetic": {"count": 3, "arrival_rate": 1e-300}, "time_scale": 1e9}
    f = tmp_path / "s.json"
    f.write_text(json.dumps(doc))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ScenarioError) as err:
            load_scenario(f)
    assert str(err.value) == (f"{f}: workload.synthetic.arrival_rate: arrival times of 3 "
                              "requests at this rate are not finite numbers of seconds (1e-300)")


def test_a_horizon_past_a_billion_seconds_is_refused(tmp_path):
    """Found by review: horizon_s 1e308 validated, then greedy's rent was inf and cpsat's
    objective NaN (eight raw numpy warnings). The horizon is at most 1e9 s (31.7 years); arrival
    times are not capped (epoch seconds, 1.7e9, are real traces' clocks)."""
    import json

    doc = json.loads((ROOT / "tests" / "data" / "two-dc.json").read_text())
    doc["horizon_s"] = 1e308
    f = tmp_path / "s.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(ScenarioError) as err:
        load_scenario(f)
    assert str(err.value).startswith(f"{f}: horizon_s: Input should be less than or equal to 1000000000")
