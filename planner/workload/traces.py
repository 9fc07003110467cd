"""Trace readers: the Azure LLM inference trace 2023 (CSV), the Mooncake trace (JSON lines, its
``hash_ids`` kept as the prefix block chain), and plain CSV / JSON lines with a column mapping.

Every reader returns columns; problems (unreadable file, missing column, negative tokens) come
back as :class:`Problem` lines naming the trace file, the row and the field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from planner.scenario.errors import Problem
from planner.scenario.model import Workload
from planner.scenario.schema import FileSpec
from planner.workload.base import assemble, block_chain_tokens, origin_codes

MAX_TOKENS = 1_000_000_000  # a request longer than this is an error in the trace, not a request
FIELDS = ("id", "arrival_s", "prompt_tokens", "output_tokens", "prefix", "origin", "priority")
AZURE_COLUMNS = {"arrival_s": "TIMESTAMP", "prompt_tokens": "ContextTokens",
                 "output_tokens": "GeneratedTokens"}
MOONCAKE_COLUMNS = {"arrival_s": "timestamp", "prompt_tokens": "input_length",
                    "output_tokens": "output_length", "prefix": "hash_ids"}


class TraceError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


def _read_frame(path: Path, fmt: str, where: str) -> pd.DataFrame:
    try:
        if fmt in ("azure", "csv"):
            return pd.read_csv(path, index_col=False)  # a row with extra fields is an error
        rows = []
        with open(path, encoding="utf-8") as fh:
            for k, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise TraceError([Problem(where, f"{path.name} line {k}: not JSON ({exc})",
                                              line.strip()[:60])]) from None
                if not isinstance(row, dict):
                    raise TraceError([Problem(where, f"{path.name} line {k}: not a JSON object",
                                              line.strip()[:60])])
                rows.append(row)
        return pd.DataFrame(rows)
    except TraceError:
        raise
    except FileNotFoundError:
        raise TraceError([Problem(where, "trace file not found", str(path))]) from None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TraceError([Problem(where, f"cannot read trace: {reason}", str(path))]) from None


def _column(df: pd.DataFrame, col: str, field: str, path: Path, where: str) -> pd.Series:
    if col not in df.columns:
        raise TraceError([Problem(
            f"{where}.columns.{field}",
            f"column {col!r} not in {path.name} (it has {', '.join(map(str, df.columns))})",
            col,
        )])
    return df[col]


def _integers(s: pd.Series, field: str, path: Path, where: str) -> np.ndarray:
    values = pd.to_numeric(s, errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise TraceError([Problem(where, f"{path.name} row {i + 1}: {field} is not a number",
                                  s.iloc[i])])
    arr = values.to_numpy(dtype=np.float64)
    for bad, what in ((~np.isfinite(arr) | (arr > MAX_TOKENS), f"is above {MAX_TOKENS:,}"),
                      (arr < 0, "is negative"), (arr != np.floor(arr), "is not a whole number")):
        rows = np.flatnonzero(bad)
        if rows.size:
            i = int(rows[0])
            raise TraceError([Problem(
                where, f"{path.name} row {i + 1}: {field} {what} ({rows.size} rows)", s.iloc[i])])
    return arr.astype(np.int64)


def read_trace(
    spec: FileSpec,
    base_dir: Path,
    datacenters: Sequence[str],
    time_scale: float = 1.0,
    where: str = "workload.file",
) -> tuple[Workload | None, list[Problem]]:
    path = Path(spec.path)
    if not path.is_absolute():
        path = base_dir / path
    try:
        return _read(spec, path, datacenters, time_scale, where), []
    except TraceError as exc:
        return None, exc.problems


def _read(
    spec: FileSpec, path: Path, datacenters: Sequence[str], time_scale: float, where: str
) -> Workload:
    fmt = spec.format
    df = _read_frame(path, fmt, f"{where}.path")
    columns = {"azure": AZURE_COLUMNS, "mooncake": MOONCAKE_COLUMNS}.get(fmt, {})
    columns = {**columns, **spec.columns}
    for k in spec.columns:
        if k not in FIELDS:
            raise TraceError([Problem(f"{where}.columns.{k}",
                                      f"unknown field (known: {', '.join(FIELDS)})", k)])
    for req in ("prompt_tokens", "output_tokens"):
        columns.setdefault(req, req)
    if fmt in ("csv", "jsonl"):
        for opt in ("arrival_s", "id", "prefix", "origin", "priority"):
            if opt not in columns and opt in df.columns:
                columns[opt] = opt
    if len(df) == 0:
        raise TraceError([Problem(f"{where}.path", "trace has no rows", str(path))])

    # arrival times, in seconds from the first request
    unit = spec.time_unit_s or (0.001 if fmt == "mooncake" else 1.0)
    if "arrival_s" in columns:
        raw = _column(df, columns["arrival_s"], "arrival_s", path, where)
        if fmt == "azure":
            ts = pd.to_datetime(raw.astype(str).str.slice(0, 26), format="%Y-%m-%d %H:%M:%S.%f",
                                errors="coerce")
            if ts.isna().any():
                i = int(np.flatnonzero(ts.isna().to_numpy())[0])
                raise TraceError([Problem(where, f"{path.name} row {i + 1}: bad TIMESTAMP",
                                          raw.iloc[i])])
            arrival = (ts - ts.min()).dt.total_seconds().to_numpy()
        else:
            vals = pd.to_numeric(raw, errors="coerce")
            if vals.isna().any():
                i = int(np.flatnonzero(vals.isna().to_numpy())[0])
                raise TraceError([Problem(where, f"{path.name} row {i + 1}: arrival is not a number",
                                          raw.iloc[i])])
            arrival = vals.to_numpy(dtype=np.float64) * unit
            inf = np.flatnonzero(~np.isfinite(arrival))
            if inf.size:
                i = int(inf[0])
                raise TraceError([Problem(where, f"{path.name} row {i + 1}: arrival is not finite",
                                          raw.iloc[i])])
            arrival = arrival - arrival.min()
    else:
        arrival = np.zeros(len(df))
    prompt = _integers(_column(df, columns["prompt_tokens"], "prompt_tokens", path, where),
                       "prompt_tokens", path, where)
    output = _integers(_column(df, columns["output_tokens"], "output_tokens", path, where),
                       "output_tokens", path, where)

    order = np.argsort(arrival, kind="stable")
    if spec.limit is not None:
        order = order[: spec.limit]
    df = df.iloc[order].reset_index(drop=True)
    arrival, prompt, output = arrival[order], prompt[order], output[order]
    n = len(order)

    ids = None
    if "id" in columns:
        ids = _column(df, columns["id"], "id", path, where).astype(str).to_numpy()
        if len(set(ids.tolist())) != n:
            raise TraceError([Problem(f"{where}.columns.id", "request ids are not unique",
                                      columns["id"])])
    priority = None
    if "priority" in columns:
        priority = _integers(_column(df, columns["priority"], "priority", path, where),
                             "priority", path, where)

    rng = np.random.default_rng(spec.seed)
    origin, problems = origin_codes(spec.origin, n, datacenters, rng, f"{where}.origin")
    if problems:
        raise TraceError(problems)
    if origin is None and "origin" in columns:
        names = _column(df, columns["origin"], "origin", path, where).astype(str).to_numpy()
        index = {d: i for i, d in enumerate(datacenters)}
        unknown = sorted(set(names.tolist()) - set(index))
        if unknown:
            raise TraceError([Problem(where, f"{path.name}: origin is an unknown datacenter",
                                      unknown[0])])
        origin = np.array([index[x] for x in names], np.int64)

    chain_ptr = chain_keys = chain_tokens = group = group_tokens = None
    if "prefix" in columns:
        col = _column(df, columns["prefix"], "prefix", path, where)
        first = next((v for v in col if v is not None and not _is_nan(v)), None)
        if isinstance(first, list):  # a block-hash chain per request
            lists = [v if isinstance(v, list) else [] for v in col]
            counts = np.fromiter((len(v) for v in lists), np.int64, count=n)
            chain_ptr = np.concatenate([[0], np.cumsum(counts)])
            try:
                chain_keys = np.fromiter((int(h) for v in lists for h in v), np.int64,
                                         count=int(chain_ptr[-1]))
            except (TypeError, ValueError, OverflowError):
                raise TraceError([Problem(where, f"{path.name}: prefix hashes must be integers",
                                          columns["prefix"])]) from None
            chain_tokens = block_chain_tokens(chain_ptr, prompt, spec.block_tokens)
        elif first is not None:  # a group id per request: the shared prefix is one block
            group = pd.factorize(col.astype(object).where(col.notna(), None))[0].astype(np.int64)
            group_tokens = _group_tokens(group, prompt)
    return assemble(
        ids=ids, arrival_s=arrival, prompt_tokens=prompt, output_tokens=output, origin=origin,
        priority=priority, chain_ptr=chain_ptr, chain_keys=chain_keys, chain_tokens=chain_tokens,
        group=group, group_tokens=group_tokens, time_scale=time_scale,
        source=f"{fmt}:{path.name}",
    )


def _is_nan(v: object) -> bool:
    return isinstance(v, float) and np.isnan(v)


def _group_tokens(group: np.ndarray, prompt: np.ndarray) -> np.ndarray:
    """Without a stated length, a group's shared prefix is its shortest prompt."""
    out = np.zeros(len(group), np.int64)
    has = group >= 0
    if has.any():
        mins = np.full(group.max() + 1, np.iinfo(np.int64).max)
        np.minimum.at(mins, group[has], prompt[has])
        out[has] = mins[group[has]]
    return out
