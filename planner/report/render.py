"""Render report data (dicts read back from JSON/CSV) into one self-contained HTML page: plotly.js
embedded once from plotly's offline bundle (no network), figures as JSON blocks drawn on load."""

from __future__ import annotations

import json
import math
from functools import cache
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from jinja2 import DictLoader, Environment, select_autoescape
from markupsafe import Markup

from planner.report import figures, templates
from planner.report.compare import COLUMNS, PERCENT, REPLAY_COLUMNS, best_in_columns, output_paths


@cache
def plotly_js() -> Markup:
    """plotly.js from the installed plotly package (the offline bundle), safe inside <script>."""
    from plotly.offline import get_plotlyjs

    return Markup(get_plotlyjs().replace("</script", "<\\/script"))


def num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "-"
        if x != 0 and (abs(x) >= 1e7 or abs(x) < 1e-3):
            return f"{x:.{digits - 1}e}"
        return f"{x:,.{max(0, digits - 1 - int(math.floor(math.log10(abs(x))))) if x else 0}f}"
    return str(x)


def cell(x: Any, key: str) -> str:
    if x is None:
        return "-"
    if key in PERCENT:
        return f"{100 * x:.2f}"
    if key in ("served", "refused", "preemptions"):
        return f"{int(x):,}"
    return num(x)


@cache
def environment() -> Environment:
    env = Environment(
        loader=DictLoader({"base.html": templates.BASE, "compare.html": templates.COMPARE,
                           "sweep.html": templates.SWEEP}),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["num"] = num
    env.filters["cell"] = cell
    return env


def _fig_json(fig: go.Figure) -> Markup:
    text = pio.to_json(fig, validate=False, pretty=False)
    # inside <script type="application/json">: no '<', '>' or '&' may end or open a tag
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


class Charts:
    """Figures by id; ``chart(id)`` in a template places a div for it (or '' when absent)."""

    def __init__(self) -> None:
        self.figs: dict[str, go.Figure] = {}

    def add(self, fid: str, fig: go.Figure | None) -> None:
        if fig is not None:
            self.figs[fid] = fig

    def _id(self, fid: str) -> str:
        return "fig-" + "".join(ch if ch.isalnum() else "-" for ch in fid)

    def chart(self, fid: str) -> Markup:
        if fid not in self.figs:
            return Markup("")
        return Markup('<div class="chart" id="{0}" data-figure="{0}"></div>').format(self._id(fid))

    def has(self, fid: str) -> bool:
        return fid in self.figs

    def blocks(self) -> list[dict[str, Any]]:
        return [{"id": self._id(k), "json": _fig_json(f)} for k, f in self.figs.items()]


def render_compare(data: dict[str, Any]) -> str:
    """The comparison page, a pure function of the report's JSON ``data``."""
    sc = data["scenario"]
    charts = Charts()
    charts.add("topology", figures.topology(sc))
    charts.add("workload", figures.workload(sc))
    charts.add("cluster_load", figures.cluster_load(data))
    charts.add("link_utilization", figures.link_utilization(data))
    heatmaps = [m for m in data["methods"] if m.get("heatmap")]
    for m in heatmaps:
        charts.add(f"heatmap-{m['method']}", figures.heatmap(m))
    charts.add("incumbent_bound", figures.incumbent_bound(data))
    replay_ids = []
    for k, fig in enumerate(figures.replay_figures(data)):
        charts.add(f"replay-{k}", fig)
        replay_ids.append(f"replay-{k}")
    rows = data["table"]
    files = data.get("files") or {
        k: p.name for k, p in output_paths(f"{sc['name'] or 'report'}.html").items()}
    return environment().get_template("compare.html").render(
        data=data, sc=sc, wl=sc["workload"], rows=rows, columns=COLUMNS,
        best=best_in_columns(rows), failed=[m for m in data["methods"] if not m.get("metrics")],
        total_replicas=sum(c["replicas"] for c in sc["clusters"]), heatmaps=heatmaps,
        replay_charts=replay_ids, replay_columns=[c[:2] for c in REPLAY_COLUMNS],
        replay_rows=[r for r in rows if any(r.get(c[0]) is not None for c in REPLAY_COLUMNS)],
        chart=charts.chart, has_chart=charts.has,
        figures=charts.blocks(), plotly_js=plotly_js(),
        files=files,
    )


def render_page(template: str, charts: Charts, **context: Any) -> str:
    """Any other page (the sweep report) on the same base: charts and plotly embedded once."""
    return environment().get_template(template).render(
        chart=charts.chart, has_chart=charts.has, figures=charts.blocks(), plotly_js=plotly_js(),
        **context)


def load_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
