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
    """Lognormal draws clipped to [min, max] before the integer cast: the schema bounds min and
    max (MAX_TOKENS), so a draw that overflows to inf still becomes max, never a wrapped int64."""
    x = rng.lognormal(mean=np.log(spec.median), sigma=spec.sigma, size=n)
    return np.clip(np.rint(x), spec.min, spec.max).astype(np.int64)


def _arrivals(rng: np.random.Generator, spec: SyntheticSpec, n: int, time_scale: float,
              path: str) -> tuple[np.ndarray | None, list[Problem]]:
    """Poisson arrivals from 0; a rate so low that the times (scaled) overflow is an error."""
    with np.errstate(over="ignore", invalid="ignore"):
        arrival = np.cumsum(rng.exponential(1.0 / spec.arrival_rate, size=n))
        arrival -= arrival[0]
        last = arrival[-1] * time_scale
    if not np.isfinite(last):
        return None, [Problem(f"{path}.arrival_rate", f"arrival times of {n:,} requests at this "
                              "rate are not finite numbers of seconds", spec.arrival_rate)]
    return arrival, []


def generate(
    spec: SyntheticSpec,
    datacenters: Sequence[str],
    time_scale: float = 1.0,
    path: str = "workload.synthetic",
) -> tuple[Workload | None, list[Problem]]:
    rng = np.random.default_rng(spec.seed)
    n = spec.count
    arrival, problems = _arrivals(rng, spec, n, time_scale, path)
    if arrival is None:
        return None, problems
    prompt = _lengths(rng, spec.prompt, n)
    output = _lengths(rng, spec.output, n)
    group = None
    group_tokens = None
    if spec.prefix is not None:
        g = spec.prefix.groups  # at most MAX_SYNTHETIC (schema): the weights are O(groups)
        with np.errstate(over="ignore"):  # rank**zipf = inf is a weight of 0, as it should be
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
