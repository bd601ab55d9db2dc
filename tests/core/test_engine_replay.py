"""Replay parity: TradingCore + PaperExchange driven along the candle path give the same fills, round trips
and final balances as the vectorized backtest (tgtrader.backtest.vector) with the same grid, rules and fee."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from tgtrader.backtest.candles import load_candles
from tgtrader.backtest.vector import candle_path, run_backtest
from tgtrader.core.api import GridSpec
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import EventBus, OrderFilled
from tgtrader.core.service import TradingCore
from tgtrader.exchange.paper import PaperExchange
from tgtrader.store import Database
from tgtrader.store.core_store import CoreStore

from .conftest import REAL_RULES

SAMPLE = Path(__file__).resolve().parents[2] / "tgtrader" / "data" / "BTCUSDT_1m_2023-03-10_12.csv.gz"


@pytest.mark.skipif(not SAMPLE.exists(), reason="shipped candle sample missing")
@pytest.mark.parametrize("n_candles,lower,upper,grids,spacing", [
    (600, "19600", "20600", 8, "arithmetic"),
    (900, "19500", "20800", 12, "geometric"),
])
async def test_core_replay_matches_vector_backtest(n_candles: int, lower: str, upper: str, grids: int,
                                                   spacing: str) -> None:
    candles = load_candles(SAMPLE).slice(0, n_candles)
    rules = REAL_RULES["BTCUSDT"]
    spec = GridSpec("BTCUSDT", D(lower), D(upper), grids, D("5000"), spacing)  # one spec for both
    vec = run_backtest(candles, spec, rules, fee=0.001)

    db = await Database.open(":memory:")
    paper = PaperExchange(db, rules=REAL_RULES, initial_balances={"USDT": D("20000")})
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
    assert [float(x) for x in pv.levels] == pytest.approx(vec.levels.tolist())
    assert float(pv.qty_per_order) == pytest.approx(vec.qty)
    gid = (await core.start_grid(pv.token)).id
    await core.idle()
    for k, price in enumerate(path[1:], start=1):
        now[0] = int(candles.open_time[k // 4]) + (k % 4) * 15_000
        paper.feed_trade("BTCUSDT", D(repr(float(price))), now[0])
        await core.idle()

    grid_fills = [f for f in fills if f.client_order_id.startswith(f"tg-g{gid}-") and "-x" not in f.client_order_id]
    core_records = [(f.side.value, float(f.price)) for f in grid_fills]
    vec_records = [(side, price) for _, side, _, price, _ in vec.fills.records()]
    assert core_records == [(s, pytest.approx(p)) for s, p in vec_records]
    g = await core.grid(gid)
    assert g.round_trips == vec.round_trips
    bal = await paper.balances()
    base = bal["BTC"].total if "BTC" in bal else D(0)
    quote_change = bal["USDT"].total - D("20000")
    assert float(base) == pytest.approx(vec.base, rel=1e-9, abs=1e-9)
    # vector quote starts at the investment; the paper account had 20000
    assert float(quote_change) == pytest.approx(vec.quote - float(spec.investment), rel=1e-9, abs=1e-6)
    assert float(g.fees) == pytest.approx(vec.fees, rel=1e-9)
    assert len(grid_fills) == vec.buys + vec.sells and len(grid_fills) > 10
    await core.stop()
    await db.close()
