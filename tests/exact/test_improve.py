"""The warm start's local search under prefix sharing: its block accounting is the evaluator's,
move by move, and on the quickstart it brings the exact methods within their tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import instance, run

from planner import load_scenario
from planner.api import as_instance
from planner.exact._model import PlacementModel, request_items
from planner.exact.improve import _Blocks, _contributions, improve_makespan
from planner.metrics import evaluate_arrays
from planner.plan import Plan

ROOT = Path(__file__).resolve().parents[2]


def _prefix_instance(seed: int, chains: bool = False):
    """Named prefix groups, or (``chains``) block-hash chains of 512-token blocks that share
    leading parts and may repeat a hash (a repeated hash made the search count a request's
    block twice: found by review)."""
    rng = np.random.default_rng(seed)
    clusters = [{"name": "p0", "role": "prefill", "dc": "a"},
                {"name": "m0", "role": "mixed", "dc": "a", "replicas": 2},
                {"name": "d0", "role": "decode", "dc": "b"},
                {"name": "m1", "role": "mixed", "dc": "b", "prefill_tokens_per_s": 900.0}]
    reqs = []
    for _ in range(14):
        g = int(rng.integers(0, 4))
        if chains:
            chain = [int(h) for h in rng.integers(1, 4, int(rng.integers(1, 4)))]
            reqs.append({"prompt_tokens": 512 * len(chain) + int(rng.integers(0, 300)),
                         "output_tokens": int(rng.integers(0, 60)), "prefix": chain})
            continue
        reqs.append({"prompt_tokens": 300 + int(rng.integers(1, 800)),
                     "output_tokens": int(rng.integers(0, 60)),
                     **({"prefix": f"g{g}", "prefix_tokens": 100 * (g + 1)} if g < 3 else {})})
    return instance(clusters, reqs, prefix_caching=True,
                    links=[{"between": ["a", "b"], "bandwidth_gbps": 0.01}])


def _on_p0_and_d0(inst) -> Plan:
    """Every request prefilled on p0 and decoded on d0: far from balanced."""
    return Plan(np.zeros(inst.n_requests, np.int64),
                np.where(inst.output_tokens > 0, 2, -1).astype(np.int64))


def _loads(inst, plan):
    m = evaluate_arrays(inst, plan)
    return np.concatenate([m.load_s, m.memory_load_s, m.link_load_s])


@pytest.mark.parametrize("chains", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_each_moves_predicted_loads_are_the_evaluators(seed, chains):
    inst = _prefix_instance(seed, chains)
    items = request_items(inst)
    assert items.n_blocks > 0
    model = PlacementModel(inst, items, symmetry=False)
    cont, pairs, ok = _contributions(model)
    rng = np.random.default_rng(seed)
    rows = np.arange(items.n)
    cur = np.array([rng.choice(np.flatnonzero(ok[i])) for i in rows])
    blocks = _Blocks(model, pairs, cur, cont.shape[2])

    def plan_of(c):
        return Plan(np.array([pairs[j][0] for j in c]), np.array([pairs[j][1] for j in c]))

    checked = 0
    for _ in range(60):
        load = cont[rows, cur].sum(axis=0) + blocks.load()
        np.testing.assert_allclose(load, _loads(inst, plan_of(cur)), rtol=1e-12, atol=1e-12)
        kept, opened = blocks.deltas(cur)
        i = int(rng.integers(items.n))
        j = int(rng.choice(np.flatnonzero(ok[i])))
        pred = load - cont[i, cur[i]] + cont[i, j]
        pred[blocks.pp[cur[i]]] -= kept[i]
        pred[blocks.pp[j]] += opened[i, blocks.pp[j]]
        moved = cur.copy()
        moved[i] = j
        np.testing.assert_allclose(pred, _loads(inst, plan_of(moved)), rtol=1e-12, atol=1e-12)
        checked += kept[i] > 0 or opened[i, blocks.pp[j]] > 0
        blocks.move(i, int(cur[i]), j)
        cur = moved
    assert checked > 0  # some moves closed or opened a block


@pytest.mark.parametrize("seed", range(4))
def test_the_search_never_returns_a_worse_plan(seed):
    inst = _prefix_instance(seed)
    model = PlacementModel(inst, request_items(inst), symmetry=False)
    start = _on_p0_and_d0(inst)
    before = evaluate_arrays(inst, start).makespan_s
    after = evaluate_arrays(inst, improve_makespan(model, start, 0.0, 5.0, max_moves=200))
    assert after.makespan_s <= before * (1 + 1e-12)
    assert after.makespan_s < before  # everything on p0 and d0 is far from balanced


def test_the_quickstart_is_proven_within_tolerance_from_the_improved_start():
    # before the search modelled prefix blocks it was skipped here: cpsat ended 1 to 2 % above
    # the LP bound after 10 and 40 s; every exact method now starts within 1e-4 of it
    inst = as_instance(load_scenario(ROOT / "scenarios" / "quickstart.yaml"))
    assert request_items(inst).n_blocks > 0
    res = run(inst, "cpsat", time_limit=60, work_limit=5)
    assert res.status == "optimal" and res.gap <= 1e-4, res.termination
    assert res.info["improved_objective"] <= res.info["warm_start_objective"] * 0.99


def test_a_search_too_large_for_memory_is_skipped(monkeypatch):
    from planner.exact import improve

    inst = _prefix_instance(0)
    model = PlacementModel(inst, request_items(inst), symmetry=False)
    start = _on_p0_and_d0(inst)
    assert improve.cells(model) == inst.n_requests * 12 * (2 * 4 + 1)  # 9 + 3 pairs, 9 rows
    monkeypatch.setattr(improve, "MAX_CELLS", improve.cells(model) - 1)
    same = improve_makespan(model, start, 0.0, 5.0, max_moves=200)
    assert same is start
