"""planner/report/io.py: several files replaced as one change; a folder swapped inside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from planner.report import io


def _files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir()) if p.is_file()}


def _fail_rename_to(monkeypatch, name: str) -> None:
    real = os.replace

    def replace(src, dst):
        if Path(dst).name == name:
            raise OSError(16, "Device or resource busy")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_a_failed_rename_puts_the_old_files_back(tmp_path, monkeypatch):
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    a.write_text("OLD A")
    b.write_text("OLD B")  # c is new
    _fail_rename_to(monkeypatch, "b.txt")
    with pytest.raises(OSError), io.stage_texts({c: "NEW C", a: "NEW A", b: "NEW B"}) as commit:
        commit()
    assert _files(tmp_path) == {"a.txt": "OLD A", "b.txt": "OLD B"}  # c removed, no temp files
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]


def test_without_hard_links_a_failed_rename_never_deletes_an_old_file(tmp_path, monkeypatch):
    """Where a hard link cannot be made (a file system without them, Linux's protected hard
    links), an old file is not kept aside: the rollback used to delete it (found by review)."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("OLD A")
    b.write_text("OLD B")

    def no_link(*args, **kw):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    _fail_rename_to(monkeypatch, "b.txt")
    with pytest.raises(OSError), io.stage_texts({a: "NEW A", b: "NEW B"}) as commit:
        commit()
    # a could not be kept aside, so it stays replaced (a mix); b was never touched
    assert _files(tmp_path) == {"a.txt": "NEW A", "b.txt": "OLD B"}


def test_a_failed_block_puts_the_old_folder_back(tmp_path):
    target, new = tmp_path / "plans", tmp_path / "new"
    target.mkdir()
    (target / "old.json").write_text("old")
    new.mkdir()
    (new / "new.json").write_text("new")
    with pytest.raises(RuntimeError), io.swapped_folder(new, target):
        assert _files(target) == {"new.json": "new"}
        raise RuntimeError("the files' renames failed")
    assert _files(target) == {"old.json": "old"}
    assert sorted(os.listdir(tmp_path)) == ["plans"]  # the new folder and the aside are gone


def test_a_failure_putting_the_old_folder_back_keeps_it(tmp_path, monkeypatch):
    """If putting the old folder back fails too, it stays in the hidden folder beside the
    target instead of being deleted with it (found by review)."""
    target, new = tmp_path / "plans", tmp_path / "new"
    target.mkdir()
    (target / "old.json").write_text("old")
    new.mkdir()
    real = os.replace
    calls = []

    def replace(src, dst):  # let the swap in through, fail the way back
        calls.append(Path(dst).name)
        if Path(dst).name == "plans" and len(calls) > 2:
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError), io.swapped_folder(new, target):
        raise RuntimeError("the files' renames failed")
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".plans.old.")]
    assert len(kept) == 1 and (kept[0] / "plans" / "old.json").read_text() == "old"


def _interrupt_after_rename_to(monkeypatch, name: str) -> None:
    """os.replace that renames, then raises KeyboardInterrupt (a Ctrl-C landing right after)."""
    real = os.replace

    def replace(src, dst):
        real(src, dst)
        if Path(dst).name == name:
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replace)


def test_an_interrupt_right_after_a_rename_puts_the_old_file_back(tmp_path, monkeypatch):
    """Found by review: the renamed file was recorded after its rename, so a Ctrl-C between the
    two left it new and deleted its kept old copy."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("OLD A")
    b.write_text("OLD B")
    _interrupt_after_rename_to(monkeypatch, "a.txt")
    with pytest.raises(KeyboardInterrupt), io.stage_texts({a: "NEW A", b: "NEW B"}) as commit:
        commit()
    assert _files(tmp_path) == {"a.txt": "OLD A", "b.txt": "OLD B"}


def test_an_interrupt_right_after_moving_the_old_folder_aside_keeps_it(tmp_path, monkeypatch):
    target, new = tmp_path / "plans", tmp_path / "new"
    target.mkdir()
    (target / "old.json").write_text("old")
    new.mkdir()
    _interrupt_after_rename_to(monkeypatch, "plans")  # the first rename: the old one aside
    with pytest.raises(KeyboardInterrupt), io.swapped_folder(new, target):
        pass
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".plans.old.")]
    assert len(kept) == 1 and (kept[0] / "plans" / "old.json").read_text() == "old"
