"""Every plan-level formula, once, vectorized; ``evaluate()`` recomputes a plan's figures from the
Instance and the Plan alone (it never trusts a method's own claim).

Service times on cluster c, per replica (B = max batch size, step_s(B) the decode step at B):
- prefill seconds: uncached prompt tokens / prefill_tokens_per_s
- decode work: output tokens / decode_tokens_per_s (its share of a full batch)
- decode residency: output tokens * step_s(B) (how long it holds its KV)
- KV memory-time: kv * (prompt + output / 2) * residency byte-seconds (the cache grows by one
  token per step, so its mean size over the decode is prompt + output / 2)

Loads, in seconds: compute = (prefill + decode work) / replicas; link = bytes / bandwidth;
memory = memory-time / (replicas * KV capacity). The makespan is the largest of them: a plan
whose memory-time does not fit in ``replicas * capacity * T`` cannot finish by T.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.instance import Instance
from planner.plan import Plan
from planner.scenario.errors import PlanError, Problem

# ---------------------------------------------------------------- per-request service times


def prefill_seconds(inst: Instance, tokens: np.ndarray | float, cluster: np.ndarray | int):
    """Replica-seconds to prefill ``tokens`` on ``cluster`` (broadcasts)."""
    return np.asarray(tokens, np.float64) / inst.prefill_tps[cluster]


def decode_work_seconds(inst: Instance, output: np.ndarray | float, cluster: np.ndarray | int):
    """Replica-seconds of decode work: the request's share of a full batch."""
    return np.asarray(output, np.float64) / inst.decode_tps[cluster]


def decode_residency_seconds(inst: Instance, output, cluster):
    """Seconds the request holds its KV cache while decoding at full batch."""
    return np.asarray(output, np.float64) * inst.step_full_s[cluster]


def kv_memory_time(inst: Instance, prompt, output, cluster):
    """Byte-seconds of KV cache held while decoding: kv * (prompt + output/2) * residency."""
    prompt = np.asarray(prompt, np.float64)
    output = np.asarray(output, np.float64)
    return (inst.kv_bytes_per_token * (prompt + output / 2.0)
            * decode_residency_seconds(inst, output, cluster))


def kv_fit_bytes(inst: Instance) -> np.ndarray:
    """Per cluster, the most KV bytes a request may hold at its end and still fit one replica:
    the replica's KV capacity, with a 1e-12 float tolerance."""
    return np.asarray(inst.kv_capacity_bytes, np.float64) * (1 + 1e-12)


def kv_need_bytes(inst: Instance, tokens=None) -> np.ndarray:
    """KV bytes of ``tokens`` tokens; by default each request's prompt + output, what it holds
    during its last decode step."""
    if tokens is None:
        tokens = inst.prompt_tokens + inst.output_tokens
    return np.asarray(tokens, np.float64) * inst.kv_bytes_per_token


def kv_fits(inst: Instance, tokens, cluster) -> np.ndarray:
    """Whether one replica of ``cluster`` holds ``tokens`` tokens of KV. A decoding request holds
    prompt + output tokens during its last step, so it needs a replica that holds that many
    (the replay drops it as ``too_large`` otherwise)."""
    return kv_need_bytes(inst, tokens) <= kv_fit_bytes(inst)[cluster]


def kv_misfits(inst: Instance, prefill: np.ndarray, decode: np.ndarray) -> np.ndarray:
    """Per request: decoded on a cluster whose replica cannot hold its KV at its last step."""
    on = (prefill >= 0) & (decode >= 0) & (inst.output_tokens > 0)
    return on & ~kv_fits(inst, inst.prompt_tokens + inst.output_tokens, np.maximum(decode, 0))


def arrival_notes(inst: Instance, makespan_s: float | None = None) -> list[str]:
    """What the fluid figures leave out of this workload's arrival times, in words: requests
    arriving after ``horizon_s`` (the fluid model still counts their work within it), and a
    fluid makespan shorter than the span of the arrivals (it is the busiest resource's work,
    not the time to the last completion). Empty when neither holds."""
    if inst.n_requests == 0:
        return []
    # from the first arrival, as the replay counts time (traces may keep epoch seconds)
    rel = inst.arrival_s - float(inst.arrival_s.min())
    last = float(rel.max())
    notes = []
    h = inst.horizon_s
    if h is not None and last > h:
        late = int((rel > h).sum())
        notes.append(f"{late} of {inst.n_requests} requests arrive more than horizon_s {h:.6g} s "
                     f"after the first (the last {last:.6g} s after): the fluid model reads no "
                     "arrival times, so it counts their work within the horizon; planner "
                     "simulate replays them")
    if makespan_s is not None and np.isfinite(makespan_s) and last > makespan_s:
        notes.append(f"requests arrive over {last:.6g} s, longer than the fluid makespan "
                     f"{makespan_s:.6g} s: that is the busiest resource's work, not the time to "
                     "the last completion (planner simulate gives that)")
    return notes


def unplaceable(inst: Instance) -> tuple[np.ndarray, int]:
    """Requests that fit no decode cluster's replica (they can only be refused), and the most
    KV tokens a decode replica holds."""
    dcl = np.flatnonzero(inst.can_decode)
    if dcl.size == 0:
        return np.zeros(0, np.int64), 0
    need = inst.prompt_tokens + inst.output_tokens
    fits = kv_fits(inst, need[:, None], dcl[None, :]).any(axis=1)
    most = int(inst.kv_capacity_bytes[dcl].max() // inst.kv_bytes_per_token)
    return np.flatnonzero((inst.output_tokens > 0) & ~fits), most


def compute_capacity(inst: Instance) -> np.ndarray:
    """Replica count: load seconds = replica-seconds / replicas."""
    return inst.replicas


def memory_capacity(inst: Instance) -> np.ndarray:
    """Bytes of KV a cluster holds at once: replicas * KV capacity per replica."""
    return inst.replicas * inst.kv_capacity_bytes


def link_bytes(inst: Instance, prefill: np.ndarray, decode: np.ndarray,
               weights: np.ndarray | None = None) -> np.ndarray:
    """Bytes crossing each link: per cluster pair, summed, times the route incidence."""
    c = inst.n_clusters
    moving = (prefill >= 0) & (decode >= 0) & (inst.output_tokens > 0)
    w = inst.kv_bytes if weights is None else weights
    pair = prefill[moving] * c + decode[moving]
    per_pair = np.bincount(pair, weights=w[moving], minlength=c * c)
    return per_pair @ inst.pair_links


def uncached_prefill_tokens(inst: Instance, prefill: np.ndarray) -> np.ndarray:
    """Prompt tokens each request must prefill on its cluster. With prefix caching, a block
    (group id or hash) is prefilled once per cluster that holds it: its first holder in request
    order pays, the others reuse it. Refused requests pay nothing."""
    tokens = np.where(prefill >= 0, inst.prompt_tokens, 0).astype(np.int64)
    if not inst.prefix_caching or inst.prefix_blocks.size == 0:
        return tokens
    owner = inst.prefix_owner
    cl = prefill[owner]
    ok = cl >= 0
    k = int(inst.prefix_blocks.max()) + 1
    keys = cl[ok].astype(np.int64) * k + inst.prefix_blocks[ok]
    _, first = np.unique(keys, return_index=True)
    paid = np.zeros(int(ok.sum()), bool)
    paid[first] = True
    saved_per_occ = np.where(paid, 0, inst.prefix_block_tokens[ok])
    saved = np.bincount(owner[ok], weights=saved_per_occ, minlength=inst.n_requests)
    return tokens - saved.astype(np.int64)


# ---------------------------------------------------------------- checks


def check_plan(inst: Instance, plan: Plan, file: str = "<plan>") -> None:
    """Raise PlanError unless every served request sits on role-compatible, connected clusters."""
    n, c = inst.n_requests, inst.n_clusters
    if len(plan) != n:
        raise PlanError(file, [Problem("requests", f"the plan has {len(plan)} requests, the "
                                       f"scenario {n}", len(plan))])
    pre, dec = plan.prefill, plan.decode
    problems: list[Problem] = []

    def report(mask: np.ndarray, field_: str, what: str, value) -> None:
        idx = np.flatnonzero(mask)
        if idx.size:
            i = int(idx[0])
            more = f" ({idx.size} requests)" if idx.size > 1 else ""
            problems.append(Problem(f"requests[{i}].{field_}",
                                    f"request {inst.ids[i]}: {what}{more}", value(i)))

    name = list(inst.cluster_names)
    report((pre < -1) | (pre >= c), "prefill", "cluster index out of range", lambda i: int(pre[i]))
    report((dec < -1) | (dec >= c), "decode", "cluster index out of range", lambda i: int(dec[i]))
    if problems:
        raise PlanError(file, problems)
    served = pre >= 0
    report(served & ~inst.can_prefill[np.maximum(pre, 0)], "prefill",
           "cluster cannot prefill (role decode)", lambda i: name[pre[i]])
    report((dec >= 0) & ~inst.can_decode[np.maximum(dec, 0)], "decode",
           "cluster cannot decode (role prefill)", lambda i: name[dec[i]])
    report(~served & (dec >= 0), "decode", "a refused request (prefill null) has a decode "
           "cluster", lambda i: name[dec[i]])
    report(served & (dec < 0) & (inst.output_tokens > 0), "decode",
           "a request with output tokens needs a decode cluster", lambda i: None)
    both = served & (dec >= 0)
    report(both & ~inst.reachable[np.maximum(pre, 0), np.maximum(dec, 0)], "decode",
           "no route from its prefill cluster to this decode cluster", lambda i: name[dec[i]])
    if problems:
        raise PlanError(file, problems)


# ---------------------------------------------------------------- evaluation


@dataclass
class Metrics:
    """A plan's figures, all recomputed from the Instance and the Plan."""

    objective_name: str
    objective: float
    makespan_s: float
    bottleneck: str
    cost: float
    rent: float
    egress_cost: float
    period_s: float
    served: int
    refused: int
    prefix_tokens_reused: int
    within_horizon: bool
    cluster_names: tuple[str, ...]
    prefill_s: np.ndarray  # per cluster: prefill replica-seconds / replicas
    decode_s: np.ndarray  # per cluster: decode work / replicas
    load_s: np.ndarray  # compute load
    memory_time: np.ndarray  # byte-seconds
    memory_load_s: np.ndarray
    used: np.ndarray
    link_names: tuple[str, ...]
    link_bytes: np.ndarray
    link_load_s: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)
    kv_misfits: int = 0  # requests decoded where one replica cannot hold their KV
    has_horizon: bool = False

    @property
    def problems(self) -> list[str]:
        """Why the plan is not a solution of its scenario (empty when it is one)."""
        out = []
        if not self.within_horizon:
            out.append(f"its makespan {self.makespan_s:.6g} s exceeds the horizon {self.period_s:g} s")
        if self.kv_misfits:
            out.append(f"{self.kv_misfits} request(s) decoded on a cluster whose replica cannot "
                       "hold their KV (prompt + output tokens)")
        if self.refused and not (self.objective_name == "served" and self.has_horizon):
            out.append(f"it refuses {self.refused} request(s); only the served objective with a "
                       "horizon refuses requests")
        return out

    @property
    def feasible(self) -> bool:
        """A solution: within the horizon, every decoding request fits its replica's KV, and
        nothing refused unless the objective is ``served``."""
        return not self.problems

    def utilization(self, load: np.ndarray) -> np.ndarray:
        return load / self.period_s if self.period_s > 0 else np.zeros_like(load)

    def to_dict(self) -> dict[str, Any]:
        cu = self.utilization(self.load_s)
        mu = self.utilization(self.memory_load_s)
        lu = self.utilization(self.link_load_s)
        return {
            "objective_name": self.objective_name,
            "objective": float(self.objective),
            "makespan_s": float(self.makespan_s),
            "bottleneck": self.bottleneck,
            "cost": float(self.cost),
            "rent": float(self.rent),
            "egress_cost": float(self.egress_cost),
            "period_s": float(self.period_s),
            "served": int(self.served),
            "refused": int(self.refused),
            "prefix_tokens_reused": int(self.prefix_tokens_reused),
            "within_horizon": bool(self.within_horizon),
            "kv_misfits": int(self.kv_misfits),
            "clusters": {
                n: {
                    "load_s": float(self.load_s[i]),
                    "prefill_s": float(self.prefill_s[i]),
                    "decode_s": float(self.decode_s[i]),
                    "memory_time_Bs": float(self.memory_time[i]),
                    "memory_load_s": float(self.memory_load_s[i]),
                    "utilization": float(cu[i]),
                    "memory_utilization": float(mu[i]),
                    "used": bool(self.used[i]),
                }
                for i, n in enumerate(self.cluster_names)
            },
            "links": {
                n: {
                    "bytes": float(self.link_bytes[i]),
                    "load_s": float(self.link_load_s[i]),
                    "utilization": float(lu[i]),
                }
                for i, n in enumerate(self.link_names)
            },
            **self.extra,
        }


def objective_value(objective: str, makespan_s: float, cost: float, served: int) -> float:
    return {"makespan": makespan_s, "cost": cost, "served": float(served)}[objective]


def evaluate_arrays(inst: Instance, plan: Plan, check: bool = True) -> Metrics:
    if check:
        check_plan(inst, plan)
    c = inst.n_clusters
    pre, dec = plan.prefill, plan.decode
    served = pre >= 0
    decoding = served & (dec >= 0) & (inst.output_tokens > 0)

    tokens = uncached_prefill_tokens(inst, pre)
    reused = int(inst.prompt_tokens[served].sum() - tokens[served].sum())
    pre_c = np.where(served, pre, 0)
    dec_c = np.where(decoding, dec, 0)
    pre_work = np.bincount(pre_c[served], weights=prefill_seconds(inst, tokens, pre_c)[served],
                           minlength=c)
    out = inst.output_tokens
    dec_work = np.bincount(dec_c[decoding],
                           weights=decode_work_seconds(inst, out, dec_c)[decoding], minlength=c)
    mem = np.bincount(dec_c[decoding],
                      weights=kv_memory_time(inst, inst.prompt_tokens, out, dec_c)[decoding],
                      minlength=c)
    cap = compute_capacity(inst)
    prefill_s, decode_s = pre_work / cap, dec_work / cap
    load = prefill_s + decode_s
    mem_load = mem / memory_capacity(inst)
    lbytes = link_bytes(inst, pre, dec)
    lload = lbytes / inst.bandwidth_Bps if inst.n_links else np.zeros(0)

    candidates = [
        (float(load.max(initial=0.0)), "cluster", load),
        (float(mem_load.max(initial=0.0)), "memory", mem_load),
        (float(lload.max(initial=0.0)), "link", lload),
    ]
    makespan, kind, arr = max(candidates, key=lambda t: t[0])
    names = inst.link_names if kind == "link" else inst.cluster_names
    bottleneck = f"{kind}:{names[int(np.argmax(arr))]}" if makespan > 0 else "none"

    used = np.zeros(c, bool)
    used[pre[served]] = True
    used[dec[decoding]] = True
    period = inst.horizon_s if inst.horizon_s is not None else makespan
    with np.errstate(over="ignore"):  # an overflowing rent is inf, reported as such (JSON: null)
        rent = float((inst.replicas * inst.cost_per_hour)[used].sum() * period / 3600.0)
    egress = float((lbytes * inst.cost_per_byte).sum())
    cost = rent + egress
    n_served = int(served.sum())
    misfits = int(kv_misfits(inst, pre, dec).sum())
    within = inst.horizon_s is None or makespan <= inst.horizon_s * (1 + 1e-9)
    return Metrics(
        objective_name=inst.objective,
        objective=objective_value(inst.objective, makespan, cost, n_served),
        makespan_s=makespan, bottleneck=bottleneck, cost=cost, rent=rent, egress_cost=egress,
        period_s=float(period), served=n_served, refused=int(inst.n_requests - n_served),
        prefix_tokens_reused=reused, within_horizon=bool(within),
        cluster_names=inst.cluster_names, prefill_s=prefill_s, decode_s=decode_s, load_s=load,
        memory_time=mem, memory_load_s=mem_load, used=used, link_names=inst.link_names,
        link_bytes=lbytes, link_load_s=lload, kv_misfits=misfits,
        has_horizon=inst.horizon_s is not None,
    )
