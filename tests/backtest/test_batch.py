"""The batched sweep equals the per-setting reference backtest (vector.run_backtest), setting by setting."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import shared_data
from tgtrader.backtest.batch import run_batch
from tgtrader.backtest.candles import Candles, load_candles
from tgtrader.backtest.vector import BacktestInputError, candle_path, run_backtest
from tgtrader.core.api import GridSpec

SAMPLE = Path(__file__).resolve().parents[2] / "tgtrader" / "data" / "BTCUSDT_1m_2023-03-10_12.csv.gz"
FIL = shared_data("klines/binance_usdm_FILUSDT_1m_2023-08_2023-11.csv")
COMPARED = ("buys", "sells", "round_trips", "grid_profit", "realized", "fees", "final_equity", "max_drawdown_pct")


def _d(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def random_specs(c: Candles, count: int, seed: int) -> tuple[list[GridSpec], np.ndarray]:
    """Ranges inside, across and beyond the candles' prices; both spacings; varied grids, investments, fees."""
    rng = np.random.default_rng(seed)
    lo, hi = float(c.low.min()), float(c.high.max())
    span = hi - lo
    specs, fees = [], []
    for _ in range(count):
        a = lo + span * rng.uniform(-0.3, 0.9)
        b = a + span * rng.uniform(0.05, 1.2)
        specs.append(GridSpec("X", _d(round(max(a, lo * 0.5), 4)), _d(round(b, 4)), int(rng.integers(2, 80)),
                              _d(round(rng.uniform(100, 5000), 2)),
                              spacing="geometric" if rng.random() < 0.4 else "arithmetic"))
        fees.append(float(rng.choice([0.0, 0.00075, 0.001, 0.002])))
    return specs, np.array(fees)


def assert_same(c: Candles, specs: list[GridSpec], fees: np.ndarray, fee_asset: str, **kw: int) -> None:
    batch = run_batch(c, specs, fees, fee_asset=fee_asset, **kw)  # type: ignore[arg-type]
    path = candle_path(c)
    for i, spec in enumerate(specs):
        ref = run_backtest(c, spec, fee=float(fees[i]), fee_asset=fee_asset, path=path)  # type: ignore[arg-type]
        for key in COMPARED:
            assert getattr(batch, key)[i] == pytest.approx(getattr(ref, key), rel=1e-9, abs=1e-9), (i, key, spec)
        assert batch.total_pnl[i] == pytest.approx(ref.final_equity - float(spec.investment), rel=1e-9, abs=1e-7)
        inside = (c.close >= float(spec.lower)) & (c.close <= float(spec.upper))
        assert batch.time_in_range_pct[i] == pytest.approx(inside.mean() * 100.0)


@pytest.mark.parametrize("fee_asset", ["base", "quote", "bnb"])
def test_equals_reference_on_the_shipped_sample(fee_asset: str) -> None:
    c = load_candles(SAMPLE)
    specs, fees = random_specs(c, 60, seed=17)
    assert_same(c, specs, fees, fee_asset, chunk=16)


@pytest.mark.skipif(not FIL.exists(), reason="shared data not present")
@pytest.mark.parametrize("fee_asset", ["base", "quote", "bnb"])
def test_equals_reference_on_30_days_of_real_candles(fee_asset: str) -> None:
    full = load_candles(FIL)
    n = 43_200
    c = Candles(full.open_time[:n], full.open[:n], full.high[:n], full.low[:n], full.close[:n], full.volume[:n])
    specs, fees = random_specs(c, 40, seed=1717)
    assert_same(c, specs, fees, fee_asset)


def test_two_workers_give_the_same_numbers() -> None:
    c = load_candles(SAMPLE)
    specs, fees = random_specs(c, 30, seed=5)
    one = run_batch(c, specs, fees, chunk=8)
    two = run_batch(c, specs, fees, chunk=8, workers=2)
    for key in COMPARED:
        assert np.allclose(getattr(one, key), getattr(two, key), rtol=1e-12)


def test_refuses_what_it_does_not_model() -> None:
    c = load_candles(SAMPLE)
    with pytest.raises(BacktestInputError, match="stop-loss"):
        run_batch(c, [GridSpec("X", Decimal(19000), Decimal(23000), 10, Decimal(1000), stop_loss=Decimal(18000),
                                sell_on_stop=True)])
    with pytest.raises(BacktestInputError):
        run_batch(c, [GridSpec("X", Decimal(23000), Decimal(19000), 10, Decimal(1000))])
