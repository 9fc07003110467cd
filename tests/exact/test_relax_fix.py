"""Relax-and-fix, the start between the local search and the solver (planner.exact.relax_fix),
and the CP-SAT bisection's close-first rule for a start already near the bound."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from helpers import all_plans, brute_force, instance, run

from planner.exact import relax_fix
from planner.exact._backends.cpsat_backend import solve_cpsat
from planner.exact._backends.ortools_mip import solve_linear_solver
from planner.exact._backends.rows import RowBuffer, SolveOutcome
from planner.exact._model import PlacementModel, request_items
from planner.exact._run import lp_domain_bound
from planner.metrics import evaluate_arrays
from planner.registry import get_method

CLUSTERS = [{"name": "p0", "role": "prefill", "dc": "dc0", "prefill_tokens_per_s": 1000.0},
            {"name": "m0", "dc": "dc1", "prefill_tokens_per_s": 600.0},
            {"name": "d0", "role": "decode", "dc": "dc1", "decode_tokens_per_s": 80.0}]
LINKS = [{"between": ["dc0", "dc1"], "bandwidth_gbps": 0.008}]
REQS = [{"prompt_tokens": 900, "output_tokens": 40}, {"prompt_tokens": 400, "output_tokens": 0},
        {"prompt_tokens": 700, "output_tokens": 90}, {"prompt_tokens": 1300, "output_tokens": 20},
        {"prompt_tokens": 300, "output_tokens": 60}, {"prompt_tokens": 1100, "output_tokens": 10}]


@pytest.fixture
def always(monkeypatch):
    """Relax-and-fix on instances of any size and with any time (by default from
    relax_fix.MIN_REQUESTS requests and MIN_ROUND_S seconds)."""
    monkeypatch.setattr(relax_fix, "MIN_REQUESTS", 1)
    monkeypatch.setattr(relax_fix, "MIN_ROUND_S", 0.5)


def _two_dc():
    return instance(CLUSTERS, REQS, LINKS)


def _scip(buf, obj, T, hint, *, t_ub, t_lb, time_limit, num_workers, seed, rel_gap):  # noqa: ARG001
    return solve_linear_solver(buf, obj, T, hint, solver="SCIP", time_limit=time_limit,
                               num_workers=1, seed=seed, rel_gap=rel_gap)


def _cpsat(buf, obj, T, hint, **kw):
    return solve_cpsat(buf, obj, T, hint, resolution=10**9, **kw)


def _built(inst):
    items = request_items(inst)
    db, _, prices = lp_domain_bound(inst, items, {"bound": 0.0, "by": "", "parts": {}}, {}, 10.0)
    model = PlacementModel(inst, items)
    model.time_unit = db["bound"]
    buf = RowBuffer()
    v = model.build(buf, 100.0)
    return items, model, buf, v, db["bound"], prices


def _stage(inst, relax_fn, fix_fn=_cpsat, rounds=((0.5, 1.0),), built=None):
    items, model, buf, v, lb, prices = built or _built(inst)
    before = copy.deepcopy(buf.vars)
    info: dict = {}
    plan, m = relax_fix.relax_and_fix(inst, items, model, buf, v, model.objective(), prices,
                                      relax_fn, fix_fn, t_ub=100.0, t_lb=lb, time_limit=30.0,
                                      num_workers=1, seed=0, rel_gap=1e-6, info=info,
                                      rounds=rounds)
    assert buf.vars == before  # bounds and integrality restored, whatever happened
    return plan, m, info, (items, model, prices)


def test_the_heavy_half_is_fixed_to_the_relaxed_choice_and_step_2_solves_the_rest():
    inst = _two_dc()
    seen = {}

    def relax(buf, obj, T, hint, **kw):
        seen["integer"] = [s.integer for s in buf.vars]
        out = _scip(buf, obj, T, hint, **kw)
        seen["value"] = out.value
        return out

    plan, m, info, (items, model, prices) = _stage(inst, relax)
    heavy = relax_fix.heavy_order(inst, items, prices)[:3]
    assert [r["fixed"] for r in info["relax_fix_rounds"]] == [3]
    # step 1: the heavy requests' choices integral, the light ones' relaxed
    built = _built(inst)
    v = built[3]
    for i in range(items.n):
        for j in [*v.a[i].values(), *v.b[i].values()]:
            assert seen["integer"][j] is (i in heavy), (i, j)
    # step 2: the heavy requests where step 1 put them, the rest the best around them
    relaxed = model.plan_of_values(seen["value"])
    np.testing.assert_array_equal(plan.prefill[heavy], relaxed.prefill[heavy])
    np.testing.assert_array_equal(plan.decode[heavy], relaxed.decode[heavy])
    restricted = min(evaluate_arrays(inst, p).objective for p in all_plans(inst)
                     if (p.prefill[heavy] == plan.prefill[heavy]).all()
                     and (p.decode[heavy] == plan.decode[heavy]).all())
    assert m.objective == pytest.approx(restricted, rel=1e-6)
    assert info["relax_fix_objective"] == m.objective


def test_a_stage_barred_by_the_symmetry_rows_leaves_the_optimum_to_the_solver(method, always):
    # two identical clusters: the symmetry rows order them by load. Step 1 puts the 5.5-s request
    # on c0; step 2 then cannot put 5.0 + 4.9 on c0, and under a horizon of 10 it finds nothing
    # (found by review). The optimum, 9.9, is the main solve's.
    inst = instance([{"name": "c0"}, {"name": "c1"}],
                    [{"prompt_tokens": t} for t in (5000, 5500, 4900, 200)], horizon_s=10.0)
    opt, _ = brute_force(inst)
    built = _built(inst)
    model, v = built[1], built[3]
    assert model.symmetry_rows and opt == pytest.approx(9.9)

    def b_on_c0(buf, obj, T, hint, **kw):
        j = v.a[1][0]
        keep = buf.vars[j]
        buf.vars[j] = dataclasses.replace(keep, lb=1.0)
        try:
            return _scip(buf, obj, T, hint, **kw)
        finally:
            buf.vars[j] = keep

    plan, m, info, _ = _stage(inst, b_on_c0, built=built)
    assert m is None or m.objective > opt + 1e-9, info
    res = run(inst, method, warm_start="none", improve=False, relax_fix=True)
    assert res.status == "optimal" and res.objective == pytest.approx(opt, rel=1e-6)


def test_a_step_that_finds_nothing_gives_no_plan_and_leaves_the_model():
    def nothing(*a, **kw):  # noqa: ARG001
        return SolveOutcome("no_solution", None, None, None, "time limit")

    plan, m, info, _ = _stage(_two_dc(), nothing, rounds=((0.5, 0.5), (0.3, 0.5)))
    assert plan is None and m is None and info["relax_fix_objective"] is None
    assert [r["note"][:20] for r in info["relax_fix_rounds"]] == ["step 1 found nothing"] * 2
    plan, m, info, _ = _stage(_two_dc(), _scip, nothing)
    assert plan is None and m is None
    assert info["relax_fix_rounds"][0]["note"].startswith("step 2 found nothing")


def test_later_rounds_look_only_for_better_plans_and_the_best_is_kept():
    caps = []

    def fix(buf, obj, T, hint, **kw):
        caps.append(kw["t_ub"])
        return _cpsat(buf, obj, T, hint, **kw)

    plan, m, info, _ = _stage(_two_dc(), _scip, fix, rounds=((0.5, 0.4), (0.3, 0.3), (0.2, 0.3)))
    found = [r["objective"] for r in info["relax_fix_rounds"]]
    assert found[0] is not None and m.objective == min(f for f in found if f is not None)
    # the first round is capped by the start (here 100 s), later ones by the best plan so far
    assert caps[0] == 100.0 and caps[1] == pytest.approx(found[0])
    assert all(f is None or f <= found[0] for f in found[1:])


def test_heavy_order_counts_only_priced_resources():
    inst = _two_dc()
    items = request_items(inst)
    c = inst.n_clusters
    mem_only = (np.zeros(c), np.eye(c)[2], np.zeros(inst.n_links))  # d0's memory alone priced
    np.testing.assert_array_equal(relax_fix.heavy_order(inst, items, mem_only),
                                  np.argsort(-items.mem[:, 2], kind="stable"))
    compute = (np.ones(c), np.zeros(c), np.zeros(inst.n_links))
    size = np.maximum(items.pre.max(1), items.dec.max(1))
    np.testing.assert_array_equal(relax_fix.heavy_order(inst, items, compute),
                                  np.argsort(-size, kind="stable"))


def test_every_method_reaches_the_brute_force_optimum_through_relax_and_fix(method, always):
    inst = _two_dc()
    opt, _ = brute_force(inst)
    res = run(inst, method, warm_start="none", improve=False, relax_fix=True)
    assert "relax_fix_objective" in res.info, res.info.get("relax_fix")
    assert res.info["relax_fix_objective"] >= opt - 1e-9
    assert res.status == "optimal" and res.objective == pytest.approx(opt, rel=1e-6)


def test_known_optimum_by_construction_through_relax_and_fix(method, always):
    # three identical clusters of 3 s each, the jobs cut from those capacities
    sizes = [1200, 1800, 500, 1000, 1500, 700, 2300]
    np.random.default_rng(5).shuffle(sizes)
    inst = instance([{"name": f"c{i}"} for i in range(3)], [{"prompt_tokens": t} for t in sizes])
    res = run(inst, method, warm_start="none", improve=False, relax_fix=True)
    assert res.info.get("relax_fix_objective") is not None
    assert res.status == "optimal" and res.objective == pytest.approx(3.0, rel=1e-9)


def test_relax_and_fix_is_off_below_its_size(method, monkeypatch):
    monkeypatch.setattr(relax_fix, "MIN_ROUND_S", 0.5)
    assert relax_fix.MIN_REQUESTS > len(REQS)
    res = run(_two_dc(), method, warm_start="none", improve=False, relax_fix=True)
    assert "relax_fix" not in res.info


def test_relax_and_fix_starts_no_round_with_too_little_time(monkeypatch):
    monkeypatch.setattr(relax_fix, "MIN_REQUESTS", 1)
    res = run(_two_dc(), "cpsat", warm_start="none", improve=False, time_limit=10)
    assert res.info["relax_fix_rounds"] == [] and res.info["relax_fix_objective"] is None
    res = run(_two_dc(), "cpsat", warm_start="none", improve=False, time_limit=20)
    assert [r["fixed"] for r in res.info["relax_fix_rounds"]] == [3]


def test_relax_and_fix_is_on_by_default_for_cpsat_only(always):
    # the MILP backends' second step found nothing on the 200-request benchmark (planner.exact.milp)
    for name, on in [("cpsat", True), ("milp", False), ("milp_ortools", False)]:
        assert get_method(name).options["relax_fix"] is on
        res = run(_two_dc(), name, warm_start="none", improve=False)
        assert ("relax_fix" in res.info) is on


def test_relax_and_fix_can_be_turned_off(method, always):
    res = run(_two_dc(), method, warm_start="none", improve=False, relax_fix=False)
    assert "relax_fix" not in res.info


@pytest.mark.parametrize("below,first", [(5e-4, "close"), (0.1, "min")])
def test_cpsat_closes_first_from_a_start_near_the_bound(below, first):
    inst = _two_dc()
    opt, best = brute_force(inst)
    items = request_items(inst)
    model = PlacementModel(inst, items)
    model.time_unit = opt
    buf = RowBuffer()
    v = model.build(buf, opt * 1.001)
    hint = model.hint_values(best, lambda k: k)
    out = solve_cpsat(buf, model.objective(), v.T, hint, t_ub=opt * 1.001,
                      t_lb=opt * (1 - below), time_limit=10, num_workers=1, seed=0,
                      rel_gap=1e-4, resolution=10**9)
    assert out.info["bisection_rounds"][0][0] == first
    assert out.info.get("close_first", False) == (first == "close")
    assert out.objective == pytest.approx(opt, rel=1e-6)


def _fake_stage(plan, interrupted=False):
    def fake(inst, items, model, buf, v, obj, prices, relax_fn, fix_fn, *, info, **kw):  # noqa: ARG001
        m = evaluate_arrays(inst, plan)
        info.update(relax_fix="fake", relax_fix_objective=m.objective)
        if interrupted:
            info["interrupted"] = True
        return plan, m
    return fake


def test_a_better_relax_and_fix_plan_is_the_solvers_start(method, always, monkeypatch):
    inst = _two_dc()
    opt, best = brute_force(inst)
    monkeypatch.setattr(relax_fix, "relax_and_fix", _fake_stage(best))
    res = run(inst, method, improve=False, relax_fix=True)
    assert res.info["warm_start_objective"] > opt  # greedy's start, worse than the stage's
    assert res.status == "optimal" and res.objective == pytest.approx(opt, rel=1e-9)
    # the history: greedy's start, then the stage's plan, before any of the solver's
    assert [f for _, f, _ in res.history[:2]] == [res.info["warm_start_objective"], opt]
    # a solver that only matches it reports its own plan (plan_from "solver")
    assert res.info["plan_from"] in ("relax_fix", "solver")


def test_ctrl_c_in_relax_and_fix_returns_its_plan_without_a_solver(always, monkeypatch):
    inst = _two_dc()
    opt, best = brute_force(inst)
    monkeypatch.setattr(relax_fix, "relax_and_fix", _fake_stage(best, interrupted=True))
    res = run(inst, "cpsat", improve=False)
    assert res.info["interrupted"] and res.info["solver_status"] == "skipped"
    assert "interrupted (Ctrl-C) in relax-and-fix" in res.termination
    assert res.objective == pytest.approx(opt) and res.info["plan_from"] == "relax_fix"
    assert [f for _, f, _ in res.history[:2]] == [res.info["warm_start_objective"], opt]
    assert res.status == "feasible"  # only the domain bound (2.9375) stands beside it


def test_ctrl_c_in_step_2_keeps_its_plan_so_far():
    def stopped(buf, obj, T, hint, **kw):
        out = _cpsat(buf, obj, T, hint, **kw)
        return dataclasses.replace(out, info={**out.info, "interrupted": True})

    plan, m, info, _ = _stage(_two_dc(), _scip, stopped, rounds=((0.5, 0.5), (0.3, 0.5)))
    assert info["interrupted"] and m is not None
    assert [r["note"] for r in info["relax_fix_rounds"]] == ["interrupted"]  # no second round
