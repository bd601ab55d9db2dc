"""Exchange faults against the real bot process: WebSocket drops during fills, refused reconnects,
429/418-free REST errors (429, 500, 502, 503), a lost order answer, a late answer, and -1021 clock skew.
Adapter-level unit coverage of the same faults lives in tests/exchange/test_binance.py; here the whole
process (adapter + core + store + alerts) must come out with the issue-7 invariants intact."""

from __future__ import annotations

import asyncio
import time

from tests.reliability.harness import Harness
from tests.reliability.test_crash_restart import assert_invariants
from tests.waiting import wait_for


async def test_websocket_drops_during_fill_bursts(harness: Harness) -> None:
    h = harness
    await h.start_bot()
    await h.create_grid("BTCUSDT", "49000", "51000", 8, "800")
    assert await h.settle(quiet_s=0.5)
    market_before = h.binance.market_connections_opened
    for price in ("49300", "50800", "49100"):
        await h.move("BTCUSDT", price)  # a burst of fills...
        await h.binance.drop_websockets()  # ...whose user-data events are cut off mid-flight
        await asyncio.sleep(0.3)
    h.binance.refuse_ws_for(2.0)
    await h.binance.drop_websockets()
    # The market socket must come back on the bot's own bounded schedule once the refusal ends (issue 18:
    # python-binance's jittered reconnects could leave it down for 8 s and more): wait for exactly that.
    deadline = time.monotonic() + 20
    while h.binance.market_connections_opened <= market_before:
        assert time.monotonic() < deadline, "the market stream was not reopened within 20 s"
        await asyncio.sleep(0.05)
    await h.move("BTCUSDT", "50300")
    assert await h.settle(timeout=45, quiet_s=2.0)
    assert_invariants(h, outbox=False)
    assert len(h.fake_fills()) >= 6


async def test_rest_errors_lost_and_late_answers_on_order_placement(harness: Harness) -> None:
    h = harness
    await h.start_bot()
    await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
    assert await h.settle(quiet_s=0.5)
    order = "/api/v3/order"
    steps = [
        (lambda: h.binance.fail_next(429, retry_after=1, path=order), "49400"),
        (lambda: h.binance.fail_next(503, path=order), "50100"),
        (lambda: h.binance.fail_next(500, path=order), "49400"),
        (lambda: h.binance.fail_next(502, path=order), "50100"),
        (lambda: h.binance.lose_next_order_response(), "49400"),
        (lambda: h.binance.lose_next_order_response(), "50100"),
    ]
    for inject, price in steps:
        inject()
        await h.move("BTCUSDT", price)
        assert await h.settle(timeout=40, quiet_s=0.7), f"no settle after fault before {price}"
        assert_invariants(h, outbox=False)
    assert sum(h.binance.order_posts.values()) == len(h.binance.order_posts)  # no id POSTed twice
    assert h.binance.requests["POST /api/v3/order"] > len(h.binance.order_posts)  # the faults were hit


async def test_clock_skew_minus_1021_is_resynced(harness: Harness) -> None:
    h = harness
    await h.start_bot()
    await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
    assert await h.settle(quiet_s=0.5)
    syncs = h.binance.requests["GET /api/v3/time"]
    h.binance.clock_offset_ms = -4000  # the exchange's clock is now 4 s behind the bot: -1021 on every signed call
    await h.move("BTCUSDT", "49400")
    assert await h.settle(timeout=30, quiet_s=0.7)
    await h.move("BTCUSDT", "50100")
    assert await h.settle(timeout=30, quiet_s=0.7)
    assert_invariants(h, outbox=False)
    assert len(h.fake_fills()) >= 3
    assert h.binance.requests["GET /api/v3/time"] > syncs  # the bot re-synced its clock after -1021


async def test_fills_lost_in_a_stream_gap_are_recovered_after_a_later_rest_fill(harness: Harness) -> None:
    """Regression (found by bench/chaos.py): fills cut off on the user stream, then a LATER fill of the same
    symbol learned from an order's REST answer moved the last-trade-id watermark past the gap, so the
    reconciliation after the reconnect (and after restarts) started above the lost fills: lost forever."""
    h = harness
    await h.start_bot()
    await h.create_grid("BTCUSDT", "48000", "49990", 4, "400")  # all buys below the price
    assert await h.settle(quiet_s=0.5)
    h.binance.mute_user_stream = True  # events are generated but never delivered: a silent gap
    assert await h.move("BTCUSDT", "48900") >= 2  # two buys fill; the bot does not hear of it
    await h.move("BTCUSDT", "50000")
    # a second grid on the same symbol: its market start buy fills in the REST answer (a later trade id)
    await h.create_grid("BTCUSDT", "50010", "52000", 4, "400")
    newest = max(f.trade_id for f in h.binance.trades("BTCUSDT"))  # that start buy
    await wait_for(lambda: any(int(t) == newest for _, t, *_ in h.db_fills()), 20,
                   f"the second grid's start buy (trade {newest}) stored from its REST answer, before the reconnect")
    h.binance.mute_user_stream = False
    await h.binance.drop_websockets()  # reconnect -> reconciliation
    assert await h.settle(timeout=40, quiet_s=0.7)
    assert_invariants(h, outbox=False)


async def test_ip_ban_418_halts_every_request_then_trading_resumes_whole(harness: Harness) -> None:
    """A 418 on a counter order: the trader is alerted, nothing is sent while the ban lasts (Binance would
    lengthen it), the grid keeps running on the orders resting on the exchange, fills made during the ban are
    recovered, and when the ban is over the refused order is placed: every interval has its one order again,
    nothing was POSTed twice, and the trader is told."""
    h = harness
    await h.start_bot()
    gid = await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
    assert await h.settle(quiet_s=0.5)
    h.binance.fail_next(418, retry_after=4, path="/api/v3/order")
    posts = h.binance.requests["POST /api/v3/order"]
    await h.move("BTCUSDT", "49400")  # a buy fills; its counter sell is answered 418
    await wait_for(lambda: h.binance.requests["POST /api/v3/order"] > posts, 20,
                   "the counter sell POSTed and answered 418 (the ban has begun)")
    during = sum(h.binance.requests.values())
    await h.move("BTCUSDT", "50600")  # fills while banned: the exchange executes resting orders anyway
    await asyncio.sleep(2.0)  # quiet period inside the 4 s ban: nothing may be sent (would lengthen a real ban)
    assert sum(h.binance.requests.values()) == during, "requests were sent during the ban"
    assert "running" in (await h.command(f"/grid show {gid}")).lower()
    await h.move("BTCUSDT", "49600")
    await h.telegram.wait_for(lambda: "BAN OVER" in "\n".join(h.telegram.texts_to(h.chat_id)), timeout=20)
    assert "IP BANNED" in "\n".join(h.telegram.texts_to(h.chat_id))
    assert await h.settle(timeout=40, quiet_s=1.0)
    assert_invariants(h, outbox=False)
    assert sum(h.binance.order_posts.values()) == len(h.binance.order_posts)  # no id POSTed twice
