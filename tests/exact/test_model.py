"""The exact model's items: shared prefix blocks with one holder set are merged into one block,
which must charge every cluster exactly what the separate blocks charge."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from helpers import brute_force, instance, run

from planner.exact import _model
from planner.exact._model import merge_blocks, request_items, shared_blocks


def _chain_instance(seed: int, n: int = 12):
    """Block-hash chains that share leading parts (a common prefix is several blocks held by
    the same requests) and may repeat a hash within one chain."""
    rng = np.random.default_rng(seed)
    reqs = []
    for _ in range(n):
        chain = [1, 2, 3][: int(rng.integers(0, 4))]
        chain += [int(h) for h in rng.integers(4, 8, int(rng.integers(0, 3)))]
        reqs.append({"prompt_tokens": 512 * len(chain) + int(rng.integers(1, 300)),
                     "output_tokens": int(rng.integers(1, 40)),
                     **({"prefix": chain} if chain else {})})
    clusters = [{"name": "m0", "role": "mixed"}, {"name": "m1", "role": "mixed"},
                {"name": "p0", "role": "prefill", "prefill_tokens_per_s": 900.0},
                {"name": "d0", "role": "decode"}]
    return instance(clusters, reqs, prefix_caching=True)


def _charged(n: int, ptr, idx, tok, where: np.ndarray, c: int) -> np.ndarray:
    """Tokens of shared blocks paid on each cluster: each block once where any holder is."""
    owner = np.repeat(np.arange(n), np.diff(ptr))
    paid = np.zeros(c)
    for cl in range(c):
        held = np.unique(idx[where[owner] == cl])
        paid[cl] = tok[held].sum()
    return paid


@pytest.mark.parametrize("seed", range(6))
def test_merged_blocks_charge_every_cluster_what_the_blocks_charge(seed):
    inst = _chain_instance(seed)
    n = inst.n_requests
    ptr, idx, tok, _ = shared_blocks(inst)
    ptr2, idx2, tok2 = merge_blocks(n, ptr, idx, tok)
    assert tok.size > 0 and tok2.size <= tok.size
    assert tok2.sum() == pytest.approx(tok.sum(), rel=1e-12)
    rng = np.random.default_rng(seed)
    for _ in range(50):
        where = rng.integers(0, 3, n)
        np.testing.assert_allclose(_charged(n, ptr2, idx2, tok2, where, 3),
                                   _charged(n, ptr, idx, tok, where, 3), rtol=1e-12)
    # each merged block listed once per request
    owner2 = np.repeat(np.arange(n), np.diff(ptr2))
    assert np.unique(owner2 * tok2.size + idx2).size == idx2.size


def test_a_common_prefix_becomes_one_block():
    # five requests share the chain 1-2-3; two of them also share block 4: blocks 1, 2 and 3
    # have one holder set (merged: 1,536 tokens), block 4 another (512 tokens)
    reqs = [{"prompt_tokens": 1600, "output_tokens": 5, "prefix": [1, 2, 3]} for _ in range(3)]
    reqs += [{"prompt_tokens": 2100, "output_tokens": 5, "prefix": [1, 2, 3, 4]}
             for _ in range(2)]
    inst = instance([{"name": "c0"}, {"name": "c1"}], reqs, prefix_caching=True)
    assert shared_blocks(inst)[2].size == 4
    items = request_items(inst)
    assert sorted(items.block_tok.tolist()) == [512.0, 1536.0]
    assert np.diff(items.block_ptr).tolist() == [1, 1, 1, 2, 2]


def test_a_signature_collision_keeps_the_blocks(monkeypatch):
    # every holder's random word zero: all holder sets of one size collide, and the
    # element-by-element check must then refuse to merge
    class _Zero:
        def integers(self, lo, hi, size, dtype):
            return np.zeros(size, dtype)

    monkeypatch.setattr(_model.np.random, "default_rng", lambda seed=None: _Zero())
    reqs = [{"prompt_tokens": 600, "output_tokens": 5, "prefix": [1]},
            {"prompt_tokens": 600, "output_tokens": 5, "prefix": [1]},
            {"prompt_tokens": 600, "output_tokens": 5, "prefix": [2]},
            {"prompt_tokens": 600, "output_tokens": 5, "prefix": [2]}]
    inst = instance([{"name": "c0"}, {"name": "c1"}], reqs, prefix_caching=True)
    ptr, idx, tok, _ = shared_blocks(inst)
    ptr2, idx2, tok2 = merge_blocks(inst.n_requests, ptr, idx, tok)
    assert tok2.size == 2 and np.array_equal(idx2, idx)


@functools.cache
def _merged_chains(decode_tps: float | None):
    """Blocks 1 and 2 have one holder set (merged), block 3 another; a slow decode cluster
    (decode_tps 30) moves the optimum's balance. The instance and its brute-force optimum."""
    reqs = [{"prompt_tokens": 1100 + 40 * k, "output_tokens": 20 + 7 * k, "prefix": [1, 2]}
            for k in range(3)]
    reqs += [{"prompt_tokens": 1700 + 90 * k, "output_tokens": 9 + 5 * k, "prefix": [1, 2, 3]}
             for k in range(2)]
    clusters = [{"name": "m0", "role": "mixed"},
                {"name": "m1", "role": "mixed", "prefill_tokens_per_s": 900.0},
                {"name": "d0", "role": "decode",
                 **({"decode_tokens_per_s": decode_tps} if decode_tps else {})}]
    inst = instance(clusters, reqs, prefix_caching=True)
    return inst, brute_force(inst)[0]


@pytest.mark.parametrize("decode_tps", [None, 30.0])
def test_exact_methods_reach_the_brute_force_optimum_on_chains(method, decode_tps):
    inst, opt = _merged_chains(decode_tps)
    assert request_items(inst).n_blocks == 2 and shared_blocks(inst)[2].size == 3
    res = run(inst, method, warm_start="none")
    assert res.status == "optimal"
    assert res.objective == pytest.approx(opt, rel=1e-4)


def test_with_nothing_to_merge_every_block_keeps_its_id():
    # named groups hold disjoint sets of requests: the same CSR, ids and tokens come back (the
    # ids once came back renumbered by signature, which changed aggregated's 1M-request plan)
    reqs = [{"prompt_tokens": 900 + k, "output_tokens": 5, "prefix": f"g{k % 3}",
             "prefix_tokens": 300} for k in range(9)]
    inst = instance([{"name": "c0"}, {"name": "c1"}], reqs, prefix_caching=True)
    ptr, idx, tok, _ = shared_blocks(inst)
    out = merge_blocks(inst.n_requests, ptr, idx, tok)
    assert all(np.array_equal(a, b) for a, b in zip(out, (ptr, idx, tok), strict=True))
