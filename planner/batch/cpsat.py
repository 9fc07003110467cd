"""``batch_cpsat``: per decode replica, requests as intervals on CP-SAT whose KV demand grows over
their decode (cut into K segments, each bounding the true demand from above, see
:mod:`planner.batch._common`), a cumulative constraint at the replica's KV capacity, another at its
batch size, release times; minimise the replica's makespan or the sum of completions. Warm-started
from a serial schedule in FCFS order. Replicas with more than ``max_jobs`` requests keep the FCFS
reservation schedule (reported, status feasible). The plan asks the replay for ``reserve``
admission, which follows the order and never preempts."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import numpy as np

from planner.batch._common import (
    ReplicaJobs,
    build_result,
    envelope,
    floor_envelope,
    list_schedule_reserve,
    placement,
    replica_jobs,
    schedule_replicas,
    sgs_units,
)
from planner.batch.packers import policy_order
from planner.instance import Instance
from planner.plan import Result
from planner.registry import register

OPTIONS = {"placement": "greedy", "objective": "makespan", "time_limit": 10.0, "segments": 4,
           "max_jobs": 60, "max_units": 3000, "num_workers": 0, "seed": 0}


def unit_grid(job: ReplicaJobs, max_units: int) -> tuple[int, np.ndarray, int, np.ndarray]:
    """(u, release in units, horizon in units, FCFS order): u decode steps per unit so that the
    FCFS reservation schedule fits in ``max_units`` units."""
    fcfs = policy_order(job, "fcfs")
    st = list_schedule_reserve(job, fcfs)
    h_steps = float((st + job.D * job.step_s).max()) / job.step_s
    u = max(1, math.ceil(h_steps / max_units))
    rel_u = np.ceil(job.release_s / (job.step_s * u) - 1e-9).astype(np.int64)
    horizon = int(rel_u.max() + sum(-(-int(d) // u) for d in job.D) + 1)
    return u, rel_u, horizon, fcfs


def _replica_model(job: ReplicaJobs, objective: str, rel: np.ndarray, horizon: int,
                   shape: Callable[[int, int], tuple[int, list[tuple[int, int, int]]]],
                   time_limit: float, workers: int, seed: int, hint: np.ndarray | None = None):
    """Solve one replica's CP-SAT model: per job a start in ``[rel, horizon - duration]``, an
    interval of its duration in the batch-size cumulative and its KV segments in the capacity
    cumulative, both from ``shape(P, D) -> (units, [(offset, length, tokens)])``; minimise the
    last end or the sum of ends. Returns (solver, status code, start variables)."""
    from ortools.sat.python import cp_model

    m = cp_model.CpModel()
    starts, ends, segs, dem, mains = [], [], [], [], []
    for j in range(len(job)):
        du, pieces = shape(int(job.P[j]), int(job.D[j]))
        s = m.NewIntVar(int(rel[j]), horizon - du, f"s{j}")
        starts.append(s)
        ends.append(s + du)
        if du:
            mains.append(m.NewFixedSizeIntervalVar(s, du, f"i{j}"))
        for k, (a, ln, d) in enumerate(pieces):
            segs.append(m.NewFixedSizeIntervalVar(s + a, ln, f"i{j}_{k}"))
            dem.append(d)
        if hint is not None:
            m.AddHint(s, int(hint[j]))
    if segs:
        m.AddCumulative(segs, dem, job.cap_tokens)
    if mains:
        m.AddCumulative(mains, [1] * len(mains), job.bcap)
    if objective == "makespan":
        cmax = m.NewIntVar(0, horizon, "cmax")
        m.AddMaxEquality(cmax, ends)
        m.Minimize(cmax)
    else:
        m.Minimize(sum(ends))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.1, time_limit)
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    return solver, solver.Solve(m), starts


def relaxed_bound(job: ReplicaJobs, objective: str, K: int, u: int, time_limit: float,
                  workers: int, seed: int) -> float:
    """A lower bound of the replica's real problem (seconds; summed for mean_completion): CP-SAT
    on the relaxation that rounds the other way. A real schedule with start s (seconds) maps to
    unit ``floor(s / unit)``, its job lasting ``floor(D / u)`` units: the mapped job starts no
    earlier than ``floor(release / unit)`` and ends no later than the real end. Whenever two
    mapped jobs share unit k, both real jobs run just before the end of unit k, where each
    holds at least ``P + a u + 1`` tokens (``a`` its offset in units) and counts in the batch:
    so the mapped schedule fits the relaxed cumulatives, and the relaxation's bound (its best
    objective bound, solved or not) times the unit bounds every real schedule. The token count
    assumes decode steps on the grid of ``step_s`` from time 0: a job starting mid-step can hold
    one token fewer at the end of unit k than ``P + a u + 1`` (noted by review; the replay
    checks in tests/batch/test_batch.py have not met such a case)."""
    from ortools.sat.python import cp_model

    unit_s = u * job.step_s
    rel = np.floor(job.release_s / unit_s).astype(np.int64)  # no tolerance: never rounds up
    # an optimal real schedule never idles after the last release, so it ends by max release +
    # the sum of decodes: in units at most this (ceil, so that the domains never cut it off)
    horizon = int(rel.max() + sum(-(-int(d) // u) for d in job.D) + 1)
    solver, code, _ = _replica_model(job, objective, rel, horizon,
                                     lambda P, D: floor_envelope(P, D, u, K), time_limit, workers,
                                     seed)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.UNKNOWN):
        return 0.0
    try:
        b = float(solver.BestObjectiveBound())
    except Exception:  # noqa: BLE001
        return 0.0
    job.info["relaxation"] = solver.StatusName(code)
    return max(0.0, b) * unit_s if math.isfinite(b) else 0.0


def solve_replica(job: ReplicaJobs, objective: str, K: int, max_units: int, time_limit: float,
                  workers: int, seed: int) -> tuple[np.ndarray, str, float]:
    """(start seconds, status of the discretised model, a bound of the real problem in seconds
    (makespan) or seconds summed (mean_completion), from :func:`relaxed_bound`)."""
    from ortools.sat.python import cp_model

    u, rel_u, horizon, fcfs = unit_grid(job, max_units)
    hint = sgs_units(job, fcfs, u, K, rel_u, horizon)
    unit_s = u * job.step_s
    solver, code, starts = _replica_model(job, objective, rel_u, horizon,
                                          lambda P, D: envelope(P, D, u, K), 0.7 * time_limit,
                                          workers, seed, hint)
    if code in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        start_u = np.array([solver.Value(s) for s in starts], np.int64)
        status = "optimal" if code == cp_model.OPTIMAL else "feasible"
        job.info["model_bound_s"] = solver.BestObjectiveBound() * unit_s
    elif hint is not None:
        start_u, status = hint, "feasible"
    else:
        return list_schedule_reserve(job, fcfs), "feasible", 0.0
    job.info.update({"units_steps": u, "segments": K, "status": status,
                     "solver": solver.StatusName(code)})
    bound = relaxed_bound(job, objective, K, u, 0.3 * time_limit, workers, seed)
    return start_u * unit_s, status, bound


@register("batch_cpsat", "CP-SAT per decode replica: intervals with stepwise upper-bounding KV "
          "growth, cumulative at KV capacity and batch size, release times; min makespan or mean "
          "completion; fills the plan's per-replica order (replayed without preemption)",
          options=OPTIONS, kind="batch", online=False)
def batch_cpsat(inst: Instance, placement: str = "greedy", objective: str = "makespan",
                time_limit: float = 10.0, segments: int = 4, max_jobs: int = 60,
                max_units: int = 3000, num_workers: int = 0, seed: int = 0) -> Result:
    t0 = time.perf_counter()
    if objective not in ("makespan", "mean_completion"):
        raise ValueError("objective must be makespan or mean_completion")
    plan = _placement(inst, placement, time_limit)
    jobs = replica_jobs(inst, plan)
    workers = num_workers if num_workers > 0 else (os.cpu_count() or 1)
    solvable = [j for j in jobs if 0 < len(j) <= max_jobs]
    budget = max(0.0, time_limit - (time.perf_counter() - t0))
    per = max(0.2, budget / max(1, len(solvable)))
    starts, statuses, bounds = schedule_replicas(
        jobs, objective, max_jobs,
        lambda job: solve_replica(job, objective, segments, max_units, per, workers, seed),
        fallback_info={"status": "feasible"})
    return build_result("batch_cpsat", inst, plan, jobs, starts, objective, statuses, bounds,
                        reserve=True, wall_note=f"CP-SAT, {segments} segments, over the "
                        f"{placement} placement")


def _placement(inst: Instance, method: str, time_limit: float):
    return placement(inst, method, time_limit)
