"""The sweep's results table: one CSV, one row per finished point, keyed by the point's hash.

Rows are appended by the one process that drives the sweep, each written whole, flushed and
fsynced as its point finishes, so a killed sweep keeps every finished point. On open, a last
line cut short by a kill is dropped (the file is rewritten atomically without it), and rows
already present are not computed again.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from planner.report.io import write_text_atomic
from planner.scenario.errors import InputError, Problem

log = logging.getLogger(__name__)

# the table before the replay's columns: still read (its rows have none), and rewritten with
# the current header when a row is added
FIELDS_V1 = (
    "key", "scenario", "overrides", "method", "options", "time_limit", "status", "termination",
    "objective_name", "objective", "bound", "gap", "makespan_s", "bottleneck", "cost_usd",
    "served", "refused", "peak_link_utilization", "peak_kv_memory_utilization",
    "prefix_tokens_reused", "wall_s", "point_wall_s", "worker",
)
REPLAY_FIELDS = ("replay_makespan_s", "replay_completed", "ttft_p50_s", "ttft_p99_s",
                 "tpot_p99_s", "e2e_p99_s", "preemptions", "goodput_fraction", "replay_error")
FIELDS = FIELDS_V1 + REPLAY_FIELDS
FLOATS = {"objective", "bound", "gap", "makespan_s", "cost_usd", "peak_link_utilization",
          "peak_kv_memory_utilization", "wall_s", "point_wall_s", "time_limit",
          "replay_makespan_s", "ttft_p50_s", "ttft_p99_s", "tpot_p99_s", "e2e_p99_s",
          "goodput_fraction"}
INTS = {"served", "refused", "prefix_tokens_reused", "replay_completed", "preemptions"}


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return str(v)


def parse_row(raw: dict[str, str]) -> dict[str, Any]:
    """Typed values from a CSV row (empty cell = None; overrides and options as JSON)."""
    out: dict[str, Any] = {}
    for k in FIELDS:
        v = raw.get(k, "")
        if v == "" or v is None:
            out[k] = None
        elif k in FLOATS:
            out[k] = float(v)
        elif k in INTS:
            out[k] = int(float(v))
        elif k in ("overrides", "options"):
            out[k] = json.loads(v)
        else:
            out[k] = v
    return out


class ResultStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        self._old_header = False  # a table written before the replay's columns
        self._old_lines: list[list[str]] = []
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(str(self.path), [Problem(
                "header", "not a sweep results table (not UTF-8 text); give another --out or "
                "move the file", "binary")]) from None
        if not text:
            return
        header = next(csv.reader(io.StringIO(text.partition("\n")[0])), [])
        if tuple(header) not in (FIELDS, FIELDS_V1):  # checked first: a file that is not ours
            raise InputError(str(self.path), [Problem(  # is never rewritten
                "header", "not a sweep results table of this version; give another --out or move "
                "the file", ",".join(header)[:80])])
        self._old_header = tuple(header) == FIELDS_V1
        if not text.endswith("\n"):  # a row cut short by a kill: drop it
            cut = text.rfind("\n") + 1
            log.warning("%s: dropping an incomplete last row", self.path)
            text = text[:cut]
            write_text_atomic(self.path, text)
        if self._old_header:  # kept as written, for the upgrade (malformed rows included)
            self._old_lines = list(csv.reader(io.StringIO(text)))[1:]
        reader = csv.DictReader(io.StringIO(text))
        for n, raw in enumerate(reader, start=2):
            if None in raw or any(v is None for v in raw.values()):
                log.warning("%s:%d: malformed row skipped", self.path, n)
                continue
            try:
                row = parse_row(raw)
            except (ValueError, json.JSONDecodeError):
                log.warning("%s:%d: malformed row skipped", self.path, n)
                continue
            self.rows[row["key"]] = row

    def _upgrade(self) -> None:
        """Rewrite a table of the header before the replay's columns with the current one,
        atomically, before a row is appended: every row as it was written (those skipped as
        malformed too), with empty replay cells."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(FIELDS)
        pad = [""] * len(REPLAY_FIELDS)
        for raw in self._old_lines:
            w.writerow(raw + pad if len(raw) == len(FIELDS_V1) else raw)
        write_text_atomic(self.path, buf.getvalue())
        self._old_header = False
        self._old_lines = []

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def append(self, row: dict[str, Any]) -> None:
        """Write one row durably (whole line, flush, fsync)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if self._old_header and self.path.exists():
            self._upgrade()
        new = not self.path.exists() or self.path.stat().st_size == 0
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            w.writerow(FIELDS)
        w.writerow([_cell(row.get(k)) for k in FIELDS])
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        self.rows[row["key"]] = parse_row({k: _cell(row.get(k)) for k in FIELDS})

    def table(self) -> list[dict[str, Any]]:
        return list(self.rows.values())
