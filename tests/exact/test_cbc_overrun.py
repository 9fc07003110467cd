"""A CBC that does not stop at its time limit (planner/exact/_backends/pulp_backend.py): CBC
checks its clock only in the branch and bound, and on a large model its root LP ran for
minutes past `-sec 1`. The run is stopped past the limit and its grace, and `milp` returns
the warm start with an honest status."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from helpers import instance

from planner.exact._backends import pulp_backend
from planner.exact._backends.pulp_backend import overrun_guard


def test_the_guard_stops_a_child_past_its_deadline_and_leaves_others(tmp_path):
    tag = str(tmp_path)
    late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", tag])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)", "untagged"])
    t0 = time.monotonic()
    with overrun_guard(tag, t0 + 0.5) as note:
        late.wait(timeout=20)
    assert time.monotonic() - t0 < 5 and late.returncode != 0
    assert note["stopped_at"] >= 0 and other.poll() is None  # not ours: left running
    other.wait(timeout=10)
    quick = subprocess.Popen([sys.executable, "-c", "pass", tag])
    with overrun_guard(tag, time.monotonic() + 5) as note:
        quick.wait(timeout=10)
    assert note == {} and quick.returncode == 0


def _fake_cbc(tmp_path, monkeypatch, body: str):
    """Every CBC call runs the Python ``body`` instead (its argv is CBC's command line), killed
    0.5 s after the interrupt; returns a five-request instance to solve."""
    import pulp

    fake = tmp_path / "cbc"
    fake.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    fake.chmod(0o755)
    monkeypatch.setattr(pulp, "PULP_CBC_CMD", lambda **kw: pulp.COIN_CMD(path=str(fake), **kw))
    monkeypatch.setattr(pulp_backend, "CBC_KILL_S", 0.5)
    return instance([{"name": "a"}, {"name": "b"}], [{"prompt_tokens": 100 * (k + 1)} for k in range(5)])


def test_milp_returns_the_warm_start_when_cbc_overruns(tmp_path, monkeypatch):
    """A stand-in CBC that ignores its time limit and SIGINT: `milp` with 1 s still returns
    within seconds, with greedy's plan, status `feasible` and the reason."""
    from planner import solve

    inst = _fake_cbc(tmp_path, monkeypatch, """\
        import signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        time.sleep(60)
        """)
    t0 = time.monotonic()
    res = solve(inst, method="milp", time_limit=1, lp_bound=False, improve=False)
    assert time.monotonic() - t0 < 8
    assert res.status == "feasible" and res.plan is not None and res.info["plan_from"] == "warm_start"
    assert "did not stop at its" in res.termination
    assert res.objective == pytest.approx(solve(inst, method="greedy").objective)


def test_a_retry_without_pre_processing_that_overruns_says_so(tmp_path, monkeypatch):
    """A stand-in CBC whose first run says its pre-processing found the model infeasible (the
    run is then repeated without it) and whose second run ignores its time limit: the retry is
    stopped like the first run would be, and `milp` returns the warm start with the reason (it
    returned a bare error before)."""
    from planner import solve
    from planner.exact._backends.rows import PREPROCESS_INFEASIBLE

    inst = _fake_cbc(tmp_path, monkeypatch, f"""\
        import signal, sys, time
        args = sys.argv[1:]
        if "-preprocess" not in args:
            print({PREPROCESS_INFEASIBLE!r}, flush=True)
            with open(args[args.index("-solution") + 1], "w") as f:
                f.write("Infeasible - objective value 0.00000000\\n")
            sys.exit(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        time.sleep(60)
        """)
    t0 = time.monotonic()
    res = solve(inst, method="milp", time_limit=2, lp_bound=False, improve=False)
    assert time.monotonic() - t0 < 10
    assert res.info.get("cbc_preprocess", "").startswith("said infeasible"), res.info
    assert res.status == "feasible" and res.info["plan_from"] == "warm_start"
    assert "did not stop at its" in res.termination, res.termination
