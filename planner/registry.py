"""Method name -> callable, with its options (and their defaults) and a one-line description.

A method is a function ``func(instance, **options)`` returning a :class:`Plan` (heuristics) or a
:class:`Result` (exact methods, which also report bound and gap). Registering is one decorator:

    @register("greedy", "least-load list scheduling", options={"order": "arrival"})
    def greedy(instance, order="arrival"): ...
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from planner.scenario.errors import OptionError, Problem

COMMON_OPTIONS = ("time_limit",)  # accepted (and ignored where meaningless) by every method


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    func: Callable[..., Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "heuristic"  # heuristic | exact
    online: bool = True  # sees requests in arrival order and only its own past decisions

    def resolve(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``options``; strings (from the CLI) cast to the default's type.
        An unknown option or a value of the wrong type raises OptionError."""
        out = dict(self.options)
        problems = []
        for key, value in options.items():
            if key in COMMON_OPTIONS and key not in self.options:
                # accepted by every method, checked all the same (a sweep's `time_limit: abc`
                # for greedy ended in an unexpected ValueError; found by review)
                if not positive_seconds(value):
                    problems.append(Problem(key, "must be a positive number of seconds", value))
                continue
            if key not in self.options:
                known = ", ".join(sorted(self.options)) or "none"
                problems.append(Problem(key, f"unknown option for method {self.name} "
                                        f"(known: {known})", value))
                continue
            try:
                out[key] = _cast(value, self.options[key])
            except (TypeError, ValueError):
                problems.append(Problem(key, f"bad value for option of method {self.name}",
                                        value))
                continue
            why = _out_of_range(key, out[key], self.options[key])
            if why:
                problems.append(Problem(key, f"{why} (method {self.name})", value))
        if problems:
            raise OptionError("options", problems)
        return out


# options that take one of a few words, wherever a method has them
CHOICE_OPTIONS: dict[str, tuple[str, ...]] = {
    "objective": ("makespan", "mean_completion"),  # batch methods
    "style": ("llmd", "dynamo"),  # cache_aware
    "load": ("requests", "seconds"),  # dist_sched
    "cost": ("latency", "load"),  # heatmap, dist_sched
    "mode": ("lp", "milp"),  # aggregated
    "lp_solver": ("auto", "glop", "glop_unscaled"),  # exact methods' LP relaxation
}
# counts, sizes and limits that must be positive; shares that must lie in [0, 1]
POSITIVE_OPTIONS = frozenset({
    "time_limit", "max_classes", "segments", "max_jobs", "max_units", "max_slots", "mlq_quantum",
    "block_tokens", "candidates", "prefill_buckets", "decode_buckets", "grid", "resolution",
    "balance_rel"})
SHARE_OPTIONS = frozenset({"bisect_min_share", "rel_gap"})


def _out_of_range(key: str, value: Any, default: Any) -> str | None:
    """Why a numeric option value is out of range (None when it is fine): every numeric option
    is finite and non-negative (unless its default is negative: a sentinel), some positive,
    shares at most 1."""
    if key in CHOICE_OPTIONS and isinstance(value, str):
        return None if value in CHOICE_OPTIONS[key] else \
            f"expected one of {', '.join(CHOICE_OPTIONS[key])}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return "must be finite"
    if key in POSITIVE_OPTIONS and value <= 0:
        return "must be positive"
    if value < 0 and not (isinstance(default, (int, float)) and default < 0):
        return "must not be negative"
    if key in SHARE_OPTIONS and value > 1:
        return "must be at most 1"
    return None


def positive_seconds(value: Any) -> bool:
    """Whether ``value`` is a time limit: a positive, finite number of seconds (a number's text
    from the command line counts; True does not: it ran as a 1-s limit, found by review)."""
    try:
        v = _cast(value, 1.0)
        return not isinstance(v, bool) and math.isfinite(float(v)) and float(v) > 0
    except (TypeError, ValueError):
        return False


def _cast(value: Any, default: Any) -> Any:
    if not isinstance(value, str) or default is None or isinstance(default, str):
        if isinstance(default, bool) and not isinstance(value, bool):
            raise TypeError
        if isinstance(default, int) and not isinstance(default, bool):
            # a count or a seed: a whole number (a sweep's `seed: 1.5` reached numpy, whose
            # TypeError became every point's error row; found by review)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(value)
                return int(value)
            return value
        if isinstance(default, (int, float)) and not isinstance(default, bool) and \
                not isinstance(value, (int, float, str)):
            raise TypeError
        return value
    if isinstance(default, bool):
        low = value.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return value


_REGISTRY: dict[str, MethodSpec] = {}
# every module in these packages is imported once, so a new method is one new module there
_METHOD_PACKAGES = ("planner.heuristics", "planner.exact", "planner.batch")
_loaded = False


def register(
    name: str,
    description: str,
    *,
    options: Mapping[str, Any] | None = None,
    kind: str = "heuristic",
    online: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(func: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = MethodSpec(name, description, func, dict(options or {}), kind, online)
        return func

    return deco


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for pkg_name in _METHOD_PACKAGES:
            try:
                pkg = importlib.import_module(pkg_name)
            except ModuleNotFoundError as exc:
                if exc.name == pkg_name:
                    continue
                raise
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{pkg_name}.{info.name}")


def get_method(name: str) -> MethodSpec:
    _load_builtins()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise OptionError("method", [Problem("method", f"unknown method (known: {known})", name)])
    return _REGISTRY[name]


def methods() -> list[MethodSpec]:
    _load_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
