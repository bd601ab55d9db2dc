"""Chart price history: bounded, covering the whole run, kept only for symbols that carry a grid."""

from __future__ import annotations

from pathlib import Path

from tgtrader.core.history import PriceHistory
from tgtrader.store import Database

from .test_engine import SPEC, Clock, feed, make


def test_one_point_per_bucket_latest_price_wins() -> None:
    h = PriceHistory(capacity=100, bucket_ms=1000)
    for ts, p in [(0, 1.0), (100, 2.0), (200, 3.0), (900, 4.0), (1500, 5.0), (2600, 6.0)]:
        h.add(ts, p)
    assert h.points() == ((0, 900, 1500, 2600), (1.0, 4.0, 5.0, 6.0))  # the open point moves until a bucket passed


def test_bounded_and_spans_the_whole_run() -> None:
    h = PriceHistory(capacity=50, bucket_ms=1000)
    for i in range(1_000_000):  # ~11.6 days of one tick per second
        h.add(i * 1000, float(i))
    times, prices = h.points()
    assert len(h) <= 50 and times[0] == 0 and prices[-1] == 999_999.0
    assert all(b > a for a, b in zip(times, times[1:]))
    assert h.bucket_ms >= 1_000_000 * 1000 // 50  # the bucket grew with the run


async def test_core_records_grid_symbols_only(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    clock, events = Clock(), []
    core, paper = await make(db, clock, events)
    await paper.subscribe({"BTCUSDT"})
    await feed(core, paper, clock, "52000", "52100")
    assert core.price_history == {}  # no grid yet: streaming a symbol costs no chart memory
    pv = await core.preview_grid(SPEC)
    summary = await core.start_grid(pv.token)
    await feed(core, paper, clock, "52200", "52300")
    chart = await core.chart_data(summary.id)
    assert chart.prices[-2:] == (52200.0, 52300.0) and len(chart.times_ms) == 2
    await core.stop()
    await paper.close()
    await db.close()
