"""``planner compare``: run several methods on one scenario, score every plan with the evaluator
(and the replay when it exists), and write a report (HTML) with its numbers (CSV, JSON).

The HTML is a pure function of the JSON (:func:`planner.report.render.render_compare`), and the
CSV is the methods x metrics table of the same JSON (:func:`table_rows`): re-rendering a report
from ``NAME.json`` gives the same page. Each method's plan is written beside them
(``NAME.plans/METHOD.plan.json``) so that ``planner evaluate`` can check any figure.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from planner.api import as_instance, check_time_limit, own_time_limit, solve
from planner.instance import Instance
from planner.metrics import arrival_notes, evaluate_arrays
from planner.plan import SOLVED, Result, plan_to_dict, relative_gap
from planner.registry import MethodSpec, get_method, methods
from planner.report import replay as replay_hook
from planner.report.io import (
    check_output,
    dumps,
    jsonable,
    not_empty,
    stage_texts,
    swapped_folder,
    write_json_atomic,
)
from planner.scenario.errors import InputError, OptionError, Problem
from planner.scenario.load import load_scenario
from planner.scenario.model import Scenario

log = logging.getLogger(__name__)

SCHEMA = "planner.compare/1"
# the exact method a default comparison runs: the first of these that is registered
EXACT_PREFERENCE = ("cpsat", "milp_ortools", "milp", "aggregated")
DEFAULT_TIME_LIMIT = 30.0

# Event callback: (event, method, payload). Events: "start" {kind, index, total, time_limit},
# "done" {row of the methods table}. The CLI turns these into progress bars.
Progress = Callable[[str, str, dict[str, Any]], None]

# The columns of the methods x metrics table: (key, header with unit, best = min | max | None)
COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("makespan_s", "makespan (s)", "min"),
    ("gap_to_best_bound", "gap to best bound (%)", "min"),
    ("cost_usd", "cost ($)", "min"),
    ("served", "served (requests)", "max"),
    ("refused", "refused (requests)", "min"),
    # utilisations get no star: the lowest is not the best (random spreads thinnest; found by
    # review), only the least used
    ("peak_link_utilization", "peak link utilisation (%)", None),
    ("kv_memory_time_GBs", "KV memory-time (GB·s)", None),
    ("peak_kv_memory_utilization", "peak KV memory-time use (%)", None),
    ("solve_wall_s", "solve time (s)", "min"),
)
CSV_FIELDS = (
    "method", "kind", "status", "objective_name", "objective", "bound", "gap", "best_bound",
    "gap_to_best_bound", "makespan_s", "bottleneck", "cost_usd", "rent_usd", "egress_usd",
    "served", "refused", "peak_link_utilization", "kv_memory_time_GBs",
    "peak_kv_memory_utilization", "prefix_tokens_reused", "solve_wall_s", "termination",
    # from the replay, when it ran (blank otherwise)
    "replay_makespan_s", "ttft_p99_s", "tpot_p99_s", "latency_p99_s", "preemptions",
    "goodput_fraction",
)
# the replay's columns in the report: (CSV key, header with unit, key in the replay's stats)
REPLAY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("replay_makespan_s", "replay makespan (s)", "makespan_s"),
    ("ttft_p99_s", "TTFT p99 (s)", "ttft_s_p99"),
    ("tpot_p99_s", "TPOT p99 (s)", "tpot_s_p99"),
    ("latency_p99_s", "latency p99 (s)", "latency_s_p99"),
    ("preemptions", "preemptions", "preemptions"),
    ("goodput_fraction", "goodput (% within SLO)", "goodput_fraction"),
)
PERCENT = {"gap_to_best_bound", "peak_link_utilization", "peak_kv_memory_utilization",
           "goodput_fraction"}


def default_methods() -> list[str]:
    """Every registered heuristic plus the best exact method (cpsat when registered)."""
    specs = methods()
    names = [s.name for s in specs if s.kind == "heuristic"]
    exact = [s.name for s in specs if s.kind == "exact"]
    for pref in EXACT_PREFERENCE:
        if pref in exact:
            return names + [pref]
    return names + exact[:1]


def resolve_methods(names: Sequence[str] | None) -> list[MethodSpec]:
    """Registry specs for ``names`` (default: :func:`default_methods`); unknown names are one
    OptionError listing them all. Heuristics run first, then exact methods, each in given order."""
    chosen = list(dict.fromkeys(names)) if names else default_methods()
    if not chosen:
        raise OptionError("--methods", [Problem("--methods", "no method given", "")])
    specs: list[MethodSpec] = []
    problems: list[Problem] = []
    for n in chosen:
        try:
            specs.append(get_method(n))
        except OptionError as exc:
            problems.extend(exc.problems)
    if problems:
        raise OptionError("--methods", [Problem("--methods", p.message, p.given) for p in problems])
    return [s for s in specs if s.kind != "exact"] + [s for s in specs if s.kind == "exact"]


# ---------------------------------------------------------------- the scenario in brief


def _histogram(values: np.ndarray, bins: int = 40, log_scale: bool = False) -> dict[str, Any]:
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"edges": [], "counts": [], "log": log_scale}
    lo, hi = float(v.min()), float(v.max())
    if log_scale and lo > 0 and hi / lo > 20:
        edges = np.geomspace(lo, hi * (1 + 1e-9), bins + 1)
    else:
        log_scale = False
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    counts, edges = np.histogram(v, bins=edges)
    return {"edges": edges.tolist(), "counts": counts.tolist(), "log": log_scale}


def _stats(v: np.ndarray) -> dict[str, float | None]:
    if v.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    q = np.percentile(v, [50, 90, 99])
    return {"mean": float(v.mean()), "p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]),
            "max": float(v.max())}


def scenario_brief(sc: Scenario, inst: Instance) -> dict[str, Any]:
    wl = sc.workload
    return {
        "name": sc.name,
        "description": sc.description,
        "file": str(sc.path) if sc.path else None,
        "objective": sc.objective,
        "horizon_s": sc.horizon_s,
        "prefix_caching": sc.prefix_caching,
        "model": {"name": sc.model.name, "kv_bytes_per_token": sc.model.kv_bytes_per_token},
        "datacenters": list(sc.datacenters),
        "clusters": [
            {"name": c.name, "datacenter": c.datacenter, "role": c.role, "replicas": c.replicas,
             "accelerator": c.accelerator, "prefill_tokens_per_s": c.prefill_tokens_per_s,
             "decode_tokens_per_s": c.decode_tokens_per_s, "kv_capacity_gb": c.kv_capacity_gb,
             "max_batch_size": c.max_batch_size, "cost_per_hour": c.cost_per_hour}
            for c in sc.clusters
        ],
        "links": [
            {"name": lk.name, "a": lk.a, "b": lk.b, "bandwidth_gbps": lk.bandwidth_gbps,
             "latency_ms": lk.latency_ms, "cost_per_gb": lk.cost_per_gb}
            for lk in sc.links
        ],
        "workload": {
            "source": wl.source,
            "requests": len(wl),
            "duration_s": float(wl.arrival_s.max() - wl.arrival_s.min()) if len(wl) else 0.0,
            "prompt_tokens": {**_stats(inst.prompt_tokens.astype(float)),
                              "hist": _histogram(inst.prompt_tokens, log_scale=True)},
            "output_tokens": {**_stats(inst.output_tokens.astype(float)),
                              "hist": _histogram(inst.output_tokens, log_scale=True)},
            "arrival_s": {"hist": _histogram(inst.arrival_s, bins=60)},
            "prefix_share": float((inst.prefix_tokens > 0).mean()) if len(wl) else 0.0,
        },
    }


# ---------------------------------------------------------------- running the methods


@dataclass
class MethodOutcome:
    """What the report keeps of one method's run (JSON-able through :meth:`to_dict`)."""

    method: str
    kind: str
    status: str
    termination: str = ""
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    wall_s: float = 0.0
    metrics: dict[str, Any] | None = None
    history: list[list[float | None]] = field(default_factory=list)
    heatmap: dict[str, Any] | None = None
    replay: dict[str, Any] | None = None
    plan_file: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self.__dict__)


def _outcome(spec: MethodSpec, res: Result, inst: Instance) -> MethodOutcome:
    # the table's bounds and gaps are about the scenario's objective: a batch method's own (its
    # batch problem's) go into its termination, not into the best bound
    status, bound, gap = res.scenario_claims()
    term = res.own_claim()
    out = MethodOutcome(spec.name, spec.kind, status, term, res.objective, bound, gap,
                        float(res.wall_s), options=jsonable(res.options))
    out.history = [list(h) for h in (res.history or [])]
    hm = (res.info or {}).get("heatmap")
    if hm is not None:
        try:
            out.heatmap = jsonable(hm.to_dict() if hasattr(hm, "to_dict") else hm)
        except Exception as exc:  # a bad heatmap must not lose the method's row
            log.warning("heatmap of %s could not be converted: %s", spec.name, exc)
    if res.plan is not None:
        out.metrics = jsonable(evaluate_arrays(inst, res.plan).to_dict())
        if res.objective_name is not None:  # the scenario's objective, not the batch problem's
            out.objective = out.metrics["objective"] if status in SOLVED else None
    return out


class _Killed(Exception):
    """A method stopped at the hard timeout."""


def _child(conn: Any, inst: Instance, name: str, time_limit: float | None,
           opts: dict[str, Any]) -> None:  # pragma: no cover - runs in a spawned process
    try:
        conn.send(("ok", solve(inst, name, time_limit=time_limit, **opts)))
    except InputError as exc:
        conn.send(("input", str(exc)))
    except Exception as exc:  # noqa: BLE001 - reported by the parent as the method's error
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def solve_with_hard_timeout(inst: Instance, name: str, time_limit: float | None,
                            opts: dict[str, Any], hard_timeout: float) -> Result:
    """``solve`` in a spawned process that is killed after ``hard_timeout`` seconds (start-up
    included): a method that overruns its own time limit cannot hold the comparison up.
    Raises :class:`_Killed` on the kill, :class:`InputError` or ``RuntimeError`` on a failure."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, inst, name, time_limit, opts), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(hard_timeout):
            raise _Killed(f"killed after the hard timeout of {hard_timeout:g} s")
        try:
            kind, payload = recv.recv()
        except EOFError:
            raise RuntimeError(f"the method's process died (exit code {proc.exitcode})") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        recv.close()
    if kind == "input":
        raise InputError("--option", [Problem(name, payload)])
    if kind == "error":
        raise RuntimeError(payload)
    return payload


_WARM: set[str] = set()


def warm_heuristic(method: str) -> None:
    """A heuristic's one-time start-up (compiled kernels) paid untimed, once per process, as
    `compare` does: the first greedy point of a sweep showed 0.6 s against 0.001 s after (found
    by review). Unknown methods are left to ``solve`` to report."""
    try:
        heuristic = get_method(method).kind == "heuristic"
    except Exception:  # noqa: BLE001
        return
    if heuristic:
        warm_up([method])


def warm_up(names: Sequence[str]) -> None:
    """Run each heuristic once on a tiny scenario, untimed, so that the first method of a report
    does not pay the one-time start-up (imports, compiled kernels loaded from numba's cache) in
    its solve time. Failures are ignored: the real run reports them."""
    todo = [n for n in names if n not in _WARM]
    if not todo:
        return
    card = {"prefill_tokens_per_s": 1000.0, "decode_tokens_per_s": 100.0, "kv_capacity_gb": 1.0,
            "max_batch_size": 4, "cost_per_hour": 1.0, "replicas": 1}
    tiny = load_scenario({
        "name": "warm-up", "model": {"kv_bytes_per_token": 1000},
        "datacenters": [{"name": "a", "clusters": [{"name": "p", "role": "prefill", **card},
                                                   {"name": "m", "role": "mixed", **card}]},
                        {"name": "b", "clusters": [{"name": "d", "role": "decode", **card}]}],
        "links": [{"between": ["a", "b"], "bandwidth_gbps": 1.0}],
        "workload": {"requests": [{"id": f"r{i}", "prompt_tokens": 100 + 50 * i,
                                   "output_tokens": 10 + i, "arrival_s": 0.1 * i}
                                  for i in range(4)]}})
    inst = as_instance(tiny)
    for name in todo:
        try:
            solve(inst, name)
        except Exception:  # noqa: BLE001
            log.debug("warm-up of %s failed", name, exc_info=True)
        _WARM.add(name)


def check_method_options(specs: Sequence[Any], options: dict[str, dict[str, Any]]) -> None:
    """Every ``METHOD.KEY`` names a method that runs and one of its options, with a value of the
    option's type: checked before anything runs or is written. ``METHOD.time_limit``, which
    every method takes, must be a positive number of seconds."""
    names = {sp.name for sp in specs}
    problems = [Problem(f"{m}.{k}", "not a method of this run (--methods)", v)
                for m, opts in options.items() if m not in names for k, v in opts.items()]
    for sp in specs:
        opts = options.get(sp.name, {})
        try:
            check_time_limit(opts.get("time_limit"), "time_limit")
            sp.resolve(opts)
        except InputError as exc:
            problems += [Problem(f"{sp.name}.{p.path}", p.message, p.given) for p in exc.problems]
    if problems:
        raise OptionError("--option", problems)


def run_methods(
    scenario: Scenario | str | Path,
    method_names: Sequence[str] | None = None,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    options: dict[str, dict[str, Any]] | None = None,
    progress: Progress | None = None,
    plans_dir: Path | None = None,
    replay: bool = True,
    hard_timeout: float | None = None,
    plans_label: str | None = None,
) -> dict[str, Any]:
    """Run the methods and return the report's data (the JSON). A method that raises, times out
    or finds no plan becomes a row with its status and reason; the others still run. With
    ``hard_timeout`` each method runs in its own process, killed after that many seconds (its
    row: ``timeout_no_solution``). A method's ``time_limit`` option overrides ``time_limit``
    for that method. Plans are written into ``plans_dir`` and referred to in the data as
    ``PLANS_LABEL/METHOD.plan.json`` (default: the folder's name)."""
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    inst = as_instance(sc)
    specs = resolve_methods(method_names)
    check_method_options(specs, options or {})
    if hard_timeout is None:
        warm_up([sp.name for sp in specs if sp.kind == "heuristic"])
    outcomes: list[MethodOutcome] = []
    t_all = time.perf_counter()
    for k, spec in enumerate(specs):
        limit, opts = own_time_limit((options or {}).get(spec.name, {}), time_limit)
        if progress:
            progress("start", spec.name, {"kind": spec.kind, "index": k, "total": len(specs),
                                          "time_limit": limit})
        t0 = time.perf_counter()
        interrupted = False
        try:
            if hard_timeout is not None:
                res = solve_with_hard_timeout(inst, spec.name, limit, opts, hard_timeout)
            else:
                res = solve(inst, spec.name, time_limit=limit, **opts)
            out = _outcome(spec, res, inst)
            interrupted = bool(res.info.get("interrupted"))
        except _Killed as exc:
            out = MethodOutcome(spec.name, spec.kind, "timeout_no_solution", str(exc),
                                wall_s=time.perf_counter() - t0)
        except InputError as exc:  # e.g. a bad option: the method is shown as failed
            out = MethodOutcome(spec.name, spec.kind, "error", str(exc),
                                wall_s=time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - the report must still be written
            log.exception("method %s failed", spec.name)
            out = MethodOutcome(spec.name, spec.kind, "error", f"{type(exc).__name__}: {exc}",
                                wall_s=time.perf_counter() - t0)
        else:
            if res.plan is not None and plans_dir is not None:
                path = plans_dir / f"{spec.name}.plan.json"
                write_json_atomic(path, plan_to_dict(inst, res))
                out.plan_file = f"{plans_label or plans_dir.name}/{path.name}"
            if res.plan is not None and replay:
                out.replay = replay_hook.replay_summary(sc, inst, res.plan, spec.name)
        log.info("%s: %s in %.3f s %s", spec.name, out.status, out.wall_s, out.termination)
        if interrupted:  # the solver stopped on Ctrl-C and returned: the user meant the run
            raise KeyboardInterrupt
        outcomes.append(out)
        if progress:
            progress("done", spec.name, {"status": out.status, "termination": out.termination,
                                         "wall_s": out.wall_s, "makespan_s":
                                         (out.metrics or {}).get("makespan_s")})
    data = {
        "schema": SCHEMA,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "time_limit_s": time_limit,
        "total_wall_s": time.perf_counter() - t_all,
        "scenario": scenario_brief(sc, inst),
        "methods": [o.to_dict() for o in outcomes],
        "replay_available": replay_hook.available(),
    }
    data["bound_conflicts"] = contradicted_bounds(data)
    data["best_bound"] = best_bound(data)
    data["table"] = table_rows(data)
    # what the fluid figures leave out of this workload's arrivals (the shortest solution's
    # makespan: the span is compared with the fluid figures the table shows)
    spans = [r["makespan_s"] for r in data["table"]
             if r.get("status") in SOLVED and r.get("makespan_s") is not None]
    data["notes"] = arrival_notes(inst, min(spans) if spans else None)
    return jsonable(data)


# ---------------------------------------------------------------- the methods x metrics table


def contradicted_bounds(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Bounds that a solution proves wrong (a lower bound above a plan the evaluator scored,
    for minimisation): each method's bound is checked against every method's plan, its own
    included. Such a bound is marked (``bound_contradicted_by``), left out of the best bound,
    out of the incumbent/bound figure and out of the table (whose row then claims no
    optimality), and logged; the method's own status in ``methods`` is kept as the solver said
    it, with the reason in its termination."""
    sense = "max" if data["scenario"]["objective"] == "served" else "min"
    plans = [(m["method"], float(m["metrics"]["objective"])) for m in data["methods"]
             if m["status"] in SOLVED and (m.get("metrics") or {}).get("objective") is not None]
    out = []
    for m in data["methods"]:
        b = m.get("bound")
        if b is None or not math.isfinite(b):
            continue
        for name, obj in plans:
            tol = 1e-9 * abs(obj)  # relative only, as relative_gap
            if (b > obj + tol) if sense == "min" else (b < obj - tol):
                out.append({"method": m["method"], "bound": b, "plan_of": name, "objective": obj})
                m["bound_contradicted_by"] = name
                m["termination"] = (m.get("termination") or "") + \
                    f"; its bound {b:.6g} is contradicted by the plan of {name} ({obj:.6g})"
                log.warning("compare: %s claims the bound %.8g, but %s has a plan of %.8g: that "
                            "bound is not used", m["method"], b, name, obj)
                break
    return out


def best_bound(data: dict[str, Any]) -> float | None:
    """The tightest proven bound on the objective over all methods (max for minimisation), of
    the bounds no method's plan contradicts."""
    bounds = [m["bound"] for m in data["methods"]
              if m.get("bound") is not None and math.isfinite(m["bound"])
              and not m.get("bound_contradicted_by")]
    if not bounds:
        return None
    return min(bounds) if data["scenario"]["objective"] == "served" else max(bounds)




def table_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method with the CSV_FIELDS (SI units, fractions not percent)."""
    bb = data.get("best_bound")
    sense = "max" if data["scenario"]["objective"] == "served" else "min"
    rows = []
    for m in data["methods"]:
        met = m.get("metrics") or {}
        row: dict[str, Any] = {k: None for k in CSV_FIELDS}
        row.update(method=m["method"], kind=m["kind"], status=m["status"],
                   objective_name=data["scenario"]["objective"], bound=m.get("bound"),
                   gap=m.get("gap"), best_bound=bb, solve_wall_s=m.get("wall_s"),
                   termination=m.get("termination", ""))
        if met:
            links = met.get("links", {}).values()
            clusters = met.get("clusters", {}).values()
            row.update(
                objective=met["objective"], makespan_s=met["makespan_s"],
                bottleneck=met["bottleneck"], cost_usd=met["cost"], rent_usd=met["rent"],
                egress_usd=met["egress_cost"], served=met["served"], refused=met["refused"],
                peak_link_utilization=max((lk["utilization"] for lk in links), default=0.0),
                kv_memory_time_GBs=sum(c["memory_time_Bs"] for c in clusters) / 1e9,
                peak_kv_memory_utilization=max((c["memory_utilization"] for c in clusters),
                                               default=0.0),
                prefix_tokens_reused=met["prefix_tokens_reused"],
                gap_to_best_bound=relative_gap(met["objective"], bb, sense),
            )
            if m["status"] not in SOLVED:  # a plan that breaks a hard constraint claims nothing
                row.update(objective=None, gap_to_best_bound=None)
        if m.get("bound_contradicted_by"):  # its optimality rests on a bound shown wrong
            row.update(bound=None, gap=None,
                       status="feasible" if m["status"] == "optimal" else m["status"])
        stats = (m.get("replay") or {}).get("stats") or {}
        for key, _, skey in REPLAY_COLUMNS:
            row[key] = stats.get(skey)
        rows.append(row)
    return rows


def best_in_columns(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Per column, the methods holding its best value (ties all marked)."""
    out: dict[str, set[str]] = {}
    for key, _, sense in COLUMNS:
        vals = [(r["method"], r[key]) for r in rows
                if r.get(key) is not None and r.get("status") in SOLVED]
        if not sense or not vals:
            continue
        target = (min if sense == "min" else max)(v for _, v in vals)
        tol = 1e-9 * abs(target)  # relative only, as relative_gap
        out[key] = {m for m, v in vals if abs(v - target) <= tol}
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (repr(r[k]) if isinstance(r[k], float)
                                                        else r[k])) for k in CSV_FIELDS})
    return buf.getvalue()


# ---------------------------------------------------------------- writing


def output_paths(out_html: str | Path) -> dict[str, Path]:
    """The report's files: ``NAME.html`` and beside it ``NAME.csv``, ``NAME.json`` and the
    folder ``NAME.plans`` (NAME is the whole file name less its final ``.html``, so that
    ``run.v1.html`` and ``run.v2.html`` keep apart). Any other suffix is refused (one line): the
    HTML would be written over a numbers file of its own or of another report."""
    html = Path(out_html)
    name = html.name
    if not name.lower().endswith(".html") or len(name) == len(".html"):
        raise InputError("--out", [Problem(
            "--out", "the report must be a NAME.html file (its CSV, JSON and NAME.plans/ go "
            "beside it)", str(out_html))])
    stem = name[: -len(".html")]
    return {"html": html, "csv": html.with_name(f"{stem}.csv"),
            "json": html.with_name(f"{stem}.json"), "plans": html.with_name(f"{stem}.plans")}


def succeeded(data: dict[str, Any]) -> bool:
    """Whether some method found a plan (else the run failed and no report is written)."""
    return any(r.get("makespan_s") is not None for r in data["table"])


def write_report(data: dict[str, Any], out_html: str | Path,
                 plans_from: Path | None = None) -> dict[str, Path]:
    """Write JSON, CSV and HTML. Every file is rendered, then written in full beside its target
    (:func:`planner.report.io.stage_texts`), before anything is replaced, so that a failure while
    rendering or writing (a full disk: the HTML is the largest file) leaves the previous report
    whole. Then ``plans_from``, a folder of plans made beside ``NAME.plans``, replaces that
    folder, and the three files are renamed into place (renames need no space); a failure in
    any of these steps puts the previous folder and files back."""
    from planner.report.render import render_compare

    paths = output_paths(out_html)
    data["files"] = {"html": paths["html"].name, "csv": paths["csv"].name,
                     "json": paths["json"].name}
    text_json = dumps(data)
    text_csv = to_csv(data["table"])
    text_html = render_compare(data)
    files = {paths["json"]: text_json, paths["csv"]: text_csv, paths["html"]: text_html}
    with stage_texts(files) as commit:
        if plans_from is None:
            commit()
        else:
            with swapped_folder(plans_from, paths["plans"]):
                commit()
    return paths


def compare(
    scenario: str | Path,
    method_names: Sequence[str] | None = None,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    out: str | Path | None = None,
    progress: Progress | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    hard_timeout: float | None = None,
) -> tuple[dict[str, Any], dict[str, Path] | None]:
    """Load, run, write. Returns the data and the paths written, or None for the paths when no
    method found a plan: then nothing is written and a previous report is kept whole. Nothing
    is written while the methods run (the plans go to a hidden folder beside ``NAME.plans``,
    renamed into place at the end), so an error or an interrupt also keeps the previous
    report."""
    not_empty(out, "--out")
    out = Path(out) if out else Path("reports") / f"{Path(scenario).stem}.html"
    paths = output_paths(out)
    sc = load_scenario(scenario)
    for key in ("html", "csv", "json", "plans"):
        check_output(paths[key], "--out", folder=key == "plans", inputs=sc.input_files())
    real_plans = Path(os.path.realpath(paths["plans"]))
    staging = Path(tempfile.mkdtemp(prefix=f".{real_plans.name}.", suffix=".tmp",
                                    dir=real_plans.parent))
    try:
        data = run_methods(sc, method_names, time_limit, options=options, progress=progress,
                           plans_dir=staging, plans_label=paths["plans"].name,
                           hard_timeout=hard_timeout)
        if not succeeded(data):
            log.info("no method found a plan: no report written (%s is left as it was)",
                        paths["html"])
            return data, None
        return data, write_report(data, out, plans_from=staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
