"""The neutral form every backend translates: variables and tagged linear rows."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.exact._model import Objective, Terms


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
    ``-sum s + eps T``; cost as given. Returns (terms, constant)."""
    if obj.kind == "makespan":
        return [(T, 1.0)], 0.0
    if obj.kind == "served":
        return [(s, -1.0) for s in obj.s_terms] + [(T, obj.eps)], 0.0
    return list(obj.cost_terms), 0.0


def to_problem_units(obj: Objective, f: float | None, bound: bool) -> float | None:
    """A float solver's objective value or bound in problem units. ``served``: f = -S + eps T
    with 0 <= eps T <= 1/2, so a bound B gives S <= floor(1/2 - B)."""
    if f is None or not math.isfinite(f):
        return None
    if obj.kind == "served":
        if bound:
            return float(math.floor(0.5 - f + 1e-6))
        return float(round(-f))
    return float(f)


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


def _low(txt: str) -> float:
    """A lower bound CBC printed rounded (``%g``, 6 significant digits, trailing zeros dropped,
    e.g. ``64.934``): minus half a unit of its last significant digit, so that the rounding can
    only weaken it."""
    x = float(txt)
    if x == 0 or not math.isfinite(x):
        return x
    digits = txt.lower().split("e")[0].replace("-", "").replace("+", "").replace(".", "")
    sig = max(6, len(digits.lstrip("0")))
    return x - 0.5 * 10.0 ** (math.floor(math.log10(abs(x))) - (sig - 1))


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
        if line.startswith("Result - "):
            out["result"] = line[len("Result - "):].strip()
        elif line.startswith("Objective value:"):
            out["objective"] = float(line.split(":")[1])
        elif line.startswith("Lower bound:"):
            out["bound"] = _low(line.split(":")[1].strip())
    return out
