"""Stream lifecycle (issue 14 item 6): serverShutdown, the 24 h connection age, eventStreamTerminated.

web-socket-streams.md and web-socket-api.md: "A single connection ... is only valid for 24 hours"; "A
serverShutdown event will be sent when the server is about to shutdown, resulting in disconnection. Please
establish a new connection as soon as possible to prevent interruption." user-data-stream.md, "Event Stream
Terminated": the subscription has ended. The fake sends these (server_shutdown, max_connection_age_s,
terminate_user_streams); the adapter must switch over without a gap, or resubscribe and reconcile.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

from tests.exchange import test_binance as kit
from tests.fakes.fake_binance import FakeBinance
from tgtrader.core.ports import BalanceUpdate
from tgtrader.types import Fill, OrderStatus, Side, Tick

pytestmark = pytest.mark.timeout(60)
fake, fast_ws = kit.fake, kit.fast_ws  # the fixtures of the adapter's main test module
Recorder, limit, make_exchange, until = kit.Recorder, kit.limit, kit.make_exchange, kit.until


async def _started(fake: FakeBinance, **kw: object) -> tuple[object, kit.Recorder]:
    rec = Recorder()
    ex = make_exchange(fake, **kw)
    ex.set_event_sink(rec)
    await ex.start()
    return ex, rec


async def _fill_through_stream(ex: object, fake: FakeBinance, rec: kit.Recorder, cid: str, price: str) -> None:
    """A resting buy filled by a market move reaches the sink through the user stream."""
    placed = await ex.place_order(limit(cid, Side.BUY, "0.001", price))  # type: ignore[attr-defined]
    assert placed.status is OrderStatus.NEW
    await fake.set_price("BTCUSDT", price)
    await until(lambda: any(isinstance(e, Fill) and e.client_order_id == cid for e in rec.events), timeout=5)


async def test_market_server_shutdown_switches_to_a_new_connection_without_a_gap(fake: FakeBinance) -> None:
    """Before: serverShutdown was ignored; the stream went down when the server closed it, then reconnected."""
    ex, rec = await _started(fake)
    try:
        await ex.subscribe({"BTCUSDT"})  # type: ignore[attr-defined]
        await until(lambda: len(fake.market_conns) == 1)
        fake.server_shutdown(close_after_s=1.5)
        await until(lambda: fake.market_connections_opened == 2, timeout=1.0)  # before the old one closes
        await asyncio.sleep(1.8)
        assert len(fake.market_conns) == 1
        assert not [s for s in rec.status("market") if not s.up]
        assert ex.market_switchovers == 1  # type: ignore[attr-defined]
        await fake.set_price("BTCUSDT", "50010")
        await until(lambda: any(isinstance(x, Tick) and x.bid == D("50009.99") for x in rec.events))
    finally:
        await ex.close()  # type: ignore[attr-defined]


async def test_ws_api_server_shutdown_moves_the_user_stream_without_a_gap(fake: FakeBinance) -> None:
    """Before: the WS-API's serverShutdown was dropped by the library as an unknown message; the user stream
    died with the connection (down, resubscribe, reconcile)."""
    ex, rec = await _started(fake)
    try:
        assert fake.user_subscriptions_opened == 1
        fake.server_shutdown(close_after_s=1.5)
        await until(lambda: fake.user_subscriptions_opened == 2 and fake.ws_api_connections_opened == 2, timeout=1.0)
        await asyncio.sleep(1.8)
        assert len(fake.ws_api_conns) == 1
        assert not [s for s in rec.status("user") if not s.up]
        assert ex.user_switchovers == 1  # type: ignore[attr-defined]
        await _fill_through_stream(ex, fake, rec, "tg-g1-0B1", "49000")
    finally:
        await ex.close()  # type: ignore[attr-defined]


async def test_connections_are_renewed_before_their_maximum_age(fake: FakeBinance) -> None:
    """Before: the WS-API connection carrying the user stream was never renewed, so Binance's 24 h cut (here
    1.5 s) took the user stream down; market sockets were renewed by closing first (a gap)."""
    fake.max_connection_age_s = 1.5
    ex, rec = await _started(fake, proactive_reconnect_s=0.6)
    try:
        await ex.subscribe({"BTCUSDT"})  # type: ignore[attr-defined]
        await asyncio.sleep(3.2)
        assert fake.ws_api_connections_opened >= 3 and fake.market_connections_opened >= 3
        assert not [s for s in rec.status("user") if not s.up]
        assert not [s for s in rec.status("market") if not s.up]
        ex.proactive_reconnect_s = 3600.0  # type: ignore[attr-defined]
        fake.max_connection_age_s = None
        await asyncio.sleep(0.8)  # the last renewal settles on connections the fake no longer ages out
        await _fill_through_stream(ex, fake, rec, "tg-g1-0B1", "49000")
    finally:
        await ex.close()  # type: ignore[attr-defined]


async def test_event_stream_terminated_resubscribes_and_reconciles_fills_and_balances(fake: FakeBinance) -> None:
    """Before: eventStreamTerminated was only logged; the connection stayed up, so the dead subscription looked
    healthy and every later fill went unheard."""
    ex, rec = await _started(fake)
    try:
        await ex.place_order(limit("tg-g1-0B1", Side.BUY, "0.001", "49000"))  # type: ignore[attr-defined]
        assert fake.terminate_user_streams() == 1
        await fake.set_price("BTCUSDT", "49000")  # fills while no subscription is listening
        fake.set_balance("ETH", "7")  # no event: only the account read after the resubscription shows it
        await until(lambda: fake.user_subscriptions_opened == 2, timeout=5)
        await until(lambda: any(isinstance(e, Fill) and e.client_order_id == "tg-g1-0B1" for e in rec.events))
        await until(lambda: any(isinstance(e, BalanceUpdate) and any(b.asset == "ETH" and b.free == D(7)
                                                                     for b in e.balances) for e in rec.events))
        await _fill_through_stream(ex, fake, rec, "tg-g1-1B1", "48000")  # the new subscription hears
    finally:
        await ex.close()  # type: ignore[attr-defined]
