"""Cache-aware weighted scoring, as the llm-d inference scheduler and the Dynamo KV router do.

- ``style="llmd"`` (default): score = w_prefix x prefix-hit fraction of the prefill cluster
  + w_queue x queue score + w_kv x (1 - KV-cache utilisation of the decode cluster); highest
  wins. Queue score = (max - q) / (max - min) over the choices (1 when all equal), q = requests
  in flight. llm-d's default profile weighs prefix 3, queue 2, KV utilisation 2.
- ``style="dynamo"``: cost = overlap_weight x blocks to prefill (uncached prompt blocks) +
  active KV blocks in flight on the decode cluster (per replica); lowest wins (Dynamo's
  ``overlap_score_weight`` 1.0).

In-flight requests and KV come from a virtual FIFO clock per cluster fed by arrival times.
Online. Sources: llm-d inference scheduler (prefix-cache-scorer, queue-scorer,
kv-cache-utilization-scorer), NVIDIA Dynamo KV router (KV-aware routing cost).
"""

from __future__ import annotations

import numpy as np

from planner.heuristics import _kernels
from planner.heuristics.common import Increments, InFlight, Prefixes, arrival_order, choice_pairs
from planner.heuristics.greedy import make_result
from planner.instance import Instance
from planner.metrics import compute_capacity, kv_fit_bytes, kv_need_bytes, memory_capacity
from planner.plan import Plan, Result
from planner.registry import register


def prefix_depths(pf: Prefixes, r: int, n: int) -> np.ndarray:
    """Tokens of the longest leading run of r's blocks that each cluster holds."""
    depth = np.zeros(n)
    if not pf.on:
        return depth
    mask, acc = (1 << n) - 1, 0.0
    for k in range(pf.ptr[r], pf.ptr[r + 1]):
        m2 = mask & pf.holders.get(pf.blocks[k], 0)
        gone = mask & ~m2
        while gone:
            low = gone & -gone
            depth[low.bit_length() - 1] = acc
            gone ^= low
        acc += pf.btok[k]
        mask = m2
        if not mask:
            break
    while mask:
        low = mask & -mask
        depth[low.bit_length() - 1] = acc
        mask ^= low
    return depth


@register("cache_aware", "weighted score of prefix hit, queue and KV use (llm-d 3/2/2) or "
          "Dynamo's overlap-weighted prefill blocks plus active blocks",
          options={"style": "llmd", "w_prefix": 3.0, "w_queue": 2.0, "w_kv": 2.0,
                   "overlap_weight": 1.0, "block_tokens": 16, "fast": True})
def cache_aware(inst: Instance, style: str = "llmd", w_prefix: float = 3.0,
                w_queue: float = 2.0, w_kv: float = 2.0, overlap_weight: float = 1.0,
                block_tokens: int = 16, fast: bool = True) -> Result:
    """llm-d / Dynamo style cache-aware routing. Online (arrival order, own decisions).
    ``fast`` runs the compiled kernel (same plan as the Python reference, tested)."""
    if style not in ("llmd", "dynamo"):
        raise ValueError(f"style must be 'llmd' or 'dynamo' (given {style!r})")
    n, c = inst.n_requests, inst.n_clusters
    p_arr, d_arr = choice_pairs(inst)
    if fast:
        on, bptr, bid, btok, _, nb, _ = _kernels.prefix_arrays(inst)
        f64 = np.float64
        pre, dec = _kernels.cache_aware_kernel(
            arrival_order(inst).astype(np.int64), p_arr, d_arr,
            np.asarray(inst.prompt_tokens, f64), np.asarray(inst.output_tokens, f64),
            np.asarray(inst.arrival_s, f64), np.asarray(inst.kv_bytes, f64),
            np.asarray(inst.prefill_tps, f64), np.asarray(inst.decode_tps, f64),
            np.asarray(compute_capacity(inst), f64), np.asarray(memory_capacity(inst), f64),
            np.asarray(inst.kv_bytes_per_token * block_tokens * inst.replicas, f64), on, bptr, bid,
            btok, nb, style == "dynamo", float(w_prefix), float(w_queue), float(w_kv),
            float(overlap_weight), float(block_tokens), float(inst.kv_bytes_per_token),
            kv_fit_bytes(inst))
        return make_result(inst, "cache_aware", Plan(pre, dec), {"style": style, "path": "kernel"})
    same = p_arr == d_arr
    pf = Prefixes(inst)
    fl = InFlight(c)
    inc = Increments(inst)
    memcap = inc.memcap
    pre = np.full(n, -1, np.int64)
    dec = np.full(n, -1, np.int64)
    out = inst.output_tokens
    prompt = inst.prompt_tokens
    order = arrival_order(inst)
    need, kvcap = kv_need_bytes(inst), kv_fit_bytes(inst)
    for r, pm, dm, _ in inc.each(order):
        now = float(inst.arrival_s[r])
        q = np.array([fl.count(k, now) for k in range(c)], np.float64)
        kvu = np.array(fl.kv) / memcap
        depth = prefix_depths(pf, r, c)
        fit = (out[r] <= 0) | (need[r] <= kvcap[d_arr])  # a filter before the scores (llm-d)
        if not fit.any():  # no replica holds it: refused
            continue
        if style == "llmd":
            qc = np.where(same, q[p_arr], (q[p_arr] + q[d_arr]) / 2.0)
            hi, lo = qc[fit].max(), qc[fit].min()
            span = hi - lo
            qs = (hi - qc) / span if span > 0 else np.ones_like(qc)
            hit = depth[p_arr] / max(float(prompt[r]), 1.0)
            score = w_prefix * hit + w_queue * qs + w_kv * (1.0 - kvu[d_arr])
            k = int(np.argmax(np.where(fit, score, -np.inf)))
        else:
            blocks = (float(prompt[r]) - depth[p_arr]) / block_tokens
            active = np.array(fl.kv)[d_arr] / (inst.kv_bytes_per_token * block_tokens
                                               * inst.replicas[d_arr])
            k = int(np.argmin(np.where(fit, overlap_weight * blocks + active, np.inf)))
        p, d = int(p_arr[k]), int(d_arr[k])
        pf.add(r, p)
        kv = float(inst.kv_bytes[r]) if out[r] > 0 else 0.0
        if p == d:
            fl.add(p, now, pm[p] + dm[p], kv)
        else:
            fl.add(p, now, pm[p])
            fl.add(d, max(now, fl.busy[p]), dm[d], kv)
        pre[r] = p
        dec[r] = d if out[r] > 0 else -1
    return make_result(inst, "cache_aware", Plan(pre, dec), {"style": style, "path": "general"})
