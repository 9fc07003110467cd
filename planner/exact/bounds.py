"""Domain bounds on the optimum, independent of any solver, from the evaluator's formulas.

For ``makespan`` every load (compute and KV memory of each cluster, each link) is at most T, so
for any weights ``lam >= 0`` summing to 1, ``T >= sum_i lam_i load_i``, and since every request
must sit on some (prefill, decode) pair,

    T >= sum_r min_{pair} lam . a_r(pair)  (+ each shared prefix block prefilled once somewhere)

(a Lagrangian bound). The weights tried: compute capacity shares (total work over total
capacity), KV capacity shares, each link alone (bytes that must cross it over its bandwidth),
each cluster alone, and the dual prices of an LP relaxation when a caller has them. The largest
single request (its cheapest pair's largest load) is a bound too. For ``served`` the same
Lagrangian gives an upper bound on the requests served within the horizon H:
``sum_r max(0, 1 - mu m_r) + mu H`` minimised over the scale mu. For ``cost``: the rent of the
cheapest set of clusters that can hold the work within the horizon (:func:`covering_rent`), plus
each request's cheapest egress.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from planner.exact._model import per_token_rates, shared_blocks
from planner.exact.work import COVER_MILP_NODES, COVER_MILP_WORK_S, clock_cut, tracked
from planner.instance import Instance


class PairCosts:
    """Per-request, per-pair load vectors in factored form: prefill part on p, decode part on d,
    KV bytes over the route of the datacenter pair (A, B)."""

    def __init__(self, inst: Instance):
        self.inst = inst
        pre_r, dec_r, mem_r = per_token_rates(inst)
        _, _, tok, covered = shared_blocks(inst)
        self.block_tok = tok
        self.pre_r, self.dec_r, self.mem_r = pre_r, dec_r, mem_r
        self.suffix = inst.prompt_tokens.astype(float) - covered
        self.out = inst.output_tokens.astype(float)
        self.memu = (inst.prompt_tokens + self.out / 2.0) * self.out
        self.kvb = np.where(self.out > 0, inst.kv_bytes, 0.0)
        c = inst.n_clusters
        self.P = np.flatnonzero(inst.can_prefill)
        self.D = np.flatnonzero(inst.can_decode)
        dcs = sorted({int(x) for x in inst.cluster_dc})
        self.dcs = dcs
        pairs = {}
        for p in self.P:
            for d in self.D:
                if inst.reachable[p, d]:
                    pairs.setdefault((int(inst.cluster_dc[p]), int(inst.cluster_dc[d])),
                                     inst.pair_links[p * c + d])
        self.pairs = pairs
        self.has_dec = self.out > 0

    def min_cost(self, lam_c: np.ndarray, lam_m: np.ndarray, lam_l: np.ndarray,
                 egress: bool = False, chunk: int = 200_000) -> np.ndarray:
        """Per request: the smallest ``lam . a_r(pair)`` over valid pairs (plus egress money)."""
        inst = self.inst
        n = inst.n_requests
        out = np.empty(n)
        dc = inst.cluster_dc
        pre_w = lam_c * self.pre_r
        dec_w = lam_c * self.dec_r
        mem_w = lam_m * self.mem_r
        lw = (lam_l / inst.bandwidth_Bps) if inst.n_links else np.zeros(0)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            pre = self.suffix[s:e, None] * pre_w[None, self.P]
            dec = self.out[s:e, None] * dec_w[None, self.D] + self.memu[s:e, None] * mem_w[None, self.D]
            best_pre = {A: pre[:, dc[self.P] == A].min(axis=1) for A in self.dcs
                        if (dc[self.P] == A).any()}
            best_dec = {B: dec[:, dc[self.D] == B].min(axis=1) for B in self.dcs
                        if (dc[self.D] == B).any()}
            kv = self.kvb[s:e]
            best = np.full(e - s, np.inf)
            pre_only = np.full(e - s, np.inf)
            for v in best_pre.values():
                pre_only = np.minimum(pre_only, v)
            for (A, B), route in self.pairs.items():
                per_byte = float(route @ lw) if inst.n_links else 0.0
                if egress and inst.n_links:
                    per_byte += float(route @ inst.cost_per_byte)
                best = np.minimum(best, best_pre[A] + best_dec[B] + kv * per_byte)
            out[s:e] = np.where(self.has_dec[s:e], best, pre_only)
        return out

    def block_cost(self, lam_c: np.ndarray) -> float:
        """Each shared block is prefilled at least once, on some prefill cluster."""
        if self.block_tok.size == 0:
            return 0.0
        return float(self.block_tok.sum() * (lam_c * self.pre_r)[self.P].min())

    def directions(self) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        """Weight vectors (compute, memory, link) tried by the Lagrangian bound."""
        inst = self.inst
        c, nl = inst.n_clusters, inst.n_links
        z_c, z_l = np.zeros(c), np.zeros(nl)
        out = []

        def norm(name: str, lc: np.ndarray, lm: np.ndarray, ll: np.ndarray) -> None:
            tot = lc.sum() + lm.sum() + ll.sum()
            if tot > 0:
                out.append((name, lc / tot, lm / tot, ll / tot))

        rep = inst.replicas
        norm("prefill_capacity", np.where(inst.can_prefill, rep * inst.prefill_tps, 0.0), z_c, z_l)
        norm("decode_capacity", np.where(inst.can_decode, rep * inst.decode_tps, 0.0), z_c, z_l)
        both = np.where(inst.can_prefill | inst.can_decode, 1.0 / (self.pre_r + self.dec_r), 0.0)
        norm("work_capacity", both, z_c, z_l)
        memcap = np.where(inst.can_decode, 1.0 / np.maximum(self.mem_r, 1e-300), 0.0)
        norm("kv_capacity", z_c, memcap, z_l)
        for l_ in range(nl):
            e = np.zeros(nl)
            e[l_] = 1.0
            norm(f"link:{inst.link_names[l_]}", z_c, z_c, e)
        return out


def largest_request(pc: PairCosts) -> float:
    """The cheapest pair's largest single load of the heaviest request. Only requests whose
    upper estimate (one fixed pair) can beat the largest lower estimate (the cheapest prefill
    load alone) are scored over every pair."""
    inst = pc.inst
    n = inst.n_requests
    sel = np.arange(n)
    if n > 10_000 and pc.P.size:
        low = pc.suffix * pc.pre_r[pc.P].min()
        fixed = _pair_max(pc, np.arange(n), *_first_pair(pc))
        sel = np.flatnonzero(fixed >= low.max(initial=0.0))
    return float(_cheapest_max(pc, sel).max(initial=0.0))


def _first_pair(pc: PairCosts) -> tuple[int, int]:
    inst = pc.inst
    for p in pc.P:
        for d in pc.D:
            if inst.reachable[p, d]:
                return int(p), int(d)
    return int(pc.P[0]), -1


def _pair_max(pc: PairCosts, r: np.ndarray, p: int, d: int) -> np.ndarray:
    """Largest single load of requests ``r`` on the pair (p, d)."""
    inst = pc.inst
    pre = pc.suffix[r] * pc.pre_r[p]
    if d < 0:
        return pre
    dec = pc.out[r] * pc.dec_r[d]
    comp = np.maximum(pre, dec) if p != d else pre + dec
    m = np.maximum(comp, pc.memu[r] * pc.mem_r[d])
    if inst.n_links:
        route = inst.pair_links[p * inst.n_clusters + d]
        if route.any():
            m = np.maximum(m, pc.kvb[r] * (route / inst.bandwidth_Bps).max())
    return np.where(pc.has_dec[r], m, pre)


def _cheapest_max(pc: PairCosts, sel: np.ndarray) -> np.ndarray:
    inst = pc.inst
    best = np.full(sel.size, np.inf)
    if pc.D.size == 0:
        for p in pc.P:
            best = np.minimum(best, pc.suffix[sel] * pc.pre_r[p])
        return best
    for p in pc.P:
        for d in pc.D:
            if not inst.reachable[p, d]:
                continue
            best = np.minimum(best, _pair_max(pc, sel, int(p), int(d)))
    return best


def served_upper(m: np.ndarray, horizon: float) -> int:
    """min over mu >= 0 of ``sum_r max(0, 1 - mu m_r) + mu H`` (evaluated at its breakpoints)."""
    n = m.size
    if n == 0:
        return 0
    m = np.sort(np.maximum(m, 0.0))
    pos = m > 0
    free = int((~pos).sum())
    mp = m[pos]
    if mp.size == 0:
        return n
    cs = np.concatenate([[0.0], np.cumsum(mp)])
    j = np.arange(mp.size)  # mu = 1 / mp[j]: requests before j contribute
    ub = free + j - cs[j] / mp[j] + horizon / mp[j]
    best = min(float(ub.min()), float(n))
    return int(min(n, math.floor(best + 1e-9)))


# the directions kept for large instances (each direction is a pass over the requests)
FEW_DIRECTIONS = ("work_capacity", "prefill_capacity", "kv_capacity")
FEW_DIRECTIONS_ABOVE = 200_000  # requests: the exact methods' domain bounds take FEW_DIRECTIONS


def served_t_lower(inst: Instance, served: int, few: bool = False) -> tuple[float, str]:
    """A lower bound on the makespan of any plan serving at least ``served`` requests (the
    ``served`` objective's tie-break), and what gave it: under each weighting ``lam`` of the
    loads, the sum of the ``served`` smallest per-request costs ``min_pair lam . a_r(pair)``
    (any served set pays at least those); and the ``served``-th smallest of the requests'
    cheapest largest single load (a served set holds a request at least that heavy; not with
    ``few``, for large instances). Shared prefix blocks are counted only when every request is
    served."""
    pc = PairCosts(inst)
    n = inst.n_requests
    k = min(int(served), n)
    if k <= 0:
        return 0.0, "nothing served"
    dirs = pc.directions()
    if few:
        dirs = [d for d in dirs if d[0] in FEW_DIRECTIONS]
    parts: dict[str, float] = {}
    for name, lc, lm, ll in dirs:
        cost = pc.min_cost(lc, lm, ll)
        low = float(np.partition(cost, k - 1)[:k].sum())
        parts[name] = low + (pc.block_cost(lc) if k == n else 0.0)
    if not few:  # every request over every pair: left out at scale
        single = _cheapest_max(pc, np.arange(n))
        parts["kth_request"] = float(np.partition(single, k - 1)[k - 1])
    finite = {key: v for key, v in parts.items() if math.isfinite(v)}
    if not finite:
        return 0.0, "none"
    by = max(finite, key=finite.get)
    return finite[by], by


EXACT_COVER_MAX = 16  # clusters: every subset is tried (2^16 subsets x the valid pairs)


def covering_rent(pc: PairCosts, rent: np.ndarray, horizon: float,
                  dirs: list[tuple[str, Any, Any, Any]]) -> tuple[float, str]:
    """A lower bound on the rent of the clusters a plan uses, when every load must end within
    ``horizon``: for weights ``lam >= 0`` on the clusters' compute and memory loads, the used set
    S must hold the work, ``sum_{c in S} (lam_c + mu_c) >= W / horizon`` with
    ``W = sum_r min_pair lam . a_r(pair)`` (each request on its cheapest pair, every shared block
    prefilled once). Each capacity direction gives one such covering row. The set must also
    prefill and decode every token with each mixed cluster's time split between the two
    (:func:`_split_ok`; the rows above count a mixed cluster's whole time for each). With few
    clusters the cheapest S meeting every row and holding a valid (prefill, decode) pair is found exactly
    (``"exact"``); else by a small MILP (SCIP's dual bound, ``"milp"``), or each row's
    fractional knapsack (``"lp"``) where that is higher or SCIP gives nothing. Returns
    (bound, how)."""
    c = pc.inst.n_clusters
    rows, need = cover_rows(pc, horizon, dirs)
    if c <= EXACT_COVER_MAX:
        subsets = np.arange(1, 2 ** c, dtype=np.int64)
        member = ((subsets[:, None] >> np.arange(c)) & 1).astype(bool)  # (2^c - 1, c)
        ok = may_hold(pc, rows, need, horizon, member)
        if not ok.any():
            return math.inf, "exact"  # no set of clusters holds the work: no plan at all
        return float((member[ok] @ rent).min()), "exact"
    frac = _fractional_cover(rows, need, rent)
    exact = _milp_cover(pc, rows, need, rent, frac, horizon)
    if exact is not None and exact > frac:
        return exact, "milp"
    return frac, "lp"


def cover_rows(pc: PairCosts, horizon: float, dirs: list[tuple[str, Any, Any, Any]]
               ) -> tuple[list[np.ndarray], list[float]]:
    """The covering rows of :func:`covering_rent`: per capacity direction (links left out),
    each cluster's weight and the weight any used set must reach."""
    inst = pc.inst
    rows, need = [], []
    for _, lc, lm, ll in dirs:
        if np.any(ll):  # a link direction: its load does not depend on the clusters used
            continue
        w = np.asarray(lc, float) + np.asarray(lm, float)
        work = float(pc.min_cost(lc, lm, np.zeros(inst.n_links)).sum()) + pc.block_cost(lc)
        if work > 0 and w.sum() > 0:
            rows.append(w)
            need.append(work / horizon * (1 - 1e-9))  # a hair of slack for float sums
    return rows, need


def may_hold(pc: PairCosts, rows: list[np.ndarray], need: list[float], horizon: float,
             member: np.ndarray) -> np.ndarray:
    """Per row of ``member`` (a set of clusters): does the set pass every necessary condition
    of :func:`covering_rent` (each covering row, the prefill/decode split, a valid pair)? A
    set that fails holds no plan within the horizon; one that passes may still hold none."""
    inst = pc.inst
    member = np.atleast_2d(member)
    ok = np.ones(member.shape[0], bool)
    for w, nd in zip(rows, need, strict=True):
        ok &= member @ w >= nd
    pair_ok = np.zeros(member.shape[0], bool)
    need_dec = bool(pc.has_dec.any())
    for p in pc.P:
        if not need_dec:
            pair_ok |= member[:, p]
            continue
        for d in pc.D:
            if inst.reachable[p, d]:
                pair_ok |= member[:, p] & member[:, d]
    return ok & pair_ok & _split_ok(member, *_token_split(pc, horizon))


# the covering MILP above EXACT_COVER_MAX clusters: SCIP's time limit, and the share its dual
# bound is lowered by for the solver's float tolerances
COVER_MILP_S = 2.0
COVER_MILP_MARGIN = 1e-6


def _token_split(pc: PairCosts, horizon: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Each cluster's prefill and decode tokens within ``horizon`` if it did only that (0 where
    its role forbids it), and the tokens any plan must prefill (every suffix, each shared block
    at least once) and decode."""
    inst = pc.inst
    with np.errstate(divide="ignore"):
        pcap = np.where(inst.can_prefill & (pc.pre_r > 0), horizon / pc.pre_r, 0.0)
        dcap = np.where(inst.can_decode & (pc.dec_r > 0), horizon / pc.dec_r, 0.0)
    wp = float(pc.suffix.sum() + pc.block_tok.sum()) * (1 - 1e-9)  # a hair for float sums
    wd = float(pc.out.sum()) * (1 - 1e-9)
    return pcap, dcap, wp, wd


def _split_ok(member: np.ndarray, pcap: np.ndarray, dcap: np.ndarray, wp: float,
              wd: float) -> np.ndarray:
    """Per row of ``member`` (a set of clusters): can the set prefill ``wp`` and decode ``wd``
    tokens within the horizon when a mixed cluster's time is split between the two? The
    dedicated clusters give what they can; the prefill still missing is taken from the mixed
    clusters that lose the least decode per prefill token first (a fractional knapsack, so
    this greedy is exact), and what decode remains must cover ``wd``."""
    mixed = np.flatnonzero((pcap > 0) & (dcap > 0))
    only_p = (pcap > 0) & (dcap <= 0)
    missing = wp - member[:, only_p] @ pcap[only_p]
    decode = member[:, dcap > 0] @ dcap[dcap > 0]
    if mixed.size == 0:
        return (missing <= 0) & (decode >= wd)
    order = mixed[np.argsort(-pcap[mixed] / dcap[mixed], kind="stable")]
    got = member[:, order] * pcap[order]  # prefill each mixed cluster of the set can give
    before = np.cumsum(got, axis=1) - got
    share = np.clip((missing[:, None] - before) / pcap[order], 0.0, 1.0) * member[:, order]
    lost = share @ dcap[order]
    return (missing <= got.sum(axis=1)) & (decode - lost >= wd)


def _milp_cover(pc: PairCosts, rows: list[np.ndarray], need: list[float], rent: np.ndarray,
                scale: float = 0.0, horizon: float | None = None) -> float | None:
    """The cheapest set meeting every covering row and holding a valid (prefill, decode) pair,
    and (with ``horizon``) able to prefill and decode every token with each mixed cluster's
    time split between the two (a continuous prefill and decode share per cluster), as a small
    MILP (a binary per cluster, a pair indicator per valid pair; rents in units of
    ``scale``, a lower bound of the optimum, else of the cheapest rent) by SCIP: its dual
    bound (valid at a time limit too; the incumbent is not used even when SCIP says optimal,
    which is within its gap tolerance), lowered by ``COVER_MILP_MARGIN``. None if SCIP gives no
    bound."""
    from ortools.linear_solver import pywraplp

    inst = pc.inst
    s = pywraplp.Solver.CreateSolver("SCIP")
    if s is None:
        return None
    u = [s.BoolVar("") for _ in range(inst.n_clusters)]
    for w, nd in zip(rows, need, strict=True):
        s.Add(sum(float(w[c]) * u[c] for c in range(inst.n_clusters) if w[c] > 0) >= nd)
    if horizon is not None:
        pcap, dcap, wp, wd = _token_split(pc, horizon)
        fp = [s.NumVar(0.0, 1.0, "") if pcap[c] > 0 else None for c in range(inst.n_clusters)]
        fd = [s.NumVar(0.0, 1.0, "") if dcap[c] > 0 else None for c in range(inst.n_clusters)]
        for c in range(inst.n_clusters):
            if fp[c] is not None or fd[c] is not None:
                s.Add(sum(f for f in (fp[c], fd[c]) if f is not None) <= u[c])
        if wp > 0:
            s.Add(sum(float(pcap[c] / wp) * fp[c] for c in range(inst.n_clusters)
                      if fp[c] is not None) >= 1.0)
        if wd > 0:
            s.Add(sum(float(dcap[c] / wd) * fd[c] for c in range(inst.n_clusters)
                      if fd[c] is not None) >= 1.0)
    pairs = []
    if pc.has_dec.any():
        for p in pc.P:
            for d in pc.D:
                if inst.reachable[p, d]:
                    z = s.NumVar(0.0, 1.0, "")
                    s.Add(z <= u[p])
                    s.Add(z <= u[d])
                    pairs.append(z)
    else:
        pairs = [u[p] for p in pc.P]
    if not pairs:
        return math.inf
    s.Add(sum(pairs) >= 1)
    positive = rent[rent > 0]
    if positive.size == 0:
        return 0.0
    # the objective in units of a lower bound of the optimum (``scale``, e.g. the fractional
    # cover, else the cheapest rent): SCIP's tolerances are partly absolute, so an optimum that
    # is tiny in its units (rents of 1e-4 $, or one dear cluster setting the scale) would be
    # decided by them and the dual bound could pass it
    top = float(scale) if scale > 0 and math.isfinite(scale) else float(positive.min())
    s.Minimize(sum(float(rent[c]) / top * u[c] for c in range(inst.n_clusters)))
    work = tracked()  # a work limit: a node limit, and a wall clock only as a safety cap
    limit_s = COVER_MILP_WORK_S if work else COVER_MILP_S
    s.SetTimeLimit(int(limit_s * 1000))
    if work:
        s.SetSolverSpecificParametersAsString(f"limits/totalnodes = {COVER_MILP_NODES}\n")
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(params.RELATIVE_MIP_GAP, 0.0)
    code = s.Solve(params)
    if code not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.INFEASIBLE) and \
            (not work or s.wall_time() >= 0.99 * limit_s * 1000):
        clock_cut("covering MILP")  # its time limit: the bound depends on the clock
    if code == pywraplp.Solver.INFEASIBLE:
        return math.inf  # no set of clusters holds the work: no plan at all
    if code not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return None
    # the dual bound, never the incumbent: "optimal" is within SCIP's gap tolerances
    bound = float(s.Objective().BestBound()) * top
    return bound * (1 - COVER_MILP_MARGIN) if math.isfinite(bound) else None


def _fractional_cover(rows: list[np.ndarray], need: list[float], rent: np.ndarray) -> float:
    """The largest, over the covering rows, of each row's fractional knapsack."""
    best = 0.0
    for w, nd in zip(rows, need, strict=True):  # fractional knapsack: cheapest rent per weight
        order = np.argsort(np.where(w > 0, rent / np.maximum(w, 1e-300), np.inf), kind="stable")
        got, paid = 0.0, 0.0
        for k in order.tolist():
            if w[k] <= 0:
                break
            take = min(1.0, (nd - got) / w[k])
            got += take * w[k]
            paid += take * rent[k]
            if got >= nd:
                break
        best = max(best, paid if got >= nd * (1 - 1e-12) else math.inf)
    return best


def domain_bound(inst: Instance, extra_dirs: list[tuple[str, Any, Any, Any]] | None = None,
                 few: bool = False) -> dict[str, Any]:
    """The best solver-independent bound and its parts: ``{"bound", "by", "parts"}``. For
    ``served`` the bound is an upper bound on the requests served."""
    pc = PairCosts(inst)
    parts: dict[str, float] = {}
    if inst.n_requests == 0:
        return {"bound": 0.0, "by": "empty", "parts": {}}
    obj = inst.objective
    if obj == "served" and inst.horizon_s is None:
        return {"bound": float(inst.n_requests), "by": "all_requests", "parts": {}}
    dirs = pc.directions()
    if few:  # large instances: the capacity shares only (each direction is a pass over requests)
        dirs = [d for d in dirs if d[0] in FEW_DIRECTIONS]
    dirs += list(extra_dirs or [])
    if obj == "served" and inst.horizon_s is not None:
        h = float(inst.horizon_s)
        for name, lc, lm, ll in dirs:
            parts[name] = float(served_upper(pc.min_cost(lc, lm, ll), h))
        parts["all_requests"] = float(inst.n_requests)
        by = min(parts, key=parts.get)
        return {"bound": parts[by], "by": by, "parts": parts}
    if obj == "cost":
        rent = inst.replicas * inst.cost_per_hour * float(inst.horizon_s or 0.0) / 3600.0
        best = math.inf
        for p in pc.P:
            for d in pc.D:
                if inst.reachable[p, d]:
                    best = min(best, rent[p] + (rent[d] if d != p and pc.has_dec.any() else 0.0))
        if not pc.has_dec.any():
            best = float(rent[pc.P].min())
        z_c, z_l = np.zeros(inst.n_clusters), np.zeros(inst.n_links)
        egress = float(pc.min_cost(z_c, z_c, z_l, egress=True).sum())
        parts["cheapest_rent_plus_egress"] = float(best) + egress
        if inst.horizon_s:
            cover, how = covering_rent(pc, rent, float(inst.horizon_s), dirs)
            parts[f"covering_rent_{how}_plus_egress"] = cover + egress
        by = max(parts, key=parts.get)
        return {"bound": parts[by], "by": by, "parts": parts}
    # makespan (and served without a horizon: every request served, T minimised)
    parts["largest_request"] = largest_request(pc)
    for name, lc, lm, ll in dirs:
        parts[name] = float(pc.min_cost(lc, lm, ll).sum()) + pc.block_cost(lc)
    by = max(parts, key=parts.get)
    return {"bound": parts[by], "by": by, "parts": parts}
