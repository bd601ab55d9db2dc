"""Vectorized grid backtests over candles (see README.md in this folder for the fill model)."""

from tgtrader.backtest.candles import CandleFileError, Candles, load_candles
from tgtrader.backtest.trailing import run_trailing
from tgtrader.backtest.vector import (
    BacktestInputError,
    Fills,
    Result,
    TrailMove,
    candle_path,
    grid_levels,
    run_backtest,
    validate,
)

__all__ = [
    "BacktestInputError",
    "CandleFileError",
    "Candles",
    "Fills",
    "Result",
    "TrailMove",
    "candle_path",
    "grid_levels",
    "load_candles",
    "run_backtest",
    "run_trailing",
    "validate",
]
