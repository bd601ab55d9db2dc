"""The paper exchange charges commissions as Binance does (issue 14 item 10, issue 15): by default a buy's in
the base it receives and a sell's in quote; optionally every fee in quote, or in BNB while the account holds
enough (valued at the engine's BNB<quote> price, else a given one), falling back to the received asset."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tgtrader.errors import InsufficientBalance
from tgtrader.exchange.paper import PaperExchange, load_exchange_info
from tgtrader.fees import fee_asset_of
from tgtrader.types import Fill, OrderStatus, OrderType, PlaceOrder, Side

SYM = "BTCUSDT"


async def make(**kw: object) -> tuple[PaperExchange, list[Fill]]:
    kw.setdefault("initial_balances", {"USDT": D("1000"), "BNB": D("1")})
    ex = PaperExchange(None, **kw)  # type: ignore[arg-type]
    fills: list[Fill] = []
    ex.set_event_sink(lambda e: fills.append(e) if isinstance(e, Fill) else None)
    await ex.start()
    ex.feed_trade(SYM, D("20000"), 1)
    return ex, fills


def limit(cid: str, side: Side, qty: str, price: str) -> PlaceOrder:
    return PlaceOrder(SYM, cid, side, OrderType.LIMIT, D(qty), D(price))


async def round_trip(ex: PaperExchange) -> None:
    await ex.place_order(limit("b", Side.BUY, "0.01", "19900"))
    ex.feed_trade(SYM, D("19850"), 2)
    await ex.place_order(limit("s", Side.SELL, "0.00999", "20100"))
    ex.feed_trade(SYM, D("20150"), 3)


async def test_default_is_binances_a_buy_pays_in_base_a_sell_in_quote() -> None:
    ex, fills = await make()
    await round_trip(ex)
    buy, sell = fills
    assert (buy.fee_asset, buy.fee) == ("BTC", D("0.00001"))  # 0.1 % of the 0.01 BTC received
    assert (sell.fee_asset, sell.fee) == ("USDT", D("0.00999") * D("20100") * D("0.001"))
    bal = await ex.balances()
    assert bal["BTC"].total == D("0.01") - D("0.00001") - D("0.00999") == 0
    assert bal["USDT"].total == D("1000") - D("199") + D("0.00999") * D("20100") - sell.fee
    assert bal["BNB"].total == D("1")  # untouched unless BNB fees are chosen


async def test_a_buy_needs_only_its_notional_when_its_fee_is_paid_in_base() -> None:
    """Binance locks price x qty for a BUY whose commission comes out of the base received."""
    ex, fills = await make(initial_balances={"USDT": D("199")})
    placed = await ex.place_order(limit("b", Side.BUY, "0.01", "19900"))
    assert placed.status is OrderStatus.NEW
    assert (await ex.balances())["USDT"].locked == D("199")
    ex.feed_trade(SYM, D("19800"), 2)
    assert (await ex.balances())["USDT"].total == 0 and fills[0].fee_asset == "BTC"
    q, _ = await make(initial_balances={"USDT": D("199")}, fee_asset="quote")
    with pytest.raises(InsufficientBalance):  # in quote the fee must be locked too
        await q.place_order(limit("b", Side.BUY, "0.01", "19900"))


async def test_quote_mode_charges_both_sides_in_quote() -> None:
    ex, fills = await make(fee_asset="quote")
    await round_trip(ex)
    assert [f.fee_asset for f in fills] == ["USDT", "USDT"]
    assert fills[0].fee == D("0.199")


async def test_bnb_mode_pays_in_bnb_at_the_given_price_then_falls_back_to_the_received_asset() -> None:
    ex, fills = await make(fee_asset="bnb", bnb_prices={"USDT": D("500")},
                           initial_balances={"USDT": D("1000"), "BNB": D("0.0004")})
    await round_trip(ex)
    buy, sell = fills
    assert (buy.fee_asset, buy.fee) == ("BNB", D("0.000398"))  # 0.199 USDT at 500 USDT/BNB
    # 0.20079900 USDT = 0.00040160 BNB: more than the 0.000002 left, so Binance takes the received USDT
    assert (sell.fee_asset, sell.fee) == ("USDT", D("0.00999") * D("20100") * D("0.001"))
    bal = await ex.balances()
    assert bal["BNB"].total == D("0.000002") and bal["BTC"].total == D("0.00001")
    await ex.place_order(limit("b2", Side.BUY, "0.01", "20000"))
    ex.feed_trade(SYM, D("19990"), 4)
    assert (fills[-1].fee_asset, fills[-1].fee) == ("BTC", D("0.00001"))  # a buy falls back to base


async def test_bnb_mode_values_bnb_at_the_engines_own_bnb_market_price() -> None:
    ex, fills = await make(fee_asset="bnb", bnb_prices={"USDT": D("500")})
    ex.feed_trade("BNBUSDT", D("250"), 2)
    await ex.place_order(PlaceOrder(SYM, "m", Side.BUY, OrderType.MARKET, D("0.01")))
    assert (fills[0].fee_asset, fills[0].fee) == ("BNB", D("0.0008"))  # 0.2 USDT at the market's 250


async def test_reset_keeps_the_fee_asset() -> None:
    ex, fills = await make(fee_asset="quote")
    await ex.reset()
    ex.feed_trade(SYM, D("20000"), 5)
    await ex.place_order(PlaceOrder(SYM, "m", Side.BUY, OrderType.MARKET, D("0.01")))
    assert fills[-1].fee_asset == "USDT"


def test_fee_asset_setting_values() -> None:
    assert [fee_asset_of(v) for v in ("base", " QUOTE ", "Bnb")] == ["base", "quote", "bnb"]
    with pytest.raises(ValueError, match="must be one of base, quote, bnb"):
        fee_asset_of("usdt")


def test_bundled_rules_know_bnbusdt() -> None:
    assert "BNBUSDT" in load_exchange_info()
