"""The error type of bad input and its one-line-per-problem messages.

Every message has the form ``FILE: path.to.field: what is wrong (what was given)`` so that a user
can find the offending line without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

MISSING: Any = object()
UNSHOWN: Any = object()  # a problem with nothing to show in parentheses (the path says it all)


def reason(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, at most ``limit`` characters (its type when empty)."""
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


def format_path(loc: Sequence[Any]) -> str:
    """Render a location tuple such as ``("datacenters", 0, "name")`` as ``datacenters[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top>"


def _show(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # a numpy scalar
        value = value.item()
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file."""

    path: str
    message: str
    given: Any = MISSING

    def render(self, file: str) -> str:
        where = file if self.path == file else f"{file}: {self.path}"  # an option names itself once
        if self.given is UNSHOWN:
            return f"{where}: {self.message}"
        return f"{where}: {self.message} ({_show(self.given)})"


class InputError(Exception):
    """Bad input: a scenario, a trace, a plan or an option. ``str()`` gives one line per problem."""

    def __init__(self, file: str, problems: Iterable[Problem]):
        self.file = str(file)
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(p.render(self.file) for p in self.problems)


class ScenarioError(InputError):
    """A scenario file (or a file it names) is invalid."""


class PlanError(InputError):
    """A plan does not fit its scenario (unknown request or cluster, role mismatch, ...)."""


class OptionError(InputError):
    """An unknown or ill-typed method option."""
