"""The PD-aware heatmap (DeepServe's ``PD_aware`` step): a grid of prefill-length buckets x
decode-length buckets; each cell holds the best (prefill, decode) choice for a request of that
shape, from the Instance's cost model alone, and the margin to the second best.

Building it is the offline part (``build_heatmap``); routing with it is a vectorized lookup
(``np.searchsorted`` over the bucket edges), online and load-blind. Bucket edges come from the
workload's quantiles unless given. A cell's shape is the midpoint of its bucket edges.

Cost of a choice (p, d) for a request of P prompt and D output tokens (``cost`` option):
- ``latency`` (default): prefill seconds on p + KV transfer (bytes / the slowest link of the
  route + the route's latency; 0 inside a datacenter) + decode residency on d; the time an idle
  fleet takes to serve it.
- ``load``: prefill seconds / replicas of p + decode work / replicas of d + KV bytes / slowest
  link bandwidth; the capacity it uses.

Source: J. Hu et al., "DeepServe: Serverless Large Language Model Serving at Scale", USENIX ATC
2025 (arXiv:2501.14417), the ``PD_aware`` heatmap of its ``dist_sched`` policy.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planner.heuristics.common import choice_pairs, parse_floats, transfer_bytes
from planner.heuristics.greedy import make_result
from planner.instance import Instance
from planner.metrics import (
    decode_residency_seconds,
    decode_work_seconds,
    kv_fit_bytes,
    kv_need_bytes,
    prefill_seconds,
)
from planner.plan import Plan, Result
from planner.registry import register
from planner.scenario.errors import OptionError, Problem

COSTS = ("latency", "load")


def choice_costs(inst: Instance, prompt: np.ndarray, output: np.ndarray, p: np.ndarray,
                 d: np.ndarray, cost: str = "latency") -> np.ndarray:
    """Cost (seconds) of each choice (p[k], d[k]) for each shape (prompt[i], output[i]): (S, K)."""
    if cost not in COSTS:
        raise ValueError(f"unknown heatmap cost {cost!r} (known: {', '.join(COSTS)})")
    c = inst.n_clusters
    P = np.asarray(prompt, np.float64)[:, None]
    D = np.asarray(output, np.float64)[:, None]
    pp, dd = p[None, :], d[None, :]
    if inst.n_links:
        inv = inst.pair_links[p * c + d] * (1.0 / inst.bandwidth_Bps)[None, :]
        inv_bw = inv.max(axis=1)[None, :]  # seconds per byte on the slowest link of the route
    else:
        inv_bw = np.zeros((1, len(p)))
    moves = (D > 0) & (inst.cluster_dc[pp] != inst.cluster_dc[dd])
    xfer = np.where(moves, transfer_bytes(inst, P) * inv_bw, 0.0)
    if cost == "latency":
        lat = np.where(moves, inst.route_latency_s[pp, dd], 0.0)
        return (prefill_seconds(inst, P, pp) + xfer + lat
                + decode_residency_seconds(inst, D, dd))
    return (prefill_seconds(inst, P, pp) / inst.replicas[pp]
            + decode_work_seconds(inst, D, dd) / inst.replicas[dd] + xfer)


def quantile_edges(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` buckets (fewer when values repeat) from the quantiles of ``x``."""
    if x.size == 0:
        return np.array([0.0, 1.0])
    e = np.unique(np.quantile(x.astype(np.float64), np.linspace(0.0, 1.0, max(n, 1) + 1)))
    if e.size == 1:
        e = np.array([e[0], e[0] + 1.0])
    return e


def _bucket(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges[1:-1], np.asarray(x, np.float64), side="right")


@dataclass
class Heatmap:
    """Best choice per (prefill bucket, decode bucket) cell, with its cost, the runner-up's cost,
    the margin, the top-k candidates (for dist_sched) and the workload's count per cell."""

    cluster_names: tuple[str, ...]
    cost_kind: str
    prefill_edges: np.ndarray  # (nP + 1,) tokens
    decode_edges: np.ndarray  # (nD + 1,)
    prefill_shape: np.ndarray  # (nP,) representative prompt tokens of each row
    decode_shape: np.ndarray  # (nD,)
    best_prefill: np.ndarray  # (nP, nD) cluster index
    best_decode: np.ndarray
    best_cost: np.ndarray  # seconds
    second_cost: np.ndarray  # inf when there is one choice only
    cand_prefill: np.ndarray  # (nP, nD, k) candidates best first, -1 padded
    cand_decode: np.ndarray
    cand_cost: np.ndarray
    counts: np.ndarray  # (nP, nD) workload requests per cell
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.best_prefill.shape

    @property
    def margin(self) -> np.ndarray:
        """Seconds between the best and the second-best choice of each cell."""
        return self.second_cost - self.best_cost

    def cells(self, prompt: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of each request shape (values outside the edges go to the end cells)."""
        return _bucket(self.prefill_edges, prompt), _bucket(self.decode_edges, output)

    def lookup(self, prompt: np.ndarray, output: np.ndarray, need: np.ndarray | None = None,
               capacity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(prefill, decode) cluster of each request: one vectorized table lookup. With each
        request's KV ``need`` (bytes) and each cluster's ``capacity`` (see
        :func:`planner.metrics.kv_fit_bytes`), a decoding request takes its cell's
        best candidate whose decode cluster holds it (the best overall when none does)."""
        i, j = self.cells(prompt, output)
        pre, dec = self.best_prefill[i, j], self.best_decode[i, j]
        if need is None or capacity is None:
            return pre, dec
        cp, cd = self.cand_prefill[i, j], self.cand_decode[i, j]  # (n, k)
        fits = (cd >= 0) & (np.asarray(need)[:, None] <= capacity[np.maximum(cd, 0)])
        first = np.argmax(fits, axis=1)
        use = fits.any(axis=1) & (np.asarray(output) > 0)
        rows = np.flatnonzero(use)
        pre, dec = pre.copy(), dec.copy()
        pre[rows], dec[rows] = cp[rows, first[rows]], cd[rows, first[rows]]
        return pre, dec

    # ---------------------------------------------------------------- save / load

    def to_dict(self) -> dict[str, Any]:
        def num(a: np.ndarray) -> list:
            return [[None if not math.isfinite(v) else float(v) for v in row]
                    for row in np.asarray(a, np.float64).tolist()]

        return {
            "kind": "heatmap",
            "cluster_names": list(self.cluster_names),
            "cost": self.cost_kind,
            "prefill_edges": self.prefill_edges.tolist(),
            "decode_edges": self.decode_edges.tolist(),
            "prefill_shape": self.prefill_shape.tolist(),
            "decode_shape": self.decode_shape.tolist(),
            "best_prefill": self.best_prefill.tolist(),
            "best_decode": self.best_decode.tolist(),
            "best_cost": num(self.best_cost),
            "second_cost": num(self.second_cost),
            "margin": num(self.margin),
            "cand_prefill": self.cand_prefill.tolist(),
            "cand_decode": self.cand_decode.tolist(),
            "cand_cost": [num(m) for m in self.cand_cost],
            "counts": self.counts.tolist(),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Heatmap:
        def arr(key: str, dtype: Any = np.float64) -> np.ndarray:
            a = np.array(data[key], dtype=object)
            a = np.where(a == None, np.inf, a)  # noqa: E711 (None -> inf, elementwise)
            return a.astype(dtype)

        return cls(
            cluster_names=tuple(data["cluster_names"]), cost_kind=data["cost"],
            prefill_edges=arr("prefill_edges"), decode_edges=arr("decode_edges"),
            prefill_shape=arr("prefill_shape"), decode_shape=arr("decode_shape"),
            best_prefill=arr("best_prefill", np.int64), best_decode=arr("best_decode", np.int64),
            best_cost=arr("best_cost"), second_cost=arr("second_cost"),
            cand_prefill=arr("cand_prefill", np.int64), cand_decode=arr("cand_decode", np.int64),
            cand_cost=arr("cand_cost"), counts=arr("counts", np.int64),
            meta=dict(data.get("meta", {})),
        )

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, path: str | Path) -> Heatmap:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def rows(self) -> list[dict[str, Any]]:
        """One row per cell (the CSV and table form)."""
        names = self.cluster_names
        out = []
        n_p, n_d = self.shape
        for i in range(n_p):
            for j in range(n_d):
                sec = float(self.second_cost[i, j])
                out.append({
                    "prefill_lo": float(self.prefill_edges[i]),
                    "prefill_hi": float(self.prefill_edges[i + 1]),
                    "decode_lo": float(self.decode_edges[j]),
                    "decode_hi": float(self.decode_edges[j + 1]),
                    "prompt_tokens": float(self.prefill_shape[i]),
                    "output_tokens": float(self.decode_shape[j]),
                    "prefill": names[self.best_prefill[i, j]],
                    "decode": names[self.best_decode[i, j]],
                    "cost_s": float(self.best_cost[i, j]),
                    "second_cost_s": sec if math.isfinite(sec) else None,
                    "margin_s": float(self.margin[i, j]) if math.isfinite(sec) else None,
                    "requests": int(self.counts[i, j]),
                })
        return out

    def to_csv(self, path: str | Path) -> None:
        rows = self.rows()
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    def to_frame(self):  # pandas is a dependency of the project; imported lazily
        import pandas as pd

        return pd.DataFrame(self.rows())


def build_heatmap(inst: Instance, prefill_buckets: int = 8, decode_buckets: int = 8,
                  prefill_edges: np.ndarray | str | None = None,
                  decode_edges: np.ndarray | str | None = None, cost: str = "latency",
                  candidates: int = 4, tolerance: float | None = None) -> Heatmap:
    """Build the heatmap offline from the Instance's cost model and its workload's quantiles.
    Each cell keeps its ``candidates`` best choices (best first, ties by choice index); with
    ``tolerance`` only those whose cost is within ``(1 + tolerance)`` of the cell's best (the
    rest padded with -1): on a fleet of identical clusters every tied choice is a candidate."""
    if isinstance(prefill_edges, str):
        prefill_edges = parse_floats(prefill_edges, "prefill_edges")
    if isinstance(decode_edges, str):
        decode_edges = parse_floats(decode_edges, "decode_edges")
    for name, n in (("prefill_buckets", prefill_buckets), ("decode_buckets", decode_buckets)):
        if not 1 <= int(n) <= MAX_BUCKETS:
            raise OptionError("options", [Problem(name, f"must be between 1 and {MAX_BUCKETS}",
                                                  n)])
    pe = (quantile_edges(inst.prompt_tokens, prefill_buckets) if prefill_edges is None
          else np.sort(np.asarray(prefill_edges, np.float64)))
    de = (quantile_edges(inst.output_tokens, decode_buckets) if decode_edges is None
          else np.sort(np.asarray(decode_edges, np.float64)))
    if pe.size < 2 or de.size < 2:
        raise ValueError("bucket edges need at least two values (low and high)")
    ps, ds = (pe[:-1] + pe[1:]) / 2.0, (de[:-1] + de[1:]) / 2.0
    p, d = choice_pairs(inst)
    if p.size == 0:
        raise ValueError("no valid (prefill, decode) pair in this fleet")
    n_p, n_d = ps.size, ds.size
    P, D = np.repeat(ps, n_d), np.tile(ds, n_p)
    costs = choice_costs(inst, P, D, p, d, cost)  # (cells, K)
    k = max(1, min(int(candidates), p.size))
    order = np.argsort(costs, axis=1, kind="stable")  # ties: lowest choice index first
    top = order[:, :k]
    top_cost = np.take_along_axis(costs, top, axis=1)
    second = costs[np.arange(costs.shape[0]), order[:, 1]] if p.size > 1 else \
        np.full(costs.shape[0], np.inf)
    pad = max(int(candidates), 1) - k
    cp, cd = p[top], d[top]
    if tolerance is not None:
        far = top_cost > top_cost[:, :1] * (1.0 + float(tolerance))
        cp, cd = np.where(far, -1, cp), np.where(far, -1, cd)
        top_cost = np.where(far, np.inf, top_cost)
    if pad:
        cp = np.pad(cp, ((0, 0), (0, pad)), constant_values=-1)
        cd = np.pad(cd, ((0, 0), (0, pad)), constant_values=-1)
        top_cost = np.pad(top_cost, ((0, 0), (0, pad)), constant_values=np.inf)
    i, j = _bucket(pe, inst.prompt_tokens), _bucket(de, inst.output_tokens)
    counts = np.bincount(i * n_d + j, minlength=n_p * n_d).reshape(n_p, n_d)
    return Heatmap(
        cluster_names=inst.cluster_names, cost_kind=cost, prefill_edges=pe, decode_edges=de,
        prefill_shape=ps, decode_shape=ds,
        best_prefill=cp[:, 0].reshape(n_p, n_d), best_decode=cd[:, 0].reshape(n_p, n_d),
        best_cost=top_cost[:, 0].reshape(n_p, n_d), second_cost=second.reshape(n_p, n_d),
        cand_prefill=cp.reshape(n_p, n_d, -1), cand_decode=cd.reshape(n_p, n_d, -1),
        cand_cost=top_cost.reshape(n_p, n_d, -1), counts=counts.astype(np.int64),
        meta={"scenario": inst.scenario.name, "requests": inst.n_requests},
    )


MAX_BUCKETS = 256  # per axis: 65,536 cells, each costing every (prefill, decode) pair
HEATMAP_OPTIONS = {"prefill_buckets": 8, "decode_buckets": 8, "prefill_edges": "",
                   "decode_edges": "", "cost": "latency"}


@register("heatmap", "prefill-length x decode-length grid -> best (prefill, decode) pair, built "
          "offline from the cost model; live, each request looks up its cell (DeepServe)",
          options=HEATMAP_OPTIONS)
def heatmap(inst: Instance, prefill_buckets: int = 8, decode_buckets: int = 8,
            prefill_edges: str = "", decode_edges: str = "", cost: str = "latency") -> Result:
    """Heatmap routing (DeepServe's PD_aware step, arXiv:2501.14417). Offline: the heatmap is
    built from the cost model and the workload's length quantiles; online: a load-blind table
    lookup per request. ``prefill_edges``/``decode_edges`` ("0,512,2048,...") override the
    quantile edges; ``cost`` is ``latency`` or ``load``. The Heatmap is in
    ``Result.info["heatmap"]`` (``to_dict``/``to_csv``/``to_json``)."""
    hm = build_heatmap(inst, prefill_buckets, decode_buckets, prefill_edges or None,
                       decode_edges or None, cost, candidates=4)
    pre, dec = hm.lookup(inst.prompt_tokens, inst.output_tokens, kv_need_bytes(inst), kv_fit_bytes(inst))
    dec = np.where(inst.output_tokens > 0, dec, -1)
    return make_result(inst, "heatmap", Plan(pre, dec), {"heatmap": hm})
