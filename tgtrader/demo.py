"""`tgtrader demo`: the whole product on a fresh machine, with no keys and no network.

The real trading core trades on the paper exchange while real recorded candles (shipped in the
package) are replayed along the backtest's price path. The trader talks to it through the console
chat, which uses the very parser, dispatcher and renderer of the Telegram bot; with
TELEGRAM_BOT_TOKEN set, the same core also answers in Telegram.

Unattended (stdin not a terminal, or --script): the replay runs at full speed, scripted commands
are applied (a line `@50% /status` waits until half of the replay is done), the alerts and the
summary are printed, and the exit code is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from loguru import logger

from tgtrader.backtest.candles import CandleFileError, Candles, load_candles
from tgtrader.backtest.replay import CandleReplay, ReplayProgress
from tgtrader.console import ConsoleChat
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import EventBus
from tgtrader.core.rules import fmt_decimal
from tgtrader.core.service import TradingCore
from tgtrader.exchange.paper import PaperExchange
from tgtrader.fees import BNB, DEFAULT_FEE_ASSET, FeeAsset
from tgtrader.store.core_store import CoreStore
from tgtrader.store.db import Database

DATA_DIR = Path(__file__).resolve().parent / "data"
SAMPLE = DATA_DIR / "BTCUSDT_1m_2023-03-10_12.csv.gz"
SAMPLE_SYMBOL = "BTCUSDT"
DEFAULT_SECONDS = 60.0  # the whole replay takes about this long at the default speed
QUOTE = "USDT"
START_QUOTE = Decimal("10000")
FEE = Decimal("0.001")
START_BNB = Decimal("10")  # the fee float when TGTRADER_PAPER_FEE_ASSET=bnb
BNB_PRICE = Decimal("300")  # what 1 BNB is worth in the demo (no BNB market is replayed)
_SCRIPT_LINE = re.compile(r"^@\s*(\d+(?:\.\d+)?)\s*%\s*(.+)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speed", default=None,
                        help="candles per second, or 'max' (default: the whole replay takes about a minute; "
                             "'max' when stdin is not a terminal)")
    parser.add_argument("--data", type=Path, default=None,
                        help="candle CSV to replay (default: the bundled real BTCUSDT 1m sample)")
    parser.add_argument("--symbol", default=SAMPLE_SYMBOL, help="symbol the candles belong to (default BTCUSDT)")
    parser.add_argument("--grid", default=None, metavar="'LOWER UPPER GRIDS INVESTMENT [option=value ...]'",
                        help="the default grid to start (default: +-6%% around the first price, 20 grids, 5000 USDT); "
                             "options as in /grid new, e.g. trail_up=22500")
    parser.add_argument("--no-grid", action="store_true", help="start without a default grid")
    parser.add_argument("--script", type=Path, default=None,
                        help="file of chat commands to apply unattended; '@50%% /status' waits for 50%% of the replay")
    parser.add_argument("--db", type=Path, default=None, help="SQLite file (default: a fresh temporary one)")
    parser.add_argument("--out", type=Path, default=Path("data") / "demo",
                        help="folder for the chart PNGs (default ./data/demo)")
    parser.add_argument("--summary-json", type=Path, default=None, help="also write the summary as JSON here")


@dataclass(frozen=True)
class DemoSummary:
    symbol: str
    candles: int
    start_price: str
    final_price: str
    buys: int
    sells: int
    round_trips: int
    grid_profit: str
    realized: str
    fees: str
    start_equity: str
    final_equity: str
    return_pct: str
    hold_return_pct: str
    chart: str | None
    elapsed_s: float
    fills: list[tuple[int, str, str, str]]  # (ts_ms, side, price, qty) in execution order


def run(args: argparse.Namespace) -> int:
    from tgtrader.config import load_settings
    from tgtrader.logging_setup import setup_logging

    settings = load_settings()
    setup_logging(settings, file=bool(os.environ.get("TGTRADER_LOG_DIR")))  # the demo leaves no log files unless asked
    interactive = sys.stdin.isatty() and args.script is None
    try:
        candles = load_candles(args.data or SAMPLE)
    except (CandleFileError, OSError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    if len(candles) < 2:
        print("demo: need at least 2 candles", file=sys.stderr)
        return 2
    try:
        speed = _speed(args.speed, len(candles), interactive)
        grid = None if args.no_grid else grid_words(args.grid, float(candles.open[0]))
        script = read_script(args.script) if args.script else []
    except ValueError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    token = settings.telegram_bot_token.reveal() if settings.telegram_bot_token else None
    demo = Demo(candles, args.symbol.upper(), speed=speed, grid=grid, script=script, db_path=args.db,
                out_dir=args.out, interactive=interactive, telegram=(token, settings) if token else None,
                fee_asset=settings.paper_fee_asset)
    try:
        summary = asyncio.run(demo.run())
    except KeyboardInterrupt:
        return 130
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(asdict(summary), indent=1))
    return 0


def _speed(text: str | None, n_candles: int, interactive: bool) -> float | None:
    """Path vertices per second for the replay (4 per candle); None = as fast as possible."""
    if text is None:
        return n_candles * 4 / DEFAULT_SECONDS if interactive else None
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--speed must be a number of candles per second or 'max', got {text!r}") from None
    if not value > 0:
        raise ValueError("--speed must be positive")
    return value * 4


def grid_words(text: str | None, first_price: float) -> str:
    if text is None:
        lower, upper = first_price * 0.94, first_price * 1.06
        return f"{lower:.0f} {upper:.0f} 20 5000" if first_price > 100 else f"{lower:.6g} {upper:.6g} 20 5000"
    words = text.split()
    if len(words) < 4 or any("=" in w for w in words[:4]) or not all("=" in w for w in words[4:]):
        raise ValueError("--grid takes 'LOWER UPPER GRIDS INVESTMENT [option=value ...]' (the options of /grid new), "
                         "e.g. --grid '19500 22500 20 5000' or --grid '19500 22500 20 5000 trail_up=23500'")
    return " ".join(words)


def read_script(path: Path) -> list[tuple[float, str]]:
    """(fraction of the replay, command) per non-empty, non-comment line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read script {path}: {exc.strerror}") from None
    out: list[tuple[float, str]] = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _SCRIPT_LINE.match(line)
        if m:
            pct = float(m.group(1))
            if pct > 100:
                raise ValueError(f"{path}:{number}: {pct}% is past the end of the replay")
            out.append((pct / 100, m.group(2).strip()))
        else:
            out.append((0.0, line))
    return sorted(out, key=lambda item: item[0])


class Demo:
    def __init__(self, candles: Candles, symbol: str, *, speed: float | None, grid: str | None,
                 script: list[tuple[float, str]], db_path: Path | None, out_dir: Path, interactive: bool,
                 telegram: tuple[str, Any] | None = None, write: Callable[[str], None] | None = None,
                 fee_asset: FeeAsset = DEFAULT_FEE_ASSET) -> None:
        """`fee_asset`: who pays the paper commissions (tgtrader/fees.py); "bnb" funds the account with BNB."""
        self.candles = candles
        self.fee_asset = fee_asset
        self.start_balances = {QUOTE: START_QUOTE, **({BNB: START_BNB} if fee_asset == "bnb" else {})}
        self.symbol = symbol
        self.speed = speed
        self.grid = grid
        self.script = list(script)
        self.db_path = db_path
        self.out_dir = out_dir
        self.interactive = interactive
        self.telegram = telegram
        self._write = write or (lambda text: print(text, flush=True))
        self._now_ms = int(candles.open_time[0])
        self._progress: ReplayProgress | None = None
        self._live: Any = None
        self._status_cache = "no grid"

    # ------------------------------------------------------------ output

    def write(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            self._write(text)

    def _status_line(self) -> Any:
        from rich.text import Text

        p = self._progress
        if p is None:
            return Text("starting…")
        grids = self._status_cache
        pct = 100 * p.fraction
        bar = "█" * int(pct / 5) + "░" * (20 - int(pct / 5))
        return Text(
            f" {self.symbol} {fmt_decimal(p.price)}  │ {grids}  │ replay {bar} {pct:5.1f}%  "
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(p.ts_ms / 1000))} UTC",
            style="bold",
        )

    # ------------------------------------------------------------ the run

    async def run(self) -> DemoSummary:
        t0 = time.perf_counter()
        tmp: tempfile.TemporaryDirectory[str] | None = None
        if self.db_path is None:
            tmp = tempfile.TemporaryDirectory(prefix="tgtrader-demo-")
            db_path = Path(tmp.name) / "demo.db"
        else:
            db_path = self.db_path
        db = await Database.open(db_path)
        paper = PaperExchange(db, maker_fee=FEE, taker_fee=FEE, initial_balances=self.start_balances,
                              fee_asset=self.fee_asset, bnb_prices={QUOTE: BNB_PRICE})
        core = TradingCore(paper, CoreStore(db), EventBus(), config=CoreConfig(timer_interval_s=0), mode="demo",
                           clock_ms=lambda: self._now_ms)
        replay = CandleReplay(paper, self.symbol, self.candles, on_step=core.idle, speed=self.speed,
                              on_progress=self._on_progress, progress_every=64)
        chat = ConsoleChat(core, write=self.write, chart_dir=self.out_dir)
        bot = None
        reader: asyncio.Task[None] | None = None
        try:
            await paper.start()
            self._feed_first_price(paper)
            await core.start()
            await core.idle()
            chat.attach()
            self._banner()
            if self.telegram is not None:
                bot = await self._start_telegram(core, db)
            if self.grid:
                await self._say(chat, f"/grid new {self.symbol} {self.grid}")
                await self._say(chat, "1")  # press [Start]
                await core.idle()
            await self._run_script_until(chat, 0.0)
            if self.interactive:
                reader = asyncio.create_task(self._read_stdin(chat))
                await self._run_live(replay, chat)
            else:
                await self._run_unattended(replay, chat)
            await core.idle()
            chat.flush_alerts()
            await self._run_script_until(chat, 1.0)
            summary = await self._summary(core, db, time.perf_counter() - t0)
            self._print_summary(summary)
            return summary
        finally:
            if reader is not None:
                reader.cancel()
            chat.detach()
            if bot is not None:
                with suppress(Exception):
                    await bot.stop()
            with suppress(Exception):
                await core.stop()
            with suppress(Exception):
                await paper.close()
            await db.close()
            if tmp is not None:
                tmp.cleanup()

    def _feed_first_price(self, paper: PaperExchange) -> None:
        """The market must have a price before the first grid preview."""
        paper.feed_trade(self.symbol, Decimal(repr(float(self.candles.open[0]))), self._now_ms)

    def _on_progress(self, progress: ReplayProgress) -> None:
        self._progress = progress
        self._now_ms = progress.ts_ms

    async def _say(self, chat: ConsoleChat, line: str) -> None:
        self.write(f"you> {line}")
        await chat.handle_line(line)

    async def _run_script_until(self, chat: ConsoleChat, fraction: float) -> None:
        while self.script and self.script[0][0] <= fraction:
            _, line = self.script.pop(0)
            await self._say(chat, line)

    async def _run_unattended(self, replay: CandleReplay, chat: ConsoleChat) -> None:
        """Replay in chunks so scripted commands run at their point of the replay."""
        total = replay.total_vertices
        start = 0
        marks = sorted({min(total, max(1, int(f * total))) for f, _ in self.script if f < 1.0})
        for i, mark in enumerate([*marks, total]):
            if mark > start:
                await replay.run(start, mark)
                start = mark
            chat.flush_alerts()
            await self._run_script_until(chat, mark / total if total else 1.0)
            if i % 4 == 0:
                self.write(self._progress_text())

    def _progress_text(self) -> str:
        p = self._progress
        return f"replay {100 * p.fraction:5.1f}% at {fmt_decimal(p.price)}" if p else "replay starting"

    async def _run_live(self, replay: CandleReplay, chat: ConsoleChat) -> None:
        from rich.live import Live

        async def refresh() -> None:
            while True:
                await asyncio.sleep(0.25)
                grids = await chat.api.list_grids()
                running = [g for g in grids if g.state == "running"]
                profit = sum((g.grid_profit for g in grids), Decimal(0))
                self._status_cache = f"{len(running)} grid(s) running, profit {profit:.2f} {QUOTE}"
                if self._live is not None:
                    self._live.update(self._status_line())

        with Live(self._status_line(), refresh_per_second=8, transient=True) as live:
            self._live = live
            ticker = asyncio.create_task(refresh())
            try:
                await replay.run()
            finally:
                ticker.cancel()
                self._live = None

    async def _read_stdin(self, chat: ConsoleChat) -> None:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            if line.strip():
                await chat.handle_line(line)

    async def _start_telegram(self, core: TradingCore, db: Database) -> Any:
        from tgtrader.telegram.app import build_application, frontend, webhook_of

        token, settings = self.telegram  # type: ignore[misc]
        app = build_application(token=token, api=core, allowed_chat_ids=settings.telegram_allowed_chat_ids, db=db,
                                base_url=settings.telegram_api_base, webhook=webhook_of(settings))
        bot = frontend(app)
        try:
            await bot.start()
        except Exception as exc:  # no network, wrong token: the demo goes on in the console
            self.write(f"Telegram: could not start ({type(exc).__name__}); the demo continues in the console")
            return None
        self.write("Telegram: the bot answers too (paper mode) — try /status from your phone")
        return bot

    def _banner(self) -> None:
        c = self.candles
        first = time.strftime("%Y-%m-%d %H:%M", time.gmtime(int(c.open_time[0]) / 1000))
        last = time.strftime("%Y-%m-%d %H:%M", time.gmtime(int(c.open_time[-1]) / 1000))
        speed = "max" if self.speed is None else f"{self.speed / 4:.0f} candles/s"
        self.write(
            "━" * 72 + "\n"
            f" tgtrader demo — paper exchange, no keys, no network\n"
            f" replaying {len(c):,} real {self.symbol} 1m candles {first} → {last} UTC (speed {speed})\n"
            f" balance {START_QUOTE} {QUOTE}, fee {FEE * 100}% maker/taker paid in {self.fee_asset}. "
            "Type /help for commands.\n"
            + "━" * 72
        )

    # ------------------------------------------------------------ summary

    async def _summary(self, core: TradingCore, db: Database, elapsed: float) -> DemoSummary:
        grids = await core.list_grids()
        fills = await db.fills.list(symbol=self.symbol)
        balances = (await core.balances()).balances
        quote = sum((b.total for b in balances if b.asset == QUOTE), Decimal(0))
        base_asset = self.symbol[: -len(QUOTE)] if self.symbol.endswith(QUOTE) else self.symbol[:3]
        base = sum((b.total for b in balances if b.asset == base_asset), Decimal(0))
        first = Decimal(repr(float(self.candles.open[0])))
        last = Decimal(repr(float(self.candles.close[-1])))
        bnb = sum((b.total for b in balances if b.asset == BNB and base_asset != BNB), Decimal(0))
        start_equity = START_QUOTE + (self.start_balances.get(BNB, Decimal(0)) if base_asset != BNB else 0) * BNB_PRICE
        equity = quote + base * last + bnb * BNB_PRICE
        chart: str | None = None
        if grids:
            chart = self._write_chart(await core.chart_data(grids[0].id))
        fees = sum((f.fee if f.fee_asset == QUOTE else f.fee * (BNB_PRICE if f.fee_asset == BNB else f.price)
                    for f in fills), Decimal(0))
        return DemoSummary(
            symbol=self.symbol,
            candles=len(self.candles),
            start_price=fmt_decimal(first),
            final_price=fmt_decimal(last),
            buys=sum(1 for f in fills if f.side.value == "BUY"),
            sells=sum(1 for f in fills if f.side.value == "SELL"),
            round_trips=sum(g.round_trips for g in grids),
            grid_profit=f"{sum((g.grid_profit for g in grids), Decimal(0)):.2f}",
            realized=f"{sum((g.realized_profit for g in grids), Decimal(0)):.2f}",
            fees=f"{fees:.2f}",
            start_equity=f"{start_equity:.2f}",
            final_equity=f"{equity:.2f}",
            return_pct=f"{(equity / start_equity - 1) * 100:.2f}",
            hold_return_pct=f"{(last / first - 1) * 100:.2f}",
            chart=chart,
            elapsed_s=round(elapsed, 2),
            fills=[(f.ts_ms, f.side.value, fmt_decimal(f.price), fmt_decimal(f.qty)) for f in fills],
        )

    def _write_chart(self, data: Any) -> str | None:
        try:
            from tgtrader.chat.chart import render_chart_png

            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self.out_dir / f"demo_grid_{data.grid_id}.png"
            path.write_bytes(render_chart_png(data))
            return str(path)
        except Exception as exc:  # a chart must never spoil the summary
            logger.warning("demo: chart not written: {}", exc)
            return None

    def _print_summary(self, s: DemoSummary) -> None:
        rows = [
            ("candles replayed", f"{s.candles:,}"),
            ("price", f"{s.start_price} → {s.final_price} {QUOTE}"),
            ("fills", f"{s.buys} buys, {s.sells} sells"),
            ("round trips", str(s.round_trips)),
            ("grid profit", f"{s.grid_profit} {QUOTE} from round trips, after fees"),
            ("realized", f"{s.realized} {QUOTE} incl. sales of the start position"),
            ("fees paid", f"{s.fees} {QUOTE}"),
            ("equity", f"{s.start_equity} → {s.final_equity} {QUOTE} ({s.return_pct}%)"),
            ("buy and hold", f"{s.hold_return_pct}%"),
            ("chart", s.chart or "-"),
            ("took", f"{s.elapsed_s} s"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = ["━" * 72, " demo summary"] + [f"  {k.ljust(width)}  {v}" for k, v in rows] + ["━" * 72]
        self.write("\n".join(lines))
