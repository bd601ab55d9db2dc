"""The console chat runs the same dispatcher and renderer against the real core (paper exchange)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.waiting import wait_for
from tgtrader.chat.commands import help_text
from tgtrader.console import ConsoleChat
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import EventBus
from tgtrader.core.service import TradingCore
from tgtrader.exchange.paper import PaperExchange
from tgtrader.store.core_store import CoreStore
from tgtrader.store.db import Database


class Core:
    def __init__(self, db: Database, paper: PaperExchange, core: TradingCore) -> None:
        self.db, self.paper, self.core = db, paper, core
        self.now_ms = int(time.time() * 1000)

    async def price(self, *prices: str) -> None:
        for price in prices:
            self.now_ms += 1000
            self.paper.feed_trade("BTCUSDT", D(price), self.now_ms)
            await self.core.idle()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Core]:
    db = await Database.open(tmp_path / "console.sqlite")
    paper = PaperExchange(db, initial_balances={"USDT": D("10000")})
    core = TradingCore(paper, CoreStore(db), EventBus(), CoreConfig(timer_interval_s=0), mode="demo")
    await core.start()
    await paper.subscribe({"BTCUSDT"})
    c = Core(db, paper, core)
    await c.price("52000")
    try:
        yield c
    finally:
        await core.stop()
        await paper.close()
        await db.close()


async def test_console_grid_choices_alerts_and_panic(running: Core, tmp_path: Path) -> None:
    out: list[str] = []
    chat = ConsoleChat(running.core, write=out.append, chart_dir=tmp_path, alert_window_s=0.05)
    chat.attach()
    assert await chat.handle_line("help") == help_text()  # the same words as Telegram's /help
    preview = await chat.handle_line("grid new BTCUSDT 40000 60000 4 1000")
    assert "Grid preview BTCUSDT" in preview and "[1] Start  [2] Cancel" in preview
    started = await chat.handle_line("1")
    assert "Grid #1 BTCUSDT started" in started
    assert await chat.handle_line("1") == "nothing to confirm"  # the choice was spent
    await running.price("49000", "56000")
    await wait_for(lambda: any(line.startswith("ALERT") and "ROUND TRIP grid #1" in line for line in out), 10,
                   "the round trip alert written to the console")
    chart = await chat.handle_line("/chart 1")
    assert (tmp_path / "chart_1.png").read_bytes().startswith(b"\x89PNG") and "chart saved" in chart
    plan = await chat.handle_line("panic")
    assert "[1] CONFIRM PANIC  [2] Cancel" in plan
    report = await chat.handle_line("yes")
    assert report.startswith("PANIC done")
    assert (await running.core.grid(1)).state == "stopped"  # panic ends the grid and sells its coins
    assert "unknown command /frobnicate" in await chat.handle_line("frobnicate")
    assert "LOWER must be below UPPER" in await chat.handle_line("grid new BTCUSDT 9 1 4 100")
    chat.detach()


async def test_console_no_cancels(running: Core, tmp_path: Path) -> None:
    chat = ConsoleChat(running.core, write=lambda _: None, chart_dir=tmp_path)
    await chat.handle_line("grid new BTCUSDT 40000 60000 4 1000")
    assert "cancelled; nothing was placed" in await chat.handle_line("no")
    assert not await running.core.list_grids()


WORDS = st.sampled_from([
    "/grid", "new", "list", "show", "pause", "resume", "stop", "sell", "BTCUSDT", "ETHUSDT", "btcusdt", "NaN",
    "-1", "0", "1", "2", "40000", "60000", "4", "1000", "geo", "sl=39000", "tp=61000", "/size", "kelly", "0.5", "55%",
    "/pnl", "/stop", "cancel", "/stops", "/orders", "/status", "/balance", "/chart", "/help", "/panic", "#1", "help",
    "0.001", "1e5", "∞", "\x00", "/resume_all", "/start", "max=1",
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(WORDS, st.text(max_size=6)), min_size=1, max_size=9))
async def test_fuzz_dispatch_always_answers(running: Core, words: list[str]) -> None:
    """Arbitrary command-like text through the real dispatcher and core: always a short answer."""
    chat = ConsoleChat(running.core, write=lambda _: None)
    answer = await chat.handle_line(" ".join(words))
    assert answer or not " ".join(words).strip()
    assert "internal error" not in answer and "Traceback" not in answer


async def test_run_console_reads_lines_until_quit(running: Core, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from tgtrader.console import run_console

    await run_console(running.core, io.StringIO("status\nbalance\nquit\nstatus\n"), chart_dir=tmp_path)
    out = capsys.readouterr().out
    assert "tgtrader console (demo)" in out and "Mode: DEMO" in out and "USDT: 10000" in out
    assert out.count("Mode: DEMO") == 1  # nothing after quit


async def test_console_tells_a_trailing_move_and_a_stop_loss_once(running: Core, tmp_path: Path) -> None:
    """A machine's alerts (here a trailing move, then the stop-loss) reach the console as they reach the chat; they
    used to go only to the outbox, which the console does not read."""
    out: list[str] = []
    chat = ConsoleChat(running.core, write=out.append, chart_dir=tmp_path, alert_window_s=0.01)
    chat.attach()
    await chat.handle_line("grid new BTCUSDT 48000 56000 4 1000 sl=30000 sell_on_stop trail_up=70000")
    await chat.handle_line("1")
    await running.price("54500", "58100")  # one step over the top (58000): the grid moves up
    await wait_for(lambda: any("moved up" in line for line in out), timeout=5)
    await running.price("29000")
    await wait_for(lambda: any("exit (stop-loss) finished" in line for line in out), timeout=5)
    chat.detach()
    text = "\n".join(out)
    assert text.count("moved up at 58100: now trades 50000 - 58000") == 1, text
    assert text.count("stop-loss at 29000 (trigger 30000)") == 1, text  # the machine's alert; the bus event not again
    assert "STOP-LOSS triggered" not in text
