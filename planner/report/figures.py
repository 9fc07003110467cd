"""Plotly figures built from the report's JSON alone (never from live objects), so that a report
is a pure function of its data files. Each builder returns a ``go.Figure`` or None (nothing to
draw)."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

TEMPLATE = "plotly_white"
ROLE_COLOR = {"prefill": "#1f77b4", "decode": "#ff7f0e", "mixed": "#2ca02c"}
HEIGHT = 380
PALETTE = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692",
           "#b6e880", "#ff97ff", "#fecb52", "#1f77b4", "#8c564b", "#7f7f7f", "#bcbd22")


def method_colors(data: dict[str, Any]) -> dict[str, str]:
    """One colour per method, the same in every chart."""
    return {m["method"]: PALETTE[k % len(PALETTE)] for k, m in enumerate(data["methods"])}


def _layout(fig: go.Figure, title: str, height: int = HEIGHT, **kw: Any) -> go.Figure:
    fig.update_layout(title=title, template=TEMPLATE, height=height,
                      margin={"l": 60, "r": 20, "t": 50, "b": 50}, **kw)
    return fig


def _with_plans(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in data["methods"] if m.get("metrics")]


# ---------------------------------------------------------------- the scenario


def topology(sc: dict[str, Any]) -> go.Figure:
    """Datacenters on a circle, their clusters around them (colour = role, size = replicas),
    links as lines labelled with bandwidth and latency."""
    dcs = sc["datacenters"]
    n = len(dcs)
    pos: dict[str, tuple[float, float]] = {}
    for i, d in enumerate(dcs):
        a = math.pi / 2 - 2 * math.pi * i / max(n, 1)
        pos[d] = (math.cos(a), math.sin(a)) if n > 2 else ((0.0, 0.0) if n == 1 else
                                                            (-1.0 + 2.0 * i, 0.0))
    fig = go.Figure()
    for lk in sc["links"]:
        (x0, y0), (x1, y1) = pos[lk["a"]], pos[lk["b"]]
        width = 1.5 + 2.5 * math.log10(1 + lk["bandwidth_gbps"]) / 3
        fig.add_trace(go.Scatter(x=[x0, x1], y=[y0, y1], mode="lines", showlegend=False,
                                 line={"color": "#888", "width": width}, hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=[(x0 + x1) / 2], y=[(y0 + y1) / 2], mode="text", showlegend=False,
            text=[f"{lk['bandwidth_gbps']:g} Gbps, {lk['latency_ms']:g} ms"],
            textfont={"size": 11}, hovertext=[f"{lk['name']}: {lk['bandwidth_gbps']:g} Gbps, "
                                              f"{lk['latency_ms']:g} ms, ${lk['cost_per_gb']:g}/GB"],
            hoverinfo="text"))
    fig.add_trace(go.Scatter(
        x=[pos[d][0] for d in dcs], y=[pos[d][1] for d in dcs], mode="markers+text",
        text=dcs, textposition="top center", name="datacenter", hoverinfo="text",
        marker={"symbol": "square", "size": 26, "color": "#ddd", "line": {"color": "#444",
                                                                         "width": 1}}))
    by_dc: dict[str, list[dict]] = {}
    for c in sc["clusters"]:
        by_dc.setdefault(c["datacenter"], []).append(c)
    for role, color in ROLE_COLOR.items():
        xs, ys, text, hover, size = [], [], [], [], []
        for d, cs in by_dc.items():
            cx, cy = pos[d]
            for k, c in enumerate(cs):
                if c["role"] != role:
                    continue
                a = 2 * math.pi * k / len(cs) - math.pi / 2
                r = 0.28 if n > 1 else 0.6
                xs.append(cx + r * math.cos(a))
                ys.append(cy + r * math.sin(a))
                text.append(f"{c['name']} ({c['replicas']}x {c['accelerator'] or 'custom'})")
                hover.append(
                    f"{c['name']} in {d}<br>{role}, {c['replicas']} x {c['accelerator'] or 'custom'}"
                    f"<br>prefill {c['prefill_tokens_per_s']:,.0f} tok/s, decode "
                    f"{c['decode_tokens_per_s']:,.0f} tok/s per replica<br>KV {c['kv_capacity_gb']:g} GB"
                    f", batch {c['max_batch_size']}, ${c['cost_per_hour']:g}/h per replica")
                size.append(10 + 4 * math.sqrt(c["replicas"]))
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers+text", name=role, text=text,
                                     textposition="bottom center", textfont={"size": 10},
                                     hovertext=hover, hoverinfo="text",
                                     marker={"size": size, "color": color}))
    axis = {"visible": False, "range": [-1.7, 1.7]}
    return _layout(fig, "Topology: datacenters, clusters (colour = role), links", height=460,
                   xaxis=axis, yaxis={**axis, "scaleanchor": "x"})


def _step(hist: dict[str, Any]) -> tuple[list[float], list[float]]:
    edges, counts = hist["edges"], hist["counts"]
    if not counts:
        return [], []
    return list(edges), list(counts) + [counts[-1]]


def workload(sc: dict[str, Any]) -> go.Figure:
    wl = sc["workload"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "prompt tokens", "output tokens", "arrivals over time"))
    for col, key, xlabel in ((1, "prompt_tokens", "tokens"), (2, "output_tokens", "tokens"),
                             (3, "arrival_s", "arrival time (s)")):
        hist = wl[key]["hist"]
        x, y = _step(hist)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line={"shape": "hv"}, fill="tozeroy",
                                 name=key, showlegend=False), row=1, col=col)
        fig.update_xaxes(title_text=xlabel, type="log" if hist.get("log") else "linear",
                         row=1, col=col)
        fig.update_yaxes(title_text="requests", row=1, col=col)
    return _layout(fig, f"Workload: {wl['requests']} requests ({wl['source']})", height=340)


# ---------------------------------------------------------------- per method


def cluster_load(data: dict[str, Any]) -> go.Figure | None:
    ms = _with_plans(data)
    if not ms:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("compute load (s)", "KV memory load (s)"))
    col = method_colors(data)
    for m in ms:
        names = list(m["metrics"]["clusters"])
        cl = m["metrics"]["clusters"]
        fig.add_trace(go.Bar(x=names, y=[cl[n]["load_s"] for n in names], name=m["method"],
                             legendgroup=m["method"], marker_color=col[m["method"]]), row=1, col=1)
        fig.add_trace(go.Bar(x=names, y=[cl[n]["memory_load_s"] for n in names], name=m["method"],
                             legendgroup=m["method"], showlegend=False,
                             marker_color=col[m["method"]]), row=1, col=2)
    fig.update_yaxes(title_text="seconds", row=1, col=1)
    fig.update_yaxes(title_text="seconds", row=1, col=2)
    return _layout(fig, "Per-cluster load per method", barmode="group")


def link_utilization(data: dict[str, Any]) -> go.Figure | None:
    ms = [m for m in _with_plans(data) if m["metrics"].get("links")]
    if not ms:
        return None
    fig = go.Figure()
    col = method_colors(data)
    for m in ms:
        lk = m["metrics"]["links"]
        names = list(lk)
        fig.add_trace(go.Bar(x=names, y=[100 * lk[n]["utilization"] for n in names],
                             name=m["method"], marker_color=col[m["method"]],
                             customdata=[[lk[n]["bytes"] / 1e9, lk[n]["load_s"]] for n in names],
                             hovertemplate="%{x}: %{y:.1f}% (%{customdata[0]:.3g} GB, "
                                           "%{customdata[1]:.3g} s)"))
    return _layout(fig, "Per-link utilisation per method (share of the plan's period)",
                   barmode="group", yaxis={"title": "utilisation (%)"})


def incumbent_bound(data: dict[str, Any]) -> go.Figure | None:
    ms = [m for m in data["methods"] if m.get("history")]
    if not ms:
        return None
    fig = go.Figure()
    col = method_colors(data)
    for m in ms:
        h = m["history"]
        t = [row[0] for row in h]
        fig.add_trace(go.Scatter(x=t, y=[row[1] for row in h], mode="lines+markers",
                                 line={"shape": "hv", "color": col[m["method"]]},
                                 name=f"{m['method']} incumbent"))
        if any(row[2] is not None for row in h) and not m.get("bound_contradicted_by"):
            fig.add_trace(go.Scatter(x=t, y=[row[2] for row in h], mode="lines",
                                     line={"shape": "hv", "dash": "dash", "color": col[m["method"]]},
                                     name=f"{m['method']} bound"))
    obj = data["scenario"]["objective"]
    unit = {"makespan": "s", "cost": "$", "served": "requests"}.get(obj, "")
    return _layout(fig, "Exact solvers: incumbent and bound over time",
                   xaxis={"title": "solve time (s)"}, yaxis={"title": f"{obj} ({unit})"})


def _is_grid(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(r, list) for r in v)


def _numeric_grid(v: Any) -> bool:
    return _is_grid(v) and all(isinstance(x, (int, float)) or x is None for r in v for x in r)


def heatmap(m: dict[str, Any]) -> go.Figure | None:
    """Draw a heatmap policy's grid from its ``to_dict()``: a 2-D numeric grid (a key with
    ``margin`` preferred) coloured, a 2-D grid of labels (cluster pairs) as cell text, and
    1-D ``*edges*`` lists as axes (prefill first). Unknown shapes return None (the report then
    shows the dict as text)."""
    hm = m.get("heatmap")
    if not isinstance(hm, dict):
        return None
    if {"best_prefill", "best_decode", "cluster_names"} <= hm.keys():
        return _policy_heatmap(m["method"], hm)
    grids = {k: v for k, v in hm.items() if _is_grid(v)}
    numeric = {k: v for k, v in grids.items() if _numeric_grid(v)}
    labels = {k: v for k, v in grids.items() if k not in numeric}
    if not grids:
        return None
    zkey = next((k for k in numeric if "margin" in k), next(iter(numeric), None))
    lkey = next(iter(labels), None)
    base = numeric[zkey] if zkey else grids[lkey]
    rows, cols = len(base), len(base[0])
    edges = [k for k, v in hm.items() if "edge" in k and isinstance(v, list) and v
             and all(isinstance(x, (int, float)) for x in v)]
    pre = next((k for k in edges if "prefill" in k or "prompt" in k), edges[0] if edges else None)
    dec = next((k for k in edges if k != pre), None)

    def ticks(key: str | None, count: int) -> list[str]:
        if key is None or len(hm[key]) < count:
            return [str(i) for i in range(count)]
        e = hm[key]
        return [f"{e[i]:g}-{e[i + 1]:g}" if i + 1 < len(e) else f"{e[i]:g}+" for i in range(count)]

    def text(v: Any) -> str:
        if isinstance(v, list):
            return "→".join(str(x) for x in v)
        return "" if v is None else str(v)

    cell_text = [[text(x) for x in r] for r in labels[lkey]] if lkey else None
    if zkey:
        z = numeric[zkey]
    else:  # colour by label
        names = sorted({t for r in cell_text or [] for t in r})
        z = [[names.index(t) for t in r] for r in cell_text or []]
    fig = go.Figure(go.Heatmap(z=z, x=ticks(dec, cols), y=ticks(pre, rows), text=cell_text,
                               texttemplate="%{text}" if cell_text and rows * cols <= 400 else None,
                               colorscale="Viridis", colorbar={"title": zkey or "choice"},
                               hovertemplate="prefill %{y}, decode %{x}<br>%{text}<br>%{z}"
                                             "<extra></extra>"))
    return _layout(fig, f"Heatmap used by {m['method']}: best cluster pair per request shape",
                   height=420 + 8 * rows, xaxis={"title": f"decode length bucket ({dec or 'index'})"},
                   yaxis={"title": f"prefill length bucket ({pre or 'index'})"})


def _edges_ticks(e: list[float], count: int) -> list[str]:
    if len(e) < count + 1:
        return [str(i) for i in range(count)]
    return [f"{e[i]:,.0f}-{e[i + 1]:,.0f}" for i in range(count)]


def _policy_heatmap(method: str, hm: dict[str, Any]) -> go.Figure | None:
    """planner.heuristics.heatmap's grid: cell text = best prefill -> decode cluster, colour =
    margin to the second best (seconds), hover with the best cost and the requests per cell."""
    names = hm["cluster_names"]
    bp, bd = hm["best_prefill"], hm["best_decode"]
    if not _is_grid(bp):
        return None
    rows, cols = len(bp), len(bp[0])

    def name(i: Any) -> str:
        return names[i] if isinstance(i, int) and 0 <= i < len(names) else "-"

    text = [[f"{name(bp[r][c])}→{name(bd[r][c])}" for c in range(cols)] for r in range(rows)]
    z = hm.get("margin") if _numeric_grid(hm.get("margin")) else [[0] * cols for _ in range(rows)]
    best = hm.get("best_cost") if _numeric_grid(hm.get("best_cost")) else z
    counts = hm.get("counts") if _numeric_grid(hm.get("counts")) else [[None] * cols] * rows
    custom = [[[best[r][c], counts[r][c]] for c in range(cols)] for r in range(rows)]
    unit = "s" if hm.get("cost") in ("latency", "makespan", None) else ""
    fig = go.Figure(go.Heatmap(
        z=z, x=_edges_ticks(hm.get("decode_edges", []), cols),
        y=_edges_ticks(hm.get("prefill_edges", []), rows), text=text, customdata=custom,
        texttemplate="%{text}" if rows * cols <= 256 else None, textfont={"size": 9},
        colorscale="Blues", colorbar={"title": f"margin ({unit})" if unit else "margin"},
        hovertemplate="prompt %{y} tokens, output %{x} tokens<br>best %{text}<br>cost "
                      "%{customdata[0]:.4g}, margin %{z:.3g}<br>%{customdata[1]} requests"
                      "<extra></extra>"))
    return _layout(fig, f"Heatmap used by {method}: best (prefill → decode) per request shape "
                   f"(cost: {hm.get('cost', '?')})", height=360 + 24 * rows,
                   xaxis={"title": "output tokens (bucket)", "type": "category"},
                   yaxis={"title": "prompt tokens (bucket)", "type": "category"})


def replay_figures(data: dict[str, Any]) -> list[go.Figure]:
    """Latency CDFs and memory timelines from each method's replay summary (see
    :mod:`planner.report.replay`)."""
    reps = [(m["method"], m["replay"]) for m in data["methods"] if isinstance(m.get("replay"), dict)]
    figs: list[go.Figure] = []
    col = method_colors(data)
    keys = [k for k in ("ttft_s", "tpot_s", "latency_s") if any(k in r.get("cdf", {}) for _, r in reps)]
    if keys:
        fig = make_subplots(rows=1, cols=len(keys), subplot_titles=[f"{k} CDF" for k in keys])
        for name, r in reps:
            for j, k in enumerate(keys, start=1):
                c = r.get("cdf", {}).get(k)
                if c:
                    fig.add_trace(go.Scatter(x=c["x"], y=c["p"], mode="lines", name=name,
                                             line={"color": col[name]},
                                             legendgroup=name, showlegend=j == 1), row=1, col=j)
                fig.update_xaxes(title_text="seconds", row=1, col=j)
        figs.append(_layout(fig, "Replay: latency CDFs per method"))
    mem = [(name, r["memory"]) for name, r in reps if r.get("memory")]
    if mem:
        fig = go.Figure()
        for name, tl in mem:
            for k, series in list(tl.items())[:12]:
                fig.add_trace(go.Scatter(x=series["t"], y=[b / 1e9 for b in series["bytes"]],
                                         mode="lines", line={"color": col[name]},
                                         name=name if k == "all replicas" else f"{name}: {k}"))
        figs.append(_layout(fig, "Replay: KV cache held over time (all replicas)",
                            xaxis={"title": "time (s)"}, yaxis={"title": "KV cache (GB)"}))
    return figs
