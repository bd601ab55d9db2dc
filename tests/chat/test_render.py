"""Pure rendering: numbers read well, nothing exceeds Telegram's limit, charts draw."""

from __future__ import annotations

from decimal import Decimal

from tgtrader.chat import render as r


def test_money_and_numbers() -> None:
    assert r.money(Decimal("1234.567")) == "1,234.57"
    assert r.money(Decimal("0.004")) == "0.004000"
    assert r.signed(Decimal("-0.5")) == "-0.50"
    assert r.signed(Decimal("0")) == "0.00"
    assert r.num(Decimal("65000.00")) == "65000"
    assert r.clip("x" * 5000).endswith("(truncated)") and len(r.clip("x" * 5000)) <= r.MAX_MESSAGE


def test_chart_png_with_and_without_data() -> None:
    from tgtrader.chat.chart import render_chart_png
    from tgtrader.core.api import ChartData

    empty = render_chart_png(ChartData(1, "BTCUSDT", (), (), (Decimal(1), Decimal(2)), ()))
    full = render_chart_png(ChartData(2, "BTCUSDT", (1_700_000_000_000, 1_700_000_060_000), (50000.0, 51000.0),
                                      (Decimal(49000), Decimal(52000)),
                                      ((1_700_000_000_000, "BUY", Decimal(50000)),
                                       (1_700_000_060_000, "SELL", Decimal(51000)))))
    assert empty.startswith(b"\x89PNG") and full.startswith(b"\x89PNG") and len(full) > 5000
