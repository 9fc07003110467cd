"""DeepServe's ``dist_sched`` cascade: the heatmap's top candidates for the request's shape, then
- if their loads are balanced, the candidate whose prefill cluster holds the longest prefix
  match (ties by load, then heatmap rank) - the ``locality_aware`` branch;
- else the least-loaded candidate (ties by heatmap rank) - the ``load_aware`` branch, which the
  paper's listing leaves commented out (``select_tes_least_load``) and which is taken here.

The balance test is SGLang's router rule: loads are imbalanced when ``max - min >
balance_abs`` and ``max > balance_rel * min`` (SGLang defaults 32 and 1.0001). A load is the
number of requests in flight on the candidate's clusters (prefill, plus decode when apart), from
a virtual FIFO clock per cluster fed by the arrival times (``load="requests"``, SGLang's unit),
or the seconds of work assigned so far (``load="seconds"``).

Candidates: the heatmap cell's choices whose cost is within ``tolerance`` (relative, default 5%)
of the cell's best, at most ``candidates`` of them (best first): on a fleet of identical clusters
all tied clusters are candidates, not only the first few. Among candidates of equal load the
choice rotates: the first in cyclic rank order from position ``i mod k`` (i the request's
arrival position, k the cell's candidate count), so ties spread over the candidates.

Online (arrival order, own decisions); the heatmap is built offline. ``fast`` runs the compiled
kernel (:mod:`planner.heuristics._kernels`), which takes the same decisions as the Python
reference here (tested).
Sources: J. Hu et al., "DeepServe", arXiv:2501.14417 (Algorithm ``dist_sched``); SGLang router
(sgl-project/sglang, cache-aware policy, ``--balance-abs-threshold 32 --balance-rel-threshold
1.0001``).
"""

from __future__ import annotations

import heapq

import numpy as np

from planner.heuristics import _kernels
from planner.heuristics.common import Prefixes, arrival_order, choice_pairs
from planner.heuristics.greedy import make_result
from planner.heuristics.heatmap import build_heatmap
from planner.instance import Instance
from planner.metrics import (
    compute_capacity,
    decode_work_seconds,
    kv_fit_bytes,
    kv_need_bytes,
    prefill_seconds,
)
from planner.plan import Plan, Result
from planner.registry import register

LOCALITY, LEAST_LOAD, REFIT = 0, 1, 2  # REFIT: no candidate holds it, any choice that does


@register("dist_sched", "DeepServe cascade: heatmap candidates, then longest prefix match if "
          "loads are balanced (SGLang rule, abs 32 / rel 1.0001), else least-loaded",
          options={"candidates": 64, "tolerance": 0.05, "balance_abs": 32.0,
                   "balance_rel": 1.0001, "load": "requests", "prefill_buckets": 8,
                   "decode_buckets": 8, "cost": "latency", "fast": True})
def dist_sched(inst: Instance, candidates: int = 64, tolerance: float = 0.05,
               balance_abs: float = 32.0, balance_rel: float = 1.0001, load: str = "requests",
               prefill_buckets: int = 8, decode_buckets: int = 8, cost: str = "latency",
               fast: bool = True) -> Result:
    """DeepServe dist_sched (arXiv:2501.14417) with SGLang's balance rule. Online; heatmap
    offline. ``info["branch"]`` holds per request 0 (locality) or 1 (least load)."""
    if load not in ("requests", "seconds"):
        raise ValueError(f"load must be 'requests' or 'seconds' (given {load!r})")
    n, c = inst.n_requests, inst.n_clusters
    hm = build_heatmap(inst, prefill_buckets, decode_buckets, cost=cost, candidates=candidates,
                       tolerance=tolerance)
    order = arrival_order(inst)
    ci, cj = hm.cells(inst.prompt_tokens[order], inst.output_tokens[order])
    cl = np.arange(c)
    cap = compute_capacity(inst)
    pre_rate = prefill_seconds(inst, np.ones(c), cl) / cap
    dec_rate = decode_work_seconds(inst, np.ones(c), cl) / cap
    kvcap = kv_fit_bytes(inst)
    if fast:
        k = hm.cand_prefill.shape[2]
        cp = np.ascontiguousarray(hm.cand_prefill.reshape(-1, k), np.int64)
        cd = np.ascontiguousarray(hm.cand_decode.reshape(-1, k), np.int64)
        _, bptr, bid, _, _, nb, _ = _kernels.prefix_arrays(inst)
        pick_p, pick_d, branch = _kernels.dist_sched_kernel(
            order.astype(np.int64), (ci * hm.shape[1] + cj).astype(np.int64), cp, cd,
            (cp >= 0).sum(axis=1).astype(np.int64), np.asarray(pre_rate, np.float64),
            np.asarray(dec_rate, np.float64), np.asarray(inst.prompt_tokens, np.float64),
            np.asarray(inst.output_tokens, np.float64), np.asarray(inst.arrival_s, np.float64),
            bool(inst.prefix_blocks.size > 0), bptr, bid, nb, load == "requests",
            float(balance_abs), float(balance_rel), c, float(inst.kv_bytes_per_token), kvcap,
            *choice_pairs(inst))
        return _result(inst, order, pick_p, pick_d, branch, hm, "kernel")
    cell = (ci * hm.shape[1] + cj).tolist()
    k = hm.cand_prefill.shape[2]
    cands: list[list[tuple[int, int, int]]] = []  # per cell: (prefill, decode, prefill bit)
    for row_p, row_d in zip(hm.cand_prefill.reshape(-1, k).tolist(),
                            hm.cand_decode.reshape(-1, k).tolist(), strict=True):
        cands.append([(p, d, 1 << p) for p, d in zip(row_p, row_d, strict=True) if p >= 0])
    pre_rate = pre_rate.tolist()
    dec_rate = dec_rate.tolist()
    prompt = inst.prompt_tokens[order].tolist()
    output = inst.output_tokens[order].tolist()
    arrival = inst.arrival_s[order].tolist()
    pf = Prefixes(inst)
    use_prefix = pf.on or inst.prefix_blocks.size > 0
    count_requests = load == "requests"
    busy = [0.0] * c
    heaps: list[list[float]] = [[] for _ in range(c)]
    work = [0.0] * c
    pick_p = [0] * n
    pick_d = [0] * n
    branch = bytearray(n)
    hpush = heapq.heappush
    holders = pf.holders
    need = kv_need_bytes(inst)[order].tolist()
    fit_cap = kvcap.tolist()
    all_pairs = list(zip(*(x.tolist() for x in choice_pairs(inst)), strict=True))

    def load_of(p: int, d: int, now: float) -> float:
        """The load of a choice: requests in flight on both clusters, or their booked work."""
        if count_requests:
            return float(_queue(heaps[p], now) + (_queue(heaps[d], now) if d != p else 0))
        return work[p] + (work[d] if d != p else 0.0)

    for i, r in enumerate(order.tolist()):
        now = arrival[i]
        cs = cands[cell[i]]
        loads: list[float | None] = []
        for p, d, _ in cs:
            if output[i] > 0 and need[i] > fit_cap[d]:  # its KV does not fit d: not a candidate
                loads.append(None)
                continue
            loads.append(load_of(p, d, now))
        ok = [x for x in loads if x is not None]
        if not ok:  # no candidate holds it: the least-loaded choice that does (a retry)
            best_x, p, d = float("inf"), -1, -1
            for pp, dd in all_pairs:
                if need[i] > fit_cap[dd]:
                    continue
                x = load_of(pp, dd, now)
                if x < best_x:
                    best_x, p, d = x, pp, dd
            branch[i] = REFIT
            if p < 0:  # no replica holds it: refused
                pick_p[i] = pick_d[i] = -1
                continue
        else:
            hi, lo = max(ok), min(ok)
            start = i % len(cs)
            if hi - lo > balance_abs and hi > balance_rel * lo:
                best = _least(loads, start, None, cs)
                branch[i] = LEAST_LOAD
            else:
                mask = -1
                if use_prefix:
                    a, b = pf.ptr[r], pf.ptr[r + 1]
                    if a < b:
                        mask = 0
                        for (_, _, bit), x in zip(cs, loads, strict=True):
                            if x is not None:  # the candidates that hold it
                                mask |= bit
                        for q in range(a, b):  # longest leading run held by some candidate
                            m2 = mask & holders.get(pf.blocks[q], 0)
                            if not m2:
                                break
                            mask = m2
                best = _least(loads, start, mask, cs)
            p, d, _ = cs[best]
        wp = prompt[i] * pre_rate[p]
        wd = output[i] * dec_rate[d]
        if count_requests:
            if d == p:
                t = max(now, busy[p]) + wp + wd
                busy[p] = t
                hpush(heaps[p], t)
            else:
                t = max(now, busy[p]) + wp
                busy[p] = t
                hpush(heaps[p], t)
                t = max(t, busy[d]) + wd
                busy[d] = t
                hpush(heaps[d], t)
        else:
            work[p] += wp
            work[d] += wd
        if use_prefix:
            bit = 1 << p
            for q in range(pf.ptr[r], pf.ptr[r + 1]):
                blk = pf.blocks[q]
                holders[blk] = holders.get(blk, 0) | bit
        pick_p[i] = p
        pick_d[i] = d
    return _result(inst, order, np.array(pick_p, np.int64), np.array(pick_d, np.int64),
                   np.frombuffer(bytes(branch), np.int8), hm, "general")


def _queue(h: list[float], now: float) -> int:
    """Requests in flight on a cluster at ``now``: its completion heap, drained."""
    while h and h[0] <= now:
        heapq.heappop(h)
    return len(h)


def _least(loads: list, start: int, mask: int | None, cs: list) -> int:
    """The least-loaded candidate (among those whose prefill cluster is in ``mask`` when given,
    -1 = all); ties: the first in cyclic rank order from ``start``."""
    k = len(loads)
    best = -1
    for s in range(k):
        t = start + s
        if t >= k:
            t -= k
        if loads[t] is None or (mask is not None and not (cs[t][2] & mask)):
            continue
        if best < 0 or loads[t] < loads[best]:
            best = t
    return best


def _result(inst: Instance, order: np.ndarray, pick_p: np.ndarray, pick_d: np.ndarray,
            branch: np.ndarray, hm, path: str) -> Result:
    n = inst.n_requests
    pre = np.empty(n, np.int64)
    dec = np.empty(n, np.int64)
    br = np.empty(n, np.int8)
    pre[order] = pick_p
    dec[order] = pick_d
    br[order] = branch
    dec = np.where(inst.output_tokens > 0, dec, -1)
    return make_result(inst, "dist_sched", Plan(pre, dec), {
        "heatmap": hm, "branch": br, "path": path,
        "branches": {"locality": int((br == LOCALITY).sum()),
                     "least_load": int((br == LEAST_LOAD).sum()),
                     "refit": int((br == REFIT).sum())}})
