"""The fake venue: accounts, order placement as the matching engine answers it, self-trade prevention,
commission, market moves. Written from binance-spot-api-docs only (rest-api.md, filters.md, errors.md,
enums.md, user-data-stream.md, faqs/market_orders_faq.md, faqs/stp_faq.md, faqs/commission_faq.md).

News leaves as Binance user-data events (`executionReport`, `outboundAccountPosition`) through `drain()`;
answers are Binance REST shapes (`Order.ack/rest/cancel_answer`). Switches for tests: `commission`
("received": Binance's default, "quote"), `bnb_fees`, `set_liquidity`, `spread_ticks`, `set_avg_price`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tests.fakes.binance import errors as E
from tests.fakes.binance import filters as F
from tests.fakes.binance.book import Level, Market
from tests.fakes.binance.orders import (
    Order,
    OrderType,
    PreventedMatch,
    Side,
    Status,
    StpMode,
    Trade,
    execution_report,
    f8,
)
from tests.fakes.binance.params import parse_new_order

ZERO = Decimal(0)
RATE = Decimal("0.001")  # makerCommission / takerCommission 10 (bps) in GET /api/v3/account


@dataclass
class Balance:
    asset: str
    free: Decimal
    locked: Decimal


class Venue:
    """One Binance spot venue (several accounts possible; the fake server trades one)."""

    def __init__(self, symbols: Iterable[dict[str, Any]], now_ms: Callable[[], int],
                 exchange_filters: list[dict[str, Any]] | None = None) -> None:
        self.markets = {s["symbol"]: Market(F.SymbolSpec.from_info(s)) for s in symbols}
        self.now_ms = now_ms
        self.exchange_filters = exchange_filters or []
        self.maker_rate = RATE
        self.taker_rate = RATE
        # commission_faq.md: "the received amount is multiplied with the sum of the rates ... (For orders on the
        # BUY side, the received amount would be quantity.)" -> "received"; "quote" charges the quote asset on
        # both sides (the model tgtrader's paper venue uses).
        self.commission = "received"
        self.bnb_fees = False  # commission_faq.md: paid in BNB "assuming you have a sufficient balance"
        self.bnb_discount = Decimal("0.25")  # the FAQ's example "discount": "0.25000000"
        self.bnb_price: dict[str, Decimal] = {}  # quote asset -> price of 1 BNB, when no BNB<quote> market
        self._balances: dict[str, dict[str, list[Decimal]]] = {}
        self._orders: list[Order] = []
        self._by_cid: dict[tuple[str, str, str], Order] = {}  # newest order per (account, symbol, cid)
        self._by_id: dict[tuple[str, int], Order] = {}
        self._trades: dict[tuple[str, str], list[Trade]] = {}
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._order_ids = itertools.count(1)
        self._exec_ids = itertools.count(1)
        self._prevented_ids = itertools.count(0)
        self._seq = itertools.count(1)

    # ------------------------------------------------------------ setup and queries

    def market(self, symbol: str) -> Market:
        m = self.markets.get(symbol)
        if m is None:
            raise E.VenueError(E.BAD_SYMBOL, E.MSG_BAD_SYMBOL)
        return m

    @property
    def symbols(self) -> list[str]:
        return list(self.markets)

    def set_balance(self, account: str, asset: str, free: Decimal) -> None:
        self._bal(account, asset)[0] = Decimal(free)

    def balances(self, account: str) -> dict[str, Balance]:
        return {a: Balance(a, v[0], v[1]) for a, v in self._balances.get(account, {}).items()}

    def balance(self, account: str, asset: str) -> Balance:
        v = self._balances.get(account, {}).get(asset, [ZERO, ZERO])
        return Balance(asset, v[0], v[1])

    def set_liquidity(self, symbol: str, bids: list[tuple[str | Decimal, str | Decimal]] | None = None,
                      asks: list[tuple[str | Decimal, str | Decimal]] | None = None) -> None:
        """Outside depth a taker can hit, best first; None restores unlimited quantity at the touch."""
        m = self.market(symbol)
        m.outside_bids = None if bids is None else [Level(Decimal(p), Decimal(q)) for p, q in bids]
        m.outside_asks = None if asks is None else [Level(Decimal(p), Decimal(q)) for p, q in asks]

    def set_avg_price(self, symbol: str, price: str | Decimal | None) -> None:
        self.market(symbol).avg_override = None if price is None else Decimal(price)

    def last_price(self, symbol: str) -> Decimal | None:
        return self.market(symbol).last

    def avg_price(self, symbol: str) -> Decimal | None:
        return self.market(symbol).avg_price(self.now_ms())

    def find(self, account: str, symbol: str, client_order_id: str | None = None,
             order_id: int | None = None) -> Order | None:
        if order_id is not None:
            o = self._by_id.get((symbol, order_id))
            return o if o is not None and o.account == account else None
        if client_order_id is not None:
            return self._by_cid.get((account, symbol, client_order_id))
        return None

    def open_order_records(self, account: str, symbol: str | None = None) -> list[Order]:
        return [o for o in self._orders if o.account == account and o.status.is_open
                and (symbol is None or o.symbol == symbol)]

    open_orders = open_order_records

    def all_orders(self, account: str | None = None) -> list[Order]:
        return [o for o in self._orders if account is None or o.account == account]

    def my_trades(self, account: str, symbol: str, from_id: int | None = None) -> list[Trade]:
        rows = self._trades.get((account, symbol), [])
        return [t for t in rows if from_id is None or t.id >= from_id]

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        """(account, user-data event) pairs produced since the last drain, oldest first."""
        out, self._events = self._events, []
        return out

    # ------------------------------------------------------------ new order

    def place(self, account: str, p: dict[str, str], cid: str, accepted_mono: float | None = None
              ) -> tuple[Order, list[Trade]]:
        """POST /api/v3/order. Checks in this order: parameters (11xx), symbol and order type, STP mode,
        filters (-1013, filters.md), then what only the matching engine knows (-2010, errors.md)."""
        n = parse_new_order(p)
        sym, side, otype, qty, price, stop, tif = n.symbol, n.side, n.type, n.qty, n.price, n.stop, n.tif
        m = self.market(sym)
        spec = m.spec
        F.order_type_allowed(spec, otype)
        stp = F.stp_mode(spec, n.stp)
        now = self.now_ms()
        avg = m.avg_price(now)
        if price is not None:
            F.price_filter(spec, price)
            F.percent_price_by_side(spec, side, price, avg)
        if stop is not None:
            F.price_filter(spec, stop)
        F.lot_size(spec, qty, market=otype is OrderType.MARKET)
        if price is not None and price * qty <= 0:
            raise E.VenueError(E.NEW_ORDER_REJECTED, E.MSG_PRICE_QTY_ZERO)
        F.notional(spec, qty, price, avg)
        open_here = self.open_order_records(account, sym)
        F.max_num_orders(spec, len(open_here), sum(1 for o in open_here if o.type.is_algo), otype)
        everywhere = self.open_order_records(account)
        F.exchange_max_num_orders(self.exchange_filters, len(everywhere),
                                  sum(1 for o in everywhere if o.type.is_algo), otype)
        F.max_position(spec, side, qty, self._position(account, m))
        # --- the matching engine (errors.md -2010 NEW_ORDER_REJECTED messages)
        if spec.status != "TRADING":
            raise E.VenueError(E.NEW_ORDER_REJECTED, E.MSG_MARKET_CLOSED)
        prior = self._by_cid.get((account, sym, cid))
        if prior is not None and prior.status.is_open:
            # errors.md: "Duplicate order sent." - "The clOrdId is already in use." (only while that order is
            # open: a finished order's id can be used again)
            raise E.VenueError(E.NEW_ORDER_REJECTED, E.MSG_DUPLICATE)
        if otype is OrderType.STOP_LOSS_LIMIT:
            assert stop is not None
            # errors.md: "Order would trigger immediately." - "The order's stop price is not valid when compared
            # to the last traded price."
            if m.last is not None and ((side is Side.SELL and m.last <= stop) or (side is Side.BUY and m.last >= stop)):
                raise E.VenueError(E.NEW_ORDER_REJECTED, E.MSG_WOULD_TRIGGER)
        if otype is OrderType.LIMIT_MAKER:
            assert price is not None
            if self._crossing(m, side, price):
                # errors.md: "Order would immediately match and take." - "LIMIT_MAKER order type would
                # immediately match and trade, and not be a pure maker order."
                raise E.VenueError(E.NEW_ORDER_REJECTED, E.MSG_WOULD_MATCH)
        lock_asset, lock = self._lock_needed(m, side, otype, qty, price)
        bal = self._bal(account, lock_asset)
        if bal[0] < lock:
            raise E.VenueError(E.NEW_ORDER_REJECTED, E.MSG_INSUFFICIENT)
        bal[0] -= lock
        bal[1] += lock
        o = Order(account=account, symbol=sym, client_order_id=cid, order_id=next(self._order_ids), side=side,
                  type=otype, orig_qty=qty, price=price or ZERO, stop_price=stop or ZERO,
                  time_in_force=tif or "GTC", stp_mode=stp, created_ms=now, seq=next(self._seq), updated_ms=now,
                  locked_asset=lock_asset, locked=lock,
                  visible_from=time.monotonic() if accepted_mono is None else accepted_mono)
        self._orders.append(o)
        self._by_cid[(account, sym, cid)] = o
        self._by_id[(sym, o.order_id)] = o
        fills: list[Trade] = []
        if otype is OrderType.STOP_LOSS_LIMIT:
            o.working = False
            m.stops.append(o)
            self._report(o, "NEW")
            self._account_event(account, (lock_asset,))
            return o, fills
        o.working_ms = now
        if otype is OrderType.LIMIT and tif == "FOK" and not self._can_fill(m, o, None):
            o.status = Status.EXPIRED  # FOK: "fill or kill" - nothing traded
            self._release(o)
            self._report(o, "NEW")
            self._report(o, "EXPIRED")
            self._account_event(account, (lock_asset,))
            return o, fills
        self._report(o, "NEW")
        fills = self._take(m, o, at=None)
        self._after_take(m, o)
        self._account_event(account, self._assets(m))
        return o, fills

    def _lock_needed(self, m: Market, side: Side, otype: OrderType, qty: Decimal,
                     price: Decimal | None) -> tuple[str, Decimal]:
        spec = m.spec
        if side is Side.SELL:
            return spec.base, qty
        extra = (1 + max(self.maker_rate, self.taker_rate)) if self.commission == "quote" else Decimal(1)
        if price is not None:
            return spec.quote, price * qty * extra
        # MARKET buy: faqs/market_orders_faq.md "If you do not have sufficient balance for the order to be
        # completely filled, the order will be rejected." - the cost of the whole quantity at the book.
        cost, left = ZERO, qty
        for lv in m.outside(Side.BUY):
            q = left if lv.qty is None else min(left, lv.qty)
            cost += q * lv.price
            left -= q
            if left <= 0:
                break
        for o in m.asks:
            if left <= 0:
                break
            q = min(left, o.remaining)
            cost += q * o.price
            left -= q
        if left > 0 and m.last is not None:
            cost += left * m.last
        return spec.quote, cost * extra

    def _position(self, account: str, m: Market) -> Decimal:
        b = self._balances.get(account, {}).get(m.spec.base, [ZERO, ZERO])
        return b[0] + b[1] + sum((o.remaining for o in m.bids if o.account == account), ZERO)

    # ------------------------------------------------------------ matching

    def _candidates(self, m: Market, taker: Order, at: Decimal | None) -> list[tuple[Decimal, int, Level | Order]]:
        """What a taker can trade with, best first: outside levels, then resting orders (at one price the
        outside quantity was there first)."""
        limit = None if taker.type is OrderType.MARKET else taker.price
        buy = taker.side is Side.BUY
        out: list[tuple[Decimal, int, Level | Order]] = []
        for lv in m.outside(taker.side, at):
            out.append((lv.price, 0, lv))
        for o in (m.asks if buy else m.bids):
            if o is not taker:
                out.append((o.price, o.seq, o))
        if limit is not None:
            out = [c for c in out if (c[0] <= limit if buy else c[0] >= limit)]
        out.sort(key=lambda c: (c[0] if buy else -c[0], c[1]))
        return out

    def _crossing(self, m: Market, side: Side, price: Decimal) -> bool:
        probe = Order("", m.spec.symbol, "", 0, side, OrderType.LIMIT, Decimal(1), price, ZERO, "GTC",
                      StpMode.NONE, 0, 0)
        return bool(self._candidates(m, probe, None))

    def _can_fill(self, m: Market, o: Order, at: Decimal | None) -> bool:
        avail = ZERO
        for _, _, c in self._candidates(m, o, at):
            q = c.qty if isinstance(c, Level) else c.remaining
            if q is None:
                return True
            avail += q
        return avail >= o.remaining

    def _take(self, m: Market, taker: Order, at: Decimal | None) -> list[Trade]:
        """Walk the book for `taker`. Against the account's own resting order, STP decides (stp_faq.md:
        "STP behavior is typically determined by the STP mode of the taker order only")."""
        fills: list[Trade] = []
        for px, _, c in self._candidates(m, taker, at):
            if taker.remaining <= 0 or not taker.status.is_open:
                break
            if isinstance(c, Level):
                q = taker.remaining if c.qty is None else min(taker.remaining, c.qty)
                if c.qty is not None:
                    c.qty -= q
                fills.append(self._fill(m, taker, px, q, is_maker=False))
                m.record_trade(self.now_ms(), px, q)
                continue
            maker = c
            if not maker.status.is_open:
                continue
            mode = taker.stp_mode
            if maker.account == taker.account and mode is not StpMode.NONE:
                self._prevent(m, taker, maker, px, mode)
                continue
            q = min(taker.remaining, maker.remaining)
            fills.append(self._fill(m, taker, px, q, is_maker=False))
            self._fill(m, maker, px, q, is_maker=True)
            m.record_trade(self.now_ms(), px, q)
            if not maker.status.is_open:
                m.unrest(maker)
        return fills

    def _prevent(self, m: Market, taker: Order, maker: Order, px: Decimal, mode: StpMode) -> None:
        """stp_faq.md: "EXPIRE_TAKER - ... immediately expiring the taker order's remaining quantity.
        EXPIRE_MAKER - ... immediately expiring the potential maker order's remaining quantity. EXPIRE_BOTH - ...
        both. DECREMENT - This mode increases the prevented quantity of both orders by the amount of the
        prevented match. The smaller of the two orders will expire, or both if they have the same quantity."
        "How do I know if an order expired due to STP? The order will have the status EXPIRED_IN_MATCH." """
        now = self.now_ms()
        pm = PreventedMatch(next(self._prevented_ids), taker.order_id, maker.order_id, mode, px, None, None, now)
        if mode is StpMode.DECREMENT or mode is StpMode.TRANSFER:
            q = min(taker.remaining, maker.remaining)
            expire_taker, expire_maker = taker.remaining == q, maker.remaining == q
            pm.taker_prevented = pm.maker_prevented = q
        else:
            expire_taker = mode in (StpMode.EXPIRE_TAKER, StpMode.EXPIRE_BOTH)
            expire_maker = mode in (StpMode.EXPIRE_MAKER, StpMode.EXPIRE_BOTH)
            # stp_faq.md, preventedMatches: "takerPreventedQuantity: Taker's remaining quantity before the STP.
            # Only appears if the STP mode is EXPIRE_TAKER, EXPIRE_BOTH or DECREMENT." (maker likewise)
            pm.taker_prevented = taker.remaining if expire_taker else None
            pm.maker_prevented = maker.remaining if expire_maker else None
        taker.prevented.append(pm)
        for o, prevented, expire in ((maker, pm.maker_prevented, expire_maker), (taker, pm.taker_prevented, expire_taker)):
            if prevented is None:
                continue
            o.prevented_qty += prevented
            o.prevented_match_id = pm.id
            o.updated_ms = now
            if expire:
                o.status = Status.EXPIRED_IN_MATCH
                self._release(o)
                if o is maker:
                    m.unrest(o)
            # user-data-stream.md / enums.md Execution types: "TRADE_PREVENTION - The order has expired due to STP."
            self._report(o, "TRADE_PREVENTION", last_prevented=prevented)
            if o is maker:
                self._account_event(o.account, (o.locked_asset,))

    def _after_take(self, m: Market, o: Order) -> None:
        """What is left of a taker: MARKET and IOC expire it (market_orders_faq.md: "the remaining quantity will
        expire" with status EXPIRED, execution type EXPIRED); GTC rests."""
        if not o.status.is_open:
            return
        if o.type is OrderType.MARKET or o.time_in_force in ("IOC", "FOK"):
            o.status = Status.EXPIRED
            o.updated_ms = self.now_ms()
            self._release(o)
            self._report(o, "EXPIRED")
            return
        m.rest(o)

    def _fill(self, m: Market, o: Order, px: Decimal, q: Decimal, is_maker: bool) -> Trade:
        """Move the money of one execution and report it (executionReport x=TRADE)."""
        spec = m.spec
        now = self.now_ms()
        notional = px * q
        rate = self.maker_rate if is_maker else self.taker_rate
        fee, fee_asset = self._commission(o.account, spec, o.side, q, notional, rate)
        final = q >= o.remaining
        base, quote = self._bal(o.account, spec.base), self._bal(o.account, spec.quote)
        if o.side is Side.BUY:
            quote_mode = Decimal(1) + (max(self.maker_rate, self.taker_rate) if self.commission == "quote" else 0)
            per_unit = (o.price if o.price > 0 else px) * quote_mode
            release = o.locked if final else min(o.locked, q * per_unit)
            quote[1] -= release
            quote[0] += release - notional - (fee if fee_asset == spec.quote else 0)
            base[0] += q - (fee if fee_asset == spec.base else 0)
        else:
            release = o.locked if final else min(o.locked, q)
            base[1] -= release
            base[0] += release - q
            quote[0] += notional - (fee if fee_asset == spec.quote else 0)
        if fee_asset not in (spec.base, spec.quote):
            self._bal(o.account, fee_asset)[0] -= fee
        o.locked -= release
        o.executed_qty += q
        o.cum_quote += notional
        o.updated_ms = now
        o.working = True
        if o.working_ms < 0:
            o.working_ms = now
        o.status = Status.FILLED if final else Status.PARTIALLY_FILLED
        if final and o.locked > 0:
            self._release(o)
        t = Trade(spec.symbol, m.next_trade_id, o.order_id, o.client_order_id, o.side, px, q, fee, fee_asset,
                  now, is_maker)
        m.next_trade_id += 1
        self._trades.setdefault((o.account, spec.symbol), []).append(t)
        self._report(o, "TRADE", trade=t)
        self._account_event(o.account, self._assets(m) + ((fee_asset,) if fee_asset not in self._assets(m) else ()))
        return t

    def _commission(self, account: str, spec: F.SymbolSpec, side: Side, q: Decimal, notional: Decimal,
                    rate: Decimal) -> tuple[Decimal, str]:
        """commission_faq.md: "Standard Commission = Notional value * (taker + seller)" on a SELL ("the received
        amount is the notional value"), "For orders on the BUY side, the received amount would be quantity";
        "If paying with BNB, then the standard commission will be reduced based on the discount", converted
        "into BNB based on the exchange rate", "assuming you have a sufficient balance"."""
        if self.bnb_fees:
            bnb_px = self._bnb_price(spec.quote)
            if bnb_px is not None and bnb_px > 0:
                fee_bnb = notional * rate * (1 - self.bnb_discount) / bnb_px
                if self._bal(account, "BNB")[0] >= fee_bnb:
                    return fee_bnb, "BNB"
        if self.commission == "quote" or side is Side.SELL:
            return notional * rate, spec.quote
        return q * rate, spec.base

    def _bnb_price(self, quote: str) -> Decimal | None:
        m = self.markets.get(f"BNB{quote}")
        if m is not None and m.last is not None:
            return m.last
        return self.bnb_price.get(quote)

    def _release(self, o: Order) -> None:
        if o.locked:
            b = self._bal(o.account, o.locked_asset)
            b[1] -= o.locked
            b[0] += o.locked
            o.locked = ZERO

    # ------------------------------------------------------------ cancel

    def cancel(self, account: str, symbol: str, cancel_cid: str, client_order_id: str | None = None,
               order_id: int | None = None) -> Order:
        """DELETE /api/v3/order. errors.md: -2011 "Unknown order sent." when it cannot be found (or is done)."""
        m = self.market(symbol)
        if client_order_id is None and order_id is None:
            raise E.VenueError(E.MANDATORY_PARAM_EMPTY_OR_MALFORMED, E.either("orderId", "origClientOrderId"))
        o = self.find(account, symbol, client_order_id, order_id)
        if o is None or not o.status.is_open:
            raise E.VenueError(E.CANCEL_REJECTED, E.MSG_UNKNOWN_ORDER)
        m.unrest(o)
        o.status = Status.CANCELED
        o.updated_ms = self.now_ms()
        self._release(o)
        self._report(o, "CANCELED", cancel_cid=cancel_cid)
        self._account_event(account, (o.locked_asset,))
        return o

    def cancel_all(self, account: str, symbol: str) -> list[Order]:
        """DELETE /api/v3/openOrders; with nothing open Binance answers -2011 "Unknown order sent."."""
        open_here = self.open_order_records(account, symbol)
        if not open_here:
            raise E.VenueError(E.CANCEL_REJECTED, E.MSG_UNKNOWN_ORDER)
        return [self.cancel(account, symbol, f"cancelall{o.order_id}", order_id=o.order_id) for o in open_here]

    def cancel_replace(self, account: str, p: dict[str, str], cid: str, cancel_cid: str) -> dict[str, Any]:
        """POST /api/v3/order/cancelReplace, cancelReplaceMode STOP_ON_FAILURE (rest-api.md): "If the cancel
        request fails, the new order placement will not be attempted." errors.md: -2021 "Order cancel-replace
        partially failed.", -2022 "Order cancel-replace failed."; "Order cancel-replace is not supported for
        this symbol." when exchangeInfo says cancelReplaceAllowed false."""
        sym = p.get("symbol") or ""
        m = self.market(sym)
        if not m.spec.cancel_replace_allowed:
            raise E.VenueError(E.NEW_ORDER_REJECTED, E.MSG_CANCEL_REPLACE_NOT_SUPPORTED)
        old_cid = p.get("cancelOrigClientOrderId") or None
        old_id = int(p["cancelOrderId"]) if p.get("cancelOrderId") else None
        now = self.now_ms()
        try:
            old = self.cancel(account, sym, cancel_cid, old_cid, old_id)
        except E.VenueError as err:
            raise E.VenueError(E.CANCEL_REPLACE_FAILED, "Order cancel-replace failed.", data={
                "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                "cancelResponse": err.body(), "newOrderResponse": None}) from None
        try:
            new, fills = self.place(account, p, cid)
        except E.VenueError as err:
            raise E.VenueError(E.CANCEL_REPLACE_PARTIALLY_FAILED, "Order cancel-replace partially failed.",
                               status=409, data={
                                   "cancelResult": "SUCCESS", "newOrderResult": "FAILURE",
                                   "cancelResponse": old.cancel_answer(cancel_cid, now),
                                   "newOrderResponse": err.body()}) from None
        return {"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS",
                "cancelResponse": old.cancel_answer(cancel_cid, now), "newOrderResponse": new.ack(fills, now)}

    # ------------------------------------------------------------ market moves (test device)

    def on_trade(self, symbol: str, price: Decimal, qty: Decimal = Decimal("0.01")) -> int:
        """The market trades at `price`: resting orders the move touched fill at their own price as makers, in
        the order the path meets them; stops reached trigger (STOP_LOSS_LIMIT: "price is reached", enums.md)
        and become limits taking at their stop price. Returns the number of orders that traded."""
        m = self.market(symbol)
        prev = m.last
        m.record_trade(self.now_ms(), price, qty)
        n = 0
        rising = prev is not None and price > prev
        for direction in ((1, -1) if rising else (-1, 1)):
            n += self._move(m, price, direction)
        return n

    def _move(self, m: Market, price: Decimal, direction: int) -> int:
        n = 0
        while True:
            if direction < 0:  # falling: buys at L >= price, sell stops at S >= price, highest first
                cands = [(o.price, 0, o) for o in m.bids if o.price >= price] + \
                        [(o.stop_price, 1, o) for o in m.stops if o.side is Side.SELL and o.stop_price >= price]
                cands.sort(key=lambda c: (-c[0], c[1], c[2].seq))
            else:
                cands = [(o.price, 0, o) for o in m.asks if o.price <= price] + \
                        [(o.stop_price, 1, o) for o in m.stops if o.side is Side.BUY and o.stop_price <= price]
                cands.sort(key=lambda c: (c[0], c[1], c[2].seq))
            if not cands:
                return n
            key, kind, o = cands[0]
            if kind == 0:
                m.unrest(o)
                self._fill(m, o, key, o.remaining, is_maker=True)
            else:
                m.stops.remove(o)
                o.working = True
                o.working_ms = self.now_ms()
                crosses = (o.side is Side.SELL and o.price <= key) or (o.side is Side.BUY and o.price >= key)
                if crosses:
                    self._take(m, o, at=key)
                if o.status.is_open:
                    m.rest(o)
                    if not crosses:
                        continue  # nothing traded; it rests and the loop may meet it again on this move
            n += 1

    # ------------------------------------------------------------ events

    def _report(self, o: Order, exec_type: str, trade: Trade | None = None, cancel_cid: str = "",
                last_prevented: Decimal | None = None) -> None:
        self._events.append((o.account, execution_report(o, exec_type, self.now_ms(), next(self._exec_ids), trade,
                                                         cancel_cid, last_prevented)))

    def _account_event(self, account: str, assets: Iterable[str]) -> None:
        """user-data-stream.md, "Account Update": outboundAccountPosition "is sent any time an account balance has
        changed and contains the assets that were possibly changed by the event that generated the balance
        change"."""
        now = self.now_ms()
        bals = self._balances.get(account, {})
        rows = [{"a": a, "f": f8(bals[a][0]), "l": f8(bals[a][1])} for a in dict.fromkeys(assets) if a in bals]
        self._events.append((account, {"e": "outboundAccountPosition", "E": now, "u": now, "B": rows}))

    @staticmethod
    def _assets(m: Market) -> tuple[str, ...]:
        return (m.spec.base, m.spec.quote)

    def _bal(self, account: str, asset: str) -> list[Decimal]:
        acc = self._balances.setdefault(account, {})
        v = acc.get(asset)
        if v is None:
            v = acc[asset] = [ZERO, ZERO]
        return v
