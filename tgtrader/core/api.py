"""The operations every front end calls (Telegram, console demo), with typed results.

Front ends parse and render; they never decide anything about trading. The engine
(`tgtrader.core.service.TradingCore`) implements `TradingApi`. A refused operation raises
`ApiError` with a one-line reason a trader can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Protocol, runtime_checkable

from tgtrader.core.events import EventBus
from tgtrader.core.grid.plan import GridPreview
from tgtrader.core.ports import ExchangeHealth
from tgtrader.errors import TgTraderError
from tgtrader.types import Balance, Side


class ApiError(TgTraderError):
    """An operation was refused; the message is shown to the trader as is."""


@dataclass(frozen=True, slots=True)
class GridSpec:
    """A grid as the trader asked for it (already parsed to Decimal, not yet checked against filters)."""

    symbol: str
    lower: Decimal
    upper: Decimal
    grids: int
    investment: Decimal
    spacing: str = "arithmetic"  # or "geometric"
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    sell_on_stop: bool = False
    accept_loss: bool = False  # start although each round trip loses to fees (explicit override)
    trail_up: Decimal | None = None  # trailing up to this price (the grid's top level never goes above it)
    trail_down: Decimal | None = None  # trailing down to this price (its bottom level never goes below it)


@dataclass(frozen=True, slots=True)
class GridPreviewView(GridPreview):
    """The core's preview of a grid (`tgtrader.core.grid.plan.GridPreview`: price, levels, quantity, profit per
    grid, requirements) as a front end gets it: with the spec the trader asked for and the token Start refers
    to (expires, single use). Its `problems` also hold the engine's own refusals (overlap, exposure limits)."""

    token: str
    spec: GridSpec

    @classmethod
    def of(cls, preview: GridPreview, token: str, spec: GridSpec, problems: tuple[str, ...]) -> GridPreviewView:
        values = {f.name: getattr(preview, f.name) for f in fields(GridPreview)}
        return cls(**{**values, "problems": problems}, token=token, spec=spec)


@dataclass(frozen=True, slots=True)
class GridSummary:
    id: int
    symbol: str
    state: str  # running, paused, stopped
    stop_reason: str
    lower: Decimal
    upper: Decimal
    grids: int
    spacing: str
    investment: Decimal
    qty_per_order: Decimal
    realized_profit: Decimal
    fees: Decimal
    round_trips: int
    base_held: Decimal
    avg_cost: Decimal
    unrealized_pnl: Decimal
    last_price: Decimal | None
    annualized_return_pct: Decimal | None
    open_orders: int
    started_ts_ms: int
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    grid_profit: Decimal = Decimal(0)  # round trips only; realized_profit also counts sales of start-bought base
    trail_up: Decimal | None = None  # trailing-up limit (None: the grid does not trail up)
    trail_down: Decimal | None = None  # trailing-down limit
    moves_up: int = 0  # times the grid moved up one rung
    moves_down: int = 0
    range_lower: Decimal | None = None  # the range it trades now (differs from lower/upper once it has moved)
    range_upper: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderView:
    symbol: str
    side: Side
    order_type: str
    price: Decimal | None
    qty: Decimal
    executed_qty: Decimal
    status: str
    owner: str
    client_order_id: str


@dataclass(frozen=True, slots=True)
class StatusView:
    mode: str  # "paper", "live", "testnet", "demo"
    grids: tuple[GridSummary, ...]
    open_orders: int
    realized_today: Decimal
    realized_total: Decimal
    unrealized: Decimal
    health: ExchangeHealth
    quote_asset: str = "USDT"
    paused_by_panic: bool = False
    grid_profit: Decimal = Decimal(0)  # completed round trips only (Binance's "grid profit")

    @property
    def total_pnl(self) -> Decimal:
        """Realized (every sale, fees once) + unrealized (at the last price): Binance's "total PnL"."""
        return self.realized_total + self.unrealized


@dataclass(frozen=True, slots=True)
class PnlView:
    days: tuple[tuple[str, Decimal, int], ...]  # (YYYY-MM-DD UTC, realized of every sale, round trips), oldest first
    total: Decimal  # realized over the days shown
    quote_asset: str = "USDT"
    realized_all_time: Decimal = Decimal(0)
    unrealized: Decimal = Decimal(0)
    grid_profit: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class SizeResult:
    ok: bool
    method: str  # "fixed-fraction" or "kelly"
    reason: str  # why no trade, or a one-line explanation of the size
    fraction: Decimal | None = None  # of capital
    capital: Decimal | None = None
    position_quote: Decimal | None = None
    qty: Decimal | None = None
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class ChaseResult:
    symbol: str
    side: Side
    requested_qty: Decimal
    filled_qty: Decimal
    avg_price: Decimal | None
    maker_qty: Decimal
    taker_qty: Decimal
    fees: Decimal
    status: str  # "filled", "partial", "cancelled", "rejected"
    message: str = ""


@dataclass(frozen=True, slots=True)
class StopView:
    id: int
    symbol: str
    kind: str  # "soft" or "hard"
    purpose: str  # "stop-loss" or "take-profit"
    trigger: Decimal
    qty: Decimal
    state: str  # armed, triggered, cancelled, fallback-hard


@dataclass(frozen=True, slots=True)
class PanicPlan:
    grids_to_stop: int
    orders_to_cancel: int  # the bot's own open orders
    assets_to_sell: tuple[tuple[str, Decimal], ...]  # (asset, qty) above minNotional: the bot's, or all with "all"
    token: str  # confirmation token; valid for `valid_for_s`
    valid_for_s: int = 30
    scope: str = "own"  # "own": only what the bot owns; "all": the whole account but the protected assets
    not_bots: tuple[tuple[str, Decimal], ...] = ()  # holdings the bot never bought (left alone unless "all")
    protected: tuple[tuple[str, Decimal], ...] = ()  # never sold
    foreign_orders: int = 0  # orders placed by hand on the exchange: never cancelled


@dataclass(frozen=True, slots=True)
class PanicReport:
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class ChartData:
    grid_id: int
    symbol: str
    times_ms: tuple[int, ...]
    prices: tuple[float, ...]
    levels: tuple[Decimal, ...]
    fills: tuple[tuple[int, str, Decimal], ...]  # (ts_ms, "BUY"/"SELL", price)
    fill_qty: tuple[Decimal, ...] = ()  # each fill's quantity (same order): the chart's PnL panel
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    # (ts_ms, kind, price): "trail-up" / "trail-down" (the grid moved one rung; price = the market's), "stop-loss" /
    # "take-profit" (a trigger fired at that price)
    marks: tuple[tuple[int, str, Decimal], ...] = ()


@dataclass(frozen=True, slots=True)
class BalancesView:
    balances: tuple[Balance, ...]
    quote_asset: str = "USDT"
    equity_quote: Decimal | None = None  # everything valued in quote at last prices
    extra: dict[str, Decimal] = field(default_factory=dict)


@runtime_checkable
class TradingApi(Protocol):
    bus: EventBus
    mode: str

    async def known_symbols(self) -> frozenset[str]: ...
    async def tick_size(self, symbol: str) -> Decimal:
        """Raises ApiError for an unknown symbol (front ends use it to check 'price not on tick')."""

    async def preview_grid(self, spec: GridSpec) -> GridPreviewView: ...
    async def start_grid(self, preview_token: str) -> GridSummary:
        """Only a preview with no problems, not expired, not used, can start."""

    async def list_grids(self) -> list[GridSummary]: ...
    async def grid(self, grid_id: int) -> GridSummary: ...
    async def pause_grid(self, grid_id: int) -> GridSummary: ...
    async def resume_grid(self, grid_id: int) -> GridSummary: ...
    async def stop_grid(self, grid_id: int, sell: bool = False) -> GridSummary: ...

    async def status(self) -> StatusView: ...
    async def balances(self) -> BalancesView: ...
    async def open_orders(self, symbol: str | None = None) -> list[OrderView]: ...
    async def pnl(self, days: int = 7) -> PnlView: ...

    async def size_fixed(
        self, symbol: str, entry: Decimal, stop: Decimal, risk_pct: Decimal | None = None
    ) -> SizeResult: ...
    async def size_kelly(self, win_rate: Decimal, payoff: Decimal) -> SizeResult: ...

    async def last_price(self, symbol: str) -> Decimal:
        """The symbol's last price (a /buy or /sell worth more than the confirmation threshold asks first)."""

    async def chase(self, symbol: str, side: Side, qty: Decimal, limit_price: Decimal | None = None) -> ChaseResult:
        """Smart maker-first order; returns when filled, cancelled at the limit, or fallen back to market."""

    async def add_stop(self, symbol: str, price: Decimal, kind: str = "soft") -> StopView: ...
    async def list_stops(self) -> list[StopView]: ...
    async def cancel_stop(self, stop_id: int) -> StopView: ...

    async def panic_plan(self, scope: str = "own") -> PanicPlan: ...
    async def panic(self, token: str) -> PanicReport:
        """Runs only with a plan token that is valid (issued <= 30 s ago, unused)."""

    async def resume_all(self) -> list[GridSummary]: ...
    async def chart_data(self, grid_id: int) -> ChartData: ...
