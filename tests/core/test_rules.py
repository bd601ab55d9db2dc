"""SymbolRules against REAL Binance exchangeInfo payloads (tests/data, copied from shared/data/binance):
the 2021 spot subset (PRICE_FILTER, PERCENT_PRICE, LOT_SIZE, MIN_NOTIONAL, MARKET_LOT_SIZE) and the
newer ccxt-recorded entries (NOTIONAL, PERCENT_PRICE_BY_SIDE, numbers as strings)."""

from __future__ import annotations

import json
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tgtrader.core.rules import SymbolRules
from tgtrader.exchange.binance.rules import rules_from_exchange_info
from tgtrader.types import OrderType, Side

DATA = Path(__file__).resolve().parent.parent / "data"
OLD = rules_from_exchange_info(json.loads((DATA / "exchangeInfo_spot_subset_2021-10-12.json").read_text()))
NEW = rules_from_exchange_info(json.loads((DATA / "exchangeInfo_symbols_ccxt_static_notional_pps.json").read_text()))
ALL: dict[str, SymbolRules] = {f"2021:{k}": v for k, v in OLD.items()} | {f"ccxt:{k}": v for k, v in NEW.items()}
IDS = sorted(ALL)

SIDES = st.sampled_from([Side.BUY, Side.SELL])


def _between(low: Decimal, high: Decimal, places: int = 12) -> st.SearchStrategy[Decimal]:
    """Decimals in [low, high], spread over magnitudes (log-uniform-ish) with many digits."""
    return st.decimals(min_value=low, max_value=high, places=places, allow_nan=False, allow_infinity=False)


def _magnitudes(low: Decimal, high: Decimal) -> st.SearchStrategy[Decimal]:
    """Mostly values near realistic magnitudes: low * 10^k * mantissa, clipped to [low, high]."""

    @st.composite
    def draw(d: st.DrawFn) -> Decimal:
        exp = d(st.integers(0, max(0, high.adjusted() - low.adjusted())))
        mantissa = d(st.decimals(min_value=Decimal(1), max_value=Decimal(10), places=10))
        value = (low * mantissa).scaleb(exp)
        return min(max(value, low), high)

    return st.one_of(draw(), _between(low, high))


# ------------------------------------------------------------------ parsing the real payloads


def test_payloads_parse_into_expected_rules() -> None:
    assert set(OLD) == {"ETHBTC", "BTCUSDT", "ETHUSDT", "XRPETH", "BNBUSDT", "XRPUSDT", "SHIBUSDT"}
    assert set(NEW) == {"BTCUSDT", "ETHUSDT", "ADAUSDT"}
    btc = OLD["BTCUSDT"]
    assert (btc.base_asset, btc.quote_asset) == ("BTC", "USDT")
    assert (btc.tick_size, btc.min_price, btc.max_price) == (Decimal("0.01"), Decimal("0.01"), Decimal("1000000"))
    assert (btc.step_size, btc.min_qty, btc.max_qty) == (Decimal("0.00001"), Decimal("0.00001"), Decimal("9000"))
    assert btc.market_max_qty == Decimal("100.05381873") and btc.market_step_size == 0
    assert btc.min_notional == Decimal("10") and btc.apply_min_to_market
    assert btc.bid_multiplier_up == btc.ask_multiplier_up == Decimal("5")  # old PERCENT_PRICE: both sides
    assert btc.max_num_orders == 200
    new = NEW["BTCUSDT"]
    assert new.min_notional == Decimal("5") and new.max_notional == Decimal("9000000")
    assert new.apply_min_to_market and not new.apply_max_to_market
    assert (new.bid_multiplier_down, new.ask_multiplier_up) == (Decimal("0.2"), Decimal("5"))
    assert new.max_num_orders == 200  # ccxt stores "200" as a string
    assert OLD["SHIBUSDT"].tick_size == Decimal("0.00000001") and OLD["SHIBUSDT"].step_size == Decimal("1")


@pytest.mark.parametrize("key", IDS)
def test_filter_bounds_are_on_their_grid(key: str) -> None:
    """The premise of the rounding properties: min/max lie on tick and step in every real payload."""
    r = ALL[key]
    assert r.min_price % r.tick_size == 0 and r.max_price % r.tick_size == 0
    assert r.min_qty % r.step_size == 0 and r.max_qty % r.step_size == 0


# ------------------------------------------------------------------ properties


@pytest.mark.parametrize("key", IDS)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), side=SIDES)
def test_rounded_limit_order_passes_price_and_lot_filters(key: str, data: st.DataObject, side: Side) -> None:
    r = ALL[key]
    price = data.draw(_magnitudes(r.min_price, r.max_price), label="price")
    qty = data.draw(_magnitudes(r.min_qty, r.max_qty), label="qty")
    p, q = r.round_price(price, side), r.round_qty(qty)
    problems = r.check_order(side, OrderType.LIMIT, q, p)
    assert [v for v in problems if v.filter in ("PRICE_FILTER", "LOT_SIZE")] == [], problems
    # Only the value-based filter may remain, and only when the value really is out of range.
    for v in problems:
        assert v.filter == "NOTIONAL"
        assert p * q < r.min_notional or (r.max_notional > 0 and p * q > r.max_notional)


@pytest.mark.parametrize("key", IDS)
@settings(max_examples=40, deadline=None)
@given(data=st.data(), side=SIDES)
def test_sized_from_a_quote_amount_passes_every_filter(key: str, data: st.DataObject, side: Side) -> None:
    """Spend `amount` quote at price p: q = round_qty(amount / p) passes all filters once amount >= minNotional + one step."""
    r = ALL[key]
    price = data.draw(_magnitudes(r.min_price, min(r.max_price, Decimal(100_000))), label="price")
    p = r.round_price(price, side)
    floor = r.min_notional + p * r.step_size + r.min_qty * p
    assume(floor * 2 < r.max_qty * p)
    amount = data.draw(_between(floor, min(floor * 1000, r.max_qty * p / 2), places=8), label="amount")
    q = r.round_qty(amount / p)
    assert q * p <= amount  # never spends more than the amount
    assert r.check_order(side, OrderType.LIMIT, q, p, reference_price=p) == []


@pytest.mark.parametrize("key", IDS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_qty_never_exceeds_input(key: str, data: st.DataObject) -> None:
    r = ALL[key]
    qty = data.draw(
        st.one_of(_between(Decimal(0), r.max_qty * 2, places=12), _between(Decimal(0), r.max_qty, places=35)),
        label="qty",
    )
    for market in (False, True):
        q = r.round_qty(qty, market=market)
        assert q <= qty
        with localcontext() as ctx:  # the difference itself needs more than 28 digits for long inputs
            ctx.prec = 100
            assert qty - q < r.step_size
        assert q % r.step_size == 0


@pytest.mark.parametrize("key", IDS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_buying_with_a_balance_never_exceeds_it(key: str, data: st.DataObject) -> None:
    r = ALL[key]
    price = r.round_price(data.draw(_magnitudes(r.min_price, r.max_price), label="price"))
    assume(price > 0)
    balance = data.draw(_between(Decimal(0), Decimal(10_000_000), places=8), label="balance")
    assert r.round_qty(balance / price) * price <= balance


@pytest.mark.parametrize("key", IDS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_price_direction_by_side(key: str, data: st.DataObject) -> None:
    r = ALL[key]
    price = data.draw(_magnitudes(r.min_price, r.max_price), label="price")
    buy, sell, nearest = r.round_price(price, Side.BUY), r.round_price(price, Side.SELL), r.round_price(price)
    assert buy <= price <= sell  # a buy never pays more, a sell never asks less than requested
    assert sell - buy <= r.tick_size
    assert abs(nearest - price) <= r.tick_size / 2
    assert all(r.is_on_tick(x) for x in (buy, sell, nearest))


@pytest.mark.parametrize("key", IDS)
@settings(max_examples=40, deadline=None)
@given(data=st.data(), side=SIDES)
def test_rounded_market_order_passes_market_lot_size(key: str, data: st.DataObject, side: Side) -> None:
    r = ALL[key]
    top = r.market_max_qty if r.market_max_qty > 0 else r.max_qty
    qty = data.draw(_magnitudes(r.min_qty, top), label="qty")
    q = r.round_qty(qty, market=True)
    problems = r.check_order(side, OrderType.MARKET, q)
    assert [v for v in problems if "LOT_SIZE" in v.filter] == [], problems


def test_long_inputs_never_round_the_wrong_way() -> None:
    """Regression: in the default 28-digit context, qty/step of a 29-digit quantity rounded UP first."""
    r = OLD["BTCUSDT"]
    qty = Decimal("0.99999999999999999999999999999")
    assert r.round_qty(qty) == Decimal("0.99999")
    price = Decimal("100.00999999999999999999999999999")
    assert r.round_price(price, Side.BUY) == Decimal("100.00")
    assert r.round_price(price, Side.SELL) == Decimal("100.01")
    assert r.round_qty(Decimal("1e30")) == Decimal("1e30")  # used to raise InvalidOperation
    problems = r.check_order(Side.BUY, OrderType.LIMIT, Decimal("1e40"), Decimal("1e40"))
    assert {v.filter for v in problems} == {"PRICE_FILTER", "LOT_SIZE"}  # above the maxima: reported, not raised


# ------------------------------------------------------------------ violations name the filter and numbers


def _only(problems: list, name: str) -> str:
    assert [v.filter for v in problems] == [name], problems
    return str(problems[0])


def test_min_notional_violation() -> None:
    text = _only(OLD["BTCUSDT"].check_order(Side.BUY, OrderType.LIMIT, Decimal("0.0001"), Decimal("50000")), "NOTIONAL")
    assert text == "NOTIONAL: order value 5 USDT is below minNotional 10"
    text = _only(NEW["ADAUSDT"].check_order(Side.SELL, OrderType.LIMIT, Decimal("10"), Decimal("0.4")), "NOTIONAL")
    assert "order value 4 USDT is below minNotional 5" in text


def test_max_notional_applies_to_limit_not_market() -> None:
    r = NEW["BTCUSDT"]
    text = _only(r.check_order(Side.BUY, OrderType.LIMIT, Decimal("100"), Decimal("100000")), "NOTIONAL")
    assert "above maxNotional 9000000" in text
    assert r.check_order(Side.BUY, OrderType.MARKET, Decimal("100"), reference_price=Decimal("100000")) == []


def test_market_order_min_notional_uses_reference_price() -> None:
    r = NEW["BTCUSDT"]  # applyMinToMarket
    text = _only(r.check_order(Side.SELL, OrderType.MARKET, Decimal("0.0001"), reference_price=Decimal("30000")), "NOTIONAL")
    assert "order value 3 USDT is below minNotional 5" in text


def test_tick_violation() -> None:
    text = _only(OLD["BTCUSDT"].check_order(Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("50000.005")), "PRICE_FILTER")
    assert text == "PRICE_FILTER: price 50000.005 is not a multiple of tickSize 0.01"


def test_price_range_violation() -> None:
    r = OLD["SHIBUSDT"]
    text = _only(r.check_order(Side.SELL, OrderType.LIMIT, Decimal("1000000000"), Decimal("2")), "PRICE_FILTER")
    assert text == "PRICE_FILTER: price 2 is above maxPrice 1"


def test_step_violation() -> None:
    text = _only(OLD["ETHUSDT"].check_order(Side.SELL, OrderType.LIMIT, Decimal("0.01005"), Decimal("3500")), "LOT_SIZE")
    assert text == "LOT_SIZE: quantity 0.01005 is not a multiple of stepSize 0.0001"


def test_min_qty_violation() -> None:
    text = _only(OLD["XRPUSDT"].check_order(Side.BUY, OrderType.LIMIT, Decimal("0"), Decimal("1")), "LOT_SIZE")
    assert "quantity 0 must be positive" in text
    problems = OLD["ETHBTC"].check_order(Side.BUY, OrderType.LIMIT, Decimal("0.00005"), Decimal("0.06"))
    assert "LOT_SIZE: quantity 0.00005 is below minQty 0.0001" in [str(v) for v in problems]


@pytest.mark.parametrize(
    "side, price, expected",
    [
        (Side.BUY, "150001", "PERCENT_PRICE_BY_SIDE: buy price 150001 is above 5 x average price 30000"),
        (Side.BUY, "5999", "PERCENT_PRICE_BY_SIDE: buy price 5999 is below 0.2 x average price 30000"),
        (Side.SELL, "150001", "PERCENT_PRICE_BY_SIDE: sell price 150001 is above 5 x average price 30000"),
        (Side.SELL, "5999", "PERCENT_PRICE_BY_SIDE: sell price 5999 is below 0.2 x average price 30000"),
    ],
)
def test_percent_price_by_side(side: Side, price: str, expected: str) -> None:
    r = NEW["BTCUSDT"]
    problems = r.check_order(side, OrderType.LIMIT, Decimal("0.001"), Decimal(price), reference_price=Decimal("30000"))
    assert _only(problems, "PERCENT_PRICE_BY_SIDE") == expected
    inside = r.check_order(side, OrderType.LIMIT, Decimal("0.001"), Decimal("30000"), reference_price=Decimal("30000"))
    assert inside == []


def test_percent_price_uses_the_side_multipliers() -> None:
    """Bid and ask bands differ on some symbols: the check must pick the side's own pair."""
    from dataclasses import replace

    r = replace(NEW["BTCUSDT"], bid_multiplier_up=Decimal("1.1"), ask_multiplier_up=Decimal("5"))
    ref = Decimal("30000")
    assert r.check_order(Side.SELL, OrderType.LIMIT, Decimal("0.001"), Decimal("40000"), reference_price=ref) == []
    assert _only(
        r.check_order(Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("40000"), reference_price=ref),
        "PERCENT_PRICE_BY_SIDE",
    ).endswith("buy price 40000 is above 1.1 x average price 30000")


def test_market_lot_size_violation() -> None:
    r = OLD["BTCUSDT"]
    text = _only(r.check_order(Side.SELL, OrderType.MARKET, Decimal("200"), reference_price=Decimal("50000")), "MARKET_LOT_SIZE")
    assert text == "MARKET_LOT_SIZE: quantity 200 is above maxQty 100.05381873"
    # the same quantity is fine as a LIMIT order (LOT_SIZE maxQty 9000)
    assert r.check_order(Side.SELL, OrderType.LIMIT, Decimal("200"), Decimal("50000")) == []


def test_every_violation_is_reported_at_once() -> None:
    problems = OLD["BTCUSDT"].check_order(
        Side.BUY, OrderType.LIMIT, Decimal("0.000015"), Decimal("300000.001"), reference_price=Decimal("50000")
    )
    assert sorted(v.filter for v in problems) == ["LOT_SIZE", "NOTIONAL", "PERCENT_PRICE_BY_SIDE", "PRICE_FILTER"]


def test_order_type_and_status() -> None:
    from dataclasses import replace

    r = replace(OLD["BTCUSDT"], status="BREAK", order_types=frozenset({"LIMIT"}))
    problems = r.check_order(Side.BUY, OrderType.MARKET, Decimal("0.001"))
    assert {v.filter for v in problems} == {"STATUS", "ORDER_TYPE"}
    assert "BTCUSDT is BREAK, not TRADING" in [v.message for v in problems]
