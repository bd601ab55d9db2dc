"""Transition tables are the only writers of machine states: an illegal move is refused and logged."""

from __future__ import annotations

from decimal import Decimal as D

from loguru import logger

from tgtrader.core.chase import CHASE_TRANSITIONS, Chase, ChaseState
from tgtrader.core.rules import SymbolRules
from tgtrader.core.stops import STOP_TRANSITIONS, Stop, StopState
from tgtrader.types import Side


def test_every_state_has_a_row_and_final_states_have_no_exit() -> None:
    for table, enum in ((STOP_TRANSITIONS, StopState), (CHASE_TRANSITIONS, ChaseState)):
        assert set(table.table) == set(enum)
    assert STOP_TRANSITIONS.final(StopState.DONE) and not STOP_TRANSITIONS.final(StopState.ARMED)
    assert CHASE_TRANSITIONS.final(ChaseState.DONE)


def test_an_illegal_move_is_refused_and_logged(btc_rules: SymbolRules) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR")
    try:
        stop = Stop(1, "BTCUSDT", "stop-loss", "soft", D("0.1"), D("45000"), btc_rules)
        stop.state = StopState.DONE
        stop._to(StopState.ARMED)  # a late event must not revive a finished stop
        assert stop.state is StopState.DONE
        chase = Chase("BTCUSDT", Side.BUY, D("0.01"), btc_rules, "tg-c1-", "chase:1")
        chase._to(ChaseState.MARKET)  # new -> market skips working: refused
        assert chase.state is ChaseState.NEW
    finally:
        logger.remove(sink)
    assert sum("illegal" in line for line in lines) == 2


def test_saved_states_round_trip_as_their_strings(btc_rules: SymbolRules) -> None:
    stop = Stop(2, "BTCUSDT", "stop-loss", "hard", D("0.1"), D("45000"), btc_rules)
    stop.arm(0)
    saved = stop.to_state()
    assert saved["state"] == "armed"
    assert Stop.from_state(saved, btc_rules).state is StopState.ARMED
