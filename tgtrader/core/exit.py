"""The one exit, "sell until flat": used by grid stop-loss / take-profit, `/grid stop ID sell`, soft stops and panic.

An exit does not trust the quantity it was started with. Its owner tells it, at every step, what it still owns
(`owed`, booked from the owner's own fills, so late fills of the same move count) and whether the owner still has
orders that are not final (`busy`: the cancels of its resting orders, whose fills may still arrive). The exit then:

- waits while the owner is busy (at most `wait_ms`: a cancel answer that never comes must not keep the base unsold);
- sells min(owed, free) at market, one leg at a time, the next leg only after the previous one is final and its
  fills have caught up with the executed quantity the exchange reported (the owner's leg bookkeeping);
- after a partial fill, an EXPIRED market order or a late fill, sells the remainder again;
- after a refusal for insufficient balance, asks for the free balance once (`NEED_BALANCE`) and sells what is free;
- ends FLAT when what is left no longer passes the symbol's filters, reporting that residue, or GAVE_UP after
  `max_refusals` refusals, reporting what is left and why.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tgtrader.core.rules import SymbolRules
from tgtrader.types import OrderStatus, OrderType, RejectReason, Side

ZERO = Decimal(0)
TRANSIENT = frozenset({RejectReason.RATE_LIMITED, RejectReason.UNAVAILABLE, RejectReason.BANNED})


def market_sell_qty(rules: SymbolRules, qty: Decimal, reference_price: Decimal | None) -> Decimal:
    """The largest market sell of at most `qty` the symbol's filters accept (ZERO if none): rounded down to the step
    and capped at the market maxQty (MARKET_LOT_SIZE), so a position larger than one order is sold leg after leg
    instead of being mistaken for an unsellable residue."""
    q = rules.round_qty(qty, market=True)
    cap = rules.market_max_qty if rules.market_max_qty > 0 else rules.max_qty
    if cap > 0 and q > cap:
        q = rules.round_qty(cap, market=True)
    if q <= 0 or rules.check_order(Side.SELL, OrderType.MARKET, q, None, reference_price=reference_price):
        return ZERO
    return q


class ExitState(enum.StrEnum):
    IDLE = "idle"  # no exit asked
    SELLING = "selling"  # waiting for the owner's cancels, a leg, or a balance read
    FLAT = "flat"  # what is left no longer passes the filters
    GAVE_UP = "gave-up"  # refused too often: the rest is reported


class Step(enum.Enum):
    WAIT = "wait"
    SELL = "sell"
    NEED_BALANCE = "need-balance"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Action:
    step: Step
    qty: Decimal = ZERO


@dataclass
class SellUntilFlat:
    state: ExitState = ExitState.IDLE
    reason: str = ""
    started_ts: int = 0
    free: Decimal | None = None  # the exchange's free balance, read after a refusal; None: not known
    wants_balance: bool = False
    refusals: int = 0  # legs in a row that sold nothing
    legs: int = 0
    leg: str | None = None  # the working leg's client order id
    residue: Decimal = ZERO
    why_left: str = ""  # a code for the front end: "below-filters", "not-free" (see `free`), "refused", "no-liquidity"
    wait_ms: int = 15_000
    max_refusals: int = 3
    retry_at: int = 0  # after a transient failure (rate limit, 5xx, ban): the next leg not before this time
    transient: int = 0  # transient failures in a row (the backoff doubles, capped)

    @property
    def working(self) -> bool:
        return self.state is ExitState.SELLING

    @property
    def finished(self) -> bool:
        return self.state in (ExitState.FLAT, ExitState.GAVE_UP)

    def begin(self, ts: int, reason: str) -> None:
        if self.state is ExitState.IDLE:
            self.state, self.started_ts, self.reason = ExitState.SELLING, ts, reason

    def step(self, owed: Decimal, busy: bool, leg_working: bool, ts: int,
             sellable: Callable[[Decimal], Decimal]) -> Action:
        """What to do now. `sellable(q)` rounds q to the symbol's filters for a market sell (ZERO if it cannot be
        sold); the owner places a MARKET sell of the returned quantity and calls `placed(cid)`."""
        if self.state is not ExitState.SELLING or leg_working or ts < self.retry_at:
            return Action(Step.WAIT)
        if busy and ts - self.started_ts < self.wait_ms:
            return Action(Step.WAIT)
        if self.wants_balance:
            return Action(Step.NEED_BALANCE)
        want = owed if self.free is None else min(owed, self.free)
        qty = sellable(want) if want > 0 else ZERO
        if qty > 0:
            return Action(Step.SELL, qty)
        self.state = ExitState.FLAT
        self.residue = max(owed, ZERO)
        self.why_left = "" if self.residue <= 0 else (
            "below-filters" if self.free is None or owed <= self.free else "not-free")
        return Action(Step.DONE)

    def placed(self, cid: str) -> None:
        self.leg, self.legs = cid, self.legs + 1

    def leg_ended(self, cid: str, status: OrderStatus, reason: RejectReason | None, owed: Decimal,
                  executed: Decimal = ZERO, ts: int = 0) -> bool:
        """The working leg reached a final status (its fills may still be on their way: the owner's leg
        bookkeeping decides when it is done). Returns True when the exit gives up: after `max_refusals` legs in a
        row that sold nothing (refused, or expired unfilled on an empty book), so it never hammers the venue."""
        if cid != self.leg:
            return False
        self.leg = None
        if status is OrderStatus.REJECTED and reason in TRANSIENT:
            # the venue did not say no to this sale (rate limit, 5xx, ban): try again later, never give up on it
            self.transient += 1
            self.retry_at = ts + min(1_000 * 2 ** (self.transient - 1), 30_000)
            return False
        self.transient = 0
        if executed > 0:
            self.refusals = 0  # progress
        else:
            self.refusals += 1
            if self.refusals >= self.max_refusals:
                self.state, self.residue = ExitState.GAVE_UP, owed
                self.why_left = "refused" if status is OrderStatus.REJECTED else "no-liquidity"
                return True
        if status is OrderStatus.REJECTED and reason in (RejectReason.INSUFFICIENT_BALANCE, None):
            self.wants_balance = True
        elif status is not OrderStatus.REJECTED:
            self.free = None  # the balance moved: sell what is owed, a refusal reads it again
        return False

    def left(self) -> dict[str, object]:
        """What an alert says about an unsold residue (nothing when flat): its quantity, why, and the free balance."""
        if self.residue <= 0:
            return {}
        return {"residue": str(self.residue), "why_left": self.why_left,
                "free": None if self.free is None else str(self.free)}

    def on_balance(self, free: Decimal) -> None:
        self.free, self.wants_balance = free, False

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "reason": self.reason, "started_ts": self.started_ts,
                "free": None if self.free is None else str(self.free), "wants_balance": self.wants_balance,
                "refusals": self.refusals, "legs": self.legs, "leg": self.leg, "residue": str(self.residue),
                "why_left": self.why_left, "wait_ms": self.wait_ms, "max_refusals": self.max_refusals,
                "retry_at": self.retry_at, "transient": self.transient}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SellUntilFlat":
        if not d:
            return cls()
        return cls(ExitState(d["state"]), d["reason"], int(d["started_ts"]),
                   None if d["free"] is None else Decimal(d["free"]), bool(d["wants_balance"]), int(d["refusals"]),
                   int(d["legs"]), d["leg"], Decimal(d["residue"]), d["why_left"], int(d["wait_ms"]),
                   int(d.get("max_refusals", 3)), int(d.get("retry_at", 0)), int(d.get("transient", 0)))
