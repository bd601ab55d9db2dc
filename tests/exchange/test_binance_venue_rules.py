"""The Binance adapter against the doc-written fake venue (issue 14): rules, refusals and self-trade prevention
as Binance's documents describe them, where the old fake agreed with the adapter by construction."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from decimal import Decimal as D
from typing import Any

import pytest
from binance.ws.reconnecting_websocket import ReconnectingWebsocket

from tests.fakes.fake_binance import API_KEY, API_SECRET, DEFAULT_SYMBOLS, FakeBinance
from tgtrader.errors import ExchangeError, FilterRejected
from tgtrader.exchange.binance import BinanceExchange
from tgtrader.types import (
    CancelOrder,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    RejectReason,
    ReplaceOrder,
    Side,
)

pytestmark = pytest.mark.timeout(60)
SYM = "BTCUSDT"


@pytest.fixture(autouse=True)
def fast_ws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ReconnectingWebsocket, "_get_reconnect_wait", lambda self, n: 0.1)
    monkeypatch.setattr(ReconnectingWebsocket, "TIMEOUT", 1)


def symbols(**btc_changes: Any) -> list[dict[str, Any]]:
    out = copy.deepcopy(DEFAULT_SYMBOLS)
    out[0].update(btc_changes)
    return out


async def venue(syms: list[dict[str, Any]] | None = None) -> tuple[FakeBinance, BinanceExchange, list[Any]]:
    fake = await FakeBinance(symbols=syms).start()
    fake.set_balance("USDT", "100000")
    fake.set_balance("BTC", "2")
    await fake.set_price(SYM, "50000")
    ex = BinanceExchange(API_KEY, API_SECRET, rest_url=fake.rest_url, ws_url=fake.ws_url, request_timeout=2.0,
                         backoff_base_s=0.02, lookup_delay_s=0.05, user_check_s=0.5)
    events: list[Any] = []
    ex.set_event_sink(events.append)
    await ex.start()
    return fake, ex, events


@pytest.fixture
async def world() -> AsyncIterator[tuple[FakeBinance, BinanceExchange, list[Any]]]:
    fake, ex, events = await venue()
    yield fake, ex, events
    await ex.close()
    await fake.stop()


def limit(cid: str, side: Side, qty: str, price: str, owner: str = "") -> PlaceOrder:
    return PlaceOrder(SYM, cid, side, OrderType.LIMIT, D(qty), D(price), owner=owner)


async def test_exchange_info_rules_carry_algo_limit_position_and_cancel_replace(world: Any) -> None:
    fake, ex, _ = world
    rules = await ex.symbol_rules(SYM)
    assert (rules.max_num_algo_orders, rules.cancel_replace_allowed, rules.max_position) == (5, True, 0)


async def test_replace_without_cancel_replace_is_cancel_then_place() -> None:
    """exchangeInfo cancelReplaceAllowed false: Binance answers -2010 "Order cancel-replace is not supported for this
    symbol." The old adapter reported that as a refusal and the grid level was lost."""
    fake, ex, _ = await venue(symbols(cancelReplaceAllowed=False))
    try:
        await ex.place_order(limit("cr-1", Side.BUY, "0.001", "49000"))
        new = await ex.replace_order(ReplaceOrder(CancelOrder(SYM, "cr-1"), limit("cr-2", Side.BUY, "0.001", "48000")))
        assert (new.client_order_id, new.status) == ("cr-2", OrderStatus.NEW)
        assert (await ex.get_order(SYM, "cr-1")).status is OrderStatus.CANCELED  # type: ignore[union-attr]
        assert fake.requests["POST /api/v3/order/cancelReplace"] == 0
    finally:
        await ex.close()
        await fake.stop()


async def test_matching_engine_refusals_map_to_typed_reasons(world: Any) -> None:
    """errors.md -2010 messages: "Order would trigger immediately." (a stop on the wrong side of the last price) is
    a refusal by the symbol's rules, not an unknown failure (it used to fall through to OTHER)."""
    _, ex, _ = world
    stop = PlaceOrder(SYM, "st-1", Side.SELL, OrderType.STOP_LOSS_LIMIT, D("0.001"), D("49000"), D("50001"))
    with pytest.raises(ExchangeError) as ei:
        await ex.place_order(stop)
    # FILTER, or the finer WOULD_TRIGGER where the core has it
    assert ei.value.reason is getattr(RejectReason, "WOULD_TRIGGER", RejectReason.FILTER) and ei.value.code == -2010


async def test_market_closed_is_a_filter_refusal() -> None:
    fake, ex, _ = await venue(symbols(status="BREAK"))
    try:
        with pytest.raises(ExchangeError) as ei:
            await ex.place_order(limit("mc-1", Side.BUY, "0.001", "49000"))
        assert ei.value.reason is RejectReason.FILTER
    finally:
        await ex.close()
        await fake.stop()


async def test_max_num_algo_orders_refusal(world: Any) -> None:
    fake, ex, _ = world
    for i in range(5):
        await ex.place_order(PlaceOrder(SYM, f"a-{i}", Side.SELL, OrderType.STOP_LOSS_LIMIT, D("0.001"), D("45000"),
                                        D("45100")))
    with pytest.raises(FilterRejected) as ei:
        await ex.place_order(PlaceOrder(SYM, "a-5", Side.SELL, OrderType.STOP_LOSS_LIMIT, D("0.001"), D("45000"),
                                        D("45100")))
    assert "MAX_NUM_ALGO_ORDERS" in str(ei.value)


async def test_a_grid_order_that_would_trade_with_our_own_order_expires_itself(world: Any) -> None:
    """Issue 14 item 5: without an explicit mode the symbol default (EXPIRE_MAKER here) expired the bot's resting
    order instead. A grid order is sent with EXPIRE_TAKER: it is the one that expires, typed as SELF_TRADE."""
    fake, ex, events = world
    await ex.place_order(limit("g-sell", Side.SELL, "0.002", "50100", owner="grid:1"))
    fake.venue.set_liquidity(SYM, asks=[])
    taker = await ex.place_order(limit("g-buy", Side.BUY, "0.002", "50200", owner="grid:1"))
    assert (taker.status, taker.reject_reason, taker.prevented_qty) == (OrderStatus.EXPIRED, RejectReason.SELF_TRADE,
                                                                        D("0.002"))
    assert (await ex.get_order(SYM, "g-sell")).status is OrderStatus.NEW  # type: ignore[union-attr]
    assert fake.trades(SYM) == []


async def test_an_exit_expires_our_resting_order_in_its_way_and_says_so(world: Any) -> None:
    fake, ex, events = world
    await ex.place_order(limit("g-buy", Side.BUY, "0.002", "49900", owner="grid:1"))
    fake.venue.set_liquidity(SYM, bids=[("49950", "0.001")])
    got = await ex.place_order(PlaceOrder(SYM, "exit-1", Side.SELL, OrderType.MARKET, D("0.003"), owner="stop:1"))
    assert (got.status, got.executed_qty) == (OrderStatus.EXPIRED, D("0.001"))  # the book ran out after our order
    for _ in range(50):
        ups = [e for e in events if isinstance(e, OrderUpdate) and e.client_order_id == "g-buy"]
        if ups and ups[-1].status is OrderStatus.EXPIRED:
            break
        await asyncio.sleep(0.02)
    assert (ups[-1].reject_reason, ups[-1].prevented_qty) == (RejectReason.SELF_TRADE, D("0.002"))
