from __future__ import annotations

import json

from factory import SCENARIOS

from planner.cli import main


def test_planner_simulate_cli(tmp_path, capsys):
    plan = tmp_path / "q.plan.json"
    sc = str(SCENARIOS / "quickstart.yaml")
    assert main(["solve", sc, "-m", "batch_fcfs", "-o", str(plan)]) == 0
    capsys.readouterr()
    assert main(["simulate", sc, str(plan), "--json", "--set", "queue=sjf"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["completed"] == 400 and d["makespan_s"] >= d["fluid_makespan_s"]
    assert d["config"]["queue"] == "sjf"
    assert main(["simulate", sc, str(plan)]) == 0
    assert "(fluid bound " in capsys.readouterr().out
    # with linear decode steps the fluid makespan is no bound on the replay's (engine docstring)
    assert main(["simulate", sc, str(plan), "--set", "decode_step=linear"]) == 0
    out = capsys.readouterr().out
    assert "not a bound here" in out and "(fluid bound " not in out
    assert main(["simulate", sc, str(plan), "--set", "preemption=never"]) == 2
    assert "simulate.preemption" in capsys.readouterr().err
    assert main(["simulate", sc, str(tmp_path / "missing.json")]) == 2


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_outputs_are_strict_json(tmp_path, capsys):
    """--json is for other tools: a figure that is not a finite number is null, not the bare
    Infinity / NaN Python's json writes (invalid JSON). Here the rent of a fleet at $1e9/h over
    a makespan of 1e303 s overflows, and the TPOT of a one-token output is undefined."""
    from factory import ROOT

    doc = json.loads((ROOT / "tests" / "data" / "two-dc.json").read_text())
    doc["workload"]["requests"][0]["output_tokens"] = 1
    sc = tmp_path / "s.json"
    sc.write_text(json.dumps(doc))
    plan = tmp_path / "p.json"
    assert main(["solve", str(sc), "-m", "greedy", "-o", str(plan)]) == 0
    capsys.readouterr()
    assert main(["simulate", str(sc), str(plan), "--json", "--requests"]) == 0
    tpot = {r["id"]: r["tpot_s"] for r in _strict(capsys.readouterr().out)["requests"]}
    assert tpot["r1"] is None and tpot["r2"] > 0
    # the slowest replica and dearest rent the schema allows keep every figure finite (at
    # 1e-300 tokens/s the rent overflowed to inf: such rates are refused now)
    ep = doc["datacenters"][0]["clusters"][0]
    ep["prefill_tokens_per_s"], ep["cost_per_hour"] = 1e-6, 1e9
    sc.write_text(json.dumps(doc))
    assert main(["evaluate", str(sc), str(plan), "--json"]) == 0
    d = _strict(capsys.readouterr().out)
    assert d["makespan_s"] > 1e8 and 0 < d["cost"] < float("inf") and d["served"] == 3
    from planner.report.io import dumps

    assert json.loads(dumps({"cost": float("inf"), "x": float("nan")})) == {"cost": None, "x": None}
