"""Recent candles from Binance's klines endpoint: to a CSV (`tgtrader candles`) or through the SQLite cache
(guided `/grid`'s suggestions), page by page, resuming where a previous download stopped (issue 17).

Why: `tgtrader backtest` needs candles and the suggestions need the last days of them; 30 days of 1m candles
are 44 requests of 1,000, so an interrupted download must not start over, and a second `/grid` a minute later
must only fetch the new minute. Only closed candles are kept (the newest one's close is in the past).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tgtrader.backtest.candles import Candles
from tgtrader.store.klines import KlineRepo

INTERVAL_MS = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000,
    "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000,
}
PAGE = 1000  # Binance's largest klines page
HEADER = "open_time,open,high,low,close,volume"
MAX_DAYS = 366

KlineRow = tuple[int, str, str, str, str, str]
Fetch = Callable[[str, str, int, int | None, int], Awaitable[list[KlineRow]]]
Progress = Callable[[int, int], None]  # (candles done, candles wanted)


class DownloadError(ValueError):
    """Bad arguments or an unusable existing file; one line for the trader."""


@dataclass(frozen=True)
class Window:
    start_ms: int  # open time of the first candle wanted
    last_ms: int  # open time of the newest closed candle
    interval_ms: int

    @property
    def count(self) -> int:
        return (self.last_ms - self.start_ms) // self.interval_ms + 1


def window(days: float, interval: str, now_ms: int) -> Window:
    """The last `days` of closed `interval` candles before `now_ms`."""
    if interval not in INTERVAL_MS:
        raise DownloadError(f"interval {interval!r} is not one of {', '.join(INTERVAL_MS)}")
    if not (0 < days <= MAX_DAYS):
        raise DownloadError(f"days must be in (0, {MAX_DAYS}], got {days:g}")
    iv = INTERVAL_MS[interval]
    last = now_ms // iv * iv - iv
    n = max(1, int(days * 86_400_000) // iv)
    return Window(last - (n - 1) * iv, last, iv)


async def fetch_range(fetch: Fetch, symbol: str, interval: str, start_ms: int, w: Window,
                      on_page: Callable[[list[KlineRow]], Awaitable[object] | object],
                      progress: Progress | None = None) -> int:
    """Fetch [start_ms, w.last_ms] page by page, handing each page to `on_page` before asking for the next
    (so an interruption keeps every page already stored). Returns the number of candles fetched."""
    cursor, got = start_ms, 0
    done0 = max(0, (start_ms - w.start_ms) // w.interval_ms)
    while cursor <= w.last_ms:
        rows = [r for r in await fetch(symbol, interval, cursor, w.last_ms, PAGE) if cursor <= r[0] <= w.last_ms]
        if not rows:
            break
        result = on_page(rows)
        if inspect.isawaitable(result):
            await result
        got += len(rows)
        cursor = rows[-1][0] + w.interval_ms
        if progress is not None:
            progress(min(done0 + got, w.count), w.count)
    return got


@dataclass(frozen=True)
class Downloaded:
    path: Path
    added: int
    resumed_after_ms: int | None  # newest candle already in the file, when the download resumed
    wanted: int


def _tail_open_time(path: Path) -> int | None:
    """The newest open time in an existing CSV (a half-written last line from an interruption is cut off)."""
    data = path.read_bytes()
    if not data:
        return None
    if not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    lines = data.decode().splitlines()
    if not lines or lines[0].strip() != HEADER:
        raise DownloadError(f"{path} exists but is not a candle CSV written by `tgtrader candles` "
                            f"(header {HEADER!r}); choose another --out")
    if len(lines) == 1:
        return None
    try:
        return int(lines[-1].split(",", 1)[0])
    except ValueError:
        raise DownloadError(f"{path}: cannot read the last line's open time; choose another --out") from None


async def download_csv(fetch: Fetch, symbol: str, interval: str, days: float, path: Path, now_ms: int,
                       progress: Progress | None = None) -> Downloaded:
    """The last `days` of `symbol` candles into `path` (CSV with HEADER); an existing file is continued
    after its newest candle."""
    w = window(days, interval, now_ms)
    resumed = _tail_open_time(path) if path.exists() else None
    if not path.exists() or path.stat().st_size == 0:
        path.write_text(HEADER + "\n")
    # continue right after the file's newest candle, so the file stays contiguous even when it is older
    start = w.start_ms if resumed is None else resumed + w.interval_ms
    with path.open("a") as f:
        def write(rows: list[KlineRow]) -> None:
            f.write("".join(f"{t},{o},{h},{lo},{c},{v}\n" for t, o, h, lo, c, v in rows))
            f.flush()

        added = await fetch_range(fetch, symbol, interval, start, w, write, progress)
    return Downloaded(path, added, resumed, w.count)


async def cached_candles(repo: KlineRepo, fetch: Fetch, symbol: str, days: float, now_ms: int,
                         interval: str = "1m", progress: Progress | None = None) -> Candles:
    """The last `days` of closed candles of `symbol`: the cache's, plus whatever is newer from Binance."""
    w = window(days, interval, now_ms)
    newest = await repo.newest(symbol, interval)
    start = w.start_ms if newest is None or newest < w.start_ms else newest + w.interval_ms

    async def store(rows: list[KlineRow]) -> None:
        await repo.add(symbol, interval, rows)

    await fetch_range(fetch, symbol, interval, start, w, store, progress)
    await repo.prune(symbol, interval, w.start_ms)
    rows = await repo.since(symbol, interval, w.start_ms)
    if not rows:
        return Candles.from_arrays([], [], [], [], open_time=[], volume=[], source=f"{symbol} {interval} (none)")
    a = np.array(rows, dtype=np.float64)
    return Candles.from_arrays(a[:, 1], a[:, 2], a[:, 3], a[:, 4], open_time=a[:, 0].astype(np.int64),
                               volume=a[:, 5], source=f"{symbol} {interval} last {days:g} d (cache)")
