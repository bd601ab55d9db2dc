"""The engine's stored form: snapshots of its whole state, and fills as rows (JSON-able; Decimals as strings).

`MatchingEngine.snapshot` / `meta_snapshot` / `restore` call these; the paper exchange persists the rows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tgtrader.exchange.matching.orders import EngineOrder
from tgtrader.types import Fill, Side

if TYPE_CHECKING:
    from tgtrader.exchange.matching.engine import MatchingEngine


def snapshot(engine: MatchingEngine) -> dict[str, Any]:
    """Everything needed to rebuild the engine (JSON-able; Decimals as strings)."""
    state = meta_snapshot(engine)
    state["balances"] = {
        acc: {a: [str(v[0]), str(v[1])] for a, v in assets.items()} for acc, assets in engine._balances.items()
    }
    state["orders"] = [o.to_row() for o in engine._orders.values()]
    state["trades"] = [fill_to_row(acc, f) for (acc, _), fills in engine._trades.items() for f in fills]
    return state


def meta_snapshot(engine: MatchingEngine) -> dict[str, Any]:
    """Counters and last prices only (small; persisted after every mutation)."""
    return {
        "next_order_id": engine.next_order_id,
        "seq": engine._seq,
        "ts_ms": engine._ts_ms,
        "books": {
            s: {
                "next_trade_id": b.next_trade_id,
                "last": None if b.last is None else str(b.last),
                "bid": None if b.bid is None else str(b.bid),
                "ask": None if b.ask is None else str(b.ask),
            }
            for s, b in engine._books.items()
        },
    }


def restore(engine: MatchingEngine, state: dict[str, Any]) -> None:
    """Load a snapshot (symbols must already be added). Replaces balances, orders and trades."""
    engine._balances.clear()
    engine._orders.clear()
    engine._by_id.clear()
    engine._open.clear()
    engine._trades.clear()
    for book in engine._books.values():
        book.clear_orders()
    engine.next_order_id = int(state.get("next_order_id", 1))
    engine._seq = int(state.get("seq", 0))
    engine._ts_ms = int(state.get("ts_ms", 0))
    for s, bs in state.get("books", {}).items():
        b = engine._books.get(s)
        if b is None:
            continue
        b.next_trade_id = int(bs.get("next_trade_id", 1))
        b.last = _opt_dec(bs.get("last"))
        b.bid = _opt_dec(bs.get("bid"))
        b.ask = _opt_dec(bs.get("ask"))
    for acc, assets in state.get("balances", {}).items():
        for a, (free, locked) in assets.items():
            engine._balances.setdefault(acc, {})[a] = [Decimal(free), Decimal(locked)]
    for row in sorted(state.get("orders", []), key=lambda r: int(r["seq"])):
        _load_order(engine, EngineOrder.from_row(row))
    for row in sorted(state.get("trades", []), key=lambda r: (r["symbol"], int(r["trade_id"]))):
        acc, f = fill_from_row(row)
        engine._trades.setdefault((acc, f.symbol), []).append(f)
        b = engine._books.get(f.symbol)
        if b is not None and f.trade_id >= b.next_trade_id:
            b.next_trade_id = f.trade_id + 1


def _load_order(engine: MatchingEngine, o: EngineOrder) -> None:
    """Put a stored order back in the engine's indexes and, while open, on its book."""
    engine._orders[(o.account, o.symbol, o.client_order_id)] = o
    engine._by_id[(o.symbol, o.order_id)] = o
    engine.next_order_id = max(engine.next_order_id, o.order_id + 1)
    engine._seq = max(engine._seq, o.seq)
    if not o.status.is_open:
        return
    engine._mark_open(o)
    book = engine._books.get(o.symbol)
    if book is None:
        return
    if not o.working:
        assert o.stop_price is not None
        (book.stop_sells if o.side is Side.SELL else book.stop_buys).add(o.stop_price, o)
    else:
        (book.bids if o.side is Side.BUY else book.asks).add(o.price, o)


def fill_to_row(account: str, f: Fill) -> dict[str, Any]:
    return {
        "account": account,
        "symbol": f.symbol,
        "trade_id": f.trade_id,
        "client_order_id": f.client_order_id,
        "side": f.side.value,
        "price": str(f.price),
        "qty": str(f.qty),
        "fee": str(f.fee),
        "fee_asset": f.fee_asset,
        "is_maker": f.is_maker,
        "ts_ms": f.ts_ms,
        "exchange_order_id": f.exchange_order_id,
    }


def fill_from_row(row: dict[str, Any]) -> tuple[str, Fill]:
    return row["account"], Fill(
        symbol=row["symbol"],
        trade_id=int(row["trade_id"]),
        client_order_id=row["client_order_id"],
        side=Side(row["side"]),
        price=Decimal(row["price"]),
        qty=Decimal(row["qty"]),
        fee=Decimal(row["fee"]),
        fee_asset=row["fee_asset"],
        is_maker=bool(row["is_maker"]),
        ts_ms=int(row["ts_ms"]),
        exchange_order_id=None if row.get("exchange_order_id") is None else int(row["exchange_order_id"]),
    )


def _opt_dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(str(v))
