"""The discrete-event replay of a plan: arrivals, prefill, KV transfer over shared links,
continuous-batching decode with KV growth, preemption, prefix caching, queue policies, rebalancing.

Semantics (all service times come from :mod:`planner.metrics` and the cluster's step model):

- A request arrives at ``arrival_s`` at its prefill cluster and waits on one replica (the one with
  the least queued prefill seconds). A prefill replica runs one prefill at a time, taking
  ``prefill_seconds(uncached tokens)``; uncached = prompt minus the tokens of the longest chain of
  its prefix blocks found in that replica's LRU prefix cache.
- Prefill-only requests (``output_tokens == 0``) complete when their prefill ends. Others send
  their KV (``kv_bytes``) over every link of the route (max-min fair sharing of the links, or
  FIFO reservation, see config), then wait the route latency, then join the waiting queue of a
  replica of the decode cluster (least committed KV tokens). On a mixed cluster that decodes
  its own prefills the request joins the decode queue directly and its prefill runs when it is
  admitted (the replica pauses its decode batch meanwhile: prefill first, as vLLM does).
- A decode replica runs iterations (steps); at each step boundary it retires finished requests,
  preempts while the next step would overflow its KV capacity, then admits waiting requests in
  queue order (head-of-line) while the batch size, the token budget and memory allow. A running
  request that has generated g tokens holds ``kv * (prompt + g)`` bytes, and a step allocates the
  slot of the token it produces, so during the step that produces token g+1 it holds
  ``kv * (prompt + g + 1)``. Output token k of a request is produced by its k-th decode step; TTFT
  is the end of the first one (arrival to first output token), TPOT the mean gap after it.
- Preemption picks the lowest priority (largest ``priority`` value), latest admitted request;
  ``recompute`` frees its KV and re-queues it to prefill prompt + generated tokens on that replica
  when re-admitted; ``swap`` pauses the replica to copy its KV to host memory and back on re-entry.
  A request that cannot fit alone in a replica's KV capacity is marked ``too_large``.

Events: between two events of a replica its batch is fixed, each request gains one token per step
and the memory grows linearly, so the replica jumps straight to the next step boundary where
something happens (a completion, the step where memory would overflow, a threshold crossing, or
an admission when something is waiting). A step counter ``S`` per replica and an aggregate
``A = sum(prompt + g_join - S_join)`` give the memory ``kv * (A + b * S)`` in O(1).

Why the fluid makespan of :func:`planner.metrics.evaluate_arrays` is a lower bound of the replay's
makespan (with ``decode_step="full"``, the default):
- compute: every replica runs one thing at a time (a prefill, a swap, or a decode step). A step of
  a batch of b <= B requests takes ``step_s(B)`` and yields b tokens, so each token costs at least
  ``step_s(B) / B = 1 / decode_tokens_per_s``: the decode work of the evaluator. Prefills pay at
  least the evaluator's uncached tokens: the evaluator pays each distinct prefix block once per
  cluster, the replay at least once (per replica caches, LRU evictions, recomputes add more).
  So the busy time summed over a cluster's replicas is at least the evaluator's replica-seconds,
  its largest replica's busy time at least their mean, the compute load.
- memory: a request decoding D tokens holds ``kv * (P + t + 1)`` during its t-th step of
  ``step_s(B)`` seconds: ``sum_t (P + t + 1) = D * (P + (D + 1) / 2) >= D * (P + D / 2)``, so its
  byte-seconds are at least the evaluator's ``kv * (P + D/2) * D * step_s(B)``. A replica never
  holds more than its capacity, so a cluster's byte-seconds are at most
  ``replicas * capacity * makespan``: the memory load is at most the makespan.
- links: a link never carries more than its bandwidth, and carries every byte of the plan.
Arrivals and queueing only delay. With ``decode_step="linear"`` a small batch steps faster than
``step_s(B)``: the compute and link parts still hold (``step_s(b) / b >= step_s(B) / B`` for a
linear step with a non-negative base) but a request then holds its KV for less than the fluid
residency, so the memory part can fail.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections import OrderedDict

import numpy as np

from planner.instance import Instance
from planner.metrics import prefill_seconds
from planner.plan import Plan
from planner.scenario.errors import Problem, ScenarioError
from planner.simulate.config import ReplayConfig
from planner.simulate.result import STATUS_NAMES, LinkStats, Replay, ReplicaStats, downsample

log = logging.getLogger(__name__)

ARRIVE, WAKE, PREFILL_DONE, XFER, READY, REBALANCE = range(6)
PENDING, DONE, REFUSED, TOO_LARGE = range(4)
EXPORT, JOIN = 0, 1  # queue job kinds: a prefill whose KV leaves the replica; a decode admission
EPS = 1e-9
RESOLUTION = 1e-4  # float64 must resolve a decode step to this fraction at the replay's horizon
DEFAULT_PREFILL_BUDGET = 8192


def max_min_rates(routes: list[tuple[int, ...]], bw: list[float]) -> list[float]:
    """Max-min fair rates of transfers sharing links (progressive filling): repeatedly take the
    link with the smallest equal share of its remaining bandwidth among its unsettled transfers,
    settle those at that share and take it off every link of their routes. The result is the
    unique allocation where each transfer has a bottleneck: a full link on which no transfer
    moves faster. Bandwidth a transfer cannot use (it is held back elsewhere) goes to the others.
    ``routes``: link indices per transfer, none empty."""
    rate = [0.0] * len(routes)
    left = [float(b) for b in bw]
    users: dict[int, list[int]] = {}
    for f, route in enumerate(routes):
        for lk in route:
            users.setdefault(lk, []).append(f)
    count = {lk: len(fs) for lk, fs in users.items()}
    settled = [False] * len(routes)
    while count:
        lk = min(count, key=lambda k: left[k] / count[k])
        share = max(left[lk], 0.0) / count[lk]
        for f in users[lk]:
            if settled[f]:
                continue
            settled[f] = True
            rate[f] = share
            for k in routes[f]:
                left[k] -= share
                count[k] -= 1
                if count[k] == 0:
                    del count[k]
    return rate


class _Replica:
    __slots__ = ("rid", "cid", "index", "name", "cap_tokens", "cap_bytes", "bcap", "can_decode",
                 "prefill_tps", "sec_per_tok", "step_full", "base", "per", "full", "q", "batch", "b", "A",
                 "done", "cross", "pend_first", "S_e", "t_e", "step_e", "wake_t", "ver",
                 "committed", "backlog", "cache", "cache_tokens", "cache_cap", "preemptions",
                 "busy", "mem_t", "mem_v", "peak", "long", "served")

    def step(self, b: int) -> float:
        return self.step_full if self.full else self.base + self.per * b


class Simulator:
    """One replay; :func:`run` is the entry point."""

    def __init__(self, inst: Instance, plan: Plan, cfg: ReplayConfig):
        self.inst = inst
        self.cfg = cfg
        n, c = inst.n_requests, inst.n_clusters
        self.n = n
        self.kv = float(inst.kv_bytes_per_token)
        self.P = inst.prompt_tokens.tolist()
        self.D = inst.output_tokens.tolist()
        self.prio = inst.priority.tolist()
        self.pre = plan.prefill.tolist()
        self.dec = plan.decode.tolist()
        # times run from the first served arrival (``t0``): arrivals at epoch seconds or
        # nanoseconds would leave no float64 resolution for steps of milliseconds
        served = plan.prefill >= 0
        self.t0 = float(inst.arrival_s[served].min()) if served.any() else 0.0
        if not math.isfinite(self.t0):
            self.t0 = 0.0  # a non-finite arrival: _check_resolution names it
        self.arr = (inst.arrival_s - self.t0).tolist()
        self.file = "<scenario>" if inst.scenario.path is None else str(inst.scenario.path)
        self.host_bw = cfg.host_bandwidth_gb_s * 1e9
        self.heap: list = []
        self.seq = 0
        self.events = 0
        # per request state
        self.g = [0] * n
        self.need_pre = [0] * n
        self.need_swap = [0.0] * n
        self.join_S = [0] * n
        self.join_g = [0] * n
        self.jid = [0] * n
        self.rep_of = [-1] * n
        self.est = [0.0] * n  # queued prefill seconds (dispatch backlog)
        self.pin = [-1] * n
        self.rank = [-1] * n
        nan = math.nan
        self.t_pre0 = [nan] * n
        self.t_pre1 = [nan] * n
        self.t_ready = [nan] * n
        self.t_dec0 = [nan] * n
        self.t_first = [nan] * n
        self.t_done = [nan] * n
        self.cached = [0] * n
        self.npre = [0] * n
        self.status = [PENDING] * n
        self.pre_rep = [-1] * n
        self.pre_rid = [-1] * n
        self.dec_rep = [-1] * n
        # replicas
        sc = inst.scenario
        self.reps: list[_Replica] = []
        self.cluster_reps: list[list[int]] = []
        budget = cfg.max_batched_tokens
        for ci in range(c):
            cl = sc.clusters[ci]
            ids = []
            nrep = int(inst.replicas[ci])
            for k in range(nrep):
                rp = _Replica()
                rp.rid, rp.cid, rp.index = len(self.reps), ci, k
                rp.name = f"{inst.cluster_names[ci]}#{k}"
                rp.cap_bytes = float(inst.kv_capacity_bytes[ci])
                rp.cap_tokens = rp.cap_bytes / self.kv
                bmax = int(inst.max_batch[ci])
                rp.bcap = min(bmax, budget) if budget else bmax
                rp.can_decode = bool(inst.can_decode[ci])
                rp.prefill_tps = float(inst.prefill_tps[ci])
                rp.sec_per_tok = float(prefill_seconds(inst, 1.0, ci))  # linear in tokens
                rp.step_full = float(inst.step_full_s[ci])
                rp.base, rp.per = cl.decode_step_base_s, cl.decode_step_per_seq_s
                rp.full = cfg.decode_step == "full"
                rp.q, rp.batch, rp.b, rp.A = [], {}, 0, 0.0
                rp.done, rp.cross, rp.pend_first = [], [], []
                rp.S_e, rp.t_e, rp.step_e = 0, 0.0, rp.step(0) or 1.0
                rp.wake_t, rp.ver = None, 0
                rp.committed, rp.backlog = 0.0, 0.0
                rp.cache = OrderedDict()
                rp.cache_tokens = 0
                rp.cache_cap = (cfg.prefix_cache_tokens if cfg.prefix_cache_tokens is not None
                                else int(0.2 * rp.cap_tokens))
                rp.preemptions, rp.busy, rp.served = 0, 0.0, 0
                rp.mem_t, rp.mem_v, rp.peak = [0.0], [0.0], 0.0
                rp.long = (cfg.rebalance == "cache_threshold" and rp.can_decode and nrep > 1
                           and k >= nrep - min(cfg.long_replicas, nrep - 1))
                self.reps.append(rp)
                ids.append(rp.rid)
            self.cluster_reps.append(ids)
        # prefix blocks
        self.use_cache = bool(inst.prefix_caching and inst.prefix_blocks.size)
        if self.use_cache:
            self.ptr = inst.prefix_ptr.tolist()
            self.blocks = inst.prefix_blocks.tolist()
            self.btok = inst.prefix_block_tokens.tolist()
        # admission and plan order
        order = plan.order or {}
        adm = cfg.admission
        if adm == "auto":
            adm = "reserve" if "reserve" in (order.get("_admission") or []) else "greedy"
        self.reserve = adm == "reserve"
        self.admission = adm
        by_name = {r.name: r.rid for r in self.reps}
        cindex = {nm: i for i, nm in enumerate(inst.cluster_names)}
        elsewhere: dict[str, list[int]] = {}  # listed under a cluster they do not decode on
        for key, rows in order.items():
            if key.startswith("_"):
                continue
            if key in by_name:
                rid = by_name[key]
                for pos, r in enumerate(rows):
                    r = int(r)
                    if 0 <= r < n and self.dec[r] == self.reps[rid].cid:
                        self.pin[r] = rid
                        self.rank[r] = pos
                    else:
                        elsewhere.setdefault(key, []).append(r)
            elif key in cindex:
                for pos, r in enumerate(rows):
                    r = int(r)
                    if 0 <= r < n and self.dec[r] == cindex[key]:
                        if self.rank[r] < 0:
                            self.rank[r] = pos
                    else:
                        elsewhere.setdefault(key, []).append(r)
            else:
                log.warning("plan order key %r names no cluster or replica: ignored", key)
        for key, rows in elsewhere.items():
            log.warning("plan order %s lists %d requests it does not decode (first: index %d): "
                        "ignored", key, len(rows), rows[0])
        # links
        self.L = inst.n_links
        self.bw = inst.bandwidth_Bps.tolist()
        cc = c
        self.route: dict[int, tuple[int, ...]] = {}
        for pair in np.flatnonzero(inst.pair_links.any(axis=1)) if self.L else []:
            self.route[int(pair)] = tuple(np.flatnonzero(inst.pair_links[pair]).tolist())
        self.cc = cc
        self.lat = inst.route_latency_s
        self.link_bytes = [0.0] * self.L
        self.link_t = [[0.0] for _ in range(self.L)]
        self.link_u = [[0.0] for _ in range(self.L)]
        self.link_free = [0.0] * self.L
        self.active: dict[int, list] = {}  # fair sharing: r -> [remaining bytes, links, rate]
        self.x_last = 0.0
        self.x_ver = 0
        self.link_load = [0.0] * self.L  # current sum of rates
        self._check_resolution(plan)

    def _field(self, ci: int, name: str) -> str:
        sc = self.inst.scenario
        cl = sc.clusters[ci]
        j = [c.name for c in sc.clusters if c.datacenter == cl.datacenter].index(cl.name)
        return f"datacenters[{sc.datacenters.index(cl.datacenter)}].clusters[{j}].{name}"

    def _check_resolution(self, plan: Plan) -> None:
        """Raise ScenarioError when float64 cannot tell the replay's decode steps apart at the
        times it reaches (a step below the resolution of the clock stalls the replay, a step near
        it gives garbage latencies). The clock's reach is bounded by the arrivals' span plus all
        the work done one piece after another; the error names the largest part."""
        inst = self.inst
        pre, dec = plan.prefill, plan.decode
        served = pre >= 0
        arr = inst.arrival_s
        bad = np.flatnonzero(served & ~np.isfinite(arr))
        if bad.size:
            raise ScenarioError(self.file, [Problem("workload", f"request {inst.ids[bad[0]]}: "
                                                    "arrival time is not a finite number of "
                                                    "seconds", float(arr[bad[0]]))])
        decoding = served & (dec >= 0) & (inst.output_tokens > 0)
        if not decoding.any():
            return  # every event ends a prefill: the replay advances without steps
        c = inst.n_clusters
        pc, dc = np.maximum(pre, 0), np.maximum(dec, 0)
        parts: list[tuple[float, str, str, object]] = []  # seconds, what, field, its value
        if served.any():
            last = int(np.flatnonzero(served)[np.argmax(arr[served])])
            parts.append((float(arr[last]) - self.t0, "the arrivals span", "workload",
                          float(arr[last])))
        with np.errstate(over="ignore", invalid="ignore"):
            pre_s = np.where(served, prefill_seconds(inst, inst.prompt_tokens.astype(np.float64),
                                                     pc), 0.0)
            dec_s = np.where(decoding, inst.output_tokens * inst.step_full_s[dc], 0.0)
            pre_c = np.bincount(pc, weights=pre_s, minlength=c)
            dec_c = np.bincount(dc, weights=dec_s, minlength=c)
            names = inst.cluster_names
            for ci in range(c):
                parts.append((float(pre_c[ci]), f"the prefills on {names[ci]} take",
                              self._field(ci, "prefill_tokens_per_s"),
                              float(inst.prefill_tps[ci])))
                parts.append((float(dec_c[ci]), f"the decodes on {names[ci]} take",
                              self._field(ci, "decode_tokens_per_s"), float(inst.decode_tps[ci])))
            moved = decoding & (pre != dec)
            if self.L and moved.any():
                use = inst.pair_links[pc[moved] * c + dc[moved]]  # (moved requests, links)
                secs = (inst.kv_bytes[moved][:, None] * use).sum(axis=0) / inst.bandwidth_Bps
                for lk in range(self.L):
                    parts.append((float(secs[lk]), f"the KV transfers over {inst.link_names[lk]} "
                                  "take", f"links[{lk}].bandwidth_gbps",
                                  inst.scenario.links[lk].bandwidth_gbps))
            lat = float(inst.route_latency_s[pc[decoding], dc[decoding]].sum())
            parts.append((lat, "the route latencies add", "links", lat))
            horizon = float(sum(p[0] for p in parts))
        used = np.unique(dc[decoding])
        if self.cfg.decode_step == "full":
            steps = inst.step_full_s[used]
        else:
            sc = inst.scenario
            steps = np.array([sc.clusters[i].decode_step_base_s + sc.clusters[i].decode_step_per_seq_s
                              for i in used.tolist()])
        k = int(np.argmin(steps))
        q = float(steps[k])
        ulp = math.ulp(horizon) if math.isfinite(horizon) else math.inf
        if q > 0 and ulp > RESOLUTION * q:
            sec, why, field_, value = max(parts, key=lambda p: p[0] if math.isfinite(p[0])
                                          else math.inf)
            raise ScenarioError(self.file, [Problem(
                field_, f"the replay cannot time this plan: {why} {sec:.3g} s, so its clock "
                f"reaches {horizon:.3g} s, where float64 resolves {ulp:.3g} s, too coarse for "
                f"the {q:.3g} s decode step of {names[used[k]]}", value)])
        period = self.cfg.rebalance_period_s
        if self.cfg.rebalance == "load_pair" and ulp > period:  # the ticks must advance the clock
            raise ScenarioError(self.file, [Problem(
                "simulate.rebalance_period_s", f"below the {ulp:.3g} s float64 resolution of the "
                f"replay's clock, which reaches {horizon:.3g} s", period)])

    # ------------------------------------------------------------------ helpers
    def push(self, t: float, kind: int, a: int, b: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))

    def key(self, r: int, rp: _Replica, now: float) -> tuple:
        if self.rank[r] >= 0 and (self.pin[r] < 0 or self.pin[r] == rp.rid):
            return (self.prio[r], 0, self.rank[r])
        q = self.cfg.queue
        if q == "fcfs":
            return (self.prio[r], 1, self.arr[r])
        rem = self.D[r] - self.g[r]
        if q == "sjf":
            return (self.prio[r], 1, rem, self.arr[r])
        if q == "aging":
            return (self.prio[r], 1, rem + self.cfg.aging_rate * now, self.arr[r])
        quantum = self.cfg.mlq_quantum
        level = int(math.log2(1 + self.P[r] / quantum)) + self.g[r] // quantum
        return (self.prio[r], 1, level, self.arr[r])

    def enqueue(self, rp: _Replica, r: int, kind: int, now: float) -> None:
        self.seq += 1
        heapq.heappush(rp.q, (self.key(r, rp, now), self.seq, r, kind))
        if kind == EXPORT or self.need_pre[r]:
            est = self.P[r] / rp.prefill_tps
            self.est[r] = est
            rp.backlog += est
        # wake at the next step boundary (now when idle)
        if rp.b == 0 or now <= rp.t_e:
            tw = max(now, rp.t_e)
        else:
            k = math.ceil((now - rp.t_e) / rp.step_e - 1e-9)
            tw = rp.t_e + k * rp.step_e
        if rp.wake_t is None or tw < rp.wake_t - EPS:
            rp.wake_t = tw
            rp.ver += 1
            self.push(tw, WAKE, rp.rid, rp.ver)

    def record_mem(self, rp: _Replica, t: float, tokens: float) -> None:
        v = tokens * self.kv
        if rp.mem_t[-1] != t or rp.mem_v[-1] != v:
            rp.mem_t.append(t)
            rp.mem_v.append(v)

    def cache_lookup(self, rp: _Replica, r: int) -> int:
        """Tokens of the longest chain of r's prefix blocks cached on rp; then caches the chain."""
        if not self.use_cache or rp.cache_cap <= 0:
            return 0
        lo, hi = self.ptr[r], self.ptr[r + 1]
        if lo == hi:
            return 0
        cache = rp.cache
        hit = 0
        chain = True
        for j in range(lo, hi):
            blk = self.blocks[j]
            if blk in cache:
                cache.move_to_end(blk)
                if chain:
                    hit += self.btok[j]
            else:
                chain = False
                cache[blk] = self.btok[j]
                rp.cache_tokens += self.btok[j]
        while rp.cache_tokens > rp.cache_cap and cache:
            _, tok = cache.popitem(last=False)
            rp.cache_tokens -= tok
        return min(hit, self.P[r])

    def pick(self, ci: int, r: int, decode: bool) -> _Replica:
        if decode and self.pin[r] >= 0:
            return self.reps[self.pin[r]]
        cands = self.cluster_reps[ci]
        reps = self.reps
        if decode and self.cfg.rebalance == "cache_threshold":
            want_long = self.P[r] >= self.cfg.long_threshold_tokens
            sub = [i for i in cands if reps[i].long == want_long]
            cands = sub or cands
        if decode:
            return min((reps[i] for i in cands), key=lambda x: x.committed)
        return min((reps[i] for i in cands), key=lambda x: x.backlog)

    # ------------------------------------------------------------------ request flow
    def arrive(self, r: int, t: float) -> None:
        p = self.pre[r]
        if p < 0:
            self.status[r] = REFUSED
            return
        if self.D[r] > 0 and self.dec[r] == p:  # mixed: prefill as part of decode admission
            rp = self.pick(p, r, True)
            self.need_pre[r] = self.P[r]
            rp.committed += self.P[r] + self.D[r]
            self.enqueue(rp, r, JOIN, t)  # ready to decode once its prefill, in a step, ends
        else:
            rp = self.pick(p, r, False)
            self.enqueue(rp, r, EXPORT, t)

    def prefill_done(self, r: int, t: float) -> None:
        if self.D[r] == 0:
            self.finish(r, t, self.reps[self.pre_rid[r]])
            return
        p, d = self.pre[r], self.dec[r]
        links = self.route.get(p * self.cc + d)
        lat = float(self.lat[p, d])
        if not links:
            self.push(t + lat, READY, r)
            return
        nbytes = self.P[r] * self.kv
        for lk in links:
            self.link_bytes[lk] += nbytes
        if self.cfg.link_sharing == "fifo":
            start = max([t] + [self.link_free[lk] for lk in links])
            rate = min(self.bw[lk] for lk in links)
            end = start + nbytes / rate
            for lk in links:
                self.link_free[lk] = end
                self._link_point(lk, start, rate / self.bw[lk])
                self._link_point(lk, end, 0.0)
            self.push(end + lat, READY, r)
            return
        self._x_advance(t)
        self.active[r] = [nbytes, links, 0.0]
        self._x_rates(t)

    def _link_point(self, lk: int, t: float, u: float) -> None:
        ts, us = self.link_t[lk], self.link_u[lk]
        if ts[-1] == t:
            us[-1] = u
        else:
            ts.append(t)
            us.append(u)

    def _x_advance(self, t: float) -> None:
        dt = t - self.x_last
        if dt > 0:
            for st in self.active.values():
                st[0] -= st[2] * dt
        self.x_last = t

    def _x_rates(self, t: float) -> None:
        flows = list(self.active.values())
        rates = max_min_rates([st[1] for st in flows], self.bw)
        load = [0.0] * self.L
        nxt = math.inf
        for st, rate in zip(flows, rates, strict=True):
            st[2] = rate
            for lk in st[1]:
                load[lk] += rate
            nxt = min(nxt, max(st[0], 0.0) / rate)
        for lk in range(self.L):
            if load[lk] != self.link_load[lk]:
                self.link_load[lk] = load[lk]
                self._link_point(lk, t, load[lk] / self.bw[lk])
        self.x_ver += 1
        if self.active:
            self.push(t + nxt, XFER, self.x_ver)

    def xfer(self, ver: int, t: float) -> None:
        if ver != self.x_ver:
            return
        self._x_advance(t)
        # done: a few bytes left, or so little time that t cannot tell it (else t + nxt == t
        # and the transfer would never advance)
        res = math.ulp(t)
        fin = [r for r, st in self.active.items()
               if st[0] <= 1e-6 * max(1.0, st[2]) or st[0] <= st[2] * res]
        for r in fin:
            del self.active[r]
            self.push(t + float(self.lat[self.pre[r], self.dec[r]]), READY, r)
        self._x_rates(t)

    def ready(self, r: int, t: float) -> None:
        self.t_ready[r] = t
        rp = self.pick(self.dec[r], r, True)
        rp.committed += self.P[r] + self.D[r]
        self.enqueue(rp, r, JOIN, t)

    def finish(self, r: int, t: float, rp: _Replica) -> None:
        self.status[r] = DONE
        self.t_done[r] = t
        if math.isnan(self.t_first[r]):
            self.t_first[r] = t
        rp.served += 1

    def abort(self, r: int, t: float, rp: _Replica) -> None:
        log.warning("request %s needs %d KV tokens, more than replica %s holds (%d): dropped",
                    self.inst.ids[r], self.P[r] + self.D[r], rp.name, int(rp.cap_tokens))
        self.status[r] = TOO_LARGE
        self.t_done[r] = math.nan
        rp.committed -= self.P[r] + self.D[r]

    # ------------------------------------------------------------------ the replica
    def _remove(self, rp: _Replica, r: int, S: int) -> int:
        """Take r out of rp's batch at counter S; returns its generated tokens."""
        del rp.batch[r]
        rp.A -= self.P[r] + self.join_g[r] - self.join_S[r]
        rp.b -= 1
        self.rep_of[r] = -1
        return self.join_g[r] + S - self.join_S[r]

    def _fits_reserve(self, rp: _Replica, r: int, S: int) -> bool:
        """The batch with r never exceeds capacity, given every member's remaining tokens."""
        P, D, jg, jS = self.P, self.D, self.join_g, self.join_S
        c = [P[i] + jg[i] + S - jS[i] for i in rp.batch]
        m = [D[i] - (jg[i] + S - jS[i]) for i in rp.batch]
        c.append(P[r] + self.g[r])
        m.append(D[r] - self.g[r])
        ca = np.asarray(c, np.float64)
        ma = np.asarray(m, np.float64)
        o = np.argsort(-ma, kind="stable")
        cs = np.cumsum(ca[o])
        peak = float(np.max(cs + ma[o] * np.arange(1, len(c) + 1)))
        return peak <= rp.cap_tokens + EPS

    def wake(self, rp: _Replica, ver: int, t: float) -> None:
        if ver != rp.ver:
            return
        rp.wake_t = None
        if t < rp.t_e - EPS:  # still paused (prefill or swap): come back when it ends
            rp.wake_t = rp.t_e
            rp.ver += 1
            self.push(rp.t_e, WAKE, rp.rid, rp.ver)
            return
        P, D, cfg = self.P, self.D, self.cfg
        t0, S0, st0 = rp.t_e, rp.S_e, rp.step_e
        S = S0
        if rp.b:
            k = max(0, round((t - t0) / st0))
            S = S0 + k
            rp.busy += k * st0
            if rp.pend_first:
                keep = []
                for r in rp.pend_first:
                    if self.rep_of[r] != rp.rid:
                        continue
                    s1 = self.join_S[r] + 1
                    if s1 <= S:
                        self.t_first[r] = t0 + (s1 - S0) * st0
                    else:
                        keep.append(r)
                rp.pend_first = keep
            held = rp.A + rp.b * S
            if held > rp.peak:
                rp.peak = held
            self.record_mem(rp, t, held)
        # completions
        done = rp.done
        while done and done[0][0] <= S:
            sf, r, j = heapq.heappop(done)
            if self.rep_of[r] != rp.rid or self.jid[r] != j:
                continue
            self._remove(rp, r, S)
            self.g[r] = D[r]
            rp.committed -= P[r] + D[r]
            self.finish(r, t0 + (sf - S0) * st0, rp)
        # migrations past the KV threshold (cache_threshold rebalancing)
        cross = rp.cross
        while cross and cross[0][0] <= S:
            _, r, j = heapq.heappop(cross)
            if self.rep_of[r] != rp.rid or self.jid[r] != j:
                continue
            g = self._remove(rp, r, S)
            self.g[r] = g
            rp.committed -= P[r] + D[r]
            longs = [self.reps[i] for i in self.cluster_reps[rp.cid] if self.reps[i].long]
            target = min(longs, key=lambda x: x.committed) if longs else rp
            self.need_swap[r] += (P[r] + g) * self.kv
            target.committed += P[r] + D[r]
            self.enqueue(target, r, JOIN, t)
        pause = 0.0
        # preemption while the next step would overflow
        preempted = False
        while rp.b and rp.A + rp.b * (S + 1) > rp.cap_tokens + EPS:
            victim = max(rp.batch, key=lambda i: (self.prio[i], self.join_S[i], i))
            g = self._remove(rp, victim, S)
            self.g[victim] = g
            rp.preemptions += 1
            self.npre[victim] += 1
            preempted = True
            if P[victim] + D[victim] > rp.cap_tokens + EPS:
                self.abort(victim, t, rp)
                continue
            if cfg.preemption == "swap":
                nbytes = (P[victim] + g) * self.kv
                pause += nbytes / self.host_bw
                self.need_swap[victim] += nbytes
            else:
                self.need_pre[victim] = P[victim] + g
            self.enqueue(rp, victim, JOIN, t)
        # admission
        budget_hit = False
        q = rp.q
        if not preempted or rp.b == 0:
            budget = cfg.max_batched_tokens or DEFAULT_PREFILL_BUDGET
            used = 0
            n_pre = 0
            while q:
                _, _, r, kind = q[0]
                if kind == EXPORT:
                    if n_pre and (used + P[r] > budget or not rp.can_decode):
                        budget_hit = True
                        break
                    heapq.heappop(q)
                    rp.backlog -= self.est[r]
                    cached = self.cache_lookup(rp, r)
                    tok = P[r] - cached
                    self.cached[r] = cached
                    self.pre_rep[r] = rp.index
                    self.pre_rid[r] = rp.rid
                    self.t_pre0[r] = t + pause
                    pause += tok * rp.sec_per_tok
                    self.t_pre1[r] = t + pause
                    self.push(t + pause, PREFILL_DONE, r)
                    used += tok
                    n_pre += 1
                    continue
                if rp.b >= rp.bcap:
                    break
                g = self.g[r]
                if self.reserve:
                    fits = self._fits_reserve(rp, r, S)
                    if not fits and rp.b == 0:
                        fits = P[r] + g + 1 <= rp.cap_tokens + EPS
                else:
                    fits = rp.A + rp.b * (S + 1) + P[r] + g + 1 <= rp.cap_tokens + EPS
                if not fits:
                    if rp.b == 0:
                        heapq.heappop(q)
                        if self.need_pre[r]:
                            rp.backlog -= self.est[r]
                        self.abort(r, t, rp)
                        continue
                    break
                tok = self.need_pre[r]
                if tok and n_pre and used + tok > budget:
                    budget_hit = True
                    break
                heapq.heappop(q)
                if tok:
                    rp.backlog -= self.est[r]
                    fresh = g == 0 and math.isnan(self.t_pre0[r])
                    if fresh:
                        cached = self.cache_lookup(rp, r)
                        self.cached[r] = cached
                        tok -= cached
                        self.pre_rep[r] = rp.index
                        self.t_pre0[r] = t + pause
                    pause += tok * rp.sec_per_tok
                    if fresh:  # the mixed path: its decode is ready when this prefill ends
                        self.t_pre1[r] = self.t_ready[r] = t + pause
                    used += tok
                    n_pre += 1
                    self.need_pre[r] = 0
                if self.need_swap[r]:
                    pause += self.need_swap[r] / self.host_bw
                    self.need_swap[r] = 0.0
                # join the batch at counter S
                self.jid[r] += 1
                self.join_S[r] = S
                self.join_g[r] = g
                self.rep_of[r] = rp.rid
                rp.batch[r] = None
                rp.A += P[r] + g - S
                rp.b += 1
                heapq.heappush(rp.done, (S + D[r] - g, r, self.jid[r]))
                if g == 0:
                    rp.pend_first.append(r)
                if math.isnan(self.t_dec0[r]):  # after its prefill, when run in this step
                    self.t_dec0[r] = t if math.isnan(self.t_pre1[r]) else max(t, self.t_pre1[r])
                    self.dec_rep[r] = rp.index
                thr = cfg.long_threshold_tokens
                if (cfg.rebalance == "cache_threshold" and not rp.long
                        and P[r] + D[r] > thr and self.pin[r] < 0):
                    sc = S + max(1, thr - P[r] - g)
                    if sc < S + D[r] - g:
                        heapq.heappush(rp.cross, (sc, r, self.jid[r]))
        # the new epoch
        rp.busy += pause
        rp.t_e = t + pause
        rp.S_e = S
        rp.step_e = rp.step(rp.b)
        held = rp.A + rp.b * S
        self.record_mem(rp, t, held)
        if pause > 0:
            self.record_mem(rp, rp.t_e, held)
        tw = None
        if rp.b:
            alloc = held + rp.b
            if alloc > rp.peak:
                rp.peak = alloc
            while done and (self.rep_of[done[0][1]] != rp.rid or self.jid[done[0][1]] != done[0][2]):
                heapq.heappop(done)
            nxt = done[0][0] if done else S + 1
            so = math.floor((rp.cap_tokens + EPS - rp.A) / rp.b - 1) + 1
            nxt = min(nxt, max(so, S + 1))
            while cross and (self.rep_of[cross[0][1]] != rp.rid or self.jid[cross[0][1]] != cross[0][2]):
                heapq.heappop(cross)
            if cross:
                nxt = min(nxt, cross[0][0])
            if budget_hit:
                nxt = S + 1
            tw = rp.t_e + (nxt - S) * rp.step_e
        elif q and (pause > 0 or budget_hit):
            tw = rp.t_e
        if tw is not None:
            rp.wake_t = tw
            rp.ver += 1
            self.push(tw, WAKE, rp.rid, rp.ver)

    # ------------------------------------------------------------------ rebalancing
    def rebalance(self, t: float) -> bool:
        """load_pair: per decode cluster, move waiting requests from the most to the least loaded
        replica (committed KV tokens) while that narrows the gap. True when one moved."""
        any_moved = False
        for ci, ids in enumerate(self.cluster_reps):
            if len(ids) < 2 or not self.inst.can_decode[ci]:
                continue
            reps = [self.reps[i] for i in ids]
            hi = max(reps, key=lambda x: x.committed)
            lo = min(reps, key=lambda x: x.committed)
            if hi is lo or not hi.q:
                continue
            items = sorted(hi.q)
            keep = []
            moved = []
            for item in reversed(items):  # the last in queue order move first
                r, kind = item[2], item[3]
                size = self.P[r] + self.D[r]
                if (kind == JOIN and self.pin[r] < 0 and not self.need_swap[r]
                        and hi.committed - lo.committed > size):
                    hi.committed -= size
                    lo.committed += size
                    if self.need_pre[r]:
                        hi.backlog -= self.est[r]
                    moved.append(r)
                else:
                    keep.append(item)
            if moved:
                any_moved = True
                heapq.heapify(keep)
                hi.q = keep
                for r in moved:
                    self.enqueue(lo, r, JOIN, t)
        return any_moved

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        order = np.argsort(self.inst.arrival_s, kind="stable").tolist()
        arr = self.arr
        heap = self.heap
        reps = self.reps
        ia = 0
        n = self.n
        pop = heapq.heappop
        period = self.cfg.rebalance_period_s if self.cfg.rebalance == "load_pair" else None
        # rebalancing at the multiples of the period on the scenario's clock (as before the
        # clock was rebased to t0, so that the ticks do not move with the first arrival): on the
        # engine's clock at phase + tick * period (no drift from summing the period)
        phase = (-self.t0) % period if period else 0.0
        tick = 0
        next_rb = phase if period else math.inf
        # guard: the events at one instant are a few per request and replica; far more means the
        # clock stopped (a time step below its float64 resolution), which would never end
        stall_limit = 16 * (n + len(reps) + self.L) + 10_000
        t_last, stall = -math.inf, 0
        while True:
            ta = arr[order[ia]] if ia < n else math.inf
            th = heap[0][0] if heap else math.inf
            if ta == math.inf and th == math.inf:
                break
            t_next = min(ta, th)
            if next_rb <= t_next:
                moved = self.rebalance(next_rb)
                tick += 1
                if not moved and t_next < math.inf:
                    # nothing changes before the next event: the ticks until then move nothing
                    # either (a short period must not mean one idle tick per period)
                    tick = max(tick, math.ceil((t_next - phase) / period))
                next_rb = phase + tick * period
                continue
            if t_next == t_last:
                stall += 1
                if stall > stall_limit:
                    raise ScenarioError(self.file, [Problem(
                        "simulate", f"the replay makes no progress: {stall} events at "
                        f"t = {t_next + self.t0:.6g} s (times below the clock's float64 "
                        "resolution?)", t_next + self.t0)])
            else:
                t_last, stall = t_next, 0
            self.events += 1
            if ta <= th:
                self.arrive(order[ia], ta)
                ia += 1
                continue
            t, _, kind, a, b = pop(heap)
            if kind == WAKE:
                self.wake(reps[a], b, t)
            elif kind == PREFILL_DONE:
                self.prefill_done(a, t)
            elif kind == READY:
                self.ready(a, t)
            elif kind == XFER:
                self.xfer(a, t)

    # ------------------------------------------------------------------ the result
    def result(self, wall: float) -> Replay:
        inst = self.inst
        cfg = self.cfg
        names = np.array(list(inst.cluster_names) + [None], dtype=object)
        f = np.array
        t0 = self.t0  # the engine's clock starts at the first served arrival
        arrival = inst.arrival_s.astype(np.float64)
        arr_rel = f(self.arr, np.float64)
        done_rel = f(self.t_done, np.float64)
        first_rel = f(self.t_first, np.float64)
        done_t, first = done_rel + t0, first_rel + t0
        status = f([STATUS_NAMES[s] for s in self.status], dtype=object)
        out = f(self.D, np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):  # TPOT: undefined below 2 tokens
            tpot = np.where(out > 1, (done_rel - first_rel) / np.maximum(out - 1, 1), np.nan)
        tpot = np.where(np.isfinite(done_t), tpot, np.nan)
        decoding = (np.asarray(self.dec) >= 0) & (out > 0)
        requests = {
            "id": inst.ids.astype(object),
            "arrival_s": arrival,
            "prompt_tokens": inst.prompt_tokens.copy(),
            "output_tokens": inst.output_tokens.copy(),
            "priority": inst.priority.copy(),
            "prefill": names[np.asarray(self.pre)],
            "decode": names[np.where(decoding, np.asarray(self.dec), -1)],
            "prefill_replica": f(self.pre_rep, np.int64),
            "decode_replica": f(self.dec_rep, np.int64),
            "prefill_start_s": f(self.t_pre0, np.float64) + t0,
            "prefill_end_s": f(self.t_pre1, np.float64) + t0,
            "decode_ready_s": f(self.t_ready, np.float64) + t0,
            "decode_start_s": f(self.t_dec0, np.float64) + t0,
            "first_token_s": first,
            "completion_s": done_t,
            "ttft_s": first_rel - arr_rel,
            "tpot_s": tpot,
            "e2e_s": done_rel - arr_rel,
            "cached_tokens": f(self.cached, np.int64),
            "preemptions": f(self.npre, np.int64),
            "status": status,
        }
        end = float(np.nanmax(done_rel)) if np.isfinite(done_rel).any() else 0.0
        makespan = end + t0 if np.isfinite(done_rel).any() else 0.0
        pts = cfg.timeline_points
        replicas = []
        for rp in self.reps:
            if rp.mem_t[-1] < end:
                rp.mem_t.append(end)
                rp.mem_v.append(rp.mem_v[-1])
            mt, mv = downsample(f(rp.mem_t) + t0, f(rp.mem_v), pts)
            replicas.append(ReplicaStats(rp.name, inst.cluster_names[rp.cid], rp.index,
                                         rp.cap_bytes, rp.peak * self.kv, rp.preemptions,
                                         rp.busy, rp.served, mt, mv))
        links = []
        for lk in range(self.L):
            ts = f(self.link_t[lk])
            us = f(self.link_u[lk])
            busy = float(np.sum(np.diff(ts) * us[:-1])) if ts.size > 1 else 0.0
            ts, us = downsample(ts + t0, us, pts)
            links.append(LinkStats(inst.link_names[lk], float(self.bw[lk]), self.link_bytes[lk],
                                   busy, ts, us))
        return Replay(inst.scenario.name, cfg, requests, replicas, links, makespan, wall,
                      self.events, info={"admission": self.admission})


def run(inst: Instance, plan: Plan, cfg: ReplayConfig) -> Replay:
    t0 = time.perf_counter()
    sim = Simulator(inst, plan, cfg)
    sim.run()
    res = sim.result(time.perf_counter() - t0)
    log.info("replayed %s: %d requests, %d events, makespan %.6g s, %d preemptions in %.3f s",
             inst.scenario.name, inst.n_requests, sim.events, res.makespan_s, res.preemptions,
             res.wall_s)
    return res
