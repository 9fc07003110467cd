"""`aggregated` with prefix chains: its classes credit a request's whole shared prefix (the
merged block), and under `makespan` the request-level local search finishes its rounding."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import instance, run

from planner.exact import improve
from planner.exact.aggregated import ClassKeys
from planner.metrics import evaluate_arrays


def _common_prefix(n: int = 24, seed: int = 0):
    """Requests whose chains start with the same four blocks (2,048 tokens), some with one more
    shared block, on three mixed clusters of unequal speed."""
    rng = np.random.default_rng(seed)
    reqs = []
    for i in range(n):
        chain = [1, 2, 3, 4] + ([5] if i % 3 == 0 else [])
        reqs.append({"prompt_tokens": 512 * len(chain) + int(rng.integers(50, 900)),
                     "output_tokens": int(rng.integers(5, 60)), "prefix": chain})
    clusters = [{"name": "m0"}, {"name": "m1", "prefill_tokens_per_s": 700.0},
                {"name": "m2", "prefill_tokens_per_s": 1300.0, "decode_tokens_per_s": 80.0}]
    return instance(clusters, reqs, prefix_caching=True)


def test_a_class_credits_the_whole_shared_prefix():
    # the first raw block is 512 tokens; the four blocks every request holds are one merged
    # block of 2,048 (before, the class LP charged the other 1,536 tokens to every request)
    ck = ClassKeys(_common_prefix())
    assert np.all(ck.first >= 0) and np.unique(ck.first).size == 1
    assert np.all(ck.first_tok == 2048.0)


def test_the_rounding_is_finished_by_the_local_search():
    inst = _common_prefix(40, seed=1)
    res = run(inst, "aggregated", time_limit=10)
    assert res.info["rounded_objective"] >= res.objective and "improve_s" in res.info
    plain = run(inst, "aggregated", time_limit=10, improve=False)
    assert "improve_s" not in plain.info
    assert plain.objective == pytest.approx(res.info["rounded_objective"], rel=1e-12)
    assert res.objective < 0.9 * plain.objective  # 16.16 to 11.12 when written
    assert evaluate_arrays(inst, res.plan).objective == pytest.approx(res.objective, rel=1e-12)


def test_no_local_search_past_its_memory_guard(monkeypatch):
    monkeypatch.setattr(improve, "MAX_CELLS", 10)
    res = run(_common_prefix(), "aggregated", time_limit=10)
    assert "improve_s" not in res.info and res.plan is not None
