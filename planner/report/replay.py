"""The hook through which the discrete-event replay (``planner.simulate``) reaches the report.

Two functions, both small, both for the replay's author to extend:

- :func:`summarize_replay` turns whatever ``planner.simulate.simulate(instance, plan)`` returns
  into a JSON-able dict (this is what the report's JSON stores per method, under ``replay``);
- :func:`planner.report.figures.replay_figures` draws those dicts (latency CDFs, memory
  timelines) for every method.

The summary dict has these optional keys (anything missing is simply not drawn):

    {"cdf": {"ttft_s": {"x": [...], "p": [...]}, "tpot_s": {...}, "latency_s": {...}},
     "stats": {"ttft_s_p50": ..., "latency_s_p99": ..., "makespan_s": ..., "preemptions": ...,
               "goodput": ..., "goodput_fraction": ..., "completed": ...},
     "memory": {"REPLICA OR CLUSTER": {"t": [...], "bytes": [...]}, ...}}

While ``planner.simulate`` is not importable the report says so and carries no replay figures.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from planner.instance import Instance
from planner.plan import Plan
from planner.scenario.model import Scenario

log = logging.getLogger(__name__)

CDF_POINTS = 200  # quantiles kept per latency CDF
TIMELINE_POINTS = 400  # samples kept per memory timeline
PER_REQUEST = ("ttft_s", "tpot_s", "latency_s")


def available() -> bool:
    # not ``planner.simulate`` as an attribute: the package re-exports the function under that name
    try:
        from planner.simulate import simulate  # noqa: F401
    except ImportError:
        return False
    return True


def replay_summary(scenario: Scenario, inst: Instance, plan: Plan, method: str) -> dict | None:
    """Replay ``plan`` and summarise it; None when there is no replay or it failed (logged)."""
    try:
        from planner.simulate import simulate
    except ImportError:
        return None
    try:
        return summarize_replay(simulate(inst, plan))
    except Exception as exc:  # noqa: BLE001 - the replay must not sink the report
        log.warning("replay of %s failed: %s: %s", method, type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def cdf(values: Any, points: int = CDF_POINTS) -> dict[str, list[float]] | None:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    p = np.linspace(0.0, 1.0, min(points, v.size))
    return {"x": np.quantile(v, p).tolist(), "p": p.tolist()}


def _downsample(t: Any, y: Any, points: int = TIMELINE_POINTS) -> dict[str, list[float]]:
    t, y = np.asarray(t, np.float64), np.asarray(y, np.float64)
    if t.size > points:
        idx = np.linspace(0, t.size - 1, points).round().astype(int)
        t, y = t[idx], y[idx]
    return {"t": t.tolist(), "bytes": y.tolist()}


def _total_memory(replicas: Any, points: int = TIMELINE_POINTS) -> dict[str, list[float]] | None:
    """The KV bytes held by all replicas together over time (each timeline is linear between
    its samples, so they are summed on the union of their instants)."""
    lines = [(np.asarray(r.memory_t, np.float64), np.asarray(r.memory_bytes, np.float64))
             for r in replicas if len(getattr(r, "memory_t", ())) > 0]
    if not lines:
        return None
    grid = np.unique(np.concatenate([t for t, _ in lines]))
    total = sum(np.interp(grid, t, y, left=0.0, right=0.0) for t, y in lines)
    return _downsample(grid, total, points)


def summarize_replay(rep: Any) -> dict[str, Any]:
    """JSON-able summary of a replay. Reads ``planner.simulate.Replay`` (``requests`` arrays
    ``ttft_s``/``tpot_s``/``e2e_s``/``status``, ``replicas`` with memory timelines,
    ``summary()``); anything else by attribute or key (``ttft_s``, ``tpot_s``, ``latency_s``,
    ``memory_timelines`` {name: (t, bytes)}, ``makespan_s``, ``preemptions``, ``goodput``).
    Extend here as the replay grows."""
    out: dict[str, Any] = {"cdf": {}, "stats": {}, "memory": {}}
    raw: dict[str, np.ndarray] = {}
    reqs = _get(rep, "requests")
    if isinstance(reqs, dict):
        done = np.asarray(reqs.get("status", [])) == "done" if "status" in reqs else None
        for key, name in (("ttft_s", "ttft_s"), ("tpot_s", "tpot_s"), ("e2e_s", "latency_s")):
            if key in reqs:
                v = np.asarray(reqs[key], np.float64)
                raw[name] = v[done] if done is not None else v
    else:
        for key in PER_REQUEST:
            v = _get(rep, key)
            if v is not None:
                raw[key] = np.asarray(v, np.float64)
    for key, v in raw.items():
        c = cdf(v)
        if not c:
            continue
        out["cdf"][key] = c
        # from the data, as `planner simulate` does: the CDF is downsampled for the chart
        x = v[np.isfinite(v)]
        for name, q in (("p50", 50), ("p99", 99)):
            out["stats"][f"{key}_{name}"] = float(np.percentile(x, q))
    summary = rep.summary() if hasattr(rep, "summary") else {}
    for key in ("makespan_s", "preemptions", "goodput", "goodput_fraction", "completed"):
        v = summary.get(key, _get(rep, key))
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            out["stats"][key] = float(v)
    replicas = _get(rep, "replicas")
    if replicas:
        total = _total_memory(replicas)
        if total:
            out["memory"]["all replicas"] = total
    for name, tl in dict(_get(rep, "memory_timelines") or {}).items():
        t, y = (tl.get("t", []), tl.get("bytes", [])) if isinstance(tl, dict) else tl
        out["memory"][str(name)] = _downsample(t, y)
    return out
