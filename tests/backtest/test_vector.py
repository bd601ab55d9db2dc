"""Vectorized engine: hand-checked paths, the documented edge rules, and hypothesis vs the loop reference."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.backtest.reference import reference_backtest, spec
from tgtrader.backtest.candles import Candles
from tgtrader.backtest.vector import BacktestInputError, candle_path, grid_levels, run_backtest
from tgtrader.core.api import GridSpec

approx = lambda x: pytest.approx(x, rel=1e-9, abs=1e-9)  # noqa: E731


def triggers(grid: GridSpec) -> tuple[float | None, float | None]:
    """(stop-loss, take-profit) as the floats the backtest runs with."""
    sl, tp = grid.stop_loss, grid.take_profit
    return (None if sl is None else float(sl), None if tp is None else float(tp))


def make(rows: list[tuple[float, float, float, float]]) -> Candles:
    o, h, lo, c = zip(*rows)
    return Candles.from_arrays(o, h, lo, c)


def test_levels_exact_and_last_is_upper() -> None:
    a = grid_levels(10.0, 12.0, 2)
    assert a.tolist() == [10.0, 11.0, 12.0]
    g = grid_levels(1.0, 3.0, 7, "geometric")
    assert g[0] == 1.0 and g[-1] == 3.0
    assert np.allclose(g, 1.0 * 3.0 ** (np.arange(8) / 7))
    assert grid_levels(0.1, 0.7, 3)[-1] == 0.7  # no float drift at the top


def test_path_order() -> None:
    c = make([(5, 6, 4, 5.5), (5.5, 6, 4, 4.5)])
    assert candle_path(c).tolist() == [5, 4, 6, 5.5, 5.5, 6, 4, 4.5]


def test_hand_checked_two_waiting_intervals() -> None:
    # levels 10, 11, 12; P0 = 11.5 -> both intervals waiting (buys at 10 and 11); q = 100 / (10 + 11)
    c = make([(11.5, 11.6, 10.9, 11.0), (11.0, 12.2, 9.8, 12.1)])
    r = run_backtest(c, spec(10, 12, 2, 100), fee=0.001, fee_asset="quote")
    q = 100 / 21
    assert r.qty == approx(q) and r.holding_start == 0
    # candle 0: 11.5 -> 11.6 -> 10.9 (buy at 11) -> 11.0
    # candle 1: 11.0 -> 9.8 (buy at 10) -> 12.2 (sell at 11, then sell at 12) -> 12.1
    assert [(cd, s, lv, px) for cd, s, lv, px, _ in r.fills.records()] == [
        (0, "BUY", 1, 11.0), (1, "BUY", 0, 10.0), (1, "SELL", 1, 11.0), (1, "SELL", 2, 12.0)
    ]
    assert (r.buys, r.sells, r.round_trips) == (2, 2, 2)
    assert r.grid_profit == approx(q * 1 - 0.001 * q * 21 + q * 1 - 0.001 * q * 23)
    assert r.fees == approx(0.001 * q * (11 + 10 + 11 + 12))
    assert r.quote == approx(100 - q * 21 * 1.001 + q * 23 * 0.999)
    assert r.base == approx(0.0)
    assert r.final_equity == approx(100 + q * (23 * 0.999 - 21 * 1.001))
    # equity after candle 0: 100 - 11.011 q + 11.0 q; the peak is the investment
    assert r.equity[0] == approx(100 - 0.011 * q)
    assert r.max_drawdown_pct == approx(0.011 * q / 100 * 100)
    assert r.hold_return_pct == approx((12.1 / 11.5 - 1) * 100)


def test_hand_checked_holding_start_counter_fill_and_gap() -> None:
    # levels 100..130 step 10, P0 = 105: interval 0 waits (buy 100), intervals 1, 2 hold (sell 120, 130)
    # q = 310 / (100 + 2 * 105) = 1; start buy 2 at 105 paying 0.21 fee
    c = make([(105, 125, 99, 101), (131, 132, 131, 132)])
    r = run_backtest(c, spec(100, 130, 3, 310), fee=0.001, fee_asset="quote")
    assert r.qty == approx(1.0) and r.holding_start == 2
    # c0: 105 -> 125 (sell 120: no round trip) -> 99 (buy 110, buy 100: higher first) -> 101
    # join 101 -> 131 (sells 110, 120 are round trips; 130 was start base) -> 131 -> 132 -> 132
    assert [(cd, s, lv) for cd, s, lv, _, _ in r.fills.records()] == [
        (0, "SELL", 2), (0, "BUY", 1), (0, "BUY", 0), (1, "SELL", 1), (1, "SELL", 2), (1, "SELL", 3)
    ]
    assert r.round_trips == 2
    assert r.grid_profit == approx((10 - 0.001 * 210) + (10 - 0.001 * 230))
    quote_c0 = 310 - 210 * 1.001 + 120 * 0.999 - 110 * 1.001 - 100 * 1.001
    assert r.equity[0] == approx(quote_c0 + 3 * 101)
    assert r.quote == approx(quote_c0 + (110 + 120 + 130) * 0.999)
    assert r.final_equity == approx(r.quote) and r.base == approx(0.0)
    assert r.fees == approx(0.001 * (210 + 120 + 110 + 100 + 110 + 120 + 130))
    assert r.max_drawdown_pct == 0.0


def test_hand_checked_stop_loss_sells_all_at_the_path_price_beyond_the_trigger() -> None:
    """Issue 15: the path fell from 11.5 to 9.0 in one move; no market sells at the 9.5 trigger then."""
    c = make([(11.5, 11.5, 9.0, 9.2), (9.2, 12.5, 9.0, 12.4)])
    r = run_backtest(c, spec(10, 12, 2, 100, stop_loss=9.5), fee_asset="quote")
    q = 100 / 21
    assert [(cd, s, lv) for cd, s, lv, _, _ in r.fills.records()] == [(0, "BUY", 1), (0, "BUY", 0)]
    assert (r.stop, r.stop_candle, r.stop_price, r.stop_trigger) == ("stop_loss", 0, 9.0, 9.5)
    assert r.stop_qty == approx(2 * q)
    assert r.quote == approx(100 - 21 * q * 1.001 + 2 * q * 9.0 * 0.999)
    assert r.realized == approx(2 * q * 9.0 * 0.999 - 21 * q * 1.001)
    assert r.base == 0.0 and r.final_equity == approx(r.quote)
    assert r.equity.tolist() == [approx(r.quote), approx(r.quote)]


def test_stop_loss_slippage_sells_below_the_path_price() -> None:
    c = make([(11.5, 11.5, 9.0, 9.2)])
    r = run_backtest(c, spec(10, 12, 2, 100, stop_loss=9.5), fee_asset="quote", slippage_bps=50)
    assert r.stop_price == approx(9.0 * 0.995)
    assert r.quote == approx(100 - 21 * (100 / 21) * 1.001 + 2 * (100 / 21) * 9.0 * 0.995 * 0.999)
    with pytest.raises(BacktestInputError, match="slippage"):
        run_backtest(c, spec(10, 12, 2, 100, stop_loss=9.5), slippage_bps=-1)


def test_stop_at_a_level_fills_the_level_first() -> None:
    c = make([(11.5, 11.5, 9.0, 9.2)])
    r = run_backtest(c, spec(10, 12, 2, 100, stop_loss=10.0))
    assert [s for _, s, _, _, _ in r.fills.records()] == ["BUY", "BUY"]
    assert r.stop_qty == approx(2 * 100 / 21 * 0.999)  # a buy's fee came out of its base


def test_take_profit() -> None:
    # levels 10, 11, 12, P0 = 10.5: interval 1 holds (sell 12), interval 0 waits (buy 10)
    c = make([(10.5, 12.5, 10.4, 12.4), (12.4, 13, 12, 12.5)])
    r = run_backtest(c, spec(10, 12, 2, 100, take_profit=12.0), fee_asset="quote")
    q = 100 / (10 + 10.5)
    assert [(cd, s, lv) for cd, s, lv, _, _ in r.fills.records()] == [(0, "SELL", 2)]
    assert r.stop == "take_profit" and r.stop_qty == approx(0.0) and r.stop_price == 12.5
    assert r.quote == approx(100 - q * 10.5 * 1.001 + q * 12 * 0.999)


def test_hand_checked_commission_in_base_and_in_bnb() -> None:
    """Binance's default: a buy's fee is taken from the base it receives (not added to its cost), a sell's
    from the quote; in BNB both are paid outside the quote balance and valued in quote."""
    c = make([(11.5, 11.6, 10.9, 11.0), (11.0, 12.2, 9.8, 12.1)])
    q = 100 / 21
    base = run_backtest(c, spec(10, 12, 2, 100), fee=0.001)
    assert base.fee_asset == "base"
    got = q * 0.999
    assert base.fills.qty.tolist() == [approx(q), approx(q), approx(got), approx(got)]
    assert base.grid_profit == approx(got * 11 * 0.999 - q * 10 + got * 12 * 0.999 - q * 11)
    assert base.realized == approx(base.grid_profit)
    assert base.fees == approx(0.001 * q * (11 + 10) + 0.001 * got * (11 + 12))
    assert base.quote == approx(100 - q * 21 + got * 23 * 0.999) and base.base == approx(0.0)
    bnb = run_backtest(c, spec(10, 12, 2, 100), fee=0.001, fee_asset="bnb")
    quote = run_backtest(c, spec(10, 12, 2, 100), fee=0.001, fee_asset="quote")
    assert (bnb.grid_profit, bnb.fees, bnb.final_equity) == (approx(quote.grid_profit), approx(quote.fees),
                                                           approx(quote.final_equity))
    assert bnb.quote == approx(100 + q * 2) and bnb.bnb_fees == approx(bnb.fees)
    with pytest.raises(BacktestInputError, match="fee asset"):
        run_backtest(c, spec(10, 12, 2, 100), fee_asset="usdt")  # type: ignore[arg-type]


def test_base_fees_with_step_rounding_carry_the_dust_like_the_core() -> None:
    """With a step, an interval sells round_down(what it holds): the dust stays and its next buy is
    round_down(q - dust), as the core's grid does (checked against the core itself in test_engine_replay)."""
    from tgtrader.core.rules import SymbolRules

    rules = SymbolRules("XUSDT", "X", "USDT", tick_size=Decimal("0.1"), step_size=Decimal("0.01"))
    # levels 10, 11, 12; P0 11.5: both intervals wait; q = round_down(100 / 21) = 4.76
    c = make([(11.5, 11.6, 10.9, 11.0), (11.0, 12.2, 10.9, 12.1), (12.1, 12.1, 10.9, 11.0), (11.0, 12.2, 11.0, 12.1)])
    r = run_backtest(c, spec(10, 12, 2, 100), rules=rules, fee=0.001)
    # interval 1: buy 4.76 at 11 (gets 4.75524), sell 4.75 at 12 (dust 0.00524), buy 4.75, sell 4.75 (dust 0.0005)
    assert [(s, q) for _, s, _, _, q in r.fills.records()] == [
        ("BUY", 4.76), ("SELL", 4.75), ("BUY", 4.75), ("SELL", 4.75)]
    assert r.base == approx(4.76 * 0.999 - 4.75 + 4.75 * 0.999 - 4.75)


def test_rejects_bad_settings() -> None:
    c = make([(11.5, 11.6, 10.9, 11.0)])
    for grid, fee, words in [
        (spec(12, 10, 2, 100), 0.001, "must be positive and below upper"),
        (spec(10, 12, 1, 100), 0.001, "out of range 2..200"),
        (spec(10, 12, 201, 100), 0.001, "out of range 2..200"),
        (spec(10, 12, 2, 0), 0.001, "investment must be positive"),
        (spec(10, 12, 2, 100), 0.1, "fee must be a rate"),
        (spec(10, 12, 2, 100, stop_loss=11.6), 0.001, "below the start price"),
        (spec(10, 12, 2, 100, take_profit=11.0), 0.001, "above the start price"),
        (spec(10, 12, 2, 100, stop_loss=11.0, take_profit=10.5), 0.001, "must be below take-profit"),
    ]:
        with pytest.raises(BacktestInputError, match=words):
            run_backtest(c, grid, fee=fee)
    # the core's own spec, as the chat parses it: a stop that keeps the base is not what the backtest models
    keep_base = GridSpec("BTCUSDT", Decimal(10), Decimal(12), 2, Decimal(100), stop_loss=Decimal("9.5"))
    with pytest.raises(BacktestInputError, match="sell_on_stop"):
        run_backtest(c, keep_base)
    r = run_backtest(c, GridSpec("BTCUSDT", Decimal(10), Decimal(12), 2, Decimal(100)))
    assert r.levels.tolist() == [10.0, 11.0, 12.0] and r.to_dict()["lower"] == 10.0


def test_symbol_rules_round_levels_and_qty() -> None:
    from tgtrader.core.rules import SymbolRules

    rules = SymbolRules("XUSDT", "X", "USDT", tick_size=Decimal("0.1"), step_size=Decimal("0.01"))
    c = make([(11.55, 11.6, 10.9, 11.0)])
    r = run_backtest(c, spec(10.04, 12.0, 3, 100), rules=rules)
    assert r.levels.tolist() == [10.0, 10.7, 11.3, 12.0]
    assert r.qty == 3.12  # 100 / (10.0 + 10.7 + 11.3) = 3.125 -> down to the 0.01 step
    with pytest.raises(BacktestInputError, match="collapse"):
        run_backtest(c, spec(10.0, 10.2, 5, 100), rules=rules)


# ---------------------------------------------------------------- hypothesis vs the loop reference


@st.composite
def scenarios(draw: st.DrawFn) -> tuple:
    n_grids = draw(st.integers(2, 8))
    lower = draw(st.sampled_from([1.0, 10.0, 0.37, 100.0]))
    upper = lower * draw(st.sampled_from([1.5, 2.0, 3.0, 1.13]))
    spacing = draw(st.sampled_from(["arithmetic", "geometric"]))
    levels = grid_levels(lower, upper, n_grids, spacing)
    pool = st.one_of(
        st.sampled_from(levels.tolist()),
        st.floats(lower * 0.8, upper * 1.2, allow_nan=False, allow_infinity=False),
    )
    rows = []
    for _ in range(draw(st.integers(1, 25))):
        o, c, x, y = draw(pool), draw(pool), draw(pool), draw(pool)
        rows.append((o, max(o, c, x), min(o, c, y), c))
    p0 = rows[0][0]
    sl = draw(st.one_of(st.none(), st.sampled_from(levels.tolist()), st.floats(lower * 0.8, upper * 1.2)))
    tp = draw(st.one_of(st.none(), st.sampled_from(levels.tolist()), st.floats(lower * 0.8, upper * 1.2)))
    sl = sl if sl is not None and sl < p0 else None
    tp = tp if tp is not None and tp > p0 else None
    fee = draw(st.sampled_from([0.0, 0.001, 0.00075]))
    fee_asset = draw(st.sampled_from(["base", "quote", "bnb"]))
    slippage = draw(st.sampled_from([0.0, 25.0]))
    return spec(lower, upper, n_grids, 1000.0, spacing, sl, tp), fee, rows, fee_asset, slippage


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_vectorized_equals_reference(scenario: tuple) -> None:
    grid, fee, rows, fee_asset, slippage = scenario
    r = run_backtest(make(rows), grid, fee=fee, fee_asset=fee_asset, slippage_bps=slippage)
    ref = reference_backtest(rows, r.levels.tolist(), 1000.0, fee, *triggers(grid), fee_asset=fee_asset,
                             slippage_bps=slippage)
    got = [(cd, s, lv, px, q) for cd, s, lv, px, q in r.fills.records()]
    assert got == [(cd, s, lv, px, approx(q)) for cd, s, lv, px, q in ref.fills]
    assert (r.buys, r.sells, r.round_trips) == (ref.buys, ref.sells, ref.round_trips)
    assert (r.stop, r.stop_candle) == (ref.stop, ref.stop_candle)
    for name in ("quote", "base", "fees", "bnb_fees", "grid_profit", "realized", "final_equity",
                 "max_drawdown_pct"):
        assert getattr(r, name) == approx(getattr(ref, name)), name
    assert r.equity.tolist() == [approx(e) for e in ref.equity]


@pytest.mark.parametrize(
    "grid, fee",
    [
        (spec(19500, 22500, 20, 1000), 0.001),
        (spec(19000, 23000, 57, 1000, "geometric"), 0.00075),
        (spec(20000, 21000, 200, 5000, stop_loss=19600, take_profit=22000), 0.001),
        (spec(20100, 20700, 7, 1000, take_profit=20900), 0.001),
    ],
)
def test_real_sample_equals_reference(grid: GridSpec, fee: float) -> None:
    from tgtrader.backtest.candles import load_candles
    from tgtrader.backtest.command import SAMPLE

    c = load_candles(SAMPLE)
    for fee_asset in ("base", "quote", "bnb"):
        r = run_backtest(c, grid, fee=fee, fee_asset=fee_asset)  # type: ignore[arg-type]
        rows = list(zip(c.open.tolist(), c.high.tolist(), c.low.tolist(), c.close.tolist()))
        ref = reference_backtest(rows, r.levels.tolist(), float(grid.investment), fee, *triggers(grid),
                                 fee_asset=fee_asset)
        assert r.fills.records() == [(cd, s, lv, px, approx(q)) for cd, s, lv, px, q in ref.fills]
        assert (r.buys, r.sells, r.round_trips, r.stop, r.stop_candle) == (
            ref.buys, ref.sells, ref.round_trips, ref.stop, ref.stop_candle
        )
        for name in ("quote", "base", "fees", "grid_profit", "realized", "final_equity", "max_drawdown_pct"):
            assert getattr(r, name) == approx(getattr(ref, name)), (fee_asset, name)


def test_symbol_rules_match_reference_on_real_sample() -> None:
    from tgtrader.backtest.candles import load_candles
    from tgtrader.backtest.command import SAMPLE
    from tgtrader.core.rules import SymbolRules

    rules = SymbolRules("BTCUSDT", "BTC", "USDT", tick_size=Decimal("10"), step_size=Decimal("0.0001"))
    c = load_candles(SAMPLE)
    r = run_backtest(c, spec(19500.5, 22499.5, 33, 1000), rules=rules, fee_asset="quote")
    assert all(lv % 10 == 0 for lv in r.levels) and r.qty == float(Decimal(repr(r.qty)).quantize(Decimal("0.0001")))
    rows = list(zip(c.open.tolist(), c.high.tolist(), c.low.tolist(), c.close.tolist()))
    ref = reference_backtest(rows, r.levels.tolist(), 1000, 0.001, qty=r.qty)
    assert r.fills.records() == ref.fills
    assert r.final_equity == approx(ref.final_equity)
