"""Helpers shared by the live policies: the online load state every policy updates as it places
requests, the choice set of (prefill, decode) pairs, per-request increments, prefix holders and
an in-flight (queue) tracker.

The state mirrors :func:`planner.metrics.evaluate_arrays` exactly (same formulas from
:mod:`planner.metrics`, same prefix-caching rule: a block is paid once per cluster, by its first
holder), so a policy's own account of the loads equals the evaluator's when requests are placed
in index order (the tests check it).
"""

from __future__ import annotations

import heapq

import numpy as np

from planner.instance import Instance
from planner.metrics import (
    compute_capacity,
    decode_residency_seconds,
    decode_work_seconds,
    kv_fit_bytes,
    kv_memory_time,
    kv_misfits,
    kv_need_bytes,
    memory_capacity,
    prefill_seconds,
)
from planner.scenario.errors import OptionError, Problem

INF = float("inf")


def prefill_clusters(inst: Instance) -> np.ndarray:
    return np.flatnonzero(inst.can_prefill)


def decode_clusters(inst: Instance) -> np.ndarray:
    return np.flatnonzero(inst.can_decode)


def arrival_order(inst: Instance) -> np.ndarray:
    """Requests in arrival order (ties by position): what an online policy sees."""
    return np.argsort(inst.arrival_s, kind="stable")


def transfer_bytes(inst: Instance, prompt: np.ndarray | float) -> np.ndarray:
    """KV bytes a prefill of ``prompt`` tokens ships to its decode cluster (as Instance.kv_bytes)."""
    return np.asarray(prompt, np.float64) * inst.kv_bytes_per_token


def choice_pairs(inst: Instance) -> tuple[np.ndarray, np.ndarray]:
    """The (prefill, decode) choices of the live policies, p-major: every valid pair except
    splitting one request over two *different* mixed clusters (a mixed cluster serves a whole
    request, or one phase next to a prefill-only / decode-only cluster)."""
    valid = inst.valid_pairs.copy()
    mixed = inst.can_prefill & inst.can_decode
    both = mixed[:, None] & mixed[None, :]
    np.fill_diagonal(both, False)
    valid &= ~both
    p, d = np.nonzero(valid)
    return p.astype(np.int64), d.astype(np.int64)


def fit_plan(inst: Instance, prefill: np.ndarray, decode: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, int]:
    """A policy's plan with every request decoded where its KV fits, as a router does when a
    replica rejects a request as too large: it retries on the decode cluster, reachable from
    the request's prefill cluster, with the largest replica KV (ties: lowest index); failing
    that, on the choice pair (p-major) whose decode cluster holds the most KV; a request no
    cluster holds is refused. Returns (prefill, decode, requests moved or refused)."""
    pre, dec = np.array(prefill, np.int64), np.array(decode, np.int64)
    bad = np.flatnonzero(kv_misfits(inst, pre, dec))
    if bad.size == 0:
        return pre, dec, 0
    cap, need = kv_fit_bytes(inst), kv_need_bytes(inst)[bad]
    cp, cd = choice_pairs(inst)
    rank = np.lexsort((cd, -cap[cd]))  # choices by decode KV, largest first
    cp, cd = cp[rank], cd[rank]
    # each prefill cluster's first choice holds the most KV among its choices, and choice 0
    # the most of all: a request fits one of them or none
    first = np.full(inst.n_clusters, -1, np.int64)
    ps, at = np.unique(cp, return_index=True)
    first[ps] = at
    here = first[pre[bad]]
    k = np.where((here >= 0) & (need <= cap[cd[np.maximum(here, 0)]]), here,
                 np.where(need <= cap[cd[0]], 0, -1))
    pre[bad] = np.where(k >= 0, cp[k], -1)
    dec[bad] = np.where(k >= 0, cd[k], -1)
    return pre, dec, int(bad.size)


def parse_floats(text: str, option: str = "edges") -> np.ndarray | None:
    """"1,2,3" -> array; "" -> None (options from the CLI arrive as strings). Bucket edges are
    finite, non-negative and strictly increasing; anything else raises OptionError naming
    ``option``."""
    text = str(text).strip()
    if not text:
        return None
    try:
        out = np.array([float(x) for x in text.replace(";", ",").split(",") if x.strip()])
    except ValueError:
        raise OptionError("options", [Problem(option, "expected comma-separated numbers",
                                              text)]) from None
    why = ("must be finite" if not np.isfinite(out).all() else
           "must not be negative" if (out < 0).any() else
           "must be strictly increasing" if (np.diff(out) <= 0).any() else None)
    if why:
        raise OptionError("options", [Problem(option, why, text)])
    return out


def cluster_set(inst: Instance, text: str, option: str, role: str) -> np.ndarray:
    """Comma-separated cluster names -> their indices; an unknown name, or a cluster that cannot
    take ``role`` ("prefill" or "decode"), raises OptionError naming ``option``."""
    names = [x.strip() for x in str(text).split(",") if x.strip()]
    able = inst.can_prefill if role == "prefill" else inst.can_decode
    problems = []
    for name in names:
        if name not in inst.cluster_names:
            problems.append(Problem(option, "unknown cluster (known: "
                                    f"{', '.join(inst.cluster_names)})", name))
        elif not able[inst.cluster_index(name)]:
            problems.append(Problem(option, f"cluster cannot {role}", name))
    if problems:
        raise OptionError("options", problems)
    return np.array([inst.cluster_index(x) for x in names], np.int64)


class Increments:
    """Per-request, per-cluster load increments in seconds of load (vectorized over a chunk)."""

    def __init__(self, inst: Instance):
        self.inst = inst
        c = inst.n_clusters
        self.cl = np.arange(c)
        self.cap = compute_capacity(inst)
        self.memcap = memory_capacity(inst)
        self.pre_rate = prefill_seconds(inst, np.ones(c), self.cl) / self.cap  # per token

    def rows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prefill, decode, memory) load added on each cluster by requests ``idx``, shape
        (len(idx), C); prefill counts every prompt token (no cache)."""
        inst, cl = self.inst, self.cl[None, :]
        p = inst.prompt_tokens[idx].astype(np.float64)[:, None]
        o = inst.output_tokens[idx].astype(np.float64)[:, None]
        pre = prefill_seconds(inst, p, cl) / self.cap
        dec = decode_work_seconds(inst, o, cl) / self.cap
        mem = kv_memory_time(inst, p, o, cl) / self.memcap
        return pre, dec, mem

    def each(self, order: np.ndarray, chunk: int = 2048):
        """Requests in ``order`` with their rows of :meth:`rows`: ``(r, pre, dec, mem)``, each row
        of length C, computed a chunk at a time (the online loop of the Python reference paths)."""
        for s in range(0, len(order), chunk):
            idx = order[s:s + chunk]
            pre, dec, mem = self.rows(idx)
            for j, r in enumerate(idx.tolist()):
                yield r, pre[j], dec[j], mem[j]


def chain_repeats(inst: Instance) -> tuple[np.ndarray, np.ndarray]:
    """Per request, the tokens of blocks its own chain repeats (saved wherever it is
    prefilled); per chain entry, the tokens that block saves where a cluster holds it: zero at a
    repeat, which the first list counts already (counting it again made the policies' loads
    fall short of the evaluator's, 1.024 against 1.536 s; found by review)."""
    dup = np.zeros(inst.n_requests)
    saves = np.asarray(inst.prefix_block_tokens, np.float64).copy()
    if inst.prefix_caching and inst.prefix_blocks.size:
        own = inst.prefix_owner
        key = own * (int(inst.prefix_blocks.max()) + 1) + inst.prefix_blocks
        _, first = np.unique(key, return_index=True)
        rep = np.ones(key.size, bool)
        rep[first] = False
        if rep.any():
            dup = np.bincount(own[rep], weights=inst.prefix_block_tokens[rep],
                              minlength=inst.n_requests).astype(np.float64)
            saves[rep] = 0.0
    return dup, saves


class Prefixes:
    """Which cluster holds which prefix block (the evaluator's caching rule, incrementally)."""

    def __init__(self, inst: Instance):
        self.inst = inst
        self.on = bool(inst.prefix_caching and inst.prefix_blocks.size)
        self.ptr = inst.prefix_ptr.tolist()
        self.blocks = inst.prefix_blocks.tolist()
        self.btok = inst.prefix_block_tokens.tolist()
        self.holders: dict[int, int] = {}  # block -> bitmask of clusters holding it
        self.dup, saves = chain_repeats(inst)
        self.dup_l = self.dup.tolist()
        self.saves = saves.tolist()

    def chain(self, r: int) -> tuple[list[int], list[int]]:
        a, b = self.ptr[r], self.ptr[r + 1]
        return self.blocks[a:b], self.btok[a:b]

    def saved(self, r: int, c: int) -> float:
        """Prompt tokens request r would not prefill on cluster c (cached blocks)."""
        if not self.on:
            return 0.0
        bit = 1 << c
        a, b = self.ptr[r], self.ptr[r + 1]
        h = self.holders
        s = self.dup_l[r]
        for k in range(a, b):
            if h.get(self.blocks[k], 0) & bit:
                s += self.saves[k]
        return s

    def saved_all(self, r: int, n: int) -> np.ndarray | None:
        """Saved tokens on every cluster (None when nothing is cached for r)."""
        if not self.on:
            return None
        a, b = self.ptr[r], self.ptr[r + 1]
        out = None
        for k in range(a, b):
            m = self.holders.get(self.blocks[k], 0)
            if m:
                if out is None:
                    out = np.zeros(n)
                bits = np.array([(m >> c) & 1 for c in range(n)], np.float64)
                out += bits * self.saves[k]
        if self.dup_l[r]:
            out = (np.zeros(n) if out is None else out) + self.dup_l[r]
        return out

    def match(self, r: int, mask: int) -> tuple[int, float]:
        """Longest prefix match: (bitmask of the clusters in ``mask`` holding the longest
        leading run of r's blocks, tokens of that run). (mask, 0) when nothing matches."""
        a, b = self.ptr[r], self.ptr[r + 1]
        h = self.holders
        depth = 0.0
        for k in range(a, b):
            m2 = mask & h.get(self.blocks[k], 0)
            if not m2:
                break
            mask = m2
            depth += self.btok[k]
        return mask, depth

    def add(self, r: int, c: int) -> None:
        if not self.on:
            return
        bit = 1 << c
        h = self.holders
        for k in range(self.ptr[r], self.ptr[r + 1]):
            blk = self.blocks[k]
            h[blk] = h.get(blk, 0) | bit


class LoadState:
    """Loads in seconds (compute, KV memory per cluster; links), updated request by request,
    and the finish time each choice would reach with one more request."""

    def __init__(self, inst: Instance, pairs: tuple[np.ndarray, np.ndarray] | None = None):
        self.inst = inst
        c = inst.n_clusters
        self.inc = Increments(inst)
        self.pre_rate = self.inc.pre_rate
        self.comp = np.zeros(c)
        self.mem = np.zeros(c)
        self.link = np.zeros(inst.n_links)
        self.inv_bw = 1.0 / inst.bandwidth_Bps if inst.n_links else np.zeros(0)
        self.prefixes = Prefixes(inst)
        self.p, self.d = choice_pairs(inst) if pairs is None else pairs
        self.same = self.p == self.d
        # distinct routes among the choices (a route = a set of links)
        inc = inst.pair_links[self.p * c + self.d] if inst.n_links else np.zeros((len(self.p), 0))
        routes, self.route_of = np.unique(inc.astype(bool), axis=0, return_inverse=True)
        self.route_of = self.route_of.ravel()
        self.routes = routes
        self.route_links = [np.flatnonzero(row) for row in routes]
        self.has_links = bool(inc.any())
        self.prefill_only = np.unique(self.p)
        self.kvcap = kv_fit_bytes(inst)
        self.need = kv_need_bytes(inst)

    def makespan(self) -> float:
        return float(max(self.comp.max(initial=0.0), self.mem.max(initial=0.0),
                         self.link.max(initial=0.0)))

    def route_finish(self, kv: float) -> np.ndarray:
        """Per distinct route: the largest link load on it after carrying ``kv`` bytes."""
        after = self.link + kv * self.inv_bw
        return np.array([after[ls].max() if ls.size else 0.0 for ls in self.route_links])

    def finish(self, r: int, pre: np.ndarray, dec: np.ndarray, mem: np.ndarray,
               sel: np.ndarray | None = None) -> np.ndarray:
        """Finish time of every choice (or of choices ``sel``) for request r, whose per-cluster
        increments (no cache) are ``pre``, ``dec``, ``mem``."""
        p, d, same = self.p, self.d, self.same
        route = self.route_of
        if sel is not None:
            p, d, same, route = p[sel], d[sel], same[sel], route[sel]
        saved = self.prefixes.saved_all(r, self.inst.n_clusters)
        if saved is not None:
            pre = pre - saved * self.pre_rate
        comp = self.comp
        if self.inst.output_tokens[r] <= 0:
            return comp[p] + pre[p]
        fp = comp[p] + pre[p]
        fd = np.maximum(comp[d] + dec[d], self.mem[d] + mem[d])
        fd = np.where(self.need[r] > self.kvcap[d], INF, fd)  # its KV does not fit d
        f = np.maximum(np.where(same, fp + dec[d], fp), fd)
        if self.has_links:
            f = np.maximum(f, self.route_finish(float(self.inst.kv_bytes[r]))[route])
        return f

    def assign(self, r: int, p: int, d: int, pre_p: float, dec_d: float, mem_d: float) -> None:
        """Place request r on (p, d); ``pre_p`` is its uncached prefill increment on p."""
        self.comp[p] += pre_p - self.prefixes.saved(r, p) * self.pre_rate[p]
        self.prefixes.add(r, p)
        if self.inst.output_tokens[r] > 0 and d >= 0:
            self.comp[d] += dec_d
            self.mem[d] += mem_d
            if self.has_links and self.inst.cluster_dc[p] != self.inst.cluster_dc[d]:
                row = self.inst.pair_links[p * self.inst.n_clusters + d]
                self.link += row * (float(self.inst.kv_bytes[r]) * self.inv_bw)


class InFlight:
    """Requests in flight per cluster, from a virtual FIFO clock: cluster c works off its load
    at one second of load per second, so a request placed at time t finishes at
    max(t, busy_until[c]) + its load. Used for queue lengths (SGLang, llm-d) and active KV."""

    def __init__(self, n: int):
        self.busy = [0.0] * n
        self.heaps: list[list[tuple[float, float]]] = [[] for _ in range(n)]
        self.kv = [0.0] * n  # KV bytes held by in-flight requests

    def count(self, c: int, now: float) -> int:
        h = self.heaps[c]
        while h and h[0][0] <= now:
            self.kv[c] -= heapq.heappop(h)[1]
        return len(h)

    def add(self, c: int, now: float, load: float, kv: float = 0.0) -> None:
        t = max(now, self.busy[c]) + load
        self.busy[c] = t
        heapq.heappush(self.heaps[c], (t, kv))
        self.kv[c] += kv


def residency(inst: Instance, output: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    return decode_residency_seconds(inst, output, cluster)
