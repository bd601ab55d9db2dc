"""Alert wording: the machines' typed alerts and the notifier's coalesced events, rendered at delivery."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from decimal import Decimal as D

from tests import kit
from tests.core.sim import Sim, drive
from tests.core.test_grid import RULES, cfg
from tgtrader.chat import alerts as a
from tgtrader.chat.render import MAX_MESSAGE
from tgtrader.core.api import GridSummary, PnlView, StatusView
from tgtrader.core.events import (
    ErrorEvent,
    GridRoundTrip,
    GridStateChanged,
    OrderFilled,
    OrderRejected,
    StopTriggered,
    StreamDown,
    StreamUp,
)
from tgtrader.core.grid import Grid
from tgtrader.core.ports import ExchangeHealth
from tgtrader.core.stops import Stop
from tgtrader.types import AlertIntent, Intent, OrderStatus, OrderType, PlaceOrder, Side, Tick

# ---------------------------------------------------------------- the machines' alerts

BTC = kit.rules("BTCUSDT")  # real filters


def _alerts(intents: list[Intent]) -> list[AlertIntent]:
    return [i for i in intents if isinstance(i, AlertIntent)]


def _placed(intents: list[Intent]) -> PlaceOrder:
    [order] = [i for i in intents if isinstance(i, PlaceOrder)]
    return order


def stop_alerts() -> list[AlertIntent]:
    """Every alert a stop emits, each from the path that emits it."""
    out: list[AlertIntent] = []
    tick = lambda price, ts: Tick("BTCUSDT", None, None, D(price), ts)
    loss = Stop(1, "BTCUSDT", "stop-loss", "soft", D("0.01"), D("45000"), BTC, entry_price=D("50000"))
    loss.arm(0)
    got = loss.on_tick(tick("44990", 1))
    out += _alerts(got) + _alerts(loss.on_fill(kit.fill(_placed(got), 5, price="44980.123", fee="0.45")))
    profit = Stop(2, "BTCUSDT", "take-profit", "soft", D("0.01"), D("55000"), BTC)  # no entry price: proceeds
    profit.arm(0)
    got = profit.on_tick(tick("55010", 1))
    out += _alerts(got) + _alerts(profit.on_fill(kit.fill(_placed(got), 6, price="55010", fee="0.55")))
    silent = Stop(3, "BTCUSDT", "stop-loss", "soft", D("0.01"), D("45000"), BTC, silence_ms=30_000)
    silent.arm(0)
    silent.on_tick(tick("48000", 1000))
    out += _alerts(silent.on_timer(31_001))
    hard = Stop(4, "BTCUSDT", "stop-loss", "hard", D("0.01"), D("45000"), BTC)
    [first] = hard.arm(0)
    got = hard.on_order_update(kit.update(first, OrderStatus.EXPIRED))  # type: ignore[arg-type]
    out += _alerts(got)
    out += _alerts(hard.on_order_update(kit.update(_placed(got), OrderStatus.REJECTED, text="Stop price would trigger")))
    gapped = Stop(5, "BTCUSDT", "stop-loss", "hard", D("0.01"), D("45000"), BTC, rest_ms=30_000)
    gapped.arm(0)
    gapped.on_tick(tick("44000", 1000))  # below the limit: its sell rests unfilled
    out += _alerts(gapped.on_tick(tick("44000", 31_000)))
    return out


def grid_alerts() -> list[AlertIntent]:
    """Every alert a grid emits, each from the path that emits it."""
    out: list[AlertIntent] = []
    refused = Grid(1, cfg(), RULES)
    start = next(p for p in refused.start(D("115"), 0) if isinstance(p, PlaceOrder) and p.order_type is OrderType.MARKET)
    out += _alerts(refused.on_order_update(kit.update(start, OrderStatus.REJECTED, text="no price")))
    rejected = Grid(2, cfg(), RULES)
    buy = next(p for p in rejected.start(D("115"), 0) if isinstance(p, PlaceOrder) and p.price == D("110"))
    out += _alerts(rejected.on_order_update(kit.update(buy, OrderStatus.REJECTED, text="insufficient balance")))
    nothing = Grid(3, cfg(), RULES)
    nothing.start(D("115"), 0)
    assert not _alerts(nothing.stop(True, 1))  # the exit waits for the start buy's cancel before selling
    out += _alerts(nothing.on_timer(nothing.exit.wait_ms + 1))  # still nothing filled: nothing to sell
    for n, (extra, price) in enumerate([({"stop_loss": D("90"), "sell_on_stop": True}, D("89")),
                                        ({"take_profit": D("150")}, D("151"))], start=4):
        grid = Grid(n, cfg(**extra), RULES)
        sim = Sim(RULES, D("115"), quote=D("2000"))
        drive(grid, sim, grid.start(sim.price, 0))
        drive(grid, sim, [], sim.move(price))
        out += sim.alerts
    trailing = Grid(6, cfg(trail_up=D("150")), RULES)  # one move up to its limit, then a stall there
    sim = Sim(RULES, D("115"), quote=D("2000"))
    drive(trailing, sim, trailing.start(sim.price, 0))
    for price in (D("150"), D("165")):
        drive(trailing, sim, [], sim.move(price))
    return out + sim.alerts


# what the machines wrote into their alerts before they carried facts instead of text (issue 12)
WORDING = [
    "stop 1 BTCUSDT: stop-loss triggered at 44990 (trigger 45000); selling 0.01 at market",
    "stop 1 BTCUSDT: stop-loss sold 0.01 at 44980.123 (trigger 45000); realized -50.6488 USDT",
    "stop 2 BTCUSDT: take-profit triggered at 55010 (trigger 55000); selling 0.01 at market",
    "stop 2 BTCUSDT: take-profit sold 0.01 at 55010 (trigger 55000); proceeds 549.55 USDT",
    "stop 3 BTCUSDT: no market data for 30 s; placed a resting STOP_LOSS_LIMIT sell of 0.01 at 45000 on the exchange",
    "stop 4 BTCUSDT: the exchange expired the stop order; placed it again",
    "stop 4 BTCUSDT: order rejected: Stop price would trigger",
    "stop 5 BTCUSDT: the market gapped below the stop's limit and the order rested unfilled for 30 s;"
    " cancelling it and selling 0.01 at market",
    "grid 1: order tg-g1-xB1 rejected: no price",
    "grid 1 TESTUSDT: the start buy rejected (0 of 4.544 filled); grid paused",
    "grid 2: order tg-g2-1B3 rejected: insufficient balance",
    "grid 3 TESTUSDT: exit (user) finished after 0 sell(s); no TEST left; grid realized 0 USDT",
    "grid 4 TESTUSDT: stop-loss at 89 (trigger 90); orders cancelled, selling 9.088 TEST; realized before the exit 0 USDT",
    "grid 4 TESTUSDT: exit (stop-loss) finished after 1 sell(s); no TEST left; grid realized -192.6565 USDT",
    "grid 5 TESTUSDT: take-profit at 151 (trigger 150); orders cancelled, keeping 0 TEST; realized before the exit 89.744 USDT",
    # issue 17, a trailing grid's (no earlier wording):
    "grid 6 TESTUSDT moved up at 150: now trades 110 - 150 (1 move up so far)",
    "grid 6 TESTUSDT stopped trailing up at 165: the next move would pass its limit 150; it waits for the price to come"
    " back into its range",
]


def test_every_machine_alert_kind_renders_to_one_line() -> None:
    alerts = stop_alerts() + grid_alerts()
    emitted = {("grid" if "grid_id" in x.payload else "stop", x.kind) for x in alerts}
    assert emitted == {("stop", k) for k in a.STOP_ALERTS} | {("grid", k) for k in a.GRID_ALERTS}
    for alert in alerts:
        assert all(isinstance(v, (str, int, bool, type(None))) for v in alert.payload.values()), alert
        stored = json.loads(json.dumps(alert.payload))  # what the outbox gives back
        line = a.render_alert(alert.kind, stored)
        assert line and "\n" not in line and not re.search(r"[{}]|None|Decimal|\bnan\b", line), line
    assert [a.render_alert(x.kind, x.payload) for x in alerts] == WORDING


def test_a_payload_that_cannot_be_rendered_is_still_delivered_as_its_facts() -> None:
    assert a.outbox_text("grid-start-failed", "", {"grid_id": 1, "symbol": "BTCUSDT"}).startswith(
        'grid-start-failed: {"grid_id": 1, "symbol": "BTCUSDT"}')
    assert a.outbox_text("from-a-newer-version", "", {"x": 1}) == 'from-a-newer-version: {"x": 1}'
    assert a.outbox_text("alert", "FILL BTCUSDT BUY 1 @ 2", None) == "FILL BTCUSDT BUY 1 @ 2"  # an old row


# ---------------------------------------------------------------- the notifier's alerts


def fill(i: int, side: Side = Side.BUY, price: str = "65000") -> OrderFilled:
    return OrderFilled("BTCUSDT", side, Decimal(price), Decimal("0.001"), Decimal("0.065"), f"c{i}", "grid:1", i, i)


def test_fifty_fills_become_one_message_under_limit() -> None:
    events = [fill(i) for i in range(50)] + [
        GridRoundTrip(1, "BTCUSDT", Decimal(64000), Decimal(65000), Decimal("0.001"), Decimal("0.87"), i)
        for i in range(30)
    ]
    text = a.render_alerts(events)
    assert text is not None and len(text) <= MAX_MESSAGE
    assert "50 FILLS" in text and "qty 0.05" in text
    assert "30 ROUND TRIP(S), profit +26.10" in text
    assert "and 35 more fills" in text


def test_single_fill_with_round_trip() -> None:
    text = a.render_alerts([fill(1, Side.SELL), GridRoundTrip(1, "BTCUSDT", Decimal(64000), Decimal(65000),
                                                               Decimal("0.001"), Decimal("0.87"), 1)])
    assert text == (
        "FILL BTCUSDT SELL 0.001 @ 65000 [grid:1]\n"
        "ROUND TRIP grid #1 BTCUSDT: bought 64000 sold 65000 x 0.001, profit +0.87"
    )


def test_every_alert_kind_renders() -> None:
    lines = [
        a.render_event(StopTriggered("grid:1:sl", "BTCUSDT", "stop-loss", Decimal(58000), Decimal(57990),
                                     Decimal("0.01"), Decimal("-12.5"), 1)),
        a.render_event(StopTriggered("stop:2", "BTCUSDT", "take-profit", Decimal(72000), Decimal(72000),
                                     Decimal("0.01"), Decimal("3"), 1)),
        a.render_event(GridStateChanged(1, "BTCUSDT", "running", "stopped", "stop-loss", 1)),
        a.render_event(OrderRejected("BTCUSDT", "c1", "grid:1", "Filter failure: PRICE_FILTER", -1013, 1)),
        a.render_event(ErrorEvent("grid:1", "need 100 USDT, have 5", 1, "insufficient-balance")),
        a.render_event(StreamDown("user", "connection reset", 1)),
        a.render_event(StreamUp("user", 42.0, 3, 2)),
        a.render_event(ErrorEvent("rest", "banned until 12:00", 1, "ban")),
    ]
    assert lines[0] is not None and lines[0].startswith("STOP-LOSS triggered BTCUSDT") and "-12.50" in lines[0]
    assert lines[1] is not None and lines[1].startswith("TAKE-PROFIT")
    assert lines[2] == "GRID #1 BTCUSDT STOPPED: stop-loss"
    assert lines[3] == "ORDER REJECTED BTCUSDT [grid:1]: Filter failure: PRICE_FILTER (code -1013)"
    assert lines[4] is not None and lines[4].startswith("INSUFFICIENT BALANCE")
    assert lines[5] == "STREAM DOWN (user): connection reset"
    assert lines[6] == "STREAM BACK (user) after 42 s; 3 fill(s) recovered"
    assert lines[7] is not None and "418" in lines[7]
    assert a.render_event(GridStateChanged(1, "BTCUSDT", "running", "running", "", 1)) is None


def test_events_survive_the_outbox_and_render_as_before() -> None:
    events = [fill(1, Side.SELL), GridRoundTrip(1, "BTCUSDT", Decimal(64000), Decimal(65000), Decimal("0.001"),
                                                Decimal("0.87"), 1),
              StopTriggered("stop:2", "BTCUSDT", "take-profit", Decimal(72000), Decimal(72000), Decimal("0.01"),
                            Decimal("3"), 1),
              GridStateChanged(1, "BTCUSDT", "running", "stopped", "stop-loss", 1),
              OrderRejected("BTCUSDT", "c1", "grid:1", "Filter failure: PRICE_FILTER", None, 1),
              StreamUp("user", 42.5, 3, 2), StreamDown("user", "reset", 1),
              ErrorEvent("exchange", "banned", 1, "ban", {"retry_after_s": 60.0})]
    stored = json.loads(json.dumps(a.events_payload(events)))
    assert a.events_from_payload(stored) == events
    assert a.render_alert(a.EVENTS, stored) == a.render_alerts(events)


def test_daily_summary_is_rendered_from_its_facts() -> None:
    grid = GridSummary(1, "BTCUSDT", "running", "", D(40000), D(60000), 4, "arithmetic", D(1000), D("0.005"),
                       D("1.5"), D("0.1"), 2, D("0.01"), D(50000), D("-2"), D(49800), None, 3, 0)
    status = StatusView("paper", (grid,), 3, D("1.5"), D("1.5"), D("-2"), ExchangeHealth(1.0, 2.0, 0, 5, 40))
    pnl = PnlView((("2024-05-01", D("1.5"), 2),), D("1.5"))
    stored = json.loads(json.dumps(a.daily_summary_payload(status, pnl)))
    text = a.render_alert(a.DAILY_SUMMARY, stored)
    assert text.startswith("Daily summary\nMode: PAPER\nGrids: 1 running of 1, open orders 3")
    assert "2024-05-01: +1.50 USDT (2 round trips)" in text and "#1 BTCUSDT running" in text
