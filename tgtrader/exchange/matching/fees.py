"""The matching engine's commission: which asset pays a fill's fee and how much (see `tgtrader.fees`).

Binance (faqs/commission_faq.md): the commission is the received amount times the rate — a BUY receives the
quantity (base), a SELL the notional (quote) — and "will be paid in BNB assuming you have a sufficient balance"
when BNB fees are enabled, "converted into BNB based on the exchange rate"; without enough BNB "the full
commission will be taken out of your received amount" instead. Here BNB pays at the configured rate (set the
rates to 0.00075 to model Binance's 25 % BNB discount), rounded to BNB's 8 decimals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from tgtrader.fees import BNB, DEFAULT_FEE_ASSET, FeeAsset, fee_asset_of
from tgtrader.types import Side

ZERO = Decimal(0)
BNB_QUANTUM = Decimal("1e-8")


@dataclass(frozen=True, slots=True)
class Commission:
    asset: str
    amount: Decimal


@dataclass
class FeeModel:
    """Who pays: `mode` (base / quote / bnb) and the BNB prices given per quote asset (used when the venue has
    no BNB<quote> market price of its own)."""

    mode: FeeAsset = DEFAULT_FEE_ASSET
    bnb_prices: dict[str, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mode = fee_asset_of(self.mode)
        self.bnb_prices = {q: Decimal(p) for q, p in self.bnb_prices.items()}

    @property
    def buy_pays_quote(self) -> bool:
        """Whether a buy's fee comes out of quote (then a buy locks its fee too; otherwise only the notional)."""
        return self.mode == "quote"

    def bnb_price(self, quote: str, market_price: Callable[[str], Decimal | None]) -> Decimal | None:
        """Price of 1 BNB in `quote`: the venue's own BNB<quote> market first, else the given price."""
        if quote == BNB:
            return Decimal(1)
        px = market_price(BNB + quote)
        return px if px is not None and px > 0 else self.bnb_prices.get(quote)

    def commission(
        self, side: Side, base: str, quote: str, qty: Decimal, notional: Decimal, rate: Decimal,
        bnb_price: Decimal | None, bnb_free: Decimal,
    ) -> Commission:
        """The fee of one fill of `qty` for `notional` at `rate`."""
        if self.mode == "bnb" and bnb_price is not None and bnb_price > 0:
            amount = (notional * rate / bnb_price).quantize(BNB_QUANTUM, ROUND_HALF_UP)
            if amount <= bnb_free:
                return Commission(BNB, amount)
        if side is Side.BUY and self.mode != "quote":
            return Commission(base, qty * rate)
        return Commission(quote, notional * rate)


def fee_model(mode: FeeAsset | str, bnb_prices: Mapping[str, Decimal] | None = None) -> FeeModel:
    return FeeModel(fee_asset_of(mode), dict(bnb_prices or {}))
