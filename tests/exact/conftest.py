"""Exact-method tests run once per backend; ``pytest --solver cpsat`` restricts them."""

from __future__ import annotations

import pytest

EXACT = ["milp", "milp_ortools", "milp_ortools:HIGHS", "cpsat"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "method" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--solver")
        names = [m for m in EXACT if chosen is None or m in chosen or m.split(":")[0] in chosen]
        metafunc.parametrize("method", names)
