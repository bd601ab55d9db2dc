"""Money bookkeeping shared by grids, stops and chases: fee conversion, cost basis, returns.

Fees are kept in quote value. When the exchange charges a fee in the base asset (Binance does on
buys without BNB) the base actually received shrinks, and the fee's quote value is base fee x price.
A fee in a third asset (BNB) is valued with the caller's price table, else estimated from `fee_rate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tgtrader.types import Fill, Side

ZERO = Decimal(0)
YEAR_MS = Decimal(365 * 24 * 3600 * 1000)


def fee_in_quote(
    fill: Fill,
    base_asset: str,
    quote_asset: str,
    prices: Mapping[str, Decimal] | None = None,
    fee_rate: Decimal = Decimal("0.001"),
) -> Decimal:
    """Quote value of a fill's fee. `prices[asset]` is that asset's price in quote."""
    if fill.fee == 0:
        return ZERO
    if fill.fee_asset == quote_asset:
        return fill.fee
    if fill.fee_asset == base_asset:
        return fill.fee * fill.price
    if prices and fill.fee_asset in prices:
        return fill.fee * prices[fill.fee_asset]
    return fill.notional * fee_rate


def base_received(fill: Fill, base_asset: str) -> Decimal:
    """Base that a buy fill really added to the wallet (fee in base is taken from it)."""
    if fill.side is Side.BUY and fill.fee_asset == base_asset:
        return fill.qty - fill.fee
    return fill.qty


def buy_cost(fill: Fill, fee_quote: Decimal, base_asset: str) -> Decimal:
    """What a buy fill's base cost, fees included once: a fee taken in base already shrank the base received
    (`base_received`), so only a fee paid in another asset (quote, BNB) adds to the cost."""
    return fill.notional + (ZERO if fill.fee_asset == base_asset else fee_quote)


def quote_received(fill: Fill, quote_asset: str) -> Decimal:
    """Quote a sell fill adds, or (negative) a buy fill spends, after a fee taken in quote."""
    fee = fill.fee if fill.fee_asset == quote_asset else ZERO
    return (fill.notional if fill.side is Side.SELL else -fill.notional) - fee


MIN_APR_MS = 7 * 24 * 3600 * 1000  # an APR extrapolated from less than a week means nothing


def annualized_return_pct(pnl: Decimal, capital: Decimal, start_ts: int, now_ts: int,
                          min_ms: int = MIN_APR_MS) -> Decimal | None:
    """Simple (not compounded) annualized return in percent; None before `min_ms` (a week) has passed."""
    elapsed = now_ts - start_ts
    if capital <= 0 or elapsed <= 0 or elapsed < min_ms:
        return None
    return pnl / capital * (YEAR_MS / Decimal(elapsed)) * 100


@dataclass
class Ledger:
    """Running totals of one owner's trading, in quote."""

    bought_qty: Decimal = ZERO
    bought_quote: Decimal = ZERO
    sold_qty: Decimal = ZERO
    sold_quote: Decimal = ZERO
    fees: Decimal = ZERO
    realized: Decimal = ZERO  # every sale against its cost, after fees (start-bought base included)
    round_trips: int = 0  # completed grid buy-then-sell pairs (not sales of the base bought at start)
    grid_profit: Decimal = ZERO  # profit of those round trips only, after both fees

    def record(self, side: Side, qty: Decimal, price: Decimal, fee_quote: Decimal) -> None:
        if side is Side.BUY:
            self.bought_qty += qty
            self.bought_quote += qty * price
        else:
            self.sold_qty += qty
            self.sold_quote += qty * price
        self.fees += fee_quote

    @property
    def quote_flow(self) -> Decimal:
        """Net quote in (+) or out (-) from trading, fees included."""
        return self.sold_quote - self.bought_quote - self.fees

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Ledger":
        led = cls()
        for k, v in d.items():
            setattr(led, k, int(v) if k == "round_trips" else Decimal(v))
        return led


@dataclass(frozen=True, slots=True)
class Position:
    """Base held and what it cost (fees included), valued at the last price."""

    base: Decimal
    cost: Decimal
    last_price: Decimal | None

    @property
    def avg_cost(self) -> Decimal:
        return self.cost / self.base if self.base > 0 else ZERO

    @property
    def unrealized(self) -> Decimal:
        if self.last_price is None or self.base <= 0:
            return ZERO
        return self.base * self.last_price - self.cost
