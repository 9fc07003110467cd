"""Shared fixtures. ``--solver NAME`` restricts the exact-method tests to one backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from factory import DATA, ROOT, SCENARIOS, TESTS, make_scenario  # noqa: F401  (re-exported)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--solver", action="append", default=None,
                     help="run exact-method tests only for this method (repeatable), e.g. cpsat")


@pytest.fixture
def contract_scenario() -> Path:
    return DATA / "two-dc.json"


@pytest.fixture
def contract_plan() -> Path:
    return DATA / "two-dc.plan.json"
