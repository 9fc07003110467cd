"""Assembling a :class:`Workload` from columns: ids, origins, prefixes as block chains."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from planner.scenario.errors import Problem
from planner.scenario.model import Workload

GROUP_BLOCK = -1  # marker in raw block keys: "the next key is a prefix group"


def is_hash_chain(v: object) -> bool:
    """A block-hash chain: a list of 64-bit integers (not booleans, not floats)."""
    return isinstance(v, list) and all(type(h) is int and -2**63 <= h < 2**63 for h in v)


def block_chain_tokens(ptr: np.ndarray, prompt: np.ndarray, block_tokens: int) -> np.ndarray:
    """Tokens of each block of hash chains: ``block_tokens`` each, the last one partial, never
    past the prompt (vectorized over all occurrences)."""
    counts = np.diff(ptr)
    owner = np.repeat(np.arange(len(counts)), counts)
    pos = np.arange(ptr[-1]) - np.repeat(ptr[:-1], counts)
    left = prompt[owner] - pos * block_tokens
    return np.clip(left, 0, block_tokens).astype(np.int64)


def assemble(
    *,
    ids: np.ndarray | None,
    arrival_s: np.ndarray,
    prompt_tokens: np.ndarray,
    output_tokens: np.ndarray,
    origin: np.ndarray | None = None,
    priority: np.ndarray | None = None,
    chain_ptr: np.ndarray | None = None,
    chain_keys: np.ndarray | None = None,
    chain_tokens: np.ndarray | None = None,
    group: np.ndarray | None = None,
    group_tokens: np.ndarray | None = None,
    time_scale: float = 1.0,
    source: str = "inline",
    files: tuple[str, ...] = (),
) -> Workload:
    """Build a Workload. Prefixes come as hash chains (CSR ``chain_ptr``/``chain_keys`` with
    per-block ``chain_tokens``) or as one integer group code per request (-1 for no prefix) with
    ``group_tokens`` tokens; a group is one block. Equal keys mean equal content."""
    n = len(arrival_s)
    with np.errstate(over="ignore"):  # an overflow is inf: the loader names it
        arrival = np.asarray(arrival_s, dtype=np.float64) * float(time_scale)
    if ids is None:
        ids = np.char.add("r", np.arange(n).astype(str))
    ids = np.asarray(ids).astype(str)
    origin = np.full(n, -1, np.int64) if origin is None else np.asarray(origin, np.int64)
    priority = np.zeros(n, np.int64) if priority is None else np.asarray(priority, np.int64)
    prompt = np.asarray(prompt_tokens, dtype=np.int64)
    output = np.asarray(output_tokens, dtype=np.int64)

    ptr = np.zeros(n + 1, np.int64)
    codes = np.zeros(0, np.int64)
    btok = np.zeros(0, np.int64)
    if chain_ptr is not None and chain_keys is not None and len(chain_keys):
        ptr = np.asarray(chain_ptr, np.int64)
        _, codes = np.unique(np.asarray(chain_keys, np.int64), return_inverse=True)
        codes = codes.astype(np.int64)
        btok = np.asarray(chain_tokens, np.int64)
    elif group is not None:
        g = np.asarray(group, np.int64)
        has = g >= 0
        if has.any():
            _, inv = np.unique(g[has], return_inverse=True)
            counts = has.astype(np.int64)
            ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            codes = inv.astype(np.int64)
            gt = np.asarray(group_tokens, np.int64)[has]
            btok = np.minimum(gt, prompt[has])
    return Workload(
        ids=ids,
        arrival_s=arrival,
        prompt_tokens=prompt,
        output_tokens=output,
        origin=origin,
        priority=priority,
        prefix_ptr=ptr,
        prefix_blocks=codes,
        prefix_block_tokens=btok,
        source=source,
        files=files,
    )


def origin_codes(
    spec: str | dict[str, float] | None,
    n: int,
    datacenters: Sequence[str],
    rng: np.random.Generator,
    path: str,
) -> tuple[np.ndarray | None, list[Problem]]:
    """Origins for ``n`` requests: one datacenter for all, or a weighted mix drawn with ``rng``."""
    if spec is None:
        return None, []
    index = {d: i for i, d in enumerate(datacenters)}
    weights = {spec: 1.0} if isinstance(spec, str) else dict(spec)
    problems = [
        Problem(f"{path}.{k}" if isinstance(spec, dict) else path, "unknown datacenter", k)
        for k in weights
        if k not in index
    ]
    problems += [
        Problem(f"{path}.{k}", "an origin weight must be non-negative", w)
        for k, w in weights.items()
        if w < 0
    ]
    problems += [
        Problem(f"{path}.{k}", "an origin weight must be a finite number", w)
        for k, w in weights.items()
        if not np.isfinite(w)
    ]
    if not problems and max(weights.values()) <= 0:
        problems.append(Problem(path, "origin weights must not all be zero", spec))
    if problems:
        return None, problems
    keys = list(weights)
    w = np.array([weights[k] for k in keys], np.float64)
    total = sum(weights.values())
    if not np.isfinite(total):  # {a: 1e308, b: 1e308}: scaled by the largest weight first
        w = w / w.max()
        total = w.sum()
    p = w / total
    picks = rng.choice(len(keys), size=n, p=p)
    return np.array([index[k] for k in keys], np.int64)[picks], []
