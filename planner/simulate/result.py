"""What a replay returns: a per-request table, per-replica memory timelines and preemptions, per-link
utilisation timelines, and the overall figures (makespan, latency percentiles, goodput)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.simulate.config import ReplayConfig

STATUS_NAMES = ("pending", "done", "refused", "too_large")
PERCENTILES = (50, 90, 99)


def _f(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def downsample(t: np.ndarray, v: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` samples of a timeline, keeping the first, the last and the peak."""
    n = t.shape[0]
    if n <= points:
        return t, v
    idx = np.unique(np.concatenate([np.linspace(0, n - 1, points - 1).astype(np.int64),
                                    [int(np.argmax(v))]]))
    return t[idx], v[idx]


@dataclass
class ReplicaStats:
    name: str  # "cluster#k"
    cluster: str
    index: int
    capacity_bytes: float
    peak_bytes: float
    preemptions: int
    busy_s: float  # prefill, swap and decode-step seconds
    served: int  # requests completed here (decode, or prefill-only)
    memory_t: np.ndarray  # seconds
    memory_bytes: np.ndarray  # KV bytes held at those instants (linear in between)

    def to_dict(self, timeline: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"cluster": self.cluster, "index": self.index,
                             "capacity_bytes": self.capacity_bytes, "peak_bytes": self.peak_bytes,
                             "peak_fraction": (self.peak_bytes / self.capacity_bytes
                                               if self.capacity_bytes else 0.0),
                             "preemptions": self.preemptions, "busy_s": self.busy_s,
                             "served": self.served}
        if timeline:
            d["memory_t"] = self.memory_t.tolist()
            d["memory_bytes"] = self.memory_bytes.tolist()
        return d


@dataclass
class LinkStats:
    name: str
    bandwidth_Bps: float
    bytes: float
    busy_s: float  # integral of utilisation over time (seconds at full bandwidth)
    util_t: np.ndarray  # step function: utilisation util[i] from util_t[i] to util_t[i+1]
    util: np.ndarray

    def to_dict(self, timeline: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"bandwidth_Bps": self.bandwidth_Bps, "bytes": self.bytes,
                             "busy_s": self.busy_s}
        if timeline:
            d["util_t"] = self.util_t.tolist()
            d["util"] = self.util.tolist()
        return d


@dataclass
class Replay:
    """The replay of one plan. ``requests`` holds per-request numpy arrays (one row per request of
    the scenario, in scenario order): ``id, arrival_s, prefill, decode`` (cluster names, None when
    refused), ``prefill_replica, decode_replica`` (index in the cluster, -1 for none),
    ``prefill_start_s, prefill_end_s, decode_ready_s, decode_start_s, first_token_s,
    completion_s`` (absolute times, NaN when not reached; on a mixed cluster the prefill runs in
    the step the request joins the batch, and its decode is ready and starts at the prefill's
    end), ``ttft_s, tpot_s, e2e_s`` (latencies),
    ``cached_tokens, preemptions, status`` (done | refused | too_large)."""

    scenario: str
    config: ReplayConfig
    requests: dict[str, np.ndarray]
    replicas: list[ReplicaStats]
    links: list[LinkStats]
    makespan_s: float
    wall_s: float
    events: int
    info: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ figures
    @property
    def completed(self) -> np.ndarray:
        return self.requests["status"] == "done"

    @property
    def preemptions(self) -> int:
        return int(sum(r.preemptions for r in self.replicas))

    @property
    def memory_ok(self) -> bool:
        """No replica ever held more KV than its capacity."""
        return all(r.peak_bytes <= r.capacity_bytes * (1 + 1e-9) + 1e-6 for r in self.replicas)

    def latency(self, name: str) -> dict[str, float | None]:
        """mean, p50, p90, p99 of ``ttft_s``, ``tpot_s`` or ``e2e_s`` over completed requests."""
        x = self.requests[name][self.completed]
        x = x[np.isfinite(x)]
        if x.size == 0:
            return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
        q = np.percentile(x, PERCENTILES)
        return {"mean": float(x.mean()), **{f"p{p}": float(v) for p, v in zip(PERCENTILES, q,
                                                                                  strict=True)}}

    def within_slo(self) -> np.ndarray:
        """Per request: completed and within every SLO bound of the config."""
        ok = self.completed.copy()
        for key, bound in self.config.slo.items():
            x = self.requests[key]
            ok &= np.nan_to_num(x, nan=0.0) <= bound + 1e-12
        return ok

    def summary(self) -> dict[str, Any]:
        done = int(self.completed.sum())
        good = int(self.within_slo().sum())
        status = self.requests["status"]
        return {
            "makespan_s": _f(self.makespan_s),
            "completed": done,
            "refused": int((status == "refused").sum()),
            "too_large": int((status == "too_large").sum()),
            "preemptions": self.preemptions,
            "memory_ok": self.memory_ok,
            "ttft_s": self.latency("ttft_s"),
            "tpot_s": self.latency("tpot_s"),
            "e2e_s": self.latency("e2e_s"),
            "slo": dict(self.config.slo),
            # without an SLO there is no goodput to report (not "100 % within nothing")
            "goodput": good if self.config.slo else None,
            "goodput_fraction": (good / done if done else 0.0) if self.config.slo else None,
            "goodput_rps": (good / self.makespan_s if self.makespan_s > 0 else 0.0)
            if self.config.slo else None,
            "wall_s": self.wall_s,
            "events": self.events,
        }

    def to_dict(self, timelines: bool = True, requests: bool = False) -> dict[str, Any]:
        """JSON-ready: the summary, ``replicas: {name: {...}}``, ``links: {name: {...}}`` (with
        timelines unless ``timelines=False``), the config, and the per-request rows if asked."""
        out = {"scenario": self.scenario, **self.summary(), "config": self.config.to_dict(),
               "replicas": {r.name: r.to_dict(timelines) for r in self.replicas},
               "links": {lk.name: lk.to_dict(timelines) for lk in self.links}, **self.info}
        if requests:
            out["requests"] = self.rows()
        return out

    def rows(self) -> list[dict[str, Any]]:
        keys = list(self.requests)
        cols = [self.requests[k].tolist() for k in keys]
        rows = []
        for vals in zip(*cols, strict=True):
            rows.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                         for k, v in zip(keys, vals, strict=True)})
        return rows

    def to_frame(self):
        """The per-request table as a pandas DataFrame (pandas imported lazily)."""
        import pandas as pd

        return pd.DataFrame(self.requests)

    def memory_frame(self):
        """Long table of every replica's memory timeline: replica, cluster, t_s, bytes."""
        import pandas as pd

        parts = [pd.DataFrame({"replica": r.name, "cluster": r.cluster, "t_s": r.memory_t,
                               "bytes": r.memory_bytes, "capacity_bytes": r.capacity_bytes})
                 for r in self.replicas]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def link_frame(self):
        """Long table of every link's utilisation step function: link, t_s, utilization."""
        import pandas as pd

        parts = [pd.DataFrame({"link": lk.name, "t_s": lk.util_t, "utilization": lk.util})
                 for lk in self.links]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
