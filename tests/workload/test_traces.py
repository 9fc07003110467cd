"""Trace readers on the real files (copied into scenarios/traces with their licences)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from factory import SCENARIOS, make_scenario

from planner import ScenarioError, load_scenario

TRACES = SCENARIOS / "traces"


def with_file(spec: dict, **workload) -> dict:
    d = make_scenario([{"name": "m", "dc": "a"}, {"name": "n", "dc": "b"}], [{"prompt_tokens": 1}],
                      links=[{"between": ["a", "b"], "bandwidth_gbps": 1}], datacenters=["a", "b"])
    d["workload"] = {"file": spec, **workload}
    return d


def test_azure_conv_trace():
    path = TRACES / "azure2023" / "AzureLLMInferenceTrace_conv.csv"
    wl = load_scenario(with_file({"path": str(path), "format": "azure"})).workload
    assert len(wl) == 19366
    assert wl.arrival_s[0] == 0.0 and np.all(np.diff(wl.arrival_s) >= 0)
    assert 3000 < wl.arrival_s[-1] < 4000  # about an hour
    assert wl.prompt_tokens.mean() == pytest.approx(1155, rel=0.01)
    assert wl.prompt_tokens.max() == 14050
    assert wl.output_tokens.mean() == pytest.approx(211, rel=0.01)
    # first two rows: 18:15:46.6805900 then 18:15:50.9951690 (cut to microseconds)
    assert wl.arrival_s[1] == pytest.approx(4.314579, abs=1e-6)
    assert not wl.has_prefixes


def test_azure_code_limit_and_time_scale():
    path = TRACES / "azure2023" / "AzureLLMInferenceTrace_code.csv"
    full = load_scenario(with_file({"path": str(path), "format": "azure", "limit": 100})).workload
    fast = load_scenario(with_file({"path": str(path), "format": "azure", "limit": 100},
                                   time_scale=0.5)).workload
    assert len(full) == 100
    np.testing.assert_allclose(fast.arrival_s, full.arrival_s * 0.5)


def test_mooncake_trace_keeps_hash_chains():
    path = TRACES / "mooncake" / "synthetic_trace.jsonl"
    wl = load_scenario(with_file({"path": str(path), "format": "mooncake",
                                  "origin": {"a": 1, "b": 1}, "seed": 3})).workload
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(wl) == len(rows) == 3993
    counts = np.diff(wl.prefix_ptr)
    # sorted by time (stable), so row order is kept for equal timestamps
    order = np.argsort([r["timestamp"] for r in rows], kind="stable")
    assert counts.tolist() == [len(rows[i]["hash_ids"]) for i in order]
    # block tokens: 512 each, the last partial, and they cover the prompt
    covered = np.add.reduceat(wl.prefix_block_tokens, wl.prefix_ptr[:-1])
    assert np.array_equal(covered, wl.prompt_tokens)
    # equal hash ids map to equal codes: about 64% of occurrences reuse a seen block
    _, first = np.unique(wl.prefix_blocks, return_index=True)
    assert 1 - len(first) / len(wl.prefix_blocks) == pytest.approx(0.64, abs=0.03)
    assert wl.arrival_s[-1] == pytest.approx(1022, rel=0.02)
    assert set(np.unique(wl.origin)) == {0, 1}


def test_plain_csv_with_column_mapping(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("t,in,out,grp\n0.5,100,5,x\n0.0,200,0,x\n1.0,50,1,\n")
    d = with_file({"path": str(f), "format": "csv",
                   "columns": {"arrival_s": "t", "prompt_tokens": "in", "output_tokens": "out",
                               "prefix": "grp"}})
    wl = load_scenario(d).workload
    assert wl.prompt_tokens.tolist() == [200, 100, 50]  # sorted by arrival
    assert wl.output_tokens.tolist() == [0, 5, 1]
    assert np.diff(wl.prefix_ptr).tolist() == [1, 1, 0]
    # a group id without a stated length shares the group's shortest prompt
    assert wl.prefix_block_tokens.tolist() == [100, 100]


def test_plain_jsonl(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text('{"id": "a", "prompt_tokens": 5, "output_tokens": 2, "arrival_s": 3}\n'
                 '{"id": "b", "prompt_tokens": 7, "output_tokens": 1, "arrival_s": 1}\n')
    wl = load_scenario(with_file({"path": str(f), "format": "jsonl"})).workload
    assert wl.ids.tolist() == ["b", "a"]
    assert wl.arrival_s.tolist() == [0.0, 2.0]


@pytest.mark.parametrize("content, expected", [
    (None, "workload.file.path: trace file not found"),
    ("t,in\n1,2\n", "workload.file.columns.prompt_tokens: column 'prompt_tokens' not in"),
    ("prompt_tokens,output_tokens\n5,1\n-4,2\n", "workload.file: t.csv row 2: prompt_tokens is negative"),
    ("prompt_tokens,output_tokens\n5,abc\n", "workload.file: t.csv row 1: output_tokens is not a number"),
    ("", "workload.file.path: cannot read trace"),
    ("prompt_tokens,output_tokens\n5,1\n1e30,2\n", "t.csv row 2: prompt_tokens is above 1,000,000,000"),
    ("prompt_tokens,output_tokens\n5,inf\n", "t.csv row 1: output_tokens is above 1,000,000,000"),
    ("prompt_tokens,output_tokens\n374.7,1\n", "t.csv row 1: prompt_tokens is not a whole number"),
    ("arrival_s,prompt_tokens,output_tokens\n0,5,1\ninf,5,1\n", "t.csv row 2: arrival is not finite"),
    ("prompt_tokens,output_tokens,prompt_tokens\n5,1,7\n",
     "workload.file.path: t.csv header: column 'prompt_tokens' named twice"),
    # the span overflows: it named workload.time_scale, which the file did not set (review)
    ("arrival_s,prompt_tokens,output_tokens\n-1e308,5,1\n1e308,5,1\n",
     "workload.file: t.csv row 2: arrival is too far from the first request's"),
    ("prompt_tokens,output_tokens\n5,1\n6,2,3\n", "cannot read trace: Error tokenizing data. C error: "
     "Expected 2 fields in line 3, saw 3"),
])
def test_bad_traces(tmp_path, content, expected):
    f = tmp_path / "t.csv"
    if content is not None:
        f.write_text(content)
    with pytest.raises(ScenarioError) as err:
        load_scenario(with_file({"path": str(f), "format": "csv"}))
    assert expected in str(err.value)
    assert "np." not in str(err.value)  # values shown as the file has them, not numpy reprs


def test_unreadable_binary_jsonl(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ScenarioError, match="workload.file.path: cannot read trace"):
        load_scenario(with_file({"path": str(f), "format": "jsonl"}))


@pytest.mark.parametrize("line, expected", [
    ("[1, 2, 3]", "t.jsonl line 2: not a JSON object"),
    ("5", "t.jsonl line 2: not a JSON object"),
    ('{"prompt_tokens": 5,', "t.jsonl line 2: not JSON"),
    # json keeps the last of a key given twice: refused (found by review)
    ('{"prompt_tokens": 5, "prompt_tokens": 6, "output_tokens": 1}',
     "t.jsonl line 2: not JSON (key 'prompt_tokens' given twice"),
    ("[" * 100_000 + "]" * 100_000, "t.jsonl line 2: not JSON (maximum recursion depth"),
])
def test_bad_jsonl_lines_name_the_line(tmp_path, line, expected):
    f = tmp_path / "t.jsonl"
    f.write_text('{"prompt_tokens": 5, "output_tokens": 1}\n' + line + "\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(with_file({"path": str(f), "format": "jsonl"}))
    assert expected in str(err.value) and len(str(err.value).splitlines()) == 1


def test_synthetic_is_seeded_and_shaped():
    spec = {"count": 20000, "seed": 5, "arrival_rate": 50,
            "prompt": {"median": 1000, "sigma": 0.5, "min": 1, "max": 100000},
            "output": {"median": 100, "sigma": 0.5},
            "prefix": {"groups": 8, "share": 0.25, "tokens": 256},
            "origin": {"a": 3, "b": 1}}
    d = with_file({})
    d["workload"] = {"synthetic": spec}
    a = load_scenario(d).workload
    b = load_scenario(d).workload
    assert np.array_equal(a.prompt_tokens, b.prompt_tokens)
    assert np.median(a.prompt_tokens) == pytest.approx(1000, rel=0.05)
    assert np.median(a.output_tokens) == pytest.approx(100, rel=0.05)
    assert 1 / np.diff(a.arrival_s).mean() == pytest.approx(50, rel=0.05)
    assert np.diff(a.prefix_ptr).mean() == pytest.approx(0.25, abs=0.02)
    assert np.mean(a.origin == 0) == pytest.approx(0.75, abs=0.02)
    spec["seed"] = 6
    assert not np.array_equal(load_scenario(d).workload.prompt_tokens, a.prompt_tokens)
