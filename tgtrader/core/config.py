"""The core's own settings (the front ends' and adapters' live in tgtrader.config)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class CoreConfig:
    quote_asset: str = "USDT"
    fee_rate: Decimal = Decimal("0.001")  # previews and fee estimates
    max_per_grid: Decimal | None = None
    max_total_in_grids: Decimal | None = None
    max_open_orders: int | None = None
    chase_step_ms: int = 5_000
    chase_max_slippage: Decimal = Decimal("0.005")
    soft_stop_silence_s: float = 60.0
    stop_limit_offset: Decimal = Decimal("0.005")
    stop_rest_s: float = 30.0  # a hard stop-loss left unfilled below its limit this long is sold at market
    start_mode: str = "market"  # or "chase"
    panic_quote_asset: str | None = None  # default: quote_asset
    risk_pct: Decimal = Decimal("0.01")
    kelly_multiplier: Decimal = Decimal("0.5")
    kelly_cap: Decimal = Decimal("0.20")
    timer_interval_s: float = 0.5  # 0 disables the timer task (replay derives timers from ticks)
    preview_ttl_s: int = 600
    panic_token_ttl_s: int = 30
    panic_wait_s: float = 10.0  # how long /panic waits for its exits before it reports (they go on after)
    chart_points: int = 5_000
    fill_grace_s: float = 2.0  # an order reported executed beyond its fills gets its trades fetched after this
    protected_assets: tuple[str, ...] = ("BNB",)  # never sold by /panic all (the fee float)
