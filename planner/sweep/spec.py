"""Sweep files: a base scenario (or a folder of scenarios), a grid of overrides, the methods.

    name: bandwidth-x-replicas
    scenario: ../scenarios/quickstart.yaml   # or  scenarios: a/folder/  (or a list of files)
    methods: [greedy, lpt]
    options: {random: {seed: 3}}             # per method, optional
    time_limit: 10                           # seconds per method run, optional
    threads: 1                               # solver threads per run (exact methods)
    replay: true                             # replay each plan for TTFT/TPOT (default true)
    grid:                                    # override path -> values (cartesian product)
      links[0].bandwidth_gbps: [10, 25, 100]
      datacenters[0].clusters[1].replicas: [1, 2, 4]
      workload.time_scale: [0.5, 1.0]
      datacenters[0].clusters[0].accelerator: [h100, a100-80gb]
    out: results.csv                         # default: NAME.results.csv beside the sweep file

An override path names a field of the scenario file: ``a.b`` for mapping keys, ``[i]`` for list
items. It must exist in the scenario, or be a field the scenario schema allows there (e.g.
``workload.time_scale`` or a per-cluster card override such as ``prefill_tokens_per_s``).
Every problem is reported as ``FILE: field: message (given)`` (a :class:`SweepError`).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.api import check_time_limit, own_time_limit
from planner.registry import get_method
from planner.report.io import check_output
from planner.scenario.errors import InputError, OptionError, Problem, ScenarioError
from planner.scenario.load import load_scenario, pydantic_problems, read_document
from planner.scenario.schema import ScenarioSpec

SCENARIO_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
SOLVER_THREAD_OPTIONS = ("threads", "num_threads", "workers", "num_workers", "num_search_workers")
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\[\d+\]")


class SweepError(InputError):
    """A sweep file is invalid."""


class _SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    description: str = ""
    scenario: str | None = None
    scenarios: str | list[str] | None = None
    methods: list[str] = Field(min_length=1)
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    time_limit: float | None = Field(default=None, gt=0)
    threads: int = Field(default=1, gt=0)
    replay: bool = True
    grid: dict[str, list[Any]] | None = None
    out: str | None = None
    report: str | None = None


@dataclass(frozen=True)
class Base:
    """One base scenario: its label, its parsed document (relative file paths made absolute),
    the folder it came from and a digest of its content."""

    label: str
    document: dict[str, Any]
    base_dir: str
    digest: str
    where: str = field(default="scenario", compare=False)  # its field in the sweep file
    path: str = field(default="", compare=False)  # the scenario file


@dataclass(frozen=True)
class Axis:
    path: str
    values: tuple[Any, ...]


@dataclass
class Sweep:
    file: Path
    name: str
    bases: list[Base]
    axes: list[Axis]
    methods: list[str]
    options: dict[str, dict[str, Any]]
    time_limit: float | None
    threads: int
    out: Path
    report: Path
    description: str = ""
    replay: bool = True  # replay each plan (planner simulate) for its timed figures

    def points(self) -> list[Point]:
        """Every (base, overrides, method) of the sweep, in a stable order."""
        out: list[Point] = []
        combos = list(itertools.product(*(a.values for a in self.axes))) if self.axes else [()]
        for base in self.bases:
            for combo in combos:
                ov = tuple((a.path, v) for a, v in zip(self.axes, combo, strict=True))
                for m in self.methods:
                    limit, opts = own_time_limit(self.options.get(m, {}), self.time_limit)
                    out.append(Point(base, ov, m, method_options(m, opts, self.threads), limit))
        return out


@dataclass(frozen=True)
class Point:
    base: Base
    overrides: tuple[tuple[str, Any], ...]
    method: str
    options: dict[str, Any] = field(hash=False)
    time_limit: float | None

    @functools.cached_property
    def content(self) -> str:
        """The scenario's digest plus the digest of the trace file the point reads (its bytes,
        not its path: a trace rewritten in place is a new point)."""
        trace = trace_file(apply_overrides(self.base.document, self.overrides))
        return self.base.digest if trace is None else f"{self.base.digest}:{file_digest(trace)}"

    @property
    def key(self) -> str:
        """Hash of (scenario and trace content, overrides, method, options incl. time limit)."""
        return point_key(self.content, self.overrides, self.method, self.options, self.time_limit)

    @property
    def scenario_key(self) -> str:
        return point_key(self.content, self.overrides, "", {}, None)

    def task(self) -> dict[str, Any]:
        """What a worker needs (plain data, picklable, independent of this module)."""
        return {"key": self.key, "scenario_key": self.scenario_key, "label": self.base.label,
                "document": self.base.document, "base_dir": self.base.base_dir,
                "overrides": [list(o) for o in self.overrides], "method": self.method,
                "options": self.options, "time_limit": self.time_limit}


def trace_file(doc: dict[str, Any]) -> str | None:
    """The trace file a scenario document reads, as a worker resolves it (a relative path
    against the current folder; the base scenario's own path is made absolute on loading)."""
    wl = doc.get("workload")
    f = wl.get("file") if isinstance(wl, dict) else None
    if not isinstance(f, dict) or "path" not in f:
        return None
    return str(Path(str(f["path"])).absolute())


@functools.lru_cache(maxsize=256)
def _digest_of(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:20]


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes (memoised per path, modification time and size);
    ``unreadable`` when it cannot be read (the point then fails with the loader's error)."""
    try:
        st = os.stat(path)
        return _digest_of(path, st.st_mtime_ns, st.st_size)
    except OSError:
        return "unreadable"


def canonical(x: Any) -> str:
    return json.dumps(x, sort_keys=True, separators=(",", ":"), default=str)


def point_key(digest: str, overrides: Any, method: str, options: dict, time_limit: float | None) -> str:
    blob = canonical({"scenario": digest, "overrides": [list(o) for o in overrides],
                      "method": method, "options": options, "time_limit": time_limit})
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def method_options(method: str, given: dict[str, Any], threads: int) -> dict[str, Any]:
    """The options a point runs with: the given ones plus ``threads`` for a solver that has a
    threads/workers option the user did not set."""
    spec = get_method(method)
    opts = dict(given)
    for name in SOLVER_THREAD_OPTIONS:
        if name in spec.options and name not in opts:
            opts[name] = threads
            break
    return opts


# ---------------------------------------------------------------- override paths


def parse_path(path: str) -> list[str | int] | None:
    """``links[0].bandwidth_gbps`` -> ["links", 0, "bandwidth_gbps"]; None when malformed."""
    parts: list[str | int] = []
    pos = 0
    for seg_no, seg in enumerate(path.split(".")):
        toks = _PATH.findall(seg)
        if "".join(toks) != seg or not toks or toks[0].startswith("["):
            return None
        for t in toks:
            parts.append(int(t[1:-1]) if t.startswith("[") else t)
        pos += seg_no
    return parts


def _unwrap(tp: Any) -> Any:
    """The model (or list item model) a field annotation points to, else None."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            got = _unwrap(arg)
            if got is not None:
                return got
        return None
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return ("list", _unwrap(args[0]) if args else None)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    return None


def _fmt(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + p
    return out or "<top>"


def check_path(doc: dict[str, Any], parts: list[str | int]) -> str | None:
    """None when ``parts`` names a field of the scenario ``doc``, else what is wrong."""
    node: Any = doc
    model: Any = ScenarioSpec
    for k, p in enumerate(parts):
        here = _fmt(parts[:k]) if k else "the scenario"
        last = k == len(parts) - 1
        if isinstance(p, int):
            if not isinstance(node, list):
                return f"{here} is not a list"
            if p >= len(node):
                return f"{here} has {len(node)} entries, no index {p}"
            node = node[p]
            model = model[1] if isinstance(model, tuple) else None
            continue
        if not isinstance(node, dict):
            return f"{here} is not a mapping"
        fields = model.model_fields if isinstance(model, type) else None
        if fields is not None and p not in fields:
            return f"no field {p!r} in {here} (known: {', '.join(sorted(fields))})"
        if p not in node:
            if fields is None:
                return f"no key {p!r} in {here}"
            if not last:
                return f"{_fmt(parts[:k + 1])} is not set in the scenario"
            return None
        model = _unwrap(fields[p].annotation) if fields is not None else None
        node = node[p]
    return None


def apply_overrides(doc: dict[str, Any], overrides: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for path, value in overrides:
        parts = parse_path(path)
        if parts is None:
            raise ValueError(f"bad override path {path!r}")
        node: Any = out
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return out


# ---------------------------------------------------------------- loading a sweep file


def _base(path: Path, label: str, problems: list[Problem], where: str) -> Base | None:
    try:
        doc = read_document(path)
    except ScenarioError as exc:
        problems.append(Problem(where, f"cannot read scenario: {exc}", str(path)))
        return None
    base_dir = path.resolve().parent
    wl = doc.get("workload")
    if isinstance(wl, dict) and isinstance(wl.get("file"), dict) and "path" in wl["file"]:
        p = Path(str(wl["file"]["path"]))
        if not p.is_absolute():  # a worker loads the document, not the file: pin its trace
            doc = copy.deepcopy(doc)
            doc["workload"]["file"]["path"] = str(base_dir / p)
    digest = hashlib.sha256(canonical(doc).encode()).hexdigest()[:20]
    return Base(label, doc, str(base_dir), digest, where, str(path))


def _bases(spec: _SweepFile, here: Path, problems: list[Problem]) -> list[Base]:
    if (spec.scenario is None) == (spec.scenarios is None):
        problems.append(Problem("scenario", "give exactly one of scenario (a file) or scenarios "
                                "(a folder or a list of files)",
                                [k for k in ("scenario", "scenarios") if getattr(spec, k)]))
        return []
    files: list[tuple[Path, str]] = []
    if spec.scenario is not None:
        files = [(here / spec.scenario, "scenario")]
    elif isinstance(spec.scenarios, str):
        folder = here / spec.scenarios
        if not folder.is_dir():
            problems.append(Problem("scenarios", "not a folder", spec.scenarios))
            return []
        files = [(p, "scenarios") for p in sorted(folder.iterdir())
                 if p.suffix.lower() in SCENARIO_SUFFIXES]
        if not files:
            problems.append(Problem("scenarios", "no scenario file (.yaml, .yml, .json, .toml) in "
                                    "the folder", spec.scenarios))
    else:
        files = [(here / s, f"scenarios[{i}]") for i, s in enumerate(spec.scenarios or [])]
        if not files:
            problems.append(Problem("scenarios", "empty list", []))
    out = []
    labels: dict[str, int] = {}
    for path, where in files:
        if not path.is_file():
            problems.append(Problem(where, "scenario file not found", str(path)))
            continue
        label = path.stem
        labels[label] = labels.get(label, 0) + 1
        if labels[label] > 1:
            label = f"{label}~{labels[label]}"
        b = _base(path, label, problems, where)
        if b is not None:
            out.append(b)
    return out


def _axes(spec: _SweepFile, bases: list[Base], problems: list[Problem]) -> list[Axis]:
    if spec.grid is None:
        if spec.scenarios is None:
            problems.append(Problem("grid", "a sweep over one scenario needs a grid of overrides"))
        return []
    if not spec.grid:
        problems.append(Problem("grid", "empty grid: give at least one override path with values",
                                {}))
        return []
    axes = []
    for path, values in spec.grid.items():
        where = f"grid.{path}"
        parts = parse_path(path)
        if parts is None:
            problems.append(Problem(where, "not an override path (e.g. links[0].bandwidth_gbps)",
                                    path))
            continue
        if not values:
            problems.append(Problem(where, "no values", values))
            continue
        if len({canonical(v) for v in values}) != len(values):
            problems.append(Problem(where, "repeated value", values))
            continue
        bad = False
        for b in bases:
            why = check_path(b.document, parts)
            if why:
                what = f" of {b.label}" if len(bases) > 1 else ""
                problems.append(Problem(where, f"unknown override path{what}: {why}", path))
                bad = True
                break
        if not bad:
            axes.append(Axis(path, tuple(values)))
    return axes


def _check_values(axes: list[Axis], bases: list[Base], file: str, problems: list[Problem]) -> None:
    """Load each base with each single override value, so that a bad value (a negative
    bandwidth, an unknown accelerator) is reported before anything runs; without a grid, load
    each base as it is, so that an invalid scenario file stops the sweep instead of becoming
    error rows."""
    if not axes:
        for b in bases:
            try:
                with models_dir(b.base_dir):
                    load_scenario(b.document, name=b.label)
            except ScenarioError as exc:
                problems.extend(Problem(b.where, f"invalid scenario {b.path}: {p.path}: "
                                        f"{p.message}", p.given) for p in exc.problems)
            if len(problems) > 20:
                return
        return
    for b in bases:
        for a in axes:
            for i, v in enumerate(a.values):
                doc = apply_overrides(b.document, [(a.path, v)])
                try:
                    with models_dir(b.base_dir):
                        load_scenario(doc, name=b.label)
                except ScenarioError as exc:
                    for p in exc.problems:
                        problems.append(Problem(f"grid.{a.path}[{i}]",
                                                f"{b.label}: {p.path}: {p.message}", v))
                    if len(problems) > 20:
                        return


class models_dir:  # noqa: N801 - used as a context manager
    """Point the card catalog at ``BASE_DIR/models`` while a document from that folder loads
    (``load_scenario`` of a mapping looks beside the current directory otherwise)."""

    def __init__(self, base_dir: str) -> None:
        self.path = Path(base_dir) / "models"
        self.saved: str | None = None

    def __enter__(self) -> None:
        import os

        self.saved = os.environ.get("PLANNER_MODELS_DIR")
        if self.path.is_dir() and self.saved is None:
            os.environ["PLANNER_MODELS_DIR"] = str(self.path)

    def __exit__(self, *exc: object) -> None:
        import os

        if self.saved is None:
            os.environ.pop("PLANNER_MODELS_DIR", None)


def plain_name(name: str) -> bool:
    """Whether ``name`` names a file in a folder, not a path elsewhere (empty: the default)."""
    seps = {"/", "\\", "\0"} | ({os.sep, os.altsep} - {None})
    return name not in (".", "..") and not any(c in seps for c in name)


def check_outputs(sw: Sweep, out: str | Path | None = None,
                  report: str | Path | None | bool = None) -> None:
    """Fail before anything runs when the results table or the report cannot be written: a
    folder where the file goes, a parent that cannot be made, the two the same file, or one of
    them the sweep file or a scenario it reads. ``out``/``report`` given (the command line's,
    checked there) replace the sweep file's; ``report=False``: no report."""
    problems: list[Problem] = []
    targets: dict[str, Path] = {}
    for key, given, default in (("out", out, sw.out), ("report", report, sw.report)):
        if given is False:
            continue
        target = Path(given) if isinstance(given, (str, Path)) else default
        targets[key] = target
        if given is not None:
            check_output(target, f"--{key}")
            continue
        try:
            check_output(target, key)
        except InputError as exc:
            problems.extend(Problem(key, p.message, str(target)) for p in exc.problems)
    real = {k: os.path.realpath(p) for k, p in targets.items()}
    if len(real) == 2 and real["out"] == real["report"]:
        problems.append(Problem("report", "the same file as the results table (out)",
                                str(targets["report"])))
    inputs = {os.path.realpath(sw.file): "the sweep file"}
    inputs.update({os.path.realpath(b.path): f"the scenario {b.label}" for b in sw.bases if b.path})
    for b in sw.bases:  # their trace files (paths made absolute when read)
        trace = trace_file(b.document)
        if trace is not None:
            inputs.setdefault(os.path.realpath(trace), f"the trace file of scenario {b.label}")
    for key, r in real.items():
        if r in inputs:
            problems.append(Problem(key, f"is {inputs[r]}: it would be overwritten",
                                    str(targets[key])))
    report_to = targets.get("report")
    if report_to is not None and report_to.suffix.lower() != ".html" and \
            not any(p.path == "report" for p in problems):
        # an HTML page was written under any name (found by review: report x.txt)
        why = "the report is an HTML page: give a NAME.html file"
        if isinstance(report, (str, Path)):  # the command line's --report
            raise InputError("--report", [Problem("--report", why, str(report_to))])
        problems.append(Problem("report", why, str(report_to)))
    if problems:
        raise SweepError(str(sw.file), problems)


def load_sweep(path: str | Path, check_values: bool = True) -> Sweep:
    """Read and check a sweep file; every problem at once in one :class:`SweepError`."""
    path = Path(path)
    file = str(path)
    try:
        data = read_document(path)
    except ScenarioError as exc:
        raise SweepError(file, exc.problems) from None
    try:
        spec = _SweepFile.model_validate(data)
    except ValidationError as exc:
        raise SweepError(file, pydantic_problems(exc)) from None
    here = path.resolve().parent
    problems: list[Problem] = []
    for i, m in enumerate(spec.methods):
        try:
            get_method(m)
        except OptionError as exc:
            problems.extend(Problem(f"methods[{i}]", p.message, p.given) for p in exc.problems)
    for m, opts in spec.options.items():
        if m not in spec.methods:
            problems.append(Problem(f"options.{m}", "options for a method the sweep does not run",
                                    m))
            continue
        try:
            get_method(m).resolve(opts)
        except OptionError as exc:
            problems.extend(Problem(f"options.{m}.{p.path}", p.message, p.given)
                            for p in exc.problems)
    try:
        check_time_limit(spec.time_limit, "time_limit")
    except OptionError as exc:
        problems.extend(exc.problems)
    if spec.name is not None and not plain_name(spec.name):
        problems.append(Problem("name", "must be a plain file name (no folder, not '.' or '..'): "
                                "the results and the report are named after it", spec.name))
    bases = _bases(spec, here, problems)
    axes = _axes(spec, bases, problems)
    if problems:
        raise SweepError(file, problems)
    if check_values:
        _check_values(axes, bases, file, problems)
        if problems:
            raise SweepError(file, problems)
    name = spec.name or path.stem
    out = here / spec.out if spec.out else here / f"{name}.results.csv"
    report = here / spec.report if spec.report else here / f"{name}.html"
    return Sweep(path, name, bases, axes, list(dict.fromkeys(spec.methods)), spec.options,
                 spec.time_limit, spec.threads, out, report, spec.description, spec.replay)
