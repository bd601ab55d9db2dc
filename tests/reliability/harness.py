"""Process harness for the reliability suite: the REAL bot (`python -m tgtrader run`, live mode) as a child
process against the loopback fake Binance and fake Bot API running in this (the test's) event loop.

Why a child process: SIGKILL at a random point is the only honest crash test, and only a separate
process can be killed and restarted on the same SQLite file while the fakes keep the exchange's truth
(orders, trades, per-client-order-id POST counters) across the crash.

    h = Harness(tmp_path); await h.start()          # fakes up, no bot yet
    await h.start_bot()                             # spawn, wait until it long-polls Telegram
    await h.command("/start")                       # -> reply text
    gid = await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
    await h.move("BTCUSDT", "49400")                # fake fills resting orders the move touched
    h.kill()                                        # SIGKILL
    await h.start_bot()                             # same DB
    problems = await h.check_all()                  # the invariants of issue 7, by code
    await h.close()

All checkers return a list of human-readable problems (empty = invariant holds), so the long chaos
run can count violations instead of stopping at the first one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.fakes.fake_binance import ACCOUNT, FakeBinance
from tests.fakes.fake_telegram import Call, FakeTelegram
from tests.reliability.invariants import (  # noqa: F401 (GRID_CID, OPEN re-exported)
    GRID_CID,
    OPEN,
    Invariants,
    _int,
    _is_alert,
    _worded,
    fills_reported,
)
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
CHAT = 424242
INTRUDER = 666013


@dataclass
class Secrets:
    """Recognizable fake secrets: long, unique, greppable in any output."""

    api_key: str
    api_secret: str
    bot_token: str

    @classmethod
    def make(cls) -> "Secrets":
        tag = secrets.token_hex(6)
        return cls(
            api_key=f"RELKEY{tag}" + secrets.token_hex(26),
            api_secret=f"RELSECRET{tag}" + secrets.token_hex(24),
            bot_token=f"{700000000 + secrets.randbelow(99999999)}:RELTOKEN{tag}" + secrets.token_urlsafe(20).replace("=", ""),
        )

    def all(self) -> dict[str, str]:
        return {"api_key": self.api_key, "api_secret": self.api_secret, "bot_token": self.bot_token}


@dataclass
class BotRun:
    proc: asyncio.subprocess.Process
    started: float
    ended: float | None = None
    returncode: int | None = None
    killed: bool = False


@dataclass
class Harness(Invariants):
    tmp: Path
    chat_id: int = CHAT
    other_chats: tuple[int, ...] = ()  # further allowed chats (button-binding tests)
    log_level: str = "INFO"
    extra_env: dict[str, str] = field(default_factory=dict)
    balances: dict[str, str] = field(default_factory=lambda: {"USDT": "100000", "BTC": "1", "ETH": "20", "ADA": "50000"})
    prices: dict[str, str] = field(default_factory=lambda: {"BTCUSDT": "50000", "ETHUSDT": "3000", "ADAUSDT": "0.5"})
    symbols: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.tmp = Path(self.tmp)
        self.secrets = Secrets.make()
        self.db_path = self.tmp / "tgtrader.sqlite"
        self.log_dir = self.tmp / "logs"
        self.out_dir = self.tmp / "proc"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.binance = FakeBinance(symbols=self.symbols, api_key=self.secrets.api_key, api_secret=self.secrets.api_secret)
        self.telegram = FakeTelegram(token=self.secrets.bot_token)
        self.runs: list[BotRun] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.kills = 0
        self.slow_stops = 0  # SIGTERM not obeyed within the timeout (then SIGKILLed)
        self.kill_times: list[float] = []
        # alerts delivered twice because a SIGKILL landed between Telegram accepting them and the outbox
        # marking them sent (Telegram has no idempotency key: at-least-once is the best possible there)
        self.alert_dups_kill_window: list[str] = []
        # order ids resting on the fake right before each kill (to prove none was cancelled by the restart)
        self.resting_at_kill: set[int] = set()
        self.user_cancels: set[str] = set()  # cids the test itself asked to cancel (pause/stop/panic)
        # fills in the DB and the last outbox row id when the current bot run started: every fill the running
        # bot stores after that owes an alert in a later outbox row (alerts buffered at a SIGKILL are lost)
        self.run_fills_base = 0
        self.run_outbox_base = 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> "Harness":
        await self.binance.start()
        await self.telegram.start()
        for asset, free in self.balances.items():
            self.binance.set_balance(asset, free)
        for symbol, price in self.prices.items():
            await self.binance.set_price(symbol, price)
        return self

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                await self.stop_bot(timeout=15)
            except TimeoutError:  # recorded; tests that care about graceful stops assert on it
                self.slow_stops += 1
        await self.telegram.stop()
        await self.binance.stop()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TGTRADER_", "BINANCE_", "TELEGRAM_", "PYTEST", "COV_"))}
        env.update({
            "TGTRADER_MODE": "live",
            "BINANCE_API_KEY": self.secrets.api_key,
            "BINANCE_API_SECRET": self.secrets.api_secret,
            "BINANCE_REST_URL": self.binance.rest_url,
            "BINANCE_WS_URL": self.binance.ws_url,
            "TELEGRAM_BOT_TOKEN": self.secrets.bot_token,
            "TELEGRAM_ALLOWED_CHAT_IDS": ",".join(str(c) for c in (self.chat_id, *self.other_chats)),
            "TELEGRAM_API_BASE": self.telegram.base_url,
            "TGTRADER_DB": str(self.db_path),
            "TGTRADER_LOG_DIR": str(self.log_dir),
            "TGTRADER_LOG_LEVEL": self.log_level,
            "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1",
            "PYTHONPATH": str(REPO),
        })
        env.update(self.extra_env)
        return env

    async def start_bot(self, timeout: float = 30.0, wait_telegram: bool = True) -> float:
        """Spawn the bot and wait until it long-polls Telegram (or, with wait_telegram=False, until the core
        says it is running: Telegram may be down on purpose). Returns seconds."""
        assert self.proc is None or self.proc.returncode is not None, "bot already running"
        n = len(self.runs)
        polls_before = self._polls()
        self.run_fills_base, self.run_outbox_base = self._alert_baseline()
        t0 = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "tgtrader", "run",
            cwd=str(self.tmp), env=self.env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=open(self.out_dir / f"stdout.{n}.txt", "wb"),
            stderr=open(self.out_dir / f"stderr.{n}.txt", "wb"),
            start_new_session=True,
        )
        self.runs.append(BotRun(self.proc, t0))
        deadline = t0 + timeout
        while not (self._polls() > polls_before if wait_telegram else "tgtrader running in" in self.stderr(n)):
            if self.proc.returncode is not None:
                raise RuntimeError(f"bot exited with {self.proc.returncode} during start:\n{self.stderr(n)[-3000:]}")
            if time.monotonic() > deadline:
                self.proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER=1: every thread's stack to stderr
                try:
                    await asyncio.wait_for(self.proc.wait(), 10)
                except TimeoutError:
                    self.proc.kill()
                    await self.proc.wait()
                raise TimeoutError(f"bot not ready after {timeout} s (stacks dumped):\n{self.stderr(n)[-6000:]}")
            await asyncio.sleep(0.02)
        return time.monotonic() - t0

    def _alert_baseline(self) -> tuple[int, int]:
        """(fills, last outbox id) in the DB while no bot runs; (0, 0) before the first run created it."""
        if not self.db_path.exists():
            return 0, 0
        try:
            fills = self.db_rows("SELECT COUNT(*) FROM fills")[0][0]
            last = self.db_rows("SELECT COALESCE(MAX(id), 0) FROM outbox")[0][0]
        except sqlite3.OperationalError as exc:  # killed before the first migration finished
            if "no such table" not in str(exc):
                raise
            return 0, 0
        return int(fills), int(last)

    def _polls(self) -> int:
        return sum(1 for c in self.telegram.calls if c.method == "getUpdates")

    def kill(self) -> None:
        """SIGKILL now (no cleanup of any kind runs in the bot)."""
        assert self.proc is not None and self.proc.returncode is None
        self.note_kill()
        os.kill(self.proc.pid, signal.SIGKILL)

    def note_kill(self) -> None:
        """Book-keeping for a SIGKILL about to be sent (also by hooks that kill from inside the fake)."""
        self.resting_at_kill |= {o.order_id for o in self.resting()}
        self.runs[-1].killed = True
        self.kills += 1
        self.kill_times.append(time.monotonic())

    async def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        self.runs[-1].ended, self.runs[-1].returncode = time.monotonic(), rc
        return rc

    async def kill_and_wait(self) -> None:
        self.kill()
        await self.wait_exit()

    async def stop_bot(self, timeout: float = 20.0) -> int:
        """SIGTERM: the graceful path."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await self.wait_exit(timeout)
        except TimeoutError:
            self.proc.kill()
            await self.wait_exit()
            raise

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr(self, n: int = -1) -> str:
        n = n if n >= 0 else len(self.runs) - 1
        p = self.out_dir / f"stderr.{n}.txt"
        return p.read_text(errors="replace") if p.exists() else ""

    # ------------------------------------------------------------ chat

    def _calls_since(self, index: int, chat_id: int, methods: tuple[str, ...]) -> list[Call]:
        return [c for c in self.telegram.calls[index:]
                if c.ok and c.method in methods and _int(c.params.get("chat_id")) == chat_id]

    async def command(self, text: str, chat_id: int | None = None, timeout: float = 30.0,
                      want: Callable[[str], bool] | None = None) -> str:
        """Send a chat message; return the text of the bot's answer (the first message matching `want`).

        Alerts share the chat, so by default the first message that is not an alert is the answer."""
        chat = self.chat_id if chat_id is None else chat_id
        index = len(self.telegram.calls)
        self.telegram.push_command(chat, text)
        pred = want or (lambda t: not _is_alert(t))
        call = await self._wait_call(index, chat, ("sendMessage", "sendPhoto"), pred, timeout)
        return str(call.params.get("text", call.params.get("caption", "")))

    async def press(self, label: str, chat_id: int | None = None, timeout: float = 30.0) -> str:
        """Press the button labelled `label` on the latest message with buttons; return the bot's answer."""
        chat = self.chat_id if chat_id is None else chat_id
        buttons = {b["text"]: b["callback_data"] for b in self.telegram.buttons(chat)}
        if label not in buttons:
            raise AssertionError(f"no button {label!r} in {sorted(buttons)}")
        return await self.press_data(buttons[label], chat, timeout=timeout)

    async def press_data(self, data: str, chat_id: int, message_id: int | None = None, timeout: float = 30.0,
                         user_id: int | None = None) -> str:
        index = len(self.telegram.calls)
        self.telegram.push_callback(chat_id, data, message_id=message_id, user_id=user_id)
        call = await self._wait_call(index, chat_id, ("editMessageText", "sendMessage"), lambda t: not _is_alert(t), timeout)
        return str(call.params.get("text", ""))

    async def _wait_call(self, index: int, chat: int, methods: tuple[str, ...], pred: Callable[[str], bool],
                         timeout: float) -> Call:
        deadline = time.monotonic() + timeout
        while True:
            for c in self._calls_since(index, chat, methods):
                if pred(str(c.params.get("text", c.params.get("caption", "")))):
                    return c
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer in chat {chat} within {timeout} s")
            if self.proc is not None and self.proc.returncode is not None:
                raise RuntimeError(f"bot died ({self.proc.returncode}):\n{self.stderr()[-3000:]}")
            await asyncio.sleep(0.02)

    async def create_grid(self, symbol: str, lower: str, upper: str, n: int, invest: str, extra: str = "") -> int:
        preview = await self.command(f"/grid new {symbol} {lower} {upper} {n} {invest} {extra}".strip())
        labels = [b["text"] for b in self.telegram.buttons(self.chat_id)]
        if "Start" not in labels:
            raise AssertionError(f"preview without a Start button:\n{preview}")
        answer = await self.press("Start")
        m = re.search(r"#(\d+)", answer)
        if m is None or "started" not in answer.lower():
            raise AssertionError(f"grid did not start:\n{answer}")
        return int(m.group(1))

    async def move(self, symbol: str, price: str | Decimal) -> int:
        return await self.binance.set_price(symbol, str(price))

    # ------------------------------------------------------------ state

    def db_rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Read the bot's DB from outside (a second process would do the same); retries while locked."""
        for _attempt in range(100):
            try:
                con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
                try:
                    return con.execute(sql, params).fetchall()
                finally:
                    con.close()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(0.05)
        raise RuntimeError("database stayed locked")

    def orders(self) -> list[Any]:
        """Every order the fake exchange ever accepted (EngineOrder records)."""
        return self.binance.engine.all_orders(ACCOUNT)

    def fake_fills(self) -> dict[tuple[str, int], Any]:
        return {(f.symbol, f.trade_id): f for sym in self.binance.rules for f in self.binance.trades(sym)}

    def db_fills(self) -> list[tuple]:
        return self.db_rows("SELECT symbol, trade_id, client_order_id, price, qty FROM fills")

    def grids(self) -> list[dict[str, Any]]:
        rows = self.db_rows("SELECT id, symbol, state, runtime FROM grids")
        out = []
        for gid, symbol, state, runtime in rows:
            out.append({"id": gid, "symbol": symbol, "state": state, "runtime": json.loads(runtime) if runtime else None})
        return out

    def snapshot(self) -> dict[str, Any]:
        """Everything a stranger could change: DB tables and the fake exchange's orders and balances."""
        tables = {}
        for (name,) in self.db_rows("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"):
            tables[name] = sorted(map(repr, self.db_rows(f"SELECT * FROM {name}")))
        return {
            "db": tables,  # includes the outbox: drain it first (a delivery changes sent_ms)
            "orders": sorted((o.client_order_id, o.status.value, str(o.executed_qty)) for o in self.orders()),
            "balances": {a: (str(b.free), str(b.locked)) for a, b in self.binance.engine.balances(ACCOUNT).items()},
            "posts": dict(self.binance.order_posts),
        }

    @staticmethod
    def diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
        """Readable differences between two snapshots."""
        out = []
        for key in sorted(set(a) | set(b)):
            if key == "db":
                for t in sorted(set(a["db"]) | set(b["db"])):
                    ra, rb = set(a["db"].get(t, [])), set(b["db"].get(t, []))
                    out += [f"{t} -{r}" for r in sorted(ra - rb)] + [f"{t} +{r}" for r in sorted(rb - ra)]
            elif a.get(key) != b.get(key):
                out.append(f"{key}: {a.get(key)} -> {b.get(key)}")
        return out

    def resting(self) -> list[Any]:
        return self.binance.engine.open_order_records(ACCOUNT)

    async def settle(self, timeout: float = 60.0, quiet_s: float = 1.5) -> bool:
        """Wait until the bot stops changing exchange and DB state for `quiet_s`, no DB order is in flight and
        the DB holds as many fills as the exchange made (a bot that missed a fill has not settled).

        The harness's timeouts are bounds for a loaded machine, not expected durations (a passing wait returns as
        soon as its condition holds): under load an order whose answer came late is looked up for up to 16 s before
        the bot may call it settled, so 20 s was too tight when the suite shared two cores with other work."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            try:
                inflight = self.db_rows("SELECT COUNT(*) FROM orders WHERE status = 'PENDING_NEW'")[0][0]
                db_state = self.db_rows("SELECT COUNT(*), MAX(updated_ms) FROM orders")[0] + \
                    self.db_rows("SELECT COUNT(*) FROM fills")[0]
            except sqlite3.OperationalError:
                inflight, db_state = 1, None
            state = (db_state, tuple(sorted((o.order_id, o.status.value) for o in self.orders())),
                     sum(self.binance.order_posts.values()))
            if state != last:
                last, since = state, time.monotonic()
            elif inflight == 0 and time.monotonic() - since >= quiet_s and db_state is not None \
                    and db_state[-1] >= len(self.fake_fills()):  # the bot has seen every fill the exchange made
                return True
            await asyncio.sleep(0.1)
        return False

    async def quiesce(self, timeout: float = 60.0) -> bool:
        """Settled exchange/DB state, every fill's alert written to the outbox, outbox empty."""
        ok = await self.settle(timeout=timeout, quiet_s=0.8)
        await self.alerts_written(timeout)
        return ok and await self.outbox_drained(timeout)

    def fills_alerted(self) -> bool:
        """Every fill the running bot stored is in an alert it wrote to the outbox for our chat.

        The bot writes an alert on the next turn of its event loop after the fill (issue 16; it used to hold them
        in memory for a coalescing window), invisible from outside; the fills they report are not, so this is
        the positive condition behind "the alerts are on disk"."""
        stored = self.db_rows("SELECT COUNT(*) FROM fills")[0][0] - self.run_fills_base
        rows = self.db_rows("SELECT kind, text, payload FROM outbox WHERE id > ? AND chat_id = ?",
                            (self.run_outbox_base, self.chat_id))
        return sum(fills_reported(_worded(*row)) for row in rows) >= stored

    async def alerts_written(self, timeout: float = 40.0) -> None:
        """Wait (bounded) until `fills_alerted()`: the bot's coalescing window for them is over."""
        await wait_for(self.fills_alerted, timeout, "every fill stored by the running bot to be alerted in the outbox")

    async def outbox_drained(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.db_rows("SELECT COUNT(*) FROM outbox WHERE sent_ms IS NULL")[0][0] == 0:
                return True
            await asyncio.sleep(0.1)
        return False

    # ------------------------------------------------------------ secrets

    def output_files(self) -> list[Path]:
        files = [p for p in self.out_dir.glob("*") if p.is_file()]
        if self.log_dir.exists():
            files += [p for p in self.log_dir.rglob("*") if p.is_file()]
        files += [p for p in self.tmp.glob("tgtrader.sqlite*") if p.is_file()]
        return files

    def scan_secrets(self) -> list[str]:
        """Every output (stdout/stderr of every run, every log file, every SQLite byte incl. WAL, every
        call the fake Bot API received except the URL path that must carry the token) searched for the
        key, the secret, the token and the token's secret half."""
        needles = dict(self.secrets.all())
        needles["bot_token_secret_part"] = self.secrets.bot_token.split(":", 1)[1]
        found = []
        for path in self.output_files():
            data = path.read_bytes()
            for name, value in needles.items():
                if value.encode() in data:
                    found.append(f"{name} in {path.name}")
        for c in self.telegram.calls:
            blob = json.dumps(c.params, default=str)
            for name, value in needles.items():
                if value in blob:
                    found.append(f"{name} in a {c.method} call to Telegram")
        return found


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
