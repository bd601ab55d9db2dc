"""/chart's PnL panel and stop lines (issue 17): rendered to PNG, sizes and content checked; the PnL series by hand."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tests.chat.test_pnl_chart import has_colour, size
from tgtrader.chat.chart import PNL_COLOUR, pnl_series, render_chart_png
from tgtrader.core.api import ChartData

T0 = 1_700_000_000_000


def data(**kw: object) -> ChartData:
    times = tuple(T0 + i * 60_000 for i in range(5))
    prices = (50000.0, 49000.0, 50500.0, 51000.0, 52000.0)
    fills = ((T0, "BUY", D(50000)), (T0 + 60_000, "BUY", D(49000)), (T0 + 180_000, "SELL", D(51000)))
    return ChartData(1, "BTCUSDT", times, prices, (D(48000), D(49000), D(50000), D(51000), D(52000)), fills,
                     **kw)  # type: ignore[arg-type]


def test_pnl_is_cash_plus_base_at_each_price() -> None:
    pnl = pnl_series(data(fill_qty=(D("0.02"), D("0.01"), D("0.01"))))
    assert pnl is not None
    # bought 0.02 @ 50000, then 0.01 @ 49000, sold 0.01 @ 51000 at the 4th point:
    cash = [-1000.0, -1490.0, -1490.0, -980.0, -980.0]
    base = [0.02, 0.03, 0.03, 0.02, 0.02]
    prices = [50000.0, 49000.0, 50500.0, 51000.0, 52000.0]
    assert list(pnl) == pytest.approx([c + b * p for c, b, p in zip(cash, base, prices, strict=True)])
    assert pnl_series(data()) is None  # no quantities: no panel (older data)


def test_panel_and_stop_lines_are_drawn() -> None:
    with_panel = render_chart_png(data(fill_qty=(D("0.02"), D("0.01"), D("0.01")), stop_loss=D(47000),
                                       take_profit=D(53000)))
    assert size(with_panel) == (900, 650) and has_colour(with_panel, PNL_COLOUR)
    assert has_colour(with_panel, "#d62728")  # the stop-loss line (and the sell marker)
    plain = render_chart_png(data())
    assert size(plain) == (900, 500) and not has_colour(plain, PNL_COLOUR)
