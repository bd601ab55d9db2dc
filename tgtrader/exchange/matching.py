"""A pure, synchronous, in-process spot matching engine (paper exchange and the fake Binance share it).

Why: paper trading, candle replay and the loopback fake Binance must fill orders exactly the same
way, with Binance's validation and error codes, and fast enough for a million ticks.

Model (documented choices):
- Accounts hold per-asset free/locked balances. Symbols come from `SymbolRules`.
- Fees are charged in the QUOTE asset on both sides: fee = rate x price x qty, kept exact (no rounding).
  A BUY therefore locks price x qty x (1 + max(maker, taker)) quote at placement, so the fee can always be
  paid from the order's own lock; the unused part goes back to free on fill. A SELL locks the base qty and
  pays its fee out of the proceeds.
- Market movement comes from `on_trade` (last trade price) and `on_book` (best bid/ask). A trade tick
  from p_prev to p is a continuous move: every resting order the move touched fills in full AT ITS LIMIT
  PRICE as maker (buy at L when price <= L, sell at L when price >= L), in the order the path meets them
  (falling: highest buy first; rising: lowest sell first; FIFO within a price). A tick may carry the trade's
  quantity: then only that much fills, in the same order, and an order it partly covers becomes
  PARTIALLY_FILLED and keeps its place. No depth model beyond that (a taker order fills in full).
- STOP_LOSS_LIMIT triggers on the last trade price (sell: last <= stop, buy: last >= stop) or, with a book
  feed, on the touch side (sell: bid <= stop, buy: ask >= stop). It then becomes a LIMIT at the point of
  the path where it triggered: if that limit crosses the price there, it fills at that price as taker.
  Placing a stop that would trigger at once is rejected (-2010 "Stop price would trigger immediately.").
- A LIMIT that crosses on placement fills at once as taker at the current price, which is never worse than
  its limit (buy: min(limit, ask or last), sell: max(limit, bid or last)), as Binance does.
  LIMIT_MAKER that would cross is rejected (-2010 "Order would immediately match and take.").
- MARKET fills at once as taker: buys at the ask (else last), sells at the bid (else last).
- Every mutation appends `EngineEvent(account, event)` values (OrderUpdate, Fill, BalanceUpdate) to an
  internal buffer; `drain()` hands them out in order. For a fill the order is: Fill, OrderUpdate(FILLED),
  BalanceUpdate. No clock is read: every timestamp is passed in (default: the last tick's ts).
- `cancel_all` on a symbol with nothing open returns [] (real Binance answers -2011; the fake maps it).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from tgtrader.core.rules import SymbolRules
from tgtrader.errors import (
    BadSymbol,
    ExchangeError,
    FilterRejected,
    InsufficientBalance,
    UnknownOrder,
    WouldMatch,
)
from tgtrader.core.ports import BalanceUpdate
from tgtrader.types import Balance, Fill, OrderStatus, OrderType, OrderUpdate, Side

ZERO = Decimal(0)
DEFAULT_FEE = Decimal("0.001")

MSG_INSUFFICIENT = "Account has insufficient balance for requested action."
MSG_UNKNOWN_ORDER = "Unknown order sent."
MSG_BAD_SYMBOL = "Invalid symbol."
MSG_DUPLICATE = "Duplicate order sent."
MSG_WOULD_MATCH = "Order would immediately match and take."
MSG_STOP_IMMEDIATE = "Stop price would trigger immediately."
MSG_NO_PRICE = "Market has no price yet."


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One piece of exchange news for one account (the fake routes by account, paper has one)."""

    account: str
    event: OrderUpdate | Fill | BalanceUpdate


@dataclass(slots=True)
class EngineOrder:
    """The engine's mutable record of one order. `locked` is what this order still holds of `locked_asset`."""

    account: str
    symbol: str
    client_order_id: str
    order_id: int
    side: Side
    order_type: OrderType
    orig_qty: Decimal
    price: Decimal  # limit price (0 for MARKET, as Binance reports it)
    stop_price: Decimal | None
    time_in_force: str
    status: OrderStatus
    locked_asset: str
    locked: Decimal
    created_ms: int
    updated_ms: int
    seq: int
    working: bool = True  # False while a stop order waits for its trigger
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO

    def to_update(self) -> OrderUpdate:
        return OrderUpdate(
            symbol=self.symbol,
            client_order_id=self.client_order_id,
            side=self.side,
            order_type=self.order_type,
            status=self.status,
            price=self.price,
            orig_qty=self.orig_qty,
            executed_qty=self.executed_qty,
            cum_quote=self.cum_quote,
            exchange_order_id=self.order_id,
            ts_ms=self.updated_ms,
        )

    def to_row(self) -> dict[str, Any]:
        """JSON-able form (Decimals as strings) for persistence."""
        return {
            "account": self.account,
            "symbol": self.symbol,
            "client_order_id": self.client_order_id,
            "order_id": self.order_id,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "orig_qty": str(self.orig_qty),
            "price": str(self.price),
            "stop_price": None if self.stop_price is None else str(self.stop_price),
            "time_in_force": self.time_in_force,
            "status": self.status.value,
            "locked_asset": self.locked_asset,
            "locked": str(self.locked),
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "seq": self.seq,
            "working": self.working,
            "executed_qty": str(self.executed_qty),
            "cum_quote": str(self.cum_quote),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "EngineOrder":
        return cls(
            account=row["account"],
            symbol=row["symbol"],
            client_order_id=row["client_order_id"],
            order_id=int(row["order_id"]),
            side=Side(row["side"]),
            order_type=OrderType(row["order_type"]),
            orig_qty=Decimal(row["orig_qty"]),
            price=Decimal(row["price"]),
            stop_price=None if row.get("stop_price") is None else Decimal(row["stop_price"]),
            time_in_force=row["time_in_force"],
            status=OrderStatus(row["status"]),
            locked_asset=row["locked_asset"],
            locked=Decimal(row["locked"]),
            created_ms=int(row["created_ms"]),
            updated_ms=int(row["updated_ms"]),
            seq=int(row["seq"]),
            working=bool(row["working"]),
            executed_qty=Decimal(row["executed_qty"]),
            cum_quote=Decimal(row["cum_quote"]),
        )


class _Side:
    """Resting orders of one kind on one side: sorted distinct price levels + FIFO lists per level."""

    __slots__ = ("prices", "levels")

    def __init__(self) -> None:
        self.prices: list[Decimal] = []
        self.levels: dict[Decimal, list[EngineOrder]] = {}

    def add(self, key: Decimal, order: EngineOrder) -> None:
        level = self.levels.get(key)
        if level is None:
            self.levels[key] = [order]
            insort(self.prices, key)
        else:
            level.append(order)

    def remove(self, key: Decimal, order: EngineOrder) -> None:
        level = self.levels.get(key)
        if not level:
            return
        try:
            level.remove(order)
        except ValueError:
            return
        if not level:
            del self.levels[key]
            i = bisect_left(self.prices, key)
            if i < len(self.prices) and self.prices[i] == key:
                del self.prices[i]

    def pop_at_or_above(self, price: Decimal) -> list[tuple[Decimal, EngineOrder]]:
        """Remove every order keyed >= price, highest key first (FIFO within a level)."""
        i = bisect_left(self.prices, price)
        keys = self.prices[i:]
        del self.prices[i:]
        out: list[tuple[Decimal, EngineOrder]] = []
        for key in reversed(keys):
            out.extend((key, o) for o in self.levels.pop(key))
        return out

    def pop_at_or_below(self, price: Decimal) -> list[tuple[Decimal, EngineOrder]]:
        """Remove every order keyed <= price, lowest key first (FIFO within a level)."""
        i = bisect_right(self.prices, price)
        keys = self.prices[:i]
        del self.prices[:i]
        out: list[tuple[Decimal, EngineOrder]] = []
        for key in keys:
            out.extend((key, o) for o in self.levels.pop(key))
        return out


class _Book:
    __slots__ = ("rules", "bids", "asks", "stop_sells", "stop_buys", "last", "bid", "ask", "next_trade_id", "ts_ms")

    def __init__(self, rules: SymbolRules) -> None:
        self.rules = rules
        self.bids = _Side()  # resting buy limits, keyed by limit price
        self.asks = _Side()  # resting sell limits
        self.stop_sells = _Side()  # waiting sell stops, keyed by stop price (trigger when price <= stop)
        self.stop_buys = _Side()  # waiting buy stops (trigger when price >= stop)
        self.last: Decimal | None = None
        self.bid: Decimal | None = None
        self.ask: Decimal | None = None
        self.next_trade_id = 1
        self.ts_ms = 0

    def ref_buy(self) -> Decimal | None:
        """The price a buy would take at now: ask, else last trade."""
        return self.ask if self.ask is not None else self.last

    def ref_sell(self) -> Decimal | None:
        return self.bid if self.bid is not None else self.last

    def reference(self) -> Decimal | None:
        """A stand-in for Binance's average price (percent-price bands, market notional)."""
        if self.last is not None:
            return self.last
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2
        return self.bid if self.bid is not None else self.ask


class MatchingEngine:
    """Balances, order books of our own resting orders, and fills against fed market prices."""

    def __init__(
        self,
        rules: Iterable[SymbolRules] = (),
        maker_fee: Decimal = DEFAULT_FEE,
        taker_fee: Decimal = DEFAULT_FEE,
    ) -> None:
        self.maker_fee = Decimal(maker_fee)
        self.taker_fee = Decimal(taker_fee)
        self._books: dict[str, _Book] = {}
        self._balances: dict[str, dict[str, list[Decimal]]] = {}  # account -> asset -> [free, locked]
        self._orders: dict[tuple[str, str, str], EngineOrder] = {}  # (account, symbol, client id) -> latest
        self._by_id: dict[tuple[str, int], EngineOrder] = {}  # (symbol, order id)
        self._open: dict[str, dict[str, dict[str, EngineOrder]]] = {}  # account -> symbol -> cid -> order
        self._trades: dict[tuple[str, str], list[Fill]] = {}  # (account, symbol) -> fills by trade id
        self._events: list[EngineEvent] = []
        self.next_order_id = 1
        self._seq = 0
        self._ts_ms = 0
        for r in rules:
            self.add_symbol(r)

    # ------------------------------------------------------------ setup

    def add_symbol(self, rules: SymbolRules) -> None:
        if rules.symbol in self._books:
            self._books[rules.symbol].rules = rules
        else:
            self._books[rules.symbol] = _Book(rules)

    @property
    def symbols(self) -> list[str]:
        return list(self._books)

    def rules(self, symbol: str) -> SymbolRules:
        return self._book(symbol).rules

    @property
    def now_ms(self) -> int:
        """The latest timestamp seen (ticks or calls): the default time of calls without one."""
        return self._ts_ms

    def fee_lock_rate(self) -> Decimal:
        return max(self.maker_fee, self.taker_fee)

    def deposit(self, account: str, asset: str, amount: Decimal, ts_ms: int | None = None) -> None:
        """Add (or with a negative amount, withdraw) free balance. Emits a BalanceUpdate."""
        bal = self._bal(account, asset)
        if bal[0] + amount < 0:
            raise InsufficientBalance(MSG_INSUFFICIENT)
        bal[0] += amount
        self._emit_balances(account, (asset,), self._ts(ts_ms))

    def set_balance(self, account: str, asset: str, free: Decimal) -> None:
        """Set the free balance outright (test and demo setup; no event)."""
        self._bal(account, asset)[0] = Decimal(free)

    # ------------------------------------------------------------ queries

    def balances(self, account: str) -> dict[str, Balance]:
        return {a: Balance(a, v[0], v[1]) for a, v in self._balances.get(account, {}).items()}

    def balance(self, account: str, asset: str) -> Balance:
        v = self._balances.get(account, {}).get(asset)
        return Balance(asset, v[0], v[1]) if v else Balance(asset, ZERO, ZERO)

    def last_price(self, symbol: str) -> Decimal | None:
        return self._book(symbol).last

    def book_top(self, symbol: str) -> tuple[Decimal | None, Decimal | None]:
        b = self._book(symbol)
        return b.bid, b.ask

    def reference_price(self, symbol: str) -> Decimal | None:
        return self._book(symbol).reference()

    def get_order(self, account: str, symbol: str, client_order_id: str) -> OrderUpdate | None:
        o = self._orders.get((account, symbol, client_order_id))
        return o.to_update() if o else None

    def find_order(
        self, account: str, symbol: str, client_order_id: str | None = None, order_id: int | None = None
    ) -> EngineOrder | None:
        """The live record (for the fake's Binance-shaped answers). Do not mutate it."""
        if client_order_id is not None:
            return self._orders.get((account, symbol, client_order_id))
        if order_id is not None:
            o = self._by_id.get((symbol, order_id))
            return o if o is not None and o.account == account else None
        return None

    def open_orders(self, account: str, symbol: str | None = None) -> list[OrderUpdate]:
        return [o.to_update() for o in self.open_order_records(account, symbol)]

    def open_order_records(self, account: str, symbol: str | None = None) -> list[EngineOrder]:
        by_symbol = self._open.get(account, {})
        if symbol is not None:
            return sorted(by_symbol.get(symbol, {}).values(), key=lambda o: o.seq)
        return sorted((o for orders in by_symbol.values() for o in orders.values()), key=lambda o: o.seq)

    def open_count(self, account: str, symbol: str) -> int:
        return len(self._open.get(account, {}).get(symbol, ()))

    def all_orders(self, account: str | None = None) -> list[EngineOrder]:
        return [o for o in self._orders.values() if account is None or o.account == account]

    def my_trades(self, account: str, symbol: str, from_id: int | None = None, limit: int | None = None) -> list[Fill]:
        trades = self._trades.get((account, symbol), [])
        start = 0
        if from_id is not None:
            lo, hi = 0, len(trades)
            while lo < hi:
                mid = (lo + hi) // 2
                if trades[mid].trade_id < from_id:
                    lo = mid + 1
                else:
                    hi = mid
            start = lo
        out = trades[start:]
        return out[:limit] if limit is not None else out

    def drain(self) -> list[EngineEvent]:
        """Hand out and clear the events produced since the last drain, oldest first."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------ orders

    def place_order(
        self,
        account: str,
        symbol: str,
        client_order_id: str,
        side: Side,
        order_type: OrderType,
        qty: Decimal,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: str | None = "GTC",
        ts_ms: int | None = None,
    ) -> OrderUpdate:
        """Validate like Binance, lock funds, fill at once if it crosses. Returns the order after placement."""
        book = self._book(symbol)
        ts = self._ts(ts_ms)
        rules = book.rules
        tif = (time_in_force or "GTC").upper()
        if order_type is OrderType.LIMIT_MAKER:
            tif = "GTC"
        if order_type is not OrderType.MARKET and price is None:
            raise ExchangeError("Mandatory parameter 'price' was not sent, was empty/null, or malformed.", -1102)
        if order_type is OrderType.STOP_LOSS_LIMIT and stop_price is None:
            raise ExchangeError("Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.", -1102)
        if order_type is OrderType.MARKET:
            price = None
        if order_type is not OrderType.STOP_LOSS_LIMIT:
            stop_price = None
        if tif not in ("GTC", "IOC", "FOK"):
            raise ExchangeError("Invalid timeInForce.", -1115)
        ref = book.reference()
        if order_type is OrderType.MARKET:
            ref = book.ref_buy() if side is Side.BUY else book.ref_sell()
            if ref is None:
                raise ExchangeError(MSG_NO_PRICE, -2010)
        problems = rules.check_order(side, order_type, qty, price, ref, stop_price)
        if problems:
            first = problems[0]
            if first.filter == "STATUS":
                raise ExchangeError("Market is closed.", -1013)
            if first.filter == "ORDER_TYPE":
                raise ExchangeError("Order type not supported for this symbol.", -1116)
            raise FilterRejected(f"Filter failure: {first.filter}", -1013)
        key = (account, symbol, client_order_id)
        existing = self._orders.get(key)
        if existing is not None and existing.status.is_open:
            raise ExchangeError(MSG_DUPLICATE, -2010)
        if rules.max_num_orders > 0 and self.open_count(account, symbol) >= rules.max_num_orders:
            raise FilterRejected("Filter failure: MAX_NUM_ORDERS", -1013)
        if order_type is OrderType.STOP_LOSS_LIMIT:
            assert stop_price is not None
            # what on_trade / on_book would trigger on: last trade, else the touch side of the book
            now = book.last if book.last is not None else (book.bid if side is Side.SELL else book.ask)
            if now is not None and (
                (side is Side.SELL and now <= stop_price) or (side is Side.BUY and now >= stop_price)
            ):
                raise ExchangeError(MSG_STOP_IMMEDIATE, -2010)

        base, quote = rules.base_asset, rules.quote_asset
        if order_type is OrderType.MARKET:
            assert ref is not None
            return self._place_market(account, book, client_order_id, side, qty, ref, ts)

        assert price is not None
        if side is Side.BUY:
            lock_asset, lock_amt = quote, price * qty * (1 + self.fee_lock_rate())
        else:
            lock_asset, lock_amt = base, qty
        cross_px = self._cross_price(book, side, price) if order_type is not OrderType.STOP_LOSS_LIMIT else None
        bal = self._bal(account, lock_asset)
        if bal[0] < lock_amt:
            raise InsufficientBalance(MSG_INSUFFICIENT)
        if order_type is OrderType.LIMIT_MAKER and cross_px is not None:
            raise WouldMatch(MSG_WOULD_MATCH)
        if cross_px is None and tif in ("IOC", "FOK"):
            # Nothing to take: Binance accepts and expires it at once.
            o = self._new_order(account, symbol, client_order_id, side, order_type, qty, price, stop_price, tif,
                                lock_asset, ZERO, ts, OrderStatus.EXPIRED)
            self._events.append(EngineEvent(account, o.to_update()))
            return o.to_update()

        bal[0] -= lock_amt
        bal[1] += lock_amt
        o = self._new_order(account, symbol, client_order_id, side, order_type, qty, price, stop_price, tif,
                            lock_asset, lock_amt, ts, OrderStatus.NEW)
        self._mark_open(o)
        self._events.append(EngineEvent(account, o.to_update()))
        if order_type is OrderType.STOP_LOSS_LIMIT:
            o.working = False
            assert stop_price is not None
            (book.stop_sells if side is Side.SELL else book.stop_buys).add(stop_price, o)
            self._emit_balances(account, (lock_asset,), ts)
        elif cross_px is not None:
            self._fill(book, o, cross_px, is_maker=False, ts=ts)
        else:
            (book.bids if side is Side.BUY else book.asks).add(price, o)
            self._emit_balances(account, (lock_asset,), ts)
        return o.to_update()

    def cancel_order(
        self,
        account: str,
        symbol: str,
        client_order_id: str | None = None,
        order_id: int | None = None,
        ts_ms: int | None = None,
    ) -> OrderUpdate:
        book = self._book(symbol)
        o = self.find_order(account, symbol, client_order_id, order_id)
        if o is None or not o.status.is_open:
            raise UnknownOrder(MSG_UNKNOWN_ORDER)
        self._cancel(book, o, self._ts(ts_ms))
        return o.to_update()

    def cancel_all(self, account: str, symbol: str, ts_ms: int | None = None) -> list[OrderUpdate]:
        book = self._book(symbol)
        ts = self._ts(ts_ms)
        out = []
        for o in self.open_order_records(account, symbol):
            self._cancel(book, o, ts)
            out.append(o.to_update())
        return out

    def cancel_replace(
        self,
        account: str,
        symbol: str,
        cancel_client_order_id: str | None,
        client_order_id: str,
        side: Side,
        order_type: OrderType,
        qty: Decimal,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: str | None = "GTC",
        cancel_order_id: int | None = None,
        ts_ms: int | None = None,
    ) -> tuple[OrderUpdate, OrderUpdate]:
        """Binance cancelReplace with STOP_ON_FAILURE: cancel, then place.

        If the cancel fails, nothing changes and UnknownOrder is raised. If the new order fails, the cancel
        stands and the placement error is raised with `.cancel_update` set (Binance: -2021 partial failure).
        """
        canceled = self.cancel_order(account, symbol, cancel_client_order_id, cancel_order_id, ts_ms)
        try:
            new = self.place_order(account, symbol, client_order_id, side, order_type, qty, price, stop_price,
                                   time_in_force, ts_ms)
        except ExchangeError as exc:
            exc.cancel_update = canceled  # type: ignore[attr-defined]
            raise
        return canceled, new

    # ------------------------------------------------------------ market data

    def on_trade(self, symbol: str, price: Decimal, ts_ms: int, qty: Decimal | None = None) -> int:
        """A trade at `price`: fill what the move from the previous price touched. Returns fills made.

        `qty` (optional) caps the quantity that can fill on this tick, shared in path order (then FIFO);
        an order it only partly covers becomes PARTIALLY_FILLED and keeps its place. None: no cap.
        """
        book = self._books.get(symbol)
        if book is None:
            raise BadSymbol(MSG_BAD_SYMBOL)
        prev = book.last
        book.last = price
        book.ts_ms = ts_ms
        if ts_ms > self._ts_ms:
            self._ts_ms = ts_ms
        bids, asks, ss, sb = book.bids.prices, book.asks.prices, book.stop_sells.prices, book.stop_buys.prices
        down = (bids and bids[-1] >= price) or (ss and ss[-1] >= price)
        up = (asks and asks[0] <= price) or (sb and sb[0] <= price)
        if not down and not up:
            return 0
        vol = [qty] if qty is not None else None
        n = 0
        if down and up and prev is not None and price > prev:
            n += self._move_up(book, price, ts_ms, vol)
            n += self._move_down(book, price, ts_ms, vol)
            return n
        if down:
            n += self._move_down(book, price, ts_ms, vol)
        if up:
            n += self._move_up(book, price, ts_ms, vol)
        return n

    def on_book(self, symbol: str, bid: Decimal | None, ask: Decimal | None, ts_ms: int) -> int:
        """Best bid/ask changed: buys at L >= ask and sells at L <= bid fill at L (maker). Returns orders filled."""
        book = self._books.get(symbol)
        if book is None:
            raise BadSymbol(MSG_BAD_SYMBOL)
        book.bid, book.ask = bid, ask
        book.ts_ms = ts_ms
        if ts_ms > self._ts_ms:
            self._ts_ms = ts_ms
        n = 0
        if ask is not None:
            n += self._move_down_book(book, ask, ts_ms)
        if bid is not None:
            n += self._move_up_book(book, bid, ts_ms)
        return n

    # ------------------------------------------------------------ internals: movement

    def _move_down(self, book: _Book, price: Decimal, ts: int, vol: list[Decimal] | None = None) -> int:
        """Falling to `price`: buys at L >= price and sell stops at S >= price, highest first."""
        limits = book.bids.pop_at_or_above(price)
        stops = book.stop_sells.pop_at_or_above(price)
        if not stops and vol is None:
            for key, o in limits:
                self._fill(book, o, key, is_maker=True, ts=ts)
            return len(limits)
        merged = [(k, 0, o) for k, o in limits] + [(k, 1, o) for k, o in stops]
        merged.sort(key=lambda t: (-t[0], t[1], t[2].seq))
        return self._walk(book, merged, ts, vol)

    def _move_up(self, book: _Book, price: Decimal, ts: int, vol: list[Decimal] | None = None) -> int:
        """Rising to `price`: sells at L <= price and buy stops at S <= price, lowest first."""
        limits = book.asks.pop_at_or_below(price)
        stops = book.stop_buys.pop_at_or_below(price)
        if not stops and vol is None:
            for key, o in limits:
                self._fill(book, o, key, is_maker=True, ts=ts)
            return len(limits)
        merged = [(k, 0, o) for k, o in limits] + [(k, 1, o) for k, o in stops]
        merged.sort(key=lambda t: (t[0], t[1], t[2].seq))
        return self._walk(book, merged, ts, vol)

    def _walk(
        self, book: _Book, merged: list[tuple[Decimal, int, EngineOrder]], ts: int, vol: list[Decimal] | None
    ) -> int:
        """Process touched limits (kind 0) and reached stops (kind 1) in path order, within the volume cap.

        What the cap leaves untouched goes back where it was, in the same order (FIFO kept).
        """
        n = 0
        for i, (key, kind, o) in enumerate(merged):
            if vol is not None and vol[0] <= 0:
                for k2, kind2, o2 in merged[i:]:
                    if kind2 == 0:
                        (book.bids if o2.side is Side.BUY else book.asks).add(k2, o2)
                    else:
                        (book.stop_sells if o2.side is Side.SELL else book.stop_buys).add(k2, o2)
                break
            if kind == 0:
                n += self._fill_capped(book, o, key, True, ts, vol)
                if o.status.is_open:
                    (book.bids if o.side is Side.BUY else book.asks).add(key, o)
            else:
                n += self._trigger(book, o, key, ts, vol)
        return n

    def _fill_capped(
        self, book: _Book, o: EngineOrder, px: Decimal, is_maker: bool, ts: int, vol: list[Decimal] | None
    ) -> int:
        if vol is None:
            self._fill(book, o, px, is_maker=is_maker, ts=ts)
            return 1
        q = min(o.orig_qty - o.executed_qty, vol[0])
        if q <= 0:
            return 0
        vol[0] -= q
        self._fill(book, o, px, is_maker=is_maker, ts=ts, qty=q)
        return 1

    def _move_down_book(self, book: _Book, ask: Decimal, ts: int) -> int:
        n = 0
        for key, o in book.bids.pop_at_or_above(ask):
            self._fill(book, o, key, is_maker=True, ts=ts)
            n += 1
        for key, o in book.stop_buys.pop_at_or_below(ask):
            n += self._trigger(book, o, ask, ts)
        return n

    def _move_up_book(self, book: _Book, bid: Decimal, ts: int) -> int:
        n = 0
        for key, o in book.asks.pop_at_or_below(bid):
            self._fill(book, o, key, is_maker=True, ts=ts)
            n += 1
        for key, o in book.stop_sells.pop_at_or_above(bid):
            n += self._trigger(book, o, bid, ts)
        return n

    def _trigger(self, book: _Book, o: EngineOrder, at: Decimal, ts: int, vol: list[Decimal] | None = None) -> int:
        """A stop reached its trigger with the market at `at`: it becomes a limit; fill now if it crosses."""
        o.working = True
        o.updated_ms = ts
        n = 0
        if (o.side is Side.SELL and o.price <= at) or (o.side is Side.BUY and o.price >= at):
            n = self._fill_capped(book, o, at, False, ts, vol)
        if o.status.is_open:
            (book.bids if o.side is Side.BUY else book.asks).add(o.price, o)
        return n

    # ------------------------------------------------------------ internals: orders and money

    def _cross_price(self, book: _Book, side: Side, price: Decimal) -> Decimal | None:
        """The taker price if a limit at `price` would cross now, else None."""
        if side is Side.BUY:
            ref = book.ref_buy()
            if ref is not None and price >= ref:
                return ref
        else:
            ref = book.ref_sell()
            if ref is not None and price <= ref:
                return ref
        return None

    def _new_order(
        self, account: str, symbol: str, cid: str, side: Side, order_type: OrderType, qty: Decimal,
        price: Decimal | None, stop_price: Decimal | None, tif: str, lock_asset: str, lock_amt: Decimal,
        ts: int, status: OrderStatus,
    ) -> EngineOrder:
        self._seq += 1
        o = EngineOrder(
            account=account, symbol=symbol, client_order_id=cid, order_id=self.next_order_id, side=side,
            order_type=order_type, orig_qty=qty, price=price if price is not None else ZERO,
            stop_price=stop_price, time_in_force=tif, status=status, locked_asset=lock_asset, locked=lock_amt,
            created_ms=ts, updated_ms=ts, seq=self._seq,
        )
        self.next_order_id += 1
        self._orders[(account, symbol, cid)] = o
        self._by_id[(symbol, o.order_id)] = o
        return o

    def _place_market(
        self, account: str, book: _Book, cid: str, side: Side, qty: Decimal, px: Decimal, ts: int
    ) -> OrderUpdate:
        rules = book.rules
        if side is Side.BUY:
            need_asset, need = rules.quote_asset, px * qty * (1 + self.taker_fee)
        else:
            need_asset, need = rules.base_asset, qty
        bal = self._bal(account, need_asset)
        if bal[0] < need:
            raise InsufficientBalance(MSG_INSUFFICIENT)
        bal[0] -= need
        bal[1] += need
        o = self._new_order(account, book.rules.symbol, cid, side, OrderType.MARKET, qty, None, None, "GTC",
                            need_asset, need, ts, OrderStatus.NEW)
        self._mark_open(o)
        self._events.append(EngineEvent(account, o.to_update()))
        self._fill(book, o, px, is_maker=False, ts=ts)
        return o.to_update()

    def _fill(
        self, book: _Book, o: EngineOrder, px: Decimal, is_maker: bool, ts: int, qty: Decimal | None = None
    ) -> None:
        """Fill `qty` (default: all that remains) of `o` at `px`; move money; emit Fill, OrderUpdate, BalanceUpdate.

        A partial fill releases the lock of the filled part (buy: qty x limit x (1 + fee lock rate), capped by
        what is locked); the last fill releases whatever is left, so totals stay exact.
        """
        rules = book.rules
        base, quote = rules.base_asset, rules.quote_asset
        remaining = o.orig_qty - o.executed_qty
        if qty is None or qty >= remaining:
            qty = remaining
        final = qty == remaining
        notional = px * qty
        fee = notional * (self.maker_fee if is_maker else self.taker_fee)
        bals = self._balances[o.account]
        if final:
            release = o.locked
        elif o.side is Side.BUY:
            release = min(o.locked, qty * o.price * (1 + self.fee_lock_rate()))
        else:
            release = qty
        if o.side is Side.BUY:
            q = bals[quote]
            q[1] -= release
            q[0] += release - notional - fee
            self._bal(o.account, base)[0] += qty
        else:
            b = bals[base]
            b[1] -= release
            b[0] += release - qty
            self._bal(o.account, quote)[0] += notional - fee
        o.locked -= release
        o.executed_qty += qty
        o.cum_quote += notional
        o.status = OrderStatus.FILLED if final else OrderStatus.PARTIALLY_FILLED
        o.updated_ms = ts
        o.working = True
        if final:
            self._mark_closed(o)
        trade_id = book.next_trade_id
        book.next_trade_id += 1
        fill = Fill(
            symbol=o.symbol, trade_id=trade_id, client_order_id=o.client_order_id, side=o.side, price=px,
            qty=qty, fee=fee, fee_asset=quote, is_maker=is_maker, ts_ms=ts, exchange_order_id=o.order_id,
        )
        self._trades.setdefault((o.account, o.symbol), []).append(fill)
        ev = self._events
        ev.append(EngineEvent(o.account, fill))
        ev.append(EngineEvent(o.account, o.to_update()))
        self._emit_balances(o.account, (base, quote), ts)

    def _cancel(self, book: _Book, o: EngineOrder, ts: int) -> None:
        if o.working:
            (book.bids if o.side is Side.BUY else book.asks).remove(o.price, o)
        else:
            assert o.stop_price is not None
            (book.stop_sells if o.side is Side.SELL else book.stop_buys).remove(o.stop_price, o)
        bal = self._bal(o.account, o.locked_asset)
        bal[1] -= o.locked
        bal[0] += o.locked
        o.locked = ZERO
        o.status = OrderStatus.CANCELED
        o.updated_ms = ts
        self._mark_closed(o)
        self._events.append(EngineEvent(o.account, o.to_update()))
        self._emit_balances(o.account, (o.locked_asset,), ts)

    def _mark_open(self, o: EngineOrder) -> None:
        self._open.setdefault(o.account, {}).setdefault(o.symbol, {})[o.client_order_id] = o

    def _mark_closed(self, o: EngineOrder) -> None:
        orders = self._open.get(o.account, {}).get(o.symbol)
        if orders is not None:
            orders.pop(o.client_order_id, None)

    def _emit_balances(self, account: str, assets: Iterable[str], ts: int) -> None:
        bals = self._balances[account]
        self._events.append(
            EngineEvent(account, BalanceUpdate(tuple(Balance(a, bals[a][0], bals[a][1]) for a in assets), ts))
        )

    def _bal(self, account: str, asset: str) -> list[Decimal]:
        acc = self._balances.setdefault(account, {})
        v = acc.get(asset)
        if v is None:
            v = acc[asset] = [ZERO, ZERO]
        return v

    def _book(self, symbol: str) -> _Book:
        book = self._books.get(symbol)
        if book is None:
            raise BadSymbol(MSG_BAD_SYMBOL)
        return book

    def _ts(self, ts_ms: int | None) -> int:
        if ts_ms is None:
            return self._ts_ms
        if ts_ms > self._ts_ms:
            self._ts_ms = ts_ms
        return ts_ms

    # ------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to rebuild the engine (JSON-able; Decimals as strings)."""
        state = self.meta_snapshot()
        state["balances"] = {
            acc: {a: [str(v[0]), str(v[1])] for a, v in assets.items()} for acc, assets in self._balances.items()
        }
        state["orders"] = [o.to_row() for o in self._orders.values()]
        state["trades"] = [fill_to_row(acc, f) for (acc, _), fills in self._trades.items() for f in fills]
        return state

    def meta_snapshot(self) -> dict[str, Any]:
        """Counters and last prices only (small; persisted after every mutation)."""
        return {
            "next_order_id": self.next_order_id,
            "seq": self._seq,
            "ts_ms": self._ts_ms,
            "books": {
                s: {
                    "next_trade_id": b.next_trade_id,
                    "last": None if b.last is None else str(b.last),
                    "bid": None if b.bid is None else str(b.bid),
                    "ask": None if b.ask is None else str(b.ask),
                }
                for s, b in self._books.items()
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a snapshot (symbols must already be added). Replaces balances, orders and trades."""
        self._balances.clear()
        self._orders.clear()
        self._by_id.clear()
        self._open.clear()
        self._trades.clear()
        for b in self._books.values():
            b.bids, b.asks, b.stop_sells, b.stop_buys = _Side(), _Side(), _Side(), _Side()
        self.next_order_id = int(state.get("next_order_id", 1))
        self._seq = int(state.get("seq", 0))
        self._ts_ms = int(state.get("ts_ms", 0))
        for s, bs in state.get("books", {}).items():
            b = self._books.get(s)
            if b is None:
                continue
            b.next_trade_id = int(bs.get("next_trade_id", 1))
            b.last = _opt_dec(bs.get("last"))
            b.bid = _opt_dec(bs.get("bid"))
            b.ask = _opt_dec(bs.get("ask"))
        for acc, assets in state.get("balances", {}).items():
            for a, (free, locked) in assets.items():
                self._balances.setdefault(acc, {})[a] = [Decimal(free), Decimal(locked)]
        for row in sorted(state.get("orders", []), key=lambda r: int(r["seq"])):
            self._load_order(EngineOrder.from_row(row))
        for row in sorted(state.get("trades", []), key=lambda r: (r["symbol"], int(r["trade_id"]))):
            acc, f = fill_from_row(row)
            self._trades.setdefault((acc, f.symbol), []).append(f)
            b = self._books.get(f.symbol)
            if b is not None and f.trade_id >= b.next_trade_id:
                b.next_trade_id = f.trade_id + 1

    def _load_order(self, o: EngineOrder) -> None:
        self._orders[(o.account, o.symbol, o.client_order_id)] = o
        self._by_id[(o.symbol, o.order_id)] = o
        self.next_order_id = max(self.next_order_id, o.order_id + 1)
        self._seq = max(self._seq, o.seq)
        if not o.status.is_open:
            return
        self._mark_open(o)
        book = self._books.get(o.symbol)
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
