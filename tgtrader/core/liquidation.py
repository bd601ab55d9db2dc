"""A standalone exit: sells one symbol's base until flat for /panic (machine kind "exit", ids tg-e{id}-{seq}).

Grids and stops sell their own base with their embedded exit (core/exit.py). What /panic sells besides them is
base the bot bought for the trader outside grids (/buy chases, booked from its own fills: `owned_outside_grids`)
or, only with `/panic all`, the account's base minus what the grids sell and the protected assets. Each such sale
is one Liquidation: the same SellUntilFlat decisions, its own legs (a leg is done when it is final and its fills
caught up with the executed quantity the exchange reported), booked to itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tgtrader.core.accounting import base_received
from tgtrader.core.events import CoreEvent
from tgtrader.core.exit import SellUntilFlat, Step, market_sell_qty
from tgtrader.core.ids import exit_order_id, parse_client_order_id
from tgtrader.core.legs import Leg
from tgtrader.core.ports import MachineSnapshot
from tgtrader.core.rules import SymbolRules
from tgtrader.types import (
    AlertIntent,
    Fill,
    Intent,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    ReadBalance,
    Side,
    Tick,
)

ZERO = Decimal(0)
_TRADER_KINDS = frozenset({"chase", "manual"})  # buys the bot made for the trader, outside any grid
_SELLER_KINDS = frozenset({"chase", "manual", "stop", "panic", "exit"})


def owned_outside_grids(fills: Iterable[Fill], base_asset: str) -> Decimal:
    """Base the bot bought for the trader outside grids and has not sold since (never below zero): /panic sells
    this, and never the trader's own holdings."""
    held = ZERO
    for f in sorted(fills, key=lambda f: (f.ts_ms, f.trade_id)):
        p = parse_client_order_id(f.client_order_id)
        if p is None:
            continue
        if f.side is Side.BUY and p.kind in _TRADER_KINDS:
            held += base_received(f, base_asset)
        elif f.side is Side.SELL and p.kind in _SELLER_KINDS:
            held = max(ZERO, held - f.qty)
    return held


@dataclass
class Liquidation:
    id: int
    symbol: str
    rules: SymbolRules
    owed: Decimal  # base still to sell
    reason: str = "panic"
    seq: int = 0
    sold: Decimal = ZERO
    proceeds: Decimal = ZERO
    last_price: Decimal | None = None
    legs: dict[str, Leg] = field(default_factory=dict)
    exit: SellUntilFlat = field(default_factory=SellUntilFlat)
    _events: list[CoreEvent] = field(default_factory=list)

    machine_kind = "exit"

    @property
    def owner(self) -> str:
        return f"exit:{self.id}"

    @property
    def active(self) -> bool:
        return self.exit.working

    @property
    def watching(self) -> bool:
        return self.exit.working

    def drain_events(self) -> list[CoreEvent]:
        out, self._events = self._events, []
        return out

    def snapshot(self) -> MachineSnapshot:
        return MachineSnapshot("exit", self.id, self.symbol, self.exit.state.value, self.to_state())

    def start(self, ts: int, price: Decimal | None) -> list[Intent]:
        self.last_price = price
        self.exit.begin(ts, self.reason)
        return self._step(ts)

    def _sellable(self, qty: Decimal) -> Decimal:
        return market_sell_qty(self.rules, qty, self.last_price)

    def _step(self, ts: int) -> list[Intent]:
        leg_working = any(not leg.done for leg in self.legs.values())
        act = self.exit.step(self.owed, False, leg_working, ts, self._sellable)
        if act.step is Step.SELL:
            self.seq += 1
            cid = exit_order_id(self.id, self.seq)
            self.legs[cid] = Leg(cid, act.qty)
            self.exit.placed(cid)
            return [PlaceOrder(self.symbol, cid, Side.SELL, OrderType.MARKET, act.qty, None, None, None, self.owner)]
        if act.step is Step.NEED_BALANCE:
            return [ReadBalance(self.rules.base_asset, self.owner)]
        if act.step is Step.DONE:
            return [self._finished()]
        return []

    def _finished(self) -> AlertIntent:
        ex = self.exit
        return AlertIntent("exit-finished", {"exit_id": self.id, "symbol": self.symbol, "reason": self.reason,
                                             "legs": ex.legs, "sold": str(self.sold), "proceeds": str(self.proceeds),
                                             "base_asset": self.rules.base_asset,
                                             "quote_asset": self.rules.quote_asset, **ex.left()})

    def on_tick(self, tick: Tick) -> list[Intent]:
        if tick.symbol == self.symbol and tick.price is not None:
            self.last_price = tick.price
        return self._step(tick.ts_ms)

    def on_timer(self, ts: int) -> list[Intent]:
        return self._step(ts)

    def on_balance(self, asset: str, free: Decimal, ts: int) -> list[Intent]:
        if asset != self.rules.base_asset or not self.exit.working:
            return []
        self.exit.on_balance(free)
        return self._step(ts)

    def on_fill(self, fill: Fill, fee_quote: Decimal | None = None) -> list[Intent]:
        leg = self.legs.get(fill.client_order_id)
        if leg is None or not leg.add_fill(fill):
            return []
        self.owed = max(ZERO, self.owed - fill.qty)
        self.sold += fill.qty
        self.proceeds += fill.notional - (fee_quote or ZERO)
        self.last_price = fill.price
        return self._step(fill.ts_ms) if leg.done else []

    def on_order_update(self, upd: OrderUpdate) -> list[Intent]:
        leg = self.legs.get(upd.client_order_id)
        if leg is None or not upd.status.is_final or not leg.end(upd.status, upd.executed_qty):
            return []
        if self.exit.leg_ended(upd.client_order_id, upd.status, upd.reject_reason, self.owed, upd.executed_qty,
                               upd.ts_ms):
            return [self._finished()]
        return self._step(upd.ts_ms) if leg.done else []

    def to_state(self) -> dict[str, Any]:
        return {"id": self.id, "symbol": self.symbol, "owed": str(self.owed), "reason": self.reason, "seq": self.seq,
                "sold": str(self.sold), "proceeds": str(self.proceeds),
                "last_price": None if self.last_price is None else str(self.last_price),
                "legs": [leg.to_list() for leg in self.legs.values()], "exit": self.exit.to_dict()}

    @classmethod
    def from_state(cls, d: dict[str, Any], rules: SymbolRules) -> "Liquidation":
        liq = cls(int(d["id"]), d["symbol"], rules, Decimal(d["owed"]), d["reason"], int(d["seq"]),
                  Decimal(d["sold"]), Decimal(d["proceeds"]),
                  None if d["last_price"] is None else Decimal(d["last_price"]))
        liq.legs = {leg.cid: leg for leg in map(Leg.from_list, d["legs"])}
        liq.exit = SellUntilFlat.from_dict(d["exit"])
        return liq
