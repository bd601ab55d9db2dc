"""`tgtrader candles SYMBOL --interval 1m --days N [--out FILE]`: download closed candles to a CSV that
`tgtrader backtest --data FILE` reads, with a progress bar; running it again continues the file.

Public market data only: no API key is needed. The endpoint follows the settings (BINANCE_REST_URL,
BINANCE_TESTNET), so tests point it at the fake exchange.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tgtrader.backtest.download import INTERVAL_MS, DownloadError, download_csv
from tgtrader.config import load_settings
from tgtrader.errors import TgTraderError

EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("symbol", metavar="SYMBOL", help="e.g. BTCUSDT")
    parser.add_argument("--interval", default="1m", choices=tuple(INTERVAL_MS), help="candle interval (default 1m)")
    parser.add_argument("--days", default="30", metavar="N", help="how many days back from now (default 30)")
    parser.add_argument("--out", metavar="FILE", help="CSV to write or continue (default SYMBOL_INTERVAL_Nd.csv)")


def run(args: argparse.Namespace) -> int:
    symbol = str(args.symbol).upper()
    try:
        days = float(args.days)
    except ValueError:
        print(f"tgtrader candles: --days must be a number, got {args.days!r}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out or f"{symbol}_{args.interval}_{args.days}d.csv")
    settings = load_settings()
    try:
        result = asyncio.run(_download(settings, symbol, args.interval, days, out))
    except DownloadError as exc:
        print(f"tgtrader candles: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TgTraderError as exc:
        print(f"tgtrader candles: {exc} (run it again to continue where it stopped)", file=sys.stderr)
        return 1
    return result


async def _download(settings: object, symbol: str, interval: str, days: float, out: Path) -> int:
    from tgtrader.exchange.binance.adapter import BinanceExchange

    market = BinanceExchange("", "", user_stream=False, testnet=settings.binance_testnet,  # type: ignore[attr-defined]
                             rest_url=settings.binance_rest_url, ws_url=settings.binance_ws_url)  # type: ignore[attr-defined]
    try:
        await market.start()
        if symbol not in await market.known_symbols():
            raise DownloadError(f"{symbol} is not a symbol the exchange knows")
        err = Console(stderr=True)
        with Progress(TextColumn(f"{symbol} {interval}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err, transient=False) as bar:
            task = bar.add_task("candles", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = await download_csv(market.klines, symbol, interval, days, out, int(time.time() * 1000), progress)
    finally:
        with suppress(Exception):
            await market.close()
    when = ("" if result.resumed_after_ms is None else " after " +
            datetime.fromtimestamp(result.resumed_after_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC"))
    print(f"{result.path}: {result.added:,} candles added{when} ({'continued' if when else 'new file'}); "
          f"backtest it with: tgtrader backtest --data {result.path} ...")
    return 0
