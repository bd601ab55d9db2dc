"""The test kit: builders with sensible defaults, a settable clock, an event recorder, and a core on paper.

Tests build domain values here instead of spelling every field, so a new field with a default touches one
place. `CoreOnPaper` is the real TradingCore on the real PaperExchange and a real SQLite database.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.core.conftest import REAL_RULES
from tgtrader.core.api import GridSpec
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import EventBus
from tgtrader.core.rules import SymbolRules
from tgtrader.core.service import TradingCore
from tgtrader.exchange.paper import PaperExchange
from tgtrader.store import Database
from tgtrader.store.core_store import CoreStore
from tgtrader.store.migrations import MIGRATIONS
from tgtrader.types import Fill, OrderStatus, OrderType, OrderUpdate, PlaceOrder, RejectReason, Side

D = Decimal
T0 = 1_700_000_000_000  # 2023-11-14, a fixed start for every clock


def rules(symbol: str = "BTCUSDT") -> SymbolRules:
    """Real Binance filters (recorded exchangeInfo)."""
    return REAL_RULES[symbol]


def place(cid: str = "tg-c1-1", side: Side = Side.BUY, qty: str = "0.01", price: str | None = "50000",
          order_type: OrderType = OrderType.LIMIT, symbol: str = "BTCUSDT", owner: str = "") -> PlaceOrder:
    tif = "GTC" if order_type is OrderType.LIMIT else None
    return PlaceOrder(symbol, cid, side, order_type, D(qty), D(price) if price is not None else None, None, tif, owner)


def update(order: PlaceOrder, status: OrderStatus = OrderStatus.NEW, executed: str = "0", ts_ms: int = T0,
           reason: RejectReason | None = None, text: str = "") -> OrderUpdate:
    return OrderUpdate(order.symbol, order.client_order_id, order.side, order.order_type, status,
                       order.price or D(0), order.qty, D(executed), ts_ms=ts_ms, reject_reason=reason,
                       reject_text=text)


def fill(order: PlaceOrder, trade_id: int, qty: str | None = None, price: str | None = None, fee: str = "0",
         fee_asset: str = "USDT", maker: bool = True, ts_ms: int = T0) -> Fill:
    q = D(qty) if qty is not None else order.qty
    p = D(price) if price is not None else (order.price or D(0))
    return Fill(order.symbol, trade_id, order.client_order_id, order.side, p, q, D(fee), fee_asset, maker, ts_ms)


def grid_spec(symbol: str = "BTCUSDT", lower: str = "40000", upper: str = "60000", n: int = 4,
              investment: str = "1000") -> GridSpec:
    return GridSpec(symbol, D(lower), D(upper), n, D(investment))


def old_database(path: Path, version: int) -> sqlite3.Connection:
    """A database file as schema `version` left it (the migrations up to it applied), open for the test to
    add rows from that time; commit and close it before `Database.open` migrates it."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)")
    for number, m in enumerate(MIGRATIONS[:version], start=1):
        for statement in m.statements:
            con.execute(statement)
        con.execute("INSERT INTO schema_version VALUES (?, ?, 0)", (number, m.name))
    return con


class Clock:
    """A clock the test moves by hand (milliseconds)."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int = 1000) -> int:
        self.now += ms
        return self.now


@dataclass
class Recorder:
    """Collects everything published on a bus (or pushed into an exchange sink)."""

    events: list[Any] = field(default_factory=list)

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class CoreOnPaper:
    """The real core on the paper venue and a SQLite file; `await CoreOnPaper.open(tmp_path)`."""

    core: TradingCore
    paper: PaperExchange
    db: Database
    clock: Clock
    recorder: Recorder

    @classmethod
    async def open(cls, tmp_path: Path, usdt: str = "10000", price: str = "52000",
                   config: CoreConfig = CoreConfig(timer_interval_s=0)) -> "CoreOnPaper":
        db = await Database.open(tmp_path / "core.sqlite")
        paper = PaperExchange(db, rules=REAL_RULES, initial_balances={"USDT": D(usdt)})
        recorder, clock = Recorder(), Clock()
        bus = EventBus()
        bus.subscribe(recorder)
        core = TradingCore(paper, CoreStore(db), bus, config, mode="paper", clock_ms=clock)
        await core.start()
        await paper.subscribe({"BTCUSDT"})
        kit = cls(core, paper, db, clock, recorder)
        await kit.trade(price)
        return kit

    async def trade(self, *prices: str, symbol: str = "BTCUSDT") -> None:
        """Market trades at each price, one second apart, each fully handled before the next."""
        for p in prices:
            self.paper.feed_trade(symbol, D(p), self.clock.advance())
            await self.core.idle()

    async def running_grid(self, spec: GridSpec | None = None) -> int:
        view = await self.core.preview_grid(spec or grid_spec())
        assert view.ok, view.problems
        grid = await self.core.start_grid(view.token)
        await self.core.idle()
        return grid.id

    async def close(self) -> None:
        await self.core.stop()
        await self.db.close()
