"""PuLP translation: CBC (bundled) by default, any other PuLP solver by name."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from planner.exact._backends.rows import (
    PREPROCESS_INFEASIBLE,
    Clock,
    RowBuffer,
    SolveOutcome,
    cbc_bound,
    float_objective,
    parse_cbc_log,
    served_t_bound,
    to_problem_units,
)
from planner.exact._model import Objective

log = logging.getLogger(__name__)

CBC_THREADS = 0  # CBC's default, its serial code (see cbc_threads)
# integer variables from which CBC gets num_workers threads
CBC_PARALLEL_MIN_INTS = 200


def cbc_threads(n_integer: int, num_workers: int) -> int:
    """CBC's thread count: serial below ``CBC_PARALLEL_MIN_INTS`` integer variables, else
    ``num_workers``. CBC 2.10.3 (PuLP's bundled binary) with threads can leave its main thread
    waiting for a worker that never starts until the time limit (coin-or/Cbc#640; measured: 1
    run in 40 of a 4-request model under load ran its whole 10 s and ended "Stopped on time
    limit", its log showing "Thread 1 used 0 times, waiting to start 10.0"): a millisecond proof
    turned into an unproven time-out. On larger models threads help on some runs (50
    requests, 60 s, six runs with 2 threads: optimal once in 33 s, gaps 1.5e-4 once and 2.8e-3
    to 4.7e-3 four times; serial, two runs: 4.2e-3 both)."""
    return CBC_THREADS if n_integer < CBC_PARALLEL_MIN_INTS else max(1, num_workers)


# CBC checks its clock in the branch and bound, not in its root LP: on the Mooncake scenario
# (130 k variables) `-sec 1` ran over 9 minutes. Past its limit plus this grace (seconds, and
# this share of the limit) it is interrupted (SIGINT: CBC stops and writes what it has), and
# killed CBC_KILL_S later.
PULP_CHECK_ROWS = 2000  # rows between checks of the translation's pace against the limit
CBC_GRACE_S = 1.0
CBC_GRACE_SHARE = 0.05
CBC_GAP_SHARE = 0.9  # CBC is told this share of rel_gap (its gap measure and rounding differ)
CBC_KILL_S = 2.0


def _children_with(tag: str) -> list[int]:
    """This process's children whose command line holds ``tag`` (Linux /proc; none elsewhere)."""
    me, out = os.getpid(), []
    with contextlib.suppress(OSError):
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
                if ppid != me:
                    continue
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if tag.encode() in f.read():
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    return out


@contextlib.contextmanager
def overrun_guard(tag: str, deadline: float) -> Iterator[dict[str, float]]:
    """While inside, a watcher interrupts (SIGINT), then kills, the children whose command line
    holds ``tag`` once ``time.monotonic()`` passes ``deadline``. Yields a dict that records
    ``stopped_at`` (seconds past the deadline) when it had to."""
    done = threading.Event()
    note: dict[str, float] = {}

    def watch() -> None:
        if done.wait(max(0.0, deadline - time.monotonic())):
            return
        pids = _children_with(tag)
        if not pids:
            return
        note["stopped_at"] = time.monotonic() - deadline
        for sig, wait in ((signal.SIGINT, CBC_KILL_S), (signal.SIGKILL, 0.0)):
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            if done.wait(wait):
                return
            pids = _children_with(tag)
            if not pids:
                return
            note["killed"] = 1.0

    t = threading.Thread(target=watch, name="cbc-overrun-guard", daemon=True)
    t.start()
    try:
        yield note
    finally:
        done.set()
        t.join()


def _remove(folder: str) -> None:
    with contextlib.suppress(OSError):
        for p in Path(folder).iterdir():
            p.unlink()
        os.rmdir(folder)


def solve_pulp(buf: RowBuffer, obj: Objective, T: int, hint: dict[int, float] | None, *,
               solver: str, time_limit: float, num_workers: int, seed: int, rel_gap: float,
               ) -> SolveOutcome:
    import pulp

    clock = Clock()
    prob = pulp.LpProblem("placement", pulp.LpMinimize)
    xs = [pulp.LpVariable(v.name, lowBound=v.lb, upBound=None if math.isinf(v.ub) else v.ub,
                          cat=pulp.LpInteger if v.integer else pulp.LpContinuous)
          for v in buf.vars]
    terms, _ = float_objective(obj, T)
    prob.setObjective(pulp.LpAffineExpression([(xs[i], c) for i, c in terms]))
    n_rows = len(buf.rows)
    for k, row in enumerate(buf.rows):
        if k and k % PULP_CHECK_ROWS == 0 and clock() / k * n_rows > time_limit:
            # PuLP builds its model in Python (minutes for the Mooncake scenario's 324 k rows):
            # when the rows so far say the translation alone would pass the limit, stop here
            return SolveOutcome("no_solution", None, None, None,
                                f"{solver}: PuLP would need about {clock() / k * n_rows:.3g} s "
                                f"to translate the model's {n_rows} rows (the time limit is "
                                f"{time_limit:.3g} s); not solved")
        e = pulp.LpAffineExpression(list(zip([xs[i] for i in row.idx], row.coef.tolist(),
                                             strict=True)))
        if row.lo == row.hi:
            prob.addConstraint(pulp.LpConstraint(e, pulp.LpConstraintEQ, f"r{k}", row.lo))
        else:
            if not math.isinf(row.hi):
                prob.addConstraint(pulp.LpConstraint(e, pulp.LpConstraintLE, f"r{k}", row.hi))
            if not math.isinf(row.lo):
                prob.addConstraint(pulp.LpConstraint(e, pulp.LpConstraintGE, f"r{k}g", row.lo))
    if hint:
        for i, val in hint.items():
            xs[i].setInitialValue(val)
    translate_s = clock()
    tmp = tempfile.mkdtemp(prefix="planner-cbc-")
    log_path = Path(tmp) / "cbc.log"
    name = solver.upper()
    budget = max(1.0, time_limit - clock())  # the limit counts the translation above
    info: dict[str, Any] = {}
    cbc = name in ("CBC", "PULP_CBC_CMD")
    if cbc:
        # CBC stops at a gap of its own measure, printed rounded: told rel_gap it stopped a
        # 4-request optimum at 1.09e-4 by ours (found by review); a tenth tighter lands within
        rel_gap = float(rel_gap) * CBC_GAP_SHARE
        threads = cbc_threads(sum(v.integer for v in buf.vars), num_workers)
        info["cbc_threads"] = threads
    grace = CBC_GRACE_S + CBC_GRACE_SHARE * budget

    def run(limit: float, extra: list[str]) -> tuple[Any, bool, SolveOutcome | None]:
        """One solver call within ``limit`` seconds: (PuLP's code, overran, error outcome)."""
        if cbc:
            s = pulp.PULP_CBC_CMD(msg=False, timeLimit=limit, threads=threads, gapRel=rel_gap,
                                  warmStart=bool(hint), logPath=str(log_path),
                                  options=[f"randomCbcSeed {max(1, seed)}", *extra])
        else:
            s = pulp.getSolver(solver, msg=False, timeLimit=limit, gapRel=rel_gap,
                               warmStart=bool(hint), threads=num_workers)
        s.tmpDir = tmp  # its files, and so its command line, name our folder: the guard's tag
        with overrun_guard(tmp, time.monotonic() + limit + grace) as over:
            try:
                return prob.solve(s), bool(over), None
            except pulp.PulpSolverError as exc:
                _remove(tmp)
                if over:
                    return None, True, SolveOutcome(
                        "no_solution", None, None, None,
                        f"{solver}: did not stop at its {limit:.3g} s time limit; "
                        f"stopped {grace:.3g} s after it, no plan read", [], info)
                return None, False, SolveOutcome("error", None, None, None, f"{solver}: {exc}",
                                                 [], info)

    t0 = clock()
    code, overrun, failed = run(budget, [])
    if failed is not None:
        return failed
    if (cbc and log_path.exists() and not overrun
            and PREPROCESS_INFEASIBLE in log_path.read_text(errors="replace")):
        # CBC's pre-processing called a feasible model infeasible (found by review: a horizon
        # exactly at the fastest makespan; SCIP and CP-SAT prove the optimum): solve it again
        # without pre-processing in the time left; its word alone is not a proof
        left = budget - (clock() - t0)
        info["cbc_preprocess"] = "said infeasible; solved again without it"
        if left > 0.5:
            if hint:  # the first run's solution file overwrote the start values
                for i, val in hint.items():
                    xs[i].setInitialValue(val)
            code, overrun, failed = run(left, ["preprocess off"])
            if failed is not None:
                return failed
    solve_s = clock() - t0
    if overrun:
        info["overrun_stopped"] = True
    status = pulp.LpStatus.get(code, str(code))
    sol_status = pulp.LpSolution.get(prob.sol_status, str(prob.sol_status))
    info.update(translate_s=translate_s, solve_s=solve_s, pulp_status=status,
                pulp_solution_status=sol_status)
    has_sol = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) or (
        status == "Optimal")
    value = (lambda i: float(xs[i].varValue or 0.0)) if has_sol else None
    f = pulp.value(prob.objective) if has_sol else None
    bound_f = None
    history = []
    if cbc and log_path.exists():
        parsed = parse_cbc_log(log_path.read_text(errors="replace"))
        info["cbc_result"] = parsed["result"]
        st, bound_f = cbc_bound(parsed, f, rel_gap)
        history = [(t, to_problem_units(obj, inc, False), to_problem_units(obj, b, True))
                   for t, inc, b in parsed["history"]]
        termination = f"CBC: {parsed['result'] or status}"
    else:
        # other solvers: PuLP's word only; "Optimal" at the time limit is not trusted
        timed_out = solve_s >= 0.97 * budget
        if status == "Optimal" and not timed_out:
            st = "optimal"
            bound_f = f - float(rel_gap) * abs(f) if (rel_gap > 0 and f is not None) else f
        elif status == "Infeasible":
            st = "infeasible"
        elif has_sol:
            st = "feasible"
        else:
            st = "no_solution"
        termination = f"{solver}: {status}" + (" (time limit reached)" if timed_out else "")
    _remove(tmp)
    info["served_t_bound"] = served_t_bound(obj, bound_f)
    return SolveOutcome(st, value, to_problem_units(obj, f, False),
                        to_problem_units(obj, bound_f, True), termination, history, info)
