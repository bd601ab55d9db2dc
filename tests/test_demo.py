"""The unattended demo: the real core + paper exchange on the shipped candles, driven through the console
chat, must make exactly the fills the vectorized backtester makes on the same candles, and book the same
grid profit, realized profit, fees and round trips under each commission mode (issue 15)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tgtrader.backtest.candles import Candles, load_candles
from tgtrader.backtest.vector import Result, run_backtest
from tgtrader.core.api import GridSpec
from tgtrader.demo import SAMPLE, Demo, DemoSummary, grid_words, read_script
from tgtrader.exchange.paper import load_exchange_info
from tgtrader.fees import FEE_ASSETS, FeeAsset
from tgtrader.store.db import Database

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("fee_asset", FEE_ASSETS)
async def test_unattended_demo_fills_equal_the_backtest(tmp_path: Path, fee_asset: FeeAsset) -> None:
    candles = load_candles(SAMPLE)
    script = tmp_path / "script.txt"
    script.write_text("@25% /status\n@50% /orders\n@75% /pnl\n/size BTCUSDT 20000 19000\n")
    out: list[str] = []
    grid = grid_words(None, float(candles.open[0]))
    demo = Demo(candles, "BTCUSDT", speed=None, grid=grid, script=read_script(script), db_path=tmp_path / "d.db",
                out_dir=tmp_path / "charts", interactive=False, write=out.append, fee_asset=fee_asset)
    summary = await demo.run()
    text = "\n".join(out)
    lower, upper, n, investment = grid.split()
    spec = GridSpec("BTCUSDT", Decimal(lower), Decimal(upper), int(n), Decimal(investment))
    await _assert_demo_is_backtest(tmp_path, candles, spec, summary, fee_asset)
    # what a trader sees: the scripted commands answered, alerts, the summary and the chart
    for needle in ("you> /status", "you> /orders", "you> /pnl", "ALERT", "demo summary", "round trips"):
        assert needle in text
    assert summary.chart is not None and Path(summary.chart).stat().st_size > 10_000


@pytest.mark.parametrize("fee_asset", FEE_ASSETS)
async def test_demo_trailing_grid_equals_the_backtest(tmp_path: Path, fee_asset: FeeAsset) -> None:
    """Issue 17: a trailing grid started in the demo's chat (`/grid new ... trail_up=22500`) follows the sample's
    last-day climb up 4 rungs exactly as the backtest's trailing model does."""
    candles = load_candles(SAMPLE)
    out: list[str] = []
    grid = grid_words(None, float(candles.open[0])) + " trail_up=22500"
    demo = Demo(candles, "BTCUSDT", speed=None, grid=grid, script=[], db_path=tmp_path / "d.db",
                out_dir=tmp_path / "charts", interactive=False, write=out.append, fee_asset=fee_asset)
    summary = await demo.run()
    lower, upper, n, investment, _ = grid.split()
    spec = GridSpec("BTCUSDT", Decimal(lower), Decimal(upper), int(n), Decimal(investment), trail_up=Decimal(22500))
    vec = await _assert_demo_is_backtest(tmp_path, candles, spec, summary, fee_asset)
    assert [m.direction for m in vec.trail_moves] == ["up"] * 4
    assert vec.fills.level.max() > int(n)  # it traded above its first range


async def _assert_demo_is_backtest(tmp_path: Path, candles: Candles, spec: GridSpec, summary: DemoSummary,
                                   fee_asset: FeeAsset) -> Result:
    vec = run_backtest(candles, spec, load_exchange_info()["BTCUSDT"], fee=0.001, fee_asset=fee_asset)
    db = await Database.open(tmp_path / "d.db")
    try:
        fills = await db.fills.list(symbol="BTCUSDT")
    finally:
        await db.close()
    grid_fills = [f for f in fills if f.client_order_id.startswith("tg-g1-") and "-x" not in f.client_order_id]
    assert [(f.side.value, float(f.price)) for f in grid_fills] == [
        (side, pytest.approx(price)) for _, side, _, price, _ in vec.fills.records()
    ]
    assert len(grid_fills) == vec.buys + vec.sells > 20
    assert summary.round_trips == vec.round_trips
    cent = Decimal("0.011")
    assert Decimal(summary.grid_profit) == pytest.approx(Decimal(str(round(vec.grid_profit, 2))), abs=cent)
    assert Decimal(summary.realized) == pytest.approx(Decimal(str(round(vec.realized, 2))), abs=cent)
    assert Decimal(summary.fees) == pytest.approx(Decimal(str(round(vec.fees, 2))), abs=cent)
    assert Decimal(summary.final_equity) - Decimal(summary.start_equity) == pytest.approx(
        Decimal(str(round(vec.final_equity - float(spec.investment), 2))), abs=Decimal("0.01"))
    return vec


def test_demo_cli_runs_unattended_and_exits_0(tmp_path: Path) -> None:
    """`tgtrader demo < /dev/null` — exactly how the README checks it — in a clean working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "BINANCE_", "TGTRADER_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "tgtrader", "demo", "--summary-json", "s.json"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "demo summary" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["buys"] > 10 and summary["sells"] > 10
    assert (tmp_path / summary["chart"]).exists()


def test_demo_bad_arguments_get_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tgtrader", "demo", "--speed", "fast"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("demo: --speed")
    assert "Traceback" not in proc.stderr


async def test_demo_also_answers_in_telegram_when_a_token_is_set(tmp_path: Path) -> None:
    """With TELEGRAM_BOT_TOKEN set the demo's core also answers the (fake) Bot API, paper mode, same replies."""
    from tests.fakes.fake_telegram import TOKEN, FakeTelegram
    from tgtrader.config import load_settings

    chat = 4242
    async with FakeTelegram() as fake:
        settings = load_settings(env={"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_ALLOWED_CHAT_IDS": str(chat),
                                      "TELEGRAM_API_BASE": fake.base_url}, env_file=None)
        candles = load_candles(SAMPLE).slice(0, 600)
        fake.push_command(chat, "/status")
        out: list[str] = []
        demo = Demo(candles, "BTCUSDT", speed=600 * 4 / 3.0, grid=grid_words(None, float(candles.open[0])),
                    script=[], db_path=None, out_dir=tmp_path, interactive=False, telegram=(TOKEN, settings),
                    write=out.append)
        await demo.run()
        await fake.wait_for(lambda: any("Mode: DEMO" in t for t in fake.texts_to(chat)), timeout=5)
        assert any("Telegram: the bot answers too" in line for line in out)
        # the grid's alerts reached the chat through the durable outbox too
        assert any("FILL" in t for t in fake.texts_to(chat))
