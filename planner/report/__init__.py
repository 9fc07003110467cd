"""Comparison reports: run methods on one scenario, score their plans, write HTML + CSV + JSON.

``compare(scenario, methods, time_limit, out)`` does it all; ``run_methods`` gives the data,
``write_report`` writes it, ``render.render_compare`` turns the JSON back into the page.
The replay's figures come in through :mod:`planner.report.replay`.
"""

from planner.report.compare import compare, default_methods, run_methods, write_report

__all__ = ["compare", "default_methods", "run_methods", "write_report"]
