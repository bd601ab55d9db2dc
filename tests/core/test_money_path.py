"""Issue 13, the money path on the real core and the paper venue: fills found per order, exits that finish flat,
/panic that touches only what the bot owns."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from tests.core.conftest import REAL_RULES
from tests.kit import CoreOnPaper, grid_spec
from tests.waiting import wait_for
from tgtrader.core.api import ApiError, GridSpec
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import OrderFilled
from tgtrader.core.grid import Grid, GridConfig
from tgtrader.core.kernel import Timer
from tgtrader.exchange.paper import PAPER_ACCOUNT
from tgtrader.types import Fill, OrderStatus, OrderType, OrderUpdate, PlaceOrder, RejectReason, Side, Tick

STEP = D("0.00001")  # BTCUSDT's step size


def drop_fills(kit: CoreOnPaper, n: int, side: Side | None = None) -> list[Fill]:
    """The next `n` fills (of `side`) never reach the core, as in a user-stream gap."""
    dropped: list[Fill] = []
    sink = kit.paper._sink
    assert sink is not None

    def filtered(event: Any) -> None:
        if isinstance(event, Fill) and len(dropped) < n and (side is None or event.side is side):
            dropped.append(event)
            return
        sink(event)

    kit.paper.set_event_sink(filtered)
    return dropped


async def test_a_fill_missed_in_a_gap_is_recovered_by_order_after_a_later_trade_moved_the_watermark(
        tmp_path: Path) -> None:
    """Issue 13 item 7: the level waited forever once a later trade id of the symbol had been seen."""
    kit = await CoreOnPaper.open(tmp_path)
    gid = await kit.running_grid(grid_spec(lower="40000", upper="60000", n=4))
    g = kit.core.machines.grids[gid]
    dropped = drop_fills(kit, 1, Side.BUY)
    await kit.trade("49000")  # the 50000 buy fills; its fill event is lost
    await kit.trade("44000")  # the 45000 buy fills and streams in: the watermark moves past the lost trade
    assert len(dropped) == 1
    await kit.core.recovery.reconcile()
    await kit.core.idle()
    seen = {f.trade_id for f in await kit.core.store.fills("BTCUSDT")}
    assert dropped[0].trade_id in seen
    bought = [f for f in await kit.paper.my_trades("BTCUSDT") if f.side is Side.BUY]
    assert g.base_held() == sum((f.qty - (f.fee if f.fee_asset == "BTC" else 0) for f in bought), D(0))
    await kit.close()


async def test_an_order_that_ended_short_of_its_fills_gets_its_trades_fetched_without_a_reconcile(
        tmp_path: Path) -> None:
    """Issue 13 item 7, live path: the FILLED update arrives, the fill never does; after a short grace the
    order's trades are fetched by order id."""
    kit = await CoreOnPaper.open(tmp_path, config=CoreConfig(timer_interval_s=0, fill_grace_s=0.05))
    gid = await kit.running_grid(grid_spec(lower="40000", upper="60000", n=4))
    g = kit.core.machines.grids[gid]
    dropped = drop_fills(kit, 1, Side.BUY)
    await kit.trade("49000")
    assert len(dropped) == 1
    before = g.base_held()

    async def recovered() -> bool:
        return dropped[0].trade_id in {f.trade_id for f in await kit.core.store.fills("BTCUSDT")}

    await wait_for(recovered, timeout=5, what="the lost fill fetched by order id")
    await kit.core.idle()
    assert g.base_held() > before
    await kit.close()


class HeldBack:
    """Fills and fill-carrying order updates held back until `release()`: the user stream lags the market stream."""

    def __init__(self, kit: CoreOnPaper) -> None:
        self.kit, self.held = kit, []
        sink = kit.paper._sink
        assert sink is not None
        self.sink = sink
        self.holding = True

        def filtered(event: Any) -> None:
            if self.holding and (isinstance(event, Fill) or (
                    isinstance(event, OrderUpdate) and event.executed_qty > 0)):
                self.held.append(event)
                return
            sink(event)

        kit.paper.set_event_sink(filtered)

    async def release(self) -> None:
        self.holding = False
        for event in self.held:
            self.sink(event)
        await self.kit.core.idle()


async def base_free(kit: CoreOnPaper) -> D:
    b = (await kit.paper.balances()).get("BTC")
    return b.total if b is not None else D(0)


async def test_a_grid_stop_loss_hit_before_the_fills_of_the_same_move_still_sells_all_the_grids_base(
        tmp_path: Path) -> None:
    """Issue 13 item 3: the trigger tick was handled before the buy fills of the same fall; the exit was sized
    from the base seen then, and the late fills' base stayed unsold."""
    kit = await CoreOnPaper.open(tmp_path)
    spec = GridSpec("BTCUSDT", D("40000"), D("60000"), 4, D("1000"), stop_loss=D("41000"), sell_on_stop=True)
    gid = await kit.running_grid(spec)
    g = kit.core.machines.grids[gid]
    held = HeldBack(kit)
    await kit.trade("40500")  # the 50000 and 45000 buys fill, and the stop-loss triggers, in one move
    assert g.state == "stopped" and held.held
    await held.release()
    await kit.trade("40400", "40300")
    assert await base_free(kit) < STEP  # sold until flat (a buy fee taken in base can leave sub-step dust)
    assert g.base_held() < STEP
    assert g.exit.state == "flat", g.exit
    await kit.close()


async def test_a_soft_stop_sells_what_is_free_when_the_balance_shrank_after_it_was_set(tmp_path: Path) -> None:
    """Issue 13 item 9: the soft stop sold the quantity fixed at creation; the trader had sold part by hand,
    Binance refused the whole order, the stop was marked failed and nothing was sold."""
    kit = await CoreOnPaper.open(tmp_path)
    kit.paper.engine.set_balance(PAPER_ACCOUNT, "BTC", D("0.1"))
    view = await kit.core.add_stop("BTCUSDT", D("50000"), "soft")
    assert view.qty == D("0.1")
    kit.paper.engine.set_balance(PAPER_ACCOUNT, "BTC", D("0.04"))  # sold by hand on Binance meanwhile
    await kit.trade("49000")
    await kit.core.idle()
    stop = kit.core.machines.stops[view.id]
    assert stop.state == "done", stop
    assert stop.filled == D("0.04") and await base_free(kit) == 0
    sold = [a for a in await kit.db.outbox.due(2**62, limit=500) if a.kind == "stop-loss"]
    assert sold and D(str(sold[-1].payload["residue"])) == D("0.06") and sold[-1].payload["why_left"] == "not-free"
    await kit.close()


async def bought_by_chase(kit: CoreOnPaper, qty: str) -> None:
    """A /buy that fills: the chase rests at the bid, the market trades down through it."""
    chase = asyncio.create_task(kit.core.chase("BTCUSDT", Side.BUY, D(qty)))
    await wait_for(lambda: any(o.client_order_id.startswith("tg-c") for o in
                               kit.paper.engine.all_orders(PAPER_ACCOUNT)), timeout=5)
    await kit.trade("51000")
    result = await asyncio.wait_for(chase, 5)
    assert result.status == "filled", result


async def traders_account(kit: CoreOnPaper) -> OrderUpdate:
    """Holdings the bot never bought (BTC long-term, the BNB fee float, ETH) and an order placed by hand."""
    eng = kit.paper.engine
    for asset, qty in (("BTC", "0.5"), ("BNB", "2"), ("ETH", "1")):
        eng.set_balance(PAPER_ACCOUNT, asset, D(qty))
    for sym, price in (("ETHUSDT", "3000"), ("BNBUSDT", "400")):
        await kit.paper.subscribe({sym})
        await kit.trade(price, symbol=sym)
    return await kit.paper.place_order(
        PlaceOrder("ETHUSDT", "web_hand_1", Side.SELL, OrderType.LIMIT, D("0.5"), D("3500")))


async def asset_total(kit: CoreOnPaper, asset: str) -> D:
    b = (await kit.paper.balances()).get(asset)
    return b.total if b is not None else D(0)


async def test_panic_sells_only_what_the_bot_owns_and_never_touches_the_traders_coins_or_orders(
        tmp_path: Path) -> None:
    """Issue 13 item 1: /panic market-sold every non-quote asset (long-term holdings, the BNB fee float) and
    cancelled orders placed by hand; the paused grids then reported base that was gone."""
    kit = await CoreOnPaper.open(tmp_path)
    await traders_account(kit)
    gid = await kit.running_grid()
    await bought_by_chase(kit, "0.01")
    g = kit.core.machines.grids[gid]
    assert g.base_held() > 0
    plan = await kit.core.panic_plan()
    assert dict(plan.not_bots) == {"BTC": D("0.5"), "BNB": D("2"), "ETH": D("1")}
    assert plan.foreign_orders == 1
    report = await kit.core.panic(plan.token)
    await kit.core.idle()
    assert not report.failed, report
    assert D("0.5") <= await asset_total(kit, "BTC") < D("0.5") + 2 * STEP  # the bot's sold (to sub-step dust),
    # the trader's kept
    assert await asset_total(kit, "BNB") == D("2") and await asset_total(kit, "ETH") == D("1")
    assert [o.client_order_id for o in await kit.paper.open_orders()] == ["web_hand_1"]
    assert g.state == "stopped" and g.stop_reason == "panic" and g.base_held() < STEP
    await kit.close()


async def test_panic_all_sells_the_account_but_the_protected_assets_after_listing_what_is_not_the_bots(
        tmp_path: Path) -> None:
    kit = await CoreOnPaper.open(tmp_path)
    await traders_account(kit)
    await kit.running_grid()
    plan = await kit.core.panic_plan("all")
    assert plan.scope == "all" and dict(plan.protected) == {"BNB": D("2")}
    assert dict(plan.not_bots) == {"BTC": D("0.5"), "ETH": D("1")}
    report = await kit.core.panic(plan.token)
    await kit.core.idle()
    assert await asset_total(kit, "BTC") < D("0.0001")
    assert await asset_total(kit, "BNB") == D("2")  # the fee float is never sold
    assert await asset_total(kit, "ETH") == D("0.5")  # the free part; the hand-placed order keeps its 0.5
    assert [o.client_order_id for o in await kit.paper.open_orders()] == ["web_hand_1"]
    assert report.elapsed_s < 10
    await kit.close()


async def test_a_partly_filled_level_after_pause_and_resume_sells_what_it_holds_not_a_second_full_buy(
        tmp_path: Path) -> None:
    """Issue 13 item 11: the remainder of a 98 % filled buy is below the filters, so on resume the level bought a
    full quantity again (twice the planned capital on that level)."""
    kit = await CoreOnPaper.open(tmp_path)
    gid = await kit.running_grid()
    g = kit.core.machines.grids[gid]
    buy = next(o for o in g.orders.values() if o.side is Side.BUY and o.price == D("50000"))
    part = (buy.qty * D("0.98")).quantize(D("0.00001"))
    kit.paper.feed_trade("BTCUSDT", D("49999"), kit.clock.advance(), qty=part)
    await kit.core.idle()
    iv = g.intervals[buy.interval]
    assert part - STEP < iv.base <= part  # what it bought (less a fee taken in base)
    held = iv.base
    await kit.core.pause_grid(gid)
    await kit.core.idle()
    await kit.core.resume_grid(gid)
    await kit.core.idle()
    mine = [o for o in await kit.paper.open_orders("BTCUSDT") if o.client_order_id == iv.order]
    assert len(mine) == 1 and mine[0].side is Side.SELL and mine[0].orig_qty == held.quantize(STEP, "ROUND_DOWN"), mine
    await kit.close()


def deaf_to_ticks(kit: CoreOnPaper) -> None:
    """The core's market stream is silent; the exchange's market keeps moving."""
    sink = kit.paper._sink
    assert sink is not None
    kit.paper.set_event_sink(lambda e: None if isinstance(e, Tick) else sink(e))


async def test_a_soft_stops_fallback_refused_as_would_trigger_sells_now(tmp_path: Path) -> None:
    """Issue 13 item 10a: the market stream went silent, the soft stop placed its hard twin, Binance refused it
    ("would trigger immediately": the price had already crossed) and the position was left unprotected."""
    kit = await CoreOnPaper.open(tmp_path, config=CoreConfig(timer_interval_s=0, soft_stop_silence_s=30))
    kit.paper.engine.set_balance(PAPER_ACCOUNT, "BTC", D("0.1"))
    view = await kit.core.add_stop("BTCUSDT", D("50000"), "soft")
    deaf_to_ticks(kit)
    await kit.trade("49000")  # the core does not see it
    kit.core.post(Timer(kit.clock.advance(31_000)))
    await kit.core.idle()
    stop = kit.core.machines.stops[view.id]
    assert await base_free(kit) == 0 and stop.state == "done", stop
    await kit.close()


async def test_a_hard_stop_left_resting_below_a_gap_is_cancelled_and_sold_at_market(tmp_path: Path) -> None:
    """Issue 13 item 10b: the STOP_LOSS_LIMIT triggered, the market gapped through its limit, and the limit sell
    rested unfilled while the price kept falling; nobody watched it."""
    kit = await CoreOnPaper.open(tmp_path, config=CoreConfig(timer_interval_s=0, stop_rest_s=20))
    kit.paper.engine.set_balance(PAPER_ACCOUNT, "BTC", D("0.1"))
    view = await kit.core.add_stop("BTCUSDT", D("50000"), "hard")
    await kit.core.idle()  # the stop order rests on the exchange before the gap
    kit.paper.feed_trade("BTCUSDT", D("49000"), kit.clock.advance(), qty=D(0))  # a gap: triggered, nothing
    await kit.core.idle()                                                      # traded at its limit (49750)
    assert await base_free(kit) == D("0.1")
    await kit.trade(*(["48900"] * 25))  # 25 s below the limit
    stop = kit.core.machines.stops[view.id]
    assert await base_free(kit) == 0 and stop.state == "done", stop
    await kit.close()


async def test_start_re_checks_the_preview_at_the_current_price(tmp_path: Path) -> None:
    """Issue 13 item 12: a grid previewed above its stop-loss was started after the price fell below it, and bought
    and sold at once."""
    kit = await CoreOnPaper.open(tmp_path)
    spec = GridSpec("BTCUSDT", D("40000"), D("60000"), 4, D("1000"), stop_loss=D("48000"), sell_on_stop=True)
    view = await kit.core.preview_grid(spec)
    assert view.ok
    await kit.trade("47000")  # the price falls below the stop-loss before START is pressed
    with pytest.raises(ApiError, match="stop-loss 48000 is not below the price 47000"):
        await kit.core.start_grid(view.token)
    assert not kit.core.machines.grids and not await kit.paper.open_orders()
    await kit.trade("52000")
    view = await kit.core.preview_grid(grid_spec())
    await kit.trade("56000")  # across the 55000 level: the start buy would differ from the preview
    with pytest.raises(ApiError, match="across a grid level"):
        await kit.core.start_grid(view.token)
    await kit.close()


async def test_a_fee_paid_in_bnb_is_valued_at_bnbs_price_even_when_bnb_is_not_streamed(tmp_path: Path) -> None:
    """Issue 15: a BNB fee was estimated from the configured fee rate unless BNBUSDT was streamed (2.00 booked
    against 1.50 paid)."""
    kit = await CoreOnPaper.open(tmp_path)
    kit.paper.feed_trade("BNBUSDT", D("300"), kit.clock.advance())  # the venue knows BNB's price...
    await kit.core.idle()
    kit.core.last_prices.pop("BNBUSDT", None)  # ...the core streams only BTCUSDT
    await kit.core.rules_for("BTCUSDT")
    # a trade of ours whose commission was paid in BNB: 0.005 BNB = 1.50 USDT (the fee-rate guess: 0.1 % of 2000)
    fill = Fill("BTCUSDT", 900001, "tg-m1", Side.BUY, D("50000"), D("0.04"), D("0.005"), "BNB", False,
                kit.clock.advance())
    kit.core.post(fill)
    await kit.core.idle()
    [ev] = [e for e in kit.recorder.of(OrderFilled) if e.trade_id == 900001]
    assert ev.fee_quote == D("1.5")
    await kit.close()


async def test_a_slow_grid_start_never_holds_back_a_stop(tmp_path: Path) -> None:
    """A paced grid start (Binance's ORDERS limits can spread 200 orders over 20 s) used to hold the kernel: every
    event behind it waited, a stop trigger included. Orders now go out off the event loop, stop sells at once."""
    kit = await CoreOnPaper.open(tmp_path)
    kit.paper.engine.set_balance(PAPER_ACCOUNT, "BTC", D("0.1"))
    view = await kit.core.add_stop("BTCUSDT", D("51000"), "soft")
    await kit.core.idle()
    real = kit.paper.place_order
    sent: dict[str, float] = {}

    async def paced(order: PlaceOrder) -> OrderUpdate:
        if order.client_order_id.startswith("tg-g"):
            await asyncio.sleep(0.2)  # the pacer waits for the next window
        sent[order.client_order_id] = asyncio.get_running_loop().time()
        return await real(order)

    kit.paper.place_order = paced  # type: ignore[method-assign]
    await kit.core.start_grid((await kit.core.preview_grid(grid_spec(n=20, investment="3000"))).token)
    t0 = asyncio.get_running_loop().time()
    kit.paper.feed_trade("BTCUSDT", D("50900"), kit.clock.advance())  # the stop triggers during the start
    await wait_for(lambda: any(c.startswith("tg-s") for c in sent), 5, "the stop's sell sent")
    stop_sent = next(t for c, t in sent.items() if c.startswith("tg-s"))
    assert stop_sent - t0 < 0.5 and sum(c.startswith("tg-g") for c in sent) < 20, sent
    await kit.core.idle()
    assert kit.core.machines.stops[view.id].state == "done"
    await kit.close()


async def test_a_grid_losing_to_fees_per_round_trip_starts_only_when_the_trader_accepts_it(tmp_path: Path) -> None:
    """Issue 13 item 12: a grid whose profit per grid after fees is <= 0 is refused unless explicitly overridden."""
    kit = await CoreOnPaper.open(tmp_path)
    tight = GridSpec("BTCUSDT", D("51900"), D("52100"), 4, D("1000"))  # 50 apart: 0.1 % steps, 0.2 % in fees
    assert any("profit per grid" in p for p in (await kit.core.preview_grid(tight)).problems)
    view = await kit.core.preview_grid(GridSpec("BTCUSDT", D("51900"), D("52100"), 4, D("1000"), accept_loss=True))
    assert view.ok, view.problems
    await kit.close()


async def test_a_fills_alert_is_written_in_the_fills_own_transaction(tmp_path: Path) -> None:
    """Issue 16 item 5 (the core half): a fill, its round trip and grid state changes are written to the outbox by
    the reaction that stores them, so a crash right after the fill cannot lose the alert; no front end needed."""
    kit = await CoreOnPaper.open(tmp_path)
    await kit.running_grid()
    await kit.trade("49000")
    rows = [r for r in await kit.db.outbox.due(2**62, limit=500) if r.kind == "events"]
    kinds = [e["type"] for r in rows for e in r.payload["events"]]  # type: ignore[index, union-attr]
    assert "OrderFilled" in kinds and "GridStateChanged" in kinds
    fills = {f.trade_id for f in await kit.core.store.fills("BTCUSDT")}
    alerted = {e["trade_id"] for r in rows for e in r.payload["events"] if e["type"] == "OrderFilled"}  # type: ignore[index, union-attr]
    assert alerted == fills  # every stored fill has its alert row, and only those
    await kit.close()


async def test_a_cancel_never_overtakes_the_urgent_place_of_the_same_order(tmp_path: Path) -> None:
    """Stop orders go out at once in their own task; a /stop cancel right after must not reach the exchange before
    the stop's order does (it would find nothing, and the order would then rest unprotected by any machine)."""
    kit = await CoreOnPaper.open(tmp_path)
    kit.paper.engine.set_balance(PAPER_ACCOUNT, "BTC", D("0.1"))
    real = kit.paper.place_order

    async def slow(order: PlaceOrder) -> OrderUpdate:
        await asyncio.sleep(0.3)
        return await real(order)

    kit.paper.place_order = slow  # type: ignore[method-assign]
    view = await kit.core.add_stop("BTCUSDT", D("50000"), "hard")
    await kit.core.cancel_stop(view.id)  # while the stop's order is still on its way
    await kit.core.idle()
    assert await kit.paper.open_orders("BTCUSDT") == []  # cancelled after it landed, not before
    await kit.close()


def test_a_grid_order_expired_by_self_trade_prevention_is_not_placed_again_in_a_loop() -> None:
    """Issue 14 item 5: a grid order Binance expires by self-trade prevention (it would have traded with another of
    our orders) was placed again at once, to expire again: now the interval waits, with an alert."""
    g = Grid(1, GridConfig("BTCUSDT", D("40000"), D("60000"), 4, D("1000")), REAL_RULES["BTCUSDT"])
    intents = g.start(D("52000"), 0)
    buy = next(i for i in intents if isinstance(i, PlaceOrder) and i.order_type is OrderType.LIMIT)
    out = g.on_order_update(OrderUpdate(buy.symbol, buy.client_order_id, buy.side, buy.order_type, OrderStatus.EXPIRED,
                                        buy.price or D(0), buy.qty, D(0), ts_ms=1, reject_reason=RejectReason.SELF_TRADE))
    assert not [i for i in out if isinstance(i, PlaceOrder)]
    assert any(getattr(i, "kind", "") == "order-rejected" for i in out)
