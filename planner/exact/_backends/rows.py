"""The neutral form every backend translates: variables and tagged linear rows."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.exact._model import Objective, Terms

log = logging.getLogger(__name__)

SIGINT_REPEAT_S = 0.1  # on_sigint: after a Ctrl-C the solver's stop is repeated this often


@dataclass
class VarSpec:
    lb: float
    ub: float
    integer: bool
    name: str
    kind: str  # "int" (a count) or "load" (T, in seconds)


@dataclass
class Row:
    idx: np.ndarray
    coef: np.ndarray
    lo: float
    hi: float
    kind: str  # "int" (integral coefficients) or "load" (seconds)


class RowBuffer:
    """Collects the model (variables are integer handles) for a backend to translate."""

    def __init__(self) -> None:
        self.vars: list[VarSpec] = []
        self.rows: list[Row] = []

    def new_var(self, lb: float, ub: float, integer: bool, name: str, kind: str = "int") -> int:
        self.vars.append(VarSpec(float(lb), float(ub), integer, name, kind))
        return len(self.vars) - 1

    def view(self, T: int, horizon: float | None, drop_rows: set[int] | None = None
             ) -> RowBuffer:
        """The same model (rows shared, not copied) with T's upper bound the horizon or none
        instead of a plan's makespan, less the rows at ``drop_rows``."""
        out = RowBuffer()
        out.vars = list(self.vars)
        out.vars[T] = dataclasses.replace(self.vars[T],
                                          ub=math.inf if horizon is None else float(horizon))
        out.rows = self.rows if not drop_rows else \
            [r for k, r in enumerate(self.rows) if k not in drop_rows]
        return out

    @property
    def nnz(self) -> int:
        """Nonzeros of the rows (what a backend's translation time scales with)."""
        return sum(r.idx.size for r in self.rows)

    def add_row(self, terms: Terms, lo: float, hi: float, kind: str) -> None:
        idx = np.fromiter((t[0] for t in terms), np.int64, len(terms))
        coef = np.fromiter((t[1] for t in terms), np.float64, len(terms))
        self.rows.append(Row(idx, coef, float(lo), float(hi), kind))


@dataclass
class SolveOutcome:
    """A backend's answer, objective and bound already in the problem's units (seconds, money,
    requests served)."""

    status: str  # optimal | feasible | infeasible | no_solution | error
    value: Callable[[int], float] | None
    objective: float | None
    bound: float | None
    termination: str
    history: list[tuple[float, float | None, float | None]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def float_objective(obj: Objective, T: int) -> tuple[list[tuple[int, float]], float]:
    """The objective as linear terms for a float (MILP) solver: makespan T; served
    ``-sum s + eps T``; cost times ``obj.scale`` (its largest coefficient 1; to_problem_units
    divides it back out), makespan too (T in units of a bound below 1 s). Returns (terms,
    constant)."""
    if obj.kind == "makespan":
        return [(T, obj.scale)], 0.0
    if obj.kind == "served":
        return [(s, -1.0) for s in obj.s_terms] + [(T, obj.eps)], 0.0
    return [(i, c * obj.scale) for i, c in obj.cost_terms], 0.0


def dual_bound(buf: RowBuffer, obj: Objective, T: int, duals: list[float]) -> float:
    """A lower bound of the LP relaxation's optimum (solver units) from any row prices ``duals``,
    whatever their accuracy: the Lagrangian ``min over the variables' box of (c - A'y) x`` plus
    each priced row's bound (a price of the wrong sign for the row, or on an infinite side, is
    taken as zero). Equal to the LP value when the prices are its optimal duals. The LP value
    as a solver reports it is no bound: GLOP without scaling, T in seconds, reported 1.04e-8
    where the LP's optimum is 9.62e-9 and the integer optimum 1.0018e-8, and the plan at
    1.04e-8 was called optimal (found by review)."""
    n = len(buf.vars)
    terms, const = float_objective(obj, T)
    c = np.zeros(n)
    for i, v in terms:
        c[i] += v
    y = np.asarray(duals, np.float64)
    lo = np.array([r.lo for r in buf.rows])
    hi = np.array([r.hi for r in buf.rows])
    y = np.where((y > 0) & np.isfinite(lo), y, np.where((y < 0) & np.isfinite(hi), y, 0.0))
    sizes = np.fromiter((r.idx.size for r in buf.rows), np.int64, len(buf.rows))
    idx = np.concatenate([r.idx for r in buf.rows]) if buf.rows else np.zeros(0, np.int64)
    coef = np.concatenate([r.coef for r in buf.rows]) if buf.rows else np.zeros(0)
    a_y = np.bincount(idx, weights=coef * np.repeat(y, sizes), minlength=n)
    lb = np.array([v.lb for v in buf.vars])
    ub = np.array([v.ub for v in buf.vars])
    if ub[T] == math.inf and c[T] - a_y[T] < 0 < c[T]:
        # T unbounded above with a negative reduced cost (the prices sum past its cost by
        # float error): prices scaled down so that it is zero; any scaled prices bound too
        y = y * (c[T] / a_y[T])
        a_y = np.bincount(idx, weights=coef * np.repeat(y, sizes), minlength=n)
    d = c - a_y
    with np.errstate(invalid="ignore"):  # 0 x inf in the branches np.where leaves out
        box = np.where(d > 0, d * lb, np.where(d < 0, d * ub, 0.0))
        rows = np.where(y > 0, y * lo, np.where(y < 0, y * hi, 0.0))
    return float(box.sum() + rows.sum() + const)


def to_problem_units(obj: Objective, f: float | None, bound: bool) -> float | None:
    """A float solver's objective value or bound in problem units. ``served``: f = -S + eps T
    with 0 <= eps T <= 1/2, so a bound B gives S <= floor(1/2 - B)."""
    if f is None or not math.isfinite(f):
        return None
    if obj.kind == "served":
        if bound:
            return float(math.floor(0.5 - f + 1e-6))
        return float(round(-f))
    return float(f) / obj.scale  # cost, makespan


def served_t_bound(obj: Objective, raw_bound: float | None) -> tuple[float, float] | None:
    """``served``'s tie-break bound from a float solver's bound ``B`` on ``-S + eps T``:
    ``(S_ub, T_lb)``, S_ub the count bound and T_lb a lower bound of the makespan of any plan
    serving S_ub requests (``T >= (B + S_ub) / eps``, less the solvers' 1e-6 tolerance)."""
    if obj.kind != "served" or raw_bound is None or not math.isfinite(raw_bound) or obj.eps <= 0:
        return None
    s_ub = to_problem_units(obj, raw_bound, True)
    return s_ub, max(0.0, (raw_bound + s_ub - 1e-6) / obj.eps)


class Clock:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


_CBC_SOL = re.compile(r"(?:Integer solution of|solution with cost|MIPStart provided solution with cost)"
                      r"\s+(-?[\d.eE+-]+).*?\(([\d.]+) seconds\)")
_CBC_NODE = re.compile(r"After \d+ nodes, \d+ on tree, (-?[\d.eE+-]+) best solution, best possible "
                       r"(-?[\d.eE+-]+) \(([\d.]+) seconds\)")
_CBC_MIPSTART = re.compile(r"MIPStart provided solution with cost (-?[\d.eE+-]+)")


def _unit(txt: str) -> float:
    """Half a unit of the last digit printed in ``txt`` (``3.050`` -> 0.0005, ``1.25e+03`` -> 5)."""
    mant, _, exp = txt.lower().partition("e")
    decimals = len(mant.split(".")[1]) if "." in mant else 0
    return 0.5 * 10.0 ** (int(exp or 0) - decimals)


def _low(txt: str) -> float:
    """A lower bound CBC printed rounded (the node log's ``best possible`` with ``%g``-style
    digits, the summary's ``Lower bound:`` with ``%.3f``): minus half a unit of its last printed
    digit, so that the rounding can only weaken it. Trailing zeros count as printed digits
    (``3.050`` is lowered by 0.0005): if the printer dropped more digits, the unit is coarser
    and the bound weaker still, never wrong."""
    x = float(txt)
    return x if not math.isfinite(x) else x - _unit(txt)


def _high(txt: str) -> float:
    """The other way: a printed value raised by half a unit of its last digit."""
    x = float(txt)
    return x if not math.isfinite(x) else x + _unit(txt)


_CBC_GAP_EXIT = re.compile(r"Exiting as integer gap of (-?[\d.eE+-]+)")


PREPROCESS_INFEASIBLE = "Pre-processing says infeasible"  # CBC's log line (not a proof)


def cbc_cutoff_margin(f: float) -> float:
    """How far below the incumbent ``f`` CBC may prune: its cutoff is the incumbent less at most
    1e-7 |f| less CbcCutoffIncrement (1e-5 by default), less another 2e-5 near an integer
    (CbcModel::setBestSolution). A bound is never put above ``f`` less this."""
    return 3e-5 + 1e-7 * abs(f)


def cbc_bound(cbc: dict[str, Any], f: float | None, rel_gap: float) -> tuple[str, float | None]:
    """``(status, valid lower bound)`` of a minimisation from CBC's log (``parse_cbc_log``) and
    the objective ``f`` of its plan. Measured on our 50-request benchmark: after stopping at
    the gap tolerance CBC printed ``Lower bound: 3.050`` for the objective 3.0498, while a plan
    of 3.04957 exists; that line is the rounded objective, not a bound, so it is not used then.
    Valid bounds: the node log's best possible (rounded down), the objective less the integer
    gap CBC exited on (rounded up), the objective less ``rel_gap`` (CBC's test, relative to the
    larger of the objective and the bound) when that line is missing; never above the objective
    less the cutoff margin."""
    res = cbc["result"].lower()
    nodes = [b for _, _, b in cbc["history"] if b is not None and abs(b) < 1e49]
    if "not trusted" in res:  # CBC's pre-processing, seen calling a feasible model infeasible
        return "error", None
    if "infeasible" in res:
        return "infeasible", None
    if f is None:
        return "no_solution", (max([cbc["bound"]] + nodes[-1:]) if cbc["bound"] is not None
                               else (nodes[-1] if nodes else None))
    cap = f - cbc_cutoff_margin(f)
    if "optimal" in res and "gap" not in res:  # the tree was exhausted
        return "optimal", cap
    if "optimal" in res:  # stopped at the gap tolerance: the printed "Lower bound" is not one
        gap = cbc.get("exit_gap")
        rel = float(rel_gap)
        known = nodes[-1:] + ([f - gap] if gap is not None
                              else [f - rel * abs(f) / max(1.0 - rel, 1e-12)])
        return "optimal", min(cap, max(known))
    known = nodes[-1:] + ([cbc["bound"]] if cbc["bound"] is not None else [])
    return "feasible", (min(cap, max(known)) if known else None)


def parse_cbc_log(text: str) -> dict[str, Any]:
    """CBC's own account: result line, objective, lower bound and a (t, incumbent, bound)
    history. PuLP maps a time-out with a solution to "Optimal"; this log does not lie. Bounds
    are printed rounded: each is lowered by half a unit of its last printed digit."""
    out: dict[str, Any] = {"result": "", "objective": None, "bound": None, "history": []}
    best_bound: float | None = None
    for line in text.splitlines():
        m = _CBC_NODE.search(line)
        if m:
            inc, bnd, t = float(m.group(1)), _low(m.group(2)), float(m.group(3))
            if abs(inc) < 1e49:  # a node within the cutoff increment of inc may be pruned
                bnd = min(bnd, inc - cbc_cutoff_margin(inc))
            best_bound = bnd
            out["history"].append((t, inc if abs(inc) < 1e49 else None, bnd))
            continue
        m = _CBC_SOL.search(line)
        if m:
            out["history"].append((float(m.group(2)), float(m.group(1)), best_bound))
            continue
        m = _CBC_MIPSTART.search(line)
        if m:
            out["history"].append((0.0, float(m.group(1)), best_bound))
            out["mipstart"] = float(m.group(1))
            continue
        m = _CBC_GAP_EXIT.search(line)
        if m:
            out["exit_gap"] = _high(m.group(1))
            continue
        if line.startswith("Result - "):
            out["result"] = line[len("Result - "):].strip()
        elif line.startswith("Problem is infeasible"):  # presolve's proof: no "Result" line
            out["result"] = "Infeasible (presolve)"
        elif line.startswith(PREPROCESS_INFEASIBLE):  # not a proof: seen wrong
            out["result"] = "pre-processing says infeasible or unbounded (not trusted)"
        elif line.startswith("Objective value:"):
            out["objective"] = float(line.split(":")[1])
        elif line.startswith("Lower bound:"):
            out["bound"] = _low(line.split(":")[1].strip())
    return out


@contextlib.contextmanager
def on_sigint(stop: Callable[[], Any], name: str) -> Iterator[threading.Event]:
    """Ctrl-C during the block calls ``stop()`` (a solver's own stop: its best plan is kept, like
    at a time limit) and sets the yielded event. A watcher thread reads the signal from Python's
    wakeup fd (the solver holds the main thread in C++, where no Python handler runs); the main
    thread's handler only records it. After a Ctrl-C ``stop()`` is called again every
    :data:`SIGINT_REPEAT_S` until the block ends: a stop that came before the solver's search
    started was lost (found by review: SCIP and CP-SAT then ran to their limit). The solver must
    leave SIGINT to Python (CP-SAT's ``catch_sigint_signal``, SCIP's ``misc/catchctrlc``).
    Outside the main thread: a no-op."""
    hit = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield hit
        return
    r, w = os.pipe()
    os.set_blocking(w, False)

    def watch() -> None:
        while True:
            ready, _, _ = select.select([r], [], [], SIGINT_REPEAT_S if hit.is_set() else None)
            if not ready:  # interrupted earlier: stop again
                stop()
                continue
            data = os.read(r, 64)
            if not data or 0 in data:  # 0: the block ended
                return
            if signal.SIGINT in data:
                hit.set()
                stop()

    old = signal.getsignal(signal.SIGINT)  # None: a handler not set from Python, left alone
    old_fd = None
    watcher = threading.Thread(target=watch, name=f"{name}-sigint", daemon=True)
    try:
        if old is not None:
            signal.signal(signal.SIGINT, lambda *_: hit.set())
        old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        watcher.start()
        yield hit
    finally:
        if old_fd is not None:
            signal.set_wakeup_fd(old_fd)
        if old is not None:
            signal.signal(signal.SIGINT, old)
        os.write(w, b"\0")
        if watcher.is_alive():
            watcher.join()
        os.close(r)
        os.close(w)
    if hit.is_set():
        log.warning("%s: interrupted (Ctrl-C): the best plan found so far is returned", name)
