"""Candles for the fake exchange's klines endpoint (rest-api.md "Kline/Candlestick data").

Deterministic per symbol and open time (two waves and a hashed wiggle around an anchor price), so a
download that stops and resumes gets the same candles, and a grid over them trades back and forth.
Tests may replace `FakeBinance.kline_rows` (open time ms -> (open, high, low, close, volume)) with real data.
"""

from __future__ import annotations

import math
import zlib
from decimal import Decimal
from typing import Any

MAX_LIMIT = 1000
INTERVAL_MS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000,
               "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000,
               "1d": 86_400_000}


def _wiggle(symbol: str, k: int) -> float:
    return (zlib.crc32(f"{symbol}:{k}".encode()) % 10_000) / 10_000 - 0.5


def synthetic(symbol: str, anchor: float, open_ms: int, interval_ms: int) -> tuple[float, float, float, float, float]:
    def px(k: int) -> float:
        return anchor * (1 + 0.02 * math.sin(2 * math.pi * k / 1440) + 0.006 * math.sin(2 * math.pi * k / 97)
                         + 0.001 * _wiggle(symbol, k))

    k = open_ms // 60_000
    o, c = px(k), px(k + interval_ms // 60_000)
    spread = abs(_wiggle(symbol, -k)) * 0.002
    return o, max(o, c) * (1 + spread), min(o, c) * (1 - spread), c, 1.0 + abs(_wiggle(symbol, k + 7)) * 10


def answer(fake: Any, p: dict[str, str]) -> list[list[Any]]:
    """The klines answer for `p` (symbol, interval, startTime, endTime, limit), closed and open candles."""
    from tests.fakes.fake_binance import ApiError

    sym = fake._symbol(p)
    interval = p.get("interval", "")
    if interval not in INTERVAL_MS:
        raise ApiError(400, -1120, "Invalid interval.")
    iv = INTERVAL_MS[interval]
    limit = int(p.get("limit", 500))
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    now = fake.server_ms()
    end = int(p["endTime"]) if "endTime" in p else now
    start = int(p["startTime"]) if "startTime" in p else end - (limit - 1) * iv
    first = -(-start // iv) * iv
    last = min(end, now) // iv * iv
    try:
        anchor = float(fake._price_of(sym))
    except ApiError:  # no trade yet: a round anchor
        anchor = 100.0
    fake.klines_served = getattr(fake, "klines_served", 0)
    rows: list[list[Any]] = []
    t = first
    while t <= last and len(rows) < limit:
        given = getattr(fake, "kline_rows", None)
        values = given.get(t) if given else None
        o, h, lo, c, v = values if values is not None else synthetic(sym, anchor, t, iv)
        rows.append([t, _s(o), _s(h), _s(lo), _s(c), _s(v), t + iv - 1, _s(v * c), 10, _s(v / 2), _s(v * c / 2), "0"])
        t += iv
    fake.klines_served += len(rows)
    return rows


def _s(x: float) -> str:
    return f"{Decimal(repr(round(x, 8))):.8f}"
