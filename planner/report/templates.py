# ruff: noqa: E501  (HTML lines)
"""The report templates (jinja2, autoescaped). Kept in a module rather than data files so that
every install carries them."""

BASE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 1.2em 3em; color: #222; }
h1 { margin-bottom: .2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: .9em; }
table { border-collapse: collapse; font-size: .9em; margin: .6em 0; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td.name, th.name { text-align: left; }
td.best { font-weight: bold; background: #e6f4e6; }
tr.failed td { color: #a33; background: #fdf0f0; }
.note { background: #f7f7f7; border-left: 4px solid #bbb; padding: .4em .8em; }
.bad { color: #a33; } .chart { min-height: 120px; }
pre { background: #f7f7f7; padding: .6em; overflow: auto; max-height: 20em; font-size: .8em; }
</style>
<script type="text/javascript">{{ plotly_js }}</script>
</head>
<body>
{% block body %}{% endblock %}
{% for fig in figures %}<script type="application/json" id="{{ fig.id }}-data">{{ fig.json }}</script>
{% endfor %}
<script type="text/javascript">
(function () {
  var config = {displaylogo: false, responsive: true, showLink: false};
  document.querySelectorAll("div.chart[data-figure]").forEach(function (div) {
    var fig = JSON.parse(document.getElementById(div.dataset.figure + "-data").textContent);
    Plotly.newPlot(div, fig.data, fig.layout, config);
  });
})();
</script>
</body>
</html>
"""

COMPARE = r"""{% extends "base.html" %}
{% block title %}{{ sc.name }}: comparison of methods{% endblock %}
{% block body %}
<h1>{{ sc.name }}: comparison of methods</h1>
<p class="meta">{{ sc.description }}</p>
<p class="meta">Scenario {{ sc.file or "(inline)" }}; objective <b>{{ sc.objective }}</b>
{%- if sc.horizon_s %}, horizon {{ sc.horizon_s | num }} s{% endif %};
model {{ sc.model.name }} ({{ sc.model.kv_bytes_per_token | num }} B of KV per token);
time limit per method {{ data.time_limit_s | num }} s; generated {{ data.generated_at }}
in {{ data.total_wall_s | num }} s. Numbers: <code>{{ files.csv }}</code>, <code>{{ files.json }}</code>.</p>

<h2>Methods x metrics</h2>
<table>
<tr><th class="name">method</th><th class="name">kind</th><th class="name">status</th>
{% for key, header, sense in columns %}<th>{{ header }}</th>{% endfor %}
<th class="name">bottleneck</th></tr>
{% for r in rows %}
<tr class="{{ 'failed' if r.makespan_s is none else '' }}">
<td class="name">{{ r.method }}</td><td class="name">{{ r.kind }}</td><td class="name">{{ r.status }}</td>
{% for key, header, sense in columns %}
<td class="{{ 'best' if r.method in best.get(key, ()) else '' }}">{{ r[key] | cell(key) }}{% if r.method in best.get(key, ()) %} ★{% endif %}</td>
{% endfor %}
<td class="name">{{ r.bottleneck or "-" }}</td></tr>
{% endfor %}
</table>
<p class="meta">★ best in its column. Gap to best bound: {% if sc.objective == "served" %}(best proven bound - value){% else %}(value - best proven bound){% endif %} / value, best
bound {{ data.best_bound | num }}{% if data.best_bound is none %} (no exact method proved one){% endif %}.
Peak link utilisation and KV memory-time use are shares of the plan's period
({{ "horizon" if sc.horizon_s else "makespan" }}).</p>
{% for n in data.notes or [] %}<p class="meta"><b>Note:</b> {{ n }}.</p>
{% endfor %}
{% if failed %}
<div class="note"><b>Methods without a plan</b><ul>
{% for m in failed %}<li class="bad">{{ m.method }}: {{ m.status | replace("_", " ") }}{% if m.termination %}: {{ m.termination }}{% endif %}</li>{% endfor %}
</ul></div>
{% endif %}

<h2>The scenario</h2>
<p>{{ sc.datacenters | length }} datacenters, {{ sc.clusters | length }} clusters
({{ total_replicas }} replicas), {{ sc.links | length }} links; {{ wl.requests }} requests over
{{ wl.duration_s | num }} s; prompt tokens median {{ wl.prompt_tokens.p50 | num }}, p99
{{ wl.prompt_tokens.p99 | num }}; output tokens median {{ wl.output_tokens.p50 | num }}, p99
{{ wl.output_tokens.p99 | num }}; {{ (100 * wl.prefix_share) | num }} % of requests carry a shared prefix.</p>
{{ chart("topology") }}
{{ chart("workload") }}

<h2>Load per method</h2>
{{ chart("cluster_load") }}
{{ chart("link_utilization") or '<p class="note">No inter-datacenter links.</p>' | safe }}

<h2>Heatmap policy</h2>
{% for m in heatmaps %}{{ chart("heatmap-" ~ m.method) }}
{% if not has_chart("heatmap-" ~ m.method) %}<p>Heatmap of {{ m.method }} (raw):</p><pre>{{ m.heatmap | tojson(indent=1) }}</pre>{% endif %}
{% else %}<p class="note">No method in this comparison reported a heatmap.</p>{% endfor %}

<h2>Exact solvers over time</h2>
{{ chart("incumbent_bound") or '<p class="note">No exact method reported an incumbent history.</p>' | safe }}

<h2>Replay</h2>
{% if replay_rows %}
<table>
<tr><th class="name">method</th>{% for key, header in replay_columns %}<th>{{ header }}</th>{% endfor %}</tr>
{% for r in replay_rows %}<tr><td class="name">{{ r.method }}</td>{% for key, header in replay_columns %}<td>{{ r[key] | cell(key) }}</td>{% endfor %}</tr>
{% endfor %}
</table>
<p class="meta">The discrete-event replay of each plan (<code>planner simulate</code>): queues, continuous batching, KV growth, link transfers. Its makespan is at least the fluid makespan above, often far more: the fluid figure averages each resource's load over the plan, while in the replay a request decoding D tokens takes D decode steps however idle the fleet is, and arrivals come when they come. Goodput is shown only when the scenario sets an SLO.</p>
{% endif %}
{% if replay_charts %}{% for id in replay_charts %}{{ chart(id) }}{% endfor %}
{% elif data.replay_available %}<p class="note">The replay produced no figures for these plans.</p>
{% else %}<p class="note">The discrete-event replay (<code>planner.simulate</code>) is not installed in this
build: latency CDFs and memory timelines appear here once it is.</p>{% endif %}
{% endblock %}
"""

SWEEP = r"""{% extends "base.html" %}
{% block title %}sweep {{ name }}{% endblock %}
{% block body %}
<h1>Sweep {{ name }}</h1>
<p class="meta">{{ n_rows }} results ({{ n_failed }} without a plan) over {{ n_points }} scenario
points x {{ methods | length }} methods ({{ methods | join(", ") }}); axes:
{% for a in axes %}<code>{{ a.path }}</code> ({{ a["values"] | length }} values){{ ", " if not loop.last }}{% endfor %}
{%- if not axes %} scenario files{% endif %}. Table: <code>{{ table }}</code>.</p>
<h2>Pareto front</h2>
{{ chart("pareto") }}
{{ chart("pareto_served") or "" }}
<h2>Metric surfaces</h2>
{% for id in surfaces %}{{ chart(id) }}{% else %}<p class="note">No numeric grid to draw.</p>{% endfor %}
{{ chart("parcoords") or "" }}
<h2>Best per scenario point</h2>
<table>
<tr>{% for h in best_header %}<th class="name">{{ h }}</th>{% endfor %}</tr>
{% for r in best_rows %}<tr>{% for v in r %}<td class="name">{{ v }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% if failures %}<div class="note"><b>Points without a solution</b><ul>
{% for f in failures %}<li class="bad">{{ f }}</li>{% endfor %}</ul></div>{% endif %}
{% endblock %}
"""
