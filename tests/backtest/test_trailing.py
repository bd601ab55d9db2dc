"""Trailing grids in the backtest (issue 17, backtest/trailing.py): hand-checked paths for the one rule, and the
walk's own parity with vector.py for grids that never trail (real candles, each fee mode, with and without rules).

The small grids: levels 10, 11, 12 (2 intervals, step 1); P0 = 10.5 makes interval 0 wait (buy at 10) and
interval 1 hold (start base, sells at 12); 20.5 quote invested gives q = 20.5 / (10 + 10.5) = 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from tgtrader.backtest.batch import run_batch
from tgtrader.backtest.candles import Candles, load_candles
from tgtrader.backtest.command import load_rules
from tgtrader.backtest.trailing import run_trailing
from tgtrader.backtest.vector import BacktestInputError, Result, TrailMove, run_backtest
from tgtrader.core.api import GridSpec
from tgtrader.core.rules import SymbolRules
from tgtrader.fees import FEE_ASSETS, FeeAsset

SAMPLE = Path(__file__).resolve().parents[2] / "tgtrader" / "data" / "BTCUSDT_1m_2023-03-10_12.csv.gz"
approx = lambda x: pytest.approx(x, rel=1e-9, abs=1e-9)  # noqa: E731


def make(rows: list[tuple[float, float, float, float]]) -> Candles:
    o, h, lo, c = zip(*rows)
    return Candles.from_arrays(o, h, lo, c)


def grid(lower: str = "10", upper: str = "12", n: int = 2, investment: str = "20.5", spacing: str = "arithmetic",
         up: str | None = None, down: str | None = None, tp: str | None = None) -> GridSpec:
    return GridSpec("", D(lower), D(upper), n, D(investment), spacing, take_profit=D(tp) if tp else None,
                    sell_on_stop=tp is not None, trail_up=D(up) if up else None, trail_down=D(down) if down else None)


def fills(r: Result) -> list[tuple[int, str, int, float, float]]:
    return [(c, s, lv, px, pytest.approx(q, rel=1e-12)) for c, s, lv, px, q in r.fills.records()]


def test_up_three_rungs_in_one_jump_and_the_same_quote_value() -> None:
    # candle 0 jumps 10.5 -> 15 in one segment: interval 1 sells its start base at 12, then at 15 the grid moves
    # while the price is a step over its top: 13, 14, 15 (the limit); candle 1 falls to 12.5 and fills the new top
    # intervals' buys, each holding the quote value of the buy it replaced (10 x 1 at 14, 11 x 1 at 13)
    c = make([(10.5, 15.0, 10.5, 15.0), (15.0, 15.0, 12.5, 12.5)])
    r = run_backtest(c, grid(up="15"), fee=0.0, fee_asset="quote")
    assert r.trail_moves == (TrailMove(0, "up", 11.0, 13.0), TrailMove(0, "up", 12.0, 14.0),
                             TrailMove(0, "up", 13.0, 15.0))
    assert fills(r) == [(0, "SELL", 2, 12.0, 1.0), (1, "BUY", 4, 14.0, 10 / 14), (1, "BUY", 3, 13.0, 11 / 13)]
    assert r.fills.interval.tolist() == [1, 4, 3]
    assert r.levels.tolist() == [13.0, 14.0, 15.0]
    assert r.round_trips == 0 and r.realized == approx(12 - 10.5)  # the start base's sale: position profit
    assert r.quote == approx(20.5 - 10.5 + 12 - 10 - 11) and r.base == approx(10 / 14 + 11 / 13)


def test_the_limit_stops_it() -> None:
    c = make([(10.5, 15.0, 10.5, 15.0), (15.0, 15.0, 12.5, 12.5), (12.5, 30.0, 12.5, 30.0)])
    r = run_backtest(c, grid(up="14.5"), fee=0.0, fee_asset="quote")
    assert [m.direction for m in r.trail_moves] == ["up", "up"]  # rung 5 = 15 is past 14.5: no third move
    assert r.levels.tolist() == [12.0, 13.0, 14.0]
    # above it the grid just sells out and waits: candle 2's climb to 30 moves nothing
    assert r.fills.records()[-1][:4] == (2, "SELL", 4, 14.0)


def test_down_moves_the_base_and_its_sale_is_not_a_round_trip() -> None:
    # P0 = 11.5: both intervals wait (q = 21 / (10 + 11) = 1). Candle 0 falls to 9: buys at 11 and 10, then at 9
    # the top interval (bought at 11) moves down: its base sells at 10 now, rung -1 = 9 buys next. Candle 1 rises
    # to 11.2: that base sells at 10 (a loss, position profit, not a round trip), interval 0's at 11 (a round trip)
    c = make([(11.5, 11.5, 9.0, 9.0), (9.0, 11.2, 9.0, 11.2)])
    r = run_backtest(c, grid(investment="21", down="9"), fee=0.0, fee_asset="quote")
    assert r.trail_moves == (TrailMove(0, "down", 9.0, 11.0),)
    assert fills(r) == [(0, "BUY", 1, 11.0, 1.0), (0, "BUY", 0, 10.0, 1.0), (1, "SELL", 0, 10.0, 1.0),
                        (1, "SELL", 1, 11.0, 1.0)]
    assert r.fills.interval.tolist() == [1, 0, -1, 0]
    assert r.round_trips == 1 and r.grid_profit == approx(1.0)
    assert r.realized == approx(1.0 - 1.0)  # the moved base sold 1 below its cost
    assert r.levels.tolist() == [9.0, 10.0, 11.0]


def test_down_jump_over_several_rungs_with_fees_in_base() -> None:
    # one falling segment 11.5 -> 7: both buys fill, then the grid moves down while the top interval holds and the
    # next bottom rung is within the limit 7: three moves (rung -4 = 6 is past it)
    c = make([(11.5, 11.5, 7.0, 7.0), (7.0, 10.5, 7.0, 10.5)])
    r = run_backtest(c, grid(investment="21", down="7"), fee=0.001, fee_asset="base")
    assert [(m.direction, m.lower, m.upper) for m in r.trail_moves] == [("down", 9.0, 11.0), ("down", 8.0, 10.0),
                                                                      ("down", 7.0, 9.0)]
    got = 1 - 0.001  # what each buy received after its fee in base; the moved intervals sell all of it
    assert fills(r) == [(0, "BUY", 1, 11.0, 1.0), (0, "BUY", 0, 10.0, 1.0), (1, "SELL", -2, 8.0, got),
                        (1, "SELL", -1, 9.0, got)]
    assert r.round_trips == 0 and r.grid_profit == 0.0
    assert r.realized == approx(got * 8 * 0.999 - 11 + got * 9 * 0.999 - 10)


def test_no_move_when_the_new_quantity_fails_the_filters() -> None:
    # q = 1 (step 0.001): moving up would buy round_down(1 x 10 / 12) = 0.833 at 12, worth 9.996 < minNotional 10
    rules = SymbolRules("XUSDT", "X", "USDT", tick_size=D("0.01"), step_size=D("0.001"), min_qty=D("0.001"),
                        min_notional=D("10"))
    c = make([(10.5, 15.0, 10.5, 15.0), (15.0, 15.0, 12.5, 12.5)])
    r = run_backtest(c, grid(up="15"), rules, fee=0.0, fee_asset="quote")
    assert r.trail_moves == () and r.levels.tolist() == [10.0, 11.0, 12.0]
    assert fills(r) == [(0, "SELL", 2, 12.0, 1.0)]
    # a little more capital and the same path moves (round_down(1.1 x 10 / 12) = 0.916, worth 10.992)
    r = run_backtest(c, grid(investment="22.55", up="15"), rules, fee=0.0, fee_asset="quote")
    assert len(r.trail_moves) == 3 and r.fills.records()[1][4] == pytest.approx(0.785)  # round_down(1.1 x 10/14)


def test_geometric_ladder_goes_on_with_the_same_ratio() -> None:
    # levels 10, 20, 40 (ratio 2); P0 = 15: q = 25 / (10 + 15) = 1. At 90 the grid moves to 20, 40, 80 (rung 3 =
    # 80 <= 100, rung 4 = 160 is not); the new top interval buys 10 quote's worth at 40
    c = make([(15.0, 90.0, 15.0, 90.0), (90.0, 90.0, 30.0, 30.0)])
    r = run_backtest(c, grid("10", "40", 2, "25", "geometric", up="100"), fee=0.0, fee_asset="quote")
    assert r.trail_moves == (TrailMove(0, "up", pytest.approx(20.0), 80.0),)  # geomspace's 20.000000000000004
    assert fills(r) == [(0, "SELL", 2, 40.0, 1.0), (1, "BUY", 2, 40.0, 0.25)]
    assert r.levels.tolist() == [pytest.approx(20.0), 40.0, 80.0]


def test_a_take_profit_after_moves_sells_everything() -> None:
    c = make([(10.5, 15.0, 10.5, 15.0), (15.0, 15.0, 12.5, 12.5), (12.5, 17.0, 12.5, 17.0)])
    r = run_backtest(c, grid(up="15", tp="16.5"), fee=0.0, fee_asset="quote")
    assert len(r.trail_moves) == 3 and r.stop == "take_profit" and r.stop_candle == 2
    # candle 2's rise sells the two new intervals at 14 and 15 first, then the exit sells nothing more
    assert fills(r)[-2:] == [(2, "SELL", 4, 14.0, 11 / 13), (2, "SELL", 5, 15.0, 10 / 14)]
    assert r.stop_qty == 0.0 and r.base == approx(0.0) and r.round_trips == 2


def test_json_cli_and_batch() -> None:
    proc = subprocess.run([sys.executable, "-m", "tgtrader", "backtest", "--data", "sample", "--lower", "20300",
                           "--upper", "20700", "--grids", "8", "--investment", "5000", "--trail-up", "22200",
                           "--symbol", "BTCUSDT", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["trail_up"] == 22200.0 and data["trail_down"] is None and len(data["trail_moves"]) > 10
    proc = subprocess.run([sys.executable, "-m", "tgtrader", "backtest", "--data", "sample", "--lower", "20300",
                           "--upper", "20700", "--grids", "8", "--investment", "5000", "--trail-down", "20500"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "trailing-down limit 20500 must be positive and below lower" in proc.stderr
    with pytest.raises(BacktestInputError, match="does not trail"):
        run_batch(make([(10.5, 11.0, 10.0, 10.8)]), [grid(up="15")])


@pytest.mark.skipif(not SAMPLE.exists(), reason="shipped candle sample missing")
@pytest.mark.parametrize("fee_asset", FEE_ASSETS)
@pytest.mark.parametrize("with_rules", [False, True])
@pytest.mark.parametrize("lower,upper,grids,spacing,stop_loss", [
    ("19600", "20600", 8, "arithmetic", None),
    ("19500", "22100", 40, "geometric", None),
    ("19600", "21000", 12, "arithmetic", "19700"),
])
def test_without_trailing_the_walk_is_vector(lower: str, upper: str, grids: int, spacing: str,
                                             stop_loss: str | None, with_rules: bool, fee_asset: FeeAsset) -> None:
    """The walk's own parity proof: a grid that never trails gives vector.py's fills, round trips, money and
    equity curve on real candles (money in Decimal there, closed-form floats here: equal to 1e-9)."""
    candles = load_candles(SAMPLE)
    rules = load_rules("BTCUSDT") if with_rules else None
    spec = GridSpec("BTCUSDT", D(lower), D(upper), grids, D("5000"), spacing,
                    stop_loss=D(stop_loss) if stop_loss else None, sell_on_stop=stop_loss is not None)
    vec = run_backtest(candles, spec, rules, fee=0.001, fee_asset=fee_asset)
    walk = run_trailing(candles, spec, rules, fee=0.001, fee_asset=fee_asset)
    assert len(vec.fills) > 10
    assert [r[:4] for r in walk.fills.records()] == [r[:4] for r in vec.fills.records()]
    assert walk.fills.qty == pytest.approx(vec.fills.qty, rel=1e-12)
    assert walk.fills.interval.tolist() == vec.fills.interval.tolist()
    assert (walk.buys, walk.sells, walk.round_trips) == (vec.buys, vec.sells, vec.round_trips)
    for key in ("grid_profit", "realized", "fees", "quote", "base", "final_equity", "bnb_fees", "max_drawdown_pct",
                "stop_qty"):
        assert getattr(walk, key) == approx(getattr(vec, key)), key
    assert (walk.stop, walk.stop_candle, walk.stop_price) == (vec.stop, vec.stop_candle, vec.stop_price)
    assert np.allclose(walk.equity, vec.equity, rtol=1e-12)
    assert walk.levels.tolist() == vec.levels.tolist() and walk.trail_moves == ()
