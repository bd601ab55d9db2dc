"""TradingCore on the real PaperExchange and a real (in-memory / temp file) database."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path

import pytest

from tests.kit import Clock
from tgtrader.core.api import ApiError, GridSpec
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import EventBus, GridRoundTrip, OrderFilled, StreamUp
from tgtrader.core.service import TradingCore
from tgtrader.exchange.paper import PaperExchange
from tgtrader.store import Database
from tgtrader.store.core_store import CoreStore
from tgtrader.types import OrderStatus, Side

from .conftest import REAL_RULES


async def make(db: Database, clock: Clock, events: list, usdt: str = "10000") -> tuple[TradingCore, PaperExchange]:
    paper = PaperExchange(db, rules=REAL_RULES, initial_balances={"USDT": D(usdt)})
    bus = EventBus()
    bus.subscribe(events.append)
    core = TradingCore(paper, CoreStore(db), bus, CoreConfig(timer_interval_s=0), mode="paper", clock_ms=clock)
    await core.start()
    return core, paper


async def feed(core: TradingCore, paper: PaperExchange, clock: Clock, *prices: str) -> None:
    for p in prices:
        clock.now += 1000
        paper.feed_trade("BTCUSDT", D(p), clock.now)
        await core.idle()


SPEC = GridSpec("BTCUSDT", D("40000"), D("60000"), 4, D("1000"))


async def test_grid_runs_round_trips_and_restarts_without_duplicates(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    clock, events = Clock(), []
    core, paper = await make(db, clock, events)
    await paper.subscribe({"BTCUSDT"})
    await feed(core, paper, clock, "52000")
    pv = await core.preview_grid(SPEC)
    assert pv.ok, pv.problems
    assert pv.levels == (D("40000"), D("45000"), D("50000"), D("55000"), D("60000"))
    summary = await core.start_grid(pv.token)
    await core.idle()
    assert summary.state == "running"
    with pytest.raises(ApiError):
        await core.start_grid(pv.token)  # single use
    opened = await core.open_orders("BTCUSDT")
    # holding interval [55000, 60000] sells, waiting intervals buy at 40000, 45000, 50000
    assert sorted((o.side.value, o.price) for o in opened) == [
        ("BUY", D("40000")), ("BUY", D("45000")), ("BUY", D("50000")), ("SELL", D("60000"))]
    await feed(core, paper, clock, "49000", "56000")
    g = await core.grid(summary.id)
    assert g.round_trips == 1 and g.realized_profit > 0
    assert any(isinstance(e, GridRoundTrip) for e in events)
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert [f.side for f in fills] == [Side.BUY, Side.BUY, Side.SELL]
    assert all(f.owner == f"grid:{summary.id}" for f in fills)
    chart = await core.chart_data(summary.id)
    assert chart.levels == pv.levels and chart.prices[-1] == 56000.0
    assert [side for _, side, _ in chart.fills] == ["BUY", "BUY", "SELL"]  # start buy, buy 50000, sell 55000
    pnl = await core.pnl(1)
    assert pnl.days[-1][2] == 1 and pnl.total == g.realized_profit
    before = sorted(o.client_order_id for o in await core.open_orders())
    await core.stop()
    await paper.close()

    # restart on the same database: same orders kept, nothing re-placed, grid continues
    events2: list = []
    core2, paper2 = await make(db, clock, events2)
    await paper2.subscribe({"BTCUSDT"})
    after = sorted(o.client_order_id for o in await core2.open_orders())
    assert after == before
    assert sorted(o.client_order_id for o in await paper2.open_orders("BTCUSDT")) == before
    assert any(isinstance(e, StreamUp) for e in events2)
    await feed(core2, paper2, clock, "49000")
    g2 = await core2.grid(summary.id)
    assert g2.round_trips == 1 and g2.state == "running"
    assert len(await core2.open_orders("BTCUSDT")) == 4
    await core2.stop()
    await paper2.close()
    await db.close()


async def test_missed_fills_recovered_once_on_restart(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    clock, events = Clock(), []
    core, paper = await make(db, clock, events)
    await paper.subscribe({"BTCUSDT"})
    await feed(core, paper, clock, "52000")
    pv = await core.preview_grid(SPEC)
    gid = (await core.start_grid(pv.token)).id
    await core.idle()
    await core.stop()  # the bot is down ...
    clock.now += 1000
    paper.feed_trade("BTCUSDT", D("49000"), clock.now)  # ... while the buy at 50000 fills
    await paper.close()
    events2: list = []
    core2, paper2 = await make(db, clock, events2)
    recovered = [e for e in events2 if isinstance(e, OrderFilled)]
    assert len(recovered) == 1 and recovered[0].recovered and recovered[0].price == D("50000")
    up = [e for e in events2 if isinstance(e, StreamUp)]
    assert up and up[-1].recovered_fills == 1
    # the counter sell went out at 55000
    assert any(o.side is Side.SELL and o.price == D("55000") for o in await core2.open_orders("BTCUSDT"))
    # the same fill pushed again (adapter reconnect) is not applied twice
    trades = await paper2.my_trades("BTCUSDT")
    paper2._push(trades[-1])
    await core2.idle()
    assert len([e for e in events2 if isinstance(e, OrderFilled)]) == 1
    assert (await core2.grid(gid)).base_held > 0
    await core2.stop()
    await db.close()


async def test_pending_new_order_sent_once_after_crash(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    clock, events = Clock(), []
    core, paper = await make(db, clock, events)
    await paper.subscribe({"BTCUSDT"})
    await feed(core, paper, clock, "52000")
    pv = await core.preview_grid(SPEC)
    # simulate a crash after the commit but before sending: the exchange never sees the orders
    real_place = paper.place_order

    async def lost(order):  # noqa: ANN001, ANN202
        await asyncio.Event().wait()  # the process dies while sending: nothing reaches the exchange

    paper.place_order = lost  # type: ignore[method-assign]
    await core.start_grid(pv.token)  # the reaction is saved; the sends run off the event loop
    await asyncio.sleep(0.05)
    await core.stop()
    paper.place_order = real_place  # type: ignore[method-assign]
    await paper.close()
    rows = await db.orders.open_orders()
    assert rows and all(r.status is OrderStatus.PENDING_NEW for r in rows)
    core2, paper2 = await make(db, clock, [])
    await core2.idle()
    opened = await paper2.open_orders("BTCUSDT")
    cids = [o.client_order_id for o in opened]
    assert len(cids) == len(set(cids))
    # the PENDING_NEW start buy and the three grid buys were sent with their original ids
    assert {r.client_order_id for r in rows} <= {t.client_order_id for t in await paper2.my_trades("BTCUSDT")} | set(cids)
    await core2.stop()
    await db.close()


async def test_preview_problems_and_overlap(tmp_path: Path) -> None:
    db = await Database.open(":memory:")
    clock, events = Clock(), []
    core, paper = await make(db, clock, events, usdt="500")
    await paper.subscribe({"BTCUSDT"})
    await feed(core, paper, clock, "52000")
    pv = await core.preview_grid(SPEC)
    assert not pv.ok and any("free balance" in p for p in pv.problems)
    with pytest.raises(ApiError):
        await core.start_grid(pv.token)
    pv = await core.preview_grid(GridSpec("BTCUSDT", D("40000"), D("60000"), 4, D("400")))
    assert pv.ok
    await core.start_grid(pv.token)
    await core.idle()
    pv2 = await core.preview_grid(GridSpec("BTCUSDT", D("50000"), D("70000"), 2, D("30")))
    assert any("overlaps" in p for p in pv2.problems)
    with pytest.raises(ApiError):
        await core.tick_size("NOPEUSDT")
    assert await core.tick_size("BTCUSDT") == D("0.01")
    await core.stop()
    await db.close()


async def test_pause_resume_stop_sell_and_panic(tmp_path: Path) -> None:
    db = await Database.open(":memory:")
    clock, events = Clock(), []
    core, paper = await make(db, clock, events)
    await paper.subscribe({"BTCUSDT"})
    await feed(core, paper, clock, "52000")
    gid = (await core.start_grid((await core.preview_grid(SPEC)).token)).id
    await core.idle()
    await core.pause_grid(gid)
    await core.idle()
    assert await paper.open_orders("BTCUSDT") == []
    await core.resume_grid(gid)
    await core.idle()
    assert len(await paper.open_orders("BTCUSDT")) == 4
    plan = await core.panic_plan()
    assert plan.grids_to_stop == 1 and plan.orders_to_cancel == 4
    assert [a for a, _ in plan.assets_to_sell] == ["BTC"]
    report = await core.panic(plan.token)
    await core.idle()
    assert not report.failed, report.failed
    assert await paper.open_orders() == []
    bal = await paper.balances()
    assert bal.get("BTC") is None or bal["BTC"].total < D("0.00001")  # at most dust below the step (base fees)
    g = await core.grid(gid)
    assert g.state == "stopped" and g.stop_reason == "panic"  # panic ends grids, books closed
    assert any(isinstance(e, OrderFilled) and e.owner == f"grid:{gid}" and e.side is Side.SELL for e in events)
    with pytest.raises(ApiError):
        await core.panic(plan.token)  # single use
    assert await core.resume_all() == []  # nothing to resume: the grids sold their base
    await core.stop()
    await db.close()


async def test_sizing_and_stops_and_chase(tmp_path: Path) -> None:
    db = await Database.open(":memory:")
    clock, events = Clock(), []
    core, paper = await make(db, clock, events)
    await paper.subscribe({"BTCUSDT"})
    await feed(core, paper, clock, "50000")
    r = await core.size_fixed("BTCUSDT", D("50000"), D("47500"))
    assert r.ok and r.position_quote is not None and r.position_quote <= D("2000")
    k = await core.size_kelly(D("0.4"), D("1"))
    assert not k.ok and "no trade" in k.reason
    # chase a buy: it rests at the bid and fills when the market trades down through it
    import asyncio

    task = asyncio.create_task(core.chase("BTCUSDT", Side.BUY, D("0.01"), D("50010")))
    for _ in range(200):
        await asyncio.sleep(0.005)
        await core.idle()
        if await core.open_orders("BTCUSDT"):
            break
    await feed(core, paper, clock, "49990")
    res = await asyncio.wait_for(task, 5)
    assert res.status == "filled" and res.filled_qty == D("0.01") and res.maker_qty == D("0.01")
    stop = await core.add_stop("BTCUSDT", D("45000"))
    # the chase's buy paid its 0.1 % commission out of the base it received (the paper venue does as Binance)
    assert stop.purpose == "stop-loss" and stop.qty == D("0.00999") and stop.state == "armed"
    await feed(core, paper, clock, "44000")
    stops = await core.list_stops()
    assert stops[0].state == "done"
    bal = await paper.balances()
    assert bal.get("BTC") is None or bal["BTC"].total < D("0.00001")  # at most dust below the step (base fees)
    await core.stop()
    await db.close()


async def test_failed_save_halts_and_restart_recovers_the_fill_once(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    clock, events = Clock(), []
    core, paper = await make(db, clock, events)
    await paper.subscribe({"BTCUSDT"})
    await feed(core, paper, clock, "52000")
    gid = (await core.start_grid((await core.preview_grid(SPEC)).token)).id
    await core.idle()
    real = db.write

    async def broken(statements: object) -> None:
        raise OSError("disk full")

    db.write = broken  # type: ignore[method-assign]
    await feed(core, paper, clock, "49000")  # the buy at 50000 fills; saving its reaction fails
    from tgtrader.core.events import ErrorEvent

    assert any(isinstance(e, ErrorEvent) and "halted" in e.message for e in events)
    with pytest.raises(ApiError):
        await core.pause_grid(gid)
    assert not any(o.side is Side.SELL and o.price == D("55000") for o in await paper.open_orders("BTCUSDT"))
    db.write = real  # type: ignore[method-assign]
    await core.stop()
    await paper.close()
    events2: list = []
    core2, paper2 = await make(db, clock, events2)
    recovered = [e for e in events2 if isinstance(e, OrderFilled)]
    assert len(recovered) == 1 and recovered[0].recovered
    await core2.idle()  # orders go out off the event loop
    sells = [o for o in await paper2.open_orders("BTCUSDT") if o.side is Side.SELL and o.price == D("55000")]
    assert len(sells) == 1
    await core2.stop()
    await db.close()
