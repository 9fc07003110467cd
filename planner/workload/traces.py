"""Trace readers: the Azure LLM inference trace 2023 (CSV), the Mooncake trace (JSON lines, its
``hash_ids`` kept as the prefix block chain), and plain CSV / JSON lines with a column mapping.

Every reader returns columns; problems (unreadable file, missing column, negative tokens) come
back as :class:`Problem` lines naming the trace file, the row (CSV: the data row, from 1; JSON
lines: the line of the file) and the field. A CSV is read as text, so a value is judged as the
file spells it; in JSON lines ``true`` is not a number, ``0.5`` is not a hash and a mapping is
not a prefix.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from planner.scenario.errors import Problem
from planner.scenario.model import Workload
from planner.scenario.schema import MAX_PRIORITY, MAX_TOKENS, FileSpec
from planner.workload.base import assemble, block_chain_tokens, is_hash_chain, origin_codes

# MAX_TOKENS: a request longer than this is an error in the trace, not a request (as in a scenario)
FIELDS = ("id", "arrival_s", "prompt_tokens", "output_tokens", "prefix", "origin", "priority")
AZURE_COLUMNS = {"arrival_s": "TIMESTAMP", "prompt_tokens": "ContextTokens",
                 "output_tokens": "GeneratedTokens"}
MOONCAKE_COLUMNS = {"arrival_s": "timestamp", "prompt_tokens": "input_length",
                    "output_tokens": "output_length", "prefix": "hash_ids"}


class TraceError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


def _check_first_row(path: Path, where: str) -> None:
    """pandas takes a first data row longer than the header as one with an index column and,
    with ``index_col=False``, drops its extra fields with a warning: make it an error. (Later
    rows with extra fields are pandas' own "Expected N fields" error.) A column named twice is
    an error too: pandas renames the second ``NAME.1`` and reads the first (found by review)."""
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        twice = sorted({c for c in header or [] if header.count(c) > 1})
        if twice:
            raise TraceError([Problem(where, f"{path.name} header: column {twice[0]!r} named "
                                      "twice", ",".join(header)[:60])])
        first = next(reader, None)
        if header is not None and first is not None and len(first) > len(header):
            raise TraceError([Problem(where, f"{path.name} line {reader.line_num}: "
                                      f"{len(first)} fields, the header has {len(header)}",
                                      ",".join(first)[:60])])


def _read_frame(path: Path, fmt: str, where: str) -> pd.DataFrame:
    """The trace as a frame whose index labels the rows as messages name them: the data row
    (from 1) of a CSV, the line of a JSON-lines file."""
    try:
        if fmt in ("azure", "csv"):
            _check_first_row(path, where)
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                df = pd.read_csv(path, index_col=False, dtype=str)
            df.index = pd.RangeIndex(1, len(df) + 1)
            return df
        from planner.scenario.load import one_key_each  # (load imports this module)

        rows, lines = [], []
        with open(path, encoding="utf-8") as fh:
            for k, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line, object_pairs_hook=one_key_each)
                except (ValueError, RecursionError) as exc:
                    raise TraceError([Problem(where, f"{path.name} line {k}: not JSON ({exc})",
                                              line.strip()[:60])]) from None
                if not isinstance(row, dict):
                    raise TraceError([Problem(where, f"{path.name} line {k}: not a JSON object",
                                              line.strip()[:60])])
                rows.append(row)
                lines.append(k)
        return pd.DataFrame(rows, index=pd.Index(lines, dtype=np.int64))
    except TraceError:
        raise
    except FileNotFoundError:
        raise TraceError([Problem(where, "trace file not found", str(path))]) from None
    except (OSError, UnicodeDecodeError, ValueError, csv.Error, pd.errors.ParserError,
            pd.errors.ParserWarning) as exc:
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


def _row_at(s: pd.Series, i: int, path: Path, fmt: str) -> str:
    """``t.csv row 3`` / ``t.jsonl line 7``: the place in the file of the i-th value of s."""
    return f"{path.name} {'line' if fmt in ('mooncake', 'jsonl') else 'row'} {s.index[i]}"


def _numbers(s: pd.Series, field: str, path: Path, fmt: str, where: str,
             what: str = "is not a number") -> np.ndarray:
    """A numeric column as float64; a missing value, a word, a list or a boolean (JSON ``true``,
    which pandas would take as 1) is an error naming its row."""
    values = pd.to_numeric(s, errors="coerce")
    bad = values.isna().to_numpy().copy()
    if s.dtype == bool or s.dtype == object:
        bad |= s.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
    rows = np.flatnonzero(bad)
    if rows.size:
        i = int(rows[0])
        raise TraceError([Problem(where, f"{_row_at(s, i, path, fmt)}: {field} {what}",
                                  s.iloc[i])])
    return values.to_numpy(dtype=np.float64)


def _integers(s: pd.Series, field: str, path: Path, fmt: str, where: str,
              low: int = 0, high: int = MAX_TOKENS) -> np.ndarray:
    arr = _numbers(s, field, path, fmt, where)
    below = "is negative" if low == 0 else f"is below {low:,}"
    for bad, what in ((~np.isfinite(arr) | (arr > high), f"is above {high:,}"),
                      (arr < low, below), (arr != np.floor(arr), "is not a whole number")):
        rows = np.flatnonzero(bad)
        if rows.size:
            i = int(rows[0])
            raise TraceError([Problem(
                where, f"{_row_at(s, i, path, fmt)}: {field} {what} ({rows.size} rows)",
                s.iloc[i])])
    return arr.astype(np.int64)


def _missing(v: object) -> bool:
    return v is None or _is_nan(v)


def _labels(s: pd.Series, field: str, path: Path, fmt: str, where: str) -> np.ndarray:
    """A column of names (ids, origins) as strings: each must be present and a string or an
    integer (JSON lines), not an empty cell read as "nan", a boolean or a mapping."""
    if _text_column(s, fmt):  # a CSV column, read as text: one vectorized check
        arr = s.to_numpy(dtype=object)
        empty = np.flatnonzero(s.isna().to_numpy() | (arr == ""))
        if empty.size:
            i = int(empty[0])
            raise TraceError([Problem(where, f"{_row_at(s, i, path, fmt)}: {field} is empty",
                                      "" if _missing(arr[i]) else arr[i])])
        return arr.astype(str)
    out = []
    for i, v in enumerate(s.tolist()):
        if _missing(v) or v == "":
            raise TraceError([Problem(where, f"{_row_at(s, i, path, fmt)}: {field} is empty",
                                      "" if _missing(v) else v)])
        v = _whole(v)
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise TraceError([Problem(where, f"{_row_at(s, i, path, fmt)}: {field} must be a "
                                      "string or an integer", v)])
        out.append(str(v))
    return np.array(out, dtype=str) if out else np.zeros(0, dtype=str)


def _text_column(s: pd.Series, fmt: str) -> bool:
    """A CSV column: every value a string or missing (the reader takes CSV cells as text)."""
    return fmt in ("azure", "csv") and (s.dtype == object or pd.api.types.is_string_dtype(s))


def _whole(v: object) -> object:
    """A whole float as an int: pandas turns a JSON column of integers with a gap into floats."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


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
                raise TraceError([Problem(where, f"{_row_at(raw, i, path, fmt)}: bad TIMESTAMP",
                                          raw.iloc[i])])
            arrival = (ts - ts.min()).dt.total_seconds().to_numpy()
        else:
            # overflows are named below, not warned about on stderr (found by review)
            with np.errstate(over="ignore", invalid="ignore"):
                arrival = _numbers(raw, "arrival", path, fmt, where) * unit
                inf = np.flatnonzero(~np.isfinite(arrival))
                if inf.size:
                    i = int(inf[0])
                    raise TraceError([Problem(where, f"{_row_at(raw, i, path, fmt)}: arrival "
                                              + ("times time_unit_s " if unit != 1.0 else "")
                                              + "is not finite", raw.iloc[i])])
                arrival = arrival - arrival.min()
            if not np.isfinite(arrival).all():  # -1e308 and 1e308: the span overflows
                i = int(np.argmax(arrival))
                raise TraceError([Problem(where, f"{_row_at(raw, i, path, fmt)}: arrival is "
                                          "too far from the first request's (the span is not a "
                                          "finite number of seconds)", raw.iloc[i])])
    else:
        arrival = np.zeros(len(df))
    prompt = _integers(_column(df, columns["prompt_tokens"], "prompt_tokens", path, where),
                       "prompt_tokens", path, fmt, where)
    output = _integers(_column(df, columns["output_tokens"], "output_tokens", path, where),
                       "output_tokens", path, fmt, where)

    order = np.argsort(arrival, kind="stable")
    if spec.limit is not None:
        order = order[: spec.limit]
    df = df.iloc[order]  # the index keeps each row's place in the file for the messages below
    arrival, prompt, output = arrival[order], prompt[order], output[order]
    n = len(order)

    ids = None
    if "id" in columns:
        ids = _labels(_column(df, columns["id"], "id", path, where), "id", path, fmt, where)
        if len(set(ids.tolist())) != n:
            raise TraceError([Problem(f"{where}.columns.id", "request ids are not unique",
                                      columns["id"])])
    priority = None
    if "priority" in columns:  # the same range as a scenario's priority
        priority = _integers(_column(df, columns["priority"], "priority", path, where),
                             "priority", path, fmt, where, low=-MAX_PRIORITY, high=MAX_PRIORITY)

    rng = np.random.default_rng(spec.seed)
    origin, problems = origin_codes(spec.origin, n, datacenters, rng, f"{where}.origin")
    if problems:
        raise TraceError(problems)
    if origin is None and "origin" in columns:
        col = _column(df, columns["origin"], "origin", path, where)
        names = _labels(col, "origin", path, fmt, where)
        index = {d: i for i, d in enumerate(datacenters)}
        unknown = np.flatnonzero([x not in index for x in names])
        if unknown.size:
            i = int(unknown[0])
            raise TraceError([Problem(where, f"{_row_at(col, i, path, fmt)}: origin is an "
                                      "unknown datacenter", names[i])])
        origin = np.array([index[x] for x in names], np.int64)

    chain_ptr = chain_keys = chain_tokens = group = group_tokens = None
    if "prefix" in columns:
        col = _column(df, columns["prefix"], "prefix", path, where)
        chains, labels = _prefixes(col, columns["prefix"], path, fmt, where)
        if chains is not None:  # a block-hash chain per request
            counts = np.fromiter((len(v) for v in chains), np.int64, count=n)
            chain_ptr = np.concatenate([[0], np.cumsum(counts)])
            chain_keys = np.fromiter((h for v in chains for h in v), np.int64,
                                     count=int(chain_ptr[-1]))
            chain_tokens = block_chain_tokens(chain_ptr, prompt, spec.block_tokens)
        elif labels is not None:  # a group id per request: the shared prefix is one block
            group = pd.factorize(pd.Series(labels, dtype=object))[0].astype(np.int64)
            group_tokens = _group_tokens(group, prompt)
    return assemble(
        ids=ids, arrival_s=arrival, prompt_tokens=prompt, output_tokens=output, origin=origin,
        priority=priority, chain_ptr=chain_ptr, chain_keys=chain_keys, chain_tokens=chain_tokens,
        group=group, group_tokens=group_tokens, time_scale=time_scale,
        source=f"{fmt}:{path.name}", files=(str(path),),
    )


def _is_nan(v: object) -> bool:
    return isinstance(v, float) and np.isnan(v)


def _prefixes(
    col: pd.Series, name: str, path: Path, fmt: str, where: str
) -> tuple[list[list[int]] | None, list[str | int | None] | None]:
    """A prefix column as block-hash chains (lists of 64-bit integers; a missing value is an
    empty chain) or as group ids (strings or integers; missing: no prefix), never a mix.
    Mooncake's ``hash_ids`` are always chains. Anything else is an error naming its row."""
    if _text_column(col, fmt):  # CSV text: group ids only (a cell is never a list)
        given = ~col.isna().to_numpy()
        if not given.any():
            return None, None
        return None, np.where(given, col.to_numpy(dtype=object), None).tolist()
    values = col.tolist()

    def fail(i: int, what: str) -> TraceError:
        return TraceError([Problem(where, f"{_row_at(col, i, path, fmt)}: {name} {what}",
                                   values[i])])

    kinds = []
    for i, v in enumerate(values):
        if _missing(v):
            kinds.append(None)
        elif isinstance(v, list):
            if not is_hash_chain(v):
                raise fail(i, "must hold 64-bit integer block hashes")
            kinds.append("chain")
        elif fmt == "mooncake":
            raise fail(i, "must be a list of integer block hashes")
        elif isinstance(_whole(v), str | int) and not isinstance(v, bool):
            values[i] = _whole(v)
            kinds.append("group")
        else:
            raise fail(i, "must be a group id (string or integer) or a list of block hashes")
    given = [k for k in kinds if k is not None]
    if not given:
        return None, None
    if any(k != given[0] for k in given):
        i = next(i for i, k in enumerate(kinds) if k is not None and k != given[0])
        raise fail(i, f"mixes block chains and group ids (the first given is a "
                      f"{'chain' if given[0] == 'chain' else 'group id'})")
    if given[0] == "chain":
        return [v if k is not None else [] for v, k in zip(values, kinds, strict=True)], None
    return None, [v if k is not None else None for v, k in zip(values, kinds, strict=True)]


def _group_tokens(group: np.ndarray, prompt: np.ndarray) -> np.ndarray:
    """Without a stated length, a group's shared prefix is its shortest prompt."""
    out = np.zeros(len(group), np.int64)
    has = group >= 0
    if has.any():
        mins = np.full(group.max() + 1, np.iinfo(np.int64).max)
        np.minimum.at(mins, group[has], prompt[has])
        out[has] = mins[group[has]]
    return out
