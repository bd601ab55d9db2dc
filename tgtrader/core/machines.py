"""The machine protocol the kernel drives, and the one registry of machine kinds.

A machine (grid, stop, chase) is pure: events in, intents out. The kernel finds the machine that owns an
order from its client order id, feeds it, and saves its `snapshot()`. Adding a machine kind means: a class
that implements `Machine`, an entry in `Machines` (its dict and its loader); nothing else branches on kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, Protocol

from tgtrader.core.chase import Chase
from tgtrader.core.events import CoreEvent
from tgtrader.core.grid import Grid
from tgtrader.core.ids import parse_client_order_id
from tgtrader.core.liquidation import Liquidation
from tgtrader.core.ports import MachineSnapshot, SavedMachine
from tgtrader.core.rules import SymbolRules
from tgtrader.core.stops import Stop
from tgtrader.types import Fill, Intent, OrderUpdate, Tick


class Machine(Protocol):
    machine_kind: str  # the client order id kind: "grid", "stop", "chase"
    id: int

    @property
    def symbol(self) -> str: ...

    @property
    def active(self) -> bool:
        """Takes ticks, timers, fills and order updates."""

    @property
    def watching(self) -> bool:
        """Needs its symbol's market stream."""

    def on_tick(self, tick: Tick) -> list[Intent]: ...

    def on_timer(self, ts: int) -> list[Intent]: ...

    def on_fill(self, fill: Fill, fee_quote: Decimal | None = None) -> list[Intent]: ...

    def on_order_update(self, upd: OrderUpdate) -> list[Intent]: ...

    def on_balance(self, asset: str, free: Decimal, ts: int) -> list[Intent]:
        """The free balance it asked for with a ReadBalance intent."""

    def drain_events(self) -> list[CoreEvent]: ...

    def snapshot(self) -> MachineSnapshot: ...


class Machines:
    """Every machine the core runs, by kind and id."""

    def __init__(self) -> None:
        self.grids: dict[int, Grid] = {}
        self.stops: dict[int, Stop] = {}
        self.chases: dict[int, Chase] = {}
        self.exits: dict[int, Liquidation] = {}

    def _tables(self) -> dict[str, dict[int, Machine]]:
        return {"grid": self.grids, "stop": self.stops, "chase": self.chases,  # type: ignore[dict-item]
                "exit": self.exits}  # type: ignore[dict-item]

    def add(self, machine: Machine) -> None:
        self._tables()[machine.machine_kind][machine.id] = machine

    @staticmethod
    def rebuild(saved: SavedMachine, rules: SymbolRules) -> Machine:
        """A machine from its saved snapshot (not added: the caller decides whether it still runs)."""
        loaders: dict[str, Callable[[dict[str, Any], SymbolRules], Machine]] = {
            "grid": Grid.from_state, "stop": Stop.from_state, "chase": Chase.from_state,
            "exit": Liquidation.from_state,
        }
        machine = loaders[saved.kind](saved.runtime, rules)
        machine.id = saved.id
        return machine

    def owner_of(self, client_order_id: str) -> Machine | None:
        p = parse_client_order_id(client_order_id)
        if p is None:
            return None
        table = self._tables().get(p.kind)
        return table.get(p.owner_id) if table is not None else None

    def by_owner(self, owner: str) -> Machine | None:
        """The machine named by an intent's `owner` ("grid:3")."""
        kind, _, ident = owner.partition(":")
        table = self._tables().get(kind)
        return table.get(int(ident)) if table is not None and ident.isdigit() else None

    def all(self) -> Iterator[Machine]:
        for table in self._tables().values():
            yield from table.values()

    def active(self) -> list[Machine]:
        return [m for m in self.all() if m.active]

    def for_symbol(self, symbol: str) -> list[Machine]:
        return [m for m in self.active() if m.symbol == symbol]

    def watched_symbols(self) -> set[str]:
        return {m.symbol for m in self.all() if m.watching}
