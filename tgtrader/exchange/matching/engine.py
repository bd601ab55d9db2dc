"""MatchingEngine: accounts and balances, order placement / cancel / replace, and matching against fed prices.

The fill model (touch fills at the limit price in path order, stops, events) is described in the package
docstring, `tgtrader.exchange.matching`; which asset pays a fill's commission, in `fees.FeeModel`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from tgtrader.core.ports import BalanceUpdate
from tgtrader.core.rules import SymbolRules
from tgtrader.errors import BadSymbol, ExchangeError, FilterRejected, InsufficientBalance, UnknownOrder, WouldMatch
from tgtrader.exchange.matching import codec
from tgtrader.exchange.matching.book import _Book
from tgtrader.exchange.matching.fees import FeeModel
from tgtrader.exchange.matching.filters import check_placement, check_stop_trigger
from tgtrader.exchange.matching.orders import (
    DEFAULT_FEE,
    MSG_BAD_SYMBOL,
    MSG_DUPLICATE,
    MSG_INSUFFICIENT,
    MSG_UNKNOWN_ORDER,
    MSG_WOULD_MATCH,
    ZERO,
    EngineEvent,
    EngineOrder,
)
from tgtrader.fees import DEFAULT_FEE_ASSET, FeeAsset
from tgtrader.types import Balance, Fill, OrderStatus, OrderType, OrderUpdate, Side


class MatchingEngine:
    """Balances, order books of our own resting orders, and fills against fed market prices."""

    def __init__(
        self,
        rules: Iterable[SymbolRules] = (),
        maker_fee: Decimal = DEFAULT_FEE,
        taker_fee: Decimal = DEFAULT_FEE,
        fee_asset: FeeAsset = DEFAULT_FEE_ASSET,
        bnb_prices: Mapping[str, Decimal] | None = None,
    ) -> None:
        """`fee_asset`: who pays commissions; `bnb_prices`: quote asset -> 1 BNB's price (see `fees.FeeModel`)."""
        self.maker_fee = Decimal(maker_fee)
        self.taker_fee = Decimal(taker_fee)
        self.fees = FeeModel(fee_asset, dict(bnb_prices or {}))
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
        """What a buy locks on top of its notional: its fee, when the fee is paid in quote (else nothing)."""
        return max(self.maker_fee, self.taker_fee) if self.fees.buy_pays_quote else ZERO

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
        start = 0 if from_id is None else bisect_left(trades, from_id, key=lambda f: f.trade_id)
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
        price, stop_price, tif, ref = check_placement(book, side, order_type, qty, price, stop_price, time_in_force)
        key = (account, symbol, client_order_id)
        existing = self._orders.get(key)
        if existing is not None and existing.status.is_open:
            raise ExchangeError(MSG_DUPLICATE, -2010)
        if rules.max_num_orders > 0 and self.open_count(account, symbol) >= rules.max_num_orders:
            raise FilterRejected("Filter failure: MAX_NUM_ORDERS", -1013)
        if order_type is OrderType.STOP_LOSS_LIMIT:
            assert stop_price is not None
            check_stop_trigger(book, side, stop_price)

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
        return self._move(book, book.bids.pop_at_or_above(price), book.stop_sells.pop_at_or_above(price), True, ts, vol)

    def _move_up(self, book: _Book, price: Decimal, ts: int, vol: list[Decimal] | None = None) -> int:
        """Rising to `price`: sells at L <= price and buy stops at S <= price, lowest first."""
        return self._move(book, book.asks.pop_at_or_below(price), book.stop_buys.pop_at_or_below(price), False, ts, vol)

    def _move(
        self, book: _Book, limits: list[tuple[Decimal, EngineOrder]], stops: list[tuple[Decimal, EngineOrder]],
        falling: bool, ts: int, vol: list[Decimal] | None,
    ) -> int:
        """Fill what a move popped, in path order (falling: highest key first; rising: lowest first; at one key
        limits before stops, then FIFO). Limits alone and no volume cap: they all fill as popped."""
        if not stops and vol is None:
            for key, o in limits:
                self._fill(book, o, key, is_maker=True, ts=ts)
            return len(limits)
        merged = [(k, 0, o) for k, o in limits] + [(k, 1, o) for k, o in stops]
        merged.sort(key=(lambda t: (-t[0], t[1], t[2].seq)) if falling else (lambda t: (t[0], t[1], t[2].seq)))
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
        for _key, o in book.stop_buys.pop_at_or_below(ask):
            n += self._trigger(book, o, ask, ts)
        return n

    def _move_up_book(self, book: _Book, bid: Decimal, ts: int) -> int:
        n = 0
        for key, o in book.asks.pop_at_or_below(bid):
            self._fill(book, o, key, is_maker=True, ts=ts)
            n += 1
        for _key, o in book.stop_sells.pop_at_or_above(bid):
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
            need_asset, need = rules.quote_asset, px * qty * (1 + (self.taker_fee if self.fees.buy_pays_quote else ZERO))
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

        A partial fill releases its share of the lock (the lock taken at placement, so a fee-asset change since
        cannot unbalance it); the last fill releases whatever is left, so totals stay exact. The commission is
        taken from the asset `self.fees` picks: base (a buy receives less), quote, or BNB.
        """
        rules = book.rules
        base, quote = rules.base_asset, rules.quote_asset
        remaining = o.orig_qty - o.executed_qty
        if qty is None or qty >= remaining:
            qty = remaining
        final = qty == remaining
        notional = px * qty
        bals = self._balances[o.account]
        bnb_free = bals.get("BNB", [ZERO])[0] if self.fees.mode == "bnb" else ZERO
        com = self.fees.commission(o.side, base, quote, qty, notional, self.maker_fee if is_maker else self.taker_fee,
                                   self.fees.bnb_price(quote, self._last_of), bnb_free)
        fee, fee_asset = com.amount, com.asset
        if final:
            release = o.locked
        elif o.side is Side.BUY:
            release = min(o.locked, o.locked * qty / remaining)
        else:
            release = qty
        if o.side is Side.BUY:
            q = bals[quote]
            q[1] -= release
            q[0] += release - notional - (fee if fee_asset == quote else ZERO)
            self._bal(o.account, base)[0] += qty - (fee if fee_asset == base else ZERO)
        else:
            b = bals[base]
            b[1] -= release
            b[0] += release - qty
            self._bal(o.account, quote)[0] += notional - (fee if fee_asset == quote else ZERO)
        if fee_asset not in (base, quote):
            self._bal(o.account, fee_asset)[0] -= fee
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
            qty=qty, fee=fee, fee_asset=fee_asset, is_maker=is_maker, ts_ms=ts, exchange_order_id=o.order_id,
        )
        self._trades.setdefault((o.account, o.symbol), []).append(fill)
        ev = self._events
        ev.append(EngineEvent(o.account, fill))
        ev.append(EngineEvent(o.account, o.to_update()))
        self._emit_balances(o.account, (base, quote) if fee_asset in (base, quote) else (base, quote, fee_asset), ts)

    def _last_of(self, symbol: str) -> Decimal | None:
        book = self._books.get(symbol)
        return None if book is None else book.reference()

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

    # ------------------------------------------------------------ persistence (the stored form: codec.py)

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to rebuild the engine (JSON-able; Decimals as strings)."""
        return codec.snapshot(self)

    def meta_snapshot(self) -> dict[str, Any]:
        """Counters and last prices only (small; persisted after every mutation)."""
        return codec.meta_snapshot(self)

    def restore(self, state: dict[str, Any]) -> None:
        """Load a snapshot (symbols must already be added). Replaces balances, orders and trades."""
        codec.restore(self, state)
