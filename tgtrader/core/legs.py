"""The one order-leg primitive: every machine's orders (grid levels and exits, stops, chase legs, panic's exits).

A leg knows three quantities: what was asked (`qty`), what the exchange says it executed (`executed`, with the final
status) and what the fills seen add up to (`filled`, each trade id once). It is *done* only when it is final and the
fills have caught up with the executed quantity, so a next leg is never sized from an answer whose trades are still
on their way (the kernel fetches a short order's trades by order id after a grace period, so no leg waits forever).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from tgtrader.types import Fill, OrderStatus

ZERO = Decimal(0)


@dataclass
class Leg:
    cid: str
    qty: Decimal
    filled: Decimal = ZERO
    quote: Decimal = ZERO
    executed: Decimal | None = None  # reported with the final status
    status: str | None = None  # the final status (an OrderStatus value), None while the order may still trade
    trade_ids: list[int] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status is not None

    @property
    def done(self) -> bool:
        """Final and every executed unit seen as a fill (or fully filled, whatever the updates say)."""
        return self.filled >= self.qty or (self.executed is not None and self.filled >= self.executed)

    @property
    def unseen(self) -> Decimal:
        """Executed on the exchange but not yet seen as fills."""
        return max(ZERO, self.executed - self.filled) if self.executed is not None else ZERO

    def add_fill(self, fill: Fill) -> bool:
        """Count a fill once; False for a trade already counted."""
        if fill.trade_id in self.trade_ids:
            return False
        self.trade_ids.append(fill.trade_id)
        self.filled += fill.qty
        self.quote += fill.notional
        return True

    def end(self, status: OrderStatus, executed: Decimal) -> bool:
        """Record the final status once; False if the leg had already ended."""
        if self.status is not None:
            return False
        self.status, self.executed = status.value, executed
        return True

    def to_list(self) -> list[object]:
        return [self.cid, str(self.qty), str(self.filled), str(self.quote),
                None if self.executed is None else str(self.executed), self.status, list(self.trade_ids)]

    @classmethod
    def from_list(cls, v: list[object]) -> "Leg":
        cid, qty, filled, quote, executed, status, trades = v
        assert isinstance(trades, list)
        return cls(str(cid), Decimal(str(qty)), Decimal(str(filled)), Decimal(str(quote)),
                   None if executed is None else Decimal(str(executed)), None if status is None else str(status),
                   [int(t) for t in trades])
