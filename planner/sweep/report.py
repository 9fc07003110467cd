"""The sweep report: the Pareto front of cost vs makespan (and served vs cost), metric surfaces
over the grid, a parallel-coordinates view of every axis, the best method per scenario point.
A pure function of the results table (and the sweep file's axes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from planner.plan import SOLVED, fmt
from planner.report.figures import PALETTE, TEMPLATE
from planner.report.io import write_text_atomic
from planner.report.render import Charts, render_page
from planner.sweep.spec import Sweep

METRICS = (("makespan_s", "makespan (s)"), ("cost_usd", "cost ($)"), ("served", "served"),
           ("replay_makespan_s", "replay makespan (s)"), ("ttft_p99_s", "TTFT p99 (s)"))


def frame(table: list[dict[str, Any]], axes: list[str]) -> pd.DataFrame:
    rows = []
    for r in table:
        d = {k: v for k, v in r.items() if k not in ("overrides", "options")}
        ov = r.get("overrides") or {}
        for a in axes:
            v = ov.get(a)
            d[a] = json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
        d["point"] = r["scenario"] + "".join(f" {a}={ov.get(a)}" for a in axes)
        rows.append(d)
    return pd.DataFrame(rows)


def pareto_mask(x: list[float], y: list[float]) -> list[bool]:
    """Points not dominated in (min x, min y)."""
    out = []
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        out.append(not any((xj <= xi and yj <= yi) and (xj < xi or yj < yi)
                           for j, (xj, yj) in enumerate(zip(x, y, strict=True)) if j != i))
    return out


def _layout(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    margin = {"l": 60, "r": 20, "t": 90, "b": 50, **kw.pop("margin", {})}
    fig.update_layout(title=title, template=TEMPLATE, margin=margin, **kw)
    return fig


def pareto(df: pd.DataFrame, colors: dict[str, str], x: str = "makespan_s", y: str = "cost_usd",
           sense_y: str = "min") -> go.Figure | None:
    ok = df.dropna(subset=[x, y])
    if ok.empty:
        return None
    fig = go.Figure()
    for m, g in ok.groupby("method", sort=False):
        fig.add_trace(go.Scatter(x=g[x], y=g[y], mode="markers", name=str(m), text=g["point"],
                                 marker={"color": colors[str(m)], "size": 8, "opacity": 0.8},
                                 hovertemplate="%{text}<br>" + f"{x} %{{x:.4g}}<br>{y} %{{y:.4g}}"
                                               "<extra>" + str(m) + "</extra>"))
    sign = 1 if sense_y == "min" else -1
    xs, ys = ok[x].tolist(), ok[y].tolist()
    mask = pareto_mask(xs, [sign * v for v in ys])
    front = sorted((xv, yv, p) for xv, yv, p, k in zip(xs, ys, ok["point"] + " / " + ok["method"],
                                                        mask, strict=True) if k)
    fig.add_trace(go.Scatter(x=[f[0] for f in front], y=[f[1] for f in front], text=[f[2] for f in front],
                             mode="lines", line={"shape": "hv", "color": "#222", "dash": "dot"},
                             name="Pareto front", hovertemplate="%{text}<extra>front</extra>"))
    labels = dict(METRICS)
    return _layout(fig, f"Pareto front: {labels[y]} vs {labels[x]}", height=460,
                   xaxis={"title": labels[x]}, yaxis={"title": labels[y]})


def surfaces(df: pd.DataFrame, axes: list[str], methods: list[str]) -> list[go.Figure]:
    """Per metric: a heatmap per method over the two largest axes (mean over the others), or a
    line per method over the one axis."""
    figs = []
    ok = df.dropna(subset=["makespan_s"])
    if ok.empty or not axes:
        return figs
    by_size = sorted(axes, key=lambda a: -df[a].nunique())
    for metric, label in METRICS:
        if metric not in ok or ok[metric].isna().all():  # the replay was off (or failed)
            continue
        if ok[metric].nunique() <= 1 and metric == "served":
            continue
        if len(axes) == 1 or df[by_size[1]].nunique() == 1:
            a = by_size[0]
            fig = go.Figure()
            for k, m in enumerate(methods):
                g = ok[ok["method"] == m].groupby(a, sort=True)[metric].mean()
                fig.add_trace(go.Scatter(x=[str(v) for v in g.index], y=g.values, name=m,
                                         mode="lines+markers",
                                         line={"color": PALETTE[k % len(PALETTE)]}))
            figs.append(_layout(fig, f"{label} over {a}", height=380, xaxis={"title": a},
                                yaxis={"title": label}))
            continue
        ax, ay = by_size[0], by_size[1]
        others = [a for a in axes if a not in (ax, ay)]
        cols = min(len(methods), 3)
        nrows = (len(methods) + cols - 1) // cols
        fig = make_subplots(rows=nrows, cols=cols, subplot_titles=methods,
                            horizontal_spacing=0.08, vertical_spacing=0.15)
        zmin, zmax = ok[metric].min(), ok[metric].max()
        for k, m in enumerate(methods):
            g = ok[ok["method"] == m].pivot_table(index=ay, columns=ax, values=metric,
                                                   aggfunc="mean")
            fig.add_trace(go.Heatmap(z=g.values.tolist(), x=[str(v) for v in g.columns],
                                     y=[str(v) for v in g.index], zmin=zmin, zmax=zmax,
                                     coloraxis="coloraxis",
                                     hovertemplate=f"{ax} %{{x}}<br>{ay} %{{y}}<br>{label} "
                                                   "%{z:.4g}<extra>" + m + "</extra>"),
                          row=k // cols + 1, col=k % cols + 1)
            fig.update_xaxes(title_text=ax, type="category", row=k // cols + 1, col=k % cols + 1)
            fig.update_yaxes(title_text=ay, type="category", row=k // cols + 1, col=k % cols + 1)
        note = f"<br><sup>mean over {', '.join(others)}</sup>" if others else ""
        figs.append(_layout(fig, f"{label} over {ax} x {ay}{note}", height=320 * nrows + 100,
                            coloraxis={"colorscale": "Viridis", "colorbar": {"title": label}}))
    return figs


def parcoords(df: pd.DataFrame, axes: list[str], methods: list[str]) -> go.Figure | None:
    ok = df.dropna(subset=["makespan_s"])
    if ok.empty or len(axes) < 2:
        return None
    dims = []
    for a in [*axes, "method"]:
        vals = ok[a]
        if a != "method" and pd.api.types.is_numeric_dtype(vals):
            dims.append({"label": a, "values": vals.astype(float).tolist()})
        else:
            cats = [str(v) for v in dict.fromkeys(vals.astype(str))]
            dims.append({"label": a, "values": [cats.index(str(v)) for v in vals],
                         "tickvals": list(range(len(cats))), "ticktext": cats})
    for m, label in METRICS[:2]:
        dims.append({"label": label, "values": ok[m].astype(float).tolist()})
    fig = go.Figure(go.Parcoords(dimensions=dims, line={
        "color": ok["makespan_s"].astype(float).tolist(), "colorscale": "Viridis",
        "showscale": True, "colorbar": {"title": "makespan (s)"}}))
    return _layout(fig, "Every point, every axis (drag on an axis to filter)", height=480,
                   margin={"t": 120, "l": 80, "r": 80})


def write_sweep_report(sw: Sweep, table: list[dict[str, Any]], html: Path, results: Path) -> Path:
    axes = [a.path for a in sw.axes]
    df = frame(table, axes)
    methods = [m for m in sw.methods if not df.empty and (df["method"] == m).any()]
    colors = {m: PALETTE[k % len(PALETTE)] for k, m in enumerate(sw.methods)}
    # only solutions are charted and ranked: a plan that breaks a hard constraint (status
    # ``infeasible``, e.g. refusals where every request must be served) is listed with the
    # failures, as compare does
    solved = df[df["status"].isin(SOLVED)] if not df.empty else df
    charts = Charts()
    surface_ids: list[str] = []
    best_rows: list[list[str]] = []
    failures: list[str] = []
    if not solved.empty:
        charts.add("pareto", pareto(solved, colors))
        if solved["served"].dropna().nunique() > 1:
            charts.add("pareto_served", pareto(solved, colors, x="cost_usd", y="served",
                                               sense_y="max"))
        for k, fig in enumerate(surfaces(solved, axes, methods)):
            charts.add(f"surface-{k}", fig)
            surface_ids.append(f"surface-{k}")
        charts.add("parcoords", parcoords(solved, axes, methods))
        ok = solved.dropna(subset=["objective"])
        sense_max = (ok["objective_name"] == "served").any()
        for point, g in ok.groupby("point", sort=False):
            best = g.loc[g["objective"].idxmax() if sense_max else g["objective"].idxmin()]
            best_rows.append([str(point), str(best["method"]), f"{best['objective']:.6g}",
                              f"{best['makespan_s']:.6g}", f"{best['cost_usd']:.6g}",
                              str(int(best["served"])), fmt(best.get("replay_makespan_s")),
                              fmt(best.get("ttft_p99_s"))])
    if not df.empty:
        for _, r in df[~df["status"].isin(SOLVED)].iterrows():
            failures.append(f"{r['point']} / {r['method']}: {r['status']}: {r['termination']}")
    text = render_page(
        "sweep.html", charts, name=sw.name, axes=[{"path": a.path, "values": a.values}
                                                  for a in sw.axes],
        methods=sw.methods, n_rows=len(df), n_failed=len(failures),
        n_points=len(sw.bases) * max(1, _product(sw)), table=results.name,
        surfaces=surface_ids, best_header=["scenario point", "best method", "objective",
                                           "makespan (s)", "cost ($)", "served",
                                           "replay makespan (s)", "TTFT p99 (s)"],
        best_rows=best_rows, failures=failures[:200], meta=json.dumps({"file": str(sw.file)}))
    return write_text_atomic(html, text)


def _product(sw: Sweep) -> int:
    n = 1
    for a in sw.axes:
        n *= len(a.values)
    return n
