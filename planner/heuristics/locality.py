"""Longest prefix match routing: each request goes to the prefill cluster holding the longest
leading run of its prefix blocks (a group id is one block, a Mooncake chain one block per 512
tokens); ties - including "no cluster holds anything" - go by load (earliest finish of the
choices on the tied clusters, as greedy). Online.

Source: the cache-aware routing of SGLang's router (longest prefix match on an approximate radix
tree) and Preble / DLPM ("Locality-aware Fair Scheduling in LLM Serving", arXiv:2501.14312).
"""

from __future__ import annotations

import numpy as np

from planner.heuristics import _kernels
from planner.heuristics.common import Increments, LoadState, arrival_order
from planner.heuristics.greedy import make_result
from planner.instance import Instance
from planner.plan import Plan, Result
from planner.registry import register


@register("locality", "longest prefix match first (group id or block-hash chain), ties by load",
          options={"fast": True})
def locality(inst: Instance, fast: bool = True) -> Result:
    """Longest prefix match, ties by earliest finish. Online (arrival order, own decisions).
    ``fast`` runs the compiled kernel (same plan as the Python reference, tested)."""
    pr = _kernels.prepare(inst) if fast else None
    if pr is not None:
        pre, dec, _, comp, mem, link, matched = _kernels.run_general(
            pr, arrival_order(inst), _kernels.MODE_LOCALITY)
        ms = float(max(comp.max(initial=0.0), mem.max(initial=0.0), link.max(initial=0.0)))
        return make_result(inst, "locality", Plan(pre, dec), {"model_makespan_s": ms,
                                                        "prefix_matched": int(matched),
                                                        "path": "kernel"})
    n, c = inst.n_requests, inst.n_clusters
    state = LoadState(inst)
    pf = state.prefixes
    pre = np.full(n, -1, np.int64)
    dec = np.full(n, -1, np.int64)
    out = inst.output_tokens
    all_mask = sum(1 << int(k) for k in np.flatnonzero(inst.can_prefill))
    choice_p = state.p
    inc = Increments(inst)
    matched = 0
    order = arrival_order(inst)
    for r, pm, dm, mm in inc.each(order):
        mask, depth = pf.match(r, all_mask) if pf.on else (all_mask, 0.0)
        if mask == all_mask:
            sel = None
        else:
            held = [k for k in range(c) if (mask >> k) & 1]
            sel = np.flatnonzero(np.isin(choice_p, held))
        f = state.finish(r, pm, dm, mm, sel)
        k = int(np.argmin(f))
        if sel is not None and not np.isfinite(f[k]):  # the match holds nothing that fits
            sel = None
            f = state.finish(r, pm, dm, mm)
            k = int(np.argmin(f))
        if not np.isfinite(f[k]):  # no choice holds its KV: refused (as the kernel does)
            continue
        if sel is not None:
            matched += 1
            k = int(sel[k])
        p, d = int(state.p[k]), int(state.d[k])
        state.assign(r, p, d, pm[p], dm[d], mm[d])
        pre[r] = p
        dec[r] = d if out[r] > 0 else -1
    return make_result(inst, "locality", Plan(pre, dec),
                       {"model_makespan_s": state.makespan(), "prefix_matched": matched,
                        "path": "general"})
