"""Issue 16, chat safety: people not just chats, stale commands, Telegram's errors classified. Each test drives
the real python-telegram-bot Application against the fake Bot API, on the real core and paper exchange."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest
from loguru import logger

from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.test_bot_e2e import ALICE, BOB, GRID, Stack, _free_port, close_stack, make_stack
from tests.waiting import wait_for
from tgtrader.errors import ConfigError
from tgtrader.telegram.access import MIGRATIONS_KEY
from tgtrader.telegram.app import Webhook

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

GROUP, SUPER = -4001, -1004001
MALLORY, READER = 999, 333  # a group member nobody listed; a read-only user


@pytest.fixture
def private(stack: Stack) -> Stack:
    """Alice and Bob in their private chats: conftest's `stack`."""
    return stack


@pytest.fixture
def logs() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(f"{m.record['level'].name} {m.record['message']}"), level="INFO")
    yield lines
    logger.remove(sink)


async def ask_in(stack: Stack, chat: int, text: str, user: int) -> str:
    """A message from `user` in `chat`; the bot's next message to that chat."""
    before = len(stack.fake.sent_to(chat))
    stack.fake.push_command(chat, text, user_id=user)
    await stack.fake.wait_for(lambda: stack.answers(chat, before), timeout=5)
    return str(stack.answers(chat, before)[0].params.get("text", ""))


async def quiet(stack: Stack, chat: int = ALICE) -> None:
    """Every earlier update has been handled: updates are processed in order, so one answered after them
    proves it (no sleeping on a guess)."""
    before = len(stack.fake.sent_to(chat))
    stack.fake.push_command(chat, "/help")
    await stack.fake.wait_for(lambda: any("/grid new SYMBOL LOWER UPPER" in t
                                          for t in stack.fake.texts_to(chat)[before:]), timeout=5)


async def test_in_a_group_only_allowed_people_command_or_press(tmp_path: Path, fake: FakeTelegram) -> None:
    stack = await make_stack(tmp_path, fake, allowed_chat_ids=[ALICE, GROUP], allowed_user_ids=[BOB],
                             readonly_user_ids=[READER])
    try:
        for text in ("/balance", "/panic", GRID, "/status"):  # Mallory is in the group but on no list
            fake.push_command(GROUP, text, user_id=MALLORY)
        assert (await ask_in(stack, GROUP, "/balance", BOB)).startswith("Balances")  # Bob is listed
        assert len(fake.sent_to(GROUP)) == 1  # nothing answered Mallory
        # Alice: her private chat is allowed, so she may command in the group too (settings before user lists)
        plan = await ask_in(stack, GROUP, "/panic", ALICE)
        assert "PANIC will:" in plan
        confirm = fake.buttons(GROUP)[0]["callback_data"]
        fake.push_callback(GROUP, confirm, user_id=MALLORY)
        await fake.wait_for(lambda: any(c.method == "answerCallbackQuery" and "allowed" in str(c.params.get("text"))
                                        for c in fake.calls))
        # a read-only user reads, but neither trades nor presses
        assert (await ask_in(stack, GROUP, "/status", READER)).startswith("Mode: PAPER")
        assert "read-only" in await ask_in(stack, GROUP, "/buy BTCUSDT 0.01", READER)
        fake.push_callback(GROUP, confirm, user_id=READER)
        await fake.wait_for(lambda: any(c.method == "answerCallbackQuery" and "read-only" in str(c.params.get("text"))
                                        for c in fake.calls))
        await quiet(stack)
        assert not any("PANIC done" in t for t in fake.texts_to(GROUP))
        assert not await stack.core.list_grids()
    finally:
        await close_stack(stack)


async def test_a_confirmation_can_be_pressed_only_by_the_person_who_asked(tmp_path: Path,
                                                                          fake: FakeTelegram) -> None:
    stack = await make_stack(tmp_path, fake, allowed_chat_ids=[GROUP], allowed_user_ids=[ALICE, BOB])
    try:
        assert "Grid preview" in await ask_in(stack, GROUP, GRID, ALICE)
        start = fake.buttons(GROUP)[0]["callback_data"]
        before = len(fake.sent_to(GROUP))
        fake.push_callback(GROUP, start, user_id=BOB)  # Bob is allowed, but it is Alice's preview
        await fake.wait_for(lambda: len(fake.sent_to(GROUP)) > before)
        assert "Only the person who asked" in fake.texts_to(GROUP)[-1]
        assert not await stack.core.list_grids()
        before = len(fake.sent_to(GROUP))
        fake.push_callback(GROUP, start, user_id=ALICE)
        await fake.wait_for(lambda: len(fake.sent_to(GROUP)) > before)
        assert "started" in fake.texts_to(GROUP)[-1]
        assert len(await stack.core.list_grids()) == 1
    finally:
        await close_stack(stack)


async def test_a_group_without_a_user_list_is_warned_about(tmp_path: Path, fake: FakeTelegram,
                                                           logs: list[str]) -> None:
    stack = await make_stack(tmp_path, fake, allowed_chat_ids=[GROUP])
    try:
        assert any(line.startswith("WARNING") and "ANY member can trade" in line for line in logs), logs
        # as before user lists existed: any member of the allowed group may command (that is what is warned)
        assert (await ask_in(stack, GROUP, "/status", MALLORY)).startswith("Mode: PAPER")
    finally:
        await close_stack(stack)


async def test_commands_for_other_bots_and_chatter_in_groups_are_ignored(tmp_path: Path, fake: FakeTelegram) -> None:
    stack = await make_stack(tmp_path, fake, allowed_chat_ids=[ALICE, GROUP])
    try:
        fake.push_text(GROUP, "good morning everyone", user_id=ALICE)
        fake.push_command(GROUP, "/status@OtherBot", user_id=ALICE)
        fake.push_command(GROUP, "/weather", user_id=ALICE)  # some other bot's command, without @
        answer = await ask_in(stack, GROUP, "/status@tgtrader_test_bot", ALICE)
        assert answer.startswith("Mode: PAPER")
        assert len(fake.sent_to(GROUP)) == 1, fake.texts_to(GROUP)
        before = len(fake.sent_to(ALICE))
        fake.push_text(ALICE, "hello")
        await fake.wait_for(lambda: len(fake.sent_to(ALICE)) > before)
        assert "not a command" in fake.texts_to(ALICE)[-1]  # a private chat still gets the hint
    finally:
        await close_stack(stack)


async def test_a_command_queued_while_offline_is_never_executed(private: Stack) -> None:
    stack = private
    fake = stack.fake
    six_hours = 6 * 3600
    before = len(fake.sent_to(ALICE))
    fake.push_command(ALICE, "/buy BTCUSDT 0.01", age_s=six_hours)
    fake.push_command(ALICE, "/status", age_s=six_hours)  # older than the limit: not even a read
    fake.push_command(ALICE, "/grid new BTCUSDT 40000 60000 4 1000", age_s=20)  # before the start: trading
    fake.push_command(ALICE, "/balance", age_s=20)  # before the start, recent, read-only: answered
    await fake.wait_for(lambda: len(fake.sent_to(ALICE)) >= before + 4)
    await quiet(stack)
    texts = fake.texts_to(ALICE)[before:]
    assert texts[0] == "ignored: /buy was sent 6 h ago while I was offline — send it again if you still want it."
    assert texts[1].startswith("ignored: /status was sent 6 h ago")
    assert re.match(r"ignored: /grid was sent 2\d s ago while I was offline", texts[2]), texts[2]
    assert texts[3].startswith("Balances")
    assert not await stack.paper.open_orders("BTCUSDT") and not await stack.core.list_grids()
    assert not any("Grid preview" in t or "Working" in t for t in texts)


async def test_a_group_upgraded_to_a_supergroup_is_followed_and_stalls_nobody(tmp_path: Path, fake: FakeTelegram,
                                                                            logs: list[str]) -> None:
    stack = await make_stack(tmp_path, fake, allowed_chat_ids=[GROUP, ALICE, BOB])
    try:
        fake.migrate_chat(GROUP, SUPER)
        fake.block_chat(BOB)  # Bob blocked the bot: his chat only
        await stack.bot.daily_summary()
        t0 = time.monotonic()
        await fake.wait_for(lambda: any(t.startswith("Daily summary") for t in fake.texts_to(ALICE)), timeout=5)
        assert time.monotonic() - t0 < 2.0  # no channel-wide backoff behind the group's or Bob's error
        await fake.wait_for(lambda: any(t.startswith("Daily summary") for t in fake.texts_to(SUPER)), timeout=5)
        await fake.wait_for(lambda: any("supergroup" in t and str(SUPER) in t for t in fake.texts_to(ALICE)))
        assert any("supergroup" in t and str(SUPER) in t for t in fake.texts_to(SUPER))
        assert str(SUPER) in str(await stack.db.kv.get(MIGRATIONS_KEY))  # remembered across restarts
        assert not any("unreachable" in line for line in logs), logs
        # the new id is the allowed group now: its commands are answered
        assert (await ask_in(stack, SUPER, "/status", ALICE)).startswith("Mode: PAPER")
    finally:
        await close_stack(stack)


async def test_a_rejected_token_does_not_stop_anything_and_is_retried_slowly(tmp_path: Path, fake: FakeTelegram,
                                                                             logs: list[str]) -> None:
    fake.revoked = True  # Telegram answers 401 to our token
    stack = await make_stack(tmp_path, fake, token_retry_s=0.3)
    try:
        assert stack.bot.fatal and "rejected" in stack.bot.fatal  # start returned: trading is not held up
        assert any(line.startswith("CRITICAL") and "FATAL" in line for line in logs), logs
        fake.revoked = False  # fixed with BotFather: found again by the slow retry
        await wait_for(lambda: stack.bot.fatal is None, 5, "reconnected")
        assert (await stack.ask(ALICE, "/status")).startswith("Mode: PAPER")
        # revoked while running: PTB's polling loop stops for good on InvalidToken; we notice and retry
        logs.clear()
        fake.revoked = True
        await wait_for(lambda: any("FATAL" in line for line in logs), 15, "the revocation noticed")
        fake.revoked = False
        await wait_for(lambda: stack.bot.fatal is None, 5, "reconnected after the revocation")
        assert (await stack.ask(ALICE, "/status")).startswith("Mode: PAPER")
    finally:
        await close_stack(stack)


async def test_a_refused_webhook_is_not_retried_forever(tmp_path: Path, fake: FakeTelegram,
                                                        logs: list[str]) -> None:
    port = _free_port()
    hook = Webhook("https://bot.invalid/hook", listen="127.0.0.1", port=port)
    stack = await make_stack(tmp_path, fake, webhook=hook, connect_retry_s=0.05)
    try:
        await asyncio.sleep(0.5)  # the scenario is time passing: a retry loop would call setWebhook again
        assert sum(c.method == "setWebhook" for c in fake.calls) == 1
        assert stack.bot.fatal and "failed to resolve host" in stack.bot.fatal.lower()
        assert any(line.startswith("CRITICAL") and "refused the bot's setup" in line for line in logs)
    finally:
        await close_stack(stack)


def test_http_webhook_urls_are_refused_at_start_up() -> None:
    with pytest.raises(ConfigError) as info:
        Webhook("http://bot.example.com/hook")
    assert "https://" in str(info.value)
    assert Webhook("http://127.0.0.1:8443/hook").url  # a local Bot API server or a test


def test_the_random_webhook_secret_is_masked_in_logs() -> None:
    from tgtrader.logging_setup import masker

    hook = Webhook("https://bot.example.com/hook")
    assert hook.secret_token not in masker(f"setWebhook secret_token={hook.secret_token}")


async def test_a_slow_answer_callback_query_still_shows_the_result(tmp_path: Path, fake: FakeTelegram) -> None:
    stack = await make_stack(tmp_path, fake, answer_timeout_s=0.3)
    try:
        await stack.ask(ALICE, GRID)
        fake.delays["answerCallbackQuery"] = 5.5  # longer than PTB's default read timeout (5 s)
        fake.push_callback(ALICE, fake.buttons(ALICE)[0]["callback_data"])
        await fake.wait_for(lambda: any("Grid #1 BTCUSDT started" in t for t in fake.texts_to(ALICE)), timeout=3)
        fake.delays.clear()
    finally:
        await close_stack(stack)


async def test_long_answers_are_split_at_lines_and_orders_put_totals_and_the_nearest_first(private: Stack) -> None:
    stack, fake = private, private.fake
    await stack.ask(ALICE, "/grid new BTCUSDT 40000 64000 150 9000")
    assert "started" in await stack.press(ALICE, fake.buttons(ALICE)[0]["callback_data"])

    async def placed() -> list[object]:  # the sells rest once the grid's start buy has filled
        found = await stack.core.open_orders()
        return found if len(found) >= 140 else []

    orders = await wait_for(placed, 10, "the grid's orders resting")
    before = len(fake.sent_to(ALICE))
    fake.push_command(ALICE, "/orders")
    await quiet(stack)
    parts = [t for t in fake.texts_to(ALICE)[before:] if t.startswith(("Open orders", "BTCUSDT"))]  # not alerts
    assert len(parts) >= 2 and all(len(p) <= 4096 for p in parts), [len(p) for p in parts]
    lines = "\n".join(parts).splitlines()
    assert lines[0] == f"Open orders ({len(orders)}):"
    assert lines[1].startswith("BTCUSDT BUY: ") and lines[2].startswith("BTCUSDT SELL: ")  # totals first
    listed = [line for line in lines if line.startswith("BTCUSDT BUY 0") or line.startswith("BTCUSDT SELL 0")]
    assert len(listed) == len(orders)  # nothing cut: every order, sells included
    prices = [D(line.split(" @ ")[1].split()[0]) for line in listed]
    distances = [abs(price - D(52000)) for price in prices]
    assert distances == sorted(distances)  # nearest to the price first
    # /pnl over 120 days: split, and the total is on the first line (and the last)
    before = len(fake.sent_to(ALICE))
    fake.push_command(ALICE, "/pnl 120")
    await quiet(stack)
    pnl = [t for t in fake.texts_to(ALICE)[before:] if "round trips" in t or t.startswith("Total")]
    assert pnl[0].startswith("Realized profit per day (UTC): total ") and pnl[-1].splitlines()[-1].startswith("Total:")


async def test_resume_all_asks_before_placing_orders_again(private: Stack) -> None:
    stack, fake = private, private.fake
    await stack.ask(ALICE, GRID)
    await stack.press(ALICE, fake.buttons(ALICE)[0]["callback_data"])
    await stack.ask(ALICE, "/grid pause 1")
    stack.core.panic_paused.add(1)  # as a /panic that pauses grids leaves it
    question = await stack.ask(ALICE, "/resume_all")
    assert question.startswith("Resume the grids /panic paused?") and "#1 BTCUSDT paused" in question
    assert (await stack.core.grid(1)).state == "paused"  # nothing happens before the confirmation
    assert [b["text"] for b in fake.buttons(ALICE)] == ["Resume 1 grid(s)", "Keep paused"]
    assert "Resumed 1 grid(s)" in await stack.press(ALICE, fake.buttons(ALICE)[0]["callback_data"])
    assert (await stack.core.grid(1)).state == "running"
    await stack.core.idle()  # the resumed grid's orders are placed before the teardown stops the core


async def test_the_webhook_refuses_a_huge_body_before_reading_it(tmp_path: Path, fake: FakeTelegram) -> None:
    """A stranger's 50 MB POST is answered from its Content-Length; nothing is buffered, no secret needed."""
    port = _free_port()
    stack = await make_stack(tmp_path, fake, webhook=Webhook(f"http://127.0.0.1:{port}/tg/hook", port=port))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /tg/hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50000000\r\n\r\n{\"update_id\":")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(200), 3)  # the body is never sent: only a limit answers
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer
        writer.close()
        assert (await stack.ask(ALICE, "/status")).startswith("Mode: PAPER")  # real updates still arrive
    finally:
        await close_stack(stack)


async def test_the_command_menu_is_set_for_the_allowed_chats_only(private: Stack) -> None:
    scopes = private.fake.command_scopes
    chats = sorted(json.loads(scope).get("chat_id") for scope in scopes)
    assert chats == [ALICE, BOB] and all(json.loads(scope)["type"] == "chat" for scope in scopes), scopes
    assert all(any(c["command"] == "panic" for c in commands) for commands in scopes.values())


async def test_flood_control_on_alerts_does_not_hold_up_answers(private: Stack) -> None:
    """Telegram answers an alert with 429 retry_after=3: the alerts wait, the answer to /status does not."""
    stack, fake = private, private.fake
    fake.fail_next("sendMessage", retry_after=3)
    await stack.bot.daily_summary()
    await fake.wait_for(lambda: any(not c.ok and c.method == "sendMessage" for c in fake.calls))  # the alert's 429
    t0 = time.monotonic()
    assert (await stack.ask(ALICE, "/status")).startswith("Mode: PAPER")
    assert time.monotonic() - t0 < 1.5  # PTB's limiter used to halt every request for retry_after
    for chat in (ALICE, BOB):  # the alerts follow once the pause is over
        await fake.wait_for(lambda: any(t.startswith("Daily summary") for t in fake.texts_to(chat)), timeout=8)


async def test_the_upgrade_service_message_alone_moves_the_group(tmp_path: Path, fake: FakeTelegram) -> None:
    """No alert needs to fail first: Telegram's migration service message is enough."""
    stack = await make_stack(tmp_path, fake, allowed_chat_ids=[ALICE, GROUP])
    try:
        fake.push_migration(GROUP, SUPER, user_id=ALICE)
        await fake.wait_for(lambda: any("supergroup" in t for t in fake.texts_to(ALICE)))
        assert (await ask_in(stack, SUPER, "/status", ALICE)).startswith("Mode: PAPER")
        assert str(SUPER) in str(await stack.db.kv.get(MIGRATIONS_KEY))
    finally:
        await close_stack(stack)


async def test_answers_go_to_the_forum_topic_they_came_from(private: Stack) -> None:
    stack, fake = private, private.fake
    stack.bot.access.chats = frozenset({*stack.bot.access.chats, GROUP})
    fake.push_text(GROUP, "/balance", user_id=ALICE, thread_id=42)
    await fake.wait_for(lambda: fake.sent_to(GROUP))
    assert fake.sent_to(GROUP)[0].params.get("message_thread_id") == 42


async def test_a_bad_request_inside_a_handler_still_answers(private: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from telegram.error import BadRequest

    async def refused(*args: object, **kwargs: object) -> None:
        raise BadRequest("Bad Request: can't parse entities")

    monkeypatch.setattr(private.bot.dispatcher, "dispatch", refused)
    assert (await private.ask(ALICE, "/status")).startswith("internal error, logged as #")


async def test_alert_text_passes_the_secret_scrubber(private: Stack) -> None:
    """An exchange error quoting a secret (here the bot token) reaches the chat masked, like answers do."""
    stack, fake = private, private.fake
    assert stack.bot.notifier is not None
    await stack.bot.notifier.enqueue_alert("events", {"events": [
        {"type": "ErrorEvent", "where": "binance", "message": f"request to /bot{fake.token}/x failed", "ts_ms": 1}]})
    await fake.wait_for(lambda: any(t.startswith("ERROR in binance") for t in fake.texts_to(ALICE)))
    text = next(t for t in fake.texts_to(ALICE) if t.startswith("ERROR in binance"))
    assert fake.token.split(":")[1] not in text and "***" in text, text


async def test_a_large_buy_asks_for_confirmation_before_anything_is_placed(tmp_path: Path, fake: FakeTelegram) -> None:
    """Issue 16: /buy and /sell above a configurable notional (TGTRADER_CONFIRM_TRADE_ABOVE) ask first."""
    stack = await make_stack(tmp_path, fake, confirm_trade_above=D("1000"))
    try:
        question = await stack.ask(ALICE, "/buy BTCUSDT 0.1")  # about 5,200 USDT at 52,000
        assert "Confirm?" in question and "above the confirmation threshold 1000" in question, question
        assert [b["text"] for b in fake.buttons(ALICE)] == ["Confirm BUY 0.1 BTCUSDT", "Cancel"]
        await stack.core.idle()
        assert await stack.paper.open_orders() == []  # nothing placed before the press
        answer = await stack.press(ALICE, fake.buttons(ALICE)[1]["callback_data"])
        assert "nothing changed" in answer
        await stack.core.idle()
        assert await stack.paper.open_orders() == []
    finally:
        await close_stack(stack)


async def test_alerts_go_to_the_forum_topic_chosen_with_notify_here(private: Stack) -> None:
    """Issue 16 (Low): alerts landed in General; /notify here, sent in a topic, sends them there. A deleted topic sends
    them back to General instead of losing them."""
    stack, fake = private, private.fake
    assert stack.bot.notifier is not None
    stack.bot.access.chats = frozenset({*stack.bot.access.chats, GROUP})
    fake.push_text(GROUP, "/notify here", user_id=ALICE, thread_id=77)
    await fake.wait_for(lambda: any("now go to this topic" in t for t in fake.texts_to(GROUP)))
    await stack.bot.notifier.enqueue_alert("events", {"events": [
        {"type": "ErrorEvent", "where": "binance", "message": "first", "ts_ms": 1}]})
    await fake.wait_for(lambda: any("first" in t for t in fake.texts_to(GROUP)))
    sent = [c for c in fake.sent_to(GROUP) if "first" in str(c.params.get("text", ""))]
    assert sent[0].params.get("message_thread_id") == 77
    fake.deleted_topics.add((GROUP, 77))
    await stack.bot.notifier.enqueue_alert("events", {"events": [
        {"type": "ErrorEvent", "where": "binance", "message": "second", "ts_ms": 2}]})
    await fake.wait_for(lambda: any("second" in str(c.params.get("text", "")) and c.ok for c in fake.sent_to(GROUP)))
    delivered = [c for c in fake.sent_to(GROUP) if "second" in str(c.params.get("text", "")) and c.ok]
    assert delivered[0].params.get("message_thread_id") is None
    fake.push_text(GROUP, "/notify", user_id=ALICE)
    await fake.wait_for(lambda: any(t.startswith("Notifications for this chat") for t in fake.texts_to(GROUP)))
    assert not any("forum topic 77" in t for t in fake.texts_to(GROUP))
