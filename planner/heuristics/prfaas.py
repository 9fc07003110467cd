"""PrfaaS selective offloading: a request whose uncached prompt (after prefix-cache hits on its
origin's prefill clusters) is longer than a threshold t is prefilled on a remote prefill cluster
(a prefill-only cluster outside its origin datacenter) and its KV shipped to a decode cluster in
its origin; shorter ones are prefilled and decoded locally. Within each side the choice is the
earliest finish (as greedy). Requests without an origin, or whose origin has no cluster, use the
whole fleet.

t is given (``threshold`` >= 0) or chosen offline by a grid search: the paper picks t to
maximise the system throughput, the minimum of its stages' throughputs (remote prefill, local
prefill, decode, the inter-datacenter link; its Eq. 7). Here each stage's load is the planner's
own load for the plan that t yields, so the best t is the one with the smallest bottleneck; the
grid is t in the prompt-length quantiles (``grid`` points) plus "never offload".

The per-request rule is online; the grid search over t is offline.
Source: R. Qin et al., "Prefill-as-a-Service: KVCache of Next-Generation Models Could Go
Cross-Datacenter", arXiv:2604.15039 (2026).
"""

from __future__ import annotations

import logging

import numpy as np

from planner.heuristics.common import Increments, LoadState, arrival_order, cluster_set
from planner.heuristics.greedy import make_result
from planner.instance import Instance
from planner.plan import Plan, Result
from planner.registry import register

log = logging.getLogger(__name__)


def _remote_set(inst: Instance, remote: str) -> np.ndarray:
    if remote.strip():
        return cluster_set(inst, remote, "remote", "prefill")
    return np.flatnonzero(inst.can_prefill & ~inst.can_decode)


def run(inst: Instance, threshold: float, remote: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray, float, int]:
    """One pass at threshold t: (prefill, decode, own makespan, offloaded count)."""
    n = inst.n_requests
    state = LoadState(inst)
    p_arr, d_arr = state.p, state.d
    dc = inst.cluster_dc
    is_remote = np.isin(p_arr, remote)
    n_dc = len(inst.scenario.datacenters)
    local_sel, remote_sel, local_pre = [], [], []
    for o in range(n_dc):
        loc = (dc[p_arr] == o) & (dc[d_arr] == o)
        rem = is_remote & (dc[p_arr] != o) & (dc[d_arr] == o)
        local_sel.append(np.flatnonzero(loc) if loc.any() else None)
        remote_sel.append(np.flatnonzero(rem) if rem.any() else None)
        local_pre.append(np.flatnonzero(inst.can_prefill & (dc == o)))
    pre = np.full(n, -1, np.int64)
    dec = np.full(n, -1, np.int64)
    out = inst.output_tokens
    inc = Increments(inst)
    pf = state.prefixes
    offloaded = 0
    order = arrival_order(inst)
    for r, pm, dm, mm in inc.each(order):
        o = int(inst.origin[r])
        sel = None
        remote = False
        if 0 <= o < n_dc and local_sel[o] is not None:
            sel = local_sel[o]
            if remote_sel[o] is not None:
                saved = pf.saved_all(r, inst.n_clusters)
                hit = float(saved[local_pre[o]].max()) if saved is not None and \
                    local_pre[o].size else 0.0
                if float(inst.prompt_tokens[r]) - hit > threshold:
                    sel = remote_sel[o]
                    remote = True
        f = state.finish(r, pm, dm, mm, sel)
        k = int(np.argmin(f))
        if sel is not None and not np.isfinite(f[k]):  # no replica of its set holds its KV
            sel, remote = None, False
            f = state.finish(r, pm, dm, mm)
            k = int(np.argmin(f))
        if not np.isfinite(f[k]):  # no replica anywhere holds it: refused
            continue
        offloaded += remote
        if sel is not None:
            k = int(sel[k])
        p, d = int(p_arr[k]), int(d_arr[k])
        state.assign(r, p, d, pm[p], dm[d], mm[d])
        pre[r] = p
        dec[r] = d if out[r] > 0 else -1
    return pre, dec, state.makespan(), offloaded


@register("prfaas", "offload prefills whose uncached length exceeds t to a remote prefill "
          "cluster, else prefill locally; t by grid search (PrfaaS Eq. 7) or given",
          options={"threshold": -1.0, "grid": 8, "remote": ""})
def prfaas(inst: Instance, threshold: float = -1.0, grid: int = 8, remote: str = "") -> Result:
    """PrfaaS threshold offload (arXiv:2604.15039). Online per request; the grid search for t
    (when ``threshold`` < 0) is offline. ``remote``: comma-separated cluster names (default:
    every prefill-only cluster)."""
    rem = _remote_set(inst, remote)
    if threshold >= 0:
        ts = [float(threshold)]
    else:
        qs = np.quantile(inst.prompt_tokens, np.linspace(0.0, 1.0, max(grid, 2)))
        ts = sorted({float(x) for x in np.unique(qs)} | {float("inf")})
    best = None
    tried = []
    for t in ts:
        pre, dec, ms, off = run(inst, t, rem)
        tried.append({"threshold": t, "makespan_s": ms, "offloaded": off})
        if best is None or ms < best[2] * (1 - 1e-12):
            best = (pre, dec, ms, off, t)
    pre, dec, ms, off, t = best
    log.info("prfaas: threshold %s, %d offloaded", t, off)
    return make_result(inst, "prfaas", Plan(pre, dec), {
        "model_makespan_s": ms, "threshold": t, "offloaded": off, "grid": tried})
