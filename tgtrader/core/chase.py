"""Smart maker-first limit order ("order chasing") as a pure state machine.

Buys (sells) at the best bid (ask) as LIMIT_MAKER. On every timer step without a complete fill it
cancel-replaces the order one tick closer to the spread, never past `limit_price` (max for buys,
min for sells) and never crossing the book (a maker order must rest). At the limit it either keeps
resting or, with `market_fallback`, cancels and sends the remainder as a MARKET order once the
cancel is confirmed (so the two can never both fill). A maker order refused as "would match" (RejectReason.WOULD_MATCH)
re-prices at the current book. The tick comes from the symbol rules.

Events in: start(bid, ask, ts), on_tick, on_timer(ts), on_order_update, on_fill, cancel().
Intents out: PlaceOrder / ReplaceOrder / CancelOrder. `report()` gives average price,
maker/taker split and fees.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tgtrader.core.accounting import fee_in_quote
from tgtrader.core.events import CoreEvent
from tgtrader.core.legs import Leg
from tgtrader.core.ports import MachineSnapshot
from tgtrader.core.rules import SymbolRules
from tgtrader.core.states import Transitions
from tgtrader.types import (
    CancelOrder,
    Fill,
    Intent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    RejectReason,
    Side,
    Tick,
    dec_or_none,
    str_or_none,
)

ZERO = Decimal(0)


class ChaseState(enum.StrEnum):
    NEW = "new"
    WORKING = "working"  # a maker order rests at the book and is re-priced step by step
    CANCELLING = "cancelling"  # at the limit (or told to stop): waiting for the cancel before the market leg
    MARKET = "market"  # the remainder goes at market
    DONE = "done"


_C = ChaseState
CHASE_TRANSITIONS = Transitions("chase", {
    _C.NEW: frozenset({_C.WORKING, _C.DONE}),
    _C.WORKING: frozenset({_C.CANCELLING, _C.MARKET, _C.DONE}),
    _C.CANCELLING: frozenset({_C.MARKET, _C.DONE}),
    _C.MARKET: frozenset({_C.DONE}),
    _C.DONE: frozenset(),
})


@dataclass(frozen=True, slots=True)
class ChaseReport:
    symbol: str
    side: Side
    requested_qty: Decimal
    filled_qty: Decimal
    avg_price: Decimal | None
    maker_qty: Decimal
    taker_qty: Decimal
    fees_quote: Decimal
    status: str  # "working", "filled", "partial", "cancelled", "rejected"
    steps: int
    message: str = ""


@dataclass
class ChaseLeg(Leg):
    """One leg of the chase: the order-leg primitive (core/legs.py) plus its price and kind."""

    price: Decimal | None = None
    order_type: str = OrderType.LIMIT_MAKER.value
    book_seq: int = 0  # the chase's book_seq when the leg was placed


@dataclass
class Chase:
    symbol: str
    side: Side
    qty: Decimal
    rules: SymbolRules
    cid_prefix: str  # e.g. "tg-c5-" or a grid's start prefix "tg-g3-xB"
    owner: str
    limit_price: Decimal | None = None  # buys never above it, sells never below it
    step_ms: int = 5_000
    market_fallback: bool = True
    max_steps: int = 0  # 0: chase until the limit
    fee_rate: Decimal = Decimal("0.001")

    state: ChaseState = ChaseState.NEW
    status: str = "working"
    message: str = ""
    seq: int = 0
    steps: int = 0
    current: str | None = None
    placed_ts: int = 0
    bid: Decimal | None = None
    ask: Decimal | None = None
    legs: dict[str, ChaseLeg] = field(default_factory=dict)
    filled: Decimal = ZERO
    filled_quote: Decimal = ZERO
    maker_qty: Decimal = ZERO
    taker_qty: Decimal = ZERO
    fees_quote: Decimal = ZERO
    user_cancel: bool = False
    last: Decimal | None = None  # last trade price seen (the book may be unknown)
    book_seq: int = 0  # counts market updates, so a refusal can tell whether the book moved since
    waiting_book: bool = False  # refused as "would match" with no newer book: wait for one (or the next step)
    blind_reprices: int = 0  # re-prices after a refusal since the last market update
    reprice_to: Decimal | None = None  # a step's new price: placed once the old leg's cancel is final and settled
    ended: str = ""  # the final status of the last leg that ended (for the decision once its fills are in)
    id: int = 0  # the chase's number (a grid's start chase: the grid's id)

    machine_kind = "chase"

    # ------------------------------------------------------------ helpers

    def _to(self, new: ChaseState) -> None:
        self.state = CHASE_TRANSITIONS.move(self.owner, self.state, new)

    @property
    def active(self) -> bool:
        return not self.done

    @property
    def watching(self) -> bool:
        return not self.done

    def drain_events(self) -> list[CoreEvent]:
        return []  # a chase reports through its result, not through events

    def snapshot(self) -> MachineSnapshot:
        return MachineSnapshot("chase", self.id, self.symbol, self.state.value, self.to_state())

    @property
    def done(self) -> bool:
        return self.state == "done"

    @property
    def remaining(self) -> Decimal:
        return self.rules.round_qty(max(self.qty - self.filled, ZERO))

    @property
    def tick(self) -> Decimal:
        return self.rules.tick_size if self.rules.tick_size > 0 else Decimal("1E-8")

    def _next_cid(self) -> str:
        self.seq += 1
        return f"{self.cid_prefix}{self.seq}"

    def _live(self) -> list[str]:
        return [cid for cid, leg in self.legs.items() if not leg.final]

    def _tradable(self, qty: Decimal, price: Decimal | None, market: bool = False) -> bool:
        if qty <= 0:
            return False
        ref = price if price is not None else (self.ask if self.side is Side.BUY else self.bid)
        otype = OrderType.MARKET if market else OrderType.LIMIT_MAKER
        return not self.rules.check_order(self.side, otype, qty, None if market else price, reference_price=ref)

    def _clamp(self, price: Decimal) -> Decimal:
        """Keep a maker price on our side of the book and within the limit, on tick."""
        if self.side is Side.BUY:
            if self.ask is not None:
                price = min(price, self.ask - self.tick)
            if self.limit_price is not None:
                price = min(price, self.limit_price)
            return self.rules.round_price(price, Side.BUY)
        if self.bid is not None:
            price = max(price, self.bid + self.tick)
        if self.limit_price is not None:
            price = max(price, self.limit_price)
        return self.rules.round_price(price, Side.SELL)

    def _book_price(self, fallback: Decimal | None) -> Decimal | None:
        if self.side is Side.BUY:
            base = self.bid if self.bid is not None else (self.ask - self.tick if self.ask is not None else None)
        else:
            base = self.ask if self.ask is not None else (self.bid + self.tick if self.bid is not None else None)
        if base is None and self.last is not None:  # only trades seen: one tick on our side of the last one
            base = self.last - self.tick if self.side is Side.BUY else self.last + self.tick
        if base is None:
            base = fallback
        if base is None:
            base = self.limit_price
        return None if base is None else self._clamp(base)

    def _place(self, price: Decimal, ts: int) -> PlaceOrder:
        cid = self._next_cid()
        qty = self.remaining
        self.legs[cid] = ChaseLeg(cid, qty, price=price, book_seq=self.book_seq)
        self.current = cid
        self.placed_ts = ts
        return PlaceOrder(self.symbol, cid, self.side, OrderType.LIMIT_MAKER, qty, price, None, None, self.owner)

    def _finish(self, status: str, message: str = "") -> None:
        self._to(ChaseState.DONE)
        self.status = status
        self.message = message
        self.current = None

    def _go_market(self) -> list[Intent]:
        qty = self.rules.round_qty(max(self.qty - self.filled, ZERO), market=True)
        if not self.market_fallback or not self._tradable(qty, None, market=True):
            self._finish("partial" if self.filled > 0 else "cancelled", "limit reached, remainder not sent")
            return []
        cid = self._next_cid()
        self.legs[cid] = ChaseLeg(cid, qty, order_type=OrderType.MARKET.value)
        self.current = cid
        self._to(ChaseState.MARKET)
        return [PlaceOrder(self.symbol, cid, self.side, OrderType.MARKET, qty, None, None, None, self.owner)]

    # ------------------------------------------------------------ events

    def start(self, ts: int, bid: Decimal | None = None, ask: Decimal | None = None) -> list[Intent]:
        if self.state != "new":
            return []
        self.bid, self.ask = bid if bid is not None else self.bid, ask if ask is not None else self.ask
        price = self._book_price(None)
        if price is None or not self._tradable(self.remaining, price):
            self._finish("rejected", "no book price or quantity below the symbol filters")
            return []
        self._to(ChaseState.WORKING)
        return [self._place(price, ts)]

    def on_tick(self, tick: Tick) -> list[Intent]:
        if tick.symbol == self.symbol:
            if tick.bid is not None:
                self.bid = tick.bid
            if tick.ask is not None:
                self.ask = tick.ask
            if tick.last is not None:
                self.last = tick.last
            if tick.bid is None and tick.ask is None and tick.last is not None:
                self.bid = self.ask = None  # only a trade price: fall back to it in _book_price
            self.book_seq += 1
            self.blind_reprices = 0
            if self.waiting_book and self.state == ChaseState.WORKING:
                return self._reprice(tick.ts_ms)
        return []

    def _reprice(self, ts: int) -> list[Intent]:
        """Rest again at the book after a "would match" refusal; nothing tradable left: the market leg."""
        self.waiting_book = False
        price = self._book_price(None)
        if price is not None and self._tradable(self.remaining, price):
            return [self._place(price, ts)]
        return self._go_market()

    def on_timer(self, ts: int) -> list[Intent]:
        if self.state == ChaseState.WORKING and self.waiting_book and ts - self.placed_ts >= self.step_ms:
            return self._reprice(ts)  # no market data came: one step behind the refused price
        if (self.state != "working" or self.current is None or ts - self.placed_ts < self.step_ms
                or self.reprice_to is not None):
            return []
        leg = self.legs[self.current]
        assert leg.price is not None
        if self.side is Side.BUY:
            target = max(leg.price + self.tick, self.bid if self.bid is not None else ZERO)
        else:
            target = min(leg.price - self.tick, self.ask if self.ask is not None else leg.price - self.tick)
        new_price = self._clamp(target)
        at_limit = new_price == leg.price or (self.max_steps and self.steps >= self.max_steps)
        if at_limit:
            if self.market_fallback:
                self._to(ChaseState.CANCELLING)
                return [CancelOrder(self.symbol, self.current, self.owner)]
            self.placed_ts = ts
            return []
        if not self._tradable(self.remaining, new_price):
            self._to(ChaseState.CANCELLING)
            return [CancelOrder(self.symbol, self.current, self.owner)]
        # Cancel, then place the next leg once the cancel is final and its fills are in, sized from what is still
        # owed: an atomic cancel-replace would size the new leg before the old leg's executed quantity is known
        # (overfill), and a crash between saving and sending it could leave both legs resting.
        self.steps += 1
        self.reprice_to = new_price
        self.placed_ts = ts
        return [CancelOrder(self.symbol, self.current, self.owner)]

    def cancel(self) -> list[Intent]:
        """The user aborts: cancel what rests, report what filled."""
        if self.done:
            return []
        self.user_cancel = True
        live = self._live()
        if not live:
            self._finish("partial" if self.filled > 0 else "cancelled", "cancelled by user")
            return []
        self._to(ChaseState.CANCELLING)
        return [CancelOrder(self.symbol, cid, self.owner) for cid in live]

    def on_balance(self, asset: str, free: Decimal, ts: int) -> list[Intent]:
        return []  # a chase never asks

    def on_order_update(self, upd: OrderUpdate) -> list[Intent]:
        leg = self.legs.get(upd.client_order_id)
        if leg is None or leg.final or self.done and upd.status.is_final:
            if leg is not None and upd.status.is_final:
                leg.end(upd.status, upd.executed_qty)
            return []
        if not upd.status.is_final:
            return []
        leg.end(upd.status, upd.executed_qty)
        self.ended = upd.status.value
        if upd.status is OrderStatus.FILLED:
            return []  # quantities come with the fills
        if upd.status is OrderStatus.REJECTED and upd.client_order_id == self.current:
            if self.state == "working" and upd.reject_reason is RejectReason.WOULD_MATCH:
                # The book moved through our price, so the opposite side is at or past it.
                if self.side is Side.BUY:
                    if self.ask is None or (leg.price is not None and self.ask > leg.price):
                        self.ask = leg.price
                else:
                    if self.bid is None or (leg.price is not None and self.bid < leg.price):
                        self.bid = leg.price
                if leg.filled == 0:
                    del self.legs[upd.client_order_id]  # it never rested: nothing can fill on it
                ts = upd.ts_ms or self.placed_ts
                if self.book_seq > leg.book_seq or self.blind_reprices == 0:
                    # the book moved since we placed (rest at it), or a first refusal (one tick behind it)
                    self.blind_reprices += self.book_seq == leg.book_seq
                    return self._reprice(ts)
                # Refused again with no newer book: wait for the next market update (or one step) instead of
                # walking one tick per refusal, which spun thousands of refused orders when the book was far off.
                self.current, self.waiting_book, self.placed_ts = None, True, ts
                return []
            live = self._live()
            if live:
                self.current = live[-1]
                return []
            if self.state == "market" or not self.market_fallback:
                self._finish("partial" if self.filled > 0 else "rejected", upd.reject_text)
                return []
            return self._go_market()
        return self._after_settled(upd.ts_ms or self.placed_ts, leg.price)

    def _after_settled(self, ts: int, last_price: Decimal | None) -> list[Intent]:
        """Nothing rests any more and every ended leg's fills are in: decide the next leg from what is really
        owed (a cancel answer carrying executedQty may arrive before its trades: never size from it early)."""
        if self._live() or any(leg.unseen > 0 for leg in self.legs.values()) or self.done:
            return []
        if self.filled >= self.qty or not self._tradable(self.remaining, self._book_price(None), market=False) and not self._tradable(self.remaining, None, market=True):
            self._finish("filled" if self.filled >= self.qty else "partial", "")
            return []
        intents: list[Intent] = []
        target, self.reprice_to = self.reprice_to, None
        if self.user_cancel:
            self._finish("partial" if self.filled > 0 else "cancelled", "cancelled by user")
        elif self.state == "cancelling":
            intents += self._go_market()
        elif self.state == "market":
            self._finish("partial" if self.filled > 0 else "cancelled", f"market order {self.ended}")
        else:  # our step's cancel, or the exchange cancelled/expired our resting order: rest again at the book
            price = self._clamp(target) if target is not None else self._book_price(last_price)
            if price is not None and self._tradable(self.remaining, price):
                intents.append(self._place(price, ts))
            else:
                self._finish("partial" if self.filled > 0 else "cancelled", "order ended on the exchange")
        return intents

    def on_fill(self, fill: Fill, fee_quote: Decimal | None = None) -> list[Intent]:
        leg = self.legs.get(fill.client_order_id)
        if leg is None:
            return []
        fee = fee_quote if fee_quote is not None else fee_in_quote(
            fill, self.rules.base_asset, self.rules.quote_asset, fee_rate=self.fee_rate
        )
        if not leg.add_fill(fill):
            return []
        if leg.filled >= leg.qty and not leg.final:
            leg.end(OrderStatus.FILLED, leg.filled)
        self.filled += fill.qty
        self.filled_quote += fill.notional
        self.fees_quote += fee
        if fill.is_maker:
            self.maker_qty += fill.qty
        else:
            self.taker_qty += fill.qty
        if self.filled >= self.qty or self.remaining <= 0:
            live = [cid for cid in self._live()]
            self._finish("filled")
            for cid in live:  # cancelled below: nothing more is expected of them
                self.legs[cid].end(OrderStatus.CANCELED, self.legs[cid].filled)
            return [CancelOrder(self.symbol, cid, self.owner) for cid in live]
        # a late fill on an old leg: cancel the resting order; the next leg is sized from what is still owed
        if self.current and fill.client_order_id != self.current and self.state == "working":
            cur = self.legs[self.current]
            if not cur.final and cur.qty - cur.filled > self.remaining and self.reprice_to is None:
                self.reprice_to = cur.price
                return [CancelOrder(self.symbol, self.current, self.owner)]
        if leg.final and leg.unseen <= 0:
            return self._after_settled(fill.ts_ms, leg.price)  # the fills an ended leg was waiting for are in
        return []

    # ------------------------------------------------------------ results

    def report(self) -> ChaseReport:
        avg = self.filled_quote / self.filled if self.filled > 0 else None
        return ChaseReport(
            self.symbol, self.side, self.qty, self.filled, avg, self.maker_qty, self.taker_qty,
            self.fees_quote, self.status if self.done else "working", self.steps, self.message,
        )

    def to_state(self) -> dict[str, Any]:
        s = str_or_none
        return {
            "symbol": self.symbol, "side": self.side.value, "qty": str(self.qty), "cid_prefix": self.cid_prefix,
            "owner": self.owner, "limit_price": s(self.limit_price), "step_ms": self.step_ms,
            "market_fallback": self.market_fallback, "max_steps": self.max_steps, "fee_rate": str(self.fee_rate),
            "state": self.state.value, "status": self.status, "message": self.message, "seq": self.seq,
            "steps": self.steps, "current": self.current, "placed_ts": self.placed_ts,
            "bid": s(self.bid), "ask": s(self.ask),
            "legs": {k: [str(v.qty), s(v.price), v.order_type, str(v.filled), v.final, v.book_seq, s(v.executed),
                         v.status, str(v.quote), list(v.trade_ids)]
                     for k, v in self.legs.items()},
            "reprice_to": s(self.reprice_to), "ended": self.ended,
            "last": s(self.last), "book_seq": self.book_seq, "waiting_book": self.waiting_book,
            "blind_reprices": self.blind_reprices,
            "filled": str(self.filled), "filled_quote": str(self.filled_quote), "maker_qty": str(self.maker_qty),
            "taker_qty": str(self.taker_qty), "fees_quote": str(self.fees_quote), "user_cancel": self.user_cancel,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any], rules: SymbolRules) -> "Chase":
        o = dec_or_none
        c = cls(
            d["symbol"], Side(d["side"]), Decimal(d["qty"]), rules, d["cid_prefix"], d["owner"], o(d["limit_price"]),
            int(d["step_ms"]), bool(d["market_fallback"]), int(d["max_steps"]), Decimal(d["fee_rate"]),
        )
        c.state = ChaseState(d["state"])  # restored as saved, not a transition
        c.status, c.message = d["status"], d["message"]
        c.seq, c.steps, c.current, c.placed_ts = int(d["seq"]), int(d["steps"]), d["current"], int(d["placed_ts"])
        c.bid, c.ask = o(d["bid"]), o(d["ask"])
        c.legs = {k: _leg_from_list(k, v) for k, v in d["legs"].items()}
        c.reprice_to, c.ended = o(d.get("reprice_to")), str(d.get("ended", ""))
        c.last, c.book_seq, c.waiting_book = o(d.get("last")), int(d.get("book_seq", 0)), bool(d.get("waiting_book"))
        c.blind_reprices = int(d.get("blind_reprices", 0))
        for name in ("filled", "filled_quote", "maker_qty", "taker_qty", "fees_quote"):
            setattr(c, name, Decimal(d[name]))
        c.user_cancel = bool(d["user_cancel"])
        return c


def _leg_from_list(cid: str, v: list[Any]) -> ChaseLeg:
    """A saved leg; rows from before the order-leg primitive lack status, quote and trade ids."""
    o = dec_or_none
    final = bool(v[4])
    status = v[7] if len(v) > 7 else (OrderStatus.CANCELED.value if final else None)
    return ChaseLeg(cid, Decimal(v[0]), Decimal(v[3]), Decimal(v[8]) if len(v) > 8 else ZERO,
                    o(v[6]) if len(v) > 6 else None, status, [int(t) for t in v[9]] if len(v) > 9 else [],
                    o(v[1]), v[2], int(v[5]) if len(v) > 5 else 0)
