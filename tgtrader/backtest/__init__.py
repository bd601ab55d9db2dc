"""Vectorized grid backtests over candles (see README.md in this folder for the fill model)."""

from tgtrader.backtest.candles import CandleFileError, Candles, load_candles
from tgtrader.backtest.vector import BacktestInputError, Fills, GridSpec, Result, candle_path, grid_levels, run_backtest

__all__ = [
    "BacktestInputError",
    "CandleFileError",
    "Candles",
    "Fills",
    "GridSpec",
    "Result",
    "candle_path",
    "grid_levels",
    "load_candles",
    "run_backtest",
]
