"""Work limits: runs whose plan and figures do not depend on the wall clock.

With ``work_limit`` W (option of ``cpsat``), every stage of an exact run stops by a count, not a
clock: CP-SAT by its deterministic time (``max_deterministic_time``, its own unit of work;
several workers interleave deterministically), the warm start's local search after a number of
moves, the LP relaxation and the covering MILP at their own end. ``time_limit`` stays a cap on
the wall clock; a stage that it ends (a loaded machine, a W too large for the cap) is recorded
here and the run is then reported as not reproducible (``info["reproducible"]``), since where a
clock stops a search depends on the machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# request-moves of the local search per unit of work: its moves cost about n x pairs x
# resources each; measured on the 200- and 1,000-request benchmark models (greedy start,
# 2 cores): 21,600 and 34,700 request-moves per second
LS_WORK_RATE = 25_000
# CP-SAT under a work limit: workers when num_workers is 0 (the cores would make the search
# depend on the machine), and tasks per interleaved batch (two or more workers give the same
# search whatever their number; one worker is a different, single-threaded search)
WORK_WORKERS = 2
WORK_BATCH = 2
# the covering MILP (planner.exact.bounds) under a work limit: a node limit instead of its 2 s
COVER_MILP_NODES = 5_000
COVER_MILP_WORK_S = 60.0

_CUTS: ContextVar[list[str] | None] = ContextVar("planner_clock_cuts", default=None)


@contextmanager
def tracking() -> Iterator[list[str]]:
    """Collect, inside the block, the stages a clock ended (see :func:`clock_cut`)."""
    cuts: list[str] = []
    token = _CUTS.set(cuts)
    try:
        yield cuts
    finally:
        _CUTS.reset(token)


@contextmanager
def untracked() -> Iterator[None]:
    """No tracking inside the block: a nested run without a work limit (a warm start by an
    exact method) keeps its own clocks and its cuts stay out of the outer run's list."""
    token = _CUTS.set(None)
    try:
        yield
    finally:
        _CUTS.reset(token)


def tracked() -> bool:
    """True inside :func:`tracking`: the run has a work limit."""
    return _CUTS.get() is not None


def clock_cut(stage: str) -> None:
    """Record that a clock, not a count, ended ``stage`` (a no-op outside :func:`tracking`)."""
    cuts = _CUTS.get()
    if cuts is not None and stage not in cuts:
        cuts.append(stage)


def ls_moves(work: float, n: int) -> int:
    """The local search's move budget for ``work`` units on ``n`` requests (at least 1)."""
    return max(1, int(math.ceil(work * LS_WORK_RATE / max(1, n))))
