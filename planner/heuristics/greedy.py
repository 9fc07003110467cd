"""Greedy least-load list scheduling (Graham 1966/1969) extended to prefill/decode pairs, and LPT.

Each request goes to the choice (a mixed cluster serving it whole, or a (prefill, decode) pair)
whose resulting finish time is smallest: the largest of the loads it touches - the prefill
cluster's compute (less the prefix blocks it already holds), the decode cluster's compute and
KV memory-time, and every link of the route carrying its KV. Ties go to the lowest index.

Two exact implementations of the same rule:
- a pool path, when every cluster is an identical mixed cluster and no prefix is cached: a heap
  of compute loads, whose top is provably the earliest finish unless KV memory binds on it (then
  a scan); this is Graham's list scheduling, (2 - 1/m) of the optimum on compute.
- the general path: the compiled kernel of :mod:`planner.heuristics._kernels` (best choice per
  datacenter pair), or its Python reference, a vectorized finish time over all choices per
  request (``fast=False``); both make the same decisions (tested).
"""

from __future__ import annotations

import heapq
import logging

import numpy as np

from planner.heuristics import _kernels
from planner.heuristics.common import Increments, LoadState, arrival_order, choice_pairs, fit_plan
from planner.instance import Instance
from planner.metrics import decode_work_seconds, kv_fit_bytes, kv_memory_time, kv_need_bytes, prefill_seconds
from planner.plan import Plan, Result
from planner.registry import register

log = logging.getLogger(__name__)


def make_result(inst: Instance, method: str, plan: Plan, info: dict | None = None,
                refused: np.ndarray | None = None) -> Result:
    """A heuristic's Result: the plan, the requests it refused (by its own decision), info.
    A request decoded where its KV does not fit is moved by :func:`fit_plan` (counted in
    ``info["kv_refits"]``; the policies that check the fit as they place never need it)."""
    pre, dec, moved = fit_plan(inst, plan.prefill, plan.decode)
    info = dict(info or {})
    if moved:
        plan = Plan(pre, dec)
        info["kv_refits"] = moved
        info.pop("model_makespan_s", None)  # the policy's own account is of the plan before
        log.info("%s: %d request(s) chosen where their KV does not fit, moved by the fit rule",
                 method, moved)
    ref = np.flatnonzero(plan.refused)
    if refused is not None:
        ref = np.union1d(np.asarray(refused, np.int64), ref)
    return Result(method, "feasible", plan, termination="heuristic", refused_by_method=ref,
                  info=info)


def is_pool(inst: Instance) -> bool:
    """Identical mixed clusters, nothing cached: the setting of list scheduling."""
    if not (inst.can_prefill.all() and inst.can_decode.all()):
        return False
    if inst.prefix_caching and inst.prefix_blocks.size:
        return False
    for a in (inst.prefill_tps, inst.decode_tps, inst.replicas, inst.kv_capacity_bytes,
              inst.step_full_s):
        if not np.all(a == a[0]):
            return False
    return True


def _pool(inst: Instance, order: np.ndarray, fast: bool = True
          ) -> tuple[np.ndarray, np.ndarray, float]:
    """List scheduling with a heap on identical mixed clusters (exact earliest finish); ``fast``
    runs the same steps compiled."""
    n, c = inst.n_requests, inst.n_clusters
    # a request whose KV fits no replica (all are alike) is refused, as on the general path
    order = order[(inst.output_tokens[order] <= 0) | (kv_need_bytes(inst)[order] <= kv_fit_bytes(inst)[0])]
    prompt = inst.prompt_tokens.astype(np.float64)
    out = inst.output_tokens.astype(np.float64)
    cap, memcap = inst.replicas[0], inst.replicas[0] * inst.kv_capacity_bytes[0]
    # the same floating-point steps as the general path, so both take the same decisions
    ap_all = prefill_seconds(inst, prompt, 0) / cap
    ad_all = decode_work_seconds(inst, out, 0) / cap
    m_all = kv_memory_time(inst, prompt, out, 0) / memcap
    if fast:
        pick, ms = _kernels.pool_kernel(ap_all[order], ad_all[order], m_all[order],
                                        inst.output_tokens[order] > 0, c)
        pre = np.full(n, -1, np.int64)
        pre[order] = pick
        return pre, np.where(inst.output_tokens > 0, pre, -1), float(ms)
    ap_l, ad_l, m_l = ap_all[order].tolist(), ad_all[order].tolist(), m_all[order].tolist()
    dec_l = (inst.output_tokens[order] > 0).tolist()  # prefill-only requests touch no KV memory
    comp = [0.0] * c
    mem = [0.0] * c
    heap = [(0.0, k) for k in range(c)]
    pick = [0] * len(order)
    hpop, hpush, hrep = heapq.heappop, heapq.heappush, heapq.heapreplace
    rng = range(c)
    for i in range(len(order)):
        ap = ap_l[i]
        ad = ad_l[i]
        m = m_l[i]
        lc, k = heap[0]
        while lc != comp[k]:  # a stale entry of a cluster placed off the top
            hpop(heap)
            lc, k = heap[0]
        f = lc + ap + ad
        if not dec_l[i] or f >= mem[k] + m:  # memory does not bind on the top: earliest finish
            comp[k] = f
            hrep(heap, (f, k))
        else:
            _, k = min((max(comp[j] + ap + ad, mem[j] + m), j) for j in rng)
            comp[k] = comp[k] + ap + ad
            hpush(heap, (comp[k], k))
        mem[k] += m
        pick[i] = k
    pre = np.full(n, -1, np.int64)
    pre[order] = pick
    dec = np.where(inst.output_tokens > 0, pre, -1)
    return pre, dec, max(max(comp), max(mem))


def place(inst: Instance, order: np.ndarray, fast: bool = True
          ) -> tuple[np.ndarray, np.ndarray, float, str]:
    """Earliest-finish placement of requests in ``order``: (prefill, decode, own makespan, path).
    ``fast``: the heap path on a pool, else the compiled kernel (same decisions as the Python
    reference ``place_reference``, tested); ``fast=False`` runs the reference."""
    if fast and is_pool(inst):
        pre, dec, ms = _pool(inst, order)
        return pre, dec, ms, "pool-heap"
    if fast:
        pr = _kernels.prepare(inst)
        if pr is not None:
            pre, dec, _, comp, mem, link, _ = _kernels.run_general(pr, order)
            ms = float(max(comp.max(initial=0.0), mem.max(initial=0.0), link.max(initial=0.0)))
            return pre, dec, ms, "kernel"
    return place_reference(inst, order)


def place_reference(inst: Instance, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, str]:
    """The Python reference of the general path: a vectorized finish time over all choices."""
    n = inst.n_requests
    state = LoadState(inst, choice_pairs(inst))
    pre = np.full(n, -1, np.int64)
    dec = np.full(n, -1, np.int64)
    out = inst.output_tokens
    inc = Increments(inst)
    for r, pre_m, dec_m, mem_m in inc.each(order):
        f = state.finish(r, pre_m, dec_m, mem_m)
        k = int(np.argmin(f))
        if not np.isfinite(f[k]):  # no choice holds its KV: refused (the kernel does the same)
            continue
        p, d = int(state.p[k]), int(state.d[k])
        state.assign(r, p, d, pre_m[p], dec_m[d], mem_m[d])
        pre[r] = p
        dec[r] = d if out[r] > 0 else -1
    return pre, dec, state.makespan(), "general"


@register("greedy", "least-load list scheduling in arrival order: each request to the "
          "(prefill, decode) pair with the earliest finish, KV transfer included (2 - 1/m)",
          options={"fast": True})
def greedy(inst: Instance, fast: bool = True) -> Result:
    """Greedy earliest finish (Graham's list scheduling). Online: arrival order, own past
    decisions only. Source: R. L. Graham, "Bounds on multiprocessing timing anomalies", SIAM J.
    Appl. Math. 17(2), 1969; on identical clusters its makespan is at most (2 - 1/m) x optimum.
    ``fast`` uses the exact heap path where it applies (same plan, tested)."""
    pre, dec, ms, path = place(inst, arrival_order(inst), fast)
    return make_result(inst, "greedy", Plan(pre, dec), {"model_makespan_s": ms, "path": path})


def job_size(inst: Instance) -> np.ndarray:
    """Processing time of each request on a reference cluster (mean rates of capable clusters):
    the LPT sort key. On identical clusters it is the exact job size. Each mean is computed once
    per distinct prompt (output) length: a row's mean does not depend on the other rows."""
    cl = np.arange(inst.n_clusters)
    pre_c, dec_c = cl[inst.can_prefill], cl[inst.can_decode]
    up, bp = np.unique(inst.prompt_tokens, return_inverse=True)
    uo, bo = np.unique(inst.output_tokens, return_inverse=True)
    p = up.astype(np.float64)[:, None]
    o = uo.astype(np.float64)[:, None]
    size_p = (prefill_seconds(inst, p, pre_c[None, :]) / inst.replicas[pre_c]).mean(axis=1)
    size_o = (decode_work_seconds(inst, o, dec_c[None, :]) / inst.replicas[dec_c]).mean(axis=1)
    size = size_p[bp.ravel()]
    size += size_o[bo.ravel()]
    return size


@register("lpt", "longest processing time first: sort by size, then earliest finish as greedy "
          "(4/3 - 1/(3m) on identical clusters; offline)", options={"fast": True}, online=False)
def lpt(inst: Instance, fast: bool = True) -> Result:
    """LPT list scheduling. Offline: it sorts the whole workload by processing time (longest
    first, ties by index), then places each by earliest finish. Source: R. L. Graham, SIAM J.
    Appl. Math. 17(2), 1969: makespan at most (4/3 - 1/(3m)) x optimum on identical machines."""
    size = job_size(inst)
    order = np.lexsort((np.arange(inst.n_requests), -size))
    pre, dec, ms, path = place(inst, order, fast)
    return make_result(inst, "lpt", Plan(pre, dec), {"model_makespan_s": ms, "path": path})
