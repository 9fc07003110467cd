"""Greedy least-load list scheduling (Graham 1966), extended to prefill/decode pairs.

Online: requests are taken in arrival order, each placed on the (prefill, decode) pair whose
resulting finish time - the largest of the loads it touches: the prefill cluster's compute, the
decode cluster's compute and KV memory-time, and every link of the route carrying its KV - is
smallest; ties go to the pair with the least combined compute load. On identical clusters with
one role this is list scheduling, whose makespan is at most (2 - 1/m) times the optimum.
"""

from __future__ import annotations

import numpy as np

from planner.heuristics.common import arrival_order
from planner.instance import Instance
from planner.metrics import (
    compute_capacity,
    decode_work_seconds,
    kv_memory_time,
    memory_capacity,
    prefill_seconds,
)
from planner.plan import Plan
from planner.registry import register


class PairLoads:
    """Incremental loads (seconds) of clusters, KV memory and links, and the finish time each
    valid (prefill, decode) pair would reach with one more request."""

    def __init__(self, inst: Instance):
        self.inst = inst
        valid = inst.valid_pairs
        self.p, self.d = np.nonzero(valid)
        self.same = self.p == self.d
        c = inst.n_clusters
        self.links = inst.pair_links[self.p * c + self.d]  # (K, L)
        self.has_links = inst.n_links > 0 and bool(self.links.any())
        self.comp = np.zeros(c)
        self.mem = np.zeros(c)
        self.link = np.zeros(inst.n_links)
        cap = compute_capacity(inst)
        one = np.ones(c)
        self.pre_rate = prefill_seconds(inst, one, np.arange(c)) / cap  # load s per token
        self.dec_rate = decode_work_seconds(inst, one, np.arange(c)) / cap
        # memory load per unit of kv*(P+D/2)*D: step / (replicas * capacity)
        self.mem_rate = kv_memory_time(inst, 0.0, 2.0, np.arange(c)) / (
            inst.kv_bytes_per_token * 2.0 * memory_capacity(inst))
        self.inv_bw = 1.0 / inst.bandwidth_Bps if inst.n_links else np.zeros(0)

    def finish(self, prompt: float, output: float, kv_bytes: float) -> np.ndarray:
        p, d = self.p, self.d
        add_pre = prompt * self.pre_rate
        add_dec = output * self.dec_rate
        fp = self.comp[p] + add_pre[p]
        fd = self.comp[d] + add_dec[d]
        fp = np.where(self.same, fp + add_dec[d], fp)
        f = np.maximum(fp, fd)
        if output > 0:
            mem_units = (prompt + output / 2.0) * output
            f = np.maximum(f, self.mem[d] + mem_units * self.mem_rate[d])
            if self.has_links:
                after = self.link + kv_bytes * self.inv_bw
                f = np.maximum(f, (self.links * after).max(axis=1))
        return f

    def add(self, k: int, prompt: float, output: float, kv_bytes: float) -> None:
        p, d = self.p[k], self.d[k]
        self.comp[p] += prompt * self.pre_rate[p]
        if output > 0:
            self.comp[d] += output * self.dec_rate[d]
            self.mem[d] += (prompt + output / 2.0) * output * self.mem_rate[d]
            if self.has_links:
                self.link += self.links[k] * kv_bytes * self.inv_bw


@register("greedy", "least-load list scheduling in arrival order: each request to the "
          "(prefill, decode) pair with the earliest finish, KV transfer included (2 - 1/m)")
def greedy(inst: Instance) -> Plan:
    """Online greedy (Graham's list scheduling). Source: R. L. Graham, "Bounds on multiprocessing
    timing anomalies", SIAM J. Appl. Math. 17(2), 1969."""
    n = inst.n_requests
    state = PairLoads(inst)
    pre = np.full(n, -1, np.int64)
    dec = np.full(n, -1, np.int64)
    prompt = inst.prompt_tokens.astype(np.float64)
    output = inst.output_tokens.astype(np.float64)
    for r in arrival_order(inst):
        f = state.finish(prompt[r], output[r], inst.kv_bytes[r])
        best = f.min()
        ties = np.flatnonzero(f <= best + 1e-12 * max(1.0, best))
        if ties.size > 1:
            tie_load = state.comp[state.p[ties]] + state.comp[state.d[ties]]
            k = int(ties[np.argmin(tie_load)])
        else:
            k = int(ties[0])
        state.add(k, prompt[r], output[r], inst.kv_bytes[r])
        pre[r] = state.p[k]
        dec[r] = state.d[k] if output[r] > 0 else -1
    return Plan(pre, dec)
