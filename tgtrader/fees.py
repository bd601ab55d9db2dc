"""Which asset pays a trade's commission on the simulated venues (paper exchange, backtest, demo).

Why: Binance takes a buy's commission from the asset received (the base) unless BNB pays it, and a sell's
from the quote received (faqs/commission_faq.md: "If not paying in BNB, the total commission are summed up
and deducted from your received amount"). Paper and backtest numbers only look like live ones when they
charge the same way, so the choice is one setting (`TGTRADER_PAPER_FEE_ASSET`) shared by every simulator:

- ``base`` (Binance's default): a buy pays in base (it receives qty x (1 - rate)); a sell pays in quote.
- ``quote``: both sides pay in quote (the simple model older versions used).
- ``bnb``: both sides pay in BNB at the configured rate, valued at a BNB price the venue knows or is given,
  while the account holds enough BNB; otherwise as ``base``, as Binance falls back to the received asset.
"""

from __future__ import annotations

from typing import Literal

FeeAsset = Literal["base", "quote", "bnb"]
FEE_ASSETS: tuple[FeeAsset, ...] = ("base", "quote", "bnb")
DEFAULT_FEE_ASSET: FeeAsset = "base"
BNB = "BNB"


def fee_asset_of(value: str) -> FeeAsset:
    """Parse a setting value; a clear one-line error for anything else."""
    lowered = value.strip().lower()
    for choice in FEE_ASSETS:
        if lowered == choice:
            return choice
    raise ValueError(f"must be one of {', '.join(FEE_ASSETS)} (who pays a trade's commission), got {value!r}")
