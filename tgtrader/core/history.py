"""Price history for charts, bounded in memory however long the bot runs."""

from __future__ import annotations

from array import array


class PriceHistory:
    """One symbol's chart points: at most one per bucket; when full, every other point goes and the bucket
    doubles, so the buffer always spans the whole run in at most `capacity` points of 16 bytes each
    (machine arrays, not tuples of Python objects: a week of ticks must not grow the process)."""

    __slots__ = ("ts_ms", "prices", "bucket_ms", "capacity")

    def __init__(self, capacity: int = 5_000, bucket_ms: int = 1_000) -> None:
        if capacity < 4:
            raise ValueError("capacity must be at least 4")
        self.ts_ms = array("q")
        self.prices = array("d")
        self.bucket_ms = bucket_ms
        self.capacity = capacity

    def __len__(self) -> int:
        return len(self.ts_ms)

    def add(self, ts_ms: int, price: float) -> None:
        ts, px = self.ts_ms, self.prices
        n = len(ts)
        if n >= 2 and ts_ms - ts[-2] < self.bucket_ms:  # the last point's bucket is still open: move it
            ts[-1] = ts_ms
            px[-1] = price
            return
        ts.append(ts_ms)
        px.append(price)
        if n + 1 > self.capacity:
            del ts[1:-1:2]
            del px[1:-1:2]
            self.bucket_ms *= 2

    def points(self) -> tuple[tuple[int, ...], tuple[float, ...]]:
        return tuple(self.ts_ms), tuple(self.prices)
