"""TradingCore under exchange faults: lost answers, rejections, bans, stream drops, silent market."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D
from typing import Any

import pytest

from tgtrader.core.api import ApiError, GridSpec
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import ErrorEvent, EventBus, OrderRejected, StreamDown, StreamUp
from tgtrader.core.kernel import Timer as _Timer
from tgtrader.core.ports import StreamStatus
from tgtrader.core.service import TradingCore
from tgtrader.errors import ExchangeUnavailable, InsufficientBalance, IpBanned, OrderStatusUnknown, WouldMatch
from tgtrader.exchange.paper import PAPER_ACCOUNT, PaperExchange
from tgtrader.store import Database
from tgtrader.store.core_store import CoreStore
from tgtrader.types import OrderType, PlaceOrder, Side

from .conftest import REAL_RULES

T0 = 1_700_000_000_000
SPEC = GridSpec("BTCUSDT", D("40000"), D("60000"), 4, D("1000"))


class Flaky(PaperExchange):
    """The real paper exchange with scripted failures on place_order."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        # per call: "ok", "lost-after" (placed, answer lost), "lost-before", "ban", "nofunds",
        # "lost-hidden" (placed, answer lost, and invisible to lookups for `hidden_s`, as Binance's queries can be)
        self.script: list[str] = []
        self.calls: list[str] = []
        self.hidden: dict[str, float] = {}  # client order id -> monotonic time until which lookups miss it
        self.hidden_s = 0.3

    async def place_order(self, order: PlaceOrder):  # type: ignore[override]
        self.calls.append(order.client_order_id)
        action = self.script.pop(0) if self.script else "ok"
        if action == "lost-before":
            raise OrderStatusUnknown("timeout")
        if action == "ban":
            raise IpBanned("banned", retry_after=0.3)
        if action == "nofunds":
            raise InsufficientBalance("Account has insufficient balance for requested action.")
        upd = await super().place_order(order)
        if action == "lost-after":
            raise OrderStatusUnknown("timeout")
        if action == "lost-hidden":
            self.hidden[order.client_order_id] = time.monotonic() + self.hidden_s
            raise OrderStatusUnknown("timeout", settle_after_s=1.0)  # the venue's bound: absent proves nothing before
        return upd

    async def get_order(self, symbol: str, client_order_id: str):  # type: ignore[override]
        if time.monotonic() < self.hidden.get(client_order_id, 0.0):
            return None
        return await super().get_order(symbol, client_order_id)


async def make(usdt: str = "10000") -> tuple[TradingCore, Flaky, list, list[int]]:
    db = await Database.open(":memory:")
    paper = Flaky(db, rules=REAL_RULES, initial_balances={"USDT": D(usdt)})
    events: list = []
    bus = EventBus()
    bus.subscribe(events.append)
    now = [T0]
    core = TradingCore(paper, CoreStore(db), bus, CoreConfig(timer_interval_s=0, soft_stop_silence_s=30), clock_ms=lambda: now[0])
    await core.start()
    await paper.subscribe({"BTCUSDT"})
    paper.feed_trade("BTCUSDT", D("52000"), now[0])
    await core.idle()
    return core, paper, events, now


async def test_lost_answers_are_looked_up_never_duplicated() -> None:
    core, paper, events, now = await make()
    paper.script = ["ok", "lost-after", "lost-before", "ok"]
    await core.start_grid((await core.preview_grid(SPEC)).token)
    await core.idle()
    opened = await paper.open_orders("BTCUSDT")
    cids = [o.client_order_id for o in opened]
    assert len(cids) == len(set(cids)) == 4
    # the "lost-before" order was sent again with the same id; the "lost-after" one was not resent
    assert len(paper.calls) == len(set(paper.calls)) + 1
    assert sorted((o.side.value, o.price) for o in await core.open_orders()) == sorted(
        (o.side.value, o.price) for o in opened)
    await core.stop()


async def test_insufficient_balance_pauses_grid_with_reason() -> None:
    core, paper, events, now = await make()
    gid = (await core.start_grid((await core.preview_grid(SPEC)).token)).id
    await core.idle()
    paper.script = ["nofunds"]
    now[0] += 1000
    paper.feed_trade("BTCUSDT", D("49000"), now[0])  # buy at 50000 fills; its counter sell is refused
    await core.idle()
    assert any(isinstance(e, OrderRejected) for e in events)
    assert any(isinstance(e, ErrorEvent) and e.severity == "insufficient-balance" for e in events)
    g = await core.grid(gid)
    assert g.state == "paused" and g.stop_reason == "insufficient balance"
    assert await paper.open_orders("BTCUSDT") == []
    await core.resume_grid(gid)  # re-places every order, including the refused sell
    await core.idle()
    opened = await paper.open_orders("BTCUSDT")
    assert any(o.side is Side.SELL and o.price == D("55000") for o in opened) and len(opened) == 4
    await core.stop()


async def test_ban_stops_sending_then_resumes_with_the_refused_orders() -> None:
    """418: alert, nothing sent while banned, the grid keeps its state (its resting orders still work); when
    the ban is over the refused counter order is placed, with a BAN OVER alert."""
    core, paper, events, now = await make()
    gid = (await core.start_grid((await core.preview_grid(SPEC)).token)).id
    await core.idle()
    paper.script = ["ban"]
    now[0] += 1000
    paper.feed_trade("BTCUSDT", D("49000"), now[0])  # buy at 50000 fills -> counter sell -> 418
    await core.idle()
    assert any(isinstance(e, ErrorEvent) and e.severity == "ban" for e in events)
    assert (await core.grid(gid)).state == "running"
    calls = len(paper.calls)
    await core.pause_grid(gid)  # a cancel while banned is not sent either
    await core.resume_grid(gid)
    await core.idle()
    assert len(paper.calls) == calls and len(await paper.open_orders("BTCUSDT")) == 3
    now[0] += 1000  # the ban is over on the core's clock; _BanOver fires on the loop's
    await asyncio.sleep(0.6)
    await core.idle()
    assert any(isinstance(e, ErrorEvent) and e.severity == "ban-over" for e in events)
    opened = await paper.open_orders("BTCUSDT")
    assert any(o.side is Side.SELL and o.price == D("55000") for o in opened) and len(opened) == 4
    assert sorted(o.client_order_id for o in opened) == sorted(o.client_order_id for o in await core.open_orders())
    assert len(paper.calls) == calls + 1  # only the refused sell: the resting orders were kept, not re-placed
    await core.stop()


async def test_stream_status_becomes_bus_events() -> None:
    core, paper, events, now = await make()
    core.post(StreamStatus("market", False, "socket closed", ts_ms=T0 + 1000))
    core.post(StreamStatus("market", True, "", recovered_fills=2, ts_ms=T0 + 6000))
    await core.idle()
    down = [e for e in events if isinstance(e, StreamDown)]
    up = [e for e in events if isinstance(e, StreamUp) and e.stream == "market"]
    assert down and down[0].reason == "socket closed"
    assert up and up[0].down_for_s == 5.0 and up[0].recovered_fills == 2
    await core.stop()


async def test_soft_stop_falls_back_to_hard_when_market_is_silent() -> None:
    core, paper, events, now = await make()
    await paper.deposit("BTC", D("0.01"))
    view = await core.add_stop("BTCUSDT", D("45000"))
    assert view.kind == "soft"
    now[0] += 31_000
    core.post(_Timer(now[0]))
    await core.idle()
    stops = await core.list_stops()
    assert stops[0].state == "fallback-hard" and stops[0].kind == "hard"
    opened = await paper.open_orders("BTCUSDT")
    assert [o.order_type for o in opened] == [OrderType.STOP_LOSS_LIMIT]
    assert await paper.db.outbox.pending_count() >= 1
    # the exchange triggers it
    now[0] += 1000
    paper.feed_trade("BTCUSDT", D("44000"), now[0])
    await core.idle()
    stops = await core.list_stops()
    assert stops[0].state == "done"
    await core.stop()


async def test_unknown_and_foreign_orders_are_tolerated() -> None:
    core, paper, events, now = await make()
    await paper.place_order(PlaceOrder("BTCUSDT", "web_manual_1", Side.BUY, OrderType.LIMIT, D("0.001"), D("30000")))
    await core.idle()
    assert any(o.owner == "foreign" for o in await core.open_orders())
    await core.stop()


async def test_exchange_unavailable_on_place_is_a_rejection() -> None:
    core, paper, events, now = await make()

    async def down(order: PlaceOrder):  # type: ignore[no-untyped-def]
        raise ExchangeUnavailable("503")

    paper.place_order = down  # type: ignore[method-assign]
    gid = (await core.start_grid((await core.preview_grid(SPEC)).token)).id
    await core.idle()
    assert any(isinstance(e, OrderRejected) for e in events)
    assert (await core.grid(gid)).state == "paused"  # the start buy failed: paused with the reason
    await core.stop()


async def test_a_stop_triggered_during_a_ban_sells_when_the_ban_ends() -> None:
    """The stop's market sell is held back (nothing is sent while banned) and goes out, once, afterwards."""
    core, paper, events, now = await make()
    await paper.deposit("BTC", D("0.01"))
    await core.add_stop("BTCUSDT", D("45000"))
    paper.script = ["ban"]
    now[0] += 1000
    paper.feed_trade("BTCUSDT", D("44000"), now[0])  # triggers: market sell -> 418
    await core.idle()
    assert any(isinstance(e, ErrorEvent) and e.severity == "ban" for e in events)
    calls = len(paper.calls)
    now[0] += 100
    paper.feed_trade("BTCUSDT", D("43900"), now[0])
    await core.idle()
    assert len(paper.calls) == calls  # held back, not re-sent while banned
    assert (await core.list_stops())[0].state != "failed"
    now[0] += 1000
    await asyncio.sleep(0.6)
    await core.idle()
    assert len(paper.calls) == calls + 1 and paper.calls[-1] == paper.calls[-2]  # the same client order id
    assert (await core.list_stops())[0].state == "done"
    assert (await paper.balances())["BTC"].free == 0
    await core.stop()


async def test_a_would_match_refusal_in_any_wording_reprices_the_chase_instead_of_going_to_market() -> None:
    """Issue 12/13: the core recognised "would immediately match" by message text; the Binance adapter words it
    "The maker-only order ... would have traded immediately", so on live every chase went to market at once."""
    core, paper, events, now = await make()
    paper.script = []
    real_place = paper.place_order
    refused: list[str] = []

    async def refuse_first_maker(order: PlaceOrder):  # type: ignore[no-untyped-def]
        if order.order_type is OrderType.LIMIT_MAKER and not refused:
            refused.append(order.client_order_id)
            raise WouldMatch("The maker-only order (buy 0.01 BTCUSDT) would have traded immediately, "
                             "so Binance did not place it.")
        return await real_place(order)

    paper.place_order = refuse_first_maker  # type: ignore[method-assign]
    chase = asyncio.create_task(core.chase("BTCUSDT", Side.BUY, D("0.01")))
    for _ in range(50):
        await core.idle()
        if refused or chase.done():
            break
        await asyncio.sleep(0.01)
    now[0] += 1000
    paper.feed_trade("BTCUSDT", D("51990"), now[0])  # the market moves: the chase rests at the new book
    await core.idle()
    placed = [o for o in paper.engine.all_orders(PAPER_ACCOUNT) if o.client_order_id != refused[0]]
    assert refused and placed, "no second order after the refusal"
    assert placed[0].order_type is OrderType.LIMIT_MAKER  # re-priced maker order, not a MARKET
    chase.cancel()
    await core.stop()


async def test_a_buy_with_max_below_the_market_never_pays_more_than_max() -> None:
    """Issue 13 item 5: at the limit the chase went to MARKET (a buy with max 40,000 filled at 52,000)."""
    core, paper, events, now = await make()
    chase = asyncio.create_task(core.chase("BTCUSDT", Side.BUY, D("0.01"), D("51000")))
    for _ in range(1, 30):  # many chase steps pass with the market at 52,000
        now[0] += 6000
        core.post(_Timer(now[0]))
        await core.idle()
        await asyncio.sleep(0)
    orders = paper.engine.all_orders(PAPER_ACCOUNT)
    assert orders and all(o.order_type is OrderType.LIMIT_MAKER and o.price <= D("51000") for o in orders)
    assert not chase.done()  # resting at the limit, waiting for the market
    paper.feed_trade("BTCUSDT", D("50990"), now[0] + 1)  # the market comes down to it: filled at the limit
    result = await asyncio.wait_for(chase, 5)
    assert result.status == "filled" and result.avg_price is not None and result.avg_price <= D("51000")
    await core.stop()


async def test_panic_stops_running_chases_so_nothing_rests_again() -> None:
    """Issue 13 item 2: a /buy chase saw panic's exchange-side cancel, rested again and filled after PANIC done."""
    core, paper, events, now = await make()
    chase = asyncio.create_task(core.chase("BTCUSDT", Side.BUY, D("0.01")))
    for _ in range(50):
        await core.idle()
        if await paper.open_orders("BTCUSDT"):
            break
        await asyncio.sleep(0.01)
    plan = await core.panic_plan()
    report = await core.panic(plan.token)
    await core.idle()
    assert any("stopped chase" in line for line in report.succeeded)
    result = await asyncio.wait_for(chase, 5)
    assert result.status == "cancelled" and result.filled_qty == 0
    now[0] += 6000
    core.post(_Timer(now[0]))
    await core.idle()
    assert await paper.open_orders("BTCUSDT") == []  # nothing rests again after the panic
    await core.stop()


async def test_a_stop_loss_at_or_above_the_market_is_refused_not_turned_into_a_take_profit() -> None:
    """Issue 13 item 8: /stop SYMBOL PRICE became a take-profit (a resting sell above the market) when the market
    had already crossed the price by the time the command was handled. A take-profit is asked for explicitly."""
    core, paper, events, now = await make(usdt="10000")
    paper.engine.set_balance(PAPER_ACCOUNT, "BTC", D("0.1"))
    with pytest.raises(ApiError, match="stop-loss must be below the market"):
        await core.add_stop("BTCUSDT", D("53000"))  # the market is at 52,000
    assert await core.list_stops() == []
    with pytest.raises(ApiError, match="take-profit must be above the market"):
        await core.add_stop("BTCUSDT", D("51000"), kind="tp")
    tp = await core.add_stop("BTCUSDT", D("53000"), kind="tp")
    assert tp.purpose == "take-profit" and tp.kind == "hard"  # a resting limit sell at the price
    await core.stop()


async def test_an_order_whose_answer_was_lost_is_not_resent_while_it_may_exist() -> None:
    """Issue 14 item 1: absent from one lookup right after a lost answer, the order was sent again; Binance refuses
    a repeated client order id only while the first is open, and a query may not see a just-accepted order, so a
    MARKET order could execute twice. Now it is looked up until its fate is provable."""
    core, paper, events, now = await make()
    paper.script = ["lost-hidden"]  # the grid's start MARKET buy executes, its answer is lost, lookups miss it 0.3 s
    await core.start_grid((await core.preview_grid(SPEC)).token)
    await core.idle()  # waits for the lookups too
    start = paper.calls[0]
    executed = [o for o in paper.engine.all_orders(PAPER_ACCOUNT) if o.client_order_id == start]
    assert paper.calls.count(start) == 1 and len(executed) == 1  # bought once, not twice
    assert (await core.grid(1)).state == "running"
    await core.stop()


def lose_first_place(paper: Flaky, settle_after_s: float = 0.4) -> None:
    """The first order's request never reaches the exchange and its answer is lost; later ones go through."""

    async def lost_with_bound(order: PlaceOrder):  # type: ignore[no-untyped-def]
        paper.calls.append(order.client_order_id)
        if len(paper.calls) == 1:
            raise OrderStatusUnknown("timeout", settle_after_s=settle_after_s)
        return await PaperExchange.place_order(paper, order)

    paper.place_order = lost_with_bound  # type: ignore[method-assign]


async def test_an_order_still_absent_after_the_venues_bound_is_sent_again_with_the_same_id() -> None:
    core, paper, events, now = await make()
    lose_first_place(paper)
    t0 = time.monotonic()
    await core.start_grid((await core.preview_grid(SPEC)).token)
    await core.idle()
    start = paper.calls[0]
    assert time.monotonic() - t0 >= 0.4  # not before the venue's bound
    assert paper.calls.count(start) == 2  # sent once more, with the same client order id
    assert len([o for o in paper.engine.all_orders(PAPER_ACCOUNT) if o.client_order_id == start]) == 1
    assert (await core.grid(1)).state == "running"
    await core.stop()


async def test_panic_stops_pending_resends_of_lost_answers() -> None:
    """Issue 13: /panic stops every order generator first, pending resends included: an order whose answer was
    lost is still looked up, but never sent again after the panic."""
    core, paper, events, now = await make()
    lose_first_place(paper)
    await core.start_grid((await core.preview_grid(SPEC)).token)
    while not paper.calls:  # orders go out off the event loop
        await asyncio.sleep(0.01)
    start = paper.calls[0]
    plan = await core.panic_plan()
    report = await core.panic(plan.token)
    await core.idle()
    assert "no lost order will be sent again" in report.succeeded
    assert paper.calls.count(start) == 1  # looked up until provably absent, then not sent again
    assert await paper.open_orders() == []
    await core.stop()
