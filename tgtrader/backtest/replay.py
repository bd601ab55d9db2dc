"""Candle replay: walk recorded candles along the PLAN.md price path and feed it to the paper exchange.

Why: the demo and the backtest-parity runs must drive the real engine through the paper exchange with the
exact path the vectorized backtest assumes (open -> low -> high -> close when close >= open, else
open -> high -> low -> close; candles joined close -> next open). Every vertex becomes one trade tick;
`await on_step()` runs between ticks so the engine can drain the fills and place counter orders before
the path moves on.

Split prices add extra ticks exactly at those prices when a segment crosses them, so a price is seen at
its own value and in path order (tests of soft stops use it). Do not split at a grid's stop-loss or
take-profit when comparing with the backtest: like a live market that jumped past the trigger, the core must
first see the vertex beyond it and sell there, which is where the backtest fills a stop exit (issue 15). The
commission is the paper exchange's (`PaperExchange(fee_asset=...)`, `tgtrader.fees`), as in the backtest. Consecutive equal prices are
fed once. Timestamps are spread inside the candle: open at open_time, then +1/4, +2/4 of the interval,
close at open_time + interval - 1 ms; split ticks get the segment start's time plus one ms per split.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tgtrader.backtest.candles import Candles, load_candles
from tgtrader.backtest.vector import candle_path


class TradeFeed(Protocol):
    def feed_trade(self, symbol: str, price: Decimal, ts_ms: int) -> int: ...


@dataclass(frozen=True, slots=True)
class ReplayTick:
    """One tick of the walk. `vertex` is the path vertex index (4 per candle); split ticks carry the
    vertex they lead to and `split=True`."""

    vertex: int
    candle: int
    ts_ms: int
    price: Decimal
    split: bool = False


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    vertex: int  # path vertices done so far, counted from the start of the whole path
    total: int  # path vertices in the whole path
    candle: int
    ts_ms: int
    price: Decimal
    ticks: int  # ticks fed (vertices without repeats, plus split ticks)
    fills: int  # orders filled so far

    @property
    def fraction(self) -> float:
        return self.vertex / self.total if self.total else 1.0


@dataclass(frozen=True, slots=True)
class ReplayResult:
    vertices: int  # path vertices walked by this run
    next_vertex: int  # where a following run(start=...) continues
    ticks: int
    fills: int
    last_price: Decimal | None
    last_ts_ms: int
    stopped: bool


def to_decimal(x: float, quantum: Decimal | None = None) -> Decimal:
    """Shortest repr of the float (the CSV's own digits for real candles), optionally on a tick grid."""
    d = Decimal(repr(float(x)))
    return d.quantize(quantum) if quantum is not None else d


class CandleReplay:
    """Feeds the candle path of `candles` for `symbol` into `exchange.feed_trade`, one awaited step per tick."""

    def __init__(
        self,
        exchange: TradeFeed,
        symbol: str,
        candles: Candles,
        *,
        on_step: Callable[[], Awaitable[None]] | None = None,
        speed: float | None = None,
        split_prices: Iterable[Decimal] = (),
        on_progress: Callable[[ReplayProgress], Any] | None = None,
        progress_every: int = 1000,
        price_quantum: Decimal | None = None,
        interval_ms: int | None = None,
    ) -> None:
        """`speed`: path vertices per second (None or <= 0: as fast as possible)."""
        self.exchange = exchange
        self.symbol = symbol
        self.candles = candles
        self.on_step = on_step
        self.speed = speed
        self.on_progress = on_progress
        self.progress_every = max(1, progress_every)
        self.price_quantum = price_quantum
        self._path: np.ndarray = candle_path(candles) if len(candles) else np.empty(0)
        self.interval_ms = interval_ms if interval_ms is not None else _infer_interval(candles.open_time)
        self._splits: list[Decimal] = []
        self.set_split_prices(split_prices)
        self._stop = False

    @classmethod
    def from_csv(cls, exchange: TradeFeed, symbol: str, path: str | Path, **kw: Any) -> "CandleReplay":
        return cls(exchange, symbol, load_candles(path), **kw)

    # ------------------------------------------------------------ control

    @property
    def total_vertices(self) -> int:
        return int(self._path.shape[0])

    def set_split_prices(self, prices: Iterable[Decimal]) -> None:
        """Replace the prices at which segments are split (may be called while running)."""
        self._splits = sorted(set(Decimal(p) for p in prices))

    def add_split_prices(self, prices: Iterable[Decimal]) -> None:
        self.set_split_prices([*self._splits, *prices])

    def remove_split_prices(self, prices: Iterable[Decimal]) -> None:
        gone = set(Decimal(p) for p in prices)
        self._splits = [p for p in self._splits if p not in gone]

    def stop(self) -> None:
        """Ask a running `run()` to stop after the current tick."""
        self._stop = True

    # ------------------------------------------------------------ the walk

    def vertex_ts(self, vertex: int) -> int:
        candle, k = divmod(vertex, 4)
        base = int(self.candles.open_time[candle])
        if k == 3:
            return base + max(self.interval_ms - 1, 0)
        return base + (self.interval_ms * k) // 4

    def ticks(self, start: int = 0, stop: int | None = None) -> Iterator[ReplayTick]:
        """The ticks the replay feeds for path vertices [start, stop), split prices included (pure).

        With start > 0 the walk continues from vertex start - 1 (assumed already fed): the segment into
        `start` is split as usual and a first vertex equal to it is not fed again, so chunked runs
        (run(0, k), run(k, m), ...) feed exactly what one run would.
        """
        path = self._path
        end = self.total_vertices if stop is None else min(stop, self.total_vertices)
        q = self.price_quantum
        prev: Decimal | None = to_decimal(path[start - 1], q) if 0 < start <= end else None
        for v in range(start, end):
            price = to_decimal(path[v], q)
            if price == prev:
                continue
            candle = v // 4
            ts = self.vertex_ts(v)
            if prev is not None and self._splits:
                base_ts = self.vertex_ts(v - 1) if v > 0 else ts
                for i, sp in enumerate(self._between(prev, price), start=1):
                    yield ReplayTick(v, candle, min(base_ts + i, ts), sp, True)
            yield ReplayTick(v, candle, ts, price)
            prev = price

    def _between(self, a: Decimal, b: Decimal) -> list[Decimal]:
        """Split prices strictly between a and b, in the order a move from a to b meets them."""
        s = self._splits
        if a < b:
            return s[bisect_right(s, a) : bisect_left(s, b)]
        return s[bisect_right(s, b) : bisect_left(s, a)][::-1]

    async def run(self, start: int = 0, stop: int | None = None) -> ReplayResult:
        """Feed vertices [start, stop) to the exchange, awaiting `on_step` after every tick.

        Progress reports count path vertices from the start of the whole path (so chunked runs report a
        steady fraction); `stop()` takes effect after the current vertex.
        """
        self._stop = False
        end = self.total_vertices if stop is None else min(stop, self.total_vertices)
        total = self.total_vertices
        loop = asyncio.get_running_loop()
        feed = self.exchange.feed_trade
        symbol = self.symbol
        on_step = self.on_step
        every = self.progress_every
        next_report = (start // every + 1) * every
        ticks = fills = 0
        done = start  # absolute: vertices [0, done) are behind us
        last: ReplayTick | None = None
        pace_t0 = loop.time()
        pace_v0 = start
        pace_speed = self.speed
        for tick in self.ticks(start, end):
            fills += feed(symbol, tick.price, tick.ts_ms)
            ticks += 1
            last = tick
            if on_step is not None:
                await on_step()
            elif ticks % 256 == 0:
                await asyncio.sleep(0)  # let background work (persistence, sinks) run
            if tick.split:
                continue
            done = tick.vertex + 1
            if self.on_progress is not None and done >= next_report:
                next_report = (done // every + 1) * every
                self.on_progress(ReplayProgress(done, total, tick.candle, tick.ts_ms, tick.price, ticks, fills))
            if self.speed != pace_speed:  # speed changed while running: restart pacing from here
                pace_speed, pace_t0, pace_v0 = self.speed, loop.time(), done
            if pace_speed is not None and pace_speed > 0:
                delay = pace_t0 + (done - pace_v0) / pace_speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if self._stop:
                break
        stopped = self._stop
        if not stopped:
            done = max(end, start)
        if last is not None and self.on_progress is not None:
            self.on_progress(ReplayProgress(done, total, last.candle, last.ts_ms, last.price, ticks, fills))
        return ReplayResult(
            vertices=done - start,
            next_vertex=done,
            ticks=ticks,
            fills=fills,
            last_price=last.price if last is not None else None,
            last_ts_ms=last.ts_ms if last is not None else 0,
            stopped=stopped,
        )


def _infer_interval(open_time: np.ndarray) -> int:
    if open_time.shape[0] < 2:
        return 60_000
    diffs = np.diff(open_time)
    diffs = diffs[diffs > 0]
    return int(np.median(diffs)) if diffs.size else 60_000
