"""Plans (who is prefilled where, decoded where, refused), results of methods, statuses, and the
plan JSON of the public contract."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planner.scenario.errors import PlanError, Problem, reason

MAX_PROBLEMS = 20  # problems listed for one plan; the rest are counted, not shown
ORDER_SETTINGS = ("_admission",)  # the ``_`` keys of a plan's order
STATUSES = ("optimal", "feasible", "infeasible", "timeout_no_solution", "error")
REFUSED = -1


# statuses whose plan is a solution (starred and ranked in reports, exit 0 from the CLI)
SOLVED = ("optimal", "feasible")


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

    @property
    def objective_name(self) -> str | None:
        """What ``objective``, ``bound`` and ``gap`` measure when it is not the scenario's
        objective: a batch method's are its batch problem's (``batch_makespan``,
        ``batch_mean_completion``); None otherwise."""
        batch = self.info.get("batch_objective")
        return f"batch_{batch}" if batch else None

    def scenario_claims(self) -> tuple[str, float | None, float | None]:
        """(status, bound, gap) as claims about the scenario's objective, for tables that put
        methods side by side with one best bound. A batch method's bound and gap are its batch
        problem's and say nothing of the scenario's objective (its placement is a policy's):
        none, and ``optimal`` there is only ``feasible`` here."""
        if self.objective_name is None:
            return self.status, self.bound, self.gap
        return ("feasible" if self.status == "optimal" else self.status), None, None

    def own_claim(self) -> str:
        """The termination, followed by a batch method's own figures in words (for tables under
        the scenario's objective, with :meth:`scenario_claims`)."""
        if self.objective_name is None:
            return self.termination
        mine = (f"{self.objective_name} {fmt(self.objective)} s, bound {fmt(self.bound)} s, "
                f"gap {fmt(self.gap)}, {self.status}")
        return "; ".join(t for t in (self.termination, mine) if t)


def fmt(x: float | None) -> str:
    """A figure for a line of text: 6 significant digits, "-" for none (or NaN)."""
    return "-" if x is None or x != x else f"{float(x):.6g}"


def relative_gap(objective: float | None, bound: float | None, sense: str = "min") -> float | None:
    """``|objective - bound| / |objective|``; 0 when they meet (to 1e-9 of the objective: float
    noise), None when unknown, infinite when the objective is 0 and the bound is not (a plan
    serving nothing against a bound of 194 served: no relative figure exists; JSON writes null,
    the CLI ``inf``). The tolerance is relative only: an absolute 1e-9 made a plan of 3e-10 $
    "optimal" against a bound of 1e-10 $."""
    if objective is None or bound is None or not math.isfinite(objective) or not math.isfinite(bound):
        return None
    diff = objective - bound if sense == "min" else bound - objective
    diff = max(diff, 0.0)
    if diff <= 1e-9 * abs(objective):
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
        "objective_name": (result.objective_name if result else None) or instance.objective,
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
    rows = data["requests"]
    for k, row in enumerate(rows):
        if len(problems) >= MAX_PROBLEMS:  # checked on every path, ``continue`` ones included
            problems.append(Problem("requests", f"more problems not shown (stopped at row {k} of "
                                    f"{len(rows)})"))
            break
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
            if key not in row:  # only an explicit null refuses: a forgotten key is no decision
                problems.append(Problem(f"requests[{k}].{key}", f"request {row['id']}: needs a "
                                        "cluster name, or null for none"))
                continue
            name = row[key]
            if name is None:
                arr[i] = -1
            elif not isinstance(name, str):
                problems.append(Problem(f"requests[{k}].{key}", "a cluster name or null", name))
            elif name in index:
                arr[i] = index[name]
            else:
                problems.append(Problem(f"requests[{k}].{key}", "unknown cluster", name))
    missing = np.flatnonzero(pre == -2)
    if missing.size and not problems:
        problems.append(Problem("requests", f"{missing.size} requests of the scenario have no "
                                "entry in the plan", instance.ids[missing[0]]))
    if problems:
        raise PlanError(file, _name_first(data, instance, problems))
    order = data.get("order")
    if order is not None:
        problems += order_problems(order, instance, dec)
    if problems:
        raise PlanError(file, _name_first(data, instance, problems))
    meta = {k: v for k, v in data.items() if k != "requests"}
    return Plan(pre, dec, order=order), meta


def _name_first(data: dict, instance: Any, problems: list[Problem]) -> list[Problem]:
    """A plan made for another scenario (its ``scenario`` names a different one) says so first,
    with at most a few of the problems that follow from it."""
    name = data.get("scenario")
    if not isinstance(name, str) or name == instance.scenario.name:
        return problems
    return [Problem("scenario", f"the plan was made for scenario {name!r}, not "
                    f"{instance.scenario.name!r}", name), *problems[:3]]


def order_problems(order: Any, instance: Any, decode: np.ndarray) -> list[Problem]:
    """A plan's order, checked the way the replay reads it (:mod:`planner.simulate.engine`):
    ``{"CLUSTER#k": [request index, ...], "CLUSTER": [...], "_admission": ["reserve"]}``, a
    replica key pinning its requests to replica k of a decode cluster and ranking them, a cluster
    key ranking requests on any of its replicas. Problems: not a mapping, a key that names no
    decoding cluster or replica, an unknown ``_`` setting, a list that is not of distinct request
    indices, a request on two replicas of its cluster. A request listed under a cluster it does not
    decode on is ignored by the replay (which logs it), not an error. At most
    :data:`MAX_PROBLEMS` problems."""
    if not isinstance(order, dict):
        return [Problem("order", "a mapping of replica to request indices", order)]
    names = list(instance.cluster_names)
    index = {nm: i for i, nm in enumerate(names)}
    n = instance.n_requests
    out: list[Problem] = []
    pinned: dict[int, str] = {}
    for key, seq in order.items():
        if len(out) >= MAX_PROBLEMS:
            out.append(Problem("order", "more problems not shown"))
            break
        if not isinstance(key, str):
            out.append(Problem(f"order.{key}", "keys are cluster or replica names", key))
            continue
        if key.startswith("_"):
            if key not in ORDER_SETTINGS:
                out.append(Problem(f"order.{key}", "unknown order setting (known: "
                                   f"{', '.join(ORDER_SETTINGS)})", key))
            elif not isinstance(seq, list) or not all(isinstance(x, str) for x in seq):
                out.append(Problem(f"order.{key}", "a list of words, e.g. [\"reserve\"]", seq))
            continue
        cluster, hash_, k = key.rpartition("#")
        if key in index:
            c, replica = index[key], None
        elif hash_ and cluster in index and k.isdigit() and k == str(int(k)):
            c, replica = index[cluster], int(k)
        else:
            out.append(Problem(f"order.{key}", "not a cluster or replica (CLUSTER#k)", key))
            continue
        if not instance.can_decode[c]:
            out.append(Problem(f"order.{key}", f"cluster {names[c]} does not decode: an order "
                               "ranks decode admissions", key))
            continue
        if replica is not None and replica >= int(instance.replicas[c]):
            nrep = int(instance.replicas[c])
            out.append(Problem(f"order.{key}", f"cluster {names[c]} has {nrep} "
                               f"replica{'s' if nrep > 1 else ''} (CLUSTER#0 is the first)", key))
            continue
        if not isinstance(seq, list) or not all(
                isinstance(r, int) and not isinstance(r, bool) and 0 <= r < n for r in seq):
            out.append(Problem(f"order.{key}", "a list of request indices", seq))
            continue
        if len(set(seq)) != len(seq):
            dup = next(r for i, r in enumerate(seq) if r in seq[:i])
            out.append(Problem(f"order.{key}", f"request {instance.ids[dup]} listed twice", dup))
            continue
        if replica is not None:
            again = [r for r in seq if r in pinned and int(decode[r]) == c]
            if again:
                out.append(Problem(f"order.{key}", f"request {instance.ids[again[0]]} is also "
                                   f"ordered on {pinned[again[0]]}", again[0]))
                continue
            pinned.update({r: key for r in seq if int(decode[r]) == c})
    return out


def read_plan_file(path: str | Path, instance: Any) -> tuple[Plan, dict]:
    """Read and check a plan JSON file against an Instance; every problem is a PlanError naming
    the file and the field."""
    from planner.metrics import check_plan
    from planner.scenario.load import one_key_each

    file = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=one_key_each)
    except FileNotFoundError:
        raise PlanError(file, [Problem("<file>", "file not found", file)]) from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: JSON's errors, a key given twice (json kept the last silently: a plan with
        # two `requests` lists was read as the second), an integer of over 4,300 digits;
        # RecursionError: nesting thousands deep (found by review: "unexpected")
        raise PlanError(file, [Problem("<file>", f"not valid JSON: {reason(exc)}",
                                       Path(path).name)]) from None
    plan, meta = plan_from_dict(data, instance, file=file)
    check_plan(instance, plan, file=file)
    return plan, meta


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON so that a reader sees the old file or the whole new one, never a part (see
    :func:`planner.report.io.write_text_atomic`: symlinks written through, modes kept, device
    files written in place)."""
    from planner.report.io import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=1) + "\n")
