"""Helpers shared by the live policies: candidate clusters and per-cluster service times."""

from __future__ import annotations

import numpy as np

from planner.instance import Instance


def prefill_clusters(inst: Instance) -> np.ndarray:
    return np.flatnonzero(inst.can_prefill)


def decode_clusters(inst: Instance) -> np.ndarray:
    return np.flatnonzero(inst.can_decode)


def arrival_order(inst: Instance) -> np.ndarray:
    """Requests in arrival order (ties by position): what an online policy sees."""
    return np.argsort(inst.arrival_s, kind="stable")
