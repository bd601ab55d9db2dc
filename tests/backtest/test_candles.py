"""Candle loading: header CSV, Binance headerless 12-column, .gz, and one-line errors with line numbers."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import shared_data
from tgtrader.backtest.candles import CandleFileError, load_candles, write_candles_csv
from tgtrader.backtest.command import SAMPLE

SHARED = shared_data("klines/binanceus_spot_BTCUSDT_1m.csv")

HEADER = "open_time,open,high,low,close,volume\n"
ROWS = "1678406400000,20370.23,20374.49,20360.61,20360.61,0.07044\n1678406460000,20360,20365,20350.5,20364,1.5\n"
BINANCE = (
    "1678406400000,20370.23,20374.49,20360.61,20360.61,0.07044,1678406459999,1434.9,12,0.01,203.7,0\n"
    "1678406460000,20360.00,20365.00,20350.50,20364.00,1.5,1678406519999,30545.1,40,0.7,14252.3,0\n"
)


def test_header_csv(tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    f.write_text(HEADER + ROWS)
    c = load_candles(f)
    assert len(c) == 2
    assert c.open_time.dtype == np.int64 and c.open.dtype == np.float64
    assert c.open_time.tolist() == [1678406400000, 1678406460000]
    assert c.low.tolist() == [20360.61, 20350.5] and c.volume.tolist() == [0.07044, 1.5]


def test_headerless_binance_12_columns_and_gz(tmp_path: Path) -> None:
    f = tmp_path / "BTCUSDT-1m-2023-03.csv.gz"
    f.write_bytes(gzip.compress(BINANCE.encode()))
    c = load_candles(f)
    assert c.open_time.tolist() == [1678406400000, 1678406460000]
    assert c.close.tolist() == [20360.61, 20364.0]
    assert c.volume.tolist() == [0.07044, 1.5]


def test_microsecond_timestamps_become_ms(tmp_path: Path) -> None:
    f = tmp_path / "us.csv"
    f.write_text(BINANCE.replace("1678406400000,", "1678406400000000,", 1).replace("1678406460000,", "1678406460000000,", 1))
    assert load_candles(f).open_time.tolist() == [1678406400000, 1678406460000]


def test_header_columns_in_any_order_without_volume(tmp_path: Path) -> None:
    f = tmp_path / "b.csv"
    f.write_text("close,open,high,low,open_time\n2,1,2.5,0.5,0\n")
    c = load_candles(f)
    assert (c.open[0], c.close[0], c.volume[0]) == (1.0, 2.0, 0.0)


@pytest.mark.parametrize(
    "text, where, words",
    [
        (HEADER + ROWS + "1678406520000,1,2,0.5\n", ":4:", "expected 6 columns, got 4"),
        (HEADER + "1678406400000,20370.23,abc,20360.61,20360.61,1\n", ":2:", "not a number: 'abc'"),
        (HEADER + "1678406400000,10,9,8,9.5,1\n", ":2:", "high is below open or close"),
        (HEADER + "1678406400000,10,11,10.5,10.8,1\n", ":2:", "low is above open or close"),
        (HEADER + ROWS + "1678406460000,1,2,0.5,1,1\n", ":4:", "not after the previous"),
        (HEADER + "1678406400000,-1,2,-2,1,1\n", ":2:", "positive"),
        (HEADER + "1678406400000,nan,2,1,1,1\n", ":2:", "finite"),
        ("time,price\n1,2\n", ":1:", "header lacks"),
        ("1,2,3\n", ":1:", "got 3 columns"),
        (HEADER, "", "no candles after the header"),
        ("", "", "file is empty"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path: Path, text: str, where: str, words: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(CandleFileError) as info:
        load_candles(f)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(f)) and where in msg and words in msg


def test_missing_and_corrupt_gz(tmp_path: Path) -> None:
    with pytest.raises(CandleFileError, match="no such file"):
        load_candles(tmp_path / "nope.csv")
    with pytest.raises(CandleFileError, match="is a directory"):
        load_candles(tmp_path)
    bad = tmp_path / "x.csv.gz"
    bad.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(CandleFileError, match="cannot read"):
        load_candles(bad)


def test_shipped_sample_is_real_btcusdt_svb_weekend() -> None:
    c = load_candles(SAMPLE)
    assert len(c) == 4320
    assert c.open_time[0] == 1678406400000 and np.all(np.diff(c.open_time) == 60_000)
    assert c.open[0] == 20370.23 and c.close[-1] == 21995.39
    if SHARED.exists():  # rows are verbatim copies of the shared recording
        full = load_candles(SHARED)
        i = int(np.searchsorted(full.open_time, c.open_time[0]))
        assert np.array_equal(full.close[i : i + 4320], c.close)


def test_write_roundtrip(tmp_path: Path) -> None:
    c = load_candles(SAMPLE).slice(0, 50)
    out = tmp_path / "s.csv.gz"
    write_candles_csv(c, out)
    d = load_candles(out)
    for name in ("open_time", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(c, name), getattr(d, name))
