"""Trace values are judged one by one: a boolean, a float hash, a mapping, an empty id or an
extra CSV field is an error naming the file, the row or line and the field, never a silent 1,
0, "nan" or a dropped column."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from factory import make_scenario

from planner import ScenarioError, load_scenario


def with_file(spec: dict) -> dict:
    d = make_scenario([{"name": "m", "dc": "a"}, {"name": "n", "dc": "b"}], [{"prompt_tokens": 1}],
                      links=[{"between": ["a", "b"], "bandwidth_gbps": 1}], datacenters=["a", "b"])
    d["workload"] = {"file": spec}
    return d


def error(tmp_path, name: str, text: str, fmt: str) -> str:
    f = tmp_path / name
    f.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pandas warning leaks
        with pytest.raises(ScenarioError) as err:
            load_scenario(with_file({"path": str(f), "format": fmt}))
    out = str(err.value)
    assert len(out.splitlines()) == 1, out
    return out


MC = ('{"timestamp": 0, "input_length": 600, "output_length": 6, "hash_ids": [0, 1]}\n'
      '{"timestamp": 5, "input_length": 700, "output_length": 7, "hash_ids": [0, 2]}\n')


@pytest.mark.parametrize("old, new, expected", [
    ('"input_length": 600', '"input_length": true',
     "t.jsonl line 1: prompt_tokens is not a number (True)"),
    ('"timestamp": 5', '"timestamp": true', "t.jsonl line 2: arrival is not a number (True)"),
    ("[0, 2]", "[0.5, 2]", "t.jsonl line 2: hash_ids must hold 64-bit integer block hashes "
     "([0.5, 2])"),
    ("[0, 2]", "[true, 2]", "t.jsonl line 2: hash_ids must hold 64-bit integer block hashes"),
    ("[0, 2]", "[[0], 2]", "t.jsonl line 2: hash_ids must hold 64-bit integer block hashes"),
    ("[0, 2]", "[99999999999999999999999, 2]", "t.jsonl line 2: hash_ids must hold 64-bit"),
    ("[0, 1]", '{"a": 1}', "t.jsonl line 1: hash_ids must be a list of integer block hashes "
     "({'a': 1})"),
    ("[0, 1]", '"grp"', "t.jsonl line 1: hash_ids must be a list of integer block hashes ('grp')"),
    # a later row with a string used to get no prefix, silently
    ("[0, 2]", '"grp"', "t.jsonl line 2: hash_ids must be a list of integer block hashes ('grp')"),
])
def test_mooncake_values(tmp_path, old, new, expected):
    assert MC.count(old) == 1
    assert expected in error(tmp_path, "t.jsonl", MC.replace(old, new), "mooncake")


def test_jsonl_lines_count_blank_lines(tmp_path):
    text = "\n" + MC.replace('"input_length": 700', '"input_length": false')
    assert "t.jsonl line 3: prompt_tokens is not a number (False)" in error(
        tmp_path, "t.jsonl", text, "mooncake")


JL = ('{"id": "a", "prompt_tokens": 5, "output_tokens": 1, "prefix": "g", "origin": "a"}\n'
      '{"id": "b", "prompt_tokens": 6, "output_tokens": 1, "prefix": "g", "origin": "b"}\n')


@pytest.mark.parametrize("old, new, expected", [
    ('"prefix": "g", "origin": "a"', '"prefix": {"a": 1}, "origin": "a"',
     "t.jsonl line 1: prefix must be a group id (string or integer) or a list of block hashes"),
    ('"prefix": "g", "origin": "b"', '"prefix": [1, 2], "origin": "b"',
     "t.jsonl line 2: prefix mixes block chains and group ids"),
    ('"prefix": "g", "origin": "b"', '"prefix": true, "origin": "b"',
     "t.jsonl line 2: prefix must be a group id"),
    ('"id": "b"', '"id": {"x": 1}', "t.jsonl line 2: id must be a string or an integer"),
    ('"id": "b"', '"id": true', "t.jsonl line 2: id must be a string or an integer (True)"),
    ('"id": "b"', '"id": null', "t.jsonl line 2: id is empty"),
    ('"origin": "b"', '"origin": ["b"]', "t.jsonl line 2: origin must be a string or an integer"),
    ('"origin": "b"', '"origin": "mars"', "t.jsonl line 2: origin is an unknown datacenter"),
])
def test_jsonl_values(tmp_path, old, new, expected):
    assert JL.count(old) == 1
    assert expected in error(tmp_path, "t.jsonl", JL.replace(old, new), "jsonl")


CSV = "id,arrival_s,prompt_tokens,output_tokens,prefix,origin,priority\n" \
      "a,0,100,10,g1,a,0\nb,1,200,20,g1,b,1\n"


@pytest.mark.parametrize("old, new, expected", [
    ("\nb,", "\n,", "t.csv row 2: id is empty ('')"),
    (",b,1\n", ",,1\n", "t.csv row 2: origin is empty ('')"),
    (",100,", ",True,", "t.csv row 1: prompt_tokens is not a number ('True')"),
    (",1\n", ",1.5\n", "t.csv row 2: priority is not a whole number (1 rows) ('1.5')"),
    (",1\n", ",99999999999\n", "t.csv row 2: priority is above 2,147,483,647"),
])
def test_csv_values(tmp_path, old, new, expected):
    assert CSV.count(old) == 1
    assert expected in error(tmp_path, "t.csv", CSV.replace(old, new), "csv")


def test_row_numbers_are_the_files_not_the_sorted_order(tmp_path):
    # rows are sorted by arrival before ids and priorities are read: row 1 arrives last
    text = CSV.replace("a,0,", "a,9,").replace(",0\n", ",x\n")
    assert "t.csv row 1: priority is not a number ('x')" in error(tmp_path, "t.csv", text, "csv")


def test_azure_first_row_with_an_extra_field(tmp_path):
    az = ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44,9\n"
          "2023-11-16 18:15:50.9951690,396,109\n")
    assert ("workload.file.path: t.csv line 2: 4 fields, the header has 3 "
            "('2023-11-16 18:15:46.6805900,374,44,9')") in error(tmp_path, "t.csv", az, "azure")


def test_negative_priorities_and_ids_as_written(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text(CSV.replace("\na,", "\n007,").replace(",1\n", ",-3\n"))
    wl = load_scenario(with_file({"path": str(f), "format": "csv"})).workload
    assert wl.ids.tolist() == ["007", "b"]  # as the file spells it, not 7
    assert wl.priority.tolist() == [0, -3]  # the range of a scenario's priority


def test_jsonl_integer_groups_with_gaps(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text('{"prompt_tokens": 5, "output_tokens": 1, "prefix": 7}\n'
                 '{"prompt_tokens": 6, "output_tokens": 1}\n'
                 '{"prompt_tokens": 8, "output_tokens": 1, "prefix": 7}\n')
    wl = load_scenario(with_file({"path": str(f), "format": "jsonl"})).workload
    assert wl.prefix_ptr.tolist() == [0, 1, 1, 2]
    assert wl.prefix_blocks.tolist() == [0, 0]


def test_csv_group_ids_with_a_gap_are_read_as_text(tmp_path):
    """CSV prefix cells are group ids as written ("07" and "7" differ); an empty cell is no
    prefix. The grouping comes from the column in one vectorized pass."""
    f = tmp_path / "t.csv"
    f.write_text("id,arrival_s,prompt_tokens,output_tokens,prefix,origin,priority\n"
                 "a,0,100,10,07,a,0\nb,1,200,20,,b,0\nc,2,300,20,7,a,0\nd,3,50,20,07,b,0\n")
    wl = load_scenario(with_file({"path": str(f), "format": "csv"})).workload
    assert wl.ids.tolist() == ["a", "b", "c", "d"]
    assert np.diff(wl.prefix_ptr).tolist() == [1, 0, 1, 1]
    a, c, d = wl.prefix_blocks.tolist()
    assert a == d != c  # "07" twice, "7" on its own
    assert wl.prefix_block_tokens.tolist() == [50, 300, 50]  # a group's shortest prompt
