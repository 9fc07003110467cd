"""Integer, seed, money and origin fields have bounds: one line naming the field, no overflow."""

from __future__ import annotations

import copy

import pytest
from test_load import base, problem  # the same base scenario and one-line error check

from planner import load_scenario


def synthetic(**spec) -> dict:
    d = base()
    d["workload"] = {"synthetic": {"count": 5, **spec}}
    return d


def _cluster(**kw) -> dict:
    d = base()
    d["datacenters"][0]["clusters"][0].update(kw)
    return d


def _request(**kw) -> dict:
    d = base()
    d["workload"]["requests"][0].update(kw)
    return d


def _link(**kw) -> dict:
    d = base()
    d["links"][0].update(kw)
    return d


CASES = {
    "huge priority": (_request(priority=10**30), "workload.requests[0].priority: Input should be "
                      "less than or equal to 2147483647 (1000000000000000000000000000000)"),
    "very negative priority": (_request(priority=-10**30), "workload.requests[0].priority: Input "
                               "should be greater than or equal to -2147483647"),
    "huge batch": (_cluster(max_batch_size=10**30), "datacenters[0].clusters[0].max_batch_size: "
                   "Input should be less than or equal to 1000000 ("),
    "huge cost per hour": (_cluster(cost_per_hour=1e308), "datacenters[0].clusters[0]."
                           "cost_per_hour: Input should be less than or equal to 1000000000 "
                           "(1e+308)"),
    "huge cost per GB": (_link(cost_per_gb=1e300), "links[0].cost_per_gb: Input should be less "
                         "than or equal to 1000000000 (1e+300)"),
    "negative synthetic seed": (synthetic(seed=-1), "workload.synthetic.seed: Input should be "
                                "greater than or equal to 0 (-1)"),
    "huge synthetic seed": (synthetic(seed=2**63), "workload.synthetic.seed: Input should be less "
                            "than or equal to 9223372036854775807"),
    "synthetic count": (synthetic(count=100_000_000), "workload.synthetic.count: Input should be "
                        "less than or equal to 10000000 (100000000)"),
    "huge length min": (synthetic(prompt={"median": 10, "min": 10**30}),
                        "workload.synthetic.prompt.min: Input should be less than or equal to "
                        "1000000000"),
    "huge median": (synthetic(prompt={"median": 1e308, "sigma": 3}),
                    "workload.synthetic.prompt.median: Input should be less than or equal to "
                    "1000000000 (1e+308)"),
    "huge sigma": (synthetic(prompt={"median": 10, "sigma": 1e308}),
                   "workload.synthetic.prompt.sigma: Input should be less than or equal to 20"),
    "huge groups": (synthetic(prefix={"groups": 10**9}), "workload.synthetic.prefix.groups: "
                    "Input should be less than or equal to 10000000 (1000000000)"),
    "huge zipf": (synthetic(prefix={"groups": 3, "zipf": 1e308}),
                  "workload.synthetic.prefix.zipf: Input should be less than or equal to 100"),
    "huge prefix tokens": (synthetic(prefix={"groups": 3, "tokens": 10**12}),
                           "workload.synthetic.prefix.tokens: Input should be less than or equal "
                           "to 1000000000"),
    "arrivals overflow": (synthetic(arrival_rate=1e-308), "workload.synthetic.arrival_rate: "
                          "arrival times of 5 requests at this rate are not finite numbers of "
                          "seconds (1e-308)"),
    "origin not a name or mapping": (synthetic(origin=["east"]), "workload.synthetic.origin: an "
                                     "origin is a datacenter name or a mapping {datacenter: "
                                     "weight} (['east'])"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bound(name, tmp_path):
    data, expected = CASES[name]
    text = problem(copy.deepcopy(data), tmp_path)
    assert expected in text
    assert len(text.splitlines()) == 1, text


def test_trace_seed_is_bounded(tmp_path):
    d = base()
    d["workload"] = {"file": {"path": "t.csv", "format": "csv", "seed": -1}}
    assert "workload.file.seed: Input should be greater than or equal to 0 (-1)" in problem(
        d, tmp_path)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_bad_origin_weight_is_one_line_from_the_mapping_branch(value, tmp_path):
    # JSON: yaml.safe_dump writes .inf / .nan, which YAML reads back as floats
    text = problem(synthetic(origin={"east": value}), tmp_path)
    assert text.splitlines() == [text] and "valid string" not in text
    assert "workload.synthetic.origin.east: Input should be a finite number" in text


def test_huge_origin_weights_are_normalised():
    wl = load_scenario(synthetic(count=2000, origin={"east": 1e308, "west": 1e308})).workload
    assert set(wl.origin.tolist()) == {0, 1}
    assert 0.4 < (wl.origin == 0).mean() < 0.6
    # the same mix as any equal weights, request for request
    same = load_scenario(synthetic(count=2000, origin={"east": 1, "west": 1})).workload
    assert wl.origin.tolist() == same.origin.tolist()


def test_bounds_keep_the_edges_legal():
    sc = load_scenario(synthetic(seed=2**63 - 1, prompt={"median": 1e9, "sigma": 20,
                                                         "min": 1, "max": 10**9},
                                 prefix={"groups": 3, "zipf": 100}))
    wl = sc.workload
    assert wl.prompt_tokens.min() >= 1 and wl.prompt_tokens.max() <= 10**9
    assert load_scenario(_request(priority=-(2**31 - 1))).workload.priority.tolist() == [
        -(2**31 - 1)]
    assert load_scenario(_cluster(cost_per_hour=1e9, max_batch_size=10**6)).clusters[0] \
        .max_batch_size == 10**6


def test_replicas_given_as_a_string_is_an_error(tmp_path):
    """Found by review: `replicas: "2"` was read as 2 (while `replicas: true` was refused): a
    count quoted by mistake is reported, not guessed."""
    import yaml
    from factory import make_scenario

    from planner import load_scenario
    from planner.scenario.errors import ScenarioError

    doc = make_scenario([{"name": "m"}], [{"prompt_tokens": 10}])
    doc["datacenters"][0]["clusters"][0]["replicas"] = "2"
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(ScenarioError) as err:
        load_scenario(f)
    assert str(err.value) == (f"{f}: datacenters[0].clusters[0].replicas: Input should be a "
                              "valid integer ('2')")
