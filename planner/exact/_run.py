"""What every exact method shares: options, the warm start, the domain bound, and the honest
Result (status from the solver's real outcome, objective re-scored by the evaluator, bound the
better of the solver's and the domain's, gap from both)."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from planner.exact import relax_fix
from planner.exact._backends.rows import RowBuffer, SolveOutcome, dual_bound, to_problem_units
from planner.exact._model import PlacementModel, request_items
from planner.exact.bounds import FEW_DIRECTIONS_ABOVE, domain_bound
from planner.exact.work import WORK_WORKERS, clock_cut, ls_moves, tracking, untracked
from planner.instance import Instance
from planner.metrics import Metrics, evaluate_arrays, kv_misfits, unplaceable
from planner.plan import Plan, Result, relative_gap
from planner.scenario.errors import InputError, OptionError, Problem

log = logging.getLogger(__name__)

# rel_gap: the relative gap at which a run stops and is called optimal (proven within it, stated
# in info["rel_gap"]; Result.gap is the gap actually proven). 1e-4 = 0.01 %.
COMMON = {"time_limit": 10.0, "num_workers": 0, "seed": 0, "warm_start": "greedy",
          "rel_gap": 1e-4, "symmetry": True, "lp_bound": True, "lp_solver": "auto",
          "improve": True, "relax_fix": True}

LP_BOUND_MAX_TERMS = 400_000  # request-level LP relaxation for the domain bound up to this size
LP_BOUND_MAX_S = 30.0  # GLOP's limit for that LP (and at most half the run's)
LP_VALUE_MARGIN = 1e-6  # the LP value as a bound, lowered by this share for its float tolerances
# the warm start's local search: this share of the run (seconds, or work units under a work
# limit), at most IMPROVE_MAX
IMPROVE_SHARE = 0.08
IMPROVE_MAX = 5.0


def workers(n: int) -> int:
    """``num_workers`` 0 means the machine's cores (more than cores is slower, not faster)."""
    return int(n) if n and n > 0 else (os.cpu_count() or 1)


def sense(inst: Instance) -> str:
    return "max" if inst.objective == "served" else "min"


def feasible(inst: Instance, plan: Plan) -> bool:
    """A plan the model accepts: within the horizon when there is one, and every decoding
    request on a cluster whose replica holds its KV."""
    return evaluate_arrays(inst, plan, check=False).feasible


def refuse_misfits(inst: Instance, plan: Plan) -> Plan:
    """``plan`` with the requests decoded where their KV does not fit refused."""
    bad = kv_misfits(inst, plan.prefill, plan.decode)
    if not bad.any():
        return plan
    plan = plan.copy()
    plan.prefill[bad] = -1
    plan.decode[bad] = -1
    return plan


def better(inst: Instance, a: float, b: float) -> bool:
    return a > b if sense(inst) == "max" else a < b


def repair_for_horizon(inst: Instance, plan: Plan) -> Plan:
    """Refuse requests (the heaviest on the overloaded resources first) until every load fits
    within the horizon: what a heuristic's plan needs to warm-start ``served``."""
    plan = plan.copy()
    h = float(inst.horizon_s)
    for _ in range(inst.n_requests + 1):
        m = evaluate_arrays(inst, plan, check=False)
        if m.within_horizon:
            return plan
        contrib = request_loads(inst, plan)
        over = np.zeros(inst.n_requests)
        for load, arr in ((m.load_s, contrib["compute"]),
                          (m.memory_load_s, contrib["memory"]),
                          (m.link_load_s, contrib["link"])):
            for k in np.flatnonzero(load > h * (1 + 1e-12)):
                col = arr[:, k]
                # refuse the largest contributors that together remove the excess
                order = np.argsort(-col)
                excess = load[k] - h
                cum = np.cumsum(col[order])
                cut = int(np.searchsorted(cum, excess * (1 - 1e-12))) + 1
                over[order[:cut]] = 1
        idx = np.flatnonzero(over > 0)
        if idx.size == 0:
            break
        plan.prefill[idx] = -1
        plan.decode[idx] = -1
    return plan


def request_loads(inst: Instance, plan: Plan) -> dict[str, np.ndarray]:
    """Each request's share of every load (seconds) under ``plan`` (prefix sharing ignored)."""
    it = request_items(inst)
    n, c = inst.n_requests, inst.n_clusters
    r = np.arange(n)
    pre, dec = plan.prefill, plan.decode
    on = pre >= 0
    ond = on & (dec >= 0) & it.has_dec
    comp = np.zeros((n, c))
    mem = np.zeros((n, c))
    comp[r[on], pre[on]] += it.pre[r[on], pre[on]]
    comp[r[ond], dec[ond]] += it.dec[r[ond], dec[ond]]
    mem[r[ond], dec[ond]] = it.mem[r[ond], dec[ond]]
    link = np.zeros((n, inst.n_links))
    if inst.n_links:
        route = inst.pair_links[pre[ond] * c + dec[ond]]
        link[ond] = route * (it.kvb[ond] / 1.0)[:, None] / inst.bandwidth_Bps[None, :]
    return {"compute": comp, "memory": mem, "link": link}


def unplaceable_result(inst: Instance, method: str, history: list, info: dict[str, Any]
                       ) -> Result | None:
    """The ``infeasible`` result when some request fits no decode cluster's KV and the
    objective may not refuse it (only ``served`` with a horizon refuses); None otherwise."""
    big, most = unplaceable(inst)
    if not big.size or (inst.objective == "served" and inst.horizon_s is not None):
        return None
    r = int(big[0])
    return Result(method, "infeasible", None, history=history, info=info, termination=(
        f"{big.size} request(s) fit no decode cluster: {inst.ids[r]} needs "
        f"{int(inst.prompt_tokens[r] + inst.output_tokens[r])} KV tokens, the largest replica "
        f"holds {most}; only the served objective with a horizon may refuse them"))


# a domain bound past the horizon by more than this share proves that no plan fits it (the
# evaluator allows 1e-9 over the horizon; the rest covers the bound's float sums)
HORIZON_PROOF_MARGIN = 1e-6
HORIZON_PROOF_MAX = 200_000  # requests: above, cost's proof (another pass over them) is skipped


def makespan_bound(inst: Instance) -> dict[str, Any]:
    """The domain bound of ``inst`` read as a ``makespan`` instance (a lower bound on T)."""
    return domain_bound(dataclasses.replace(inst, objective="makespan"))


def horizon_result(inst: Instance, method: str, history: list, info: dict[str, Any],
                   db: dict[str, Any] | None = None) -> Result | None:
    """The ``infeasible`` result when the domain bound proves that no plan fits the horizon;
    None otherwise (found by review: a 2,000-request scenario whose KV memory-time alone needs
    64.9 s against a 58.5-s horizon ran every exact method to its time limit and reported
    ``timeout_no_solution``). The proof is a lower bound on T past the horizon by more than
    ``HORIZON_PROOF_MARGIN`` of it: under ``makespan`` ``db`` (the makespan's domain bound) or
    one computed here, under ``cost`` the makespan's domain bound up to ``HORIZON_PROOF_MAX``
    requests (not the covering bound's infinity: its rows allow the evaluator's 1e-9 and no
    more, and a plan 1e-9 past the horizon was called infeasible; found by review). ``served``
    may always refuse."""
    h = inst.horizon_s
    if h is None or inst.objective not in ("makespan", "cost") or inst.n_requests == 0:
        return None
    if inst.objective == "cost":
        if inst.n_requests > HORIZON_PROOF_MAX:
            return None
        db = makespan_bound(inst)
    elif db is None:
        db = domain_bound(inst, few=inst.n_requests > FEW_DIRECTIONS_ABOVE)
    b, h = float(db["bound"]), float(h)
    if not b > h * (1 + HORIZON_PROOF_MARGIN):
        return None
    return Result(method, "infeasible", None, history=history, info=info, termination=(
        f"no plan fits the horizon: every plan's makespan is at least {b:.9g} s (domain bound: "
        f"{db.get('by')}), the horizon is {h:.9g} s"))


def warm_plan(inst: Instance, name: str) -> tuple[Plan | None, str]:
    if not name or name.lower() == "none":
        return None, "none"
    from planner.registry import get_method

    try:
        spec = get_method(name)
    except InputError as exc:
        raise OptionError("options", [Problem("warm_start", p.message, p.given)
                                      for p in exc.problems]) from None
    if spec.kind != "heuristic":  # a time-limited method's plan depends on its clock
        clock_cut(f"warm start ({name})")
    with untracked():  # the warm start's own run has no work limit
        out = spec.func(inst)
    plan = out if isinstance(out, Plan) else getattr(out, "plan", None)
    if plan is None:
        return None, f"{name}: no plan"
    if inst.objective == "served" and inst.horizon_s is not None and not feasible(inst, plan):
        plan = repair_for_horizon(inst, refuse_misfits(inst, plan))
        return plan, f"{name} (refusals added to fit the horizon and the KV capacities)"
    problems = evaluate_arrays(inst, plan, check=False).problems
    if problems:
        return None, f"{name}: not used ({'; '.join(problems)})"
    return plan, name


def warm_t_cap(m: Metrics) -> float:
    """T's cap from a start plan's figures: its makespan, a hair above for float noise."""
    return m.makespan_s * (1 + 1e-6) + 1e-9


def trivial_t_ub(model: PlacementModel) -> float:
    """An upper bound of T for any plan: every row's largest possible sum."""
    it = model.items
    n = it.count.astype(float)
    comp = (it.pre.max(axis=1) * n).sum() + (it.dec.max(axis=1) * n * it.has_dec).sum()
    comp += float(it.block_tok.sum()) * float(np.max(1.0 / (model.inst.prefill_tps
                                                        * model.inst.replicas)))
    mem = (it.mem.max(axis=1) * n * it.has_dec).sum()
    lk = 0.0
    if model.inst.n_links:
        lk = float((it.kvb * n).sum() / model.inst.bandwidth_Bps.min())
    return float(max(comp, mem, lk, 1e-9)) * 1.000001


UNSCALED_MIN_T = 0.01  # s: lp_solver=auto leaves GLOP's scaling on below this makespan bound


def lp_solver_for(asked: str, items, inst: Instance, t_bound: float) -> str:
    """The LP relaxation's solver: ``asked`` unless ``auto``, which is GLOP without its scaling
    under ``makespan`` when requests share prefix blocks and the domain bound ``t_bound`` is at
    least :data:`UNSCALED_MIN_T`, else GLOP as it comes. Measured (``GLOP`` against
    ``glop_unscaled``, one run each, beside other work): Mooncake 27 to 39 s against 6.2 s, its
    first 1,000 and 2,000 requests 0.74 and 3.36 s against 0.17 and 0.75 s, the quickstart at
    4,000 requests 4.0 against 4.3 s; without prefix blocks no pattern (the 1,000- and
    3,000-request benchmarks 1.21 against 1.37 s and 10.0 against 8.7 s), so left as it was.
    At makespans of 1e-7 s (T in seconds, coefficients as small) unscaled GLOP ran 20 s where
    scaled GLOP took 0.02 s, and its duals were far off (found by review)."""
    if asked != "auto":
        return asked
    unscaled = items.n_blocks > 0 and inst.objective == "makespan" and t_bound >= UNSCALED_MIN_T
    return "glop_unscaled" if unscaled else "glop"


def lp_domain_bound(inst: Instance, items, db: dict[str, Any], info: dict[str, Any],
                    time_limit: float = 30.0, built: tuple[PlacementModel, RowBuffer, Any] | None
                    = None, solver: str = "glop"
                    ) -> tuple[dict[str, Any], Plan | None, tuple[np.ndarray, ...] | None]:
    """The LP relaxation of the request-level model (GLOP), used as a domain bound through its
    dual prices: the Lagrangian bound of :mod:`planner.exact.bounds` with those weights, evaluated
    per request with exact coefficients (valid whatever the LP's float accuracy; equal to the LP
    value when the duals are optimal). Also returns the LP's rounded plan (a start point).
    ``built``: the exact model already built (model, rows, variables), relaxed here rather than
    built twice, less its symmetry rows and T's cap."""
    from planner.exact._backends.ortools_mip import solve_lp
    from planner.exact.aggregated import lp_directions

    t0 = time.perf_counter()
    if built is None:
        model = PlacementModel(inst, items, symmetry=False)
        buf = RowBuffer()
        v = model.build(buf, float("inf"))
    else:
        # the same rows without the symmetry rows and with T's cap only the horizon, as if
        # built for the LP: with them GLOP's vertex differs and its rounded plan, the local
        # search's start, was worse (1,000 requests: the start 73.129 instead of 73.116, and
        # every backend ended there). The symmetry rows follow the load rows, whose positions
        # (the duals') stay.
        model, full, v = built
        skip = set(model.symmetry_rows)
        buf = full.view(v.T, inst.horizon_s, skip)
        assert not skip or min(skip) > max((row for _, _, row in model.load_rows), default=-1)
    obj = model.objective()
    # the limit counts the model's build and translation (on the Mooncake scenario 3 s and 2 s)
    left = time_limit - (time.perf_counter() - t0)
    st, vals, f_solver, duals = solve_lp(buf, obj, v.T, time_limit=left, num_workers=1,
                                         params="use_scaling: false"
                                         if solver == "glop_unscaled" else "")
    f_lp = to_problem_units(obj, f_solver, False) if inst.objective in ("makespan", "cost") \
        else f_solver
    info["lp_status"] = st
    info["lp_value"] = f_lp
    info["lp_solver"] = solver
    if st in ("no_solution", "feasible"):  # GLOP's time limit, or too little time to load it
        clock_cut("LP relaxation")
    if not duals:
        return db, None, None
    dirs = lp_directions(inst, model, duals)
    db2 = domain_bound(inst, dirs)
    if inst.objective in ("makespan", "cost"):
        # the LP's optimum as its duals prove it (rows.dual_bound: the value GLOP reports is
        # no bound), less a margin for float sums: with prefix blocks the per-request
        # Lagrangian of the load rows' duals falls short of it (blocks are shared)
        proven = to_problem_units(obj, dual_bound(buf, obj, v.T, duals), False)
        info["lp_dual_bound"] = proven
        lp_b = -math.inf if proven is None else proven - LP_VALUE_MARGIN * abs(proven)
        parts = {**db2["parts"], "lp_value": lp_b}
        db2 = {"bound": lp_b, "by": "lp_value", "parts": parts} if lp_b > db2["bound"] else \
            {**db2, "parts": parts}
    info.update(domain_bound=db2["bound"], domain_bound_by=db2["by"],
                domain_bound_parts=db2["parts"])
    plan = model.plan_of_values(vals.__getitem__) if vals is not None else None
    return db2, plan, (tuple(dirs[0][1:]) if dirs else None)


def improved_start(inst: Instance, items, starts: list[Plan | None], bound: float,
                   rel_gap: float, time_limit: float, seed: int, info: dict[str, Any],
                   work: float | None = None) -> tuple[Plan | None, Metrics | None]:
    """The best of the starts after the local search of :mod:`planner.exact.improve`, aimed at
    ``bound * (1 + rel_gap / 2)``, and its figures. ``work``: the search's work budget, shared
    by the starts (moves, :func:`planner.exact.work.ls_moves`; ``time_limit`` then caps it)."""
    from planner.exact.improve import improve_makespan

    model = PlacementModel(inst, items, symmetry=False)
    best, best_m = None, None
    k = max(1, sum(p is not None for p in starts))
    moves = ls_moves(work / k, items.n) if work is not None else None
    t_end = time.perf_counter() + time_limit
    for p in starts:
        if p is None:
            continue
        # under a work limit the clock caps the whole search, not each start's share
        per = max(0.0, t_end - time.perf_counter()) if moves is not None else time_limit / k
        q = improve_makespan(model, p, bound * (1 + rel_gap / 2), per, seed, max_moves=moves)
        m = evaluate_arrays(inst, q)
        if best_m is None or m.objective < best_m.objective:
            best, best_m = q, m
    info["improved_objective"] = best_m.objective if best_m is not None else None
    return best, best_m


Solver = Callable[[RowBuffer, Any, int, dict[int, float] | None, float], SolveOutcome]


def run_exact(inst: Instance, method: str, solve_fn: Callable[..., SolveOutcome],
              opts: dict[str, Any], hint_coef: Callable[[float], float] | None = None,
              relax_fn: Callable[..., SolveOutcome] | None = None) -> Result:
    """Build the model over the requests, warm-start it, solve, and account for the result.
    ``opts["work_limit"]`` > 0 (``cpsat``): stages stop by counts, not clocks
    (:mod:`planner.exact.work`); ``info["reproducible"]`` says whether the wall clock ended one.
    ``relax_fn``: the solver of relax-and-fix's first step, whose model has continuous
    variables (:mod:`planner.exact.relax_fix`; by default ``solve_fn``)."""
    work = float(opts.get("work_limit") or 0.0)
    if work <= 0:
        return _run_exact(inst, method, solve_fn, opts, hint_coef, None, relax_fn)
    with tracking() as cuts:
        res = _run_exact(inst, method, solve_fn, opts, hint_coef, work, relax_fn)
    res.info.update(work_limit=work, reproducible=not cuts, clock_cuts=list(cuts))
    if cuts:
        res.termination += f"; a clock or Ctrl-C ended {', '.join(cuts)}: not reproducible"
    return res


def _run_exact(inst: Instance, method: str, solve_fn: Callable[..., SolveOutcome],
               opts: dict[str, Any], hint_coef: Callable[[float], float] | None,
               work: float | None, relax_fn: Callable[..., SolveOutcome] | None = None) -> Result:
    t_start = time.perf_counter()
    time_limit = float(opts.get("time_limit") or COMMON["time_limit"])
    info: dict[str, Any] = {}
    db = domain_bound(inst)
    info.update(domain_bound=db["bound"], domain_bound_by=db["by"], domain_bound_parts=db["parts"])
    warm, warm_note = warm_plan(inst, str(opts.get("warm_start", "greedy")))
    history: list[tuple[float, float | None, float | None]] = []
    # the start and its figures, each plan scored once
    warm_m = evaluate_arrays(inst, warm) if warm is not None else None
    warm_obj = warm_m.objective if warm_m is not None else None
    if warm is not None:
        history.append((time.perf_counter() - t_start, warm_obj, db["bound"]))
    info["warm_start"] = warm_note
    info["rel_gap"] = float(opts.get("rel_gap", COMMON["rel_gap"]))
    info["warm_start_objective"] = warm_obj

    if inst.n_requests == 0:
        plan = Plan.refuse_all(0)
        return Result(method, "optimal", plan, 0.0, 0.0, 0.0, termination="no requests", info=info)
    bad = unplaceable_result(inst, method, history, info) or \
        horizon_result(inst, method, history, info, db if inst.objective == "makespan" else None)
    if bad is not None:
        return bad

    t0 = time.perf_counter()
    items = request_items(inst)
    rel_gap = float(opts.get("rel_gap", COMMON["rel_gap"]))
    # the exact model, built once: the LP relaxation below solves it too
    model = PlacementModel(inst, items, symmetry=bool(opts.get("symmetry", True)))
    if inst.objective == "cost":  # the solver's unit of money: a lower bound of the optimum
        model.cost_unit = float(db["bound"] or 0.0)
    t_ub = trivial_t_ub(model)
    if warm_m is not None and inst.objective == "makespan":
        t_ub = min(t_ub, warm_t_cap(warm_m))
    buf = RowBuffer()
    v = model.build(buf, t_ub)
    info["build_s"] = time.perf_counter() - t0
    info["n_vars"], info["n_rows"] = len(buf.vars), len(buf.rows)
    t0 = time.perf_counter()
    lp_plan, prices = None, None
    if opts.get("lp_bound", True) and items.n * inst.n_clusters ** 2 <= LP_BOUND_MAX_TERMS:
        t_lp = time.perf_counter()
        # GLOP's share: at most half the time left after the build (a time-out leaves the
        # bound as it was; too little to load the model skips it)
        left = max(0.0, time_limit - (time.perf_counter() - t_start))
        # under a work limit GLOP runs to its end, up to LP_BOUND_MAX_S (not finished: a clock
        # cut; Mooncake's LP passed it until its prefix blocks were merged)
        db, lp_plan, prices = lp_domain_bound(inst, items, db, info,
                                      min(LP_BOUND_MAX_S, left if work else 0.5 * left),
                                      built=(model, buf, v),
                                      solver=lp_solver_for(str(opts.get("lp_solver", "auto")),
                                                           items, inst, float(db["bound"] or 0)))
        info["lp_bound_s"] = time.perf_counter() - t_lp
    if opts.get("improve", True) and inst.objective == "makespan":
        t_imp = time.perf_counter()
        plain = warm, warm_m
        left = max(0.0, time_limit - (time.perf_counter() - t_start))
        warm, warm_m = improved_start(
            inst, items, [warm, lp_plan], db["bound"], rel_gap,
            left if work else min(IMPROVE_MAX, IMPROVE_SHARE * time_limit, 0.25 * left),
            int(opts.get("seed", 0)), info,
            min(IMPROVE_MAX, IMPROVE_SHARE * work) if work else None)
        info["improve_s"] = time.perf_counter() - t_imp
        if warm_m is not None and not warm_m.feasible:  # never start from a plan the model bars
            info["improved_objective"] = None
            warm, warm_m = plain
        if warm is not None:
            history.append((time.perf_counter() - t_start, info["improved_objective"], db["bound"]))
    info["prep_s"] = time.perf_counter() - t0  # LP bound, local search
    if warm_m is not None and inst.objective == "makespan":  # the improved start caps T lower
        t_ub = min(t_ub, warm_t_cap(warm_m))
        buf.vars[v.T].ub = min(buf.vars[v.T].ub, t_ub)
    done = proven_start(inst, method, warm, warm_m, db, rel_gap, history, info)
    if done is not None:
        return done
    if inst.objective == "makespan":  # the float solvers' unit of time (see objective())
        model.time_unit = float(db["bound"] or 0.0)
    elif inst.objective == "served" and inst.horizon_s is None:  # T minimised too: same unit
        model.time_unit = float(makespan_bound(inst)["bound"] or 0.0)
    obj = model.objective()
    t_lb = float(db["bound"] or 0.0) if inst.objective == "makespan" else 0.0
    # under a work limit 0 workers means WORK_WORKERS, not the cores: the search must not
    # depend on the machine
    asked = int(opts.get("num_workers") or 0)
    nw = WORK_WORKERS if work and asked <= 0 else workers(asked)
    info["num_workers"] = nw
    if opts.get("relax_fix", True) and inst.objective == "makespan" and not work \
            and prices is not None and items.n >= relax_fix.MIN_REQUESTS:
        left = max(0.0, time_limit - (time.perf_counter() - t_start))
        plan_rf, m_rf = relax_fix.relax_and_fix(
            inst, items, model, buf, v, obj, prices, relax_fn or solve_fn, solve_fn,
            t_ub=t_ub, t_lb=t_lb, time_limit=relax_fix.SHARE_OF_RUN * left, num_workers=nw,
            seed=int(opts.get("seed", 0)), rel_gap=rel_gap, info=info)
        kept = m_rf is not None and (warm_m is None or m_rf.objective < warm_m.objective)
        if kept:
            warm, warm_m = plan_rf, m_rf
            info["relax_fix_kept"] = True
            history.append((time.perf_counter() - t_start, m_rf.objective, db["bound"]))
        if info.get("interrupted"):  # Ctrl-C: the user meant the run, not only this stage
            info.update(solver_status="skipped", solver_bound=None, plan_from=start_from(info))
            out = SolveOutcome("no_solution", None, None, None,
                               termination="interrupted (Ctrl-C) in relax-and-fix: no solver run")
            return account(inst, method, out, warm, None if warm_m is None else warm_m.objective,
                           db, history, info)
        if kept:
            t_ub = min(t_ub, warm_t_cap(warm_m))
            buf.vars[v.T].ub = min(buf.vars[v.T].ub, t_ub)
            done = proven_start(inst, method, warm, warm_m, db, rel_gap, history, info)
            if done is not None:
                return done
    hint = model.hint_values(warm, hint_coef or (lambda k: k)) if warm is not None else None
    left = max(0.5, time_limit - (time.perf_counter() - t_start))
    out = solve_fn(buf, obj, v.T, hint, t_ub=t_ub, t_lb=t_lb, time_limit=left, num_workers=nw,
                   seed=int(opts.get("seed", 0)), rel_gap=rel_gap,
                   **({"work_limit": work} if work else {}))
    info.update(out.info)
    info["solver_status"] = out.status
    info["solver_bound"] = out.bound
    offset = time.perf_counter() - t_start - (out.history[-1][0] if out.history else 0.0)
    solver_hist = [(t + max(0.0, offset), inc, b) for t, inc, b in out.history]
    if inst.objective == "served" and inst.horizon_s is None:
        # every request is served and the model minimised T: the solver's incumbents and bounds
        # are makespans (the tie-break's), kept apart; the history stays in requests served
        info["tie_break_history"] = solver_hist
        n = float(inst.n_requests)
        solver_hist = [(t, None if inc is None else n, None if b is None else n)
                       for t, inc, b in solver_hist]
    history += solver_hist

    plan, objective = None, None
    if out.value is not None:
        plan = model.plan_of_values(out.value)
        m = evaluate_arrays(inst, plan)
        if m.feasible:
            objective = m.objective
        else:
            log.warning("%s: the solver's plan exceeds the horizon in floats", method)
            plan = None
    if warm_m is not None and (objective is None or better(inst, warm_m.objective, objective)):
        plan, objective = warm, warm_m.objective
        info["plan_from"] = start_from(info)
    else:
        info["plan_from"] = "solver"
    return account(inst, method, out, plan, objective, db, history, info)


def start_from(info: dict[str, Any]) -> str:
    """Which stage made the run's start (the plan the solver was given)."""
    if info.get("relax_fix_kept"):
        return "relax_fix"
    return "improved_start" if "improved_objective" in info else "warm_start"


def proven_start(inst: Instance, method: str, warm: Plan | None, warm_m: Metrics | None,
                 db: dict[str, Any], rel_gap: float, history: list, info: dict[str, Any]
                 ) -> Result | None:
    """The Result when the start is already within ``rel_gap`` of the domain bound under
    ``makespan``: a solver could only prove it again (SCIP ran its whole minute on Mooncake's
    start, 4.96e-5 above the bound, for no more). None otherwise."""
    if warm_m is None or inst.objective != "makespan" or not warm_m.feasible:
        return None
    g = relative_gap(warm_m.objective, db["bound"], "min")
    if g is None or g > rel_gap:
        return None
    info.update(solver_status="skipped", solver_bound=None, num_workers=0,
                plan_from=start_from(info))
    out = SolveOutcome("no_solution", None, None, None, termination=(
        f"the start is within rel_gap of the domain bound (gap {g:.2e}): no solver run"))
    return account(inst, method, out, warm, warm_m.objective, db, history, info)


def account(inst: Instance, method: str, out: SolveOutcome, plan: Plan | None,
            objective: float | None, db: dict[str, Any],
            history: list[tuple[float, float | None, float | None]], info: dict[str, Any]
            ) -> Result:
    """Status, bound and gap from the solver's outcome, the plan and the domain bound."""
    s = sense(inst)
    # served without a horizon serves every request: the model minimised T, and the solver's
    # bounds are makespans (the tie-break's), not counts
    t_only = inst.objective == "served" and inst.horizon_s is None
    raw_history = list(history)  # as reported, each round's own figures

    def passes(b: float | None) -> bool:
        """A bound past the plan (beyond float noise): no valid bound does that."""
        if b is None or objective is None:
            return False
        over = b - objective if s == "min" else objective - b
        return over > 1e-6 * max(abs(objective), abs(b)) + 1e-12

    if not t_only and passes(out.bound):
        # the solver's error (found by review: CP-SAT's horizon cap one quantum short proved
        # "1 served" beside a plan serving 2): dropped, not clamped to the plan
        log.warning("%s: the solver's bound %.9g passes the plan's %.9g; not used", method,
                    out.bound, objective)
        info["solver_bound_rejected"] = out.bound
        out = dataclasses.replace(out, bound=None, termination=(
            f"{out.termination}; its bound {out.bound:.9g} passes the plan "
            f"{objective:.9g}: not a valid bound, not used"))
    rejected = [b for _, _, b in history if passes(b)] if not t_only else []
    if rejected:  # the same for any bound the run reported earlier (the domain's never do)
        info.setdefault("solver_bound_rejected", max(rejected) if s == "min" else min(rejected))
        history = [(t, f, None if passes(b) else b) for t, f, b in history]
    # bounds only tighten: a solver's last word can be below a bound it reported earlier
    seen = [b for _, _, b in history if b is not None] if not t_only else []
    bounds = [b for b in (None if t_only else out.bound, db["bound"]) if b is not None]
    if seen:
        bounds.append(min(seen) if s == "max" else max(seen))
    if out.status == "infeasible" and plan is None:
        return Result(method, "infeasible", None, termination=out.termination, history=history,
                      info=info)
    if plan is None:
        st = "error" if out.status == "error" else "timeout_no_solution"
        bound = (min(bounds) if s == "max" else max(bounds)) if bounds else None
        return Result(method, st, None, None, bound, None, termination=out.termination,
                      history=history, info=info)
    bound = (min(bounds) if s == "max" else max(bounds)) if bounds else None
    if bound is not None and objective is not None:
        # a bound cannot pass the plan it bounds (float noise, or a tie-break tolerance)
        bound = min(bound, objective) if s == "min" else max(bound, objective)
    info["bound_from"] = "domain" if (out.bound is None or bound == db["bound"] != out.bound) \
        else "solver"
    gap = relative_gap(objective, bound, s)
    # optimal = proven within the stated tolerance rel_gap by a valid bound (solver or domain),
    # whatever the solver's word; the gap actually proven is res.gap
    tol = float(info.get("rel_gap", COMMON["rel_gap"]))
    info["optimal_within_rel_gap"] = tol
    optimal = gap is not None and gap <= tol
    term = out.termination
    if optimal and inst.objective == "served":
        # lexicographic: optimal needs the makespan tie-break proven too, by a bound on T over
        # the plans that serve as many requests as the count bound allows
        tie = out.info.get("served_t_bound")
        if t_only and out.bound is not None:
            tie = (float(inst.n_requests), out.bound)
        m = evaluate_arrays(inst, plan, check=False)
        t_lb = tie[1] if tie is not None and m.served == tie[0] else None
        if not t_only:  # the domain's bound on T over plans serving as many (any method)
            from planner.exact.bounds import served_t_lower

            # after the solver's time: every pair of every request only on small instances
            t_dom, t_by = served_t_lower(inst, m.served, few=inst.n_requests > 20_000)
            info["tie_break_domain_bound_s"], info["tie_break_domain_by"] = t_dom, t_by
            if t_lb is None or t_dom > t_lb:
                t_lb = t_dom
        t_gap = relative_gap(m.makespan_s, t_lb, "min")
        info["tie_break_bound_s"], info["tie_break_gap"] = t_lb, t_gap
        if t_gap is None or t_gap > tol:
            optimal = False
            term += ("; the served count is proven, the makespan tie-break is not"
                     + (f" (gap {t_gap:.2e})" if t_gap is not None else ""))
    status = "optimal" if optimal else "feasible"
    if optimal and gap > 0:
        term += f"; optimal within rel_gap {tol:g} (gap {gap:.2e})"
    if optimal and info["bound_from"] == "domain" and out.status != "optimal":
        term += f"; proven by the domain bound ({db.get('by')})"
    history.append((history[-1][0] if history else 0.0, objective, bound))
    if not t_only:
        info["solver_history"] = raw_history + [history[-1]]
        history = best_so_far(history, s)
        # float noise (a solver's T a hair under the evaluator's, a bound a hair past the plan,
        # which the result clamps) would end the curves past the result or plot a negative gap:
        # no point is better than the result's plan or bound, nor its bound past its incumbent
        worse, better_ = (max, min) if s == "min" else (min, max)
        fixed = []
        for t, f, b in history:
            if f is not None and objective is not None:
                f = worse(f, objective)
            if b is not None and bound is not None:
                b = better_(b, bound)
            if f is not None and b is not None:
                b = better_(b, f)
            fixed.append((t, f, b))
        history = fixed
    return Result(method, status, plan, objective, bound, gap, termination=term, history=history,
                  info=info)


def best_so_far(history: list[tuple[float, float | None, float | None]], s: str
                ) -> list[tuple[float, float | None, float | None]]:
    """The history as the run's best incumbent and best bound at each point: a bisection round
    capped below the incumbent reports its own first solutions and bound, which were read as the
    incumbent rising and the bound falling (found by review)."""
    pick_inc, pick_b = (min, max) if s == "min" else (max, min)
    out, inc, bnd = [], None, None
    for t, f, b in history:
        if f is not None:
            inc = f if inc is None else pick_inc(inc, f)
        if b is not None:
            bnd = b if bnd is None else pick_b(bnd, b)
        out.append((t, inc, bnd))
    return out
