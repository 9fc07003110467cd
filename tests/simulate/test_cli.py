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
    assert "makespan" in capsys.readouterr().out
    assert main(["simulate", sc, str(plan), "--set", "preemption=never"]) == 2
    assert "simulate.preemption" in capsys.readouterr().err
    assert main(["simulate", sc, str(tmp_path / "missing.json")]) == 2
