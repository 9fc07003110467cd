"""Local search on a request-level ``makespan`` plan, aimed at a lower bound: the incumbent the
exact backends are warm-started with.

Every request sits on one valid (prefill, decode) pair; its load vector over the resources
(compute and KV memory of every cluster, every link) comes from the model's coefficients (hence
from :mod:`planner.metrics`). The search lowers the potential ``sum_r max(0, load_r - target)^2``
with the best single move (one request to another pair) or, when no move helps, the best swap of
the pairs of two requests; it stops when every load is within ``target`` (then the plan is within
the bound's tolerance), when nothing improves, or at its time limit. With prefix sharing a
shared block costs its prefill once on each cluster that prefills a request holding it (the
model's ``y``): single moves are scored with the blocks they open and close, swaps are chosen
without them and kept only if the exact potential falls. The plan it returns is always
re-scored by the evaluator.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from planner.exact._model import PlacementModel
from planner.exact.work import clock_cut
from planner.metrics import kv_fits, prefill_seconds
from planner.plan import Plan

log = logging.getLogger(__name__)

# the search holds a few (requests x pairs x resources) float arrays, its peak about 4 x cells
# x 8 bytes (measured by review): above this many cells (about 650 MB at peak) it is skipped,
# the plan returned as given (large-synthetic, 120,000 requests on 16 clusters: 504 M cells,
# 4.0 GB per array)
MAX_CELLS = 20_000_000


def _pairs(model: PlacementModel) -> list[tuple[int, int]]:
    inst = model.inst
    pairs = [(p, d) for p in model.P for d in model.D if inst.reachable[p, d]]
    return pairs + [(p, -1) for p in model.P]


def cells(model: PlacementModel) -> int:
    """The size of the search's (requests x pairs x resources) arrays."""
    inst = model.inst
    return model.items.n * len(_pairs(model)) * (2 * inst.n_clusters + inst.n_links)


def _contributions(model: PlacementModel) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray]:
    """(n, K, R) load of each request on each pair, the K pairs, and (n, K) validity."""
    inst, it = model.inst, model.items
    c, nl = inst.n_clusters, inst.n_links
    pairs = _pairs(model)
    n, k, r = it.n, len(pairs), 2 * c + nl
    out = np.zeros((n, k, r))
    ok = np.zeros((n, k), bool)
    for j, (p, d) in enumerate(pairs):
        if d < 0:
            sel = ~it.has_dec
            out[sel, j, p] = it.pre[sel, p]
            ok[sel, j] = True
            continue
        sel = it.has_dec.copy()
        if it.need_tokens is not None:  # only where the request's KV fits the replica
            sel &= kv_fits(inst, it.need_tokens, d)
        out[sel, j, p] += it.pre[sel, p]
        out[sel, j, d] += it.dec[sel, d]
        out[sel, j, c + d] += it.mem[sel, d]
        if nl:
            route = inst.pair_links[p * c + d]
            out[sel, j, 2 * c:] += it.kvb[sel, None] * (route / inst.bandwidth_Bps)[None, :]
        ok[sel, j] = True
    return out, pairs, ok


class _Blocks:
    """Shared blocks on clusters: ``count[g, c]`` requests holding block g prefilled on c; the
    block's prefill load (the model's ``y`` coefficient) is paid on c while the count is
    positive."""

    def __init__(self, model: PlacementModel, pairs: list[tuple[int, int]], cur: np.ndarray,
                 n_rows: int):
        it, inst = model.items, model.inst
        c = inst.n_clusters
        self.pp = np.array([p for p, _ in pairs], np.int64)  # each pair's prefill cluster
        # (request, block) once each: a chain may list a hash twice (found by review: the
        # block then never closed when that request left, and opened twice)
        g_all = max(1, int(it.block_tok.shape[0]))
        owner = np.repeat(np.arange(it.n), np.diff(it.block_ptr))
        key = np.unique(owner * g_all + it.block_idx.astype(np.int64))
        self.owner, self.blk = key // g_all, key % g_all
        self.ptr = np.searchsorted(self.owner, np.arange(it.n + 1))
        self.bl = (prefill_seconds(inst, it.block_tok[:, None], np.arange(c)[None, :])
                   / inst.replicas[None, :].astype(float))  # (G, C)
        self.count = np.zeros((it.block_tok.shape[0], c), np.int64)
        np.add.at(self.count, (self.blk, self.pp[cur][self.owner]), 1)
        self.n, self.c, self.r = it.n, c, n_rows

    def load(self) -> np.ndarray:
        out = np.zeros(self.r)
        out[:self.c] = (self.bl * (self.count > 0)).sum(axis=0)
        return out

    def deltas(self, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n,) block load each request alone keeps open on its cluster, and (n, C) the block
        load it would open on each cluster were it moved there."""
        p_e = self.pp[cur][self.owner]
        e = np.arange(self.blk.shape[0])
        alone = (self.count[self.blk, p_e] == 1) * self.bl[self.blk, p_e]
        kept = np.bincount(self.owner, alone, minlength=self.n)
        cnt = self.count[self.blk]
        cnt[e, p_e] -= 1
        w = (cnt == 0) * self.bl[self.blk]
        opened = np.stack([np.bincount(self.owner, w[:, k], minlength=self.n)
                           for k in range(self.c)], axis=1)
        return kept, opened

    def move(self, i: int, j_old: int, j_new: int) -> None:
        g = self.blk[self.ptr[i]:self.ptr[i + 1]]
        self.count[g, self.pp[j_old]] -= 1
        self.count[g, self.pp[j_new]] += 1


def improve_makespan(model: PlacementModel, plan: Plan, target: float, time_limit: float,
                     seed: int = 0, max_stall: int = 200, max_swap: int = 400,
                     max_moves: int | None = None) -> Plan:
    """A plan whose loads are all within ``target`` if the search finds one, else the best
    (by the makespan above ``target``, then the potential) it reached. ``max_moves``: stop
    after that many iterations (a work limit: the result is then the clock's only when
    ``time_limit`` ends the search first, which :func:`planner.exact.work.clock_cut` records)."""
    it = model.items
    if model.inst.objective != "makespan" or it.n == 0:
        return plan
    size = cells(model)
    if size > MAX_CELLS:
        log.info("local search skipped: %d cells above %d", size, MAX_CELLS)
        return plan
    t_end = time.perf_counter() + max(0.0, time_limit)
    cont, pairs, ok = _contributions(model)
    index = {pq: j for j, pq in enumerate(pairs)}
    n = it.n
    fallback = np.argmin(np.where(ok, cont.max(axis=2), np.inf), axis=1)  # unplaced requests
    cur = np.array([index.get((int(p), int(d) if it.has_dec[i] else -1), int(fallback[i]))
                    for i, (p, d) in enumerate(zip(plan.prefill, plan.decode, strict=True))])
    rows = np.arange(n)
    off = ~ok[rows, cur]  # a start on a pair the request may not use (its KV does not fit)
    cur[off] = fallback[off]
    blocks = _Blocks(model, pairs, cur, cont.shape[2]) if it.n_blocks > 0 else None
    kk = np.arange(len(pairs)) if blocks is not None else None
    load = cont[rows, cur].sum(axis=0)
    if blocks is not None:
        load = load + blocks.load()
    big = np.where(ok, 0.0, np.inf)

    def pot(x: np.ndarray) -> np.ndarray:
        return (np.maximum(0.0, x - target) ** 2).sum(axis=-1)

    def exact_load() -> np.ndarray:
        out = cont[rows, cur].sum(axis=0)
        return out + blocks.load() if blocks is not None else out

    def relocate(i: int, j: int) -> None:
        if blocks is not None:
            blocks.move(i, int(cur[i]), j)
        cur[i] = j

    rng = np.random.default_rng(seed)
    phi = float(pot(load))
    best_cur, best_key = cur.copy(), (max(float(load.max()), target), phi)
    stall = moves = 0
    budget = max_moves if max_moves is not None else float("inf")
    while phi > 0 and moves < budget:
        if time.perf_counter() >= t_end:
            if max_moves is not None:
                clock_cut("local search")
            break
        moves += 1
        mine = cont[rows, cur]  # (n, R)
        base = load[None, :] - mine  # without request i
        # best single move
        if blocks is None:
            cand = pot(base[:, None, :] + cont) + big  # (n, K)
        else:  # with the blocks each request alone holds on its cluster, and those it opens
            kept, opened = blocks.deltas(cur)
            base[rows, blocks.pp[cur]] -= kept
            moved = base[:, None, :] + cont
            moved[:, kk, blocks.pp] += opened[:, blocks.pp]
            cand = pot(moved) + big
        i, j = np.unravel_index(int(np.argmin(cand)), cand.shape)
        if cand[i, j] < phi * (1 - 1e-12):
            relocate(int(i), int(j))
            load = base[i] + cont[i, j] if blocks is None else exact_load()
            phi = float(pot(load))
        else:
            # best swap between a request on an overloaded resource and any other request
            over = np.flatnonzero(load > target)
            touch = np.flatnonzero((mine[:, over] > 0).any(axis=1))
            best = (phi * (1 - 1e-12), -1, -1)
            for a in rng.permutation(touch)[:max_swap]:
                ja = cur[a]
                okb = ok[a, cur] & ok[rows, ja]
                new = (load[None, :] - mine[a][None, :] - mine + cont[a, cur]
                       + cont[rows, ja])
                val = pot(new)
                val[~okb] = np.inf
                val[a] = np.inf
                b = int(np.argmin(val))
                if val[b] < best[0]:
                    best = (float(val[b]), int(a), b)
            if best[1] >= 0 and blocks is not None:
                # chosen without the blocks: kept only if the exact potential falls
                _, a, b = best
                ja, jb = int(cur[a]), int(cur[b])
                relocate(a, jb)
                relocate(b, ja)
                new = exact_load()
                if float(pot(new)) < phi * (1 - 1e-12):
                    load = new
                else:
                    relocate(a, ja)
                    relocate(b, jb)
                    best = (best[0], -1, -1)
            elif best[1] >= 0:
                _, a, b = best
                ja, jb = int(cur[a]), int(cur[b])
                load = load - mine[a] - mine[b] + cont[a, jb] + cont[b, ja]
                relocate(a, jb)
                relocate(b, ja)
            if best[1] < 0:
                stall += 1
                if stall > max_stall:
                    break
                # perturb: move a random request touching an overloaded resource
                a = int(rng.choice(touch)) if touch.size else int(rng.integers(n))
                choices = np.flatnonzero(ok[a])
                j = int(rng.choice(choices))
                step = load - mine[a] + cont[a, j]
                relocate(a, j)
                load = step if blocks is None else exact_load()
                phi = float(pot(load))
                continue
            phi = float(pot(load))
        key = (max(float(load.max()), target), phi)
        if key < best_key:
            best_key, best_cur = key, cur.copy()
    pre = np.array([pairs[j][0] for j in best_cur], np.int64)
    dec = np.array([pairs[j][1] for j in best_cur], np.int64)
    return Plan(pre, dec)
