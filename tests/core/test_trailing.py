"""Trailing grids in the pure machine (issue 17; the rule: tgtrader/core/grid/trailing.py): up moves the lowest buy's
quote to a new top interval, down moves the highest sell's base to a new bottom interval; nothing at market."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

from tgtrader.core.api import GridSpec
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import EventBus
from tgtrader.core.grid import Grid, GridConfig, overlap_problem, preview
from tgtrader.core.ids import parse_client_order_id
from tgtrader.core.rules import SymbolRules
from tgtrader.core.service import TradingCore
from tgtrader.store.core_store import CoreStore
from tgtrader.types import CancelOrder, Fill, OrderStatus, OrderType, OrderUpdate, Side, Tick

from ..kit import CoreOnPaper
from .sim import Sim, drive

RULES = SymbolRules("TESTUSDT", "TEST", "USDT", tick_size=D("0.01"), step_size=D("0.001"), min_qty=D("0.001"),
                    min_notional=D("10"))
Q = D("2.272")  # 1000 / (100 + 110 + 2 x 115), rounded down to the step


def cfg(**kw: object) -> GridConfig:
    base = dict(symbol="TESTUSDT", lower=D("100"), upper=D("140"), n=4, investment=D("1000"))
    base.update(kw)
    return GridConfig(**base)  # type: ignore[arg-type]


def started(**kw: object) -> tuple[Grid, Sim]:
    g = Grid(1, cfg(**kw), RULES)
    sim = Sim(RULES, D("115"), quote=D("2000"))
    drive(g, sim, g.start(D("115"), 0))
    return g, sim


def resting(sim: Sim) -> list[tuple[str, D, D]]:
    return sorted((o.side.value, o.price, o.qty) for o in sim.resting.values())  # type: ignore[misc]


def alerts(sim: Sim, kind: str) -> list[dict[str, object]]:
    return [a.payload for a in sim.alerts if a.kind == kind]


def test_trailing_up_moves_the_lowest_buys_quote_one_rung_up_each_step_over_the_top() -> None:
    g, sim = started(trail_up=D("200"))
    drive(g, sim, [], sim.move(D("141")))  # both sells fill: every interval waits to buy
    assert g.shift == 0 and len(alerts(sim, "grid-trailed")) == 0  # 141 < 150, the rung one step over the top
    drive(g, sim, [], sim.move(D("150")))
    assert g.shift == 1 and g.moves_up == 1
    assert g.levels == [D("110"), D("120"), D("130"), D("140"), D("150")]
    q4 = RULES.round_qty(Q * 100 / 140)  # the same quote value as the cancelled buy at 100
    assert resting(sim) == [("BUY", D("110"), Q), ("BUY", D("120"), Q), ("BUY", D("130"), Q), ("BUY", D("140"), q4)]
    a = alerts(sim, "grid-trailed")[-1]
    assert (a["direction"], D(str(a["lower"])), D(str(a["upper"])), D(str(a["price"])), a["moves"]) == (
        "up", D("110"), D("150"), D("150"), 1)
    # a jump over several rungs moves several times at once, never buying anything at market
    drive(g, sim, [], sim.move(D("175")))
    assert g.moves_up == 3 and g.levels == [D("130"), D("140"), D("150"), D("160"), D("170")]
    assert all(o.order_type is OrderType.LIMIT for o in sim.placed[1:])
    assert [o.price for o in sim.resting.values() if o.side is Side.BUY] == [D("130"), D("140"), D("150"), D("160")]
    # back down: the moved intervals buy their own quantity, then sell it one rung up (a round trip each)
    drive(g, sim, [], sim.move(D("145")))
    drive(g, sim, [], sim.move(D("171")))
    buys = {f.price: f.qty for f in sim.trades if f.side is Side.BUY and f.price >= 150}
    assert buys == {D("160"): RULES.round_qty(Q * 120 / 160), D("150"): RULES.round_qty(Q * 110 / 150)}
    assert g.ledger.round_trips == 2 and sim.violations == []
    assert g.base_held() == sim.base
    assert [k for _, k, _ in g.marks] == ["trail-up"] * 3


def test_trailing_up_stops_at_its_limit_and_says_so_once() -> None:
    g, sim = started(trail_up=D("165"))
    drive(g, sim, [], sim.move(D("175")))
    assert g.moves_up == 2 and g.levels[-1] == D("160")  # 170 would pass the limit
    drive(g, sim, [], sim.move(D("180")))
    assert alerts(sim, "grid-trail-stopped") == [{"grid_id": 1, "symbol": "TESTUSDT", "direction": "up",
                                                  "reason": "limit", "price": "175", "limit": "165"}]


def test_trailing_down_moves_the_highest_sells_base_one_rung_down_and_its_sale_is_no_round_trip() -> None:
    g, sim = started(trail_down=D("70"))
    drive(g, sim, [], sim.move(D("99")))  # both buys fill: every interval holds
    drive(g, sim, [], sim.move(D("90")))
    assert g.shift == -1 and g.moves_down == 1
    assert g.levels == [D("90"), D("100"), D("110"), D("120"), D("130")]
    assert resting(sim) == [("SELL", D("100"), Q), ("SELL", D("110"), Q), ("SELL", D("120"), Q), ("SELL", D("130"), Q)]
    moved = next(o for o in sim.resting.values() if o.price == D("100"))
    assert parse_client_order_id(moved.client_order_id).level == -1  # type: ignore[union-attr]
    realized = g.ledger.realized
    drive(g, sim, [], sim.move(D("101")))  # the moved base sells at 100: start-bought base, position profit
    assert g.ledger.round_trips == 0
    assert g.ledger.realized - realized == Q * 100 - Q * 100 * D("0.001") - Q * 115 * D("1.001")
    assert ("BUY", D("90"), Q) in resting(sim)  # it buys the same quantity one rung down
    assert g.base_held() == sim.base and sim.violations == []


def test_a_move_is_dropped_when_the_cancelled_order_filled_first() -> None:
    g, sim = started(trail_up=D("200"))
    drive(g, sim, [], sim.move(D("141")))
    low = next(o for o in sim.resting.values() if o.price == D("100"))
    intents = g.on_tick(Tick("TESTUSDT", D("150"), D("150"), D("150"), 5_000))
    assert intents == [CancelOrder("TESTUSDT", low.client_order_id, "grid:1")]
    # the buy had filled before the cancel arrived (a wick): the interval holds base, the move is off
    f = Fill("TESTUSDT", 99, low.client_order_id, Side.BUY, D("100"), Q, D("0.2272"), "USDT", True, 5_001)
    upd = OrderUpdate("TESTUSDT", low.client_order_id, Side.BUY, OrderType.LIMIT, OrderStatus.FILLED, D("100"), Q, Q,
                      ts_ms=5_001)
    out = g.on_fill(f) + g.on_order_update(upd)
    assert g.shift == 0 and g.moves_up == 0 and g.trail_move is None and g.marks == []
    assert [(p.side, p.price) for p in out if not isinstance(p, CancelOrder)] == [(Side.SELL, D("110"))]


def test_a_move_waiting_for_its_cancel_survives_a_restart() -> None:
    g, sim = started(trail_up=D("200"))
    drive(g, sim, [], sim.move(D("141")))
    g.on_tick(Tick("TESTUSDT", D("150"), D("150"), D("150"), 5_000))  # cancel sent, answer not yet in
    state = json.loads(json.dumps(g.to_state()))
    g2 = Grid.from_state(state, RULES)
    assert g2.to_state() == state and g2.trail_move == ("up", 0)
    low = next(o for o in sim.resting.values() if o.price == D("100"))
    sim.price = D("150")
    drive(g2, sim, [CancelOrder("TESTUSDT", low.client_order_id, "grid:1")])
    assert g2.shift == 1 and g2.levels[-1] == D("150")
    assert ("BUY", D("140"), RULES.round_qty(Q * 100 / 140)) in resting(sim)


def test_trailing_limits_are_checked_and_widen_the_overlap_check() -> None:
    for kw, needle in [
        (dict(trail_up=D("140")), "must be above upper"),
        (dict(trail_up=D("180"), take_profit=D("170")), "not be above the take-profit"),
        (dict(trail_down=D("100")), "below lower"),
        (dict(trail_down=D("80"), stop_loss=D("90")), "not be below the stop-loss"),
    ]:
        p = preview(cfg(**kw), RULES, D("115"), free_quote=D("2000"))
        assert any(needle in x for x in p.problems), (kw, p.problems)
    assert preview(cfg(trail_up=D("200"), trail_down=D("50")), RULES, D("115"), free_quote=D("2000")).ok
    # a grid trailing up to 200 may come to trade 160-200: a second grid there overlaps it
    assert overlap_problem(cfg(lower=D("160"), upper=D("190")), [(1, "TESTUSDT", D("100"), D("200"))])


# ---------------------------------------------------------------- the real core on the paper venue


async def test_a_trailing_grid_on_paper_moves_reports_and_survives_a_restart(tmp_path: Path) -> None:
    kit = await CoreOnPaper.open(tmp_path, price="50000")
    spec = GridSpec("BTCUSDT", D("44000"), D("52000"), 4, D("1000"), trail_up=D("60000"))
    gid = await kit.running_grid(spec)
    await kit.trade("53000", "54500")  # sells at 50000 and 52000 fill; 54000 is one step over the top
    g = await kit.core.grid(gid)
    assert (g.moves_up, g.range_lower, g.range_upper) == (1, D("46000"), D("54000"))
    assert (g.lower, g.upper, g.trail_up) == (D("44000"), D("52000"), D("60000"))  # as the trader set them
    buys = sorted(o.price for o in await kit.core.open_orders() if o.side is Side.BUY)
    assert buys == [D("46000"), D("48000"), D("50000"), D("52000")]
    chart = await kit.core.chart_data(gid)
    assert [(k, p) for _, k, p in chart.marks] == [("trail-up", D("54500"))] and chart.levels[-1] == D("54000")
    rows = await kit.db.fetchall("SELECT kind FROM outbox")
    assert ("grid-trailed",) in [tuple(r) for r in rows]
    await kit.core.stop()
    # a restart resumes the moved grid where it was
    core2 = TradingCore(kit.paper, CoreStore(kit.db), EventBus(), CoreConfig(timer_interval_s=0), mode="paper",
                        clock_ms=kit.clock)
    await core2.start()
    g2 = await core2.grid(gid)
    assert (g2.moves_up, g2.range_lower, g2.range_upper) == (1, D("46000"), D("54000"))
    kit.paper.feed_trade("BTCUSDT", D("56100"), kit.clock.advance())
    await core2.idle()
    assert (await core2.grid(gid)).range_upper == D("56000")
    await core2.stop()
    await kit.db.close()


def test_a_resume_drops_a_move_whose_cancel_was_refused_and_the_next_price_moves_it() -> None:
    g, sim = started(trail_up=D("200"))
    drive(g, sim, [], sim.move(D("141")))
    g.on_tick(Tick("TESTUSDT", D("150"), D("150"), D("150"), 5_000))  # the move's cancel is refused (a ban, say)
    g.pause(5_001)  # the pause's cancels are refused too: every order still rests
    g.resume(D("150"), 5_002)
    assert g.trail_move is None and g.marks == []  # not stuck waiting for a cancel nobody sends
    sim.price = D("149")
    drive(g, sim, [], sim.move(D("151")))
    assert g.moves_up == 1 and g.levels[-1] == D("150")
