"""``batch_milp``: the time-indexed MILP of the per-replica batch problem on PuLP (CBC): a binary
per request and start unit, the K-segment KV envelope summed per unit at most the KV capacity, the
running count at most the batch size, minimise the makespan or the sum of completions. The horizon
is the FCFS serial schedule's (a feasible start, given to CBC as warm start); time units are
coarsened so it spans at most ``max_slots`` units. Replicas with more than ``max_jobs`` requests
keep the FCFS reservation schedule."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

from planner.batch._common import (
    build_result,
    envelope,
    list_schedule_reserve,
    placement,
    replica_jobs,
    schedule_replicas,
    sgs_units,
)
from planner.batch.cpsat import unit_grid
from planner.instance import Instance
from planner.plan import Result
from planner.registry import register

OPTIONS = {"placement": "greedy", "objective": "makespan", "time_limit": 10.0, "segments": 4,
           "max_jobs": 12, "max_slots": 80, "num_workers": 0}


def solve_replica(job, objective: str, K: int, max_slots: int, time_limit: float
                  ) -> tuple[np.ndarray, str, float]:
    with warnings.catch_warnings():  # PuLP 3.3 announces its 4.0 API on every variable
        warnings.simplefilter("ignore", DeprecationWarning)
        return _solve_replica(job, objective, K, max_slots, time_limit)


def solve_all(jobs: list, objective: str, K: int, max_slots: int, time_limit: float,
              streams: int) -> dict[int, tuple[np.ndarray, str, float]]:
    """Every job's model solved, ``streams`` at a time (threads: each waits on its CBC
    process), keyed by ``id(job)``; empty with one stream (they are then solved in turn)."""
    if streams <= 1:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    with warnings.catch_warnings(), ThreadPoolExecutor(streams) as pool:
        warnings.simplefilter("ignore", DeprecationWarning)  # set once, not per thread
        futures = {id(job): pool.submit(_solve_replica, job, objective, K, max_slots, time_limit)
                   for job in jobs}
        try:
            return {key: f.result() for key, f in futures.items()}
        except BaseException:  # Ctrl-C: the replicas not started are not started
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _solve_replica(job, objective: str, K: int, max_slots: int, time_limit: float
                   ) -> tuple[np.ndarray, str, float]:
    import pulp

    u, rel_u, horizon, fcfs = unit_grid(job, max_slots)
    hint = sgs_units(job, fcfs, u, K, rel_u, horizon)
    if hint is not None:  # the serial schedule's makespan is a valid horizon
        horizon = int(max(hint[j] + -(-int(job.D[j]) // u) for j in range(len(job))))
    unit_s = u * job.step_s
    prob = pulp.LpProblem("batch", pulp.LpMinimize)
    x: dict[tuple[int, int], pulp.LpVariable] = {}
    mem: list[list] = [[] for _ in range(horizon + 1)]
    cnt: list[list] = [[] for _ in range(horizon + 1)]
    end_expr = []
    for j in range(len(job)):
        du, segs = envelope(int(job.P[j]), int(job.D[j]), u, K)
        row = []
        for s in range(int(rel_u[j]), horizon - du + 1):
            v = pulp.LpVariable(f"x_{j}_{s}", cat="Binary")
            x[j, s] = v
            row.append((s, v))
            for a, ln, d in segs:
                for tau in range(s + a, s + a + ln):
                    mem[tau].append((d, v))
            for tau in range(s, s + du):
                cnt[tau].append(v)
            if hint is not None:
                v.setInitialValue(1 if hint[j] == s else 0)
        prob += pulp.lpSum(v for _, v in row) == 1
        end_expr.append(pulp.lpSum((s + du) * v for s, v in row))
    for tau in range(horizon + 1):
        if mem[tau]:
            prob += pulp.lpSum(d * v for d, v in mem[tau]) <= job.cap_tokens
        if len(cnt[tau]) > job.bcap:
            prob += pulp.lpSum(cnt[tau]) <= job.bcap
    if objective == "makespan":
        cmax = pulp.LpVariable("cmax", lowBound=0)
        for e in end_expr:
            prob += cmax >= e
        prob += cmax
    else:
        prob += pulp.lpSum(end_expr)
    from planner.exact._backends.pulp_backend import CBC_THREADS

    # serial CBC (replicas are solved num_workers at once instead): these models are small,
    # where CBC's threaded search can stall until the time limit (see cbc_threads)
    solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=max(1.0, time_limit), threads=CBC_THREADS,
                               warmStart=hint is not None)
    prob.solve(solver)
    status_name = pulp.LpStatus[prob.status]
    start = np.zeros(len(job), np.int64)
    found = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    if found:
        for (j, s), v in x.items():
            if (v.value() or 0) > 0.5:
                start[j] = s
    elif hint is not None:
        start = hint
    else:
        return list_schedule_reserve(job, fcfs), "feasible", 0.0
    optimal = prob.sol_status == pulp.LpSolutionOptimal
    obj = float(pulp.value(prob.objective)) * unit_s if found else 0.0
    job.info.update({"units_steps": u, "segments": K, "slots": horizon, "variables": len(x),
                     "solver": status_name, "model_bound_s": obj if optimal else None})
    # the model rounds up (a restriction): its optimum is no bound of the real problem
    return start * unit_s, "optimal" if optimal else "feasible", 0.0


@register("batch_milp", "time-indexed MILP per decode replica on PuLP/CBC (KV envelope per time "
          "unit at capacity, batch size, release times); small replicas only; fills the plan's "
          "per-replica order (replayed without preemption)",
          options=OPTIONS, kind="batch", online=False)
def batch_milp(inst: Instance, placement: str = "greedy", objective: str = "makespan",
               time_limit: float = 10.0, segments: int = 4, max_jobs: int = 12,
               max_slots: int = 80, num_workers: int = 0) -> Result:
    t0 = time.perf_counter()
    if objective not in ("makespan", "mean_completion"):
        raise ValueError("objective must be makespan or mean_completion")
    plan = _placement(inst, placement, time_limit)
    jobs = replica_jobs(inst, plan)
    workers = num_workers if num_workers > 0 else (os.cpu_count() or 1)
    solvable = [j for j in jobs if 0 < len(j) <= max_jobs]
    # CBC runs serial; num_workers replicas are solved at once instead (each CBC is a process)
    streams = max(1, min(workers, len(solvable)))
    rounds = -(-max(1, len(solvable)) // streams)  # replicas in turn on the busiest stream
    per = max(1.0, (time_limit - (time.perf_counter() - t0)) / rounds)
    done = solve_all(solvable, objective, segments, max_slots, per, streams)
    starts, statuses, bounds = schedule_replicas(
        jobs, objective, max_jobs,
        lambda job: done[id(job)] if id(job) in done
        else solve_replica(job, objective, segments, max_slots, per))
    return build_result("batch_milp", inst, plan, jobs, starts, objective, statuses, bounds,
                        reserve=True, wall_note=f"time-indexed MILP (CBC), {segments} segments, "
                        f"over the {placement} placement")


def _placement(inst: Instance, method: str, time_limit: float):
    return placement(inst, method, time_limit)
