"""Load OHLCV candles from CSV files into numpy arrays for the vectorized backtest.

Accepted inputs (plain or `.gz`):
- CSV with a header naming at least `open_time,open,high,low,close` (`volume` optional, extra columns ignored);
- the headerless 12-column kline files Binance publishes on data.binance.vision (the first 6 columns are used;
  microsecond timestamps, which Binance uses for spot files from 2025 on, are converted to ms).

A malformed file raises `CandleFileError` with one line naming the file, the line number and the problem,
so the CLI can print it as is. Parsing is done in bulk with numpy (the slow per-line pass only runs to
locate an error).
"""

from __future__ import annotations

import gzip
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tgtrader.errors import TgTraderError

REQUIRED = ("open_time", "open", "high", "low", "close")
COLUMNS = REQUIRED + ("volume",)
_US_THRESHOLD = 10**14  # ms epochs stay below this until the year 5138; microsecond epochs are above it


class CandleFileError(TgTraderError, ValueError):
    """A candle file cannot be used; the message is one line with file and line number."""


@dataclass(frozen=True, eq=False)
class Candles:
    """Columns of a candle series. `open_time` is UTC epoch ms (int64); prices and volume are float64."""

    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return int(self.open.shape[0])

    def slice(self, start: int, stop: int | None = None) -> "Candles":
        s = np.s_[start:stop]
        return Candles(
            self.open_time[s], self.open[s], self.high[s], self.low[s], self.close[s], self.volume[s], self.source
        )

    @classmethod
    def from_arrays(
        cls,
        open_: "np.ndarray | list[float]",
        high: "np.ndarray | list[float]",
        low: "np.ndarray | list[float]",
        close: "np.ndarray | list[float]",
        open_time: "np.ndarray | list[int] | None" = None,
        volume: "np.ndarray | list[float] | None" = None,
        source: str = "<arrays>",
    ) -> "Candles":
        """Build from columns (tests, benchmarks); checks OHLC consistency like the file loader."""
        o, h, lo, c = (np.ascontiguousarray(x, dtype=np.float64) for x in (open_, high, low, close))
        n = o.shape[0]
        t = (
            np.arange(n, dtype=np.int64) * 60_000
            if open_time is None
            else np.ascontiguousarray(open_time, dtype=np.int64)
        )
        v = np.zeros(n) if volume is None else np.ascontiguousarray(volume, dtype=np.float64)
        candles = cls(t, o, h, lo, c, v, source)
        bad = _first_inconsistent(candles)
        if bad is not None:
            raise CandleFileError(f"{source}: candle {bad[0]}: {bad[1]}")
        return candles


def load_candles(path: str | Path) -> Candles:
    """Read a candle CSV (header or Binance headerless, optionally gzip'd). Raises CandleFileError."""
    p = Path(path)
    name = str(path)
    if p.is_dir():
        raise CandleFileError(f"{name}: is a directory, not a candle file")
    if not p.is_file():
        raise CandleFileError(f"{name}: no such file")
    try:
        raw = p.read_bytes()
        if name.endswith(".gz") or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise CandleFileError(f"{name}: cannot read: {exc}") from None
    return parse_candles(text, name)


def parse_candles(text: str, name: str = "<text>") -> Candles:
    """Parse CSV text; see the module docstring for the accepted layouts."""
    lines = text.splitlines()
    # Trailing blank lines are harmless; blank lines inside the data are an error (reported by line).
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise CandleFileError(f"{name}: file is empty")
    first = lines[0].strip().split(",")
    first_line = 1
    if _is_number(first[0]):
        ncols = len(first)
        if ncols < 6:
            raise CandleFileError(
                f"{name}:1: expected a header open_time,open,high,low,close,volume or 12 Binance kline columns, "
                f"got {ncols} columns"
            )
        index = list(range(6))
    else:
        header = [h.strip().lower() for h in first]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise CandleFileError(f"{name}:1: header lacks {', '.join(missing)} (need {','.join(COLUMNS)})")
        ncols = len(header)
        index = [header.index(c) for c in REQUIRED] + ([header.index("volume")] if "volume" in header else [])
        lines = lines[1:]
        first_line = 2
        if not lines:
            raise CandleFileError(f"{name}: no candles after the header")

    body = "\n".join(lines)
    fields = body.replace("\n", ",").split(",")
    if len(fields) != len(lines) * ncols:
        _raise_first_bad_line(lines, ncols, first_line, name)
    try:
        table = np.array(fields, dtype=np.float64).reshape(len(lines), ncols)
    except ValueError:
        _raise_first_bad_line(lines, ncols, first_line, name)
        raise  # unreachable: the helper always raises
    if not np.isfinite(table[:, index]).all():
        row = int(np.nonzero(~np.isfinite(table[:, index]).all(axis=1))[0][0])
        raise CandleFileError(f"{name}:{row + first_line}: value is not a finite number")

    t_float = table[:, index[0]]
    if (t_float != np.floor(t_float)).any() or (t_float < 0).any():
        row = int(np.nonzero((t_float != np.floor(t_float)) | (t_float < 0))[0][0])
        raise CandleFileError(f"{name}:{row + first_line}: open_time must be a whole number of ms")
    open_time = t_float.astype(np.int64)
    if open_time.size and open_time.max() >= _US_THRESHOLD:
        open_time = np.where(open_time >= _US_THRESHOLD, open_time // 1000, open_time)
    vol = table[:, index[5]].copy() if len(index) > 5 else np.zeros(len(lines))
    candles = Candles(
        open_time,
        table[:, index[1]].copy(),
        table[:, index[2]].copy(),
        table[:, index[3]].copy(),
        table[:, index[4]].copy(),
        vol,
        name,
    )
    bad = _first_inconsistent(candles)
    if bad is not None:
        raise CandleFileError(f"{name}:{bad[0] + first_line}: {bad[1]}")
    return candles


def _first_inconsistent(c: Candles) -> tuple[int, str] | None:
    """(row, reason) of the first candle that breaks OHLC or time order, or None."""
    checks = (
        (~(c.open > 0) | ~(c.high > 0) | ~(c.low > 0) | ~(c.close > 0), "prices must be positive"),
        (~np.isfinite(c.open) | ~np.isfinite(c.high) | ~np.isfinite(c.low) | ~np.isfinite(c.close), "price is not finite"),
        (c.high < np.maximum(c.open, c.close), "high is below open or close"),
        (c.low > np.minimum(c.open, c.close), "low is above open or close"),
        (c.volume < 0, "volume is negative"),
    )
    first: tuple[int, str] | None = None
    for mask, reason in checks:
        if mask.any():
            row = int(np.argmax(mask))
            if first is None or row < first[0]:
                first = (row, reason)
    if c.open_time.shape[0] > 1:
        back = np.diff(c.open_time) <= 0
        if back.any():
            row = int(np.argmax(back)) + 1
            if first is None or row < first[0]:
                first = (row, "open_time is not after the previous candle's")
    return first


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _raise_first_bad_line(lines: list[str], ncols: int, first_line: int, name: str) -> None:
    for i, line in enumerate(lines):
        parts = line.strip().split(",")
        if len(parts) != ncols:
            raise CandleFileError(f"{name}:{i + first_line}: expected {ncols} columns, got {len(parts)}")
        for part in parts:
            try:
                float(part)
            except ValueError:
                shown = part if len(part) <= 30 else part[:27] + "..."
                raise CandleFileError(f"{name}:{i + first_line}: not a number: {shown!r}") from None
    raise CandleFileError(f"{name}: malformed CSV")


def write_candles_csv(candles: Candles, path: str | Path) -> None:
    """Write with the standard header (gzip'd when the name ends in .gz); used to cut samples and in tests."""
    buf = io.StringIO()
    buf.write(",".join(COLUMNS) + "\n")
    for row in zip(
        candles.open_time.tolist(),
        candles.open.tolist(),
        candles.high.tolist(),
        candles.low.tolist(),
        candles.close.tolist(),
        candles.volume.tolist(),
    ):
        buf.write("{:d},{!r},{!r},{!r},{!r},{!r}\n".format(*row))
    data = buf.getvalue().encode()
    p = Path(path)
    p.write_bytes(gzip.compress(data, mtime=0) if p.name.endswith(".gz") else data)
