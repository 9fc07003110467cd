"""One test per validation rule: each message names the file and the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from factory import make_scenario

from planner import ScenarioError, as_instance, load_scenario


def base() -> dict:
    return make_scenario(
        [{"name": "p", "role": "prefill", "dc": "east", "accelerator": "h100", "replicas": 2},
         {"name": "d", "role": "decode", "dc": "west", "accelerator": "h200", "replicas": 1}],
        [{"prompt_tokens": 100, "output_tokens": 10, "origin": "east"}],
        links=[{"between": ["east", "west"], "bandwidth_gbps": 10, "latency_ms": 5}],
        datacenters=["east", "west"],
    )


def problem(data: dict, tmp_path: Path) -> str:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError) as err:
        load_scenario(f)
    text = str(err.value)
    assert all(line.startswith(f"{f}: ") for line in text.splitlines()), text
    return text


def test_base_is_valid():
    sc = load_scenario(base())
    assert [c.name for c in sc.clusters] == ["p", "d"]


def _route_via_unlinked(d: dict) -> None:
    d["datacenters"].append({"name": "x", "clusters": []})
    d["routes"] = [{"path": ["east", "x", "west"]}]


def mutate(fn):
    d = copy.deepcopy(base())
    fn(d)
    return d


CASES = {
    "missing field": (lambda d: d["datacenters"][0]["clusters"][0].pop("replicas"),
                      "datacenters[0].clusters[0].replicas: Field required (missing)"),
    "unknown accelerator": (lambda d: d["datacenters"][0]["clusters"][0].update(accelerator="h1000"),
                            "datacenters[0].clusters[0].accelerator: unknown accelerator card"),
    "unknown model": (lambda d: d.update(model="gpt-9"), "model: unknown model card"),
    "unknown dc in link": (lambda d: d["links"][0].update(between=["east", "mars"]),
                           "links[0].between[1]: unknown datacenter ('mars')"),
    "self link": (lambda d: d["links"][0].update(between=["east", "east"]),
                  "links[0].between: a link must join two different datacenters"),
    "duplicate link": (lambda d: d["links"].append(dict(d["links"][0])),
                       "links[1].between: duplicate link"),
    "zero bandwidth": (lambda d: d["links"][0].update(bandwidth_gbps=0),
                       "links[0].bandwidth_gbps: Input should be greater than 0 (0)"),
    "negative bandwidth": (lambda d: d["links"][0].update(bandwidth_gbps=-5),
                           "links[0].bandwidth_gbps: Input should be greater than 0 (-5)"),
    "zero replicas": (lambda d: d["datacenters"][1]["clusters"][0].update(replicas=0),
                      "datacenters[1].clusters[0].replicas: Input should be greater than 0 (0)"),
    "unreachable decode": (lambda d: d.update(links=[]),
                           "datacenters[1].clusters[0]: decode cluster cannot be reached"),
    "no prefill": (lambda d: d["datacenters"][0]["clusters"][0].update(role="decode"),
                   "datacenters: no cluster can prefill"),
    "no decode": (lambda d: d["datacenters"][1]["clusters"][0].update(role="prefill"),
                  "datacenters: no cluster can decode"),
    "duplicate cluster": (lambda d: d["datacenters"][1]["clusters"][0].update(name="p"),
                          "datacenters[1].clusters[0].name: duplicate cluster name ('p')"),
    "duplicate datacenter": (lambda d: d["datacenters"][1].update(name="east"),
                             "datacenters[1].name: duplicate datacenter name ('east')"),
    "duplicate request id": (lambda d: d["workload"]["requests"].append(
        dict(d["workload"]["requests"][0])), "workload.requests[1].id: duplicate request id"),
    "negative tokens": (lambda d: d["workload"]["requests"][0].update(prompt_tokens=-3),
                        "workload.requests[0].prompt_tokens: Input should be greater than or equal to 0"),
    "unknown origin": (lambda d: d["workload"]["requests"][0].update(origin="mars"),
                       "workload.requests[0].origin: unknown datacenter ('mars')"),
    "two workload sources": (lambda d: d["workload"].update(synthetic={"count": 3}),
                             "workload: give exactly one of requests, file, synthetic"),
    "typo key": (lambda d: d["links"][0].update(bandwith_gbps=3),
                 "links[0].bandwith_gbps: unknown field (3)"),
    "bad role": (lambda d: d["datacenters"][0]["clusters"][0].update(role="both"),
                 "datacenters[0].clusters[0].role: Input should be 'prefill', 'decode' or 'mixed'"),
    "cost needs horizon": (lambda d: d.update(objective="cost"), "horizon_s: the cost objective needs"),
    "route over missing link": (lambda d: _route_via_unlinked(d),
                                "routes[0].path[1]: no link between east and x"),
    "huge tokens": (lambda d: d["workload"]["requests"][0].update(prompt_tokens=10**20),
                    "workload.requests[0].prompt_tokens: Input should be less than or equal to "
                    "1000000000"),
    "infinite bandwidth": (lambda d: d["links"][0].update(bandwidth_gbps=float("inf")),
                           "links[0].bandwidth_gbps: Input should be a finite number"),
    "infinite arrival": (lambda d: d["workload"]["requests"][0].update(arrival_s=float("inf")),
                         "workload.requests[0].arrival_s: Input should be a finite number"),
    "absurd replicas": (lambda d: d["datacenters"][0]["clusters"][0].update(replicas=10**9),
                        "datacenters[0].clusters[0].replicas: Input should be less than or equal"),
    "huge hash": (lambda d: d["workload"]["requests"][0].update(prefix=[1, 10**23]),
                  "workload.requests[0].prefix: a block chain must hold 64-bit integer hashes"),
    "cyclic route": (lambda d: d.update(routes=[{"path": ["east", "west", "east", "west"]}]),
                     "routes[0].path[2]: a route visits a datacenter once (no cycles) ('east')"),
    "two routes for a pair": (lambda d: d.update(routes=[{"path": ["east", "west"]}] * 2),
                              "routes[1].path: a second route from east to west (routes[0])"),
    "no card and no speed": (lambda d: d["datacenters"][0]["clusters"][0].pop("accelerator"),
                             "datacenters[0].clusters[0].prefill_tokens_per_s: required when"),
    # physical ranges (found by review: 1e300 GB of KV made `validate` crash on a NaN, the
    # others infinite solver coefficients)
    "absurd kv capacity": (lambda d: d["datacenters"][0]["clusters"][0].update(
        kv_capacity_gb=1e300), "datacenters[0].clusters[0].kv_capacity_gb: Input should be less "
        "than or equal to 1000000000"),
    "absurdly slow decode": (lambda d: d["datacenters"][0]["clusters"][0].update(
        decode_tokens_per_s=1e-300), "datacenters[0].clusters[0].decode_tokens_per_s: below 1e-06 "
        "tokens per second: no replica is that slow (1e-300)"),
    "absurd step": (lambda d: d["datacenters"][0]["clusters"][0].update(
        decode_step_base_s=1e308), "datacenters[0].clusters[0].decode_step_base_s: Input should be "
        "less than or equal to 1000000"),
    "replica separator in a cluster name": (
        lambda d: d["datacenters"][0]["clusters"][0].update(name="p#1"),
        "datacenters[0].clusters[0].name: must not hold '#' or '|' (they join replica and link "
        "names) ('p#1')"),
    "link separator in a datacenter name": (
        lambda d: d["datacenters"][1].update(name="we|st"),
        "datacenters[1].name: must not hold '#' or '|'"),
    "absurdly slow link": (lambda d: d["links"][0].update(bandwidth_gbps=1e-320),
                           "links[0].bandwidth_gbps: below 1e-09 Gbps (1 bit per second): no link "
                           "is that slow"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rule(name, tmp_path):
    fn, expected = CASES[name]
    assert expected in problem(mutate(fn), tmp_path)


def test_all_problems_reported_together(tmp_path):
    def two(d):
        d["links"][0]["bandwidth_gbps"] = -1
        d["datacenters"][0]["clusters"][0]["accelerator"] = "nope"
    d = mutate(two)
    text = problem(d, tmp_path)
    assert "bandwidth_gbps" in text


def test_overrides_per_cluster():
    def ov(d):
        c = d["datacenters"][0]["clusters"][0]
        c.update(prefill_tokens_per_s=1234.0, kv_capacity_gb=20, max_batch_size=64, cost_per_hour=9.5)
        d["datacenters"][1]["clusters"][0]["decode_tokens_per_s"] = 5000.0
    sc = load_scenario(mutate(ov))
    p, d = sc.clusters
    assert (p.prefill_tokens_per_s, p.kv_capacity_gb, p.max_batch_size, p.cost_per_hour) == (
        1234.0, 20.0, 64, 9.5)
    assert p.decode_tokens_per_s == pytest.approx(64 / (0.0048 + 0.00008 * 64))  # card's step model
    assert d.decode_tokens_per_s == pytest.approx(5000.0)
    # the card's step shape is kept, scaled to the given throughput
    assert d.decode_step_per_seq_s / d.decode_step_base_s == pytest.approx(0.000056 / 0.0033)
    inst = as_instance(sc)
    assert inst.prefill_tps[0] == 1234.0 and inst.kv_capacity_bytes[0] == 20e9


def test_json_and_toml_load(tmp_path):
    d = base()
    (tmp_path / "s.json").write_text(json.dumps(d))
    assert load_scenario(tmp_path / "s.json").name == "test"
    toml = tmp_path / "s.toml"
    toml.write_text('name = "t"\nmodel = "qwen2.5-7b"\n[[datacenters]]\nname = "a"\n'
                    '[[datacenters.clusters]]\nname = "m"\nrole = "mixed"\naccelerator = "l40s"\n'
                    'replicas = 1\n[workload]\nrequests = [{id = "x", prompt_tokens = 5, '
                    'output_tokens = 0}]\n')
    sc = load_scenario(toml)
    assert sc.model.kv_bytes_per_token == 57344


def test_unparseable_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: <file>: not valid yaml"):
        load_scenario(f)


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "nope.yaml")


def test_output_tokens_zero_is_legal():
    d = base()
    d["workload"]["requests"][0]["output_tokens"] = 0
    assert load_scenario(d).workload.output_tokens[0] == 0


def test_explicit_route_overrides_shortest(tmp_path):
    d = make_scenario(
        [{"name": "p", "role": "prefill", "dc": "a"}, {"name": "d", "role": "decode", "dc": "c"}],
        [{"prompt_tokens": 10, "output_tokens": 1}],
        links=[{"between": ["a", "c"], "bandwidth_gbps": 1, "latency_ms": 1},
               {"between": ["a", "b"], "bandwidth_gbps": 1, "latency_ms": 5},
               {"between": ["b", "c"], "bandwidth_gbps": 1, "latency_ms": 5}],
        datacenters=["a", "b", "c"])
    inst = as_instance(load_scenario(d))
    assert inst.pair_links[0 * 2 + 1].tolist() == [1.0, 0.0, 0.0]
    d["routes"] = [{"path": ["a", "b", "c"]}]
    inst = as_instance(load_scenario(d))
    assert inst.pair_links[0 * 2 + 1].tolist() == [0.0, 1.0, 1.0]
    assert inst.route_latency_s[0, 1] == pytest.approx(0.010)


@pytest.mark.parametrize(("suffix", "text", "expected"), [
    (".yaml", "name: a\nname: b\n", "not valid yaml: key 'name' given twice (lines 1 and 2)"),
    (".json", '{"name": "a", "name": "b"}', "not valid json: key 'name' given twice"),
    # an integer of over 4,300 digits, nesting thousands deep: were "unexpected" (review)
    (".json", '{"horizon_s": 1' + "0" * 5000 + "}", "not valid json: Exceeds the limit"),
    (".yaml", "horizon_s: 1" + "0" * 5000 + "\n", "not valid yaml: Exceeds the limit"),
    (".toml", "horizon_s = 1" + "0" * 5000 + "\n", "not valid toml: Exceeds the limit"),
    (".yaml", "x: " + "[" * 5000 + "]" * 5000 + "\n", "not valid yaml: maximum recursion depth"),
    (".json", '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "not valid json: maximum recursion depth"),
])
def test_duplicate_keys_are_errors(tmp_path, suffix, text, expected):
    path = tmp_path / f"s{suffix}"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert expected in str(err.value)


def test_yaml_anchors_and_merge_keys_still_load(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("""\
name: merged
model: {kv_bytes_per_token: 1000}
extra:
  card: &card {prefill_tokens_per_s: 1000, decode_tokens_per_s: 100, kv_capacity_gb: 1,
               max_batch_size: 4, cost_per_hour: 1, replicas: 1}
datacenters:
  - name: a
    clusters:
      - {<<: *card, name: p, role: prefill, replicas: 2}
      - {<<: *card, name: d, role: decode}
workload:
  requests: [{id: r0, prompt_tokens: 10, output_tokens: 2}]
""")
    sc = load_scenario(path)
    assert [c.replicas for c in sc.clusters] == [2, 1]  # a merged key may be overridden
    assert sc.clusters[0].role == "prefill"


def test_booleans_are_not_numbers_and_words_are_not_booleans(tmp_path):
    d = copy.deepcopy(base())
    d["datacenters"][0]["clusters"][0]["replicas"] = True
    assert "replicas must be a number, not True" in problem(d, tmp_path)
    d = copy.deepcopy(base())
    d["prefix_caching"] = "yes"
    assert "prefix_caching: Input should be a valid boolean ('yes')" in problem(d, tmp_path)


def test_synthetic_lengths_are_consistent(tmp_path):
    d = copy.deepcopy(base())
    d["workload"] = {"synthetic": {"count": 5, "prompt": {"median": 100, "min": 5000, "max": 2000}}}
    assert "min 5000 is above max 2000" in problem(d, tmp_path)
    d["workload"] = {"synthetic": {"count": 5, "prompt": {"median": 100, "max": 2000},
                                   "prefix": {"groups": 2, "tokens": 100000}}}
    assert "prefix.tokens 100000 is above prompt.max 2000" in problem(d, tmp_path)
