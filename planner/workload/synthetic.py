"""Seeded synthetic workloads: Poisson arrivals, lognormal prompt and output lengths, prefix
groups with Zipf popularity, an origin mix. Vectorized; the same seed gives the same requests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from planner.scenario.errors import Problem
from planner.scenario.model import Workload
from planner.scenario.schema import LengthSpec, SyntheticSpec
from planner.workload.base import assemble, origin_codes


def _lengths(rng: np.random.Generator, spec: LengthSpec, n: int) -> np.ndarray:
    x = rng.lognormal(mean=np.log(spec.median), sigma=spec.sigma, size=n)
    return np.clip(np.rint(x), spec.min, spec.max).astype(np.int64)


def generate(
    spec: SyntheticSpec,
    datacenters: Sequence[str],
    time_scale: float = 1.0,
    path: str = "workload.synthetic",
) -> tuple[Workload | None, list[Problem]]:
    rng = np.random.default_rng(spec.seed)
    n = spec.count
    arrival = np.cumsum(rng.exponential(1.0 / spec.arrival_rate, size=n))
    arrival -= arrival[0]
    prompt = _lengths(rng, spec.prompt, n)
    output = _lengths(rng, spec.output, n)
    group = None
    group_tokens = None
    if spec.prefix is not None:
        g = spec.prefix.groups
        w = 1.0 / np.arange(1, g + 1) ** spec.prefix.zipf
        member = rng.random(n) < spec.prefix.share
        which = rng.choice(g, size=n, p=w / w.sum())
        group = np.where(member, which, -1)
        group_tokens = np.full(n, spec.prefix.tokens, np.int64)
        # a request that shares a prefix is at least as long as it
        prompt = np.where(member, np.maximum(prompt, spec.prefix.tokens), prompt)
    origin, problems = origin_codes(spec.origin, n, datacenters, rng, f"{path}.origin")
    if problems:
        return None, problems
    wl = assemble(
        ids=None,
        arrival_s=arrival,
        prompt_tokens=prompt,
        output_tokens=output,
        origin=origin,
        group=group,
        group_tokens=group_tokens,
        time_scale=time_scale,
        source=f"synthetic(seed={spec.seed})",
    )
    return wl, []
