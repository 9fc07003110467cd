"""Atomic file writes and JSON-safe conversion shared by reports and sweeps.

A reader of any file written here sees the old file or the whole new one, never a part: the
content goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def not_empty(value: str | Path | None, option: str) -> None:
    """An output name given as "" is an error, not the default name taken silently (found by
    review: `solve -o ""`)."""
    from planner.scenario.errors import InputError, Problem

    if value == "":
        raise InputError(option, [Problem(option, "an empty file name", "")])


def check_output(path: str | Path, option: str, folder: bool = False,
                 inputs: Mapping[str, str] | None = None) -> Path:
    """Fail early, with one line naming ``option``, when ``path`` cannot be written: a folder
    where a file goes (or a file where a folder goes), a parent that is a file or cannot be
    made, or one of ``inputs`` (real path -> what it is, e.g. ``Scenario.input_files()``) that
    it would overwrite (for a folder: one inside it). Creates the missing parent folders."""
    from planner.scenario.errors import UNSHOWN, InputError, Problem

    path = Path(path)
    why = None
    real = os.path.realpath(path)
    hit = [label for r, label in (inputs or {}).items()
           if r == real or (folder and r.startswith(real + os.sep))]
    if hit:
        why = f"is {hit[0]}: it would be overwritten" if not folder else \
            f"holds {hit[0]}: it would be replaced"
    elif not folder and path.is_dir():
        why = "is a folder, not a file"
    elif folder and path.exists() and not path.is_dir():
        why = "is a file, not a folder"
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not os.access(path.parent, os.W_OK):
                why = f"its folder {path.parent} is not writable"
        except OSError as exc:
            why = f"cannot make its folder: {exc.strerror or exc}"
        if why is None and not (path.exists() and not path.is_file()):  # devices: in place
            # a real try: os.access says yes for root in /proc, where nothing can be made (the
            # run then failed after its solve, naming the temporary file)
            try:
                fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                             dir=path.parent)  # the staged file's very name form
                os.close(fd)
                os.unlink(probe)
            except OSError as exc:
                why = f"cannot write in its folder {path.parent}: {exc.strerror or exc}"
    if why:
        raise InputError(option, [Problem(str(path), why, UNSHOWN)])
    return path


def _stage(path: Path, text: str) -> Path | None:
    """Write ``text`` to a temporary file beside the real ``path``, flushed to disk and with the
    mode the file will have; None for a path that is not a regular file (written in place)."""
    if path.exists() and not path.is_file():
        return None
    mode = (path.stat().st_mode & 0o7777) if path.exists() else (0o666 & ~_UMASK)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


@contextlib.contextmanager
def stage_texts(files: dict[str | Path, str]) -> Iterator[Callable[[], None]]:
    """Write several files so that a failure (a full disk, an interrupt, an OS error on a rename)
    changes none of them: on entry every content is written in full beside its target; the
    yielded ``commit()`` renames them all into place (a rename needs no space), each old file
    first hard-linked aside, and puts the old files back if any rename fails (where a hard link
    cannot be made, that old file is not kept: a failed rename later can leave it replaced, a
    mix, but never deletes it). Temporary files left uncommitted are removed on exit. Each file
    is treated as by :func:`write_text_atomic`."""
    staged: list[tuple[Path, Path | None, str]] = []

    def commit() -> None:
        # (target, its old file kept aside or None, whether a file was there before)
        done: list[tuple[Path, Path | None, bool]] = []
        kept: list[Path] = []  # old files kept aside, deleted once not needed
        try:
            for path, tmp, text in staged:
                if tmp is None:  # /dev/null, a FIFO: written in place
                    try:
                        with open(path, "w", encoding="utf-8", newline="") as fh:
                            fh.write(text)
                    except OSError as exc:  # a full device: say which (found by review)
                        if exc.filename is None:
                            exc.filename = str(path)
                        raise
                    continue
                existed = path.exists()
                old = _keep_aside(path, kept)
                done.append((path, old, existed))  # before the rename: an interrupt after it
                os.replace(tmp, path)               # must still find the old file to put back
        except BaseException:
            for path, old, existed in reversed(done):
                try:
                    if old is not None and path.exists() and os.path.samefile(old, path):
                        pass  # its rename never happened: the old file is in place
                    elif old is not None:
                        os.replace(old, path)
                        kept.remove(old)
                    elif not existed:
                        path.unlink(missing_ok=True)
                    # else: an old file that could not be kept aside stays replaced
                except OSError:
                    if old is not None:
                        kept.remove(old)  # the only copy of the old file now: left in place
            raise
        finally:
            for old in kept:
                old.unlink(missing_ok=True)

    try:
        for given, text in files.items():
            path = Path(os.path.realpath(Path(given)))
            staged.append((path, _stage(path, text), text))
        yield commit
    finally:
        for _, tmp, _ in staged:
            if tmp is not None:
                tmp.unlink(missing_ok=True)


def _keep_aside(path: Path, kept: list[Path]) -> Path | None:
    """A hard link to the file at ``path`` under a temporary name beside it (no space needed),
    or None when there is no file or the file system has no hard links. The name is put in
    ``kept`` before the link is made, so that an interrupt cannot leave an unlisted link."""
    if not path.is_file():
        return None
    aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old.tmp")
    kept.append(aside)
    try:
        os.link(path, aside)  # never over an existing file
    except OSError:
        kept.remove(aside)
        return None
    return aside


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` so that a reader sees the old file or the whole new one, never a part. A
    symlink is written through (its target replaced), an existing file keeps its mode, and a
    path that is not a regular file (``/dev/null``, a FIFO) is written in place, never replaced
    by a regular file."""
    with stage_texts({path: text}) as commit:
        commit()
    return Path(path)


@contextlib.contextmanager
def swapped_folder(new: str | Path, target: str | Path) -> Iterator[None]:
    """Put the folder ``new`` (made in the folder of ``target``) in the place of ``target`` for
    the block, as one step of a larger change: the old folder is moved aside and ``new`` renamed
    into place, so that ``target`` is never a mix of the two. If the block fails, ``new`` is
    moved out and the old folder put back; else the old one is deleted on exit. Should putting
    it back fail too, the old folder is left in its hidden ``.NAME.old.*.tmp`` folder, never
    deleted. A symlinked ``target`` is replaced through the link; ``new`` gets the mode a new
    folder would have."""
    new, given = Path(new), Path(target)
    target = Path(os.path.realpath(given))
    os.chmod(new, 0o777 & ~_UMASK)  # mkdtemp makes 0700
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", suffix=".tmp", dir=target.parent))
    old = aside / target.name
    had = target.exists()
    safe = True  # whether deleting ``aside`` loses nothing
    try:
        if had:
            safe = False  # before the rename: an interrupt after it must not delete ``old``
            os.replace(target, old)
        try:
            os.replace(new, target)
        except BaseException:
            if had:
                os.replace(old, target)
                safe = True
            raise
        try:
            yield
        except BaseException:
            os.replace(target, aside / f"{target.name}.new")  # a rename: the new one out
            if had:
                os.replace(old, target)
            safe = True
            raise
        safe = True
    finally:
        if safe:
            shutil.rmtree(aside, ignore_errors=True)


def jsonable(x: Any) -> Any:
    """Numpy scalars/arrays to Python, non-finite floats to None (JSON has no NaN/inf)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if x is None or isinstance(x, str):
        return x
    if hasattr(x, "to_dict"):
        return jsonable(x.to_dict())
    return str(x)


def dumps(data: Any) -> str:
    return json.dumps(jsonable(data), indent=1, sort_keys=False, allow_nan=False) + "\n"


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, dumps(data))
