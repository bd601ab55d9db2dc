"""Parameter sweeps: run the vectorized backtest over a grid of settings and rank the results.

`--sweep grids=5:60:5` means grids 5, 10, ..., 60 (stop included when the step lands on it); several
`--sweep` options combine as a Cartesian product. The candle path is built once and shared.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import numpy as np

from tgtrader.backtest.candles import Candles
from tgtrader.backtest.vector import DEFAULT_FEE, BacktestInputError, Result, candle_path, run_backtest
from tgtrader.core.api import GridSpec
from tgtrader.core.rules import SymbolRules
from tgtrader.fees import DEFAULT_FEE_ASSET, FeeAsset

SWEEPABLE = {"grids": int, "lower": float, "upper": float, "fee": float, "investment": float}
MAX_SETTINGS = 10_000


@dataclass(frozen=True)
class SweepAxis:
    name: str
    values: tuple[float, ...]


@dataclass(frozen=True)
class Setting:
    """One run of a sweep: the grid and the fee rate it is backtested with."""

    spec: GridSpec
    fee: float = DEFAULT_FEE


@dataclass(frozen=True)
class SweepRow:
    setting: Setting
    result: Result | None
    error: str | None = None


def parse_sweep(text: str) -> SweepAxis:
    """`name=start:stop:step` (or `name=a,b,c`) -> SweepAxis; BacktestInputError with one line if malformed."""
    name, sep, rng = text.partition("=")
    name = name.strip().lower().replace("-", "_")
    if not sep or name not in SWEEPABLE:
        raise BacktestInputError(
            f"--sweep {text!r}: expected NAME=START:STOP:STEP with NAME one of {', '.join(SWEEPABLE)}"
        )
    kind = SWEEPABLE[name]
    try:
        parts = [kind(p) for p in rng.split(":" if ":" in rng else ",")]
    except ValueError:
        raise BacktestInputError(
            f"--sweep {text!r}: values must be {'whole numbers' if kind is int else 'numbers'}"
        ) from None
    if ":" in rng:
        if len(parts) != 3:
            raise BacktestInputError(f"--sweep {text!r}: expected NAME=START:STOP:STEP")
        start, stop, step = parts
        if step <= 0 or stop < start:
            raise BacktestInputError(f"--sweep {text!r}: need START <= STOP and a positive STEP")
        count = int(np.floor((stop - start) / step + 1e-9)) + 1
        values = tuple(kind(start + i * step) for i in range(count))
        if kind is float:
            values = tuple(float(round(v, 12)) for v in values)
    else:
        values = tuple(parts)
    if not values:
        raise BacktestInputError(f"--sweep {text!r}: no values")
    return SweepAxis(name, values)


def sweep_specs(base: GridSpec, axes: Iterable[SweepAxis], fee: float = DEFAULT_FEE) -> list[Setting]:
    """Every combination of the axes' values, on top of `base` and `fee` (the fee is a run parameter, not
    part of the spec; the swept prices become the Decimals of their float values, so a run sees those floats)."""
    axes = list(axes)
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise BacktestInputError(f"--sweep names repeat: {', '.join(names)}")
    total = int(np.prod([len(a.values) for a in axes])) if axes else 1
    if total > MAX_SETTINGS:
        raise BacktestInputError(f"--sweep asks for {total:,} settings; the limit is {MAX_SETTINGS:,}")
    settings = []
    for combo in itertools.product(*(a.values for a in axes)):
        values = dict(zip(names, combo))
        run_fee = float(values.pop("fee", fee))
        changes: dict[str, Any] = {k: v if SWEEPABLE[k] is int else Decimal(repr(float(v))) for k, v in values.items()}
        settings.append(Setting(replace(base, **changes), run_fee))
    return settings


def run_sweep(
    candles: Candles,
    settings: list[Setting],
    rules: SymbolRules | None = None,
    progress: Callable[[int], None] | None = None,
    fee_asset: FeeAsset = DEFAULT_FEE_ASSET,
    slippage_bps: float = 0.0,
) -> list[SweepRow]:
    """Every setting, ranked by final equity (best first); settings that cannot run are listed last with why."""
    path = candle_path(candles)
    rows: list[SweepRow] = []
    for i, setting in enumerate(settings):
        try:
            result = run_backtest(candles, setting.spec, rules, fee=setting.fee, fee_asset=fee_asset,
                                  slippage_bps=slippage_bps, path=path)
            rows.append(SweepRow(setting, result))
        except BacktestInputError as exc:
            rows.append(SweepRow(setting, None, str(exc)))
        if progress is not None:
            progress(i + 1)
    ok = sorted((r for r in rows if r.result is not None), key=lambda r: -r.result.final_equity)  # type: ignore[union-attr]
    return ok + [r for r in rows if r.result is None]
