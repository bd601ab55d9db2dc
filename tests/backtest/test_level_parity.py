"""The backtest and the live grid share one level formula and one grid-count range."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tgtrader.backtest import vector
from tgtrader.chat import parse
from tgtrader.core.api import GridSpec
from tgtrader.core.grid import MAX_GRIDS, MIN_GRIDS, GridConfig, compute_levels


@pytest.mark.parametrize("lower,upper,n,spacing", [
    (19500.0, 22500.0, 20, "arithmetic"),
    (19000.0, 23000.0, 57, "geometric"),
    (0.0014, 0.0016, 200, "geometric"),
    (0.1, 0.7, 3, "arithmetic"),
])
def test_backtest_levels_are_the_core_levels(lower: float, upper: float, n: int, spacing: str) -> None:
    core = compute_levels(GridConfig("XUSDT", D(repr(lower)), D(repr(upper)), n, D(1000), spacing))
    assert vector.grid_levels(lower, upper, n, spacing).tolist() == [float(x) for x in core]


def test_one_grid_count_range() -> None:
    """The chat parser takes the core's range; the backtest checks a spec with the core's own setting checks."""
    assert (parse.MIN_GRIDS, parse.MAX_GRIDS) == (MIN_GRIDS, MAX_GRIDS)
    for n in (MIN_GRIDS, MAX_GRIDS):
        vector.validate(GridSpec("XUSDT", D(10), D(12), n, D(1000)), fee=0.001)
    for n in (MIN_GRIDS - 1, MAX_GRIDS + 1):
        with pytest.raises(vector.BacktestInputError, match=f"out of range {MIN_GRIDS}..{MAX_GRIDS}"):
            vector.validate(GridSpec("XUSDT", D(10), D(12), n, D(1000)), fee=0.001)
