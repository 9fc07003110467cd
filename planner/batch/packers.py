"""Greedy packers, the baselines: order each decode replica's requests FCFS, SJF or MLQ and admit
them into the running batch while memory allows, as vLLM-style schedulers do. The plan they fill
is replayed with greedy admission (so it can preempt when KV grows); their reported objective is
the strict-order list schedule in which each request reserves its final KV (prompt + output),
and their bound the replica lower bound of :mod:`planner.batch._common`."""

from __future__ import annotations

import numpy as np

from planner.batch._common import (
    ReplicaJobs,
    build_result,
    completion_bound,
    list_schedule_reserve,
    placement,
    replica_jobs,
)
from planner.instance import Instance
from planner.plan import Result
from planner.registry import register

OPTIONS = {"placement": "greedy", "objective": "makespan", "mlq_quantum": 256}


def policy_order(job: ReplicaJobs, policy: str, quantum: int = 256) -> np.ndarray:
    """Job positions in the order the policy serves them (ties by release, then index)."""
    idx = np.arange(len(job))
    if policy == "fcfs":
        return np.lexsort((idx, job.release_s))
    if policy == "sjf":
        return np.lexsort((idx, job.release_s, job.D))
    if policy == "mlq":  # skip-join: first level by prompt length
        level = np.floor(np.log2(1.0 + job.P / quantum))
        return np.lexsort((idx, job.release_s, level))
    raise ValueError(f"unknown packing policy {policy!r}")


def pack(inst: Instance, policy: str, placement_method: str = "greedy",
         objective: str = "makespan", mlq_quantum: int = 256,
         time_limit: float | None = None) -> Result:
    if objective not in ("makespan", "mean_completion"):
        raise ValueError("objective must be makespan or mean_completion")
    plan = placement(inst, placement_method, time_limit)
    jobs = replica_jobs(inst, plan)
    starts, bounds, ties = [], [], []
    for job in jobs:
        order = policy_order(job, policy, mlq_quantum)
        starts.append(list_schedule_reserve(job, order))
        rank = np.empty(len(job), np.int64)
        rank[order] = np.arange(len(job))
        ties.append(rank)
        bounds.append(job.lower_bound_s() if objective == "makespan" else completion_bound(job))
    return build_result(f"batch_{policy}", inst, plan, jobs, starts, objective,
                        ["feasible"] * len(jobs), bounds, reserve=False,
                        wall_note=f"{policy} packer over the {placement_method} placement",
                        ties=ties)


def _register(policy: str, text: str) -> None:
    @register(f"batch_{policy}", text, options=OPTIONS, kind="batch")
    def method(inst: Instance, placement: str = "greedy", objective: str = "makespan",
               mlq_quantum: int = 256, time_limit: float | None = None) -> Result:
        return pack(inst, policy, placement, objective, mlq_quantum, time_limit)

    method.__name__ = f"batch_{policy}"


_register("fcfs", "greedy packer: each decode replica admits its requests first come first served "
          "while KV memory allows (vLLM); fills the plan's per-replica order")
_register("sjf", "greedy packer: shortest predicted decode first while KV memory allows; fills the "
          "plan's per-replica order")
_register("mlq", "greedy packer: skip-join multi-level queue by prompt length (FastServe) while "
          "KV memory allows; fills the plan's per-replica order")
