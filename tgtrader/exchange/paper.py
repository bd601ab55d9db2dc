"""The paper exchange: the `Exchange` port around the in-process `MatchingEngine`.

Why: traders (and the demo, and candle replay) get the same interface, validation and error codes as the
Binance adapter, with fills driven by an external market feed: the live Binance market stream for
`tgtrader run --paper`, or `CandleReplay` for demo/backtest parity. Market data comes in through
`feed_trade` / `feed_book`; news goes out through the event sink in engine order (for each fed tick the
`Tick` first, then Fill, OrderUpdate, BalanceUpdate per filled order). Ticks are forwarded only for
subscribed symbols, as the real stream would.

State (balances, orders, trades, id counters, last prices) persists in the tgtrader SQLite file
(tables of store migration 2). API calls save before they return; fills caused by a fed tick are saved by
a coalesced background flush (or an explicit `await flush()`), so a crash loses at most the last tick's
fills, never an order acknowledged to the caller.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from tgtrader.core.ports import BalanceUpdate, EventSink, ExchangeEvent, ExchangeHealth, StreamStatus
from tgtrader.core.rules import SymbolRules
from tgtrader.errors import BadSymbol, ExchangeError
from tgtrader.exchange.binance.rules import rules_from_exchange_info
from tgtrader.exchange.matching import (
    DEFAULT_FEE,
    MSG_BAD_SYMBOL,
    MSG_NO_PRICE,
    EngineEvent,
    MatchingEngine,
    fill_to_row,
)
from tgtrader.fees import BNB, DEFAULT_FEE_ASSET, FeeAsset
from tgtrader.types import Balance, Fill, OrderUpdate, PlaceOrder, ReplaceOrder, Tick

if TYPE_CHECKING:
    from tgtrader.store.db import Database

PAPER_ACCOUNT = "paper"
BUNDLED_EXCHANGE_INFO = Path(__file__).resolve().parent.parent / "data" / "exchange_info.json"
SubscribeHook = Callable[[set[str]], Awaitable[None]]


def load_exchange_info(path: str | Path | None = None) -> dict[str, SymbolRules]:
    """Symbol rules from an exchangeInfo JSON file; default: the bundled real 2021 Binance subset."""
    if path is None:
        path = BUNDLED_EXCHANGE_INFO
    text = Path(path).read_text(encoding="utf-8")
    return rules_from_exchange_info(json.loads(text))


class PaperExchange:
    """`Exchange` implementation on a MatchingEngine; one account, optional SQLite persistence."""

    name = "paper"

    def __init__(
        self,
        db: "Database | None" = None,
        *,
        rules: Mapping[str, SymbolRules] | None = None,
        maker_fee: Decimal = DEFAULT_FEE,
        taker_fee: Decimal = DEFAULT_FEE,
        initial_balances: Mapping[str, Decimal] | None = None,
        on_subscribe: SubscribeHook | None = None,
        on_unsubscribe: SubscribeHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        price_source: Callable[[str], Awaitable[Decimal]] | None = None,
        fee_asset: FeeAsset = DEFAULT_FEE_ASSET,
        bnb_prices: Mapping[str, Decimal] | None = None,
    ) -> None:
        """`initial_balances` fund the account only when the database holds no paper state yet. `fee_asset`: who
        pays commissions, Binance's way by default (a buy's in base; see `tgtrader.fees`); `bnb_prices`: quote
        asset -> price of 1 BNB for BNB fees when no BNB<quote> market is priced."""
        self.db = db
        self._rules = dict(rules) if rules is not None else load_exchange_info()
        self.engine = MatchingEngine(self._rules.values(), maker_fee=maker_fee, taker_fee=taker_fee,
                                     fee_asset=fee_asset, bnb_prices=bnb_prices)
        self._initial = dict(initial_balances or {})
        self._sink: EventSink | None = None
        self._subscribed: set[str] = set()
        self._on_subscribe = on_subscribe
        self._on_unsubscribe = on_unsubscribe
        self._clock = clock
        self._price_source = price_source  # live REST price for symbols the feed has not priced yet
        self._last_feed: float | None = None
        self._started = False
        # persistence bookkeeping: what changed since the last flush
        self._dirty_orders: set[tuple[str, str]] = set()
        self._dirty_assets: set[str] = set()
        self._new_trades: list[Fill] = []
        self._dirty_meta = False
        self._flush_lock = asyncio.Lock()
        self._flush_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    def set_event_sink(self, sink: EventSink) -> None:
        self._sink = sink

    order_settle_s = 0.0  # answers in-process: an order it did not answer was never placed

    def set_reconcile_source(self, source: Callable[[], Mapping[str, int | None]]) -> None:
        """Nothing to do: the paper venue's news never has gaps (it is delivered in-process)."""

    def expect_open_orders(self, symbol: str, client_order_ids: set[str]) -> None:
        """Nothing to do: see set_reconcile_source."""

    async def start(self) -> None:
        """Restore saved state (or fund a fresh account) and report both streams up."""
        if not self._started:
            self._started = True
            restored = await self._restore() if self.db is not None else False
            if not restored:
                for asset, amount in self._initial.items():
                    self.engine.set_balance(PAPER_ACCOUNT, asset, Decimal(amount))
                    self._dirty_assets.add(asset)
                self._dirty_meta = True
                await self.flush()
        ts = self.engine.now_ms
        self._push(StreamStatus("market", True, "paper", ts_ms=ts))
        self._push(StreamStatus("user", True, "paper", ts_ms=ts))

    async def close(self) -> None:
        """Wait for a pending background save, then save what is left."""
        task = self._flush_task
        if task is not None and not task.done():
            await asyncio.shield(task)
        await self.flush()

    # ------------------------------------------------------------ market data in

    def feed_trade(self, symbol: str, price: Decimal, ts_ms: int, qty: Decimal | None = None) -> int:
        """A market trade: forward the tick, fill what it touched, push the news. Returns fills made.

        `qty` (the trade's size) caps what fills on this tick (partial fills); None fills every touched order.
        """
        self._last_feed = self._clock()
        try:
            n = self.engine.on_trade(symbol, price, ts_ms, qty)
        except BadSymbol:
            logger.debug("paper: trade for unknown symbol {} ignored", symbol)
            return 0
        self._dirty_meta = True
        self._publish_fills_then(n, symbol, Tick(symbol, None, None, price, ts_ms))
        return n

    def feed_book(self, symbol: str, bid: Decimal | None, ask: Decimal | None, ts_ms: int) -> int:
        """A best bid/ask update (bookTicker). Returns fills made."""
        self._last_feed = self._clock()
        try:
            n = self.engine.on_book(symbol, bid, ask, ts_ms)
        except BadSymbol:
            logger.debug("paper: book for unknown symbol {} ignored", symbol)
            return 0
        self._dirty_meta = True
        self._publish_fills_then(n, symbol, Tick(symbol, bid, ask, None, ts_ms))
        return n

    def _publish_fills_then(self, fills: int, symbol: str, tick: Tick) -> None:
        """Fills the move caused go out BEFORE the tick that reports where it ended: they happened on the way
        there, so a stop-loss seeing the tick must already see the base those fills bought."""
        if fills:
            self._publish(self.engine.drain())
        if symbol in self._subscribed:
            self._push(tick)

    def feed(self, tick: Tick) -> int:
        """Feed a Tick value from any market stream (trade if it has `last`, else book)."""
        if tick.last is not None:
            return self.feed_trade(tick.symbol, tick.last, tick.ts_ms)
        return self.feed_book(tick.symbol, tick.bid, tick.ask, tick.ts_ms)

    # ------------------------------------------------------------ Exchange port

    async def known_symbols(self) -> frozenset[str]:
        return frozenset(self._rules)

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        rules = self._rules.get(symbol)
        if rules is None:
            raise BadSymbol(MSG_BAD_SYMBOL)
        return rules

    async def place_order(self, order: PlaceOrder) -> OrderUpdate:
        live = self.engine.get_order(PAPER_ACCOUNT, order.symbol, order.client_order_id)
        if live is not None and live.status.is_open:
            # A resend of an order that is live is that order (the exchange contract, as on Binance where
            # "Duplicate order sent." means the client order id is in use by an open order): adopt it.
            return live
        try:
            upd = self.engine.place_order(
                PAPER_ACCOUNT, order.symbol, order.client_order_id, order.side, order.order_type, order.qty,
                order.price, order.stop_price, order.time_in_force,
            )
        finally:
            self._publish(self.engine.drain())
        await self.flush()
        return upd

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderUpdate:
        try:
            upd = self.engine.cancel_order(PAPER_ACCOUNT, symbol, client_order_id)
        finally:
            self._publish(self.engine.drain())
        await self.flush()
        return upd

    async def cancel_all(self, symbol: str) -> list[OrderUpdate]:
        try:
            out = self.engine.cancel_all(PAPER_ACCOUNT, symbol)
        finally:
            self._publish(self.engine.drain())
        await self.flush()
        return out

    async def replace_order(self, replace: ReplaceOrder) -> OrderUpdate:
        """Cancel then place (STOP_ON_FAILURE). If the placement fails the cancel stands and the error is raised."""
        p = replace.place
        try:
            _, new = self.engine.cancel_replace(
                PAPER_ACCOUNT, p.symbol, replace.cancel.client_order_id, p.client_order_id, p.side, p.order_type,
                p.qty, p.price, p.stop_price, p.time_in_force,
            )
        finally:
            self._publish(self.engine.drain())
            await self.flush()
        return new

    async def get_order(self, symbol: str, client_order_id: str) -> OrderUpdate | None:
        if symbol not in self._rules:
            raise BadSymbol(MSG_BAD_SYMBOL)
        return self.engine.get_order(PAPER_ACCOUNT, symbol, client_order_id)

    async def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        if symbol is not None and symbol not in self._rules:
            raise BadSymbol(MSG_BAD_SYMBOL)
        return self.engine.open_orders(PAPER_ACCOUNT, symbol)

    async def my_trades(self, symbol: str, from_trade_id: int | None = None) -> list[Fill]:
        if symbol not in self._rules:
            raise BadSymbol(MSG_BAD_SYMBOL)
        return self.engine.my_trades(PAPER_ACCOUNT, symbol, from_trade_id)

    async def order_trades(self, symbol: str, client_order_id: str, order_id: int) -> list[Fill]:
        return [f for f in await self.my_trades(symbol) if f.client_order_id == client_order_id]

    async def commission_rate(self) -> Decimal | None:
        return self.engine.taker_fee

    async def balances(self) -> dict[str, Balance]:
        return self.engine.balances(PAPER_ACCOUNT)

    async def avg_price(self, symbol: str) -> Decimal | None:
        return self.engine.reference_price(symbol)  # the paper venue's percent bands use its reference price

    async def ticker_price(self, symbol: str) -> Decimal:
        price = self.engine.reference_price(symbol)  # raises BadSymbol
        if price is None and self._price_source is not None:
            # paper trading on live data: a symbol not streamed yet is priced (and seeded) from the real market
            price = await self._price_source(symbol)
            self.feed_trade(symbol, price, int(time.time() * 1000))
        if price is None:
            raise ExchangeError(MSG_NO_PRICE)
        return price

    async def subscribe(self, symbols: set[str]) -> None:
        unknown = [s for s in symbols if s not in self._rules]
        if unknown:
            raise BadSymbol(MSG_BAD_SYMBOL)
        new = set(symbols) - self._subscribed
        self._subscribed |= new
        fee_markets = self._bnb_markets(new) - self._subscribed
        if new and self._on_subscribe is not None:
            await self._on_subscribe(new | fee_markets)  # BNB fees need BNB's price kept current too
        for sym in fee_markets:
            if self.engine.reference_price(sym) is None and self._price_source is not None:
                try:
                    await self.ticker_price(sym)  # seed it now: the first fill may come before its first tick
                except Exception as exc:  # no BNB price yet: fees fall back to the received asset meanwhile
                    logger.warning("paper: no {} price for BNB fees yet ({})", sym, exc)

    def _bnb_markets(self, symbols: set[str]) -> set[str]:
        """The BNB<quote> markets that price BNB fees for `symbols` (only when BNB pays the fees)."""
        if self.engine.fees.mode != "bnb":
            return set()
        quotes = {self._rules[s].quote_asset for s in symbols if s in self._rules}
        return {BNB + q for q in quotes if BNB + q in self._rules and q != BNB}

    async def unsubscribe(self, symbols: set[str]) -> None:
        gone = set(symbols) & self._subscribed
        self._subscribed -= gone
        if gone and self._on_unsubscribe is not None:
            await self._on_unsubscribe(gone)

    @property
    def subscribed(self) -> frozenset[str]:
        return frozenset(self._subscribed)

    def health(self) -> ExchangeHealth:
        """Market age from the last fed tick (None before any); the in-process user stream is always fresh."""
        age = None if self._last_feed is None else max(0.0, self._clock() - self._last_feed)
        return ExchangeHealth(
            market_last_msg_age_s=age,
            user_last_msg_age_s=0.0 if self._started else None,
            reconnects_last_hour=0,
            clock_offset_ms=0,
            used_weight_1m=0,
        )

    # ------------------------------------------------------------ convenience (demo, tests)

    async def deposit(self, asset: str, amount: Decimal) -> None:
        """Add (or withdraw, negative) free paper funds; pushes a BalanceUpdate and saves."""
        self.engine.deposit(PAPER_ACCOUNT, asset, Decimal(amount))
        self._publish(self.engine.drain())
        await self.flush()

    async def reset(self, balances: Mapping[str, Decimal] | None = None) -> None:
        """Start the paper account over: forget orders and trades, fund it with `balances` (default: the
        initial balances). Symbols, fees, last prices and the id counters are kept: order and trade ids are
        never reused, because the core deduplicates fills by (symbol, trade id). Pushes a BalanceUpdate."""
        if balances is not None:
            self._initial = dict(balances)
        old = self.engine
        fresh = MatchingEngine(self._rules.values(), maker_fee=old.maker_fee, taker_fee=old.taker_fee,
                               fee_asset=old.fees.mode, bnb_prices=old.fees.bnb_prices)
        fresh.restore(self.engine.meta_snapshot())
        self.engine = fresh
        for asset, amount in self._initial.items():
            fresh.set_balance(PAPER_ACCOUNT, asset, Decimal(amount))
        self._dirty_orders.clear()
        self._new_trades.clear()
        self._dirty_assets = set(self._initial)
        self._dirty_meta = True
        if self.db is not None:
            async with self._flush_lock:
                async with self.db.transaction() as conn:
                    for table in ("paper_orders", "paper_trades", "paper_balances", "paper_state"):
                        await conn.execute(f"DELETE FROM {table}")
        await self.flush()
        self._push(BalanceUpdate(tuple(fresh.balances(PAPER_ACCOUNT).values()), fresh.now_ms))

    # ------------------------------------------------------------ internals: events

    def _publish(self, events: list[EngineEvent]) -> None:
        """Record what changed for persistence, then hand the news to the sink in order."""
        if not events:
            return
        self._dirty_meta = True
        for ev in events:
            e = ev.event
            if isinstance(e, OrderUpdate):
                self._dirty_orders.add((e.symbol, e.client_order_id))
            elif isinstance(e, Fill):
                self._new_trades.append(e)
            elif isinstance(e, BalanceUpdate):
                self._dirty_assets.update(b.asset for b in e.balances)
        for ev in events:
            self._push(ev.event)
        if self.db is not None and (self._flush_task is None or self._flush_task.done()):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._flush_task = loop.create_task(self._background_flush())

    def _push(self, event: ExchangeEvent) -> None:
        if self._sink is None:
            return
        try:
            self._sink(event)
        except Exception:  # a broken consumer must not corrupt the exchange's own state
            logger.exception("paper: event sink raised on {}", type(event).__name__)

    # ------------------------------------------------------------ internals: persistence

    async def _background_flush(self) -> None:
        """Save fills caused by fed ticks; a failure is logged and the changes stay pending for the next flush."""
        try:
            await self.flush()
        except Exception as exc:  # e.g. the database was closed under a still-fed exchange
            logger.warning("paper: saving state failed ({}); will retry on the next change", exc)

    async def flush(self) -> None:
        """Write everything changed since the last flush in one transaction (no-op without a database)."""
        if self.db is None:
            return
        async with self._flush_lock:
            if not (self._dirty_orders or self._dirty_assets or self._new_trades or self._dirty_meta):
                return
            orders, self._dirty_orders = self._dirty_orders, set()
            assets, self._dirty_assets = self._dirty_assets, set()
            trades, self._new_trades = self._new_trades, []
            self._dirty_meta = False
            eng = self.engine
            order_rows = []
            for symbol, cid in orders:
                o = eng.find_order(PAPER_ACCOUNT, symbol, cid)
                if o is not None:
                    order_rows.append(
                        (PAPER_ACCOUNT, symbol, cid, o.order_id, o.status.value, json.dumps(o.to_row()))
                    )
            bal_rows = []
            for asset in assets:
                b = eng.balance(PAPER_ACCOUNT, asset)
                bal_rows.append((PAPER_ACCOUNT, asset, str(b.free), str(b.locked)))
            trade_rows = [
                (PAPER_ACCOUNT, f.symbol, f.trade_id, json.dumps(fill_to_row(PAPER_ACCOUNT, f))) for f in trades
            ]
            meta = json.dumps(eng.meta_snapshot())
            try:
                async with self.db.transaction() as conn:
                    if order_rows:
                        await conn.executemany(
                            "INSERT INTO paper_orders(account, symbol, client_order_id, order_id, status, data) "
                            "VALUES (?,?,?,?,?,?) ON CONFLICT(account, symbol, client_order_id) DO UPDATE SET "
                            "order_id = excluded.order_id, status = excluded.status, data = excluded.data",
                            order_rows,
                        )
                    if bal_rows:
                        await conn.executemany(
                            "INSERT INTO paper_balances(account, asset, free, locked) VALUES (?,?,?,?) "
                            "ON CONFLICT(account, asset) DO UPDATE SET free = excluded.free, locked = excluded.locked",
                            bal_rows,
                        )
                    if trade_rows:
                        await conn.executemany(
                            "INSERT OR IGNORE INTO paper_trades(account, symbol, trade_id, data) VALUES (?,?,?,?)",
                            trade_rows,
                        )
                    await conn.execute(
                        "INSERT INTO paper_state(key, value) VALUES ('engine', ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (meta,),
                    )
            except BaseException:
                # keep the changes pending so the next flush retries them
                self._dirty_orders |= orders
                self._dirty_assets |= assets
                self._new_trades = trades + self._new_trades
                self._dirty_meta = True
                raise

    async def _restore(self) -> bool:
        """Load saved paper state into the engine. False when the database has none yet."""
        assert self.db is not None
        meta_row = await self.db.fetchone("SELECT value FROM paper_state WHERE key = 'engine'")
        if meta_row is None:
            return False
        state: dict[str, Any] = json.loads(meta_row[0])
        balances: dict[str, dict[str, list[str]]] = {}
        for acc, asset, free, locked in await self.db.fetchall(
            "SELECT account, asset, free, locked FROM paper_balances"
        ):
            balances.setdefault(acc, {})[asset] = [free, locked]
        state["balances"] = balances
        state["orders"] = [json.loads(r[0]) for r in await self.db.fetchall("SELECT data FROM paper_orders")]
        state["trades"] = [json.loads(r[0]) for r in await self.db.fetchall("SELECT data FROM paper_trades")]
        self.engine.restore(state)
        logger.info(
            "paper: restored {} open orders, {} trades",
            len(self.engine.open_order_records(PAPER_ACCOUNT)),
            len(state["trades"]),
        )
        return True
