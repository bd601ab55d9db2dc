"""The grid's lifecycle and interval states: str-valued enums moved only through their transition tables."""

from __future__ import annotations

import json
from decimal import Decimal as D

from loguru import logger

from tgtrader.core.events import GridStateChanged
from tgtrader.core.grid import Grid, GridConfig, GridState, IntervalState
from tgtrader.core.grid.state import GRID_TRANSITIONS, INTERVAL_TRANSITIONS
from tgtrader.core.rules import SymbolRules

RULES = SymbolRules("TESTUSDT", "TEST", "USDT", tick_size=D("0.01"), step_size=D("0.001"), min_qty=D("0.001"),
                    min_notional=D("10"))


def started() -> Grid:
    g = Grid(1, GridConfig("TESTUSDT", D("100"), D("140"), 4, D("1000")), RULES)
    g.start(D("115"), 0)
    return g


def test_states_are_their_stored_strings_and_every_state_has_a_row() -> None:
    assert [s.value for s in GridState] == ["preview", "running", "paused", "stopped"]
    assert [s.value for s in IntervalState] == ["waiting", "holding"]
    assert set(GRID_TRANSITIONS.table) == set(GridState)
    assert set(INTERVAL_TRANSITIONS.table) == set(IntervalState)
    assert GRID_TRANSITIONS.final(GridState.STOPPED) and not GRID_TRANSITIONS.final(GridState.PAUSED)
    g = started()
    assert g.state == "running" and f"{g.state}" == "running" and g.state in ("running", "paused")
    assert [iv.state for iv in g.intervals] == ["waiting", "waiting", "holding", "holding"]


def test_an_illegal_grid_move_is_refused_and_logged() -> None:
    g = started()
    g.stop(False, 1)
    g.drain_events()
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR")
    try:
        assert g._set_state(GridState.RUNNING, "user", 2) is False  # a stopped grid never runs again
    finally:
        logger.remove(sink)
    assert g.state is GridState.STOPPED
    assert g.drain_events() == []
    assert sum("illegal grid transition stopped -> running" in line for line in lines) == 1


def test_legal_moves_emit_plain_string_events() -> None:
    g = started()
    g.pause(1)
    events = [e for e in g.drain_events() if isinstance(e, GridStateChanged)]
    assert [(e.old, e.new) for e in events] == [("preview", "running"), ("running", "paused")]
    assert all(type(e.old) is str and type(e.new) is str for e in events)


def test_saved_states_round_trip_as_their_strings() -> None:
    g = started()
    g.pause(1)
    saved = json.loads(json.dumps(g.to_state()))
    assert saved["state"] == "paused"
    assert {row[3] for row in saved["intervals"]} == {"waiting", "holding"}
    back = Grid.from_state(saved, RULES)
    assert back.state is GridState.PAUSED
    assert all(isinstance(iv.state, IntervalState) for iv in back.intervals)
    assert back.to_state() == g.to_state()
