"""The placement model over request classes, for scale.

Classes: prefill bucket x decode bucket x prefix group x origin x KV fit. Buckets are geometric (ratio
``bucket_ratio``; output 0 is its own bucket; 0 = auto: the finest of 1.05 ... 8 giving at most
``max_classes`` classes); the prefix group is the request's first shared
block (only with prefix caching); origin is in the key when ``by_origin`` (no evaluator term
depends on origin, so merging origins loses nothing and it is off by default); the KV fit is the set of decode
clusters whose replica holds the request's KV at its end, so every member of a class may decode
wherever the class may (a class is never kept off a cluster for one long member). Each class is an
item of :mod:`planner.exact._model` with its members' mean coefficients and an integer count per
cluster; the model is solved as an LP (``mode="lp"``, GLOP) and rounded, or with integer counts
(``mode="milp"``, SCIP/HiGHS), then disaggregated: each class's counts become per-pair counts
(the LP's route flow split by the prefill/decode shares inside each datacenter), rounded by
largest remainder, and the members are dealt to the pairs.

Under ``cost`` (``mode="lp"``) the clusters to rent are chosen first, with the rent variables
integral (:func:`open_set_plan`): the class LP pays a sliver of each cluster's rent and its
rounding spreads over every cluster.

The bound is valid for the original problem, not only for the classes: the LP's dual prices of
the load rows are a weighting of the resources, and the Lagrangian bound of
:mod:`planner.exact.bounds` evaluated request by request (exact coefficients) with those weights
is a lower bound (upper bound for ``served``) on the true optimum.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from planner.exact._backends.rows import RowBuffer, SolveOutcome, to_problem_units
from planner.exact._model import (
    Items,
    PlacementModel,
    merge_blocks,
    per_token_rates,
    shared_blocks,
)
from planner.exact._run import (
    COMMON,
    account,
    better,
    horizon_result,
    unplaceable_result,
    warm_plan,
    workers,
)
from planner.exact.bounds import FEW_DIRECTIONS_ABOVE, domain_bound
from planner.instance import Instance
from planner.metrics import Metrics, evaluate_arrays, kv_fit_bytes, kv_need_bytes
from planner.plan import Plan, Result
from planner.registry import register

log = logging.getLogger(__name__)


def _bucket(x: np.ndarray, ratio: float) -> np.ndarray:
    out = np.zeros(x.shape, np.int64)
    pos = x > 0
    out[pos] = 1 + np.floor(np.log(x[pos]) / np.log(ratio)).astype(np.int64)
    return out


# bucket ratios tried by bucket_ratio=0 (auto), finest first
AUTO_RATIOS = tuple(float(r) for r in np.round(np.geomspace(1.02, 8.0, 40), 4))


class ClassKeys:
    """The class key of every request for any bucket ratio, in one vectorized pass per ratio:
    ``(((prompt bucket x output buckets + output bucket) x groups + prefix group) x origins +
    origin) x fit levels + fit level`` as one int64, counted with a bincount (no sort). The fit
    level counts the distinct decode KV capacities too small for the request: requests of one
    level fit the same decode clusters."""

    def __init__(self, inst: Instance, by_origin: bool = False):
        n = inst.n_requests
        # the prefix group is the request's first shared block after merging the blocks held by
        # one set of requests (exact, see merge_blocks): on Mooncake that group covers 48.9 M of
        # the 49.1 M prompt tokens in shared blocks, the first raw block 1.1 M, and the class
        # LP, blind to the rest, put the optimum at 215 s (76.2 s) and its plan at 128 s
        ptr, idx, tok = merge_blocks(n, *shared_blocks(inst)[:3])
        first = np.full(n, -1, np.int64)
        has = np.diff(ptr) > 0
        first[has] = idx[ptr[:-1][has]]
        self.first = first
        self.first_tok = np.where(has, tok[np.maximum(first, 0)] if tok.size else 0.0, 0.0)
        self.tok = tok
        p = inst.prompt_tokens.astype(float)
        o = inst.output_tokens.astype(float)
        self.lp = np.where(p > 0, np.log(np.maximum(p, 1e-300)), -np.inf)
        self.lo = np.where(o > 0, np.log(np.maximum(o, 1e-300)), -np.inf)
        self.n_groups = int(first.max(initial=-1)) + 2
        self.origin = inst.origin.astype(np.int64) if by_origin else np.zeros(n, np.int64)
        self.n_orig = int(self.origin.max(initial=0)) + 1
        caps = np.unique(kv_fit_bytes(inst)[inst.can_decode])
        need = kv_need_bytes(inst, np.where(o > 0, p + o, 0.0))
        self.fit = (need[:, None] > caps[None, :]).sum(axis=1).astype(np.int64)
        self.n_fit = caps.size + 1

    def keys(self, ratio: float) -> tuple[np.ndarray, int]:
        lr = np.log(ratio)
        pb = np.where(np.isfinite(self.lp), 1 + np.floor(self.lp / lr), 0).astype(np.int64)
        ob = np.where(np.isfinite(self.lo), 1 + np.floor(self.lo / lr), 0).astype(np.int64)
        pb -= pb.min(initial=0)
        n_ob = int(ob.max(initial=0)) + 1
        key = ((pb * n_ob + ob) * self.n_groups + (self.first + 1)) * self.n_orig + self.origin
        key = key * self.n_fit + self.fit
        return key, int(key.max(initial=0)) + 1

    def count(self, ratio: float) -> int:
        key, top = self.keys(ratio)
        if top <= 50_000_000:
            return int(np.count_nonzero(np.bincount(key, minlength=top)))
        return int(np.unique(key).size)

    def classes(self, ratio: float) -> tuple[np.ndarray, np.ndarray]:
        """Dense class index of every request and each class's size."""
        key, top = self.keys(ratio)
        if top <= 50_000_000:
            cnt = np.bincount(key, minlength=top)
            present = cnt > 0
            label = np.cumsum(present) - 1
            return label[key], cnt[present]
        _, cls, cnt = np.unique(key, return_inverse=True, return_counts=True)
        return cls.ravel(), cnt

    def choose(self, max_classes: int) -> float:
        """The finest auto ratio giving at most ``max_classes`` classes (bisection: the count
        falls as the ratio grows)."""
        lo, hi = 0, len(AUTO_RATIOS) - 1
        if self.count(AUTO_RATIOS[lo]) <= max_classes:
            return AUTO_RATIOS[lo]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.count(AUTO_RATIOS[mid]) <= max_classes:
                hi = mid
            else:
                lo = mid
        return AUTO_RATIOS[hi]


def request_classes(inst: Instance, ratio: float = 1.1, by_origin: bool = False,
                    keys: ClassKeys | None = None) -> tuple[np.ndarray, Items]:
    """Class of each request and the classes as model items (mean coefficients)."""
    ck = keys if keys is not None else ClassKeys(inst, by_origin)
    first, first_tok, tok = ck.first, ck.first_tok, ck.tok
    cls, count = ck.classes(ratio)
    k = count.size
    pre_r, dec_r, mem_r = per_token_rates(inst)
    prompt = inst.prompt_tokens.astype(float)
    out = inst.output_tokens.astype(float)

    def mean(x: np.ndarray) -> np.ndarray:
        return np.bincount(cls, weights=x, minlength=k) / count

    suffix = mean(prompt - first_tok)
    o = mean(out)
    memu = mean((prompt + out / 2.0) * out)
    kvb = mean(np.where(out > 0, inst.kv_bytes, 0.0))
    has_dec = np.bincount(cls, weights=(out > 0).astype(float), minlength=k) > 0
    need = np.zeros(k)  # a class decodes only where its largest member's KV fits
    np.maximum.at(need, cls, np.where(out > 0, prompt + out, 0.0))
    block = np.full(k, -1, np.int64)
    block[cls] = first
    bptr = np.concatenate([[0], np.cumsum(block >= 0)]).astype(np.int64)
    order = np.argsort(cls, kind="stable")
    starts = np.concatenate([[0], np.cumsum(count)])
    members = [order[starts[j]:starts[j + 1]] for j in range(k)]
    items = Items(count=count.astype(np.int64), pre=suffix[:, None] * pre_r[None, :],
                  dec=o[:, None] * dec_r[None, :], mem=memu[:, None] * mem_r[None, :],
                  kvb=kvb, has_dec=has_dec, block_ptr=bptr, block_idx=block[block >= 0],
                  block_tok=tok.astype(float), members=members, need_tokens=need)
    return cls, items


def _round_counts(frac: np.ndarray, total: int) -> np.ndarray:
    """Largest remainder: non-negative integers summing to ``total``, near ``frac``."""
    frac = np.maximum(frac, 0.0)
    if frac.sum() <= 0:
        out = np.zeros(frac.size, np.int64)
        out[0] = total
        return out
    frac = frac * (total / frac.sum())
    base = np.floor(frac + 1e-9).astype(np.int64)
    short = total - int(base.sum())
    if short > 0:
        base[np.argsort(-(frac - base), kind="stable")[:short]] += 1
    elif short < 0:
        for j in np.argsort(frac - base, kind="stable"):
            take = min(base[j], -short)
            base[j] -= take
            short += take
            if short == 0:
                break
    return base


def disaggregate(inst: Instance, model: PlacementModel, value, seed: int) -> Plan:
    """Per class: pair shares from the solution, rounded, members dealt to pairs (spread over
    the members sorted by size)."""
    rng = np.random.default_rng(seed)
    it, v = model.items, model.vars
    n = inst.n_requests
    pre = np.full(n, -1, np.int64)
    dec = np.full(n, -1, np.int64)
    dc = inst.cluster_dc
    prompt = inst.prompt_tokens.astype(float)
    out = inst.output_tokens.astype(float)
    for k in range(it.n):
        mem = it.members[k]
        total = mem.size
        served = total if v.s[k] is None else int(round(value(v.s[k])))
        if served <= 0:
            continue
        a = {p: max(0.0, value(x)) for p, x in v.a[k].items()}
        if not v.b[k]:
            pairs = [(p, -1) for p in a]
            share = np.array([a[p] for p in a])
        else:
            b = {d: max(0.0, value(x)) for d, x in v.b[k].items()}
            pairs, sh = [], []
            if v.w[k]:
                for (A, B), x in v.w[k].items():
                    f = max(0.0, value(x))
                    pa = [p for p in a if dc[p] == A]
                    db = [d for d in b if dc[d] == B]
                    sa, sb = sum(a[p] for p in pa), sum(b[d] for d in db)
                    for p in pa:
                        for d in db:
                            pairs.append((p, d))
                            sh.append(f * (a[p] / sa if sa > 0 else 1 / len(pa))
                                      * (b[d] / sb if sb > 0 else 1 / len(db)))
            else:
                sa, sb = sum(a.values()), sum(b.values())
                for p in a:
                    for d in b:
                        if inst.reachable[p, d]:
                            pairs.append((p, d))
                            sh.append(a[p] * b[d] / max(sa * sb / max(served, 1), 1e-300))
            share = np.array(sh)
        counts = _round_counts(share, served)
        if served < total:
            pick = rng.permutation(mem)[:served]
        else:
            # systematic dealing: members sorted by size, each pair's members spread evenly
            # over the sorted order, so every pair gets the class's mix (not a random draw)
            z = prompt[mem] / max(prompt[mem].mean(), 1e-9) + out[mem] / max(out[mem].mean(), 1e-9)
            pick = mem[np.argsort(z, kind="stable")]
        live = counts > 0
        cnt = counts[live]
        lab = np.repeat(np.flatnonzero(live), cnt)
        first = np.repeat(np.cumsum(cnt) - cnt, cnt)
        offset = np.repeat(rng.random(cnt.size), cnt)
        pos = (np.arange(served) - first + offset) / np.repeat(cnt, cnt)
        seq = lab[np.argsort(pos, kind="stable")]
        pp = np.array([q[0] for q in pairs], np.int64)
        dd = np.array([q[1] for q in pairs], np.int64)
        pre[pick] = pp[seq]
        dec[pick] = np.where(out[pick] > 0, dd[seq], -1)
    return Plan(pre, dec)


def restricted(inst: Instance, mask: np.ndarray) -> Instance:
    """``inst`` with the clusters outside ``mask`` closed (they may neither prefill nor
    decode); for the exact models only (the live policies read the roles elsewhere)."""
    import dataclasses

    return dataclasses.replace(inst, can_prefill=inst.can_prefill & mask,
                               can_decode=inst.can_decode & mask)


# the open-set step of ``cost`` (mode "lp"): classes of the model that picks the rented set (up to
# DETAILED_SET_CLUSTERS clusters; above, the coarse bucket ratio), the horizon margins tried above
# REQUEST_LEVEL_MAX requests, the rounds of lowering the cap on T after a rounded plan overruns
# the horizon, and the share of the time left that the step may use
OPEN_SET_CLASSES = 200
COARSE_RATIO = 8.0
OPEN_SET_MARGINS = (0.01, 0.04, 0.1)
DETAILED_SET_CLUSTERS = 12  # above, the set is chosen over the coarse classes
OPEN_SET_SCIP_S = 10.0  # at most this long for SCIP's set (its incumbent is kept at the limit)
OPEN_SET_ROUNDS = 4
ROUNDING_MARGIN = 0.002  # the first cap on T of the class LP, below the horizon (measured: 0.1 %)
OPEN_SET_SHARE = 0.8
FIRST_SET_SHARE = 0.6  # of the time left, for placing the first set (a rounding overrun needs a second LP)
# classes of each try of :func:`drop_clusters` (measured on 32 clusters, 100 k requests: one
# placement over 1,405 classes took 12 to 17 s, over 238 about 2.5 s, so a 60-s run tries the
# whole list of clusters instead of one or two)
DROP_CLASSES = 300


def coarse_keys(inst: Instance) -> ClassKeys:
    """Class keys for choosing the rented set of a large instance: prompt bucket x output bucket
    x KV fit, prefix sharing left out (every prompt counted whole, a conservative load), so
    that with ``COARSE_RATIO`` the set model has a few dozen classes."""
    ck = ClassKeys(inst)
    ck.first = np.full_like(ck.first, -1)
    ck.first_tok = np.zeros_like(ck.first_tok)
    ck.n_groups = 1
    return ck


def choose_open_set(inst: Instance, ck: ClassKeys, ratio: float, cap: float, time_limit: float,
                    num_workers: int, seed: int, rel_gap: float) -> tuple[np.ndarray | None, str]:
    """The clusters to rent: ``cost`` over the classes of ``ck`` at ``ratio`` with the rent
    variables ``u`` integral (one per cluster, with the per-class rows ``x[i,c] <= N_i u[c]``),
    the counts continuous and T at most ``cap``, by SCIP. The class LP alone pays a sliver of
    each cluster's rent, so its rounded plan spreads over every cluster. Returns the mask and a
    note."""
    from planner.exact._backends.ortools_mip import solve_ortools

    t0 = time.perf_counter()
    _, items = request_classes(inst, ratio, keys=ck)
    model = PlacementModel(inst, items, symmetry=False, per_item_rent=True)
    buf = RowBuffer()
    v = model.build(buf, cap)
    rent = set(v.u.values())
    for j, spec in enumerate(buf.vars):
        spec.integer = j in rent
    left = max(0.2, time_limit - (time.perf_counter() - t0))  # the build counts
    out = solve_ortools(buf, model.objective(), v.T, None, solver="SCIP", time_limit=left,
                        num_workers=num_workers, seed=seed, rel_gap=rel_gap)
    where = f"rented set over {items.n} classes, T <= {cap:.6g} s"
    if out.value is None:
        return None, f"{where}: {out.status} ({out.termination})"
    mask = np.zeros(inst.n_clusters, bool)
    mask[[c for c, u in v.u.items() if out.value(u) > 0.5]] = True
    names = ",".join(inst.cluster_names[c] for c in np.flatnonzero(mask))
    return mask, f"{where} ({out.status}): {names}"


def place_within(inst: Instance, mask: np.ndarray, max_classes: int, time_limit: float,
                 num_workers: int, seed: int) -> tuple[Plan | None, list[str]]:
    """A plan on the clusters of ``mask`` that fits the horizon, or None. Small instances: the
    request-level CP-SAT model with the other clusters closed (rounding classes of one or two
    members is coarse). Large ones: the class LP of ``cost`` on those clusters (egress is then
    all that varies) with T capped, disaggregated; an overrun lowers the cap by itself and 5 %
    more and solves again, at most ``OPEN_SET_ROUNDS`` times."""
    from planner.exact._backends.ortools_mip import solve_lp

    sub = restricted(inst, mask)
    t_end = time.perf_counter() + time_limit
    if inst.n_requests <= REQUEST_LEVEL_MAX:
        from planner.registry import get_method

        # no LP bound and no local search: the sub-instance's bound is not used, and the time
        # is the model's
        res = get_method("cpsat").func(sub, time_limit=time_limit, seed=seed,
                                       num_workers=num_workers, warm_start="none",
                                       lp_bound=False, improve=False)
        return res.plan, [f"request-level CP-SAT on the set: {res.status}"]
    ck = ClassKeys(sub)
    _, items = request_classes(sub, ck.choose(max_classes), keys=ck)
    model = PlacementModel(sub, items, symmetry=False, per_item_rent=False)
    horizon = float(inst.horizon_s)
    cap, notes = horizon * (1 - ROUNDING_MARGIN), []
    for _ in range(OPEN_SET_ROUNDS):
        left = t_end - time.perf_counter()
        if left < 0.5:
            break
        buf = RowBuffer()
        v = model.build(buf, cap)
        st, vals, _, _ = solve_lp(buf, model.objective(), v.T, time_limit=left,
                                  num_workers=num_workers)
        if vals is None:
            notes.append(f"cap {cap:.6g} s: LP {st}")
            break
        plan = disaggregate(sub, model, vals.__getitem__, seed)
        m = evaluate_arrays(inst, plan, check=False)
        notes.append(f"cap {cap:.6g} s: rounded plan {m.makespan_s:.6g} s")
        if m.feasible:
            return plan, notes
        if not math.isfinite(m.makespan_s) or m.makespan_s <= horizon:
            break  # not an overrun of T (a KV misfit): a lower cap does not help
        cap -= 1.05 * (m.makespan_s - horizon)
        if cap <= 0:
            break
    return None, notes


def open_set_plan(inst: Instance, ck: ClassKeys, max_classes: int, time_limit: float,
                  num_workers: int, seed: int, rel_gap: float,
                  drop_until: float | None = None) -> tuple[Plan | None, str]:
    """``cost`` in two steps: which clusters to rent (:func:`choose_open_set`), then where each
    request goes among them (:func:`place_within`). The set is chosen over at most
    ``OPEN_SET_CLASSES`` classes, or on more than ``DETAILED_SET_CLUSTERS`` clusters over the
    coarse classes of :func:`coarse_keys` (SCIP is slow on hundreds of classes of 32 clusters).
    Up to ``REQUEST_LEVEL_MAX`` requests (placed by the request-level model) T is capped at the
    horizon; above, at the horizon less each margin of ``OPEN_SET_MARGINS`` in turn (the
    detailed classes try the horizon itself first) until a set holds a plan; there the plan's
    clusters are then closed one by one while time is left (:func:`drop_clusters`, until the
    ``time.perf_counter()`` instant ``drop_until``, by default the end of ``time_limit``).
    Returns the plan (None if none fits the horizon) and a note."""
    t_end = time.perf_counter() + time_limit
    horizon = float(inst.horizon_s)
    if inst.n_clusters <= DETAILED_SET_CLUSTERS:
        keys, ratio, margins = ck, ck.choose(OPEN_SET_CLASSES), (0.0, *OPEN_SET_MARGINS)
    else:
        keys, ratio, margins = coarse_keys(inst), COARSE_RATIO, OPEN_SET_MARGINS
    if inst.n_requests <= REQUEST_LEVEL_MAX:  # placed by the request-level model: no margin
        margins = (0.0,)
    notes: list[str] = []
    tried: list[np.ndarray] = []
    for k, margin in enumerate(margins):
        left = t_end - time.perf_counter()
        if left < 0.5:
            break
        mask, note = choose_open_set(inst, keys, ratio, horizon * (1 - margin),
                                     min(left / 2, OPEN_SET_SCIP_S), num_workers, seed, rel_gap)
        notes.append(note)
        if mask is None:
            break
        if any((mask == m).all() for m in tried):
            continue
        tried.append(mask)
        share = max(1.0 / (len(margins) - k), FIRST_SET_SHARE if k == 0 else 0.0)
        t_place = time.perf_counter()
        plan, more = place_within(inst, mask, max_classes,
                                  share * (t_end - time.perf_counter()), num_workers, seed)
        notes += more
        if plan is not None:
            if inst.n_requests > REQUEST_LEVEL_MAX:
                plan, more = drop_clusters(inst, plan, max_classes,
                                           t_end if drop_until is None else drop_until,
                                           time.perf_counter() - t_place, num_workers, seed)
                notes += more
            return plan, "; ".join(notes)
    return None, "; ".join(notes)


def drop_clusters(inst: Instance, plan: Plan, max_classes: int, t_end: float, place_s: float,
                  num_workers: int, seed: int) -> tuple[Plan, list[str]]:
    """Rent less than ``plan`` does, while time is left. First each used cluster in turn, the
    dearest first (the least loaded first among equal rents), is closed and the requests placed
    again on the others (:func:`place_within`); a plan that fits the horizon without it is kept.
    When no cluster can be closed, a used cluster is swapped for a cheaper closed one of the same
    roles (the largest saving first; among equal savings, the set with the most capacity left
    over the covering rows first). A set that fails the covering bound's necessary conditions
    (:func:`planner.exact.bounds.may_hold`) is not tried. ``place_s``: how long the first
    placement took, the time a try is given until one is measured. Each try places over at most
    ``DROP_CLASSES`` classes."""
    from planner.exact.bounds import FEW_DIRECTIONS, PairCosts, cover_rows, may_hold

    horizon = float(inst.horizon_s)
    pc = PairCosts(inst)
    dirs = [d for d in pc.directions() if d[0] in FEW_DIRECTIONS]
    rows, need = cover_rows(pc, horizon, dirs)
    rent = inst.replicas * inst.cost_per_hour
    role = inst.can_prefill.astype(int) * 2 + inst.can_decode.astype(int)
    m = evaluate_arrays(inst, plan, check=False)
    tried: set[tuple[int, int]] = set()  # (closed, opened or -1)
    notes: list[str] = []
    # until a try is measured, one is taken to last as long as the first placement (more classes,
    # so longer: the estimate errs towards leaving time); then as long as the longest try
    measured: float | None = None

    def room(sets: np.ndarray) -> np.ndarray:
        """The smallest share of a covering row's need the set holds (1 = just enough)."""
        out = np.full(sets.shape[0], np.inf)
        for w, nd in zip(rows, need, strict=True):
            if nd > 0:
                out = np.minimum(out, (sets @ w) / nd)
        return out

    def passing(used: np.ndarray, moves: list[tuple[int, int]]) -> tuple[np.ndarray, list[int]]:
        """The set after each move, and the moves whose set passes ``may_hold``."""
        sets = np.repeat(used[None, :], len(moves), axis=0)
        for k, (c, o) in enumerate(moves):
            sets[k, c] = False
            if o >= 0:
                sets[k, o] = True
        ok = may_hold(pc, rows, need, horizon, sets) if moves else np.zeros(0, bool)
        return sets, np.flatnonzero(ok).tolist()

    while t_end - time.perf_counter() >= 1.2 * (place_s if measured is None else measured):
        used = np.asarray(m.used, bool)
        util = np.maximum(m.load_s, m.memory_load_s) / horizon
        on, off = np.flatnonzero(used).tolist(), np.flatnonzero(~used).tolist()
        moves = sorted(((c, -1) for c in on if rent[c] > 0 and (c, -1) not in tried),
                       key=lambda mv: (-rent[mv[0]], util[mv[0]]))
        sets, order = passing(used, moves)
        if not order:  # no cluster can be closed: swaps, the largest saving then the most room
            moves = [(c, o) for c in on for o in off
                     if rent[o] < rent[c] and role[o] == role[c] and (c, o) not in tried]
            sets, order = passing(used, moves)
            r = room(sets)
            order.sort(key=lambda k: (-(rent[moves[k][0]] - rent[moves[k][1]]), -r[k]))
        if not order:
            break
        c, o = moves[order[0]]
        tried.add((c, o))
        t0 = time.perf_counter()
        new, _ = place_within(inst, sets[order[0]], min(max_classes, DROP_CLASSES), t_end - t0,
                              num_workers, seed)
        took = time.perf_counter() - t0
        measured = took if measured is None else max(measured, took)
        what = f"without {inst.cluster_names[c]}" + (
            f", with {inst.cluster_names[o]}" if o >= 0 else "")
        if new is None:
            notes.append(f"{what}: no plan")
            continue
        m_new = evaluate_arrays(inst, new, check=False)
        if not m_new.feasible or m_new.objective >= m.objective:
            notes.append(f"{what}: {m_new.objective:.6g} (kept {m.objective:.6g})")
            continue
        notes.append(f"{what}: {m_new.objective:.6g}")
        plan, m = new, m_new
    return plan, notes


def _improved(inst: Instance, plan: Plan, scored: Metrics, bound: float, info: dict[str, Any],
              left: float, seed: int) -> tuple[Plan, Metrics]:
    """The disaggregated plan after the request-level local search of the exact methods
    (:mod:`planner.exact.improve`; ``makespan``), when its arrays fit (``MAX_CELLS``) and time
    is left: rounding whole classes leaves loads a few classes uneven. Mooncake: 77.328 to
    76.375, where the search stalls (the request-level methods prove 76.2251)."""
    from planner.exact._model import request_items
    from planner.exact._run import IMPROVE_MAX
    from planner.exact.improve import MAX_CELLS, improve_makespan

    c = inst.n_clusters
    if left < 0.5 or inst.n_requests * c * c * (2 * c + inst.n_links) > MAX_CELLS:
        return plan, scored  # (pairs at most c x c: the bound of improve.cells)
    t0 = time.perf_counter()
    model = PlacementModel(inst, request_items(inst), symmetry=False)
    better_plan = improve_makespan(model, plan, bound * (1 + info["rel_gap"] / 2),
                                   min(IMPROVE_MAX, left), seed)
    m = evaluate_arrays(inst, better_plan)
    info.update(improve_s=time.perf_counter() - t0, rounded_objective=scored.objective)
    if m.feasible and m.objective < scored.objective:
        return better_plan, m
    return plan, scored


# live policies tried, in order, when the disaggregated plan does not fit the horizon
FALLBACKS = ("greedy", "lpt", "bandwidth_aware")
# and then, below this many requests, the request-level CP-SAT model with the time left
REQUEST_LEVEL_MAX = 2000


def lp_directions(inst: Instance, model: PlacementModel, duals: list[float]
                  ) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    lc, lm, ll = np.zeros(inst.n_clusters), np.zeros(inst.n_clusters), np.zeros(inst.n_links)
    for kind, key, row in model.load_rows:
        val = abs(float(duals[row]))
        {"compute": lc, "memory": lm, "link": ll}[kind][key] = val
    tot = lc.sum() + lm.sum() + ll.sum()
    if tot <= 0:
        return []
    return [("lp_duals", lc / tot, lm / tot, ll / tot)]


@register("aggregated", "the placement model over request classes (prefill x decode bucket x "
          "prefix group [x origin]): LP + rounding or integer counts, disaggregated; valid bound",
          # its LP is GLOP's; relax-and-fix is the request-level model's
          options={**{k: d for k, d in COMMON.items() if k not in ("lp_solver", "relax_fix")},
                   "warm_start": "none", "mode": "lp", "bucket_ratio": 0.0,
                   "max_classes": 1500, "by_origin": False, "solver": "SCIP"},
          kind="exact", online=False)
def aggregated(inst: Instance, **opts: Any) -> Result:
    from planner.exact._backends.ortools_mip import solve_lp, solve_ortools

    t_start = time.perf_counter()
    time_limit = float(opts.get("time_limit") or COMMON["time_limit"])
    info: dict[str, Any] = {"rel_gap": float(opts.get("rel_gap", COMMON["rel_gap"]))}
    history: list[tuple[float, float | None, float | None]] = []
    # no plan fits the horizon: said before the class LP, not after the time limit
    few = inst.n_requests > FEW_DIRECTIONS_ABOVE
    # the makespan's domain bound, when the horizon check needs it: reused below without duals
    db0 = domain_bound(inst, few=few) \
        if inst.objective == "makespan" and inst.horizon_s is not None else None
    bad = unplaceable_result(inst, "aggregated", history, info) or \
        horizon_result(inst, "aggregated", history, info, db0)
    if bad is not None:
        return bad
    warm, note = warm_plan(inst, str(opts.get("warm_start", "greedy")))
    warm_obj = evaluate_arrays(inst, warm).objective if warm is not None else None
    info.update(warm_start=note, warm_start_objective=warm_obj)
    if inst.n_requests == 0:
        return Result("aggregated", "optimal", Plan.refuse_all(0), 0.0, 0.0, 0.0, info=info)
    t0 = time.perf_counter()
    ratio = float(opts.get("bucket_ratio", 0.0))
    ck = ClassKeys(inst, bool(opts.get("by_origin", False)))
    r = ratio if ratio > 1 else ck.choose(int(opts.get("max_classes", 1500)))
    _, items = request_classes(inst, r, keys=ck)
    info["bucket_ratio"] = r
    model = PlacementModel(inst, items, symmetry=False, per_item_rent=False)
    buf = RowBuffer()
    v = model.build(buf, float("inf"))
    obj = model.objective()
    info.update(classes=items.n, n_vars=len(buf.vars), n_rows=len(buf.rows),
                build_s=time.perf_counter() - t0)
    t1 = time.perf_counter()
    # leave time for the bound, the disaggregation and the evaluation (about 10 s per 1M)
    reserve = 2.0 + 1e-5 * inst.n_requests
    lp_limit = max(1.0, time_limit - (time.perf_counter() - t_start) - reserve)
    open_set = (inst.objective == "cost" and str(opts.get("mode", "lp")) == "lp"
                and bool(model.vars.u))
    if open_set and inst.n_requests > REQUEST_LEVEL_MAX:
        # its rounding spreads over every cluster and its duals add nothing to the cost bound
        # (the covering rent): 10 to 15 s at 100 k to 1 M requests better spent on the set
        st, vals, f_lp, duals = "skipped (cost: the rented set is chosen first)", None, None, None
    else:
        st, vals, f_lp, duals = solve_lp(buf, obj, v.T, time_limit=lp_limit,
                                         num_workers=workers(opts.get("num_workers", 0)))
    info.update(lp_status=st, lp_s=time.perf_counter() - t1,
                lp_objective_classes=to_problem_units(obj, f_lp, False))
    db = db0 if (db0 is not None and not duals) else \
        domain_bound(inst, lp_directions(inst, model, duals) if duals else None, few=few)
    info.update(domain_bound=db["bound"], domain_bound_by=db["by"], domain_bound_parts=db["parts"])
    if warm is not None:
        history.append((time.perf_counter() - t_start, warm_obj, db["bound"]))
    value = vals.__getitem__ if vals is not None else None
    term = f"GLOP LP over {items.n} classes: {st}"
    if str(opts.get("mode", "lp")) == "milp":
        # the same reserve as the LP's: the rounding and scoring come after (found by review:
        # runs at 600 to 3,000 requests passed their limits by about 3 s)
        left = time_limit - (time.perf_counter() - t_start) - reserve
        if left > 1:
            out = solve_ortools(buf, obj, v.T, None, solver=str(opts.get("solver", "SCIP")),
                                time_limit=left, num_workers=workers(opts.get("num_workers", 0)),
                                seed=int(opts.get("seed", 0)), rel_gap=info["rel_gap"])
            info["milp_status"] = out.status
            if out.value is not None:
                value = out.value
                term = f"{out.termination} over {items.n} classes"
    plan = disaggregate(inst, model, value, int(opts.get("seed", 0))) if value is not None else None
    own = None
    if open_set:
        left = time_limit - (time.perf_counter() - t_start) - reserve
        # closing clusters may use the time up to the last evaluation (about a second per 1M)
        drop_until = t_start + time_limit - (1.0 + 3e-6 * inst.n_requests)
        own, note = open_set_plan(inst, ck, int(opts.get("max_classes", 1500)),
                                  OPEN_SET_SHARE * left, workers(opts.get("num_workers", 0)),
                                  int(opts.get("seed", 0)), info["rel_gap"], drop_until)
        info["open_set"] = note
        term += f"; {note}"
    # each candidate scored once (an evaluation is about a second at 1M requests)
    scored = evaluate_arrays(inst, plan) if plan is not None else None
    if open_set and own is not None:
        mine = evaluate_arrays(inst, own)
        if scored is None or not scored.feasible or mine.objective < scored.objective:
            plan, scored = own, mine
    if plan is not None and not scored.feasible:
        log.info("aggregated: the disaggregated plan exceeds the horizon; refusing to fit")
        from planner.exact._run import repair_for_horizon

        plan = repair_for_horizon(inst, plan) if inst.objective == "served" else None
        scored = evaluate_arrays(inst, plan) if plan is not None else None
    if plan is not None and scored.feasible and inst.objective == "makespan" and \
            opts.get("improve", True):
        plan, scored = _improved(inst, plan, scored, db["bound"], info,
                                 time_limit - (time.perf_counter() - t_start) - reserve,
                                 int(opts.get("seed", 0)))
    objective = scored.objective if plan is not None else None
    if warm is not None and (objective is None or better(inst, warm_obj, objective)):
        plan, objective, info["plan_from"] = warm, warm_obj, "warm_start"
    else:
        info["plan_from"] = "aggregated"
    if plan is None:  # the rounded classes overrun the horizon: a live policy's plan, if one fits
        for name in FALLBACKS:
            plan, _ = warm_plan(inst, name)
            if plan is not None:
                objective, info["plan_from"] = evaluate_arrays(inst, plan).objective, name
                log.info("aggregated: no plan of its own fits the horizon; %s's is used", name)
                break
    left = time_limit - (time.perf_counter() - t_start)
    if plan is None and inst.n_requests <= REQUEST_LEVEL_MAX and left > 0.5:
        # small enough for the request-level model: let it find a plan (or prove there is none)
        from planner.registry import get_method

        sub = get_method("cpsat").func(inst, time_limit=left, seed=int(opts.get("seed", 0)),
                                       num_workers=workers(opts.get("num_workers", 0)))
        info["request_level"] = {"status": sub.status, "termination": sub.termination}
        if sub.plan is not None:
            plan, objective, info["plan_from"] = sub.plan, sub.objective, "cpsat (request level)"
            term += f"; plan from the request-level CP-SAT ({sub.termination})"
        elif sub.status == "infeasible":
            term += f"; request-level CP-SAT: {sub.termination}"
            return account(inst, "aggregated", SolveOutcome("infeasible", None, None, None, term),
                           None, None, db, history, info)
    history.append((time.perf_counter() - t_start, objective, db["bound"]))
    outcome = SolveOutcome("feasible" if plan is not None else "no_solution", None, None, None, term)
    return account(inst, "aggregated", outcome, plan, objective, db, history, info)
