"""The batch-composition problem of one decode replica, shared by the packers and the exact models.

Per decode replica: the requests assigned to it (placement from a method, then to the replica with
the least committed KV tokens in arrival order, as the replay dispatches), each a job with a
release (arrival + its prefill seconds + its KV transfer alone + the route latency), a decode
duration of D steps of ``step_s(B)`` (the replay's ``decode_step="full"``) and a KV demand that
grows by one token per step: during its t-th step it holds ``P + t + 1`` tokens.

Time is counted in units of ``u`` decode steps. The growth is cut into K segments: segment k of a
job of ``Du = ceil(D / u)`` units covers units ``[floor(k Du / K), floor((k+1) Du / K))`` and
demands ``P + min(D, floor((k+1) Du / K) * u)`` tokens, the most the job can hold by the end of
that segment (a job starting at a unit boundary has produced at most ``e * u`` tokens after e
units): each segment bounds the true demand from above, so a schedule that fits the model never
overflows. A lower bound on any schedule's makespan of the replica (in seconds from 0):
``max(max_j release_j + D_j, min release + ceil(sum D / B), min release + memory area / cap)``,
with the exact area ``sum_j D_j (P_j + (D_j + 1) / 2)`` token-steps.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.exact._model import shared_blocks
from planner.instance import Instance
from planner.metrics import prefill_seconds
from planner.plan import Plan, Result, relative_gap
from planner.registry import get_method
from planner.scenario.errors import InputError, OptionError, Problem


@dataclass
class ReplicaJobs:
    cluster: int
    index: int
    name: str  # "cluster#k", the plan order key the replay reads
    req: np.ndarray  # request indices
    P: np.ndarray  # prompt tokens
    D: np.ndarray  # output tokens (> 0)
    release_s: np.ndarray
    step_s: float
    cap_tokens: int
    bcap: int
    arrival_s: np.ndarray
    own_pause_s: np.ndarray  # each job's own prefill on this replica (in its release)
    # seconds this replica spends prefilling its own requests (a mixed cluster prefills a
    # request on the replica that decodes it, pausing the batch): not in the schedule's units
    pause_s: float = 0.0
    info: dict = field(default_factory=dict)

    def delay_s(self) -> np.ndarray:
        """What the other jobs' prefills on this replica can add to each job's end: at most
        their sum (a job's own prefill is in its release)."""
        return self.pause_s - self.own_pause_s

    def ends(self, start: np.ndarray) -> np.ndarray:
        """Each job's end when its decode starts at ``start``: its steps and the pauses."""
        return start + self.D * self.step_s + self.delay_s()

    def __len__(self) -> int:
        return int(self.req.shape[0])

    def lower_bound_s(self) -> float:
        if len(self) == 0:
            return 0.0
        st = self.step_s
        r0 = float(self.release_s.min())
        own = float((self.release_s + self.D * st).max())
        steps = math.ceil(float(self.D.sum()) / self.bcap) * st
        count = r0 + steps
        area = float((self.D * (self.P + (self.D + 1) / 2.0)).sum())
        mem = r0 + area / self.cap_tokens * st
        # the replica's own prefills and its decode steps take turns, from the first arrival
        busy = float(self.arrival_s.min()) + self.pause_s + steps
        return max(own, count, mem, busy)


def placement(inst: Instance, method: str, time_limit: float | None) -> Plan:
    """The placement of ``method`` (a registered placement method, default greedy)."""
    from planner.api import solve

    if method.startswith("batch_"):
        raise OptionError("options", [Problem("placement", "must be a placement method, not a "
                                              "batch method", method)])
    try:
        get_method(method)
    except InputError as exc:
        raise OptionError("options", [Problem("placement", p.message, p.given)
                                      for p in exc.problems]) from None
    res = solve(inst, method=method, time_limit=time_limit)
    if res.plan is None:
        raise RuntimeError(f"placement method {method} found no plan ({res.termination})")
    return res.plan.copy()


def _transfer(inst: Instance, pre: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per request: the links its KV crosses from ``pre`` to ``dec`` (none within a cluster),
    and its transfer alone over the route's slowest link."""
    if not inst.n_links:
        return np.zeros((pre.size, 0), bool), np.zeros(pre.size)
    inc = inst.pair_links[pre * inst.n_clusters + dec].astype(bool) & (pre != dec)[:, None]
    slow = np.where(inc, 1.0 / inst.bandwidth_Bps[None, :], 0.0).max(axis=1)
    return inc, inst.kv_bytes * slow


def release_times(inst: Instance, plan: Plan, covered: np.ndarray) -> np.ndarray:
    """Earliest decode start of each request if it waited for nothing: arrival + prefill of the
    tokens outside shared prefix blocks (``covered``, from :func:`shared_blocks`: the replay's
    cache may hold them; charging whole prompts put the bound 26 % above a replay; found by
    review) + its transfer alone over the route's slowest link + the route latency."""
    pre = np.maximum(plan.prefill, 0)
    dec = np.maximum(plan.decode, 0)
    t = inst.arrival_s + prefill_seconds(inst, inst.prompt_tokens - covered, pre)
    return t + _transfer(inst, pre, dec)[1] + inst.route_latency_s[pre, dec]


def replica_jobs(inst: Instance, plan: Plan) -> list[ReplicaJobs]:
    """Decoding requests of every decode cluster dealt to its replicas in arrival order, each to
    the replica with the least committed tokens (prompt + output)."""
    out: list[ReplicaJobs] = []
    # what a replica must prefill of its own requests: every token outside shared prefix blocks,
    # and each shared block once (with caching the replay skips what its cache holds: counting
    # whole prompts made a 1-s replay a 32-s bound; found by review)
    ptr, bidx, btok, covered = shared_blocks(inst)
    rel = release_times(inst, plan, covered)
    suffix = inst.prompt_tokens - covered
    entry_owner = np.repeat(np.arange(inst.n_requests), np.diff(ptr))
    decoding = (plan.prefill >= 0) & (plan.decode >= 0) & (inst.output_tokens > 0)
    order = np.argsort(inst.arrival_s, kind="stable")
    kv = inst.kv_bytes_per_token
    for c in range(inst.n_clusters):
        if not inst.can_decode[c]:
            continue
        nrep = int(inst.replicas[c])
        rows = order[decoding[order] & (plan.decode[order] == c)]
        load = [(0.0, k) for k in range(nrep)]
        heapq.heapify(load)
        which = np.empty(rows.shape[0], np.int64)
        size = inst.prompt_tokens[rows] + inst.output_tokens[rows]
        for i, s in enumerate(size.tolist()):
            lo, k = heapq.heappop(load)
            which[i] = k
            heapq.heappush(load, (lo + s, k))
        bmax = int(inst.max_batch[c])
        # prefilled on the replica that decodes it (the mixed path): each pauses the others'
        # decoding; the shared blocks its own requests hold, once per replica
        own = plan.prefill[rows] == c
        replica_of = np.full(inst.n_requests, -1, np.int64)
        replica_of[rows[own]] = which[own]
        held = replica_of[entry_owner] if bidx.size else np.zeros(0, np.int64)
        pairs = np.unique(np.stack([held[held >= 0], bidx[held >= 0]]), axis=1)
        block_tok = np.bincount(pairs[0], weights=btok[pairs[1]], minlength=nrep) \
            if pairs.size else np.zeros(nrep)
        mine_all = np.where(own, prefill_seconds(inst, suffix[rows], c), 0.0)
        for k in range(nrep):
            sel = which == k
            req, mine = rows[sel], mine_all[sel]
            pause = float(mine.sum()) + float(prefill_seconds(inst, block_tok[k], c))
            out.append(ReplicaJobs(
                c, k, f"{inst.cluster_names[c]}#{k}", req,
                inst.prompt_tokens[req].astype(np.int64), inst.output_tokens[req].astype(np.int64),
                rel[req].astype(np.float64), float(inst.step_full_s[c]),
                int(inst.kv_capacity_bytes[c] // kv), bmax,
                inst.arrival_s[req].astype(np.float64), mine, pause_s=pause))
    return out


def releases_exact(inst: Instance, plan: Plan, covered: np.ndarray) -> tuple[bool, str]:
    """Whether every decoding request's release is what the replay gives it: no two prefills on
    one cluster overlap (the replay may put them on one replica), no decoding cluster prefills
    for another, no link carries two transfers at once, no prefix-cache hit can shorten a
    prefill (else another request may delay or speed it: the review found `optimal` 2.706 s
    with a replay of 3.745 s, 10 prefills queued on 2 replicas). Conservative: windows are each
    request's prefill and transfer alone from its arrival."""
    decoding = (plan.prefill >= 0) & (plan.decode >= 0) & (inst.output_tokens > 0)
    served = plan.prefill >= 0
    if bool((covered[served] > 0).any()):
        return False, "prefix-cache hits may shorten prefills"
    pre = np.maximum(plan.prefill, 0)
    start = inst.arrival_s
    end = start + prefill_seconds(inst, inst.prompt_tokens, pre)
    for c in np.unique(plan.prefill[served]).tolist():
        rows = np.flatnonzero(served & (plan.prefill == c))
        # any two overlapping: the replay sends an arrival to the replica of least backlog, and
        # a running prefill leaves none, so a second one can queue behind it on that replica
        # however many replicas there are (review: `optimal` 1.4 s, replayed in 1.86 s)
        if _max_overlap(start[rows], end[rows]) > 1:
            return False, f"prefills may queue on {inst.cluster_names[c]}"
        if inst.can_decode[c] and bool((plan.decode[rows] != c).any()) \
                and bool((decoding & (plan.decode == c)).any()):
            # a prefill for a request decoded elsewhere waits for a step of a decoding replica
            # here and pauses its batch
            return False, f"{inst.cluster_names[c]} prefills for another cluster while decoding"
    if inst.n_links:
        inc, moving_s = _transfer(inst, pre, np.maximum(plan.decode, 0))
        inc &= decoding[:, None]
        t_end = end + moving_s
        for lk in range(inst.n_links):
            rows = np.flatnonzero(inc[:, lk])
            if rows.size > 1 and _max_overlap(end[rows], t_end[rows]) > 1:
                return False, f"transfers may share {inst.link_names[lk]}"
    return True, ""


def _max_overlap(a: np.ndarray, b: np.ndarray) -> int:
    """Most intervals [a, b) open at once."""
    if a.size == 0:
        return 0
    ev = np.concatenate([a, b])
    kind = np.concatenate([np.ones(a.size, np.int64), -np.ones(b.size, np.int64)])
    order = np.lexsort((kind, ev))  # an end before a start at the same instant
    return int(np.cumsum(kind[order]).max())


def export_prefill_s(inst: Instance, plan: Plan) -> dict[str, float]:
    """Per decode-capable cluster: seconds of prefill for requests decoded elsewhere (they pause
    its replicas' batches too; which replica takes each is the replay's dispatch, so no
    replica's figure counts them)."""
    out = {}
    for c in np.flatnonzero(inst.can_decode & inst.can_prefill).tolist():
        rows = np.flatnonzero((plan.prefill == c) & (plan.decode != c))
        if rows.size:
            out[inst.cluster_names[c]] = float(prefill_seconds(inst, inst.prompt_tokens[rows],
                                                               c).sum())
    return out


def _pieces(units: int, K: int) -> list[tuple[int, int]]:
    """``units`` cut into at most ``K`` near-equal non-empty pieces: [(offset, length)]."""
    k_eff = max(1, min(K, units))
    cuts = [(k * units) // k_eff for k in range(k_eff + 1)]
    return [(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def envelope(P: int, D: int, u: int, K: int) -> tuple[int, list[tuple[int, int, int]]]:
    """(duration in units, [(offset, length, demand tokens)] of the non-empty segments): each
    segment demands the *most* a job holds in it, ``P + min(D, (a + length) u)`` tokens."""
    du = -(-D // u)
    return du, [(a, n, int(P + min(D, (a + n) * u))) for a, n in _pieces(du, K)]


def floor_envelope(P: int, D: int, u: int, K: int) -> tuple[int, list[tuple[int, int, int]]]:
    """The relaxation's side of :func:`envelope`: (``floor(D / u)`` units, [(offset, length,
    demand)]) with each segment demanding the *least* a job holds in it, ``P + a u + 1`` tokens
    at offset ``a``. A real schedule mapped to units by ``floor(start / unit)`` fits it (see
    :mod:`planner.batch.cpsat`), so its optimum bounds the real problem from below."""
    dl = D // u
    return dl, [(a, n, int(P + a * u + 1)) for a, n in _pieces(dl, K)]


def list_schedule_reserve(job: ReplicaJobs, order: np.ndarray) -> np.ndarray:
    """Strict-order list schedule with whole-decode reservations (K = 1: each job holds P + D from
    its start): start times in seconds, non-decreasing along ``order``. Feasible in every K."""
    st = job.step_s
    start = np.zeros(len(job))
    running: list[tuple[float, int]] = []  # (end, tokens)
    used = 0
    t = 0.0
    for j in order.tolist():
        need = int(job.P[j] + job.D[j])
        t = max(t, float(job.release_s[j]))
        while running and (len(running) >= job.bcap or used + need > job.cap_tokens):
            end, tok = heapq.heappop(running)
            used -= tok
            t = max(t, end)
        while running and running[0][0] <= t:
            end, tok = heapq.heappop(running)
            used -= tok
        start[j] = t
        heapq.heappush(running, (t + float(job.D[j]) * st, need))
        used += need
    return start


def sgs_units(job: ReplicaJobs, order: np.ndarray, u: int, K: int, rel_u: np.ndarray,
              horizon: int) -> np.ndarray | None:
    """Serial schedule generation in units: each job in ``order`` at its earliest start where its
    K-segment envelope and the batch size fit (the usage profile kept as arrays). None if the
    horizon is too short."""
    mem = np.zeros(horizon + 1, np.int64)
    cnt = np.zeros(horizon + 1, np.int64)
    start = np.zeros(len(job), np.int64)
    for j in order.tolist():
        du, segs = envelope(int(job.P[j]), int(job.D[j]), u, K)
        last = horizon - du
        if last < rel_u[j]:
            return None
        ok = np.ones(last - rel_u[j] + 1, bool)
        s0 = int(rel_u[j])
        for a, ln, d in segs + [(0, du, -1)]:
            bad = (cnt >= job.bcap) if d < 0 else (mem > job.cap_tokens - d)
            cs = np.concatenate([[0], np.cumsum(bad)])
            lo = np.arange(s0, last + 1) + a
            ok &= (cs[lo + ln] - cs[lo]) == 0
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return None
        s = s0 + int(idx[0])
        start[j] = s
        for a, ln, d in segs:
            mem[s + a:s + a + ln] += d
        cnt[s:s + du] += 1
    return start


def build_result(name: str, inst: Instance, plan: Plan, jobs: list[ReplicaJobs],
                 starts: list[np.ndarray], objective: str, statuses: list[str],
                 bounds: list[float], reserve: bool, wall_note: str,
                 ties: list[np.ndarray] | None = None) -> Result:
    """Fill ``plan.order`` (per replica, requests by planned start) and report objective, bound
    and gap of the batch problem (makespan: max over replicas; mean completion over requests)."""
    order: dict[str, list] = {}
    ends_all: list[np.ndarray] = []
    makespans = []
    for i, (job, st) in enumerate(zip(jobs, starts, strict=True)):
        if len(job) == 0:
            continue
        seq = np.lexsort((job.release_s if ties is None else ties[i], st))
        order[job.name] = job.req[seq].tolist()
        # the replica's prefills pause its batch: each delays the others by at most its length
        ends = job.ends(st)
        ends_all.append(ends)
        makespans.append(float(ends.max()))
    if reserve:
        order["_admission"] = ["reserve"]
    plan.order = order
    ends = np.concatenate(ends_all) if ends_all else np.zeros(0)
    if objective == "makespan":
        obj = max(makespans, default=0.0)
        bound = max(bounds, default=0.0)
    else:
        obj = float(ends.mean()) if ends.size else 0.0
        n = max(1, ends.size)
        bound = float(sum(bounds) / n)
    # the figure is an estimate and the bound holds: an estimate below it is raised to it (with
    # pauses the estimate ran a prefill beside a decode the bound knows it pauses; review)
    obj = max(obj, bound)
    gap = relative_gap(obj, bound)
    paused = sum(j.pause_s for j in jobs)
    exact_rel, why = releases_exact(inst, plan, shared_blocks(inst)[3])
    # the prefill pauses are an estimate, not a schedule, and releases assume no queueing: a
    # replica with pauses, or releases that others may delay, is never optimal
    status = "optimal" if paused == 0 and exact_rel and (
        all(s == "optimal" for s in statuses) or gap == 0.0) else "feasible"
    export = export_prefill_s(inst, plan)
    note = "" if exact_rel else f"; releases not exact ({why}): no optimality claimed"
    if paused > 0:
        note += (f"; mixed replicas prefill their own requests ({paused:.6g} s in all: tokens "
                 "outside shared prefix blocks, each shared block once), which pauses their "
                 "batches: each request's end counts the other prefills of its replica, an "
                 "estimate")
    if export:
        note += ("; prefills there of requests decoded elsewhere, not counted: "
                 + ", ".join(f"{k} {v:.6g} s" for k, v in export.items()))
    return Result(name, status, plan, objective=obj, bound=bound, gap=gap,
                  termination=f"batch {objective} of the decode replicas (KV growth model, "
                  f"seconds){note}; {wall_note}",
                  info={"batch_objective": objective, "export_prefill_s": export,
                        "replicas": {j.name: {"requests": len(j), "prefill_pause_s": j.pause_s,
                                              **j.info} for j in jobs}})


def completion_bound(job: ReplicaJobs) -> float:
    """Lower bound on the sum of completion times of a replica's jobs (seconds): each job ends no
    earlier than its release plus its own decode (its own prefill is in its release)."""
    return float((job.release_s + job.D * job.step_s).sum())


def schedule_replicas(jobs: list[ReplicaJobs], objective: str, max_jobs: int,
                      solve: Callable[[ReplicaJobs], tuple[np.ndarray, str, float]],
                      fallback_info: dict[str, Any] | None = None
                      ) -> tuple[list[np.ndarray], list[str], list[float]]:
    """Start times, statuses and bounds per replica: empty replicas are trivially optimal, those
    with more than ``max_jobs`` requests get the FCFS reservation schedule, the rest ``solve``
    (a discretised model: its status goes to ``job.info``; ``solve`` returns a bound valid for the
    real problem, from a relaxation, or 0; the replica's bound is the better of it and the
    analytical one, and it is optimal only when its schedule meets that bound)."""
    from planner.batch.packers import policy_order  # packers import this module

    starts: list[np.ndarray] = []
    statuses: list[str] = []
    bounds: list[float] = []
    for job in jobs:
        lb = job.lower_bound_s() if objective == "makespan" else completion_bound(job)
        if len(job) == 0:
            st, status, bound = np.zeros(0), "optimal", 0.0
        elif len(job) > max_jobs:
            job.info.update({**(fallback_info or {}),
                             "fallback": f"more than {max_jobs} requests: FCFS reservation schedule"})
            st, status, bound = list_schedule_reserve(job, policy_order(job, "fcfs")), "feasible", lb
        else:
            # the exact models are discretised (releases and growth rounded up to whole units):
            # restrictions of the replica's problem, so their optimum is a schedule, not a bound.
            # The valid bound is the analytical one; "optimal" only where the schedule meets it.
            st, model_status, valid_bound = solve(job)
            job.info.update(model_status=model_status)
            bound = max(lb, valid_bound)
            ends = job.ends(st)
            got = float(ends.max()) if objective == "makespan" else float(ends.sum())
            status = "optimal" if got <= lb * (1 + 1e-9) + 1e-12 else "feasible"
        starts.append(st)
        statuses.append(status)
        bounds.append(bound)
    return starts, statuses, bounds
