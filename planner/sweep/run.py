"""Driving a sweep: which points are missing from the table, running them on an engine,
appending each row as it finishes, and the sweep report."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.plan import SOLVED
from planner.sweep import engine
from planner.sweep.spec import Sweep, check_outputs, load_sweep
from planner.sweep.store import ResultStore

log = logging.getLogger(__name__)

# (event, payload): "plan" {total, done, missing, engine...}, "row" {row}
Progress = Callable[[str, dict[str, Any]], None]
ENGINES = ("pool", "ray")


@dataclass
class SweepRun:
    sweep: Sweep
    total: int  # points in the sweep
    reused: int  # found in the table
    computed: int  # run now
    failed: int  # run now without a solution (no plan, or one breaking a hard constraint)
    table: list[dict[str, Any]]  # the sweep's rows (this sweep's keys only)
    results: Path
    report: Path | None


def run_sweep(
    sweep: Sweep | str | Path,
    workers: int = 1,
    engine_name: str = "pool",
    address: str | None = None,
    out: str | Path | None = None,
    report: str | Path | None | bool = None,
    progress: Progress | None = None,
    limit: int | None = None,
) -> SweepRun:
    """Run the points of ``sweep`` missing from its results table. ``limit`` runs at most that
    many (for trials). ``report=False`` skips the HTML; a path overrides the sweep file's."""
    sw = sweep if isinstance(sweep, Sweep) else load_sweep(sweep)
    check_outputs(sw, out or None, report)
    store = ResultStore(out or sw.out)
    points = sw.points()
    keys = [p.key for p in points]
    todo = [{**p.task(), "replay": sw.replay} for p in points if p.key not in store]
    reused = len(points) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    cores = os.cpu_count() or 1
    info: dict[str, Any] = {"total": len(points), "done": reused,
                            "missing": len(todo), "engine": engine_name, "workers": workers,
                            "threads": sw.threads}
    if engine_name == "pool":
        threads = max(1, min(sw.threads, cores))
        workers = max(1, min(workers, cores // threads, len(todo) or 1))
        info.update(workers=workers, threads=threads)
        for t in todo:
            t["options"] = engine._cap_threads(t["method"], t["options"], threads)
    log.info("sweep %s: %d points, %d in %s, %d to run (%s)", sw.name, len(points),
             len(points) - len(todo), store.path, len(todo), engine_name)
    if progress:
        progress("plan", info)
    if not todo:
        rows: Any = iter(())
    elif engine_name == "ray":
        rows = engine.run_ray(todo, threads=sw.threads, workers=workers if workers > 1 else None,
                              address=address,
                              on_start=(lambda i: progress("ray", i)) if progress else None)
    elif workers > 1:
        rows = engine.run_pool(todo, workers)
    else:
        rows = engine.run_local(todo)
    computed = failed = 0
    for row in rows:
        store.append(row)
        computed += 1
        failed += row.get("status") not in SOLVED  # no plan, or a plan that is no solution
        if progress:
            progress("row", {"row": row})
    wanted = set(keys)
    table = [r for r in store.table() if r["key"] in wanted]
    html = None
    if report is not False:
        from planner.sweep.report import write_sweep_report

        html = Path(report) if isinstance(report, (str, Path)) else sw.report
        write_sweep_report(sw, table, html, store.path)
    return SweepRun(sw, len(points), reused, computed, failed, table, store.path, html)
