"""The exchange contract (issue 14): what the core may rely on from any venue behind the `Exchange` port.

Each case runs on every registered venue (tests/contract/venues.py). Cases that need a lever a venue lacks
(a thin book, a lost answer) are skipped there with the reason.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

import pytest

from tests.contract.conftest import needs
from tests.contract.venues import DEPTH, LOST_ANSWERS, STP, STREAM_GAP, SYMBOL, VenueUnderTest
from tgtrader.core.ports import BalanceUpdate, StreamStatus
from tgtrader.errors import BadSymbol, ExchangeError, OrderStatusUnknown, UnknownOrder
from tgtrader.types import (
    CancelOrder,
    Fill,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    RejectReason,
    ReplaceOrder,
    Side,
)

pytestmark = pytest.mark.timeout(60)


def limit(cid: str, side: Side, qty: str, price: str, otype: OrderType = OrderType.LIMIT,
          symbol: str = SYMBOL) -> PlaceOrder:
    return PlaceOrder(symbol, cid, side, otype, D(qty), D(price))


def market(cid: str, side: Side, qty: str, owner: str = "") -> PlaceOrder:
    return PlaceOrder(SYMBOL, cid, side, OrderType.MARKET, D(qty), owner=owner)


def fills_of(v: VenueUnderTest, cid: str) -> list[Fill]:
    return [e for e in v.events if isinstance(e, Fill) and e.client_order_id == cid]


def last_update(v: VenueUnderTest, cid: str) -> OrderUpdate | None:
    ups = [e for e in v.events if isinstance(e, OrderUpdate) and e.client_order_id == cid]
    return ups[-1] if ups else None


async def until(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- round trips


async def test_place_get_cancel_round_trip(venue: VenueUnderTest) -> None:
    ex = venue.ex
    placed = await ex.place_order(limit("rt-1", Side.BUY, "0.001", "49000"))
    assert (placed.status, placed.executed_qty, placed.client_order_id) == (OrderStatus.NEW, 0, "rt-1")
    got = await ex.get_order(SYMBOL, "rt-1")
    assert got is not None and got.status is OrderStatus.NEW and got.price == D("49000")
    assert [o.client_order_id for o in await ex.open_orders(SYMBOL)] == ["rt-1"]
    cancelled = await ex.cancel_order(SYMBOL, "rt-1")
    assert cancelled.status is OrderStatus.CANCELED
    got = await ex.get_order(SYMBOL, "rt-1")
    assert got is not None and got.status is OrderStatus.CANCELED
    assert await ex.open_orders(SYMBOL) == []
    with pytest.raises(UnknownOrder) as ei:
        await ex.cancel_order(SYMBOL, "rt-1")
    assert ei.value.reason is RejectReason.UNKNOWN_ORDER
    assert await ex.get_order(SYMBOL, "never-placed") is None


async def test_replace_round_trip(venue: VenueUnderTest) -> None:
    ex = venue.ex
    await ex.place_order(limit("rp-1", Side.BUY, "0.001", "49000"))
    new = await ex.replace_order(ReplaceOrder(CancelOrder(SYMBOL, "rp-1"), limit("rp-2", Side.BUY, "0.001", "48000")))
    assert (new.client_order_id, new.status, new.price) == ("rp-2", OrderStatus.NEW, D("48000"))
    old = await ex.get_order(SYMBOL, "rp-1")
    assert old is not None and old.status is OrderStatus.CANCELED
    with pytest.raises(UnknownOrder) as ei:  # the old order is gone: nothing is placed
        await ex.replace_order(ReplaceOrder(CancelOrder(SYMBOL, "rp-1"), limit("rp-3", Side.BUY, "0.001", "47000")))
    assert ei.value.reason is RejectReason.UNKNOWN_ORDER
    assert await ex.get_order(SYMBOL, "rp-3") is None
    # the cancel stands when the new order is refused (STOP_ON_FAILURE)
    with pytest.raises(ExchangeError) as ei2:
        await ex.replace_order(ReplaceOrder(CancelOrder(SYMBOL, "rp-2"), limit("rp-4", Side.BUY, "100", "47000")))
    assert ei2.value.reason is RejectReason.INSUFFICIENT_BALANCE
    assert (await ex.get_order(SYMBOL, "rp-2")).status is OrderStatus.CANCELED  # type: ignore[union-attr]


# ---------------------------------------------------------------- typed refusals

REFUSALS = [
    ("price-off-tick", limit("x-1", Side.BUY, "0.001", "49000.005"), RejectReason.FILTER),
    ("qty-off-step", limit("x-2", Side.BUY, "0.0010005", "49000"), RejectReason.FILTER),
    ("notional-too-small", limit("x-3", Side.BUY, "0.0001", "49000"), RejectReason.FILTER),
    ("far-below-average-price", limit("x-4", Side.BUY, "0.01", "5000"), RejectReason.FILTER),
    ("far-above-average-price", limit("x-5", Side.SELL, "0.001", "300000"), RejectReason.FILTER),
    ("insufficient-quote", limit("x-6", Side.BUY, "10", "49000"), RejectReason.INSUFFICIENT_BALANCE),
    ("insufficient-base", limit("x-7", Side.SELL, "5", "51000"), RejectReason.INSUFFICIENT_BALANCE),
    ("maker-would-take", limit("x-8", Side.BUY, "0.001", "50100", OrderType.LIMIT_MAKER), RejectReason.WOULD_MATCH),
    ("maker-sell-would-take", limit("x-9", Side.SELL, "0.001", "49900", OrderType.LIMIT_MAKER),
     RejectReason.WOULD_MATCH),
]


@pytest.mark.parametrize(("case", "order", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_refusals_carry_typed_reasons(venue: VenueUnderTest, case: str, order: PlaceOrder,
                                            reason: RejectReason) -> None:
    with pytest.raises(ExchangeError) as ei:
        await venue.ex.place_order(order)
    assert ei.value.reason is reason, (case, str(ei.value))
    assert await venue.ex.get_order(SYMBOL, order.client_order_id) is None
    assert await venue.ex.open_orders(SYMBOL) == []


async def test_unknown_symbol_is_refused(venue: VenueUnderTest) -> None:
    with pytest.raises(BadSymbol):
        await venue.ex.place_order(limit("u-1", Side.BUY, "1", "1", symbol="NOPEUSDT"))


async def test_maker_order_below_the_market_rests(venue: VenueUnderTest) -> None:
    placed = await venue.ex.place_order(limit("mk-1", Side.BUY, "0.001", "49900", OrderType.LIMIT_MAKER))
    assert placed.status is OrderStatus.NEW


# ---------------------------------------------------------------- client order ids


async def test_duplicate_client_id_while_open_never_makes_a_second_order(venue: VenueUnderTest) -> None:
    """Binance refuses a client order id only while the order using it is open ("Duplicate order sent.").
    A resend of a live order is that order (adopted, never REJECTED); once it is closed the id is free again."""
    ex = venue.ex
    first = await ex.place_order(limit("dup-1", Side.BUY, "0.001", "49000"))
    again = await ex.place_order(limit("dup-1", Side.BUY, "0.001", "49000"))
    assert again.status is OrderStatus.NEW and again.exchange_order_id == first.exchange_order_id
    assert len(await ex.open_orders(SYMBOL)) == 1
    await ex.cancel_order(SYMBOL, "dup-1")
    reused = await ex.place_order(limit("dup-1", Side.BUY, "0.001", "48000"))
    assert reused.status is OrderStatus.NEW and reused.exchange_order_id != first.exchange_order_id
    assert [o.price for o in await ex.open_orders(SYMBOL)] == [D("48000")]


# ---------------------------------------------------------------- fills, balances, fees


async def test_resting_order_fills_when_the_market_reaches_it(venue: VenueUnderTest) -> None:
    ex = venue.ex
    before = await ex.balances()
    await ex.place_order(limit("f-1", Side.BUY, "0.01", "49500"))
    await venue.set_price("49400")
    await until(lambda: (u := last_update(venue, "f-1")) is not None and u.status is OrderStatus.FILLED)
    fills = fills_of(venue, "f-1")
    assert sum(f.qty for f in fills) == D("0.01") and {f.price for f in fills} == {D("49500")}
    assert all(f.is_maker for f in fills)
    after = await ex.balances()
    fee_usdt = sum((f.fee for f in fills if f.fee_asset == "USDT"), D(0))
    fee_btc = sum((f.fee for f in fills if f.fee_asset == "BTC"), D(0))
    assert after["USDT"].total == before["USDT"].total - D("495") - fee_usdt
    assert after["BTC"].total == before["BTC"].total + D("0.01") - fee_btc
    assert after["USDT"].locked == 0


@pytest.mark.parametrize("mode", ["quote", "received", "bnb"])
async def test_fee_assets_and_balances(venue: VenueUnderTest, mode: str) -> None:
    """Binance charges a buy's commission in the asset received (base), a sell's in quote, or BNB when enabled
    (faqs/commission_faq.md); whatever the asset, the balances move by exactly the fills and their fees."""
    venue.set_fee_mode(mode)
    ex = venue.ex
    before = await ex.balances()
    buy = await ex.place_order(market("fee-b", Side.BUY, "0.01"))
    sell = await ex.place_order(market("fee-s", Side.SELL, "0.004"))
    assert buy.status is OrderStatus.FILLED and sell.status is OrderStatus.FILLED
    await until(lambda: fills_of(venue, "fee-b") and fills_of(venue, "fee-s"))
    want = {"quote": ("USDT", "USDT"), "received": ("BTC", "USDT"), "bnb": ("BNB", "BNB")}[mode]
    fb, fs = fills_of(venue, "fee-b"), fills_of(venue, "fee-s")
    assert ({f.fee_asset for f in fb}, {f.fee_asset for f in fs}) == ({want[0]}, {want[1]})
    after = await ex.balances()
    delta: dict[str, D] = {}
    for f in fb + fs:
        sign = 1 if f.side is Side.BUY else -1
        delta["BTC"] = delta.get("BTC", D(0)) + sign * f.qty
        delta["USDT"] = delta.get("USDT", D(0)) - sign * f.qty * f.price
        delta[f.fee_asset] = delta.get(f.fee_asset, D(0)) - f.fee
    for asset, d in delta.items():
        assert after[asset].total == before[asset].total + d, asset


# ---------------------------------------------------------------- thin books, self-trade prevention


async def test_market_order_on_a_thin_book_expires_the_rest_with_its_true_quantity(venue: VenueUnderTest) -> None:
    """faqs/market_orders_faq.md: "your MARKET order will be partially filled to the extent of available
    liquidity, and the remaining quantity will expire" (status EXPIRED). Issue 14 item 2."""
    needs(venue, DEPTH)
    venue.thin_asks([("50000", "0.001"), ("50010", "0.002")])
    got = await venue.ex.place_order(market("thin-1", Side.BUY, "0.005"))
    assert (got.status, got.executed_qty) == (OrderStatus.EXPIRED, D("0.003"))
    assert got.cum_quote == D("50") + D("100.02")
    await until(lambda: (u := last_update(venue, "thin-1")) is not None and u.status is OrderStatus.EXPIRED)
    assert last_update(venue, "thin-1").executed_qty == D("0.003")  # type: ignore[union-attr]
    assert sum(f.qty for f in fills_of(venue, "thin-1")) == D("0.003")
    looked_up = await venue.ex.get_order(SYMBOL, "thin-1")
    assert looked_up is not None and (looked_up.status, looked_up.executed_qty) == (OrderStatus.EXPIRED, D("0.003"))


async def test_own_orders_never_trade_with_each_other(venue: VenueUnderTest) -> None:
    """faqs/stp_faq.md: the venue expires the taker, the maker or both instead (EXPIRED_IN_MATCH); the venue
    says so in typed values (RejectReason.SELF_TRADE, prevented_qty). Issue 14 item 5."""
    needs(venue, STP)
    ex = venue.ex
    await ex.place_order(limit("stp-maker", Side.SELL, "0.002", "50100"))
    venue.thin_asks([])  # nobody else sells: the only ask is our own
    taker = await ex.place_order(market("stp-taker", Side.BUY, "0.002", owner="stop:1"))
    assert taker.status is OrderStatus.EXPIRED and taker.executed_qty == 0
    await venue.settle()
    assert fills_of(venue, "stp-taker") == [] and fills_of(venue, "stp-maker") == []
    maker = await ex.get_order(SYMBOL, "stp-maker")
    assert maker is not None
    prevented = [u for u in (taker, maker, last_update(venue, "stp-maker"), last_update(venue, "stp-taker"))
                 if u is not None and u.reject_reason is RejectReason.SELF_TRADE]
    assert prevented and all(u.prevented_qty == D("0.002") for u in prevented)


# ---------------------------------------------------------------- lost answers


@pytest.mark.parametrize("how", ["cut", "5xx", "-1007"])
async def test_lost_answer_with_delayed_visibility_is_never_executed_twice(venue: VenueUnderTest, how: str) -> None:
    """The order executes, its answer is lost (cut connection, 5xx, -1007), and queries do not see it for a
    while (rest-api.md, Data Source "Memory => Database"). Looking it up until it appears, within the venue's
    settle time, finds it: nothing is sent twice."""
    needs(venue, LOST_ANSWERS)
    ex = venue.ex
    venue.lose_next_answer(how, visible_after_s=1.0)
    order = market("lost-1", Side.BUY, "0.01")
    try:
        got: OrderUpdate | None = await ex.place_order(order)
    except OrderStatusUnknown as exc:
        assert exc.settle_after_s > 1.0
        got = None
        deadline = time.monotonic() + exc.settle_after_s
        while got is None and time.monotonic() < deadline:  # the core gateway's policy
            await asyncio.sleep(0.1)
            got = await ex.get_order(SYMBOL, "lost-1")
    assert got is not None and got.status is OrderStatus.FILLED
    assert venue.posts("lost-1") == 1
    await until(lambda: len(fills_of(venue, "lost-1")) == 1)


# ---------------------------------------------------------------- stream gaps


async def test_fills_during_a_news_gap_arrive_once_and_balances_are_refreshed(venue: VenueUnderTest) -> None:
    """A fill while the pushed news is cut is recovered by reconciliation exactly once, and the balances the venue
    pushes afterwards are its true balances."""
    needs(venue, STREAM_GAP)
    ex = venue.ex
    await ex.place_order(limit("gap-1", Side.BUY, "0.01", "49500"))
    await venue.cut_news()
    await venue.set_price("49400")  # fills while nobody listens
    await until(lambda: any(isinstance(e, StreamStatus) and e.stream == "user" and e.up and e.recovered_fills
                            for e in venue.events), timeout=15)
    await until(lambda: len(fills_of(venue, "gap-1")) == 1)
    truth = await ex.balances()
    pushed = [e for e in venue.events if isinstance(e, BalanceUpdate)]
    latest = {b.asset: b for u in pushed for b in u.balances}
    assert latest["USDT"].total == truth["USDT"].total and latest["BTC"].total == truth["BTC"].total
    await venue.settle()
    assert len(fills_of(venue, "gap-1")) == 1
