"""Settings of the replay: defaults, overlaid by the scenario's ``extra: {simulate: {...}}`` (and
``extra: {slo: {...}}``), overlaid by keyword arguments of :func:`planner.simulate.simulate`.

Every setting, its default and its meaning:

- ``queue``: ``fcfs`` | ``sjf`` | ``mlq`` | ``aging`` - order of each replica's waiting queue.
  ``sjf`` orders by the predicted decode length (the request's ``output_tokens``); ``mlq`` is a
  skip-join multi-level queue (FastServe): level ``floor(log2(1 + prompt / mlq_quantum))`` at
  arrival, demoted by one level per ``mlq_quantum`` tokens generated (seen when a preempted
  request re-enters); ``aging`` is SJF whose key falls by ``aging_rate`` tokens per second waited
  (key ``output + aging_rate * enqueue_time``, which orders waiting requests exactly like
  ``output - aging_rate * wait``), so a long request waits at most
  ``output_long / aging_rate`` seconds behind requests that arrive after it.
- ``preemption``: ``recompute`` (free the KV, prefill prompt + generated again on the same
  replica) | ``swap`` (copy the KV to host memory and back at ``host_bandwidth_gb_s``).
- ``admission``: ``greedy`` (vLLM: admit while the next step fits; preempt on overflow) |
  ``reserve`` (admit only if the batch's future peak, known output lengths included, fits: never
  preempts) | ``auto`` (``reserve`` when the plan's ``order`` says ``"_admission": ["reserve"]``,
  as the ``batch_cpsat``/``batch_milp`` plans do, else ``greedy``).
- ``max_batched_tokens``: token budget of one engine iteration: caps the decode batch at
  ``min(max_batch_size, max_batched_tokens)`` and the prompt tokens prefilled between two decode
  steps of a mixed replica (default None: batch size only, prefill budget 8192 tokens).
- ``decode_step``: ``full`` (every iteration takes ``step_s(max_batch_size)``, the fluid model's
  residency: the fluid makespan is then a proven lower bound, see :mod:`planner.simulate.engine`) |
  ``linear`` (``step_s(b) = base + per_seq * b`` for the running batch b: faster small batches;
  the compute and link parts of the bound still hold, the memory part may not).
- ``link_sharing``: ``fair`` (max-min fair: the transfers on the links get the max-min fair
  rates of their routes, as TCP-like flows settle; a transfer held back by one link leaves its
  unused share of the others to the rest) | ``fifo`` (a transfer reserves every link of its
  route, in order of readiness, at the route's smallest bandwidth).
- ``prefix_cache_tokens``: LRU capacity of each replica's prefix cache in tokens (default: 20% of
  its KV capacity); used only when the scenario has ``prefix_caching: true``.
- ``rebalance``: ``none`` | ``load_pair`` (every ``rebalance_period_s`` move waiting requests from
  the most to the least loaded replica of each decode cluster) | ``cache_threshold`` (the last
  ``long_replicas`` replicas of each decode cluster are reserved for long requests; a request whose
  KV grows past ``long_threshold_tokens`` migrates there, its KV copied at ``host_bandwidth_gb_s``).
- ``slo``: ``{ttft_s, tpot_s, e2e_s}`` (any subset): goodput counts completed requests within all.
- ``timeline_points``: at most this many points per memory / link timeline in the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from planner.scenario.errors import OptionError, Problem, ScenarioError

QUEUES = ("fcfs", "sjf", "mlq", "aging")
PREEMPTIONS = ("recompute", "swap")
ADMISSIONS = ("auto", "greedy", "reserve")
STEPS = ("full", "linear")
SHARINGS = ("fair", "fifo")
REBALANCES = ("none", "load_pair", "cache_threshold")
SLO_KEYS = ("ttft_s", "tpot_s", "e2e_s")


@dataclass(frozen=True)
class ReplayConfig:
    queue: str = "fcfs"
    aging_rate: float = 50.0
    mlq_quantum: int = 256
    preemption: str = "recompute"
    host_bandwidth_gb_s: float = 25.0
    admission: str = "auto"
    max_batched_tokens: int | None = None
    decode_step: str = "full"
    link_sharing: str = "fair"
    prefix_cache_tokens: int | None = None
    rebalance: str = "none"
    rebalance_period_s: float = 1.0
    long_threshold_tokens: int = 8192
    long_replicas: int = 1
    slo: dict[str, float] = field(default_factory=dict)
    timeline_points: int = 2000

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_CHOICES = {"queue": QUEUES, "preemption": PREEMPTIONS, "admission": ADMISSIONS,
            "decode_step": STEPS, "link_sharing": SHARINGS, "rebalance": REBALANCES}
_POSITIVE = ("aging_rate", "host_bandwidth_gb_s", "rebalance_period_s", "mlq_quantum",
             "long_threshold_tokens", "timeline_points")


def _cast(name: str, value: Any, default: Any) -> Any:
    if name in ("max_batched_tokens", "prefix_cache_tokens"):
        return None if value in (None, "none", "None", "") else int(value)
    if name == "slo":
        if not isinstance(value, dict):
            raise TypeError
        bad = [k for k in value if k not in SLO_KEYS]
        if bad:
            raise ValueError(f"unknown SLO key {bad[0]} (known: {', '.join(SLO_KEYS)})")
        return {k: float(v) for k, v in value.items()}
    if isinstance(default, bool):
        raise TypeError
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return str(value)


def make_config(scenario_extra: dict | None = None, *, file: str | None = None,
                **overrides: Any) -> ReplayConfig:
    """Defaults < ``extra.simulate`` (and ``extra.slo``) of the scenario < ``overrides``.
    A bad key or value raises one line per problem: a ScenarioError naming ``file`` and the
    ``extra.simulate.KEY`` field when the scenario gave it, else an OptionError."""
    base = ReplayConfig()
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}  # the field each value came from
    extra = scenario_extra or {}
    sim = extra.get("simulate")
    if "slo" in extra:
        values["slo"], origin["slo"] = extra["slo"], "extra.slo"
    if isinstance(sim, dict):
        values.update(sim)
        origin.update({k: f"extra.simulate.{k}" for k in sim})
    elif sim is not None:  # [], 0, false ... are not mappings either
        raise ScenarioError(file or "<scenario>", [Problem("extra.simulate", "expected a mapping of "
                                                            "replay settings", sim)])
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    origin.update({k: f"simulate.{k}" for k in given})
    known = {f.name: getattr(base, f.name) for f in fields(base)}
    problems: list[Problem] = []
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            problems.append(Problem(origin[key], "unknown replay setting (known: "
                                    f"{', '.join(sorted(known))})", value))
            continue
        try:
            v = _cast(key, value, known[key])
        except (TypeError, ValueError, OverflowError) as exc:
            problems.append(Problem(origin[key], f"bad value {exc}".strip(), value))
            continue
        if key in _CHOICES and v not in _CHOICES[key]:
            problems.append(Problem(origin[key], f"expected one of "
                                    f"{', '.join(_CHOICES[key])}", value))
            continue
        if key in _POSITIVE and not (v > 0 and math.isfinite(v)):
            problems.append(Problem(origin[key], "must be positive", value))
            continue
        if key == "max_batched_tokens" and v is not None and v < 1:
            problems.append(Problem(origin[key], "must be at least 1 (or none)", value))
            continue
        if key == "prefix_cache_tokens" and v is not None and v < 0:
            problems.append(Problem(origin[key], "must be >= 0 (or none)", value))
            continue
        if key == "slo" and any(not (x > 0 and math.isfinite(x)) for x in v.values()):
            problems.append(Problem(origin[key], "targets must be positive seconds", value))
            continue
        if key == "long_replicas" and v < 0:
            problems.append(Problem(origin[key], "must be >= 0", value))
            continue
        out[key] = v
    from_file = [p for p in problems if p.path.startswith("extra.")]
    if from_file:
        raise ScenarioError(file or "<scenario>", from_file)
    if problems:
        raise OptionError("simulate", problems)
    return replace(base, **out)
