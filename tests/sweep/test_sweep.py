"""Sweeps: resumable after a kill (only missing points recomputed, counted), Ray and the process
pool give the same table, bad sweep files give clear errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from factory import make_scenario

from planner import cli
from planner.scenario.errors import InputError
from planner.sweep import SweepError, load_sweep, run_sweep
from planner.sweep.engine import ray_host_port, ray_plan
from planner.sweep.store import FIELDS, ResultStore

COMPARED = ("status", "objective", "makespan_s", "cost_usd", "served", "refused", "bottleneck",
            "peak_link_utilization", "scenario", "overrides", "method")


def _scenario(tmp: Path, requests: int = 6) -> Path:
    sc = make_scenario(
        [{"name": "p0", "role": "prefill"}, {"name": "d0", "role": "decode"},
         {"name": "m1", "dc": "dc1", "replicas": 2}],
        [{"prompt_tokens": 100 + 37 * i, "output_tokens": 10 + i, "arrival_s": i * 0.1,
          "origin": "dc0"} for i in range(requests)],
        links=[{"between": ["dc0", "dc1"], "bandwidth_gbps": 1, "latency_ms": 5}],
    )
    path = tmp / "base.yaml"
    path.write_text(yaml.safe_dump(sc))
    return path


def _sweep(tmp: Path, grid: dict | None = None, methods=("greedy", "round_robin"), **extra) -> Path:
    _scenario(tmp)
    doc = {"name": "t", "scenario": "base.yaml", "methods": list(methods),
           "grid": grid if grid is not None else {
               "links[0].bandwidth_gbps": [0.001, 1, 100],
               "datacenters[1].clusters[0].replicas": [1, 2]}, **extra}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Interrupt(Exception):
    pass


def test_interrupted_sweep_recomputes_only_missing_points(tmp_path: Path) -> None:
    path = _sweep(tmp_path)
    total = 3 * 2 * 2
    seen = []

    def stop_after_5(event, info):
        if event == "row":
            seen.append(info["row"]["key"])
            if len(seen) == 5:
                raise Interrupt  # the sweep dies here, as if killed
    with pytest.raises(Interrupt):
        run_sweep(path, progress=stop_after_5, report=False)
    assert len(ResultStore(tmp_path / "t.results.csv")) == 5  # every finished point kept

    run = run_sweep(path)
    assert (run.total, run.reused, run.computed) == (total, 5, total - 5)
    assert len(run.table) == total and run.report is not None and run.report.is_file()
    again = run_sweep(path, report=False)
    assert (again.reused, again.computed) == (total, 0)
    # a changed option is a new point; the old rows stay
    doc = yaml.safe_load(path.read_text())
    doc["time_limit"] = 7
    path.write_text(yaml.safe_dump(doc))
    assert run_sweep(path, report=False, limit=3).computed == 3


def test_killed_sweep_process_resumes(tmp_path: Path) -> None:
    """SIGKILL the CLI mid-sweep, cut its last row short, restart: only the missing points run."""
    path = _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [0.001, 0.01, 0.1, 1, 10, 100],
                                  "workload.time_scale": [0.5, 1, 2]})
    csv_path = tmp_path / "t.results.csv"
    total = 6 * 3 * 2
    proc = subprocess.Popen([sys.executable, "-m", "planner", "sweep", str(path), "--no-report",
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if csv_path.exists() and csv_path.read_text().count("\n") >= 4:  # header + 3 rows
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(csv_path, "a") as fh:  # a row cut short by the kill
        fh.write("deadbeef,base,{\"links[0")
    done = len(ResultStore(csv_path))
    assert 3 <= done <= total
    print(f"killed after {done} of {total} points")
    run = run_sweep(path, report=False)
    assert run.computed == total - done and run.reused == done
    lines = csv_path.read_text().splitlines()
    assert len(lines) == total + 1 and len({ln.split(",")[0] for ln in lines[1:]}) == total


def test_ray_gives_the_same_table_as_the_pool(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="ray not installed (pip install '.[ray]'; .ci/run does it)")
    path = _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [0.001, 100]})
    pool = run_sweep(path, workers=2, out=tmp_path / "pool.csv", report=False)
    ray = run_sweep(path, workers=2, engine_name="ray", out=tmp_path / "ray.csv", report=False)
    assert pool.computed == ray.computed == 4

    def table(run):
        return {r["key"]: {k: r[k] for k in COMPARED} for r in run.table}

    assert table(pool) == table(ray)
    assert {r["worker"] for r in pool.table} and all(r["status"] == "feasible" for r in ray.table)


def _free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return int(sk.getsockname()[1])


@pytest.fixture
def ray_head():
    """A Ray head node of its own (``ray start --head --block`` in a new session, token
    authentication off), stopped with its process group after the test."""
    pytest.importorskip("ray", reason="ray not installed (pip install '.[ray]'; .ci/run does it)")
    exe = Path(sys.executable).with_name("ray")
    if not exe.exists():
        pytest.skip("no ray command beside the interpreter")
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([str(exe), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "ray start exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not open its port in 90 s"
                time.sleep(0.5)
        yield f"127.0.0.1:{port}", env
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # ray start --block stops its processes on ^C
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_sweep_on_an_existing_ray_cluster(tmp_path: Path, ray_head) -> None:
    address, env = ray_head
    path = _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [0.001, 100]})
    pool = run_sweep(path, out=tmp_path / "pool.csv", report=False)
    proc = subprocess.run([sys.executable, "-m", "planner", "sweep", str(path), "--engine", "ray",
                           "--address", address, "--out", str(tmp_path / "ray.csv"), "--no-report",
                           "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"ray ({address}): 2 CPUs" in proc.stderr
    ray = run_sweep(path, out=tmp_path / "ray.csv", report=False)  # everything reused
    assert ray.reused == 4 and ray.computed == 0

    def table(run):
        return {r["key"]: {k: r[k] for k in COMPARED} for r in run.table}

    assert table(ray) == table(pool)


def test_unreachable_ray_address_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    pytest.importorskip("ray", reason="ray not installed (pip install '.[ray]'; .ci/run does it)")
    path = _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [1]})
    out = tmp_path / "r.csv"
    out.write_text(",".join(FIELDS) + "\n")  # an empty table, left as it is
    port = _free_port()  # closed again: nothing listens there
    rc = cli.main(["sweep", str(path), "--engine", "ray", "--address", f"127.0.0.1:{port}",
                   "--out", str(out), "--no-report", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith(f"--address: no Ray cluster answers at 127.0.0.1:{port}: ")
    assert "Traceback" not in "\n".join(err)
    assert out.read_text() == ",".join(FIELDS) + "\n"


@pytest.mark.parametrize(("address", "target"), [
    ("127.0.0.1:6379", ("127.0.0.1", 6379)), ("ray://head.example:10001", ("head.example", 10001)),
    ("[::1]:6379", ("::1", 6379)), ("auto", None), ("local", None), ("head", None)])
def test_ray_host_port(address, target) -> None:
    assert ray_host_port(address) == target


def test_ray_plan_never_oversubscribes() -> None:
    for cpus in (1, 2, 8, 64):
        for threads in (1, 2, 3, 8, 100):
            for workers in (None, 1, 4, 1000):
                t, n = ray_plan(cpus, threads, workers)
                assert t * n <= cpus and n >= 1 and t >= 1


def _errors(path: Path, capsys) -> list[str]:
    assert cli.main(["sweep", str(path), "--no-progress"]) == 2
    return capsys.readouterr().err.strip().splitlines()


def test_unknown_override_paths(tmp_path: Path, capsys) -> None:
    path = _sweep(tmp_path, grid={"links[3].bandwidth_gbps": [1, 2],
                                  "datacenters[0].clusters[0].replicaz": [1],
                                  "workload.speed": [1],
                                  "links[0]..x": [1]})
    err = _errors(path, capsys)
    f = str(path)
    assert err == [
        f"{f}: grid.links[3].bandwidth_gbps: unknown override path: links has 1 entries, no index "
        "3 ('links[3].bandwidth_gbps')",
        f"{f}: grid.datacenters[0].clusters[0].replicaz: unknown override path: no field "
        "'replicaz' in datacenters[0].clusters[0] (known: accelerator, cost_per_hour, "
        "decode_step_base_s, decode_step_per_seq_s, decode_tokens_per_s, hbm_gb, "
        "kv_capacity_gb, max_batch_size, name, prefill_tokens_per_s, replicas, role) "
        "('datacenters[0].clusters[0].replicaz')",
        f"{f}: grid.workload.speed: unknown override path: no field 'speed' in workload (known: "
        "file, requests, synthetic, time_scale) ('workload.speed')",
        f"{f}: grid.links[0]..x: not an override path (e.g. links[0].bandwidth_gbps) "
        "('links[0]..x')",
    ]


def test_empty_grid_and_other_bad_files(tmp_path: Path, capsys) -> None:
    f = str(_sweep(tmp_path, grid={}))
    assert _errors(Path(f), capsys) == [
        f"{f}: grid: empty grid: give at least one override path with values ({{}})"]
    _sweep(tmp_path, grid={"links[0].bandwidth_gbps": []})
    assert _errors(Path(f), capsys) == [f"{f}: grid.links[0].bandwidth_gbps: no values ([])"]
    _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [-1, 5],
                           "datacenters[0].clusters[0].accelerator": ["h100", "tpu-v9"]},
           methods=["greedy", "nope"])
    err = _errors(Path(f), capsys)
    assert err[0].startswith(f"{f}: methods[1]: unknown method (known: ") and err[0].endswith("('nope')")
    _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [-1, 5],
                           "datacenters[0].clusters[0].accelerator": ["h100", "tpu-v9"]})
    err = _errors(Path(f), capsys)
    assert err[0] == (f"{f}: grid.links[0].bandwidth_gbps[0]: base: links[0].bandwidth_gbps: "
                      "Input should be greater than 0 (-1)")
    assert err[1].startswith(f"{f}: grid.datacenters[0].clusters[0].accelerator[1]: base: "
                             "datacenters[0].clusters[0].accelerator: unknown accelerator card")
    assert err[1].endswith("('tpu-v9')")
    (tmp_path / "sweep.yaml").write_text("name: x\nscenario: base.yaml\nmethods: [greedy]\n")
    assert _errors(Path(f), capsys) == [
        f"{f}: grid: a sweep over one scenario needs a grid of overrides (missing)"]
    (tmp_path / "sweep.yaml").write_text("scenario: nothere.yaml\nmethods: [greedy]\ngrid: {a: [1]}\n"
                                         "typo: 1\n")
    assert _errors(Path(f), capsys) == [f"{f}: typo: unknown field (1)"]


def test_folder_of_scenarios(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for k in (1, 2):
        sc = make_scenario([{"name": "a", "replicas": k}], [{"prompt_tokens": 100}] * 3,
                           name=f"s{k}")
        (folder / f"s{k}.json").write_text(json.dumps(sc))
    path = tmp_path / "sweep.yaml"
    path.write_text("scenarios: many\nmethods: [greedy]\n")
    sw = load_sweep(path)
    assert [b.label for b in sw.bases] == ["s1", "s2"] and sw.axes == []
    run = run_sweep(sw)
    assert run.computed == 2 and {r["scenario"] for r in run.table} == {"s1", "s2"}
    assert run.report.is_file()


def test_store_header(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2")  # no final newline either: still not rewritten
    with pytest.raises(InputError, match="not a sweep results table"):
        ResultStore(p)
    assert p.read_text() == "a,b\n1,2"
    assert FIELDS[0] == "key"


def test_foreign_out_file_is_a_one_line_error_and_kept(tmp_path: Path, capsys) -> None:
    path = _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [1]})
    out = tmp_path / "notes.csv"
    out.write_text("my,own\ndata")
    rc = cli.main(["sweep", str(path), "--out", str(out), "--no-report", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"{out}: header: not a sweep results table of this version; give "
                               "another --out or move the file ('my,own')"]
    assert out.read_text() == "my,own\ndata"


def test_sweep_error_type(tmp_path: Path) -> None:
    with pytest.raises(SweepError):
        load_sweep(_sweep(tmp_path, grid={}))


def test_rewritten_trace_is_a_new_point(tmp_path: Path) -> None:
    """The point key hashes the trace file's bytes, not its path: a trace rewritten in place is
    recomputed (its makespan changes), an unchanged one is reused."""
    sc = yaml.safe_load(_scenario(tmp_path).read_text())
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,10\n0.1,200,20\n")
    sc["workload"] = {"file": {"path": "trace.csv", "format": "csv", "origin": "dc0"}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(sc))
    doc = {"name": "t", "scenario": "base.yaml", "methods": ["greedy"],
           "grid": {"links[0].bandwidth_gbps": [1, 100]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    first = run_sweep(path, report=False)
    assert first.computed == 2
    assert run_sweep(path, report=False).computed == 0
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,10\n0.1,4000,400\n")
    second = run_sweep(path, report=False)
    assert (second.reused, second.computed) == (0, 2)
    before = sorted(r["makespan_s"] for r in first.table)
    after = sorted(r["makespan_s"] for r in second.table)
    assert all(b > a for a, b in zip(before, after, strict=True))


def test_bad_sweep_flags_and_outputs_are_one_line_errors(tmp_path: Path, capsys) -> None:
    path = _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [1]})
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\xff\xfe\x00\x01binary")
    (tmp_path / "dir.csv").mkdir()
    cases = [(["--limit", "-1"], "--limit: must be at least 1 (-1)"),
             (["--threads", "0"], "--threads: must be at least 1 (0)"),
             (["--out", str(tmp_path / "dir.csv")], "--out: "),
             (["--out", str(garbage)], f"{garbage}: header: not a sweep results table (not UTF-8")]
    for extra, expected in cases:
        rc = cli.main(["sweep", str(path), "--no-report", "--no-progress", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err[-1].startswith(expected), (extra, err)
    assert garbage.read_bytes() == b"\xff\xfe\x00\x01binary"


def _written(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.suffix in (".csv", ".html"))


def test_invalid_listed_scenarios_stop_the_sweep(tmp_path: Path, capsys) -> None:
    """Every scenario of ``scenarios:`` (a list or a folder) is loaded before anything runs: an
    invalid one is one line naming the sweep file, the entry and the field (exit 2), not an
    error row in a sweep that exits 0."""
    good = yaml.safe_load(_scenario(tmp_path).read_text())
    bad = json.loads(json.dumps(good))
    bad["links"][0]["bandwidth_gbps"] = -1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    path = tmp_path / "sweep.yaml"
    path.write_text("name: t\nscenarios: [base.yaml, bad.yaml]\nmethods: [greedy]\n")
    f = str(path)
    assert _errors(path, capsys) == [
        f"{f}: scenarios[1]: invalid scenario {tmp_path / 'bad.yaml'}: links[0].bandwidth_gbps: "
        "Input should be greater than 0 (-1)"]
    folder = tmp_path / "many"
    folder.mkdir()
    for name in ("base.yaml", "bad.yaml"):
        (folder / name).write_text((tmp_path / name).read_text())
    path.write_text("name: t\nscenarios: many\nmethods: [greedy]\n")
    assert _errors(path, capsys) == [
        f"{f}: scenarios: invalid scenario {folder / 'bad.yaml'}: links[0].bandwidth_gbps: "
        "Input should be greater than 0 (-1)"]
    assert _written(tmp_path) == []


def test_sweep_outputs_are_checked_before_anything_runs(tmp_path: Path, capsys) -> None:
    """A folder where the report or the table goes, the two the same file, or a file the sweep
    reads: one line naming the sweep file's field, nothing run or written."""
    path = _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [1]})
    f = str(path)
    cases = [
        ({"report": "."}, f"{f}: report: is a folder, not a file ('{tmp_path}')"),
        ({"out": "."}, f"{f}: out: is a folder, not a file ('{tmp_path}')"),
        ({"out": "x.csv", "report": "x.csv"},
         f"{f}: report: the same file as the results table (out) ('{tmp_path / 'x.csv'}')"),
        ({"report": "x.txt"},
         f"{f}: report: the report is an HTML page: give a NAME.html file ('{tmp_path / 'x.txt'}')"),
        ({"report": "base.yaml"},
         f"{f}: report: is the scenario base: it would be overwritten ('{tmp_path / 'base.yaml'}')"),
        ({"report": "sweep.yaml"},
         f"{f}: report: is the sweep file: it would be overwritten ('{path}')"),
    ]
    for extra, expected in cases:
        _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [1]}, **extra)
        assert _errors(path, capsys) == [expected], extra
        assert _written(tmp_path) == [], extra
    _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [1]})
    rc = cli.main(["sweep", f, "--no-progress", "--report", str(tmp_path / "base.yaml")])
    assert rc == 2 and capsys.readouterr().err.strip().splitlines() == [
        f"{f}: report: is the scenario base: it would be overwritten ('{tmp_path / 'base.yaml'}')"]
    assert "links" in (tmp_path / "base.yaml").read_text() and _written(tmp_path) == []


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "0", "-1"])
def test_sweep_time_limit_must_be_positive_and_finite(tmp_path: Path, capsys, value: str) -> None:
    path = _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [1]})
    path.write_text(path.read_text() + f"time_limit: {value}\n")
    err = _errors(path, capsys)
    assert len(err) == 1 and err[0].startswith(f"{path}: time_limit: "), err
    assert _written(tmp_path) == []


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "a\\b"])
def test_sweep_name_is_a_plain_file_name(tmp_path: Path, capsys, name: str) -> None:
    """The name gives NAME.results.csv and NAME.html beside the sweep file: no path elsewhere."""
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    path = _sweep(deep, grid={"links[0].bandwidth_gbps": [1]}, name=name)
    assert _errors(path, capsys) == [
        f"{path}: name: must be a plain file name (no folder, not '.' or '..'): the results and "
        f"the report are named after it ({name!r})"]
    assert _written(tmp_path) == []
    _sweep(deep, grid={"links[0].bandwidth_gbps": [1]}, name="run.v2")
    assert cli.main(["sweep", str(path), "--no-progress"]) == 0
    assert _written(tmp_path) == ["a/b/run.v2.html", "a/b/run.v2.results.csv"]


def test_a_methods_own_time_limit_overrides_the_sweeps(tmp_path: Path) -> None:
    """options: {cpsat: {time_limit: 2}} runs cpsat for 2 s (it was a TypeError in every row:
    'multiple values for time_limit', and the sweep still exited 0)."""
    path = _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [1]}, methods=("greedy", "cpsat"),
                  options={"cpsat": {"time_limit": 2}}, time_limit=5)
    points = {p.method: p for p in load_sweep(path).points()}
    assert (points["cpsat"].time_limit, points["greedy"].time_limit) == (2.0, 5.0)
    assert "time_limit" not in points["cpsat"].options
    run = run_sweep(path, report=False)
    assert sorted(r["status"] for r in run.table) == ["feasible", "optimal"]


def test_a_solve_stopped_by_ctrl_c_stops_the_sweep_and_stores_no_row(tmp_path: Path,
                                                                     monkeypatch) -> None:
    """CP-SAT stops its search on Ctrl-C and returns its best plan; stored as a row, that
    cut-short figure would be reused by every resumed run (found by review: the sweep stored
    it, ran on and exited 0)."""
    import planner.api

    real = planner.api.solve

    def interrupted(*args, **kw):
        res = real(*args, **kw)
        res.info["interrupted"] = True
        return res

    path = _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [1]}, methods=("greedy",))
    monkeypatch.setattr(planner.api, "solve", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(path, report=False)
    assert len(ResultStore(tmp_path / "t.results.csv")) == 0


def test_a_plan_that_breaks_the_horizon_is_not_ranked(tmp_path: Path) -> None:
    """A plan over the horizon is ``infeasible``: its row claims no objective, and the report
    lists it with the failures, not as a point's best method or on the Pareto front."""
    path = _sweep(tmp_path, grid={"horizon_s": [0.001, 1000.0]}, methods=("greedy",))
    run = run_sweep(path)
    rows = {r["overrides"]["horizon_s"]: r for r in run.table}
    tight, loose = rows[0.001], rows[1000.0]
    assert tight["status"] == "infeasible" and tight["objective"] is None
    assert tight["makespan_s"] > 0.001  # its figures are still stored
    assert loose["status"] == "feasible" and loose["objective"] == pytest.approx(loose["makespan_s"])
    html = run.report.read_text()
    best = html.split("Best per scenario point", 1)[1].split("</table>", 1)[0]
    assert "horizon_s=1000.0" in best and "horizon_s=0.001" not in best
    failures = html.split("Points without a solution", 1)[1].split("</ul>", 1)[0]
    assert "horizon_s=0.001 / greedy: infeasible" in failures
    front = html.split('id="fig-pareto-data"', 1)[1].split("</script>", 1)[0]
    assert "horizon_s=1000.0" in front and "horizon_s=0.001" not in front


def test_an_arrival_axis_moves_the_replay_columns_only(tmp_path: Path) -> None:
    """The review found the example sweep's ``workload.time_scale`` axis changed no figure: the
    fluid model reads no arrival times. Each row now carries its plan's replay, which does."""
    _scenario(tmp_path, requests=12)
    doc = {"name": "t", "scenario": "base.yaml", "methods": ["greedy"],
           "grid": {"workload.time_scale": [0.01, 10.0]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    rows = {r["overrides"]["workload.time_scale"]: r for r in run_sweep(path).table}
    fast, slow = rows[0.01], rows[10.0]
    assert fast["makespan_s"] == pytest.approx(slow["makespan_s"])  # the fluid figure stays
    # the last request arrives at 11 x 0.1 s x time_scale: 11 s, or 0.011 s
    assert slow["replay_makespan_s"] > 11.0 > fast["replay_makespan_s"]
    assert slow["replay_completed"] == fast["replay_completed"] == 12
    assert fast["ttft_p99_s"] > slow["ttft_p99_s"]
    assert "TTFT p99 (s)" in (tmp_path / "t.html").read_text()
    doc["replay"] = False
    doc["name"] = "u"
    path.write_text(yaml.safe_dump(doc))
    assert all(r["replay_makespan_s"] is None for r in run_sweep(path, report=False).table)


def test_a_table_written_before_the_replay_columns_is_upgraded(tmp_path: Path) -> None:
    from planner.sweep.store import FIELDS_V1

    path = _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [1, 100]}, methods=("greedy",))
    run_sweep(path, report=False, limit=1)
    out = tmp_path / "t.results.csv"
    lines = out.read_text().splitlines()
    old = [",".join(FIELDS_V1)] + [",".join(r.split(",")[:len(FIELDS_V1)]) for r in lines[1:]]
    out.write_text("\n".join(old) + "\n")  # as an earlier version wrote it (no quoted commas)
    old.append(",".join(["junk"] * len(FIELDS_V1)))  # a malformed row: skipped, never deleted
    out.write_text("\n".join(old) + "\n")
    before = ResultStore(out).table()
    assert len(before) == 1 and before[0]["replay_makespan_s"] is None
    run = run_sweep(path, report=False)
    assert (run.reused, run.computed) == (1, 1)
    text = out.read_text().splitlines()
    assert text[0] == ",".join(FIELDS) and len(text) == 4  # header, old row, junk, new row
    assert text[2].startswith("junk,")
    after = {r["key"]: r for r in ResultStore(out).table()}
    old_row = after[before[0]["key"]]
    assert {k: old_row[k] for k in ("makespan_s", "cost_usd", "status", "overrides")} == \
        {k: before[0][k] for k in ("makespan_s", "cost_usd", "status", "overrides")}
    assert len(after) == 2


def test_a_sweep_never_writes_over_a_trace_its_scenario_reads(tmp_path: Path, capsys) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("prompt_tokens,output_tokens,arrival_s\n100,10,0\n200,20,1\n")
    doc = yaml.safe_load(_scenario(tmp_path).read_text())
    doc.pop("requests", None)
    doc["workload"] = {"file": {"path": "t.csv", "format": "csv"}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(doc))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "scenario": "base.yaml", "methods": ["greedy"],
                                    "grid": {"links[0].bandwidth_gbps": [1]}, "out": "t.csv"}))
    err = _errors(path, capsys)
    assert len(err) == 1 and "out: is the trace file of scenario base: it would be overwritten" \
        in err[0], err
    assert trace.read_text().startswith("prompt_tokens,output_tokens")


@pytest.mark.parametrize(("options", "expected"), [
    ({"greedy": {"time_limit": "abc"}}, "options.greedy.time_limit: must be a positive number"),
    ({"greedy": {"time_limit": -1}}, "options.greedy.time_limit: must be a positive number"),
    ({"random": {"seed": 1.5}}, "options.random.seed: bad value for option of method random"),
])
def test_bad_method_options_stop_the_sweep_before_it_runs(tmp_path: Path, capsys, options,
                                                          expected) -> None:
    """Found by review: the first was an unexpected ValueError, the others ran every point to an
    error row and exited 0."""
    path = _sweep(tmp_path, grid={"links[0].bandwidth_gbps": [1]}, methods=list(options),
                  options=options)
    err = _errors(path, capsys)
    assert len(err) == 1 and f"{path}: {expected}" in err[0], err
    assert _written(tmp_path) == []
