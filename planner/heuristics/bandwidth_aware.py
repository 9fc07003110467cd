"""Bandwidth-aware routing with admission control.

Cost of a choice = its expected finish time (as greedy: the largest load it touches after this
request) x (1 + weight x u / (1 - u)), u the utilisation of the busiest link on its route after
the request (link load / horizon, or / the current makespan without a horizon; capped below 1):
the penalty rises steeply as a route fills, steering KV off congested links before they bind.
Admission control (when the scenario sets ``horizon_s``): a request is refused when no choice
keeps every link and cluster it touches within the horizon; refused requests are reported in
``Result.refused_by_method`` (and ``info["refused"]``), never dropped silently. Online.

Source: the bandwidth-aware scheduling of PrfaaS (Qin et al., "Prefill-as-a-Service",
arXiv:2604.15039) and utilisation-penalised routing (M/M/1-style u / (1 - u) congestion cost).
"""

from __future__ import annotations

import numpy as np

from planner.heuristics import _kernels
from planner.heuristics.common import Increments, LoadState, arrival_order
from planner.heuristics.greedy import make_result
from planner.instance import Instance
from planner.plan import Plan, Result
from planner.registry import register


@register("bandwidth_aware", "earliest finish x link-utilisation penalty u/(1-u) on the route; "
          "admission control refuses what cannot finish within the horizon",
          options={"weight": 1.0, "admission": True, "fast": True})
def bandwidth_aware(inst: Instance, weight: float = 1.0, admission: bool = True,
                    fast: bool = True) -> Result:
    """Bandwidth-aware routing with admission control. Online (arrival order, own decisions).
    ``fast`` runs the compiled kernel (same plan as the Python reference, tested)."""
    n = inst.n_requests
    horizon = inst.horizon_s
    limit = horizon * (1 + 1e-9) if (admission and horizon is not None) else np.inf
    pr = _kernels.prepare(inst) if fast else None
    if pr is not None:
        pre, dec, ref, comp, mem, link, _ = _kernels.run_general(
            pr, arrival_order(inst), _kernels.MODE_BANDWIDTH, weight, limit, horizon)
        ms = float(max(comp.max(initial=0.0), mem.max(initial=0.0), link.max(initial=0.0)))
        ref_arr = np.flatnonzero(ref).astype(np.int64)
        return make_result(inst, "bandwidth_aware", Plan(pre, dec),
                           {"model_makespan_s": ms, "refused": ref_arr, "path": "kernel"},
                           refused=ref_arr)
    state = LoadState(inst)
    pre = np.full(n, -1, np.int64)
    dec = np.full(n, -1, np.int64)
    out = inst.output_tokens
    inc = Increments(inst)
    refused: list[int] = []
    order = arrival_order(inst)
    for r, pm, dm, mm in inc.each(order):
        f = state.finish(r, pm, dm, mm)
        ok = (f <= limit) & (f < np.inf)  # infinite: no replica of the choice holds its KV
        if not ok.any():
            refused.append(r)
            continue
        cost = f
        if state.has_links and out[r] > 0:
            ref = horizon if horizon is not None else state.makespan()
            if ref > 0:
                u = np.minimum(state.route_finish(float(inst.kv_bytes[r]))[state.route_of]
                               / ref, 0.99)
                cost = f * (1.0 + weight * u / (1.0 - u))
        k = int(np.argmin(np.where(ok, cost, np.inf)))
        p, d = int(state.p[k]), int(state.d[k])
        state.assign(r, p, d, pm[p], dm[d], mm[d])
        pre[r] = p
        dec[r] = d if out[r] > 0 else -1
    ref_arr = np.sort(np.array(refused, np.int64))
    return make_result(inst, "bandwidth_aware", Plan(pre, dec),
                       {"model_makespan_s": state.makespan(), "refused": ref_arr,
                        "path": "general"},
                       refused=ref_arr)
