"""New-order pacing (issue 14 item 3): exchangeInfo's ORDERS limits, X-MBX-ORDER-COUNT-* headers, -1015.

rest-api.md "Unfilled Order Count" and faqs/order_count_decrement.md: new orders are limited per account in fixed
windows (e.g. 100 per 10 s, 200,000 per day); over the limit, 429 / -1015 with Retry-After. Only new orders are
refused, so a -1015 must not hold cancels, lookups, stops or exits; an IP-weight 429 or a 418 still holds all.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

import pytest

from tests.exchange import test_binance as kit
from tests.fakes.fake_binance import FakeBinance
from tgtrader.errors import RateLimited
from tgtrader.exchange.binance import BinanceExchange
from tgtrader.exchange.binance.rest import ORDINARY, PRIORITY, order_priority
from tgtrader.exchange.ratelimit import OrderPacer
from tgtrader.types import OrderStatus, Side

pytestmark = pytest.mark.timeout(90)
fake, fast_ws = kit.fake, kit.fast_ws  # the fixtures of the adapter's main test module
limit, make_exchange = kit.limit, kit.make_exchange


# ---------------------------------------------------------------- the pacer alone (a fake server clock)


class Clock:
    def __init__(self, ms: int = 1_700_000_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
]


def test_pacer_reads_the_orders_limits_and_keeps_a_reserve_for_priority_orders() -> None:
    clock = Clock(1_700_000_000_000)  # a multiple of 10 s: a window starts here
    p = OrderPacer(server_ms=clock, margin_s=0.0)
    p.configure(RATE_LIMITS)
    assert p.counts() == {"x-mbx-order-count-10s": (0, 100), "x-mbx-order-count-1d": (0, 200000)}
    for _ in range(90):
        assert p.wait_needed() == 0
        p.sent()
    clock.ms += 2_500
    assert p.wait_needed() == pytest.approx(7.5)  # ordinary orders stop 10 short: until the window turns
    assert p.wait_needed(priority=True) == 0  # a stop / exit / panic sell still goes
    clock.ms += 7_500
    assert p.wait_needed() == 0  # a new fixed window


def test_pacer_takes_binances_count_from_the_headers_and_holds_ordinary_orders_after_1015() -> None:
    clock = Clock(1_700_000_000_000)
    p = OrderPacer(server_ms=clock, margin_s=0.0)
    p.configure(RATE_LIMITS)
    p.record_headers({"X-MBX-ORDER-COUNT-10S": "95", "X-MBX-ORDER-COUNT-1D": "4043", "Content-Type": "x"})
    assert p.counts()["x-mbx-order-count-10s"] == (95, 100)  # other clients of the account count too
    assert p.counts()["x-mbx-order-count-1d"] == (4043, 200000)
    assert p.wait_needed() == pytest.approx(10.0)
    clock.ms += 10_000
    assert p.wait_needed() == 0
    p.record_refused(3.0)
    assert 2.9 < p.wait_needed() <= 3.0
    assert p.wait_needed(priority=True) == 0


def test_stops_exits_and_panic_sells_are_priority_orders() -> None:
    assert order_priority(limit("tg-s4-2", Side.SELL, "0.001", "40000")) == PRIORITY
    assert order_priority(limit("tg-g3-zS1", Side.SELL, "0.001", "40000")) == PRIORITY
    assert order_priority(limit("tg-p1-BTCUSDT", Side.SELL, "0.001", "40000")) == PRIORITY
    assert order_priority(limit("tg-g3-7B1", Side.BUY, "0.001", "40000")) == ORDINARY
    assert order_priority(limit("tg-m9", Side.BUY, "0.001", "40000")) == ORDINARY


# ---------------------------------------------------------------- against the fake


async def test_a_200_level_grid_start_goes_out_within_the_orders_limits(fake: FakeBinance) -> None:
    """Before: the adapter ignored ORDERS and the order-count headers and ran into -1015 (then every request
    waited). Now: paced from exchangeInfo, no order is refused."""
    fake.set_order_limits([("SECOND", 2, 60), ("DAY", 1, 100_000)])  # 2 s windows: slow machines still pace
    ex = make_exchange(fake)
    await ex.start()
    try:
        assert ex.order_pacer.counts()["x-mbx-order-count-2s"] == (0, 60)
        t0 = time.monotonic()
        for i in range(100):  # one after the other, as the core's gateway sends a grid's orders
            await ex.place_order(limit(f"tg-g1-{i}B1", Side.BUY, "0.001", str(40000 - i)))
            await ex.place_order(limit(f"tg-g1-{i}S1", Side.SELL, "0.001", str(60000 + i)))
        elapsed = time.monotonic() - t0
        assert fake.orders_refused == 0
        assert len(fake.engine.open_order_records("main", "BTCUSDT")) == 200
        assert ex.order_pacer.waits >= 1 and elapsed >= 4.0  # 54 per 2 s window: at least 3 window turns
        assert ex.order_pacer.counts()["x-mbx-order-count-1d"][0] >= 200  # Binance's count, from the headers
    finally:
        await ex.close()


async def test_1015_holds_only_new_orders_not_cancels_lookups_or_stop_sells(fake: FakeBinance) -> None:
    """Before: any 429 blocked every REST call for the whole Retry-After, a stop sell's and a cancel's too."""
    ex = make_exchange(fake)
    await ex.start()
    try:
        resting = await ex.place_order(limit("tg-g1-0B1", Side.BUY, "0.001", "40000"))
        assert resting.status is OrderStatus.NEW
        fake.fail_next(429, code=-1015, msg="Too many new orders; current limit is 100 orders per 10 SECOND.",
                       retry_after=2, path="/api/v3/order")
        grid = asyncio.create_task(ex.place_order(limit("tg-g1-1B1", Side.BUY, "0.001", "40001")))
        await asyncio.sleep(0.2)
        assert not grid.done()  # held by the -1015
        t0 = time.monotonic()
        found = await ex.get_order("BTCUSDT", "tg-g1-0B1")
        assert found is not None
        cancelled = await ex.cancel_order("BTCUSDT", "tg-g1-0B1")
        stop = await ex.place_order(limit("tg-s1-1", Side.SELL, "0.001", "49000"))  # crosses: fills at once
        assert time.monotonic() - t0 < 1.0
        assert cancelled.status is OrderStatus.CANCELED
        assert stop.status is OrderStatus.FILLED
        assert not grid.done()
        placed = await asyncio.wait_for(grid, 5)
        assert placed.status is OrderStatus.NEW  # sent once the Retry-After had passed
        assert fake.order_posts["tg-g1-1B1"] == 1  # the refused request never reached the engine
    finally:
        await ex.close()


async def test_a_priority_order_refused_with_1015_is_retried_after_retry_after(fake: FakeBinance) -> None:
    ex = make_exchange(fake)
    await ex.start()
    try:
        fake.fail_next(429, code=-1015, msg="Too many new orders.", retry_after=1, path="/api/v3/order")
        t0 = time.monotonic()
        exit_sell = await ex.place_order(limit("tg-g2-zS1", Side.SELL, "0.001", "49000"))
        assert exit_sell.status is OrderStatus.FILLED
        assert 0.9 <= time.monotonic() - t0 < 3.0
        assert ex.order_pacer.refusals == 1
    finally:
        await ex.close()


async def test_ip_weight_429_still_holds_every_request(fake: FakeBinance) -> None:
    ex = make_exchange(fake)
    await ex.start()
    try:
        fake.fail_next(429, retry_after=1, path="/api/v3/account")
        reading = asyncio.create_task(ex.balances())
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await ex.get_order("BTCUSDT", "nope")  # a lookup: still waits out the IP's Retry-After
        assert time.monotonic() - t0 >= 0.5
        await reading
        assert ex.order_pacer.refusals == 0
    finally:
        await ex.close()


async def test_a_day_limit_far_away_is_a_refusal_not_an_hour_long_wait(fake: FakeBinance) -> None:
    fake.set_order_limits([("DAY", 1, 3)])
    ex: BinanceExchange = make_exchange(fake, max_rate_wait_s=5.0)
    await ex.start()
    try:
        await ex.place_order(limit("tg-g1-0B1", Side.BUY, "0.001", "40000"))
        await ex.place_order(limit("tg-g1-1B1", Side.BUY, "0.001", "40001"))
        with pytest.raises(RateLimited) as info:  # reserve 1 of 3: the third ordinary order waits for tomorrow
            await ex.place_order(limit("tg-g1-2B1", Side.BUY, "0.001", "40002"))
        assert info.value.code == -1015 and info.value.retry_after > 5
        stop = await ex.place_order(limit("tg-s1-1", Side.SELL, "0.001", "60000"))  # the reserve
        assert stop.status is OrderStatus.NEW
        assert fake.orders_refused == 0
        assert sum(1 for o in fake.engine.open_order_records("main", "BTCUSDT") if o.price == D("60000")) == 1
    finally:
        await ex.close()


async def test_orders_used_up_by_another_client_wait_for_the_window(fake: FakeBinance) -> None:
    """The count is per account: another client can use it up. The order gets -1015, waits the Retry-After and
    goes out in the next window; nothing else is held."""
    fake.set_order_limits([("SECOND", 2, 50)])
    ex = make_exchange(fake)
    await ex.start()
    try:
        fake.use_up_order_count()
        t0 = time.monotonic()
        placed = await ex.place_order(limit("tg-g1-0B1", Side.BUY, "0.001", "40000"))
        assert placed.status is OrderStatus.NEW and fake.orders_refused >= 1
        assert time.monotonic() - t0 < 3.5
    finally:
        await ex.close()
