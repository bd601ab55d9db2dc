"""The backtest and the live grid share one level formula and one grid-count range."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tgtrader.backtest import vector
from tgtrader.chat import parse
from tgtrader.core.grid import MAX_GRIDS, MIN_GRIDS, GridConfig, compute_levels


@pytest.mark.parametrize("lower,upper,n,spacing", [
    (19500.0, 22500.0, 20, "arithmetic"),
    (19000.0, 23000.0, 57, "geometric"),
    (0.0014, 0.0016, 200, "geometric"),
    (0.1, 0.7, 3, "arithmetic"),
])
def test_backtest_levels_are_the_core_levels(lower: float, upper: float, n: int, spacing: str) -> None:
    core = compute_levels(GridConfig("XUSDT", D(repr(lower)), D(repr(upper)), n, D(1000), spacing))
    assert vector.grid_levels(lower, upper, n, spacing).tolist() == [float(x) for x in core]  # type: ignore[arg-type]


def test_one_grid_count_range() -> None:
    assert (vector.MIN_GRIDS, vector.MAX_GRIDS) == (parse.MIN_GRIDS, parse.MAX_GRIDS) == (MIN_GRIDS, MAX_GRIDS)
