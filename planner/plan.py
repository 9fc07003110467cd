"""Plans (who is prefilled where, decoded where, refused), results of methods, statuses, and the
plan JSON of the public contract."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planner.scenario.errors import PlanError, Problem

STATUSES = ("optimal", "feasible", "infeasible", "timeout_no_solution", "error")
REFUSED = -1


@dataclass(eq=False)
class Plan:
    """Per request: its prefill cluster and decode cluster (indices into the Instance's
    clusters), ``-1`` for both when refused. A prefill-only request (``output_tokens == 0``) may
    have no decode cluster. ``order`` optionally gives per-cluster request order (batching)."""

    prefill: np.ndarray
    decode: np.ndarray
    order: dict[str, list[int]] | None = None

    def __post_init__(self) -> None:
        self.prefill = np.asarray(self.prefill, dtype=np.int64)
        self.decode = np.asarray(self.decode, dtype=np.int64)
        if self.prefill.shape != self.decode.shape:
            raise ValueError("prefill and decode must have the same length")

    @classmethod
    def refuse_all(cls, n: int) -> Plan:
        return cls(np.full(n, REFUSED, np.int64), np.full(n, REFUSED, np.int64))

    @property
    def refused(self) -> np.ndarray:
        return self.prefill < 0

    def __len__(self) -> int:
        return int(self.prefill.shape[0])

    def copy(self) -> Plan:
        return Plan(self.prefill.copy(), self.decode.copy(),
                    None if self.order is None else dict(self.order))


@dataclass(eq=False)
class Result:
    """What a method returns: a plan and the honest account of how good it is.

    ``objective`` is the method's claim (checked against the evaluator by the tests), ``bound``
    a proven bound on the optimum (None for heuristics), ``gap`` the relative gap between them,
    ``termination`` the solver's own reason in words."""

    method: str
    status: str
    plan: Plan | None
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    wall_s: float = 0.0
    termination: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[float, float | None, float | None]] = field(default_factory=list)
    refused_by_method: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")


def relative_gap(objective: float | None, bound: float | None, sense: str = "min") -> float | None:
    """``|objective - bound| / |objective|``; 0 when they meet, None when unknown, infinite
    when the objective is 0 and the bound is not (a plan serving nothing against a bound of
    194 served: no relative figure exists; JSON writes null, the CLI ``inf``)."""
    if objective is None or bound is None or not math.isfinite(objective) or not math.isfinite(bound):
        return None
    diff = objective - bound if sense == "min" else bound - objective
    diff = max(diff, 0.0)
    if diff <= 1e-9 * max(1.0, abs(objective)):
        return 0.0
    if objective == 0.0:
        return math.inf
    return diff / abs(objective)


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def plan_to_dict(instance: Any, result: Result | None = None, plan: Plan | None = None) -> dict:
    """The plan JSON of the contract: method, status, objective, bound, gap, wall_s, requests."""
    plan = plan if plan is not None else (result.plan if result else None)
    if plan is None:
        raise ValueError("no plan to write")
    names = np.array(list(instance.cluster_names) + [None], dtype=object)
    pre = names[plan.prefill]  # -1 picks the trailing None
    dec = names[plan.decode]
    reqs = [{"id": i, "prefill": p, "decode": d}
            for i, p, d in zip(instance.ids.tolist(), pre.tolist(), dec.tolist(), strict=True)]
    out: dict[str, Any] = {
        "scenario": instance.scenario.name,
        "method": result.method if result else "unknown",
        "status": result.status if result else "feasible",
        "objective_name": instance.objective,
        "objective": _num(result.objective) if result else None,
        "bound": _num(result.bound) if result else None,
        "gap": _num(result.gap) if result else None,
        "wall_s": float(result.wall_s) if result else 0.0,
        "termination": result.termination if result else "",
        "requests": reqs,
    }
    if plan.order is not None:
        out["order"] = plan.order
    return out


def plan_from_dict(data: Any, instance: Any, file: str = "<plan>") -> tuple[Plan, dict]:
    """Read plan JSON against an Instance; unknown ids or clusters are a PlanError."""
    if not isinstance(data, dict) or not isinstance(data.get("requests"), list):
        raise PlanError(file, [Problem("requests", "a plan needs a list of requests",
                                       type(data).__name__)])
    index = {n: i for i, n in enumerate(instance.cluster_names)}
    rid = {r: i for i, r in enumerate(instance.ids.tolist())}
    n = instance.n_requests
    pre = np.full(n, -2, np.int64)
    dec = np.full(n, -1, np.int64)
    problems: list[Problem] = []
    for k, row in enumerate(data["requests"]):
        if not isinstance(row, dict) or "id" not in row:
            problems.append(Problem(f"requests[{k}]", "needs id, prefill, decode", row))
            continue
        i = rid.get(str(row["id"]))
        if i is None:
            problems.append(Problem(f"requests[{k}].id", "no such request in the scenario",
                                    row["id"]))
            continue
        if pre[i] != -2:
            problems.append(Problem(f"requests[{k}].id", "request given twice in the plan",
                                    row["id"]))
            continue
        for key, arr in (("prefill", pre), ("decode", dec)):
            name = row.get(key)
            if name is None:
                arr[i] = -1
            elif not isinstance(name, str):
                problems.append(Problem(f"requests[{k}].{key}", "a cluster name or null", name))
            elif name in index:
                arr[i] = index[name]
            else:
                problems.append(Problem(f"requests[{k}].{key}", "unknown cluster", name))
        if len(problems) >= 20:
            break
    missing = np.flatnonzero(pre == -2)
    if missing.size and not problems:
        problems.append(Problem("requests", f"{missing.size} requests of the scenario have no "
                                "entry in the plan", instance.ids[missing[0]]))
    if problems:
        raise PlanError(file, problems)
    order = data.get("order")
    if order is not None:
        problems += _order_problems(order, rid, index)
    if problems:
        raise PlanError(file, problems)
    meta = {k: v for k, v in data.items() if k != "requests"}
    return Plan(pre, dec, order=order), meta


def _order_problems(order: Any, rid: dict[str, int], index: dict[str, int]) -> list[Problem]:
    """A plan's order: ``{"CLUSTER#k" or "CLUSTER": [request index, ...], "_admission": [...]}``
    (what the batch methods write and the replay reads); anything else is a problem."""
    if not isinstance(order, dict):
        return [Problem("order", "a mapping of replica to request indices", order)]
    out = []
    for key, seq in order.items():
        if str(key).startswith("_"):
            continue
        cluster, hash_, k = str(key).rpartition("#")
        if not (key in index or (hash_ and cluster in index and k.isdigit())):
            out.append(Problem(f"order.{key}", "not a cluster or replica (CLUSTER#k)", key))
        elif not isinstance(seq, list) or not all(
                isinstance(r, int) and not isinstance(r, bool) and 0 <= r < len(rid) for r in seq):
            out.append(Problem(f"order.{key}", "a list of request indices", seq))
    return out


def read_plan_file(path: str | Path, instance: Any) -> tuple[Plan, dict]:
    """Read and check a plan JSON file against an Instance; every problem is a PlanError naming
    the file and the field."""
    from planner.metrics import check_plan

    file = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(file, [Problem("<file>", "file not found", file)]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(file, [Problem("<file>", f"not valid JSON: {exc}", Path(path).name)]) from None
    plan, meta = plan_from_dict(data, instance, file=file)
    check_plan(instance, plan, file=file)
    return plan, meta


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON so that a reader sees the old file or the whole new one, never a part (see
    :func:`planner.report.io.write_text_atomic`: symlinks written through, modes kept, device
    files written in place)."""
    from planner.report.io import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=1) + "\n")
