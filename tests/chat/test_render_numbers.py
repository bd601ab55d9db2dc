"""Issue 15: amounts in the quote asset's precision, and a preview that says what the investment pays for."""

from __future__ import annotations

from decimal import Decimal as D

from tgtrader.chat.render import places_for, signed


def test_a_btc_quoted_profit_keeps_its_digits() -> None:
    assert signed(D("0.0149"), places_for("BTC")) == "+0.01490000"  # was +0.01
    assert signed(D("12.346"), places_for("USDT")) == "+12.35"
