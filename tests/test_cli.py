"""The command line as a user runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from factory import ROOT, SCENARIOS


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "planner", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or ROOT)


def test_validate_ok():
    r = run("validate", SCENARIOS / "quickstart.yaml")
    assert r.returncode == 0 and "400 requests" in r.stdout


def test_solve_then_evaluate_json(tmp_path, contract_scenario):
    out = tmp_path / "plan.json"
    r = run("solve", contract_scenario, "--method", "greedy", "--out", out)
    assert r.returncode == 0, r.stderr
    plan = json.loads(out.read_text())
    assert {"method", "status", "objective", "bound", "gap", "wall_s", "requests"} <= set(plan)
    assert plan["method"] == "greedy" and plan["status"] == "feasible"
    r = run("evaluate", contract_scenario, out, "--json")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["makespan_s"] == pytest.approx(plan["objective"])
    assert m["served"] == 3 and set(m["clusters"]) == {"ep", "ed", "wd"}


def test_contract_evaluate(contract_scenario, contract_plan):
    r = run("evaluate", contract_scenario, contract_plan, "--json")
    m = json.loads(r.stdout)
    assert m["makespan_s"] == pytest.approx(3.0)
    assert m["links"]["east|west"]["bytes"] == pytest.approx(2e6)
    assert m["cost"] == pytest.approx(0.0076667, rel=1e-4)
    text = run("evaluate", contract_scenario, contract_plan)
    assert text.returncode == 0 and "makespan: 3 s" in text.stdout


def test_bad_scenario_exit_2_one_line_no_traceback(tmp_path):
    d = yaml.safe_load((SCENARIOS / "quickstart.yaml").read_text())
    d["links"][0]["bandwidth_gbps"] = -1
    d["links"][0]["between"][1] = "mars"
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(d))
    r = run("validate", f)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert f"{f}: links[0].bandwidth_gbps: Input should be greater than 0 (-1)" in lines
    old = tmp_path / "p.json"
    old.write_text('{"keep": true}')
    r = run("solve", f, "--method", "greedy", "--out", old)
    assert r.returncode == 2 and json.loads(old.read_text()) == {"keep": True}


def test_unknown_method_and_option(contract_scenario, tmp_path):
    r = run("solve", contract_scenario, "--method", "nope", "--out", tmp_path / "p.json")
    assert r.returncode == 2 and "unknown method" in r.stderr and "Traceback" not in r.stderr
    r = run("solve", contract_scenario, "--method", "random", "-O", "colour=red",
            "--out", tmp_path / "p.json")
    assert r.returncode == 2 and "colour: unknown option for method random" in r.stderr


def test_time_limit_as_an_option(contract_scenario, tmp_path):
    """-O time_limit=S is --time-limit S (it was a TypeError, exit 1); both at once is an error."""
    out = tmp_path / "p.json"
    r = run("solve", contract_scenario, "--method", "cpsat", "-O", "time_limit=2", "--out", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["status"] == "optimal"
    r = run("solve", contract_scenario, "--method", "greedy", "-O", "time_limit=2",
            "--time-limit", "3", "--out", out)
    assert r.returncode == 2 and r.stderr.strip() == \
        "--option: time_limit given twice (--time-limit and -O time_limit) ('2')"
    r = run("solve", contract_scenario, "--method", "greedy", "-O", "time_limit=-1", "--out", out)
    assert r.returncode == 2 and "time_limit: must be a positive number" in r.stderr


def test_bad_plan_keeps_old_output_and_names_field(tmp_path, contract_scenario):
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"requests": [{"id": "r1", "prefill": "wd", "decode": "wd"},
                                             {"id": "r2", "prefill": "ep", "decode": "ed"},
                                             {"id": "r3", "prefill": "ep", "decode": "ed"}]}))
    r = run("evaluate", contract_scenario, plan)
    assert r.returncode == 2 and "requests[0].prefill" in r.stderr and "cannot prefill" in r.stderr
    plan.write_text("{not json")
    r = run("evaluate", contract_scenario, plan)
    assert r.returncode == 2 and "not valid JSON" in r.stderr


def test_methods_lists_registry():
    r = run("methods")
    assert r.returncode == 0
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert {"greedy", "round_robin", "random"} <= set(names)


def test_validate_warns_about_requests_no_replica_can_hold(tmp_path, capsys):
    import yaml
    from factory import make_scenario

    from planner import cli

    path = tmp_path / "kv.yaml"
    path.write_text(yaml.safe_dump(make_scenario(
        [{"name": "p", "role": "prefill"}, {"name": "d0", "role": "decode", "kv_capacity_gb": 0.001}],
        [{"prompt_tokens": 1000, "output_tokens": 100}, {"prompt_tokens": 500, "output_tokens": 10}])))
    assert cli.main(["validate", str(path)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: 1 request(s) fit no decode cluster's KV (e.g. r0: 1100 tokens; the "
                   "largest replica holds 1000): only the served objective with a horizon can "
                   "refuse them"]


def test_unwritable_outputs_and_bad_time_limits_are_one_line_errors(tmp_path, capsys):
    from planner import cli

    two_dc = str(ROOT / "tests" / "data" / "two-dc.json")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    afile = tmp_path / "a-file"
    afile.write_text("x")
    cases = [
        (["solve", two_dc, "-m", "greedy", "--out", str(folder)], f"--out: {folder}: is a folder"),
        (["solve", two_dc, "-m", "greedy", "--out", str(afile / "p.json")],
         f"--out: {afile / 'p.json'}: cannot make its folder"),
        (["solve", two_dc, "-m", "greedy", "--time-limit", "0"],
         "--time-limit: must be a positive number of seconds (0.0)"),
        (["solve", two_dc, "-m", "greedy", "--time-limit", "nan"], "--time-limit: must be a positive"),
        (["compare", two_dc, "--methods", "greedy", "--time-limit", "-1", "--no-progress",
          "--out", str(tmp_path / "r.html")], "--time-limit: must be a positive"),
    ]
    for argv, expected in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(expected), (argv, err)
    # a folder where the report's HTML goes: nothing is written beside it either
    (tmp_path / "rep.html").mkdir()
    assert cli.main(["compare", two_dc, "--methods", "greedy", "--no-progress",
                     "--out", str(tmp_path / "rep.html")]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err
    assert not (tmp_path / "rep.csv").exists() and not (tmp_path / "rep.json").exists()


@pytest.mark.parametrize("args,expected", [
    ((), "planner: the following arguments are required: command (planner -h shows the usage)"),
    (("solve",), "planner solve: the following arguments are required: scenario "
                 "(planner solve -h shows the usage)"),
    (("solve", "x.yaml", "--time-limit", "soon"),
     "planner solve: argument --time-limit: invalid float value: 'soon' (planner solve -h shows the usage)"),
])
def test_usage_errors_are_one_line(args, expected):
    from planner.cli import main

    r = run(*args)
    assert r.returncode == 2 and r.stderr.splitlines() == [expected]
    with pytest.raises(SystemExit) as ex:  # the same from the function
        main(list(args))
    assert ex.value.code == 2


def _late_arrivals(tmp_path, horizon_s):
    from factory import make_scenario

    # 3 x 100 prompt tokens at 1000 tok/s: 0.3 s of work, arriving at 0, 1 and 2 s
    sc = make_scenario([{"name": "m"}], [{"prompt_tokens": 100, "arrival_s": float(k)}
                                         for k in range(3)],
                       objective="served" if horizon_s else "makespan",
                       **({"horizon_s": horizon_s} if horizon_s else {}))
    path = tmp_path / "late.yaml"
    path.write_text(yaml.safe_dump(sc))
    return path


def test_validate_and_solve_say_what_the_fluid_model_leaves_out(tmp_path):
    """Found by review: a `served` run with horizon 0.5 s counted all three requests served
    although two arrive after it, and a fluid makespan far below the arrivals' span read as a
    completion time. The model is the contract's (it reads no arrivals); the CLI says so."""
    path = _late_arrivals(tmp_path, 0.5)
    r = run("validate", path)
    assert r.returncode == 0
    assert "2 of 3 requests arrive more than horizon_s 0.5 s after the first (the last 2 s " \
        "after)" in r.stderr
    r = run("solve", path, "-m", "greedy", "--out", tmp_path / "p.json")
    assert r.returncode == 0, r.stderr
    assert "arrive more than horizon_s" in r.stderr
    assert "longer than the fluid makespan 0.3 s" in r.stderr
    r = run("validate", SCENARIOS / "quickstart.yaml")  # arrivals within the fluid model's reach
    assert "warning" not in r.stderr
    # epoch clocks: times from the first arrival (the review saw "the last at 1.7e+09 s")
    doc = yaml.safe_load(path.read_text())
    for k, req in enumerate(doc["workload"]["requests"]):
        req["arrival_s"] = 1.7e9 + 0.1 * k
    path.write_text(yaml.safe_dump(doc))
    r = run("validate", path)
    assert r.returncode == 0 and "warning" not in r.stderr


def test_compare_exits_1_when_no_method_finds_a_solution(tmp_path):
    """Every plan over a 0.1-s horizon (0.3 s of work, `makespan`): the report and plans are
    written, but the exit is 1, as `solve`'s for the same outcome (it was 0)."""
    from factory import make_scenario

    sc = make_scenario([{"name": "m"}], [{"prompt_tokens": 100}] * 3, horizon_s=0.1)
    path = tmp_path / "tight.yaml"
    path.write_text(yaml.safe_dump(sc))
    out = tmp_path / "r.html"
    r = run("compare", path, "--methods", "greedy,lpt", "--out", out, "--no-progress")
    assert r.returncode == 1 and "no method found a solution" in r.stderr
    assert out.exists()
    r = run("solve", path, "-m", "greedy", "--out", tmp_path / "p.json")
    assert r.returncode == 1 and (tmp_path / "p.json").exists()


def test_an_out_path_where_nothing_can_be_made_fails_before_the_solve(capsys):
    """Found by review: `solve -o /proc/x.json` ran the whole solve and then failed naming its
    temporary file (as root os.access says /proc is writable). The folder is now tried."""
    from planner import cli

    two_dc = str(ROOT / "tests" / "data" / "two-dc.json")
    assert cli.main(["solve", two_dc, "-m", "greedy", "--out", "/proc/x.json"]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""  # nothing solved
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("--out: /proc/x.json: ") and ".tmp" not in err[0]


def test_a_models_dir_that_is_not_a_folder_is_a_one_line_error(monkeypatch, capsys):
    """It was silently ignored, and the project's own cards used (found by review)."""
    from planner import cli

    monkeypatch.setenv("PLANNER_MODELS_DIR", "/nonexistent/cards")
    assert cli.main(["validate", str(SCENARIOS / "quickstart.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["PLANNER_MODELS_DIR: not a folder of model and accelerator cards "
                   "('/nonexistent/cards')"]


def test_solve_warms_a_heuristic_up_untimed(tmp_path, monkeypatch):
    """`solve -m greedy` timed numba's one-time compile (6.3 s against 0.5 s after; found by
    review): heuristics are run once untimed first, as compare does; exact methods are not."""
    import importlib

    from planner import cli

    compare = importlib.import_module("planner.report.compare")  # the module, not the function
    seen = []
    monkeypatch.setattr(compare, "warm_up", lambda names: seen.extend(names))
    two_dc = str(ROOT / "tests" / "data" / "two-dc.json")
    assert cli.main(["solve", two_dc, "-m", "lpt", "--out", str(tmp_path / "a.json")]) == 0
    assert cli.main(["solve", two_dc, "-m", "cpsat", "--time-limit", "2",
                     "--out", str(tmp_path / "b.json")]) == 0
    assert seen == ["lpt"]


def _traced_scenario(tmp_path):
    """A copy of the two-region scenario on the first 30 requests of its trace, both in
    ``tmp_path``: the scenario file and the trace file it reads."""
    trace_src = SCENARIOS / "traces" / "azure2023" / "AzureLLMInferenceTrace_conv.csv"
    trace = tmp_path / "conv.csv"
    trace.write_text("".join(trace_src.read_text().splitlines(keepends=True)[:31]))
    doc = yaml.safe_load((SCENARIOS / "two-region-azure.yaml").read_text())
    doc["workload"]["file"]["path"] = "conv.csv"
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(doc))
    return scen, trace


def test_outputs_never_overwrite_the_inputs(tmp_path, capsys):
    """Found by review: `compare s.yaml --out conv.html` wrote its table over the trace conv.csv,
    and `solve s.yaml -o s.yaml` replaced the scenario with the plan (exit 0 both)."""
    from planner import cli

    scen, trace = _traced_scenario(tmp_path)
    before = {p: p.read_bytes() for p in (scen, trace)}
    (tmp_path / "rep.plans").mkdir()
    moved = tmp_path / "rep.plans" / "conv.csv"  # a trace inside the folder compare replaces
    moved.write_bytes(before[trace])
    scen2 = tmp_path / "s2.yaml"
    scen2.write_text(scen.read_text().replace("path: conv.csv", "path: rep.plans/conv.csv"))
    cases = [
        (["solve", str(scen), "-m", "greedy", "-o", str(scen)], "is the scenario file"),
        (["solve", str(scen), "-m", "greedy", "-o", str(trace)], "is the trace file"),
        (["compare", str(scen), "--methods", "greedy", "--no-progress",
          "--out", str(tmp_path / "conv.html")], "is the trace file"),
        (["compare", str(scen), "--methods", "greedy", "--no-progress",
          "--out", str(tmp_path / "s.html")], None),  # s.csv, s.json: no input among them
        (["compare", str(scen2), "--methods", "greedy", "--no-progress",
          "--out", str(tmp_path / "rep.html")], "holds the trace file"),
    ]
    for argv, expected in cases:
        rc = cli.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        if expected is None:
            assert rc == 0, (argv, err)
            continue
        assert rc == 2 and len(err) == 1 and expected in err[0], (argv, err)
        assert err[0].endswith("it would be overwritten") or err[0].endswith("be replaced")
    assert {p: p.read_bytes() for p in (scen, trace)} == before
    assert moved.read_bytes() == before[trace]


def test_an_empty_output_name_is_an_error(capsys):
    """Found by review: `solve -o ""` wrote to the default name; a full device was an error
    without the file's name."""
    from planner import cli

    two_dc = str(ROOT / "tests" / "data" / "two-dc.json")
    for argv in (["solve", two_dc, "-m", "greedy", "-o", ""],
                 ["compare", two_dc, "--methods", "greedy", "--no-progress", "--out", ""]):
        assert cli.main(argv) == 2
        assert capsys.readouterr().err.strip().splitlines() == ["--out: an empty file name ('')"]
    if Path("/dev/full").exists():
        assert cli.main(["solve", two_dc, "-m", "greedy", "-o", "/dev/full"]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == \
            "/dev/full: No space left on device"
