"""Compiled (numba) kernels of the live policies: the same decisions as the Python reference code
in the policy modules (greedy, lpt, locality, bandwidth_aware, dist_sched), bit for bit - the
same floating-point steps, the same ties - only faster. ``tests/heuristics/test_kernels.py``
checks that kernel and reference give identical plans on many seeded random instances.

The general (prefill, decode) choice. A choice's finish time is the largest of
- A_p: the prefill cluster's compute after this request (less its cached prefix blocks),
- B_d: the decode cluster's compute and KV memory-time after it,
- L_ab: the busiest link of the route between the two datacenters after carrying its KV
  (0 inside a datacenter),
and for a mixed cluster serving the whole request, max(A_p + decode work, B_p). The link term
depends on the datacenter pair only, and the valid pairs are role compatible pairs between
reachable datacenters, except two different mixed clusters. So per request the best finish is a
minimum over datacenter pairs (a, b) of max(min A over a's prefill-only or mixed clusters,
min B over b's decode-only or mixed clusters, L_ab) over the three role combinations (prefill-
only x decode-only, prefill-only x mixed, mixed x decode-only), and over the mixed clusters
alone: O(C + DC^2) instead of O(C^2). The reference's tie rule (the first choice in p-major
order) is then found by a scan that stops at the first prefill cluster that reaches the best.
Where the instance's routes do not depend on the datacenter pair only, ``prepare`` returns None
and the policies use the Python reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from planner.heuristics.common import chain_repeats, choice_pairs
from planner.instance import Instance
from planner.metrics import compute_capacity, kv_fit_bytes, memory_capacity

PO, DO, MX = 0, 1, 2  # prefill-only, decode-only, mixed
INF = np.inf


@dataclass
class Prepared:
    """The Instance's arrays in the form the kernels take (built once per call)."""

    prompt: np.ndarray
    output: np.ndarray
    kvb: np.ndarray
    pre_tps: np.ndarray
    dec_tps: np.ndarray
    cap: np.ndarray
    step: np.ndarray
    memcap: np.ndarray
    kvpt: float
    pre_rate: np.ndarray
    kind: np.ndarray
    cdc: np.ndarray
    n_dc: int
    reach: np.ndarray  # (n_dc, n_dc) bool
    rptr: np.ndarray  # CSR of links per datacenter pair a * n_dc + b
    rlinks: np.ndarray
    inv_bw: np.ndarray
    has_links: bool
    has_choice: np.ndarray  # prefill clusters with at least one valid choice
    use_prefix: bool
    bptr: np.ndarray
    bid: np.ndarray  # dense block ids
    btok: np.ndarray  # tokens a held block saves (prefix_arrays' last: repeats zero)
    dup: np.ndarray
    n_blocks: int
    kvcap: np.ndarray  # KV bytes one replica holds, with metrics.kv_fits' tolerance


def prefix_arrays(inst: Instance) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                           int, np.ndarray]:
    """(caching on, CSR pointer, dense block ids, block tokens, duplicate tokens, block count,
    tokens a held block saves: zero at a repeat within its chain, which is in the duplicate
    tokens already): the rule of :class:`planner.heuristics.common.Prefixes`."""
    on = bool(inst.prefix_caching and inst.prefix_blocks.size)
    ptr = np.ascontiguousarray(inst.prefix_ptr, np.int64)
    if inst.prefix_blocks.size:
        uniq, bid = np.unique(inst.prefix_blocks, return_inverse=True)
        bid = bid.ravel().astype(np.int64)
        nb = int(uniq.size)
    else:
        bid, nb = np.zeros(0, np.int64), 0
    btok = np.ascontiguousarray(inst.prefix_block_tokens, np.float64)
    dup, saves = chain_repeats(inst)
    return on, ptr, bid, btok, dup, nb, saves


def prepare(inst: Instance) -> Prepared | None:
    """Kernel arrays, or None when the routes are not a function of the datacenter pair."""
    c = inst.n_clusters
    p, d = choice_pairs(inst)
    if p.size == 0:
        return None
    kind = np.where(inst.can_prefill & inst.can_decode, MX,
                    np.where(inst.can_prefill, PO, DO)).astype(np.int64)
    cdc = np.asarray(inst.cluster_dc, np.int64)
    n_dc = int(cdc.max()) + 1
    # the valid pairs must be "role compatible and the datacenters reachable"
    reach = np.zeros((n_dc, n_dc), bool)
    reach[cdc[p], cdc[d]] = True
    model = (inst.can_prefill[:, None] & inst.can_decode[None, :]
             & reach[cdc[:, None], cdc[None, :]])
    mixed = kind == MX
    both = mixed[:, None] & mixed[None, :]
    np.fill_diagonal(both, False)
    model &= ~both
    valid = np.zeros((c, c), bool)
    valid[p, d] = True
    if not np.array_equal(model, valid):
        return None
    # one route per datacenter pair
    n_links = inst.n_links
    rptr = np.zeros(n_dc * n_dc + 1, np.int64)
    rl: list[np.ndarray] = []
    if n_links:
        rows = inst.pair_links[p * c + d].astype(bool)
        key = cdc[p] * n_dc + cdc[d]
        rep = np.zeros((n_dc * n_dc, n_links), bool)
        rep[key] = rows
        if not np.array_equal(rep[key], rows):
            return None
        if np.any(rows[cdc[p] == cdc[d]]):
            return None  # links inside a datacenter: not the model
        for k in range(n_dc * n_dc):
            ls = np.flatnonzero(rep[k])
            rl.append(ls)
            rptr[k + 1] = rptr[k] + ls.size
        has_links = bool(rows.any())
        inv_bw = 1.0 / inst.bandwidth_Bps
    else:
        has_links = False
        inv_bw = np.zeros(0)
    rlinks = np.concatenate(rl).astype(np.int64) if rl else np.zeros(0, np.int64)
    has_choice = np.zeros(c, bool)
    has_choice[p] = True
    on, bptr, bid, _, dup, nb, saves = prefix_arrays(inst)
    cap = np.asarray(compute_capacity(inst), np.float64)
    pre_tps = np.asarray(inst.prefill_tps, np.float64)
    return Prepared(
        prompt=np.asarray(inst.prompt_tokens, np.float64),
        output=np.asarray(inst.output_tokens, np.float64),
        kvb=np.asarray(inst.kv_bytes, np.float64), pre_tps=pre_tps,
        dec_tps=np.asarray(inst.decode_tps, np.float64), cap=cap,
        step=np.asarray(inst.step_full_s, np.float64),
        memcap=np.asarray(memory_capacity(inst), np.float64),
        kvpt=float(inst.kv_bytes_per_token),
        pre_rate=(1.0 / pre_tps) / cap,  # as prefill_seconds(inst, 1, c) / cap
        kind=kind, cdc=cdc, n_dc=n_dc, reach=reach, rptr=rptr, rlinks=rlinks,
        inv_bw=np.asarray(inv_bw, np.float64), has_links=has_links, has_choice=has_choice,
        use_prefix=on, bptr=bptr, bid=bid, btok=saves, dup=dup, n_blocks=nb,
        kvcap=kv_fit_bytes(inst))


MODE_GREEDY, MODE_LOCALITY, MODE_BANDWIDTH = 0, 1, 2


def run_general(pr: Prepared, order: np.ndarray, mode: int = MODE_GREEDY, weight: float = 1.0,
                limit: float = INF, horizon: float | None = None):
    """Place requests in ``order``: (prefill, decode, refused flag, comp, mem, link, matched)."""
    return _general(np.ascontiguousarray(order, np.int64), pr.prompt, pr.output, pr.kvb,
                    pr.pre_tps, pr.dec_tps, pr.cap, pr.step, pr.memcap, pr.kvpt, pr.pre_rate,
                    pr.kind, pr.cdc, pr.n_dc, pr.reach, pr.rptr, pr.rlinks, pr.inv_bw,
                    pr.has_links, pr.has_choice, pr.use_prefix, pr.bptr, pr.bid, pr.btok, pr.dup,
                    pr.n_blocks, mode, float(weight), float(limit),
                    -1.0 if horizon is None else float(horizon), pr.kvcap)


@njit(cache=True)
def _cost(f, pen_on, pen):
    if pen_on:
        return f * pen
    return f


@njit(cache=True)
def _general(order, prompt, output, kvb, pre_tps, dec_tps, cap, step, memcap, kvpt, pre_rate,
             kind, cdc, n_dc, reach, rptr, rlinks, inv_bw, has_links, has_choice, use_prefix,
             bptr, bid, btok, dup, n_blocks, mode, weight, limit, horizon, kvcap):
    n = prompt.size
    c = cap.size
    n_links = inv_bw.size
    comp = np.zeros(c)
    mem = np.zeros(c)
    link = np.zeros(n_links)
    pick_p = np.full(n, -1, np.int64)
    pick_d = np.full(n, -1, np.int64)
    refused = np.zeros(n, np.bool_)
    hold = np.zeros((max(n_blocks, 1), c), np.bool_)
    pre = np.empty(c)
    dec = np.empty(c)
    minc = np.empty(c)
    A = np.empty(c)
    B = np.empty(c)
    S = np.empty(c)
    saved = np.empty(c)
    allowed = np.empty(c, np.bool_)
    mask = np.empty(c, np.bool_)
    m2 = np.empty(c, np.bool_)
    minA = np.empty((n_dc, 3))
    minB = np.empty((n_dc, 3))
    L = np.zeros((n_dc, n_dc))
    pen = np.ones((n_dc, n_dc))
    n_pre = 0
    for k in range(c):
        if kind[k] != DO:
            n_pre += 1
    ms = 0.0
    matched = 0
    for i in range(n):
        r = order[i]
        Pt = prompt[r]
        Dt = output[r]
        # prefix: tokens saved on each cluster, and (locality) the longest-match filter
        restricted = False  # locality: the choices narrowed to the longest prefix match
        for k in range(c):
            saved[k] = 0.0
            allowed[k] = kind[k] != DO
        if use_prefix:
            a0, b0 = bptr[r], bptr[r + 1]
            for q in range(a0, b0):
                blk = bid[q]
                t = btok[q]
                for k in range(c):
                    if hold[blk, k]:
                        saved[k] += t
            if dup[r] != 0.0:
                for k in range(c):
                    saved[k] += dup[r]
            if mode == MODE_LOCALITY and a0 < b0:
                for k in range(c):
                    mask[k] = kind[k] != DO
                for q in range(a0, b0):
                    blk = bid[q]
                    cnt = 0
                    for k in range(c):
                        m2[k] = mask[k] and hold[blk, k]
                        if m2[k]:
                            cnt += 1
                    if cnt == 0:
                        break
                    for k in range(c):
                        mask[k] = m2[k]
                cnt = 0
                for k in range(c):
                    if mask[k]:
                        cnt += 1
                if cnt != n_pre:
                    restricted = True
                    for k in range(c):
                        allowed[k] = mask[k]
        for _attempt in range(2):  # the second: locality's match held nothing that fits
            for k in range(c):
                if kind[k] != DO:
                    pre[k] = (Pt / pre_tps[k]) / cap[k] - saved[k] * pre_rate[k]
                    A[k] = comp[k] + pre[k]
            best = INF
            bp = -1
            bd = -1
            if Dt <= 0.0:
                for k in range(c):
                    if allowed[k] and has_choice[k]:
                        f = A[k]
                        if f <= limit and f < best:
                            best = f
                            bp = k
            else:
                for k in range(c):
                    if kind[k] != PO:
                        dec[k] = (Dt / dec_tps[k]) / cap[k]
                        mi = (kvpt * (Pt + Dt / 2.0) * (Dt * step[k])) / memcap[k]
                        minc[k] = mi
                        B[k] = max(comp[k] + dec[k], mem[k] + mi)
                        if (Pt + Dt) * kvpt > kvcap[k]:  # its KV does not fit a replica of k
                            B[k] = INF
                        if kind[k] == MX:
                            S[k] = max(A[k] + dec[k], B[k])
                for a in range(n_dc):
                    for t in range(3):
                        minA[a, t] = INF
                        minB[a, t] = INF
                for k in range(c):
                    a = cdc[k]
                    kk = kind[k]
                    if kk != DO and allowed[k] and A[k] < minA[a, kk]:
                        minA[a, kk] = A[k]
                    if kk != PO and B[k] < minB[a, kk]:
                        minB[a, kk] = B[k]
                pen_on = False
                if has_links:
                    kv = kvb[r]
                    for a in range(n_dc):
                        for b in range(n_dc):
                            lo, hi = rptr[a * n_dc + b], rptr[a * n_dc + b + 1]
                            x = 0.0
                            for q in range(lo, hi):
                                ln = rlinks[q]
                                y = link[ln] + kv * inv_bw[ln]
                                if y > x:
                                    x = y
                            L[a, b] = x
                    if mode == MODE_BANDWIDTH:
                        ref = horizon if horizon >= 0.0 else ms
                        if ref > 0.0:
                            pen_on = True
                            for a in range(n_dc):
                                for b in range(n_dc):
                                    u = min(L[a, b] / ref, 0.99)
                                    pen[a, b] = 1.0 + weight * u / (1.0 - u)
                for a in range(n_dc):
                    for b in range(n_dc):
                        if not reach[a, b]:
                            continue
                        lab = L[a, b]
                        for t in range(3):
                            if t == 0:
                                x, y = minA[a, PO], minB[b, DO]
                            elif t == 1:
                                x, y = minA[a, PO], minB[b, MX]
                            else:
                                x, y = minA[a, MX], minB[b, DO]
                            f = max(max(x, y), lab)
                            if f <= limit:
                                cst = _cost(f, pen_on, pen[a, b])
                                if cst < best:
                                    best = cst
                for k in range(c):
                    if kind[k] == MX and allowed[k]:
                        f = S[k]
                        if f <= limit:
                            cst = _cost(f, pen_on, pen[cdc[k], cdc[k]])
                            if cst < best:
                                best = cst
                if best < INF:
                    # the first choice (p-major, then d) reaching the best cost
                    for p in range(c):
                        if kind[p] == DO or not allowed[p]:
                            continue
                        a = cdc[p]
                        ap = A[p]
                        hit = False
                        if kind[p] == MX and S[p] <= limit and \
                                _cost(S[p], pen_on, pen[a, a]) == best:
                            hit = True
                        if not hit:
                            for b in range(n_dc):
                                if not reach[a, b]:
                                    continue
                                f = max(max(ap, minB[b, DO]), L[a, b])
                                if f <= limit and _cost(f, pen_on, pen[a, b]) == best:
                                    hit = True
                                    break
                                if kind[p] == PO:
                                    f = max(max(ap, minB[b, MX]), L[a, b])
                                    if f <= limit and _cost(f, pen_on, pen[a, b]) == best:
                                        hit = True
                                        break
                        if not hit:
                            continue
                        for d in range(c):
                            kd = kind[d]
                            if kd == PO:
                                continue
                            if d == p:
                                f = S[p]
                            elif kd == MX and kind[p] == MX:
                                continue
                            else:
                                b = cdc[d]
                                if not reach[a, b]:
                                    continue
                                f = max(max(ap, B[d]), L[a, b])
                            if f <= limit and _cost(f, pen_on, pen[a, cdc[d]]) == best:
                                bp = p
                                bd = d
                                break
                        if bp >= 0:
                            break
            if bp >= 0 or not restricted:
                break
            restricted = False
            for k in range(c):
                allowed[k] = kind[k] != DO
        if restricted:
            matched += 1
        if bp < 0:
            refused[r] = True
            continue
        p = bp
        comp[p] += pre[p]
        if comp[p] > ms:
            ms = comp[p]
        if use_prefix:
            for q in range(bptr[r], bptr[r + 1]):
                hold[bid[q], p] = True
        pick_p[r] = p
        if Dt > 0.0:
            d = bd
            pick_d[r] = d
            comp[d] += dec[d]
            mem[d] += minc[d]
            ms = max(ms, max(comp[d], mem[d]))
            if has_links and cdc[p] != cdc[d]:
                kv = kvb[r]
                ab = cdc[p] * n_dc + cdc[d]
                for q in range(rptr[ab], rptr[ab + 1]):
                    ln = rlinks[q]
                    link[ln] += kv * inv_bw[ln]
                    if link[ln] > ms:
                        ms = link[ln]
    return pick_p, pick_d, refused, comp, mem, link, matched


@njit(cache=True)
def _drain(c, now, head, qt, qnext, cnt):
    h = head[c]
    while h >= 0 and qt[h] <= now:
        h = qnext[h]
        cnt[c] -= 1
    head[c] = h


@njit(cache=True)
def _push(c, t, head, tail, qt, qnext, cnt, top):
    qt[top] = t
    qnext[top] = -1
    if head[c] < 0:
        head[c] = top
    else:
        qnext[tail[c]] = top
    tail[c] = top
    cnt[c] += 1
    return top + 1


@njit(cache=True)
def _pair_load(p, d, now, count_requests, head, qt, qnext, cnt, work):
    """dist_sched's load of a (prefill, decode) choice: requests in flight on both clusters at
    ``now`` (queues drained), or their booked work in seconds."""
    if count_requests:
        _drain(p, now, head, qt, qnext, cnt)
        x = float(cnt[p])
        if d != p:
            _drain(d, now, head, qt, qnext, cnt)
            x += float(cnt[d])
        return x
    return work[p] + (work[d] if d != p else 0.0)


@njit(cache=True)
def dist_sched_kernel(order, cell, cp, cd, ncand, pre_rate, dec_rate, prompt, output, arrival,
                      use_prefix, bptr, bid, n_blocks, count_requests, balance_abs, balance_rel,
                      c, kvpt, kvcap, pa, pd):
    """dist_sched (see :mod:`planner.heuristics.dist_sched`), by arrival position: (prefill,
    decode, branch). In-flight requests per cluster: the completion times a cluster is given
    never decrease (a FIFO clock), so its queue is a linked list drained from the head."""
    n = order.size
    kmax = cp.shape[1]
    pick_p = np.empty(n, np.int64)
    pick_d = np.empty(n, np.int64)
    branch = np.zeros(n, np.int8)
    hold = np.zeros((max(n_blocks, 1), c), np.bool_)
    busy = np.zeros(c)
    work = np.zeros(c)
    head = np.full(c, -1, np.int64)
    tail = np.full(c, -1, np.int64)
    cnt = np.zeros(c, np.int64)
    qt = np.empty(2 * n + 1)
    qnext = np.empty(2 * n + 1, np.int64)
    top = 0
    loads = np.empty(kmax)
    elig = np.empty(kmax, np.bool_)
    new = np.empty(kmax, np.bool_)
    for i in range(n):
        r = order[i]
        now = arrival[r]
        cl = cell[i]
        k = ncand[cl]
        hi = -np.inf
        lo = np.inf
        n_ok = 0
        for t in range(k):
            p = cp[cl, t]
            d = cd[cl, t]
            # a candidate whose decode replica cannot hold the request's KV is not one
            elig[t] = output[r] <= 0.0 or (prompt[r] + output[r]) * kvpt <= kvcap[d]
            if not elig[t]:
                continue
            n_ok += 1
            x = _pair_load(p, d, now, count_requests, head, qt, qnext, cnt, work)
            loads[t] = x
            hi = max(hi, x)
            lo = min(lo, x)
        if n_ok == 0:  # no candidate holds it: the least-loaded choice that does (a retry)
            p = -1
            d = -1
            bl = np.inf
            for t in range(pa.size):
                dd = pd[t]
                if (prompt[r] + output[r]) * kvpt > kvcap[dd]:
                    continue
                pp = pa[t]
                x = _pair_load(pp, dd, now, count_requests, head, qt, qnext, cnt, work)
                if x < bl:
                    bl = x
                    p = pp
                    d = dd
            branch[i] = 2
            if p < 0:  # no replica holds it: refused
                pick_p[i] = -1
                pick_d[i] = -1
                continue
        else:
            start = i % k
            if hi - lo > balance_abs and hi > balance_rel * lo:
                branch[i] = 1
            elif use_prefix:
                for q in range(bptr[r], bptr[r + 1]):  # longest leading run held by a candidate
                    blk = bid[q]
                    anyh = False
                    for t in range(k):
                        new[t] = elig[t] and hold[blk, cp[cl, t]]
                        anyh = anyh or new[t]
                    if not anyh:
                        break
                    for t in range(k):
                        elig[t] = new[t]
            best = -1
            for s in range(k):
                t = start + s
                if t >= k:
                    t -= k
                if elig[t] and (best < 0 or loads[t] < loads[best]):
                    best = t
            p = cp[cl, best]
            d = cd[cl, best]
        wp = prompt[r] * pre_rate[p]
        wd = output[r] * dec_rate[d]
        if count_requests:
            if d == p:
                tt = max(now, busy[p]) + wp + wd
                busy[p] = tt
                top = _push(p, tt, head, tail, qt, qnext, cnt, top)
            else:
                tt = max(now, busy[p]) + wp
                busy[p] = tt
                top = _push(p, tt, head, tail, qt, qnext, cnt, top)
                tt = max(tt, busy[d]) + wd
                busy[d] = tt
                top = _push(d, tt, head, tail, qt, qnext, cnt, top)
        else:
            work[p] += wp
            work[d] += wd
        if use_prefix:
            for q in range(bptr[r], bptr[r + 1]):
                hold[bid[q], p] = True
        pick_p[i] = p
        pick_d[i] = d
    return pick_p, pick_d, branch


@njit(cache=True)
def cache_aware_kernel(order, p_arr, d_arr, prompt, output, arrival, kvb, pre_tps, dec_tps, cap,
                       memcap, active_den, use_prefix, bptr, bid, btok, n_blocks, dynamo,
                       w_prefix, w_queue, w_kv, overlap_weight, block_tokens, kvpt, kvcap):
    """cache_aware (see :mod:`planner.heuristics.cache_aware`): (prefill, decode) by request.
    In-flight requests per cluster: a FIFO clock (completion times never decrease), drained
    from the head; ``kv`` is the KV bytes the in-flight requests hold."""
    n = order.size
    c = cap.size
    nk = p_arr.size
    pick_p = np.full(n, -1, np.int64)
    pick_d = np.full(n, -1, np.int64)
    hold = np.zeros((max(n_blocks, 1), c), np.bool_)
    busy = np.zeros(c)
    kv = np.zeros(c)
    head = np.full(c, -1, np.int64)
    tail = np.full(c, -1, np.int64)
    cnt = np.zeros(c, np.int64)
    qt = np.empty(2 * n + 1)
    qkv = np.empty(2 * n + 1)
    qnext = np.empty(2 * n + 1, np.int64)
    top = 0
    q = np.empty(c)
    kvu = np.empty(c)
    depth = np.zeros(c)
    alive = np.empty(c, np.bool_)
    qc = np.empty(nk)
    fit = np.empty(nk, np.bool_)
    for i in range(n):
        r = order[i]
        now = arrival[r]
        n_fit = 0  # the choices whose decode replica holds the request's KV (a filter, as llm-d's)
        for t in range(nk):
            fit[t] = output[r] <= 0.0 or (prompt[r] + output[r]) * kvpt <= kvcap[d_arr[t]]
            if fit[t]:
                n_fit += 1
        for k in range(c):
            h = head[k]
            while h >= 0 and qt[h] <= now:
                kv[k] -= qkv[h]
                h = qnext[h]
                cnt[k] -= 1
            head[k] = h
            q[k] = float(cnt[k])
            kvu[k] = kv[k] / memcap[k]
            depth[k] = 0.0
        if use_prefix:  # tokens of the longest leading run each cluster holds
            acc = 0.0
            left = c
            for k in range(c):
                alive[k] = True
            for s in range(bptr[r], bptr[r + 1]):
                blk = bid[s]
                for k in range(c):
                    if alive[k] and not hold[blk, k]:
                        alive[k] = False
                        depth[k] = acc
                        left -= 1
                acc += btok[s]
                if left == 0:
                    break
            for k in range(c):
                if alive[k]:
                    depth[k] = acc
        if n_fit == 0:  # no replica holds it: refused
            continue
        P = prompt[r]
        best = 0
        if not dynamo:
            hi = -np.inf
            lo = np.inf
            for t in range(nk):
                if not fit[t]:
                    continue
                p = p_arr[t]
                d = d_arr[t]
                x = q[p] if p == d else (q[p] + q[d]) / 2.0
                qc[t] = x
                hi = max(hi, x)
                lo = min(lo, x)
            span = hi - lo
            pm = max(P, 1.0)
            bs = -np.inf
            for t in range(nk):
                if not fit[t]:
                    continue
                p = p_arr[t]
                qs = (hi - qc[t]) / span if span > 0 else 1.0
                sc = w_prefix * (depth[p] / pm) + w_queue * qs + w_kv * (1.0 - kvu[d_arr[t]])
                if sc > bs:
                    bs = sc
                    best = t
        else:
            bs = np.inf
            for t in range(nk):
                if not fit[t]:
                    continue
                d = d_arr[t]
                sc = overlap_weight * ((P - depth[p_arr[t]]) / block_tokens) + kv[d] / active_den[d]
                if sc < bs:
                    bs = sc
                    best = t
        p = p_arr[best]
        d = d_arr[best]
        if use_prefix:
            for s in range(bptr[r], bptr[r + 1]):
                hold[bid[s], p] = True
        Dt = output[r]
        kvr = kvb[r] if Dt > 0 else 0.0
        wp = (P / pre_tps[p]) / cap[p]
        if p == d:
            load = wp + (Dt / dec_tps[p]) / cap[p]
            tt = max(now, busy[p]) + load
            busy[p] = tt
            top = _push(p, tt, head, tail, qt, qnext, cnt, top)
            qkv[top - 1] = kvr
            kv[p] += kvr
        else:
            tt = max(now, busy[p]) + wp
            busy[p] = tt
            top = _push(p, tt, head, tail, qt, qnext, cnt, top)
            qkv[top - 1] = 0.0
            kv[p] += 0.0
            tt = max(max(now, busy[p]), busy[d]) + (Dt / dec_tps[d]) / cap[d]
            busy[d] = tt
            top = _push(d, tt, head, tail, qt, qnext, cnt, top)
            qkv[top - 1] = kvr
            kv[d] += kvr
        pick_p[r] = p
        pick_d[r] = d if Dt > 0 else -1
    return pick_p, pick_d


@njit(cache=True)
def _less(hv, hk, i, j):
    return hv[i] < hv[j] or (hv[i] == hv[j] and hk[i] < hk[j])


@njit(cache=True)
def _sift_down(hv, hk, size, i):
    while True:
        a = 2 * i + 1
        if a >= size:
            return
        if a + 1 < size and _less(hv, hk, a + 1, a):
            a += 1
        if not _less(hv, hk, a, i):
            return
        hv[i], hv[a] = hv[a], hv[i]
        hk[i], hk[a] = hk[a], hk[i]
        i = a


@njit(cache=True)
def _sift_up(hv, hk, i):
    while i > 0:
        a = (i - 1) // 2
        if not _less(hv, hk, i, a):
            return
        hv[i], hv[a] = hv[a], hv[i]
        hk[i], hk[a] = hk[a], hk[i]
        i = a


@njit(cache=True)
def pool_kernel(ap_l, ad_l, m_l, dec_l, c):
    """Greedy's pool path (:func:`planner.heuristics.greedy._pool`) compiled: a heap of
    (compute load, cluster) with stale entries, the same steps as Python's ``heapq``."""
    n = ap_l.size
    comp = np.zeros(c)
    mem = np.zeros(c)
    hv = np.zeros(c + n)
    hk = np.empty(c + n, np.int64)
    for k in range(c):
        hk[k] = k
    size = c
    pick = np.empty(n, np.int64)
    for i in range(n):
        ap = ap_l[i]
        ad = ad_l[i]
        m = m_l[i]
        lc, k = hv[0], hk[0]
        while lc != comp[k]:  # a stale entry of a cluster placed off the top
            size -= 1
            hv[0], hk[0] = hv[size], hk[size]
            _sift_down(hv, hk, size, 0)
            lc, k = hv[0], hk[0]
        f = lc + ap + ad
        if not dec_l[i] or f >= mem[k] + m:
            comp[k] = f
            hv[0] = f
            _sift_down(hv, hk, size, 0)
        else:
            best = np.inf
            k = -1
            for j in range(c):
                x = max(comp[j] + ap + ad, mem[j] + m)
                if x < best:
                    best = x
                    k = j
            comp[k] = comp[k] + ap + ad
            hv[size], hk[size] = comp[k], k
            size += 1
            _sift_up(hv, hk, size - 1)
        mem[k] += m
        pick[i] = k
    return pick, max(comp.max(), mem.max())
