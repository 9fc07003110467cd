"""solve(): a plan that breaks the horizon is not a solution, whatever the method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factory import make_scenario

from planner import load_scenario, solve
from planner.report.compare import best_in_columns, table_rows


def _four_seconds_of_work(horizon_s: float) -> dict:
    # one mixed cluster, prefill 1000 tok/s: four 1000-token prompts are 4 s of compute
    return make_scenario([{"name": "m"}], [{"prompt_tokens": 1000}] * 4, objective="served",
                         horizon_s=horizon_s)


def test_plan_over_the_horizon_is_infeasible_and_claims_no_objective():
    sc = load_scenario(_four_seconds_of_work(2.5))
    res = solve(sc, "greedy")  # serves all four: 4 s > 2.5 s
    assert res.plan is not None and int((~res.plan.refused).sum()) == 4
    assert res.status == "infeasible" and res.objective is None and res.gap is None
    assert "exceeds the horizon 2.5 s" in res.termination
    exact = solve(sc, "milp", time_limit=10)  # two fit within 2.5 s
    assert exact.status == "optimal" and exact.objective == pytest.approx(2)


def test_plan_within_the_horizon_keeps_its_status():
    res = solve(load_scenario(_four_seconds_of_work(4.0)), "greedy")
    assert res.status == "feasible" and res.objective == 4


def test_compare_rows_star_only_solutions():
    data = {"best_bound": 2.0, "scenario": {"objective": "served"}, "methods": [
        {"method": "greedy", "kind": "heuristic", "status": "infeasible", "bound": None,
         "metrics": {"objective": 4, "makespan_s": 4.0, "bottleneck": "cluster:m", "cost": 0.0,
                     "rent": 0.0, "egress_cost": 0.0, "served": 4, "refused": 0,
                     "prefix_tokens_reused": 0, "links": {}, "clusters": {}}},
        {"method": "milp", "kind": "exact", "status": "optimal", "bound": 2.0,
         "metrics": {"objective": 2, "makespan_s": 2.0, "bottleneck": "cluster:m", "cost": 0.0,
                     "rent": 0.0, "egress_cost": 0.0, "served": 2, "refused": 2,
                     "prefix_tokens_reused": 0, "links": {}, "clusters": {}}}]}
    rows = table_rows(data)
    assert rows[0]["objective"] is None and rows[0]["gap_to_best_bound"] is None
    assert rows[0]["served"] == 4  # the figures stay visible
    best = best_in_columns(rows)
    assert best["served"] == {"milp"} and best["gap_to_best_bound"] == {"milp"}


def test_evaluate_says_a_plan_past_the_horizon_is_not_a_solution(tmp_path, capsys):
    import yaml

    from planner import cli

    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump(_four_seconds_of_work(2.5)))
    plan = tmp_path / "p.json"
    # the plan is written (its figures, its replay) but it is no solution: exit 1, as no plan
    assert cli.main(["solve", str(sc), "-m", "greedy", "--out", str(plan)]) == 1
    assert "the plan is no solution (infeasible)" in capsys.readouterr().err
    assert plan.exists()
    assert cli.main(["evaluate", str(sc), str(plan)]) == 0
    out = capsys.readouterr().out
    assert "NOT A SOLUTION (served not claimed): its makespan 4 s exceeds the horizon 2.5 s" in out
    assert "objective (served)" not in out
    assert "plan of greedy (the file says infeasible;" in out
    assert cli.main(["evaluate", str(sc), str(plan), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["objective"] is None and d["solution"] is False and d["served"] == 4
    assert d["status_claimed"] == "infeasible" and "exceeds the horizon" in d["problems"][0]


def test_evaluate_does_not_repeat_a_status_the_plan_file_invents(tmp_path, capsys):
    """A hand-edited plan file saying ``optimal``: evaluate shows that as the file's word and
    its own figures beside it, and a plan for another scenario is named as such first."""
    import yaml

    from planner import cli

    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump(_four_seconds_of_work(10.0)))
    plan = tmp_path / "p.json"
    assert cli.main(["solve", str(sc), "-m", "greedy", "--out", str(plan)]) == 0
    data = json.loads(plan.read_text())
    data["status"] = "optimal"
    plan.write_text(json.dumps(data))
    capsys.readouterr()
    assert cli.main(["evaluate", str(sc), str(plan), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["status_claimed"] == "optimal" and d["solution"] is True and d["objective"] == 4
    assert cli.main(["evaluate", str(sc), str(plan)]) == 0
    assert "(the file says optimal; figures below recomputed from the plan)" in capsys.readouterr().out
    other = _four_seconds_of_work(10.0)
    other["name"] = "other"
    other["datacenters"][0]["clusters"][0]["name"] = "elsewhere"
    sc2 = tmp_path / "other.yaml"
    sc2.write_text(yaml.safe_dump(other))
    assert cli.main(["evaluate", str(sc2), str(plan)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "the plan was made for scenario" in err[0] and len(err) <= 5


def _kv_tight(**top):
    # d0's replica holds 1000 tokens of KV, d1's 2000; the requests hold 1100 at their end
    return make_scenario([{"name": "p", "role": "prefill"},
                          {"name": "d0", "role": "decode", "kv_capacity_gb": 0.001},
                          {"name": "d1", "role": "decode", "kv_capacity_gb": 0.002}],
                         [{"prompt_tokens": 1000, "output_tokens": 100}] * 4, **top)


def test_plan_decoding_where_the_kv_cannot_fit_is_infeasible(monkeypatch):
    from planner import registry
    from planner.plan import Plan

    # a user's own policy that deals the requests over both decode clusters (the built-in
    # policies check the fit themselves)
    deal = registry.MethodSpec("deal", "alternate decode clusters",
                               lambda inst: Plan([0, 0, 0, 0], [1, 2, 1, 2]))
    monkeypatch.setitem(registry._REGISTRY, "deal", deal)
    sc = load_scenario(_kv_tight())
    res = solve(sc, "deal")
    assert (res.plan.decode == 1).any()
    assert res.status == "infeasible" and res.objective is None
    assert "cannot hold their KV" in res.termination
    assert solve(sc, "milp", time_limit=10).status == "optimal"


def test_request_that_fits_no_decode_cluster():
    big = _kv_tight()
    big["workload"]["requests"].append({"id": "huge", "prompt_tokens": 2500, "output_tokens": 10})
    res = solve(load_scenario(big), "cpsat", time_limit=10)
    assert res.status == "infeasible" and res.plan is None
    assert "huge needs 2510 KV tokens, the largest replica holds 2000" in res.termination
    big.update(objective="served", horizon_s=100.0)
    res = solve(load_scenario(big), "cpsat", time_limit=10)
    assert res.status == "optimal" and res.objective == 4  # the huge one refused
    assert res.plan.prefill[4] == -1


def test_refusing_under_makespan_is_not_a_solution():
    from planner import as_instance
    from planner.metrics import evaluate_arrays
    from planner.plan import Plan

    sc_inst = as_instance(load_scenario(make_scenario([{"name": "m"}], [{"prompt_tokens": 1000}] * 2)))
    m = evaluate_arrays(sc_inst, Plan([0, -1], [-1, -1]))
    assert m.makespan_s == 1.0 and not m.feasible
    assert m.problems == ["it refuses 1 request(s); only the served objective with a horizon "
                          "refuses requests"]
    assert evaluate_arrays(sc_inst, Plan([0, 0], [-1, -1])).feasible


def test_inputs_of_the_wrong_kind_are_input_errors(contract_scenario, contract_plan):
    """Found by review: a plan file's path was read as a sequence ("the plan has 14 requests"
    for a 14-character name), and None or a mapping gave raw TypeErrors."""
    from planner import evaluate, simulate
    from planner.scenario.errors import InputError

    sc = load_scenario(contract_scenario)
    assert evaluate(sc, str(contract_plan)).makespan_s == pytest.approx(3.0)
    assert evaluate(sc, Path(contract_plan)).makespan_s == pytest.approx(3.0)
    doc = json.loads(Path(contract_scenario).read_text())
    assert solve(doc, "greedy").plan is not None  # a parsed scenario document
    for call in (lambda: evaluate(sc, None), lambda: simulate(sc, None),
                 lambda: load_scenario(None), lambda: solve(None, "greedy"),
                 lambda: evaluate(sc, 42)):
        with pytest.raises(InputError) as err:
            call()
        msg = str(err.value)
        assert len(msg.splitlines()) == 1 and ("expected" in msg or "a scenario is" in msg), msg
