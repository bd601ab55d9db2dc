"""Replay parity: TradingCore + PaperExchange driven along the candle path give the same fills, round trips,
grid profit, realized profit, fees and final balances as the vectorized backtest (tgtrader.backtest.vector)
with the same grid, rules and fee — under each commission mode (issue 15: a buy's fee in base as Binance by
default, in quote, in BNB), and with a stop-loss exit sold at the path price beyond the trigger."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from tgtrader.backtest.candles import Candles, load_candles
from tgtrader.backtest.vector import Result, candle_path, prepare, run_backtest
from tgtrader.core.api import GridSpec, GridSummary
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import EventBus, OrderFilled
from tgtrader.core.service import TradingCore
from tgtrader.exchange.matching.fees import BNB_QUANTUM
from tgtrader.exchange.paper import PaperExchange
from tgtrader.fees import FEE_ASSETS, FeeAsset
from tgtrader.store import Database
from tgtrader.store.core_store import CoreStore

from .conftest import REAL_RULES

SAMPLE = Path(__file__).resolve().parents[2] / "tgtrader" / "data" / "BTCUSDT_1m_2023-03-10_12.csv.gz"


BNB_PRICE = D("300")
START = {"USDT": D("20000"), "BNB": D("10")}


@pytest.mark.skipif(not SAMPLE.exists(), reason="shipped candle sample missing")
@pytest.mark.parametrize("fee_asset", FEE_ASSETS)
@pytest.mark.parametrize("n_candles,lower,upper,grids,spacing,stop_loss", [
    (600, "19600", "20600", 8, "arithmetic", None),
    (900, "19500", "20800", 12, "geometric", None),
    (3000, "19600", "21000", 12, "arithmetic", "19700"),  # the price jumps past 19700: sold below it
])
async def test_core_replay_matches_vector_backtest(n_candles: int, lower: str, upper: str, grids: int,
                                                   spacing: str, stop_loss: str | None, fee_asset: FeeAsset) -> None:
    candles = load_candles(SAMPLE).slice(0, n_candles)
    spec = GridSpec("BTCUSDT", D(lower), D(upper), grids, D("5000"), spacing,  # one spec for both
                    stop_loss=D(stop_loss) if stop_loss else None, sell_on_stop=stop_loss is not None)
    await _replay_parity(candles, spec, fee_asset)


@pytest.mark.skipif(not SAMPLE.exists(), reason="shipped candle sample missing")
@pytest.mark.parametrize("fee_asset", FEE_ASSETS)
@pytest.mark.parametrize("first,last,lower,upper,grids,spacing,trail_up,trail_down,take_profit", [
    # 2023-03-12 evening: BTC climbs from 20,450 to 22,080, the grid trails up 27 rungs to its limit's reach
    (3600, 4320, "20300", "20700", 8, "arithmetic", "22200", None, None),
    # the same climb with both directions, geometric: a few moves down first, then up (and a take-profit above)
    (3600, 4320, "20300", "20700", 8, "geometric", "22200", "20000", "23000"),
    # 2023-03-10: BTC falls from 20,370 to 19,570, the grid trails down 3 rungs to its limit
    (0, 700, "19900", "20500", 6, "arithmetic", None, "19500", None),
])
async def test_trailing_core_replay_matches_backtest(first: int, last: int, lower: str, upper: str, grids: int,
                                                     spacing: str, trail_up: str | None, trail_down: str | None,
                                                     take_profit: str | None, fee_asset: FeeAsset) -> None:
    """Issue 17's "trailing parity holds on real candles": the core's trailing grid on the paper exchange makes the
    backtest's fills (rung by rung, past the original range), moves and money (backtest/trailing.py)."""
    candles = load_candles(SAMPLE).slice(first, last)
    spec = GridSpec("BTCUSDT", D(lower), D(upper), grids, D("5000"), spacing,
                    take_profit=D(take_profit) if take_profit else None, sell_on_stop=take_profit is not None,
                    trail_up=D(trail_up) if trail_up else None, trail_down=D(trail_down) if trail_down else None)
    vec, g = await _replay_parity(candles, spec, fee_asset)
    ups = sum(1 for m in vec.trail_moves if m.direction == "up")
    assert (g.moves_up, g.moves_down) == (ups, len(vec.trail_moves) - ups) and len(vec.trail_moves) >= 3
    assert [float(g.range_lower or 0), float(g.range_upper or 0)] == [vec.levels[0], vec.levels[-1]]
    assert vec.fills.level.max() > grids or vec.fills.level.min() < 0  # it traded beyond its first range


async def _replay_parity(candles: Candles, spec: GridSpec, fee_asset: FeeAsset) -> tuple[Result, GridSummary]:
    """Drive the core on the paper exchange along the candle path; assert it booked what the backtest did."""
    rules = REAL_RULES["BTCUSDT"]
    stop_loss = spec.stop_loss
    vec = run_backtest(candles, spec, rules, fee=0.001, fee_asset=fee_asset)

    db = await Database.open(":memory:")
    paper = PaperExchange(db, rules=REAL_RULES, initial_balances=START, fee_asset=fee_asset,
                          bnb_prices={"USDT": BNB_PRICE})
    now = [int(candles.open_time[0])]
    bus = EventBus()
    fills: list[OrderFilled] = []
    bus.subscribe(lambda e: fills.append(e) if isinstance(e, OrderFilled) else None)
    core = TradingCore(paper, CoreStore(db), bus, CoreConfig(timer_interval_s=0), clock_ms=lambda: now[0])
    await core.start()
    await paper.subscribe({"BTCUSDT"})
    path = candle_path(candles)
    p0 = D(repr(float(path[0])))
    paper.feed_trade("BTCUSDT", p0, now[0])
    await core.idle()
    pv = await core.preview_grid(spec)
    assert pv.ok, pv.problems
    start_levels = prepare(candles, spec, rules, 0.001, fee_asset, 0.0).levels  # a trailing grid's vec.levels moved
    assert [float(x) for x in pv.levels] == pytest.approx(start_levels.tolist())
    assert float(pv.qty_per_order) == pytest.approx(vec.qty)
    gid = (await core.start_grid(pv.token)).id
    await core.idle()
    for k, price in enumerate(path[1:], start=1):
        now[0] = int(candles.open_time[k // 4]) + (k % 4) * 15_000
        paper.feed_trade("BTCUSDT", D(repr(float(price))), now[0])
        await core.idle()

    grid_fills = [f for f in fills if f.client_order_id.startswith(f"tg-g{gid}-")
                  and not f.client_order_id.startswith((f"tg-g{gid}-x", f"tg-g{gid}-z"))]
    core_records = [(f.side.value, float(f.price)) for f in grid_fills]
    vec_records = [(side, price) for _, side, _, price, _ in vec.fills.records()]
    assert core_records == [(s, pytest.approx(p)) for s, p in vec_records]
    g = await core.grid(gid)
    assert g.round_trips == vec.round_trips
    bal = await paper.balances()
    base = bal["BTC"].total if "BTC" in bal else D(0)
    quote_change = bal["USDT"].total - START["USDT"]
    assert float(base) == pytest.approx(vec.base, rel=1e-9, abs=1e-9)
    # vector quote starts at the investment; the paper account had 20000
    assert float(quote_change) == pytest.approx(vec.quote - float(spec.investment), rel=1e-9, abs=1e-6)
    # with BNB fees the paper engine rounds each fee to 1e-8 BNB, while the backtest and the core (fed no BNBUSDT
    # price) value it at rate x notional: up to half a quantum x the BNB price apart per fill
    per_fill = BNB_QUANTUM / 2 * BNB_PRICE if fee_asset == "bnb" else D(0)
    bnb_spent = (START["BNB"] - bal["BNB"].total) * BNB_PRICE
    assert float(bnb_spent) == pytest.approx(vec.bnb_fees, abs=1e-6 + float(per_fill) * (len(grid_fills) + 1))
    assert float(g.fees) == pytest.approx(vec.fees, rel=1e-9)
    assert float(g.grid_profit) == pytest.approx(vec.grid_profit, rel=1e-9, abs=1e-9)
    assert float(g.realized_profit) == pytest.approx(vec.realized, rel=1e-9, abs=1e-9)
    assert len(grid_fills) == vec.buys + vec.sells and len(grid_fills) > 10
    # wallet parity (issue 15): what the grid reports gained is what the wallet gained, at the last price
    # (a grid stopped with dust below the step marks that dust at its stop-time price, not the market's last:
    # 2.3e-7 BTC x 727 = 0.00017 USDT in the stop case; reported to the lead, issue 15)
    mark = g.last_price if g.state == "stopped" and g.last_price is not None else D(repr(float(path[-1])))
    wallet_gain = quote_change + base * mark - (START["BNB"] - bal["BNB"].total) * BNB_PRICE
    assert g.base_held == base
    tolerance = D("0.00001") + per_fill * len(grid_fills)
    assert g.realized_profit + g.unrealized_pnl == pytest.approx(wallet_gain, abs=tolerance)
    if vec.stop is not None:
        exit_fills = [f for f in fills if f.client_order_id.startswith(f"tg-g{gid}-z")]  # the exit's market sell
        assert vec.stop_price is not None
        assert vec.stop != "stop_loss" or stop_loss is not None and vec.stop_price < float(stop_loss)
        assert [float(f.price) for f in exit_fills] == [pytest.approx(vec.stop_price)]
        assert float(exit_fills[0].qty) == pytest.approx(vec.stop_qty)
    await core.stop()
    await db.close()
    return vec, g
