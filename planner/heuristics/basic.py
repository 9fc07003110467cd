"""The simplest live policies: round robin and seeded random."""

from __future__ import annotations

import numpy as np

from planner.heuristics.common import arrival_order
from planner.heuristics.greedy import make_result
from planner.instance import Instance
from planner.plan import Plan, Result
from planner.registry import register


def _colocate_or_cycle(inst: Instance, pre: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """Decode where the prefill ran when that cluster can decode, else the ``pick``-th decode
    cluster reachable from it."""
    c = inst.n_clusters
    dec = np.empty_like(pre)
    for p in np.unique(pre):
        rows = pre == p
        if inst.can_decode[p]:
            dec[rows] = p
            continue
        cands = np.flatnonzero(inst.can_decode & inst.reachable[p])
        dec[rows] = cands[pick[rows] % len(cands)]
    assert c > 0
    return dec


@register("round_robin", "cycle through prefill clusters in arrival order; decode on the same "
          "cluster when it can, else cycle through the decode clusters reachable from it")
def round_robin(inst: Instance) -> Result:
    """Round robin (the default of most load balancers). Online."""
    n = inst.n_requests
    order = arrival_order(inst)
    pc = np.flatnonzero(inst.can_prefill & inst.reachable[:, inst.can_decode].any(axis=1))
    k = np.empty(n, np.int64)
    k[order] = np.arange(n)
    pre = pc[k % len(pc)]
    dec = _colocate_or_cycle(inst, pre, k // len(pc))
    return make_result(inst, "round_robin", Plan(pre, dec))


@register("random", "uniformly random prefill cluster and reachable decode cluster (seeded)",
          options={"seed": 0})
def random_policy(inst: Instance, seed: int = 0) -> Result:
    """Uniform random placement, a baseline. Online; ``seed`` makes it repeatable."""
    rng = np.random.default_rng(seed)
    n = inst.n_requests
    pc = np.flatnonzero(inst.can_prefill & inst.reachable[:, inst.can_decode].any(axis=1))
    pre = pc[rng.integers(0, len(pc), size=n)]
    dec = np.empty(n, np.int64)
    draw = rng.random(n)
    for p in np.unique(pre):
        rows = pre == p
        cands = np.flatnonzero(inst.can_decode & inst.reachable[p])
        dec[rows] = cands[(draw[rows] * len(cands)).astype(np.int64)]
    return make_result(inst, "random", Plan(pre, dec))
