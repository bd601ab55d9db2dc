"""Start in any weather (issue 19): `tgtrader run` with Binance unreachable keeps retrying, says why in the log,
the chat and `/status`, keeps Docker's healthcheck green ("alive and trying"), and starts trading (after
reconciling) once the exchange answers, never sending an order before."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.fakes.fake_binance import ACCOUNT, API_KEY, API_SECRET, FakeBinance
from tests.fakes.fake_telegram import TOKEN, FakeTelegram
from tests.fakes.tcp_gate import TcpGate
from tests.waiting import wait_for
from tgtrader import health
from tgtrader.config import Settings, load_settings
from tgtrader.runner import serve

CHAT = 777


def _settings(tmp: Path, gate: TcpGate, telegram: FakeTelegram) -> Settings:
    return load_settings(env={
        "TGTRADER_MODE": "live",
        "BINANCE_API_KEY": API_KEY, "BINANCE_API_SECRET": API_SECRET,
        "BINANCE_REST_URL": f"http://127.0.0.1:{gate.port}/api", "BINANCE_WS_URL": f"ws://127.0.0.1:{gate.port}/",
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_ALLOWED_CHAT_IDS": str(CHAT),
        "TELEGRAM_API_BASE": telegram.base_url,
        "TGTRADER_DB": str(tmp / "bot.db"), "TGTRADER_LOG_DIR": str(tmp / "logs"),
    }, env_file=None)


def _verdict(settings: Settings) -> tuple[int, str]:
    return health.verdict(health.read(health.heartbeat_path(settings.db_path)), int(time.time() * 1000))


async def _answer(telegram: FakeTelegram, text: str, want: str) -> str:
    before = len(telegram.texts_to(CHAT))
    telegram.push_command(CHAT, text)
    await telegram.wait_for(lambda: any(want in t for t in telegram.texts_to(CHAT)[before:]), timeout=15)
    return next(t for t in telegram.texts_to(CHAT)[before:] if want in t)


async def test_binance_unreachable_at_start_then_back(tmp_path: Path) -> None:
    binance = await FakeBinance().start()
    gate = TcpGate(binance.port)
    await gate.open()
    try:
        for asset, free in (("USDT", "100000"), ("BTC", "1")):
            binance.set_balance(asset, free)
        await binance.set_price("BTCUSDT", "50000")
        async with FakeTelegram() as telegram:
            settings = _settings(tmp_path, gate, telegram)
            # first run, exchange up: a grid is started, then the bot stops; fills happen while it is down
            stop = asyncio.Event()
            bot = asyncio.create_task(serve(settings, paper=False, stop=stop, retry_s=(0.2, 0.5)))
            await telegram.wait_for(lambda: any(c.method == "getUpdates" for c in telegram.calls), timeout=15)
            assert _verdict(settings) == (0, "trading")
            telegram.push_command(CHAT, "/grid new BTCUSDT 49000 51000 4 400")
            await telegram.wait_for(lambda: telegram.buttons(CHAT), timeout=15)
            telegram.push_callback(CHAT, telegram.buttons(CHAT)[0]["callback_data"])
            await telegram.wait_for(lambda: any("started" in t for t in telegram.texts_to(CHAT)), timeout=15)
            # "started" answers once the grid's orders are saved; they leave off the event loop, so wait until the
            # exchange holds all four (two buys, two sells) before stopping: the test needs its buy at 49500 there
            await wait_for(lambda: len(binance.venue.open_order_records(ACCOUNT, "BTCUSDT")) == 4, 15,
                           "the grid's four orders resting on the exchange")
            stop.set()
            assert await asyncio.wait_for(bot, 30) == 0
            assert _verdict(settings)[0] == 1  # no bot, no heartbeat
            posts_before = sum(binance.order_posts.values())
            assert await binance.set_price("BTCUSDT", "49400") > 0  # a grid buy fills while the bot is down
            await gate.close()

            # second run, exchange unreachable: alive, trying, saying why; nothing sent
            stop = asyncio.Event()
            bot = asyncio.create_task(serve(settings, paper=False, stop=stop, retry_s=(0.2, 0.5)))
            await telegram.wait_for(lambda: any("Not trading yet" in t for t in telegram.texts_to(CHAT)), timeout=15)
            status = await _answer(telegram, "/status", "Not trading yet")
            assert "cannot reach the exchange" in status
            code, line = _verdict(settings)
            assert code == 0 and line.startswith("alive and trying"), line
            await asyncio.sleep(1.5)  # several retries
            assert not bot.done()
            assert sum(binance.order_posts.values()) == posts_before

            await gate.open()
            await telegram.wait_for(lambda: any("trading started" in t for t in telegram.texts_to(CHAT)), timeout=20)
            status = await _answer(telegram, "/status", "Mode:")
            assert "LIVE" in status.upper()
            assert _verdict(settings) == (0, "trading")
            # reconciled: the fill made while down is recorded and its counter order placed, once
            await telegram.wait_for(lambda: sum(binance.order_posts.values()) > posts_before, timeout=15)
            assert all(n == 1 for n in binance.order_posts.values()), binance.order_posts
            stop.set()
            assert await asyncio.wait_for(bot, 30) == 0
    finally:
        await gate.close()
        await binance.stop()


async def test_stop_while_waiting_for_the_exchange(tmp_path: Path) -> None:
    binance = await FakeBinance().start()
    gate = TcpGate(binance.port)  # never opened
    try:
        async with FakeTelegram() as telegram:
            settings = _settings(tmp_path, gate, telegram)
            stop = asyncio.Event()
            bot = asyncio.create_task(serve(settings, paper=True, stop=stop, retry_s=(0.1, 0.2)))
            await telegram.wait_for(lambda: any("Not trading yet" in t for t in telegram.texts_to(CHAT)), timeout=15)
            stop.set()
            assert await asyncio.wait_for(bot, 15) == 0
    finally:
        await binance.stop()


@pytest.mark.parametrize(("state", "age_s", "code"), [
    ("trading", 1, 0), ("waiting", 1, 0), ("starting", 1, 0), ("broken", 1, 1), ("trading", 600, 1)])
def test_health_verdict(state: str, age_s: float, code: int) -> None:
    now = int(time.time() * 1000)
    beat = health.Heartbeat(state=state, reason="why", ts_ms=now - int(age_s * 1000), since_ms=now - 5000)
    assert health.verdict(beat, now)[0] == code
    assert health.verdict(None, now)[0] == 1


# ---------------------------------------------------------------- the pieces (tgtrader/startup.py)

async def test_retry_backs_off_capped_and_returns_the_result() -> None:
    from tgtrader.errors import ExchangeError, ExchangeUnavailable
    from tgtrader.startup import retry_until_started

    results: list[object] = [ExchangeUnavailable("down"), OSError("refused"), ExchangeError("502"), "started"]
    seen: list[tuple[str, float, int]] = []

    async def attempt() -> str:
        r = results.pop(0)
        if isinstance(r, BaseException):
            raise r
        return str(r)

    async def failed(exc: BaseException, delay: float, n: int) -> None:
        seen.append((type(exc).__name__, delay, n))

    assert await retry_until_started(attempt, asyncio.Event(), failed, first_s=0.01, cap_s=0.02) == "started"
    assert seen == [("ExchangeUnavailable", 0.01, 1), ("OSError", 0.02, 2), ("ExchangeError", 0.02, 3)]

    async def bug() -> str:
        raise ValueError("a bug is not retried")

    with pytest.raises(ValueError):
        await retry_until_started(bug, asyncio.Event(), failed, first_s=0.01)


async def test_a_start_whose_reconciliation_failed_is_a_failed_attempt() -> None:
    from tgtrader.core.events import ErrorEvent, EventBus
    from tgtrader.errors import ExchangeError
    from tgtrader.startup import reconciled_start

    bus = EventBus()

    async def start_with_a_gap() -> None:
        bus.publish(ErrorEvent("reconcile", "BTCUSDT: 503 from the exchange", 1))

    with pytest.raises(ExchangeError, match="reconciliation incomplete"):
        await reconciled_start(start_with_a_gap, bus)

    async def clean_start() -> None:
        bus.publish(ErrorEvent("place_order", "not about reconciliation", 1))

    await reconciled_start(clean_start, bus)


async def test_starting_api_refuses_with_the_reason_then_forwards() -> None:
    from tgtrader.core.api import ApiError
    from tgtrader.core.events import EventBus
    from tgtrader.errors import ExchangeError
    from tgtrader.startup import StartingApi, is_auth_failure

    api = StartingApi(EventBus())
    api.reason = "cannot reach the exchange (Cannot reach Binance to read the server time)"
    with pytest.raises(ApiError, match="Not trading yet: cannot reach the exchange"):
        await api.status()

    class Core:
        async def status(self) -> str:
            return "trading"

    api.target = Core()
    assert await api.status() == "trading"
    assert is_auth_failure(ExchangeError("Invalid API-key, IP, or permissions for action.", -2015))
    assert not is_auth_failure(ExchangeError("Internal error", -1001))


# ---------------------------------------------------------------- the real process and its healthcheck

def _proc_env(tmp: Path, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGTRADER_", "BINANCE_", "TELEGRAM_"))}
    env.update({"TGTRADER_DB": str(tmp / "bot.db"), "TGTRADER_LOG_DIR": str(tmp / "logs"),
                "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **extra})
    return env


async def test_the_real_process_waits_for_the_exchange_and_its_healthcheck_says_so(tmp_path: Path) -> None:
    import signal
    import sys

    from tests.fakes.tcp_gate import free_port

    port = free_port()  # nothing listens: Binance unreachable
    env = _proc_env(tmp_path, BINANCE_REST_URL=f"http://127.0.0.1:{port}/api", BINANCE_WS_URL=f"ws://127.0.0.1:{port}/")
    err = tmp_path / "stderr.txt"
    with err.open("wb") as fh:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tgtrader", "run", cwd=tmp_path, env=env,
                                                    stdin=asyncio.subprocess.DEVNULL, stdout=fh, stderr=fh)
    try:
        deadline = time.monotonic() + 30
        while "not trading yet" not in err.read_text(errors="replace"):
            assert proc.returncode is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            await asyncio.sleep(0.1)
        check = await asyncio.create_subprocess_exec(sys.executable, "-m", "tgtrader", "health", cwd=tmp_path, env=env,
                                                     stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await check.communicate()
        assert check.returncode == 0 and b"alive and trying" in out and b"cannot reach the exchange" in out, out
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, err.read_text()
    check = await asyncio.create_subprocess_exec(sys.executable, "-m", "tgtrader", "health", cwd=tmp_path, env=env,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, errout = await check.communicate()
    assert check.returncode == 1 and b"no heartbeat" in errout  # stopped: nothing alive


async def test_bad_settings_still_exit_2_at_once(tmp_path: Path) -> None:
    import sys

    env = _proc_env(tmp_path, TGTRADER_MODE="lvie", BINANCE_REST_URL="http://127.0.0.1:9/api")
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tgtrader", "run", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, errout = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and b"TGTRADER_MODE" in errout
    assert time.monotonic() - t0 < 15


async def test_telegram_and_binance_both_down_at_start(tmp_path: Path) -> None:
    """Nothing answers at start: the bot waits for both; the chat hears why once Telegram is back, then that
    trading started once Binance is back."""
    binance = await FakeBinance().start()
    gate = TcpGate(binance.port)
    try:
        async with FakeTelegram() as telegram:
            telegram.unreachable = True
            settings = _settings(tmp_path, gate, telegram)
            stop = asyncio.Event()
            bot = asyncio.create_task(serve(settings, paper=False, stop=stop, retry_s=(0.2, 0.5)))
            await asyncio.sleep(1.5)
            assert not bot.done() and _verdict(settings)[0] == 0
            telegram.unreachable = False
            await telegram.wait_for(lambda: any("Not trading yet" in t for t in telegram.texts_to(CHAT)), timeout=30)
            await gate.open()
            await telegram.wait_for(lambda: any("trading started" in t for t in telegram.texts_to(CHAT)), timeout=30)
            assert sum("Not trading yet" in t for t in telegram.texts_to(CHAT)) == 1  # said once, not per retry
            stop.set()
            assert await asyncio.wait_for(bot, 30) == 0
    finally:
        await gate.close()
        await binance.stop()


async def test_heartbeat_reports_a_halted_core_as_broken(tmp_path: Path) -> None:
    from tgtrader.runner import _heartbeat

    class HaltedCore:
        _halted = True  # a reaction could not be saved: the kernel stopped trading until a restart

    path = tmp_path / "bot.db.health"
    beat = health.Heartbeat(state=health.TRADING, since_ms=1)
    task = asyncio.create_task(_heartbeat(path, beat, lambda: HaltedCore()))
    try:
        await asyncio.sleep(0.2)
    finally:
        task.cancel()
    code, line = health.verdict(health.read(path), int(time.time() * 1000))
    assert code == 1 and "halted" in line, line


def test_network_failures_are_retried_bugs_are_not() -> None:
    import aiohttp
    from websockets.exceptions import InvalidHandshake

    from tgtrader.errors import ExchangeUnavailable
    from tgtrader.startup import is_network_failure

    for exc in (ExchangeUnavailable("x"), ConnectionRefusedError(), TimeoutError(), aiohttp.ServerDisconnectedError(),
                InvalidHandshake("503")):
        assert is_network_failure(exc), exc
    for exc in (ValueError("bug"), KeyError("bug"), AssertionError("bug")):
        assert not is_network_failure(exc), exc
