"""The placement model, written once; the backends (PuLP, OR-Tools linear_solver, CP-SAT) only
translate its rows.

Items are requests (count 1) or, for the aggregated method, classes of requests (count N): the
variables are integer counts ``a[i, p]`` (prefilled on p), ``b[i, d]`` (decoded on d) and, when
the clusters sit in more than one datacenter, ``w[i, A, B]`` (KV moved from datacenter A to B).
``w`` is a transportation between the datacenter marginals of ``a`` and ``b``: for a single
request the marginals are unit vectors, so ``w`` is forced to the one route used and may stay
continuous. Every coefficient comes from :mod:`planner.metrics`.

    compute c:  sum_i pre[i,c] a[i,c] + dec[i,c] b[i,c] + sum_g tok[g,c] y[g,c]  <= T
    memory c:   sum_i mem[i,c] b[i,c]                                             <= T
    link l:     sum_i sum_{(A,B) routed over l} kv[i] / bw[l] * w[i,A,B]          <= T
    assignment: sum_p a[i,p] = s[i];  sum_d b[i,d] = s[i] (requests with output tokens)
    routes:     sum_B w[i,A,B] = sum_{p in A} a[i,p];  sum_A w[i,A,B] = sum_{d in B} b[i,d]
    prefix:     a[i,c] <= N[i] y[g,c] for every shared block g of item i (facility location)
    rent:       a[i,c] <= N[i] u[c],  b[i,c] <= N[i] u[c]       (objective cost only)
    symmetry:   compute(c_k) >= compute(c_k+1) for identical clusters c_k < c_k+1
    horizon:    T <= horizon_s when set

Objectives: ``makespan`` min T (every request served); ``cost`` min rent + egress with T <=
horizon (every request served); ``served`` lexicographic: max sum s, then min T, written as the
single objective ``-sum s + T / (2 horizon)`` (the tie-break term is below 1/2, so it never trades
a request for time). Load rows are tagged ``load`` (seconds), the rest ``int`` (integral), so
that CP-SAT can scale the first ones to integers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from planner.instance import Instance
from planner.metrics import (
    compute_capacity,
    decode_work_seconds,
    kv_fits,
    kv_memory_time,
    memory_capacity,
    prefill_seconds,
)
from planner.plan import Plan

log = logging.getLogger(__name__)

Terms = list[tuple[Any, float]]


@dataclass
class Items:
    """What the model places: requests or classes. Per item loads are per member (seconds of
    load on the cluster, already divided by its replicas)."""

    count: np.ndarray  # (n,) members
    pre: np.ndarray  # (n, C) prefill load of the uncached suffix per member
    dec: np.ndarray  # (n, C) decode work load per member
    mem: np.ndarray  # (n, C) KV memory load per member
    kvb: np.ndarray  # (n,) KV bytes moved per member (0 when no decode)
    has_dec: np.ndarray  # (n,) bool
    block_ptr: np.ndarray  # CSR item -> shared blocks
    block_idx: np.ndarray
    block_tok: np.ndarray  # (n_blocks,) tokens of each shared block
    members: list[np.ndarray] | None = None  # request indices per item (classes)
    need_tokens: np.ndarray | None = None  # (n,) KV tokens a member holds at its end (the most)

    @property
    def n(self) -> int:
        return int(self.count.shape[0])

    @property
    def n_blocks(self) -> int:
        return int(self.block_tok.shape[0])


def per_token_rates(inst: Instance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load seconds per prefill token, per decode token, and memory load per unit of
    ``(prompt + output/2) * output`` on each cluster, from the evaluator's formulas."""
    c = inst.n_clusters
    idx = np.arange(c)
    cap = compute_capacity(inst)
    one = np.ones(c)
    pre = prefill_seconds(inst, one, idx) / cap
    dec = decode_work_seconds(inst, one, idx) / cap
    mem = kv_memory_time(inst, 0.0, 2.0, idx) / (2.0 * memory_capacity(inst))
    return pre, dec, mem


def shared_blocks(inst: Instance) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Blocks held by two or more requests: CSR request -> shared block index, each block's
    tokens (every occurrence has the same, see :func:`planner.instance.shared_block_tokens`), and
    the tokens of each request covered by shared blocks."""
    n = inst.n_requests
    if not inst.prefix_caching or inst.prefix_blocks.size == 0:
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(n)
    blocks = inst.prefix_blocks
    owner = inst.prefix_owner
    uniq, inv, cnt = np.unique(blocks, return_inverse=True, return_counts=True)
    shared = cnt[inv] >= 2
    new_id = np.full(uniq.size, -1, np.int64)
    keep = cnt >= 2
    new_id[keep] = np.arange(int(keep.sum()))
    tok = np.full(int(keep.sum()), np.inf)
    np.minimum.at(tok, new_id[inv[shared]], inst.prefix_block_tokens[shared].astype(float))
    covered = np.bincount(owner[shared], weights=inst.prefix_block_tokens[shared], minlength=n)
    ptr = np.zeros(n + 1, np.int64)
    ptr[1:] = np.cumsum(np.bincount(owner[shared], minlength=n))
    return ptr, new_id[inv[shared]], tok, covered


def merge_blocks(n: int, ptr: np.ndarray, idx: np.ndarray, tok: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shared blocks held by the same set of requests merged into one block of their summed
    tokens: CSR request -> merged block (each once per request, in order of first occurrence),
    and the merged blocks' tokens. Exact for every model here: a block's prefill is paid on a
    cluster when any of its holders is prefilled there, so blocks with one holder set are paid
    on the same clusters (and prefill seconds are linear in tokens). A prompt's common prefix
    is many blocks with one holder set: on the Mooncake scenario 18,251 shared blocks become
    591, and 96,204 request-block pairs (each a facility row per prefill cluster) 2,571."""
    g = int(tok.shape[0])
    if g == 0:
        return ptr, idx, tok
    owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(ptr))
    pairs = np.unique(idx.astype(np.int64) * n + owner)  # (block, holder) once, by block
    blk, hold = pairs // n, pairs % n
    cnt = np.bincount(blk, minlength=g)
    start = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    # a signature of each holder set: two sums of random 64-bit words (wrapping) and the count
    rng = np.random.default_rng(0x5EED)
    words = rng.integers(0, 2**63 - 1, size=(2, n), dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        sig = np.stack([np.add.reduceat(words[0][hold], start),
                        np.add.reduceat(words[1][hold], start), cnt.astype(np.uint64)], axis=1)
    _, first, group = np.unique(sig, axis=0, return_index=True, return_inverse=True)
    # numbered by their first block, so that with nothing to merge every block keeps its id
    rank = np.empty(first.size, np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    group, first = rank[group.ravel()], np.sort(first)
    # exactness: every block's holders equal its group's first block's, element by element
    rep = first[group]
    k = np.arange(pairs.size) - np.repeat(start, cnt)
    if not np.array_equal(hold, hold[np.repeat(start[rep], cnt) + k]):
        return ptr, idx, tok  # a signature collision: keep the blocks as they are
    merged_tok = np.bincount(group, weights=tok, minlength=first.size)
    # each request's merged blocks once, in the order they first occur in its list
    new = group[idx]
    key = owner * first.size + new
    _, pos = np.unique(key, return_index=True)
    pos.sort()
    owner2, idx2 = owner[pos], new[pos]
    ptr2 = np.searchsorted(owner2, np.arange(n + 1)).astype(np.int64)
    return ptr2, idx2.astype(np.int64), merged_tok


def request_items(inst: Instance) -> Items:
    pre_r, dec_r, mem_r = per_token_rates(inst)
    ptr, idx, tok, covered = shared_blocks(inst)
    ptr, idx, tok = merge_blocks(inst.n_requests, ptr, idx, tok)
    prompt = inst.prompt_tokens.astype(float)
    out = inst.output_tokens.astype(float)
    suffix = prompt - covered
    has_dec = inst.output_tokens > 0
    return Items(
        count=np.ones(inst.n_requests, np.int64),
        pre=suffix[:, None] * pre_r[None, :],
        dec=out[:, None] * dec_r[None, :],
        mem=((prompt + out / 2.0) * out)[:, None] * mem_r[None, :],
        kvb=np.where(has_dec, inst.kv_bytes, 0.0),
        has_dec=has_dec,
        block_ptr=ptr, block_idx=idx, block_tok=tok,
        need_tokens=prompt + out,
    )


def identical_groups(inst: Instance) -> list[list[int]]:
    """Clusters that are interchangeable: same datacenter, role and every parameter."""
    keys: dict[tuple, list[int]] = {}
    for c in range(inst.n_clusters):
        key = (int(inst.cluster_dc[c]), bool(inst.can_prefill[c]), bool(inst.can_decode[c]),
               float(inst.replicas[c]), float(inst.prefill_tps[c]), float(inst.decode_tps[c]),
               float(inst.step_full_s[c]), float(inst.kv_capacity_bytes[c]),
               float(inst.cost_per_hour[c]))
        keys.setdefault(key, []).append(c)
    return [g for g in keys.values() if len(g) > 1]


class Backend(Protocol):
    def new_var(self, lb: float, ub: float, integer: bool, name: str, kind: str = "int") -> Any: ...

    def add_row(self, terms: Terms, lo: float, hi: float, kind: str) -> None: ...


@dataclass
class Vars:
    T: Any = None
    s: list[Any] = field(default_factory=list)  # per item: var or None (all served)
    a: list[dict[int, Any]] = field(default_factory=list)
    b: list[dict[int, Any]] = field(default_factory=list)
    w: list[dict[tuple[int, int], Any]] = field(default_factory=list)
    y: dict[tuple[int, int], Any] = field(default_factory=dict)
    u: dict[int, Any] = field(default_factory=dict)


@dataclass
class Objective:
    """The objective in model terms: ``kind`` makespan (min T), served (max sum s, then min T),
    cost (min ``terms``, in money)."""

    kind: str
    s_terms: list[Any] = field(default_factory=list)
    served_const: int = 0
    cost_terms: Terms = field(default_factory=list)
    eps: float = 0.0  # served: weight of T in the float objective
    # float solvers see the objective times this (to_problem_units divides it out): cost in
    # units of a lower bound of the optimum (costs of 1e-7 $ sat below their absolute
    # tolerances: HiGHS called 4x the optimum optimal), makespan in units of its domain bound
    # when that is below 1 s (CBC's 3e-5 cutoff margin); served ignores it
    scale: float = 1.0


# the cost objective's unit is never below this share of its largest coefficient (coefficients
# of at most 1e6 in the solver's units; at 1e9 CBC's pre-processing called a feasible model
# infeasible)
COST_UNIT_MIN_SHARE = 1e-6


class PlacementModel:
    """Variables, constraints and objective of one instance over ``items``."""

    def __init__(self, inst: Instance, items: Items, *, symmetry: bool = True,
                 per_item_rent: bool | None = None):
        self.inst = inst
        self.items = items
        self.symmetry = symmetry
        self.cost_unit: float | None = None  # see objective()
        self.time_unit: float | None = None  # see objective()
        c = inst.n_clusters
        self.P = [int(x) for x in np.flatnonzero(inst.can_prefill)]
        self.D = [int(x) for x in np.flatnonzero(inst.can_decode)]
        dcs = sorted({int(inst.cluster_dc[x]) for x in range(c)})
        self.multi_dc = len(dcs) > 1
        self.dc_pairs: list[tuple[int, int]] = []
        self.pair_rep: dict[tuple[int, int], tuple[int, int]] = {}
        for p in self.P:
            for d in self.D:
                key = (int(inst.cluster_dc[p]), int(inst.cluster_dc[d]))
                if inst.reachable[p, d] and key not in self.pair_rep:
                    self.pair_rep[key] = (p, d)
                    self.dc_pairs.append(key)
        self.pair_route = {k: inst.pair_links[p * c + d] for k, (p, d) in self.pair_rep.items()}
        self.pair_egress = {k: float(r @ inst.cost_per_byte) if inst.n_links else 0.0
                            for k, r in self.pair_route.items()}
        self.objective_name = inst.objective
        self.refusal = inst.objective == "served" and inst.horizon_s is not None
        if inst.objective == "cost" and inst.horizon_s is None:
            raise ValueError("the cost objective needs horizon_s (rent is paid over it)")
        n_terms = items.n * len(self.P)
        self.per_item_rent = n_terms <= 200_000 if per_item_rent is None else per_item_rent
        self.groups = identical_groups(inst) if symmetry else []
        # (items, decode clusters): where each item's KV fits, for decoders()
        self._fits = None if items.need_tokens is None else kv_fits(
            inst, np.asarray(items.need_tokens, np.float64)[:, None], np.asarray(self.D, np.int64)[None, :])

    def decoders(self, i: int) -> list[int]:
        """Decode clusters whose replica holds item ``i``'s KV at its end (prompt + output)."""
        if self._fits is None:
            return self.D
        return [d for d, ok in zip(self.D, self._fits[i].tolist(), strict=True) if ok]

    # ------------------------------------------------------------ build

    def build(self, be: Backend, t_ub: float) -> Vars:
        inst, it = self.inst, self.items
        v = Vars()
        horizon = inst.horizon_s
        v.T = be.new_var(0.0, t_ub if horizon is None else min(t_ub, horizon), False, "T", "load")
        compute: dict[int, Terms] = {c: [] for c in range(inst.n_clusters)}
        memory: dict[int, Terms] = {c: [] for c in self.D}
        links: dict[int, Terms] = {l_: [] for l_ in range(inst.n_links)}
        rent_rows: dict[int, Terms] = {c: [] for c in range(inst.n_clusters)}
        cost_terms: Terms = []
        for i in range(it.n):
            n_i = int(it.count[i])
            s = be.new_var(0, n_i, True, f"s{i}") if self.refusal else None
            v.s.append(s)
            a = {p: be.new_var(0, n_i, True, f"a{i}_{p}") for p in self.P}
            v.a.append(a)
            row: Terms = [(x, 1.0) for x in a.values()]
            self._assign(be, row, s, n_i)
            for p, x in a.items():
                compute[p].append((x, float(it.pre[i, p])))
            b: dict[int, Any] = {}
            w: dict[tuple[int, int], Any] = {}
            if it.has_dec[i]:
                b = {d: be.new_var(0, n_i, True, f"b{i}_{d}") for d in self.decoders(i)}
                if b:
                    self._assign(be, [(x, 1.0) for x in b.values()], s, n_i)
                elif s is not None:  # fits no replica: refused
                    be.add_row([(s, 1.0)], 0.0, 0.0, "int")
                else:
                    raise ValueError(f"item {i} fits no decode cluster's KV and cannot be refused")
                for d, x in b.items():
                    compute[d].append((x, float(it.dec[i, d])))
                    memory[d].append((x, float(it.mem[i, d])))
                if self.multi_dc:
                    w = {k: be.new_var(0, n_i, n_i > 1, f"w{i}_{k[0]}_{k[1]}")
                         for k in self.dc_pairs}
                    self._routes(be, a, b, w)
                    kv = float(it.kvb[i])
                    for k, x in w.items():
                        for l_ in np.flatnonzero(self.pair_route[k]):
                            links[int(l_)].append((x, kv / float(inst.bandwidth_Bps[l_])))
                        if self.pair_egress[k] > 0:
                            cost_terms.append((x, kv * self.pair_egress[k]))
            v.b.append(b)
            v.w.append(w)
            for g in it.block_idx[it.block_ptr[i]:it.block_ptr[i + 1]]:
                g = int(g)
                for p, x in a.items():
                    y = v.y.get((g, p))
                    if y is None:
                        y = v.y[(g, p)] = be.new_var(0, 1, True, f"y{g}_{p}")
                        tok = float(it.block_tok[g])
                        compute[p].append((y, float(prefill_seconds(inst, tok, p))
                                           / float(inst.replicas[p])))
                    be.add_row([(x, 1.0), (y, -float(n_i))], -np.inf, 0.0, "int")
            if self.objective_name == "cost":
                for c, x in list(a.items()) + list(b.items()):
                    rent_rows[c].append((x, float(n_i)))
        # the resource of each load row, by the row's position in a RowBuffer (LP duals)
        self.load_rows: list[tuple[str, int, int]] = []
        for kind, rows in (("compute", compute), ("memory", memory), ("link", links)):
            for key, terms in rows.items():
                if terms:
                    self.load_rows.append((kind, key, len(getattr(be, "rows", ()))))
                    be.add_row(terms + [(v.T, -1.0)], -np.inf, 0.0, "load")
        # the symmetry rows' positions, so that the LP relaxation can leave them out
        self.symmetry_rows: list[int] = []
        for grp in self.groups:
            for c0, c1 in zip(grp[:-1], grp[1:], strict=True):
                terms = list(compute[c0]) + [(x, -k) for x, k in compute[c1]]
                self.symmetry_rows.append(len(getattr(be, "rows", ())))
                be.add_row(terms, 0.0, np.inf, "load")
        if self.objective_name == "cost":
            period_h = float(inst.horizon_s) / 3600.0
            for c, terms in rent_rows.items():
                if not terms:
                    continue
                u = v.u[c] = be.new_var(0, 1, True, f"u{c}")
                cost_terms.append((u, float(inst.replicas[c] * inst.cost_per_hour[c]) * period_h))
                if self.per_item_rent:
                    for x, n_i in terms:
                        be.add_row([(x, 1.0), (u, -n_i)], -np.inf, 0.0, "int")
                else:
                    big = float(2 * int(it.count.sum()))
                    be.add_row([(x, 1.0) for x, _ in terms] + [(u, -big)], -np.inf, 0.0, "int")
        self.vars = v
        self.cost_terms = cost_terms
        self.compute_rows = compute
        return v

    def _assign(self, be: Backend, row: Terms, s: Any, n_i: int) -> None:
        if s is None:
            be.add_row(row, n_i, n_i, "int")
        else:
            be.add_row(row + [(s, -1.0)], 0.0, 0.0, "int")

    def _routes(self, be: Backend, a: dict, b: dict, w: dict) -> None:
        inst = self.inst
        dcs_a = {k[0] for k in w}
        dcs_b = {k[1] for k in w}
        for A in dcs_a:
            row = [(x, 1.0) for k, x in w.items() if k[0] == A]
            row += [(x, -1.0) for p, x in a.items() if int(inst.cluster_dc[p]) == A]
            be.add_row(row, 0.0, 0.0, "int")
        for B in dcs_b:
            row = [(x, 1.0) for k, x in w.items() if k[1] == B]
            row += [(x, -1.0) for d, x in b.items() if int(inst.cluster_dc[d]) == B]
            be.add_row(row, 0.0, 0.0, "int")
        # prefill clusters in a datacenter without any route out to a decode cluster
        for p, x in a.items():
            if int(inst.cluster_dc[p]) not in dcs_a:
                be.add_row([(x, 1.0)], 0.0, 0.0, "int")
        for d, x in b.items():
            if int(inst.cluster_dc[d]) not in dcs_b:
                be.add_row([(x, 1.0)], 0.0, 0.0, "int")

    def objective(self) -> Objective:
        v = self.vars
        if self.objective_name == "cost":
            # the solver's units: the smallest positive coefficient, so that every coefficient
            # is between 1 and 1e6 where they can be (COST_UNIT_MIN_SHARE). Units of the largest
            # put an optimum of one cheap rent beside dear egress at 3e-8, under HiGHS's
            # tolerances: it reported "optimal" for a plan five times the optimum, with that as
            # its bound (and in units of the cheapest prefill rent, twice the optimum when a
            # free prefill cluster left only tiny costs to pay).
            # A caller that knows a positive lower bound of the optimum (``cost_unit``) gives
            # it: the optimum is then of order 1, which CBC's printed figures need too.
            mags = [abs(c) for _, c in self.cost_terms if c != 0]
            top = max(mags, default=0.0)
            known = self.cost_unit is not None and 0 < self.cost_unit < np.inf
            base = self.cost_unit if known else min(mags, default=1.0)
            unit = max(base, top * COST_UNIT_MIN_SHARE) if top > 0 else 1.0
            return Objective("cost", cost_terms=self.cost_terms, scale=1.0 / unit if unit > 0 else 1.0)
        if self.refusal:
            return Objective("served", s_terms=list(v.s), eps=0.5 / float(self.inst.horizon_s))
        # T in seconds, or in units of a known lower bound of it (``time_unit``) when that is
        # below 1 s: CBC prunes what cannot beat the incumbent by 3e-5 in its units, so a
        # 0.27-s optimum could not be proven within 1e-4 (found by review)
        tu = self.time_unit
        unit = tu if tu is not None and 0 < tu < 1 else 1.0
        return Objective("makespan", served_const=int(self.items.count.sum()), scale=1.0 / unit)

    # ------------------------------------------------------------ plans <-> values

    def values_of_plan(self, plan: Plan) -> dict[Any, float]:
        """Variable values of a request-level plan (items must be requests)."""
        inst, v = self.inst, self.vars
        vals: dict[Any, float] = {}
        pre, dec = plan.prefill, plan.decode
        for i in range(self.items.n):
            p = int(pre[i])
            served = p >= 0
            if v.s[i] is not None:
                vals[v.s[i]] = 1.0 if served else 0.0
            for q, x in v.a[i].items():
                vals[x] = 1.0 if q == p else 0.0
            d = int(dec[i]) if self.items.has_dec[i] else -1
            for q, x in v.b[i].items():
                vals[x] = 1.0 if q == d else 0.0
            key = (int(inst.cluster_dc[p]), int(inst.cluster_dc[d])) if served and d >= 0 else None
            for k, x in v.w[i].items():
                vals[x] = 1.0 if k == key else 0.0
        used_y = set()
        for i in range(self.items.n):
            p = int(pre[i])
            if p < 0:
                continue
            for g in self.items.block_idx[self.items.block_ptr[i]:self.items.block_ptr[i + 1]]:
                used_y.add((int(g), p))
        for k, x in v.y.items():
            vals[x] = 1.0 if k in used_y else 0.0
        used = np.zeros(inst.n_clusters, bool)
        used[pre[pre >= 0]] = True
        dd = dec[(dec >= 0)]
        used[dd] = True
        for c, x in v.u.items():
            vals[x] = 1.0 if used[c] else 0.0
        return vals

    def hint_values(self, plan: Plan, coef=lambda k: k) -> dict[Any, float]:
        """Values of ``plan`` after permuting identical clusters so that their compute loads
        (as the backend sees them, ``coef`` maps a load coefficient) are non-increasing, the order
        the symmetry rows demand; the evaluator's figures do not change."""
        vals = self.values_of_plan(plan)
        if not self.groups:
            return vals
        load = {c: sum(coef(k) * vals.get(x, 0.0) for x, k in terms)
                for c, terms in self.compute_rows.items()}
        perm = np.arange(self.inst.n_clusters)
        for g in self.groups:
            order = sorted(g, key=lambda c: (-load[c], c))
            for new, old in zip(g, order, strict=True):
                perm[old] = new
        pre = np.where(plan.prefill >= 0, perm[np.maximum(plan.prefill, 0)], -1)
        dec = np.where(plan.decode >= 0, perm[np.maximum(plan.decode, 0)], -1)
        return self.values_of_plan(Plan(pre, dec))

    def plan_of_values(self, value) -> Plan:
        """The request-level plan of a solution (items must be requests)."""
        n = self.items.n
        pre = np.full(n, -1, np.int64)
        dec = np.full(n, -1, np.int64)
        v = self.vars
        for i in range(n):
            best, arg = 0.5, -1
            for p, x in v.a[i].items():
                val = value(x)
                if val > best:
                    best, arg = val, p
            pre[i] = arg
            if arg >= 0 and v.b[i]:
                best, argd = -1.0, -1
                for d, x in v.b[i].items():
                    val = value(x)
                    if val > best:
                        best, argd = val, d
                dec[i] = argd
        return Plan(pre, dec)
