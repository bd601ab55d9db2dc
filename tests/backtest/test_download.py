"""`tgtrader candles` and the kline cache, against the fake Binance's klines endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.fake_binance import FakeBinance
from tgtrader import cli
from tgtrader.backtest.candles import load_candles
from tgtrader.backtest.download import HEADER, DownloadError, KlineRow, cached_candles, download_csv, window
from tgtrader.exchange.binance.adapter import BinanceExchange
from tgtrader.store.db import Database
from tgtrader.store.klines import KlineRepo

NOW = 1_700_000_000_000 + 30 * 1000  # half a minute into a minute


@pytest.fixture
async def market() -> AsyncIterator[tuple[FakeBinance, BinanceExchange]]:
    fake = await FakeBinance().start()
    ex = BinanceExchange("", "", user_stream=False, rest_url=fake.rest_url, ws_url=fake.ws_url)
    await ex.start()
    try:
        yield fake, ex
    finally:
        await ex.close()
        await fake.stop()


def test_window_is_the_last_closed_candles() -> None:
    w = window(1, "1m", NOW)
    assert w.count == 1440 and w.last_ms == NOW // 60_000 * 60_000 - 60_000
    with pytest.raises(DownloadError, match="interval"):
        window(1, "7m", NOW)
    with pytest.raises(DownloadError, match="days"):
        window(0, "1m", NOW)


async def test_an_interrupted_download_resumes_where_it_stopped(market, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake, ex = market
    full, part = tmp_path / "full.csv", tmp_path / "part.csv"
    await download_csv(ex.klines, "BTCUSDT", "1m", 2, full, NOW)
    pages = 0

    async def dies_after_two_pages(*a: object) -> list[KlineRow]:
        nonlocal pages
        pages += 1
        if pages > 2:
            raise ConnectionError("network gone")
        return await ex.klines(*a)  # type: ignore[arg-type]

    with pytest.raises(ConnectionError):
        await download_csv(dies_after_two_pages, "BTCUSDT", "1m", 2, part, NOW)
    with part.open("a") as f:  # killed in the middle of writing a line
        f.write("1700000")
    seen: list[tuple[int, int]] = []
    again = await download_csv(ex.klines, "BTCUSDT", "1m", 2, part, NOW, lambda d, t: seen.append((d, t)))
    assert again.resumed_after_ms is not None and again.added == 2880 - 2000
    assert seen[-1] == (2880, 2880) and seen[0][0] > 2000  # the bar starts where the file stopped
    assert part.read_text() == full.read_text()
    c = load_candles(part)
    assert len(c) == 2880 and (c.open_time[1:] - c.open_time[:-1] == 60_000).all()
    assert c.open_time[-1] == window(2, "1m", NOW).last_ms


async def test_a_foreign_file_is_not_appended_to(market, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, ex = market
    other = tmp_path / "notes.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(DownloadError, match="not a candle CSV"):
        await download_csv(ex.klines, "BTCUSDT", "1m", 1, other, NOW)
    assert other.read_text() == "a,b\n1,2\n"


async def test_the_cache_fetches_only_what_is_new(market, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake, ex = market
    calls: list[int] = []

    async def counted(*a: object) -> list[KlineRow]:
        calls.append(1)
        return await ex.klines(*a)  # type: ignore[arg-type]

    async with await Database.open(tmp_path / "t.db") as db:
        repo = KlineRepo(db)
        first = await cached_candles(repo, counted, "BTCUSDT", 3, NOW)
        assert len(first) == 4320 and len(calls) == 5
        calls.clear()
        later = await cached_candles(repo, counted, "BTCUSDT", 3, NOW + 5 * 60_000)
        assert len(calls) == 1 and len(later) == 4320
        assert later.open_time[-1] - first.open_time[-1] == 5 * 60_000  # 5 new minutes, 5 old ones pruned
        assert (later.close[:-5] == first.close[5:]).all()


async def test_cli_downloads_then_continues(market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    fake, _ = market
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BINANCE_REST_URL", fake.rest_url)
    monkeypatch.setenv("BINANCE_WS_URL", fake.ws_url)
    out = tmp_path / "btc.csv"
    argv = ["candles", "BTCUSDT", "--interval", "1m", "--days", "1", "--out", str(out)]
    assert await asyncio.to_thread(cli.main, argv) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == HEADER and 1439 <= len(rows) - 1 <= 1441
    assert await asyncio.to_thread(cli.main, argv) == 0  # again: only what is new (usually nothing)
    again = out.read_text().splitlines()
    assert again[: len(rows)] == rows and len(again) - len(rows) <= 2
    assert await asyncio.to_thread(cli.main, ["candles", "NOPEUSDT", "--out", str(tmp_path / "x.csv")]) == 2
    assert await asyncio.to_thread(cli.main, ["candles", "BTCUSDT", "--days", "zero"]) == 2
    assert time.time() > 0
