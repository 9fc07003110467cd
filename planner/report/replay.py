"""The hook through which the discrete-event replay (``planner.simulate``) reaches the report.

Two functions, both small, both for the replay's author to extend:

- :func:`summarize_replay` turns whatever ``planner.simulate.simulate(instance, plan)`` returns
  into a JSON-able dict (this is what the report's JSON stores per method, under ``replay``);
- :func:`planner.report.figures.replay_figures` draws those dicts (latency CDFs, memory
  timelines) for every method.

The summary dict has these optional keys (anything missing is simply not drawn):

    {"cdf": {"ttft_s": {"x": [...], "p": [...]}, "tpot_s": {...}, "latency_s": {...}},
     "stats": {"ttft_s_p50": ..., "latency_s_p99": ..., "makespan_s": ..., "preemptions": ...},
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
    try:
        import planner.simulate  # noqa: F401
    except ImportError:
        return False
    return hasattr(planner.simulate, "simulate")


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


def summarize_replay(rep: Any) -> dict[str, Any]:
    """Read the replay's result by attribute or key: per-request arrays ``ttft_s``, ``tpot_s``,
    ``latency_s``; ``memory_timelines`` as {name: (t, bytes)} or {name: {"t", "bytes"}};
    scalars ``makespan_s``, ``preemptions``, ``goodput``. Extend here as the replay grows."""
    out: dict[str, Any] = {"cdf": {}, "stats": {}, "memory": {}}
    for key in PER_REQUEST:
        v = _get(rep, key)
        if v is None:
            continue
        c = cdf(v)
        if c:
            out["cdf"][key] = c
            q = np.quantile(np.asarray(c["x"]), [0.5, 0.9, 0.99]) if c["x"] else []
            for name, val in zip(("p50", "p90", "p99"), q, strict=False):
                out["stats"][f"{key}_{name}"] = float(val)
    for key in ("makespan_s", "preemptions", "goodput"):
        v = _get(rep, key)
        if isinstance(v, (int, float, np.integer, np.floating)):
            out["stats"][key] = float(v)
    mem = _get(rep, "memory_timelines") or {}
    for name, tl in dict(mem).items():
        if isinstance(tl, dict):
            out["memory"][str(name)] = _downsample(tl.get("t", []), tl.get("bytes", []))
        else:
            t, y = tl
            out["memory"][str(name)] = _downsample(t, y)
    return out
