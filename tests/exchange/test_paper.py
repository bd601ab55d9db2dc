"""PaperExchange: the Exchange port, sink events, real exchangeInfo rules, persistence across a reopen."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from tgtrader.core.ports import BalanceUpdate, Exchange, StreamStatus
from tgtrader.errors import BadSymbol, FilterRejected, InsufficientBalance, UnknownOrder, WouldMatch
from tgtrader.exchange.paper import PaperExchange, load_exchange_info
from tgtrader.store.db import Database
from tgtrader.types import CancelOrder, Fill, OrderStatus, OrderType, OrderUpdate, PlaceOrder, ReplaceOrder, Side, Tick

SYM = "XRPETH"


@pytest.fixture
async def open_db():
    """Open databases through this so they are closed even when a test fails (else the process hangs)."""
    opened: list[Database] = []

    async def _open(path: Path) -> Database:
        db = await Database.open(path)
        opened.append(db)
        return db

    yield _open
    for db in opened:
        await db.close()


def buy(cid: str, price: str, qty: str = "100", t: OrderType = OrderType.LIMIT) -> PlaceOrder:
    return PlaceOrder(SYM, cid, Side.BUY, t, D(qty), D(price))


def sell(cid: str, price: str, qty: str = "100", t: OrderType = OrderType.LIMIT) -> PlaceOrder:
    return PlaceOrder(SYM, cid, Side.SELL, t, D(qty), D(price))


async def make(db: Database | None = None, **kw: object) -> tuple[PaperExchange, list[object]]:
    kw.setdefault("initial_balances", {"ETH": D("10"), "XRP": D("5000")})
    kw.setdefault("fee_asset", "quote")  # these cases pin quote-fee arithmetic; Binance's default: test_paper_fees.py
    ex = PaperExchange(db, **kw)  # type: ignore[arg-type]
    events: list[object] = []
    ex.set_event_sink(events.append)
    await ex.start()
    return ex, events


def test_bundled_exchange_info_is_real_and_small() -> None:
    rules = load_exchange_info()
    assert {"XRPETH", "BTCUSDT", "ETHUSDT", "BNBUSDT"} <= set(rules)
    assert len(rules) < 40
    x = rules["XRPETH"]
    assert (x.base_asset, x.quote_asset, x.tick_size, x.step_size, x.min_notional) == (
        "XRP", "ETH", D("0.0000001"), D("1"), D("0.005")
    )


async def test_implements_port_and_reports_streams_up() -> None:
    ex, events = await make()
    assert isinstance(ex, Exchange)
    assert [e for e in events if isinstance(e, StreamStatus)] == [
        StreamStatus("market", True, "paper"), StreamStatus("user", True, "paper")
    ]
    h = ex.health()
    assert h.market_last_msg_age_s is None and h.user_last_msg_age_s == 0.0
    ex.feed_trade(SYM, D("0.0007500"), 1000)
    assert ex.health().market_last_msg_age_s is not None
    assert await ex.ticker_price(SYM) == D("0.0007500")
    assert (await ex.symbol_rules(SYM)).symbol == SYM
    with pytest.raises(BadSymbol):
        await ex.symbol_rules("NOPE")
    await ex.close()


async def test_place_fill_and_sink_order() -> None:
    ex, events = await make()
    await ex.subscribe({SYM})
    ex.feed_trade(SYM, D("0.0007500"), 1000)
    events.clear()
    u = await ex.place_order(buy("b1", "0.0007400"))
    assert u.status is OrderStatus.NEW and u.exchange_order_id == 1
    assert isinstance(events[0], OrderUpdate) and isinstance(events[1], BalanceUpdate)
    events.clear()
    assert ex.feed_trade(SYM, D("0.0007300"), 2000) == 1
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Fill", "OrderUpdate", "BalanceUpdate", "Tick"]  # fills happened on the way to the tick
    fill = events[0]
    assert isinstance(fill, Fill) and fill.price == D("0.0007400") and fill.fee_asset == "ETH" and fill.is_maker
    assert fill.fee == D("0.0007400") * 100 * D("0.001")
    bals = await ex.balances()
    assert bals["XRP"].free == D(5100)
    assert bals["ETH"].total == D(10) - D("0.074") - fill.fee
    assert await ex.my_trades(SYM, 1) == [fill]
    assert (await ex.get_order(SYM, "b1")).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert await ex.get_order(SYM, "zzz") is None


async def test_ticks_only_for_subscribed_symbols() -> None:
    ex, events = await make()
    ex.feed(Tick(SYM, None, None, D("0.00075"), 1))
    assert not any(isinstance(e, Tick) for e in events)
    await ex.subscribe({SYM})
    ex.feed(Tick(SYM, D("0.00074"), D("0.00076"), None, 2))
    assert [e for e in events if isinstance(e, Tick)] == [Tick(SYM, D("0.00074"), D("0.00076"), None, 2)]
    await ex.unsubscribe({SYM})
    ex.feed_trade(SYM, D("0.00075"), 3)
    assert len([e for e in events if isinstance(e, Tick)]) == 1
    with pytest.raises(BadSymbol):
        await ex.subscribe({"NOPE"})
    assert ex.feed_trade("NOPE", D(1), 4) == 0  # unknown feed symbols are ignored


async def test_rejections_match_binance() -> None:
    ex, _ = await make()
    ex.feed_trade(SYM, D("0.0007500"), 1000)
    with pytest.raises(FilterRejected, match="^Filter failure: NOTIONAL$"):
        await ex.place_order(buy("x", "0.0007000", "5"))
    with pytest.raises(FilterRejected, match="^Filter failure: LOT_SIZE$"):
        await ex.place_order(buy("x", "0.0007000", "10.5"))
    with pytest.raises(FilterRejected, match="^Filter failure: PRICE_FILTER$"):
        await ex.place_order(buy("x", "0.00070005"))
    with pytest.raises(FilterRejected, match="^Filter failure: PERCENT_PRICE_BY_SIDE$"):
        await ex.place_order(sell("x", "0.0040000"))
    with pytest.raises(InsufficientBalance) as ei:
        await ex.place_order(buy("x", "0.0007000", "20000"))
    assert ei.value.code == -2010
    with pytest.raises(WouldMatch, match="^Order would immediately match and take.$"):
        await ex.place_order(buy("x", "0.0007600", t=OrderType.LIMIT_MAKER))
    with pytest.raises(UnknownOrder) as eu:
        await ex.cancel_order(SYM, "x")
    assert (eu.value.code, str(eu.value)) == (-2011, "Unknown order sent.")
    with pytest.raises(BadSymbol) as eb:
        await ex.place_order(PlaceOrder("NOPE", "x", Side.BUY, OrderType.LIMIT, D(1), D(1)))
    assert (eb.value.code, str(eb.value)) == (-1121, "Invalid symbol.")
    assert await ex.open_orders() == []


async def test_replace_cancel_all_market_stop() -> None:
    ex, events = await make()
    ex.feed_trade(SYM, D("0.0007500"), 1000)
    await ex.place_order(buy("a", "0.0007000"))
    new = await ex.replace_order(ReplaceOrder(CancelOrder(SYM, "a"), buy("b", "0.0007100")))
    assert new.client_order_id == "b" and new.status is OrderStatus.NEW
    assert (await ex.get_order(SYM, "a")).status is OrderStatus.CANCELED  # type: ignore[union-attr]
    with pytest.raises(FilterRejected):
        await ex.replace_order(ReplaceOrder(CancelOrder(SYM, "b"), buy("c", "0.00071005")))
    assert await ex.open_orders(SYM) == []  # STOP_ON_FAILURE: the cancel stands
    await ex.place_order(sell("s1", "0.0008000"))
    await ex.place_order(PlaceOrder(SYM, "st", Side.SELL, OrderType.STOP_LOSS_LIMIT, D(100), D("0.0006900"),
                                    stop_price=D("0.0007000")))
    assert [u.client_order_id for u in await ex.cancel_all(SYM)] == ["s1", "st"]
    m = await ex.place_order(PlaceOrder(SYM, "m", Side.SELL, OrderType.MARKET, D(100)))
    assert m.status is OrderStatus.FILLED and m.cum_quote == D("0.075")
    assert (await ex.balances())["XRP"].locked == 0


async def test_state_persists_across_reopen(tmp_path: Path, open_db) -> None:
    path = tmp_path / "tg.sqlite"
    db = await open_db(path)
    ex, _ = await make(db)
    ex.feed_trade(SYM, D("0.0007500"), 1000)
    await ex.place_order(buy("b1", "0.0007400"))
    await ex.place_order(buy("b2", "0.0007200"))
    await ex.place_order(sell("s1", "0.0007800"))
    await ex.place_order(PlaceOrder(SYM, "st", Side.SELL, OrderType.STOP_LOSS_LIMIT, D(100), D("0.0006900"),
                                    stop_price=D("0.0007000")))
    ex.feed_trade(SYM, D("0.0007300"), 2000)  # fills b1 (saved by the background flush / close)
    await ex.close()
    before = (await ex.balances(), await ex.open_orders(), await ex.my_trades(SYM))
    await db.close()

    db2 = await open_db(path)
    ex2, _ = await make(db2, initial_balances={"ETH": D(999)})  # ignored: state exists
    after = (await ex2.balances(), await ex2.open_orders(), await ex2.my_trades(SYM))
    assert after == before
    assert [u.client_order_id for u in after[1]] == ["b2", "s1", "st"]
    assert await ex2.ticker_price(SYM) == D("0.0007300")
    # the restored books still match, ids continue
    events: list[object] = []
    ex2.set_event_sink(events.append)
    ex2.feed_trade(SYM, D("0.0006800"), 3000)
    fills = [e for e in events if isinstance(e, Fill)]
    assert [(f.client_order_id, f.trade_id) for f in fills] == [("b2", 2), ("st", 3)]
    u = await ex2.place_order(buy("b3", "0.0006500"))
    assert u.exchange_order_id == 5
    await ex2.close()
    await db2.close()

    db3 = await open_db(path)
    ex3, _ = await make(db3)
    assert [f.trade_id for f in await ex3.my_trades(SYM)] == [1, 2, 3]
    assert [u.client_order_id for u in await ex3.open_orders()] == ["s1", "b3"]
    await db3.close()


async def test_background_flush_after_fed_fills(tmp_path: Path, open_db) -> None:
    db = await open_db(tmp_path / "a.sqlite")
    ex, _ = await make(db)
    ex.feed_trade(SYM, D("0.0007500"), 1000)
    await ex.place_order(buy("b1", "0.0007400"))
    ex.feed_trade(SYM, D("0.0007300"), 2000)
    await ex._flush_task  # type: ignore[misc]  # the scheduled flush
    rows = await db.fetchall("SELECT status FROM paper_orders WHERE client_order_id = 'b1'")
    assert [r[0] for r in rows] == ["FILLED"]
    assert (await db.fetchone("SELECT COUNT(*) FROM paper_trades"))[0] == 1  # type: ignore[index]
    await db.close()


async def test_broken_sink_does_not_break_exchange() -> None:
    ex, _ = await make()

    def bad(_: object) -> None:
        raise RuntimeError("boom")

    ex.set_event_sink(bad)
    ex.feed_trade(SYM, D("0.0007500"), 1000)
    assert (await ex.place_order(buy("b", "0.0007000"))).status is OrderStatus.NEW


async def test_partial_fill_persists(tmp_path: Path, open_db) -> None:
    path = tmp_path / "p.sqlite"
    ex, events = await make(await open_db(path))
    ex.feed_trade(SYM, D("0.0007500"), 1000)
    await ex.place_order(buy("b", "0.0007400", "300"))
    ex.feed_trade(SYM, D("0.0007300"), 2000, qty=D(120))
    await ex.close()
    ex2, _ = await make(await open_db(path))
    o = await ex2.get_order(SYM, "b")
    assert o is not None and o.status is OrderStatus.PARTIALLY_FILLED and o.executed_qty == D(120)
    assert (await ex2.balances())["ETH"].locked == D(180) * D("0.00074") * D("1.001")
    ex2.feed_trade(SYM, D("0.0007350"), 3000)
    assert (await ex2.get_order(SYM, "b")).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert [f.qty for f in await ex2.my_trades(SYM)] == [D(120), D(180)]


async def test_background_save_failure_is_logged_not_raised(tmp_path: Path, open_db) -> None:
    db = await open_db(tmp_path / "c.sqlite")
    ex, _ = await make(db)
    ex.feed_trade(SYM, D("0.0007500"), 1000)
    await ex.place_order(buy("b", "0.0007400"))
    await db.close()
    ex.feed_trade(SYM, D("0.0007300"), 2000)  # fills; the scheduled save fails quietly
    await ex._flush_task  # type: ignore[misc]
    assert ex._dirty_orders  # still pending for a later retry


async def test_reset_starts_over_and_persists(tmp_path: Path, open_db) -> None:
    path = tmp_path / "r.sqlite"
    ex, events = await make(await open_db(path))
    ex.feed_trade(SYM, D("0.0007500"), 1000)
    await ex.place_order(buy("b", "0.0007400"))
    ex.feed_trade(SYM, D("0.0007300"), 2000)
    await ex.place_order(buy("b2", "0.0007000"))
    await ex.reset({"ETH": D(3)})
    assert await ex.open_orders() == [] and await ex.my_trades(SYM) == []
    assert {a: b.total for a, b in (await ex.balances()).items()} == {"ETH": D(3)}
    assert await ex.ticker_price(SYM) == D("0.0007300")
    assert isinstance(events[-1], BalanceUpdate)
    u = await ex.place_order(buy("b", "0.0007000"))
    assert u.exchange_order_id == 3  # ids are never reused
    ex.feed_trade(SYM, D("0.0006900"), 3000)
    assert [f.trade_id for f in await ex.my_trades(SYM)] == [2]
    await ex.place_order(buy("b", "0.0006000"))
    await ex.close()
    ex2, _ = await make(await open_db(path))
    assert [o.client_order_id for o in await ex2.open_orders()] == ["b"]
    assert (await ex2.balances())["ETH"].total == D(3) - D("0.07") - D("0.00007")  # one buy of 100 at 0.0007
    assert (await ex2.balances())["XRP"].total == D(100)
