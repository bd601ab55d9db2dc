"""End to end: the real PTB Application over real HTTP against the fake Bot API, driving the real
TradingCore on the real PaperExchange and a real SQLite database. No mocks of the core."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal as D
from pathlib import Path

import pytest

from tests.fakes.fake_telegram import Call, FakeTelegram
from tests.reliability.harness import fills_reported
from tests.waiting import wait_for
from tgtrader.chat import render
from tgtrader.chat.commands import COMMANDS
from tgtrader.core.api import GridSpec
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import EventBus
from tgtrader.core.service import TradingCore
from tgtrader.exchange.paper import PaperExchange
from tgtrader.store.core_store import CoreStore
from tgtrader.store.db import Database
from tgtrader.telegram.app import TelegramBot, build_application, frontend
from tgtrader.types import OrderType

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

ALICE, BOB, EVE = 777, 888, 555  # Alice and Bob are allowed; Eve is not
GRID = "/grid new BTCUSDT 40000 60000 4 1000"


@dataclass
class Stack:
    fake: FakeTelegram
    db: Database
    paper: PaperExchange
    core: TradingCore
    bot: TelegramBot
    now_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    async def price(self, *prices: str) -> None:
        for price in prices:
            self.now_ms += 1000
            self.paper.feed_trade("BTCUSDT", D(price), self.now_ms)
            await self.core.idle()

    def answers(self, chat: int, before: int) -> list[Call]:
        """What the bot sent to `chat` since `before`, alerts left out (they arrive whenever they are due)."""
        return [c for c in self.fake.sent_to(chat)[before:] if not is_alert(c)]

    async def ask(self, chat: int, text: str, method: str | tuple[str, ...] = ("sendMessage", "sendPhoto")) -> str:
        before = len(self.fake.sent_to(chat))
        self.fake.push_command(chat, text)
        await self.fake.wait_for(lambda: self.answers(chat, before), timeout=5)
        call = self.answers(chat, before)[0]
        assert call.method in ((method,) if isinstance(method, str) else method), call
        return str(call.params.get("text", call.params.get("caption", "")))

    async def press(self, chat: int, data: str, message_id: int | None = None, as_chat: int | None = None) -> str:
        """Press a button; returns the text the bot edited in or sent as the answer."""
        target = as_chat if as_chat is not None else chat
        before = len(self.fake.sent_to(target))
        self.fake.push_callback(target, data, message_id=message_id if as_chat is None else None)
        await self.fake.wait_for(lambda: self.answers(target, before), timeout=5)
        return str(self.answers(target, before)[0].params.get("text", ""))


ALERT_STARTS = ("FILL ", "GRID #", "ROUND TRIP", "STREAM ", "ORDER REJECTED", "ERROR in", "✅", "🛑", "🎯", "[",
                "While alerts", "stop ", "grid ", "Daily summary", "This group was upgraded")


def is_alert(call: Call) -> bool:
    text = str(call.params.get("text", ""))
    return call.method == "sendMessage" and (text.startswith(ALERT_STARTS) or bool(re.match(r"\d+ FILLS", text)))


async def make_stack(tmp_path: Path, fake: FakeTelegram, **kw: object) -> Stack:
    db = await Database.open(tmp_path / "bot.sqlite")
    paper = PaperExchange(db, initial_balances={"USDT": D("10000")})
    core = TradingCore(paper, CoreStore(db), EventBus(), CoreConfig(timer_interval_s=0), mode="paper")
    await core.start()
    await paper.subscribe({"BTCUSDT"})
    options: dict[str, object] = dict(per_chat_interval_s=0.0, notifier_poll_s=0.05,
                                      max_retries=2)
    options.update(kw)
    options.setdefault("allowed_chat_ids", [ALICE, BOB])
    app = build_application(token=fake.token, api=core, db=db,
                            base_url=fake.base_url, base_file_url=fake.base_file_url, **options)  # type: ignore[arg-type]
    bot = frontend(app)
    await bot.start(poll_timeout=1)
    stack = Stack(fake, db, paper, core, bot)
    await stack.price("52000")
    return stack


async def close_stack(stack: Stack) -> None:
    secret_part = stack.fake.token.split(":", 1)[1]
    for call in stack.fake.calls:  # the bot token never appears in anything the bot sent
        assert secret_part not in json.dumps(call.params, default=str), call.method
    await stack.core.stop()  # as the runner does: releases commands waiting on the core
    await stack.bot.stop()
    await stack.paper.close()
    await stack.db.close()


async def test_start_help_and_menu(stack: Stack) -> None:
    text = await stack.ask(ALICE, "/start")
    assert "Mode: PAPER" in text and "10,000.00 USDT free" in text and "receives alerts" in text
    start_call = stack.fake.sent_to(ALICE)[-1]
    assert start_call.params["reply_markup"]["keyboard"][0][0]["text"] == "/status"
    help_text = await stack.ask(ALICE, "/help")
    for command in COMMANDS:
        assert f"/{command.name}" in help_text
    assert "/grid new SYMBOL LOWER UPPER GRIDS INVESTMENT" in help_text
    assert [c["command"] for c in stack.fake.commands] == [c.name for c in COMMANDS]
    for command in COMMANDS:  # every command answers '/cmd help' with its syntax and an example
        answer = await stack.ask(ALICE, f"/{command.name} help")
        assert "Example: /" in answer and answer.startswith("/")


async def test_full_grid_flow_alerts_status_and_panic(stack: Stack) -> None:
    fake = stack.fake
    await stack.ask(ALICE, "/start")
    preview = await stack.ask(ALICE, GRID)
    assert "Grid preview BTCUSDT" in preview and "Levels: 40000, 45000, 50000, 55000, 60000" in preview
    labels = [b["text"] for b in fake.buttons(ALICE)]
    assert labels == ["Start", "Cancel"]
    assert not await stack.core.list_grids()  # the preview placed nothing

    started = await stack.press(ALICE, fake.buttons(ALICE)[0]["callback_data"])
    assert "Grid #1 BTCUSDT started" in started
    grids = await stack.core.list_grids()
    assert len(grids) == 1 and grids[0].state == "running"
    assert any(c.method == "answerCallbackQuery" for c in fake.calls)
    await stack.core.idle()  # the grid's orders go out off the event loop: let them rest before the market moves

    await stack.price("49000", "56000")  # buy at 50000 fills, then its sell at 55000: one round trip
    for chat in (ALICE, BOB):  # alerts go to every authorized chat
        await fake.wait_for(lambda: any("ROUND TRIP" in t for t in fake.texts_to(chat)), timeout=5)
    alerts = "\n".join(fake.texts_to(BOB))
    assert "FILL BTCUSDT BUY" in alerts and "FILL BTCUSDT SELL" in alerts and "[grid:1]" in alerts
    assert "ROUND TRIP grid #1 BTCUSDT: bought 50000 sold 55000" in alerts

    status = await stack.ask(ALICE, "/status")
    assert "Mode: PAPER" in status and "Grids: 1 running" in status and "#1 BTCUSDT running" in status
    assert "Realized today +" in status

    listing = await stack.ask(ALICE, "/grid list")
    assert "#1 BTCUSDT running 40000-60000 x4" in listing and "1 trips" in listing
    chart = await stack.ask(ALICE, "/chart 1", "sendPhoto")
    assert chart.startswith("Grid #1 BTCUSDT")
    assert fake.sent_to(ALICE, ("sendPhoto",))[-1].files["photo"].startswith(b"\x89PNG")

    plan = await stack.ask(ALICE, "/panic")
    assert "PANIC will:" in plan and "stop 1 grid(s)" in plan and "within 30 s" in plan
    assert [b["text"] for b in fake.buttons(ALICE)] == ["CONFIRM PANIC", "Cancel"]
    await stack.press(ALICE, fake.buttons(ALICE)[0]["callback_data"])
    report = await wait_for(lambda: next((t for t in fake.texts_to(ALICE) if t.startswith("PANIC done")), None),
                            10, "the panic report (the grid's exit alert may come first)")
    assert "stopped grid 1" in report and "FAILED" not in report, report
    await stack.core.idle()
    assert (await stack.core.list_grids())[0].state == "stopped"
    assert not await stack.core.open_orders()
    # sold until flat: at most sub-step dust (a buy's fee taken in base)
    assert all(b.total < D("0.00001") for b in (await stack.core.balances()).balances if b.asset == "BTC")
    await wait_for(lambda: any("exit (panic) finished" in t for t in fake.texts_to(ALICE)), 10, "the exit alert")
    assert "Nothing to resume" in await stack.ask(ALICE, "/resume_all")  # panic ended the grid


async def test_grid_stop_asks_for_confirmation(stack: Stack) -> None:
    await stack.ask(ALICE, GRID)
    await stack.press(ALICE, stack.fake.buttons(ALICE)[0]["callback_data"])
    question = await stack.ask(ALICE, "/grid stop 1")
    assert question.startswith("Stop grid #1 BTCUSDT?")
    assert (await stack.core.grid(1)).state == "running"  # nothing happens before the confirmation
    buttons = stack.fake.buttons(ALICE)
    assert [b["text"] for b in buttons] == ["Stop grid #1", "Keep running"]
    answer = await stack.press(ALICE, buttons[0]["callback_data"])
    assert "Grid #1 stopped" in answer
    assert (await stack.core.grid(1)).state == "stopped"
    assert "already stopped" in await stack.ask(ALICE, "/grid stop 1")


async def test_unauthorized_chat_gets_one_neutral_refusal_and_nothing_changes(stack: Stack) -> None:
    fake = stack.fake
    fake.push_command(EVE, GRID)
    fake.push_command(EVE, "/status")
    fake.push_command(EVE, "/panic")
    await stack.ask(ALICE, "/help")  # a later update from Alice: Eve's were processed before it
    texts = await wait_for(lambda: fake.texts_to(EVE), 10, "the refusal sent to Eve")
    assert texts == ["Sorry, this is a private bot."]
    assert not await stack.core.list_grids()
    # Eve replays a button she saw somewhere: the refusal is a toast, nothing runs
    await stack.ask(ALICE, GRID)
    data = fake.buttons(ALICE)[0]["callback_data"]
    fake.push_callback(EVE, data)
    await fake.wait_for(lambda: any(c.method == "answerCallbackQuery" and "private" in str(c.params.get("text"))
                                    for c in fake.calls))
    assert not await stack.core.list_grids()
    assert fake.texts_to(EVE) == ["Sorry, this is a private bot."]
    # no data leaked anywhere in what Eve received
    assert all("USDT" not in t for t in fake.texts_to(EVE))


async def test_forged_expired_and_other_chat_buttons_do_nothing(tmp_path: Path, fake: FakeTelegram) -> None:
    stack = await make_stack(tmp_path, fake, preview_ttl_s=0.5)
    try:
        await stack.ask(ALICE, GRID)
        start = fake.buttons(ALICE)[0]["callback_data"]
        # Bob (allowed, but another chat) presses Alice's Start
        answer = await stack.press(ALICE, start, as_chat=BOB)
        assert "belongs to another chat" in answer
        # forged and malformed data
        assert "no longer valid" in await stack.press(ALICE, "b1:AAAAAAAAAAAAAAAA")
        assert "not valid" in await stack.press(ALICE, "grid_start:1")
        assert not await stack.core.list_grids()
        # expired: let the 0.5 s preview TTL pass (time passing is the scenario; the press checks the clock)
        await asyncio.sleep(0.6)
        assert "expired" in await stack.press(ALICE, start)
        assert not await stack.core.list_grids()
        # a fresh preview works once; its siblings and a second press are spent
        await stack.ask(ALICE, GRID)
        start, cancel = (b["callback_data"] for b in fake.buttons(ALICE))
        assert "started" in await stack.press(ALICE, start)
        assert "already used" in await stack.press(ALICE, start)
        assert "already used" in await stack.press(ALICE, cancel)
        assert len(await stack.core.list_grids()) == 1
    finally:
        await close_stack(stack)


async def test_bad_input_answers_without_reaching_the_core(stack: Stack) -> None:
    cases = {
        "/grid new DOGEXYZ 1 2 10 100": "unknown symbol DOGEXYZ",
        "/grid new BTCUSDT 60000 50000 4 1000": "LOWER must be below UPPER",
        "/grid new BTCUSDT 50000 60000 500 1000": "GRIDS must be from 2 to 200",
        "/grid new BTCUSDT 50000.001 60000 4 1000": "not on the BTCUSDT price tick 0.01",
        "/grid new BTCUSDT abc 60000 4 1000": "LOWER must be a number",
        "/buy BTCUSDT -1": "must be positive",
        "/status now please": "too many arguments",
        "/grid show 99": "99",
        "/chart 99": "99",
        "/grid pause 99": "99",
    }
    for text, needle in cases.items():
        answer = await stack.ask(ALICE, text)
        assert needle in answer, (text, answer)
        assert "Traceback" not in answer
    big = await stack.ask(ALICE, "/grid new BTCUSDT 40000 60000 4 100000")  # above the free balance
    assert "Cannot start" in big and [b["text"] for b in stack.fake.buttons(ALICE)] == ["Cancel"]
    assert not await stack.core.list_grids()


async def test_internal_error_is_logged_with_an_id_never_a_traceback(stack: Stack,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> str:
        raise RuntimeError(f"renderer bug near {stack.fake.token}")

    monkeypatch.setattr(render, "render_status", broken)  # a bug in our own layer, not in the core
    answer = await stack.ask(ALICE, "/status")
    assert answer.startswith("internal error, logged as #")
    assert stack.fake.token not in answer and "RuntimeError" not in answer


async def test_flood_control_on_a_reply_is_waited_out(stack: Stack) -> None:
    stack.fake.fail_next("sendMessage", retry_after=1, times=1)
    t0 = time.monotonic()
    answer = await stack.ask(ALICE, "/balance")
    assert "USDT: 10000" in answer
    assert time.monotonic() - t0 >= 1.0


async def test_burst_of_fills_is_coalesced_into_few_messages(tmp_path: Path, fake: FakeTelegram) -> None:
    """Each event reaches the outbox at once; coalescing happens at delivery, paced per chat (0.5 s here; the
    default is 1 s), so a sweep of dozens of fills arrives as a handful of messages."""
    stack = await make_stack(tmp_path, fake, per_chat_interval_s=0.5)
    try:
        await stack.ask(ALICE, "/grid new BTCUSDT 40000 60000 40 4000")
        await stack.press(ALICE, fake.buttons(ALICE)[0]["callback_data"])
        before = len(fake.texts_to(BOB))
        await stack.price("40100", "59900", "40100")  # sweeps: dozens of fills within a second
        fills = await stack.db.fetchall("SELECT COUNT(*) FROM fills")
        await wait_for(lambda: sum(map(fills_reported, fake.texts_to(BOB)[before:])) >= fills[0][0], 15,
                       f"all {fills[0][0]} fills reported to Bob")
        messages = fake.texts_to(BOB)[before:]
        assert fills[0][0] >= 50
        assert len(messages) <= fills[0][0] // 10, messages  # a handful of messages, not one per fill
        assert all(len(m) <= 4096 for m in messages)
    finally:
        await close_stack(stack)


async def test_account_sizing_stops_and_chase_commands(stack: Stack) -> None:
    fake = stack.fake
    assert "USDT: 10000 / 0" in await stack.ask(ALICE, "/balance")
    assert "No open orders" in await stack.ask(ALICE, "/orders")
    pnl = await stack.ask(ALICE, "/pnl 3")
    assert pnl.startswith("Realized profit per day (UTC):") and pnl.count("round trips") == 3
    sized = await stack.ask(ALICE, "/size BTCUSDT 52000 50000 1%")
    assert sized.startswith("Position size (fixed-fraction)") and "Quantity:" in sized
    kelly = await stack.ask(ALICE, "/size kelly 0.55 1.5")
    assert "kelly" in kelly.lower()
    assert "No stops" in await stack.ask(ALICE, "/stops")

    # /buy chases as a maker; a trade below our bid fills it, then the answer comes
    before = len(fake.sent_to(ALICE))
    fake.push_command(ALICE, "/buy BTCUSDT 0.01 max=52100")
    await fake.wait_for(lambda: any(t.startswith("Working: BUY 0.01 BTCUSDT") for t in fake.texts_to(ALICE)))

    async def resting() -> bool:  # the maker order must rest before the market trades through it
        return any(o.order_type is OrderType.LIMIT_MAKER for o in await stack.paper.open_orders("BTCUSDT"))

    await wait_for(resting, 10, "the chase's maker order resting on the book")
    await stack.price("51900")
    await fake.wait_for(lambda: any(t.startswith("BUY BTCUSDT") for t in fake.texts_to(ALICE)[before:]), timeout=5)
    bought = next(t for t in fake.texts_to(ALICE)[before:] if t.startswith("BUY BTCUSDT"))
    assert bought.startswith("BUY BTCUSDT: filled") and "Filled 0.01 of 0.01" in bought, bought
    assert not any("REJECTED" in t for t in fake.texts_to(ALICE)[before:])

    armed = await stack.ask(ALICE, "/stop BTCUSDT 45000 hard")
    assert armed.startswith("Stop armed:") and "Stop #1 BTCUSDT" in armed
    assert "Stop #1 BTCUSDT" in await stack.ask(ALICE, "/stops")
    cancelled = await stack.ask(ALICE, "/stop cancel 1")
    assert cancelled.startswith("Stop cancelled:") and "cancelled" in cancelled
    missing = await stack.ask(ALICE, "/stop cancel 99")
    assert "99" in missing and "internal error" not in missing


async def test_telegram_down_at_start_trading_goes_on_and_alerts_arrive_later(tmp_path: Path,
                                                                               fake: FakeTelegram) -> None:
    fake.unreachable = True
    t0 = time.monotonic()
    stack = await make_stack(tmp_path, fake, connect_retry_s=0.2)
    try:
        assert time.monotonic() - t0 < 3  # start returned although Telegram is down
        # trade through the core directly while the bot is offline
        preview = await stack.core.preview_grid(GridSpec("BTCUSDT", D(40000), D(60000), 4, D(1000)))
        await stack.core.start_grid(preview.token)
        await stack.price("49000", "56000")

        async def alerts_queued() -> bool:
            return await stack.db.outbox.pending_count() > 0

        await wait_for(alerts_queued, 10, "alerts waiting in the outbox")
        assert not fake.sent_to(ALICE)
        fake.unreachable = False
        for chat in (ALICE, BOB):
            await fake.wait_for(lambda: any("ROUND TRIP" in t for t in fake.texts_to(chat)), timeout=8)
        assert "Grids: 1 running" in await stack.ask(ALICE, "/status")  # polling works too
        assert [c["command"] for c in fake.commands] == [c.name for c in COMMANDS]
    finally:
        await close_stack(stack)


async def test_rejected_token_is_a_config_error_without_the_token(tmp_path: Path, fake: FakeTelegram) -> None:
    from tgtrader.errors import ConfigError

    db = await Database.open(tmp_path / "t.sqlite")
    paper = PaperExchange(db, initial_balances={"USDT": D("10")})
    core = TradingCore(paper, CoreStore(db), EventBus(), CoreConfig(timer_interval_s=0), mode="paper")
    bad = "999:WRONG-secret-token-value"
    app = build_application(token=bad, api=core, allowed_chat_ids=[ALICE], db=db, base_url=fake.base_url)
    try:
        with pytest.raises(ConfigError) as info:
            await frontend(app).start(poll_timeout=1, wait=True)
        assert "WRONG-secret" not in str(info.value)
    finally:
        await frontend(app).stop()
        await paper.close()
        await db.close()


async def test_edited_messages_do_not_rerun_and_daily_summary_is_delivered(stack: Stack) -> None:
    fake = stack.fake
    await stack.ask(ALICE, "/status")
    sent = len(fake.sent_to(ALICE))
    fake.push_edit(ALICE, 1, "/panic")
    await stack.ask(BOB, "/help")  # processed after the edit
    assert len(fake.sent_to(ALICE)) == sent  # the edit ran nothing
    await stack.bot.daily_summary()
    for chat in (ALICE, BOB):
        await fake.wait_for(lambda: any(t.startswith("Daily summary") for t in fake.texts_to(chat)), timeout=5)


async def test_stop_loss_alert_written_by_the_core_reaches_every_chat_once(stack: Stack) -> None:
    fake = stack.fake
    await stack.ask(ALICE, GRID + " sl=39000 sell_on_stop")
    await stack.press(ALICE, fake.buttons(ALICE)[0]["callback_data"])
    await stack.price("38000")
    for chat in (ALICE, BOB):
        await fake.wait_for(lambda: any("stop-loss" in t for t in fake.texts_to(chat)), timeout=5)
        await fake.wait_for(lambda: any("GRID #1 BTCUSDT STOPPED" in t for t in fake.texts_to(chat)), timeout=5)
    await asyncio.sleep(0.3)  # quiet period: a second stop-loss alert (rendered from the bus too) shows up now

    async def drained() -> bool:
        return await stack.db.outbox.pending_count() == 0

    await wait_for(drained, 10, "every outbox row sent")
    joined = "\n".join(fake.texts_to(BOB))
    assert joined.count("stop-loss at 38000") == 1, joined  # the core's AlertIntent, once
    grid = await stack.core.grid(1)
    assert grid.state == "stopped"
    # the one tick 52000 -> 38000 filled the buys at 50000..40000 on its way down: sell_on_stop sold that base too
    assert grid.base_held < D("0.00001"), grid  # sold until flat (sub-step dust from a fee taken in base)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhook_mode_answers_pushed_updates_and_refuses_a_wrong_secret(tmp_path: Path,
                                                                             fake: FakeTelegram) -> None:
    """Telegram pushes updates to the bot's webhook server (real PTB + tornado): setWebhook carries the URL
    and secret; an update with the secret is answered; one without it (or with another) gets 403 and
    reaches nothing; no getUpdates polling happens."""
    from tgtrader.telegram.app import Webhook

    port = _free_port()
    hook = Webhook(f"http://127.0.0.1:{port}/tg/hook-path", listen="127.0.0.1", port=port)
    stack = await make_stack(tmp_path, fake, webhook=hook)
    try:
        assert fake.webhook is not None
        assert fake.webhook["url"] == hook.url and fake.webhook["secret_token"] == hook.secret_token
        reply = await stack.ask(ALICE, "/status")
        assert reply.startswith("Mode: PAPER"), reply
        preview = await stack.ask(ALICE, GRID)
        assert "Start" in json.dumps(fake.buttons(ALICE))
        assert preview
        before = len(fake.calls)
        update = {"update_id": 999, "message": {
            "message_id": 5, "date": int(time.time()), "chat": {"id": ALICE, "type": "private", "first_name": "A"},
            "from": {"id": ALICE, "is_bot": False, "first_name": "A"}, "text": "/panic",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}}
        assert await fake.post_to_webhook(update, None) == 403
        assert await fake.post_to_webhook(update, "not-the-secret") == 403
        await asyncio.sleep(0.3)  # quiet period: anything the forged /panic reached would call Telegram now
        assert len(fake.calls) == before  # the forged /panic reached nothing
        assert not any(c.method == "getUpdates" for c in fake.calls)
        assert set(fake.webhook_statuses) == {200, 403}
    finally:
        await close_stack(stack)
