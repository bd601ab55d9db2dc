"""Stop-loss and take-profit orders as a pure state machine (long positions: the stop sells).

- Hard: a resting order on the exchange (STOP_LOSS_LIMIT with a configurable limit offset below the
  trigger; take-profit is a LIMIT sell at the trigger). If the exchange cancels or expires it (not
  us), it is placed again with a new id and an alert says so.
- Soft: held in the core (and the database via `to_state`), triggered by market ticks, executed as
  a MARKET sell. If no tick has arrived for longer than `silence_ms` (checked on timer events), the
  soft stop places its hard twin and says so; from then on it behaves as a hard stop (it does not
  also sell at market, which could sell twice).
Every completed stop emits an alert and a StopTriggered event with price, quantity and realized result.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tgtrader.core.accounting import fee_in_quote
from tgtrader.core.events import CoreEvent, SaleRealized, StopTriggered
from tgtrader.core.exit import SellUntilFlat, Step, market_sell_qty
from tgtrader.core.ids import stop_order_id
from tgtrader.core.legs import Leg
from tgtrader.core.ports import MachineSnapshot
from tgtrader.core.rules import SymbolRules
from tgtrader.core.states import Transitions
from tgtrader.types import (
    AlertIntent,
    CancelOrder,
    Fill,
    Intent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    ReadBalance,
    RejectReason,
    Side,
    Tick,
    dec_or_none,
    str_or_none,
)

ZERO = Decimal(0)


class StopState(enum.StrEnum):
    NEW = "new"
    ARMED = "armed"  # protecting: watching ticks (soft) or an order rests on the exchange (hard)
    SELLING = "selling"  # triggered: the sell is working
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


_S = StopState
STOP_TRANSITIONS = Transitions("stop", {
    _S.NEW: frozenset({_S.ARMED, _S.CANCELLED}),
    _S.ARMED: frozenset({_S.SELLING, _S.DONE, _S.CANCELLED, _S.FAILED}),
    _S.SELLING: frozenset({_S.ARMED, _S.DONE, _S.CANCELLED, _S.FAILED}),  # ARMED: a hard order placed again
    _S.DONE: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.FAILED: frozenset(),
})


@dataclass
class Stop:
    id: int
    symbol: str
    purpose: str  # "stop-loss" or "take-profit"
    mode: str  # "soft" or "hard"
    qty: Decimal
    trigger: Decimal
    rules: SymbolRules
    entry_price: Decimal | None = None  # what the base cost, for the realized result
    limit_offset: Decimal = Decimal("0.005")  # hard stop-loss limit = trigger x (1 - offset)
    silence_ms: int = 60_000
    fee_rate: Decimal = Decimal("0.001")
    rest_ms: int = 30_000  # a triggered hard stop-loss resting unfilled below its limit this long: sell at market

    state: StopState = StopState.NEW
    hard_fallback: bool = False
    seq: int = 0
    leg: Leg | None = None  # the working (or last) order: core/legs.py
    cancel_requested: bool = False
    last_tick_ts: int = 0
    filled: Decimal = ZERO
    quote: Decimal = ZERO
    fees: Decimal = ZERO
    exit: SellUntilFlat = field(default_factory=SellUntilFlat)  # a triggered soft stop sells until flat
    through_since: int = 0  # when the market first traded below a hard stop-loss's limit (0: it has not)
    bailing: bool = False  # the hard order is being cancelled so the rest is sold at market
    _events: list[CoreEvent] = field(default_factory=list)

    machine_kind = "stop"

    # ------------------------------------------------------------ helpers

    def _to(self, new: StopState) -> None:
        self.state = STOP_TRANSITIONS.move(self.owner, self.state, new)

    @property
    def owner(self) -> str:
        return f"stop:{self.id}"

    @property
    def order(self) -> str | None:
        """The client order id of the working (or last) order."""
        return None if self.leg is None else self.leg.cid

    @property
    def active(self) -> bool:
        """Takes ticks, timers, fills and order updates."""
        return self.state in (StopState.ARMED, StopState.SELLING)

    @property
    def watching(self) -> bool:
        """Needs its symbol's market stream."""
        return self.state in (StopState.NEW, StopState.ARMED, StopState.SELLING)

    def snapshot(self) -> MachineSnapshot:
        return MachineSnapshot("stop", self.id, self.symbol, self.state.value, self.to_state(), self.order)

    @property
    def kind(self) -> str:
        """"hard" when an exchange order protects the position (also after a soft fallback)."""
        return "hard" if self.mode == "hard" or self.hard_fallback else "soft"

    @property
    def remaining(self) -> Decimal:
        return max(self.qty - self.filled, ZERO)

    def drain_events(self) -> list[CoreEvent]:
        out, self._events = self._events, []
        return out

    def _alert(self, kind: str, **payload: object) -> AlertIntent:
        return AlertIntent(kind, {"stop_id": self.id, "symbol": self.symbol, **payload})

    def _cid(self) -> str:
        self.seq += 1
        return stop_order_id(self.id, self.seq)

    def _hard_order(self) -> PlaceOrder:
        qty = self.rules.round_qty(self.remaining)
        cid = self._cid()
        self.leg = Leg(cid, qty)
        self.cancel_requested = False
        if self.purpose == "stop-loss":
            limit = self.rules.round_price(self.trigger * (1 - self.limit_offset), Side.SELL)
            return PlaceOrder(self.symbol, cid, Side.SELL, OrderType.STOP_LOSS_LIMIT, qty, limit,
                              self.rules.round_price(self.trigger), "GTC", self.owner)
        price = self.rules.round_price(self.trigger, Side.SELL)
        return PlaceOrder(self.symbol, cid, Side.SELL, OrderType.LIMIT, qty, price, None, "GTC", self.owner)

    def _market_order(self, qty: Decimal) -> PlaceOrder:
        cid = self._cid()
        self.leg = Leg(cid, qty)
        self.exit.placed(cid)
        return PlaceOrder(self.symbol, cid, Side.SELL, OrderType.MARKET, qty, None, None, None, self.owner)

    def _sellable(self, qty: Decimal) -> Decimal:
        return market_sell_qty(self.rules, qty, self.trigger)

    def _order_done(self) -> bool:
        """The working leg is final and its fills caught up with what the exchange says it executed."""
        return self.leg is None or self.leg.done

    def _soft_step(self, ts: int) -> list[Intent]:
        """A triggered soft stop sells min(remaining, free) at market until flat (core/exit.py)."""
        act = self.exit.step(self.remaining, False, not self._order_done(), ts, self._sellable)
        if act.step is Step.SELL:
            return [self._market_order(act.qty)]
        if act.step is Step.NEED_BALANCE:
            return [ReadBalance(self.rules.base_asset, self.owner)]
        if act.step is Step.DONE:
            return self._finish(ts)
        return []

    def on_balance(self, asset: str, free: Decimal, ts: int) -> list[Intent]:
        if asset != self.rules.base_asset or not self.exit.working or self.state != StopState.SELLING:
            return []
        self.exit.on_balance(free)
        return self._soft_step(ts)

    def _triggered(self, price: Decimal) -> bool:
        return price <= self.trigger if self.purpose == "stop-loss" else price >= self.trigger

    # ------------------------------------------------------------ events

    def arm(self, ts: int) -> list[Intent]:
        """Start protecting. Hard: place the exchange order. Soft: start watching ticks (and silence)."""
        if self.state != "new":
            return []
        self._to(StopState.ARMED)
        self.last_tick_ts = ts
        if self.mode == "hard":
            return [self._hard_order()]
        return []

    def rearm(self, ts: int) -> list[Intent]:
        """After a restart: a soft stop resumes watching with a fresh silence clock."""
        self.last_tick_ts = max(self.last_tick_ts, ts)
        return []

    def on_tick(self, tick: Tick) -> list[Intent]:
        if tick.symbol != self.symbol:
            return []
        self.last_tick_ts = max(self.last_tick_ts, tick.ts_ms)
        price = tick.price
        if self.kind == "hard":
            return self._watch_hard(price, tick.ts_ms)
        if self.state != "armed":
            return []
        if price is None or not self._triggered(price):
            return []
        self._to(StopState.SELLING)
        self.exit.begin(tick.ts_ms, self.purpose)
        out = self._soft_step(tick.ts_ms)
        return out + [
            self._alert(
                f"{self.purpose}-triggered",
                purpose=self.purpose, price=str(price), qty=str(self.remaining), trigger=str(self.trigger),
            ),
        ]

    def _watch_hard(self, price: Decimal | None, ts: int) -> list[Intent]:
        """A hard stop-loss stays watched after its trigger: when the market trades through its limit and the order
        rests unfilled for `rest_ms`, it is cancelled and the rest sold at market (a gap left it behind)."""
        if (self.purpose != "stop-loss" or self.state not in (StopState.ARMED, StopState.SELLING) or self.bailing
                or self.order is None or self.exit.working):
            return []
        if price is not None:
            limit = self.rules.round_price(self.trigger * (1 - self.limit_offset), Side.SELL)
            if price >= limit:
                self.through_since = 0
                return []
            self.through_since = self.through_since or ts
        if not self.through_since or ts - self.through_since < self.rest_ms:
            return []
        self.bailing = True
        self.cancel_requested = True
        return [CancelOrder(self.symbol, self.order, self.owner),
                self._alert("stop-market-fallback", rest_s=(ts - self.through_since) // 1000,
                            trigger=str(self.trigger), qty=str(self.remaining))]

    def _sell_now(self, ts: int) -> list[Intent]:
        """The stop is hit and its resting order cannot do the job: sell the rest at market, until flat."""
        self.bailing = False
        if self.state == StopState.ARMED:
            self._to(StopState.SELLING)
        self.exit.begin(ts, self.purpose)
        return self._soft_step(ts)

    def on_timer(self, ts: int) -> list[Intent]:
        if self.exit.working:
            return self._soft_step(ts)  # a sale retried after a transient failure's backoff
        if self.kind == "hard":
            return self._watch_hard(None, ts)
        if self.state != "armed" or ts - self.last_tick_ts <= self.silence_ms:
            return []
        self.hard_fallback = True
        order = self._hard_order()
        silent_s = (ts - self.last_tick_ts) // 1000
        self._events.append(
            StopTriggered(self.owner, self.symbol, "hard-fallback", self.trigger, self.trigger, order.qty, ZERO, ts)
        )
        return [
            order,
            self._alert(
                "stop-hard-fallback",
                silent_s=silent_s, order_type=order.order_type.value, qty=str(order.qty), trigger=str(self.trigger),
            ),
        ]

    def cancel(self) -> list[Intent]:
        if STOP_TRANSITIONS.final(self.state):
            return []
        self._to(StopState.CANCELLED)
        if self.order is not None and self.kind == "hard":
            self.cancel_requested = True
            return [CancelOrder(self.symbol, self.order, self.owner)]
        return []

    def on_order_update(self, upd: OrderUpdate) -> list[Intent]:
        leg = self.leg
        if leg is None or upd.client_order_id != leg.cid or not upd.status.is_final:
            return []
        if not leg.end(upd.status, upd.executed_qty):
            return []  # a repeated final update
        if self.exit.working:  # a soft stop's market leg: partial, expired or refused, the exit sells on
            if self.exit.leg_ended(upd.client_order_id, upd.status, upd.reject_reason, self.remaining,
                                   upd.executed_qty, upd.ts_ms):
                return self._finish(upd.ts_ms)
            return self._soft_step(upd.ts_ms) if self._order_done() else []
        if upd.status is OrderStatus.FILLED:
            return self._maybe_done(upd.ts_ms)
        if upd.status is OrderStatus.REJECTED and upd.reject_reason is RejectReason.WOULD_TRIGGER and (
                self.purpose == "stop-loss"):
            # the market already crossed the stop price: the stop is hit, sell now instead of leaving it bare
            return self._sell_now(upd.ts_ms) + [self._alert(
                "stop-loss-triggered", purpose=self.purpose, price=str(self.trigger), qty=str(self.remaining),
                trigger=str(self.trigger))]
        if self.bailing:  # our cancel of a hard order left behind by a gap: sell the rest once its fills are in
            return self._sell_now(upd.ts_ms) if self._order_done() else []
        if upd.status is OrderStatus.REJECTED:
            self._to(StopState.FAILED)
            return [self._alert("stop-failed", client_order_id=upd.client_order_id, reject_text=upd.reject_text)]
        # CANCELED / EXPIRED
        if self.cancel_requested or self.state in ("cancelled", "done"):
            return self._maybe_done(upd.ts_ms)
        if self.state in ("armed", "selling") and self.kind == "hard" and self.order_type_is_resting():
            if leg.filled < upd.executed_qty:
                return []  # wait for the fills, then re-place the remainder (see on_fill)
            self._to(StopState.ARMED)
            return self._replace_after_exchange_cancel(upd)
        return self._maybe_done(upd.ts_ms)

    def order_type_is_resting(self) -> bool:
        """The live order is the hard (resting) one, not a soft stop's market sell."""
        return self.mode == "hard" or self.hard_fallback

    def _replace_after_exchange_cancel(self, upd: OrderUpdate) -> list[Intent]:
        if self.rules.round_qty(self.remaining) <= 0:
            return self._maybe_done(upd.ts_ms)
        order = self._hard_order()
        return [
            order,
            self._alert("stop-replaced", status=upd.status.value, client_order_id=order.client_order_id),
        ]

    def on_fill(self, fill: Fill, fee_quote: Decimal | None = None) -> list[Intent]:
        leg = self.leg
        if leg is None or fill.client_order_id != leg.cid or not leg.add_fill(fill):
            return []
        fee = fee_quote if fee_quote is not None else fee_in_quote(
            fill, self.rules.base_asset, self.rules.quote_asset, fee_rate=self.fee_rate
        )
        self.filled += fill.qty
        self.quote += fill.notional
        self.fees += fee
        if self.entry_price is not None:  # the cost is known: the sale's realized result is booked to the day
            self._events.append(SaleRealized(self.owner, self.symbol, fill.qty,
                                             fill.notional - fee - self.entry_price * fill.qty, fill.ts_ms))
        if self.exit.working:
            return self._soft_step(fill.ts_ms) if self._order_done() else []
        if self.bailing:
            if self.state == "armed":
                self._to(StopState.SELLING)
            return self._sell_now(fill.ts_ms) if leg.final and leg.done else []
        if self.state == "armed":
            self._to(StopState.SELLING)  # a hard stop has triggered on the exchange
        if (
            leg.final
            and leg.done
            and leg.filled < leg.qty
            and not self.cancel_requested
            and self.state == "selling"
            and self.kind == "hard"
        ):
            self._to(StopState.ARMED)
            return self._replace_after_exchange_cancel(
                OrderUpdate(fill.symbol, fill.client_order_id, Side.SELL, OrderType.STOP_LOSS_LIMIT,
                            OrderStatus.CANCELED, ZERO, leg.qty, leg.filled, ts_ms=fill.ts_ms)
            )
        return self._maybe_done(fill.ts_ms)

    def _maybe_done(self, ts: int) -> list[Intent]:
        order_done = self.leg is not None and self.leg.done and (self.leg.final or self.leg.qty > 0)
        if not order_done or self.state == "done":
            return []
        return self._finish(ts)

    def _finish(self, ts: int) -> list[Intent]:
        """The stop is over: what was sold, at what average, and (after an exit) what is left and why."""
        left = self.exit.left()
        if left:
            left["base_asset"] = self.rules.base_asset  # a stop's alerts do not carry it otherwise
        if self.filled <= 0:
            if self.state == "selling":
                self._to(StopState.FAILED)
                return [self._alert("stop-failed", client_order_id=self.order, **left)]
            return []
        prev_state = self.state
        self._to(StopState.DONE if prev_state is not StopState.CANCELLED else StopState.CANCELLED)
        avg = self.quote / self.filled
        realized = (
            self.quote - self.fees - self.entry_price * self.filled if self.entry_price is not None else self.quote - self.fees
        )
        self._events.append(
            StopTriggered(self.owner, self.symbol, self.purpose, self.trigger, avg, self.filled, realized, ts)
        )
        return [
            self._alert(
                self.purpose,
                purpose=self.purpose, price=str(avg), qty=str(self.filled), realized=str(realized),
                trigger=str(self.trigger), entry_price=str_or_none(self.entry_price),
                tick_size=str(self.rules.tick_size), quote_asset=self.rules.quote_asset, **left,
            )
        ]

    # ------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        s = str_or_none
        return {
            "id": self.id, "symbol": self.symbol, "purpose": self.purpose, "mode": self.mode, "qty": str(self.qty),
            "trigger": str(self.trigger), "entry_price": s(self.entry_price), "limit_offset": str(self.limit_offset),
            "silence_ms": self.silence_ms, "fee_rate": str(self.fee_rate), "state": self.state.value,
            "hard_fallback": self.hard_fallback, "seq": self.seq, "leg": None if self.leg is None else self.leg.to_list(),
            "cancel_requested": self.cancel_requested, "last_tick_ts": self.last_tick_ts, "filled": str(self.filled),
            "quote": str(self.quote), "fees": str(self.fees),
            "exit": self.exit.to_dict(), "rest_ms": self.rest_ms, "through_since": self.through_since,
            "bailing": self.bailing,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any], rules: SymbolRules) -> "Stop":
        o = dec_or_none
        st = cls(
            int(d["id"]), d["symbol"], d["purpose"], d["mode"], Decimal(d["qty"]), Decimal(d["trigger"]), rules,
            o(d["entry_price"]), Decimal(d["limit_offset"]), int(d["silence_ms"]), Decimal(d["fee_rate"]),
        )
        st.state = StopState(d["state"])  # restored as saved, not a transition
        st.hard_fallback, st.seq = bool(d["hard_fallback"]), int(d["seq"])
        st.cancel_requested = bool(d["cancel_requested"])
        st.last_tick_ts = int(d["last_tick_ts"])
        st.filled, st.quote, st.fees = Decimal(d["filled"]), Decimal(d["quote"]), Decimal(d["fees"])
        if "leg" in d:
            st.leg = None if d["leg"] is None else Leg.from_list(d["leg"])
        elif d.get("order"):  # a row saved before legs: the same facts under their old names
            executed = o(d["exec_reported"])
            st.leg = Leg(d["order"], Decimal(d["order_qty"]), Decimal(d["order_filled"]), ZERO, executed,
                         None if executed is None else OrderStatus.CANCELED.value, [int(t) for t in d["trade_ids"]])
        st.exit = SellUntilFlat.from_dict(d.get("exit"))
        st.rest_ms, st.through_since = int(d.get("rest_ms", 30_000)), int(d.get("through_since", 0))
        st.bailing = bool(d.get("bailing", False))
        return st
