"""Issue 15: amounts in the quote asset's precision, and a preview that says what the investment pays for."""

from __future__ import annotations

from decimal import Decimal as D

from tgtrader.chat.render import places_for, signed


def test_a_btc_quoted_profit_keeps_its_digits() -> None:
    assert signed(D("0.0149"), places_for("BTC")) == "+0.01490000"  # was +0.01
    assert signed(D("12.346"), places_for("USDT")) == "+12.35"


def test_an_average_price_reads_as_a_price_not_as_a_division() -> None:
    from tgtrader.chat.render import avg

    assert avg(D("56948.06540317333057096284715")) == "56948.065"  # /grid show printed all 28 digits
    assert avg(D("0.000012345678912")) == "0.000012345679" and avg(D("50000")) == "50000" and avg(None) == "-"
