"""Pure rendering: alerts coalesce, numbers read well, nothing exceeds Telegram's limit."""

from __future__ import annotations

from decimal import Decimal

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
from tgtrader.telegram import render as r
from tgtrader.types import Side


def fill(i: int, side: Side = Side.BUY, price: str = "65000") -> OrderFilled:
    return OrderFilled("BTCUSDT", side, Decimal(price), Decimal("0.001"), Decimal("0.065"), f"c{i}", "grid:1", i, i)


def test_fifty_fills_become_one_message_under_limit() -> None:
    events = [fill(i) for i in range(50)] + [
        GridRoundTrip(1, "BTCUSDT", Decimal(64000), Decimal(65000), Decimal("0.001"), Decimal("0.87"), i)
        for i in range(30)
    ]
    text = r.render_alerts(events)
    assert text is not None and len(text) <= r.MAX_MESSAGE
    assert "50 FILLS" in text and "qty 0.05" in text
    assert "30 ROUND TRIP(S), profit +26.10" in text
    assert "and 35 more fills" in text


def test_single_fill_with_round_trip() -> None:
    text = r.render_alerts([fill(1, Side.SELL), GridRoundTrip(1, "BTCUSDT", Decimal(64000), Decimal(65000),
                                                               Decimal("0.001"), Decimal("0.87"), 1)])
    assert text == (
        "FILL BTCUSDT SELL 0.001 @ 65000 [grid:1]\n"
        "ROUND TRIP grid #1 BTCUSDT: bought 64000 sold 65000 x 0.001, profit +0.87"
    )


def test_every_alert_kind_renders() -> None:
    lines = [
        r.render_event(StopTriggered("grid:1:sl", "BTCUSDT", "stop-loss", Decimal(58000), Decimal(57990),
                                     Decimal("0.01"), Decimal("-12.5"), 1)),
        r.render_event(StopTriggered("stop:2", "BTCUSDT", "take-profit", Decimal(72000), Decimal(72000),
                                     Decimal("0.01"), Decimal("3"), 1)),
        r.render_event(GridStateChanged(1, "BTCUSDT", "running", "stopped", "stop-loss", 1)),
        r.render_event(OrderRejected("BTCUSDT", "c1", "grid:1", "Filter failure: PRICE_FILTER", -1013, 1)),
        r.render_event(ErrorEvent("grid:1", "need 100 USDT, have 5", 1, "insufficient-balance")),
        r.render_event(StreamDown("user", "connection reset", 1)),
        r.render_event(StreamUp("user", 42.0, 3, 2)),
        r.render_event(ErrorEvent("rest", "banned until 12:00", 1, "ban")),
    ]
    assert lines[0] is not None and lines[0].startswith("STOP-LOSS triggered BTCUSDT") and "-12.50" in lines[0]
    assert lines[1] is not None and lines[1].startswith("TAKE-PROFIT")
    assert lines[2] == "GRID #1 BTCUSDT STOPPED: stop-loss"
    assert lines[3] == "ORDER REJECTED BTCUSDT [grid:1]: Filter failure: PRICE_FILTER (code -1013)"
    assert lines[4] is not None and lines[4].startswith("INSUFFICIENT BALANCE")
    assert lines[5] == "STREAM DOWN (user): connection reset"
    assert lines[6] == "STREAM BACK (user) after 42 s; 3 fill(s) recovered"
    assert lines[7] is not None and "418" in lines[7]
    assert r.render_event(GridStateChanged(1, "BTCUSDT", "running", "running", "", 1)) is None


def test_money_and_numbers() -> None:
    assert r.money(Decimal("1234.567")) == "1,234.57"
    assert r.money(Decimal("0.004")) == "0.004000"
    assert r.signed(Decimal("-0.5")) == "-0.50"
    assert r.signed(Decimal("0")) == "0.00"
    assert r.num(Decimal("65000.00")) == "65000"
    assert r.clip("x" * 5000).endswith("(truncated)") and len(r.clip("x" * 5000)) <= r.MAX_MESSAGE


def test_chart_png_with_and_without_data() -> None:
    from tgtrader.core.api import ChartData
    from tgtrader.telegram.chart import render_chart_png

    empty = render_chart_png(ChartData(1, "BTCUSDT", (), (), (Decimal(1), Decimal(2)), ()))
    full = render_chart_png(ChartData(2, "BTCUSDT", (1_700_000_000_000, 1_700_000_060_000), (50000.0, 51000.0),
                                      (Decimal(49000), Decimal(52000)),
                                      ((1_700_000_000_000, "BUY", Decimal(50000)),
                                       (1_700_000_060_000, "SELL", Decimal(51000)))))
    assert empty.startswith(b"\x89PNG") and full.startswith(b"\x89PNG") and len(full) > 5000
