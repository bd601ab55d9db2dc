"""A trailing grid's words (issue 17): the preview's promise, `/grid show`'s and `/status`'s moves and range now.

Kept apart from `render.py` (the rest of the grid's text) so a grid that never trails reads as before: every
function here returns nothing for it. The alerts a move or a stall sends are worded in `alerts.py`.
"""

from __future__ import annotations

from decimal import Decimal

from tgtrader.core.api import GridSpec, GridSummary
from tgtrader.core.rules import fmt_decimal


def _n(value: Decimal) -> str:
    return fmt_decimal(value)


def limits_text(trail_up: Decimal | None, trail_down: Decimal | None) -> str:
    """'up to 60000, down to 38000' (either part alone); '' for a grid that does not trail."""
    parts = ([f"up to {_n(trail_up)}"] if trail_up is not None else []) + (
        [f"down to {_n(trail_down)}"] if trail_down is not None else [])
    return ", ".join(parts)


def preview_lines(spec: GridSpec) -> list[str]:
    """The limits, and in one line what they do (the rule itself: `core/grid/trailing.py`)."""
    limits = limits_text(spec.trail_up, spec.trail_down)
    if not limits:
        return []
    if spec.trail_up is not None and spec.trail_down is not None:
        meaning = ("when the price leaves the range by a level, the grid follows it one level at a time (up: its lowest"
                   " buy moves to the top; down: its top sell moves to the bottom)")
    elif spec.trail_up is not None:
        meaning = "when the price rises a level above the top, the lowest buy moves to the top, one level at a time"
    else:
        meaning = "when the price falls a level below the bottom, the top sell moves to the bottom, one level at a time"
    both = spec.trail_up is not None and spec.trail_down is not None
    return [f"Trailing: {limits}", f"Means: {meaning}, never past the limit{'s' if both else ''}; no market orders."]


def range_now(grid: GridSummary) -> tuple[Decimal, Decimal]:
    """The range the grid trades now (its set range before it starts or when it never moved)."""
    if grid.range_lower is None or grid.range_upper is None:
        return grid.lower, grid.upper
    return grid.range_lower, grid.range_upper


def moved(grid: GridSummary) -> bool:
    return range_now(grid) != (grid.lower, grid.upper)


def moves_text(grid: GridSummary) -> str:
    """'moved up 3, down 1'; '' when it never moved."""
    parts = ([f"up {grid.moves_up}"] if grid.moves_up else []) + ([f"down {grid.moves_down}"] if grid.moves_down else [])
    return "moved " + ", ".join(parts) if parts else ""


def show_lines(grid: GridSummary) -> list[str]:
    """`/grid show`: the limits and the moves so far (the range line itself says the range now)."""
    limits = limits_text(grid.trail_up, grid.trail_down)
    if not limits:
        return []
    moves = moves_text(grid)
    return [f"Trailing: {limits}; " + (moves if moves else "not moved yet")]


def range_line(grid: GridSummary) -> str:
    """'Range 40000 - 48000' or, once it moved, 'Range now 44000 - 52000 (set 40000 - 48000)'."""
    low, high = range_now(grid)
    if not moved(grid):
        return f"Range {_n(low)} - {_n(high)}"
    return f"Range now {_n(low)} - {_n(high)} (set {_n(grid.lower)} - {_n(grid.upper)})"


def list_range(grid: GridSummary) -> str:
    """A one-line listing's range (`/status`, `/grid list`): the range it trades now."""
    low, high = range_now(grid)
    return f"{_n(low)}-{_n(high)}"


def list_note(grid: GridSummary) -> str:
    """After a listing's range: ' (trailing up to 56000; moved up 3)'; '' for a grid that does not trail."""
    limits = limits_text(grid.trail_up, grid.trail_down)
    moves = moves_text(grid)
    if not limits and not moves:
        return ""
    return " (" + "; ".join(part for part in (f"trailing {limits}" if limits else "", moves) if part) + ")"
