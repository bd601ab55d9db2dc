"""The benchmark's backtrader grid is the same strategy: on real candles it reconciles with the vectorized run.

backtrader is a bench-only dependency; CI (dev extras only) skips this test.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("backtrader")

from tests.backtest.reference import spec  # noqa: E402
from tgtrader.backtest.candles import load_candles  # noqa: E402
from tgtrader.backtest.command import SAMPLE  # noqa: E402
from tgtrader.backtest.vector import run_backtest  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_backtest.py"


def test_backtrader_grid_reconciles_with_vectorized() -> None:
    spec_ = importlib.util.spec_from_file_location("bench_backtest", BENCH)
    assert spec_ and spec_.loader
    bench = importlib.util.module_from_spec(spec_)
    sys.modules["bench_backtest"] = bench
    spec_.loader.exec_module(bench)
    c = load_candles(SAMPLE).slice(0, 1500)
    r = run_backtest(c, spec(19500, 20500, 20, 1000), fee_asset="quote")  # backtrader charges in cash
    bt = bench.run_backtrader(c, r.levels, r.qty, 0.001, 1000.0)
    rec = bench.reconcile(r, bt.pop("fills"), 0.001)
    # the models differ only in same-candle counter fills and fills at a gapped open: most fills are identical
    assert r.buys > 50 and abs(bt["buys"] - r.buys) <= 3 and abs(bt["sells"] - r.sells) <= 3
    assert rec["identical"]["fills"] >= 0.8 * len(r.fills)
    # and every quote unit of difference is attributed to a fill
    explained = sum(v["quote_diff"] for v in rec.values())
    assert bt["quote"] - r.quote == pytest.approx(explained, abs=1e-6)
    assert bt["base"] - r.base == pytest.approx(r.qty * ((bt["buys"] - r.buys) - (bt["sells"] - r.sells)), abs=1e-9)


def test_backtrader_grid_equals_vectorized_without_gaps_or_same_candle_counters() -> None:
    """Where the two fill models agree (no gapped opens, grid wide enough for one fill per interval per candle)."""
    import numpy as np

    bench = sys.modules.get("bench_backtest")
    if bench is None:
        spec_ = importlib.util.spec_from_file_location("bench_backtest", BENCH)
        assert spec_ and spec_.loader
        bench = importlib.util.module_from_spec(spec_)
        spec_.loader.exec_module(bench)
    c = load_candles(SAMPLE)
    o = np.concatenate(([c.open[0]], c.close[:-1]))  # each candle opens at the previous close
    h, lo = np.maximum(c.high, o), np.minimum(c.low, o)
    from tgtrader.backtest.candles import Candles

    g = Candles.from_arrays(o, h, lo, c.close, c.open_time)
    r = run_backtest(g, spec(19500, 22500, 20, 1000), fee_asset="quote")
    assert bench.same_candle_counter_fills(r) == 0
    bt = bench.run_backtrader(g, r.levels, r.qty, 0.001, 1000.0)
    rec = bench.reconcile(r, bt.pop("fills"), 0.001)
    assert rec["identical"]["fills"] == len(r.fills) == r.buys + r.sells
    assert (bt["buys"], bt["sells"]) == (r.buys, r.sells)
    assert bt["final_equity"] == pytest.approx(r.final_equity, rel=1e-12)
