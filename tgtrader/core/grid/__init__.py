"""Grid trading: `plan` (config, levels, preview: pure), `machine` (the running grid, events in, intents out),
`state` (its lifecycle/interval states, transition tables, records and stored form)."""

from tgtrader.core.grid.books import GridStats
from tgtrader.core.grid.machine import Grid
from tgtrader.core.grid.plan import (
    MAX_GRIDS,
    MIN_GRIDS,
    SPACINGS,
    GridConfig,
    GridPreview,
    compute_levels,
    holding_count,
    ladder_level,
    ladder_price,
    level_prices,
    overlap_problem,
    preview,
    profit_pct,
    quantity_per_order,
    reach,
    setting_problems,
)
from tgtrader.core.grid.state import GridOrder, GridState, Interval, IntervalState

__all__ = [
    "MAX_GRIDS",
    "MIN_GRIDS",
    "SPACINGS",
    "Grid",
    "GridConfig",
    "GridOrder",
    "GridPreview",
    "GridState",
    "GridStats",
    "Interval",
    "IntervalState",
    "compute_levels",
    "holding_count",
    "ladder_level",
    "ladder_price",
    "level_prices",
    "overlap_problem",
    "reach",
    "preview",
    "profit_pct",
    "quantity_per_order",
    "setting_problems",
]
