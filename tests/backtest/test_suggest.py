"""Suggestions: ranges around the price, counts with a clearly positive profit per grid, ranked by
return / drawdown, and each suggestion's numbers equal to the reference backtest's."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tgtrader.backtest.candles import Candles, load_candles
from tgtrader.backtest.suggest import DD_FLOOR_PCT, MIN_NET_PCT, profit_per_grid_pct, suggest
from tgtrader.backtest.vector import BacktestInputError, run_backtest
from tgtrader.core.grid.plan import GridConfig, compute_levels, profit_pct
from tgtrader.exchange.binance.rules import rules_from_exchange_info

DATA = Path(__file__).resolve().parents[2] / "tgtrader" / "data"
SAMPLE = DATA / "BTCUSDT_1m_2023-03-10_12.csv.gz"


@pytest.fixture(scope="module")
def candles() -> Candles:
    return load_candles(SAMPLE)


@pytest.fixture(scope="module")
def rules():  # type: ignore[no-untyped-def]
    return rules_from_exchange_info(json.loads((DATA / "exchange_info.json").read_text()))["BTCUSDT"]


@pytest.mark.parametrize("fee_asset", ["base", "quote"])
def test_suggestions_are_backed_by_the_reference_backtest(candles: Candles, rules, fee_asset: str) -> None:  # type: ignore[no-untyped-def]
    s = suggest(candles, "BTCUSDT", Decimal(1000), fee=0.001, fee_asset=fee_asset, rules=rules)  # type: ignore[arg-type]
    price = float(candles.close[-1])
    assert s.tried > 50 and 1 <= len(s.items) <= 3
    assert len({(i.spec.lower, i.spec.upper) for i in s.items}) == len(s.items)  # one per range
    for item in s.items:
        spec = item.spec
        assert spec.lower < Decimal(repr(price)) < spec.upper
        assert rules.round_price(spec.lower) == spec.lower and rules.round_price(spec.upper) == spec.upper
        ref = run_backtest(candles, spec, rules, fee=0.001, fee_asset=fee_asset)  # type: ignore[arg-type]
        assert item.round_trips == ref.round_trips
        assert item.grid_profit == pytest.approx(ref.grid_profit)
        assert item.total_pnl == pytest.approx(ref.final_equity - 1000)
        assert item.max_drawdown_pct == pytest.approx(ref.max_drawdown_pct)
        assert item.score == pytest.approx(ref.return_pct / max(ref.max_drawdown_pct, DD_FLOOR_PCT))
        assert 0 <= item.time_in_range_pct <= 100
        # the live preview's own per-grid profit (rounded levels) is clearly positive too
        levels = compute_levels(GridConfig("BTCUSDT", spec.lower, spec.upper, spec.grids, spec.investment,
                                           spec.spacing), rules)
        worst = min(profit_pct(a, b, Decimal("0.001")) for a, b in zip(levels, levels[1:]))
        assert worst >= Decimal(str(MIN_NET_PCT)) * Decimal("0.9")
    scores = [i.score for i in s.items]
    assert scores[0] >= max(scores) - 1e-6


def test_fees_too_high_for_any_grid_mean_no_suggestion(candles: Candles) -> None:
    s = suggest(candles, "BTCUSDT", Decimal(1000), fee=0.09)
    assert s.items == () and s.tried == 0


def test_profit_per_grid_matches_the_core(candles: Candles) -> None:
    lo, hi = profit_per_grid_pct(20000.0, 22000.0, 10, "arithmetic", 0.001)
    levels = compute_levels(GridConfig("BTCUSDT", Decimal(20000), Decimal(22000), 10, Decimal(1000)))
    core = [float(profit_pct(a, b, Decimal("0.001"))) for a, b in zip(levels, levels[1:])]
    assert lo == pytest.approx(min(core)) and hi == pytest.approx(max(core))


def test_too_few_candles_is_a_clear_refusal(candles: Candles) -> None:
    few = Candles(candles.open_time[:30], candles.open[:30], candles.high[:30], candles.low[:30],
                  candles.close[:30], candles.volume[:30])
    with pytest.raises(BacktestInputError, match="need at least an hour"):
        suggest(few, "BTCUSDT", Decimal(1000))
