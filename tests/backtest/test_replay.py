"""CandleReplay: vertex order on real candles, splits, pacing, and fill parity with the vectorized backtest."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

import numpy as np
import pytest

from tests.backtest.reference import spec
from tests.shared_data import shared_data
from tgtrader.backtest.candles import Candles, load_candles
from tgtrader.backtest.replay import CandleReplay, ReplayProgress
from tgtrader.backtest.vector import grid_levels, round_levels, run_backtest
from tgtrader.exchange.paper import PaperExchange, load_exchange_info
from tgtrader.types import Fill, OrderType, PlaceOrder, Side

XRPETH_1M = shared_data("klines/binance_spot_XRPETH_1m.csv")
needs_data = pytest.mark.skipif(not XRPETH_1M.exists(), reason="shared kline data not present")


class Recorder:
    def __init__(self) -> None:
        self.ticks: list[tuple[str, D, int]] = []

    def feed_trade(self, symbol: str, price: D, ts_ms: int) -> int:
        self.ticks.append((symbol, price, ts_ms))
        return 0


def tiny(rows: list[tuple[float, float, float, float]]) -> Candles:
    o, h, lo, c = (list(x) for x in zip(*rows))
    return Candles.from_arrays(o, h, lo, c, open_time=[60_000 * i for i in range(len(rows))])


@needs_data
async def test_vertex_order_on_real_xrpeth_candles() -> None:
    candles = load_candles(XRPETH_1M)
    rec = Recorder()
    r = CandleReplay(rec, "XRPETH", candles)
    res = await r.run(0, 12)
    # 2019-10-11 00:00: o .00141342 h .00141557 l .00141266 c .00141418 (rising: o, l, h, c)
    # 00:01: o .00141597 h .00141658 l .00141597 c .00141658 (rising; l == o and c == h are not re-fed)
    # 00:02: o .00141658 h .00141721 l .00141658 c .00141721 (open == previous close: joined, not re-fed)
    t0 = 1570752000000
    assert rec.ticks[:6] == [
        ("XRPETH", D("0.00141342"), t0),
        ("XRPETH", D("0.00141266"), t0 + 15_000),
        ("XRPETH", D("0.00141557"), t0 + 30_000),
        ("XRPETH", D("0.00141418"), t0 + 59_999),
        ("XRPETH", D("0.00141597"), t0 + 60_000),
        ("XRPETH", D("0.00141658"), t0 + 90_000),
    ]
    assert res.vertices == 12 and res.ticks == len(rec.ticks)
    # the whole file: the fed prices are exactly the path with consecutive repeats dropped, falling candles
    # go open -> high -> low -> close
    rec2 = Recorder()
    await CandleReplay(rec2, "XRPETH", candles).run()
    path = np.stack([candles.open, np.where(candles.close >= candles.open, candles.low, candles.high),
                     np.where(candles.close >= candles.open, candles.high, candles.low), candles.close], 1).ravel()
    dedup = [path[0]] + [b for a, b in zip(path[:-1], path[1:]) if b != a]
    assert [float(p) for _, p, _ in rec2.ticks] == dedup
    ts = [t for _, _, t in rec2.ticks]
    assert ts == sorted(ts)
    falling = int(np.flatnonzero(candles.close < candles.open)[0])
    seq = [p for v, p in enumerate(path) if v // 4 == falling]
    assert seq[1] == candles.high[falling] and seq[2] == candles.low[falling]


async def test_split_prices_inserted_in_path_order() -> None:
    c = tiny([(10.0, 12.0, 8.0, 9.0)])  # falling candle: 10 -> 12 -> 8 -> 9
    rec = Recorder()
    r = CandleReplay(rec, "X", c, split_prices=[D("11"), D("9.5"), D("12"), D("8.5"), D("20")])
    await r.run()
    assert [p for _, p, _ in rec.ticks] == [
        D(10), D(11), D(12), D(11), D("9.5"), D("8.5"), D(8), D("8.5"), D(9)
    ]
    splits = [t for t in r.ticks() if t.split]
    assert [t.vertex for t in splits] == [1, 2, 2, 2, 3]
    r.remove_split_prices([D("8.5")])
    assert [t.price for t in r.ticks()] == [D(10), D(11), D(12), D(11), D("9.5"), D(8), D(9)]


async def test_on_step_runs_between_ticks_and_progress() -> None:
    c = tiny([(10.0, 12.0, 8.0, 11.0), (11.0, 11.5, 10.5, 10.6)])
    rec = Recorder()
    seen: list[int] = []
    progress: list[ReplayProgress] = []

    async def step() -> None:
        seen.append(len(rec.ticks))

    r = CandleReplay(rec, "X", c, on_step=step, on_progress=progress.append, progress_every=2)
    res = await r.run()
    assert seen == list(range(1, len(rec.ticks) + 1))
    assert [p.vertex for p in progress] == [2, 4, 6, 8, 8]
    assert progress[-1].fraction == 1.0 and res.vertices == 8 and not res.stopped


async def test_speed_and_stop() -> None:
    c = tiny([(10.0 + i, 12.0 + i, 8.0 + i, 11.0 + i) for i in range(50)])
    rec = Recorder()
    r = CandleReplay(rec, "X", c, speed=400)
    t0 = time.perf_counter()
    res = await r.run(0, 40)
    elapsed = time.perf_counter() - t0
    assert res.vertices == 40 and 0.08 <= elapsed < 1.5

    async def stopper() -> None:
        if len(rec.ticks) >= 5:
            r.stop()

    rec.ticks.clear()
    r.speed = None
    r.on_step = stopper
    res = await r.run()
    assert res.stopped and len(rec.ticks) == 5 and res.vertices < r.total_vertices


@needs_data
@pytest.mark.parametrize("n,spacing", [(12, "arithmetic"), (40, "geometric")])
async def test_grid_through_paper_matches_vector_backtest(n: int, spacing: str) -> None:
    """The same grid, run tick by tick through the paper exchange, gives exactly the backtest's fills."""
    candles = load_candles(XRPETH_1M)
    rules = load_exchange_info()["XRPETH"]
    lower, upper = float(candles.low.min()) * 1.001, float(candles.high.max()) * 0.999
    bt = run_backtest(candles, spec(lower, upper, n, 1.0, spacing), rules, fee=0.001)
    expected = [(c, s, lv) for c, s, lv, _, _ in bt.fills.records()]
    assert len(expected) > 20

    floats = round_levels(grid_levels(lower, upper, n, spacing), rules)
    levels = [rules.round_price(D(repr(float(x)))) for x in floats]
    ex = PaperExchange(rules={"XRPETH": rules}, initial_balances={"ETH": D(100), "XRP": D(10**6)})
    fills: list[Fill] = []
    ex.set_event_sink(lambda e: fills.append(e) if isinstance(e, Fill) else None)
    await ex.start()
    qty = D(100)
    p0 = D(repr(float(candles.open[0])))
    ex.feed_trade("XRPETH", p0, int(candles.open_time[0]))
    level_of = {p: i for i, p in enumerate(levels)}
    seq = 0

    async def place(side: Side, level: int) -> None:
        nonlocal seq
        seq += 1
        await ex.place_order(PlaceOrder("XRPETH", f"g{seq}", side, OrderType.LIMIT, qty, levels[level]))

    for i in range(n):
        if levels[i] >= p0:
            await place(Side.SELL, i + 1)
        else:
            await place(Side.BUY, i)

    got: list[tuple[int, str, int]] = []
    cursor = 0
    replay = CandleReplay(ex, "XRPETH", candles)

    async def engine_step() -> None:  # a minimal grid engine: counter order for every fill
        nonlocal cursor
        while cursor < len(fills):
            f = fills[cursor]
            cursor += 1
            lv = level_of[f.price]
            got.append((f.ts_ms, f.side.value, lv))
            await place(Side.SELL, lv + 1) if f.side is Side.BUY else await place(Side.BUY, lv - 1)

    replay.on_step = engine_step
    await replay.run(1)  # vertex 0 (P0) was fed above
    ot = candles.open_time
    candle_of = {int(t): i for i, t in enumerate(ot)}
    as_candles = [(candle_of[_candle_start(ts, ot)], s, lv) for ts, s, lv in got]
    assert as_candles == expected, (len(as_candles), len(expected))
    assert len(await ex.open_orders("XRPETH")) == n


def _candle_start(ts: int, open_time: np.ndarray) -> int:
    i = int(np.searchsorted(open_time, ts, side="right")) - 1
    return int(open_time[i])


async def test_replay_is_fast_enough() -> None:
    rng = np.random.default_rng(7)
    closes = 100 + np.cumsum(rng.normal(0, 0.2, 20_000))
    opens = np.concatenate([[100.0], closes[:-1]])
    highs = np.maximum(opens, closes) + 0.1
    lows = np.minimum(opens, closes) - 0.1
    c = Candles.from_arrays(np.round(opens, 2), np.round(highs, 2), np.round(lows, 2), np.round(closes, 2))
    ex = PaperExchange(initial_balances={"USDT": D(10**6)})
    await ex.start()
    t0 = time.perf_counter()
    res = await CandleReplay(ex, "BTCUSDT", c).run()
    assert res.vertices == 80_000
    assert time.perf_counter() - t0 < 5.0
    await asyncio.sleep(0)


async def test_chunked_runs_feed_exactly_what_one_run_feeds() -> None:
    rows = [(10.0, 12.0, 8.0, 9.0), (9.0, 9.5, 7.0, 7.5), (7.5, 11.0, 7.5, 11.0), (11.5, 13.0, 11.0, 12.0)]
    splits = [D("8.5"), D("10.5"), D("11.25")]
    whole = Recorder()
    await CandleReplay(whole, "X", tiny(rows), split_prices=splits).run()
    progress: list[ReplayProgress] = []
    chunked = Recorder()
    r = CandleReplay(chunked, "X", tiny(rows), split_prices=splits, on_progress=progress.append, progress_every=4)
    results = [await r.run(a, b) for a, b in [(0, 3), (3, 9), (9, 13), (13, 16)]]
    assert chunked.ticks == whole.ticks
    assert [res.next_vertex for res in results] == [3, 9, 13, 16]
    assert [p.vertex for p in progress] == [3, 4, 8, 9, 13, 13, 16, 16]  # repeated prices are not fed: 12 is reported as 13
    assert all(p.total == 16 for p in progress)
