"""Alert delivery through the real outbox (SQLite) and the real PTB Bot over HTTP to the fake server."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from telegram.ext import AIORateLimiter, ExtBot

from tests.fakes.fake_telegram import FakeTelegram
from tests.kit import old_database
from tests.waiting import wait_for
from tgtrader.chat.alerts import EVENTS, events_payload
from tgtrader.core.events import EventBus, GridRoundTrip, OrderFilled, StreamDown, StreamUp
from tgtrader.store.db import Database
from tgtrader.telegram.notify import Notifier
from tgtrader.types import Side

CHATS = (777, 888)
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[ExtBot]:
    ext = ExtBot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url,
                 rate_limiter=AIORateLimiter(max_retries=0))
    await ext.initialize()
    yield ext
    await ext.shutdown()


def make_notifier(db: Database, bot: ExtBot, **kw: object) -> Notifier:
    async def send(chat_id: int, text: str) -> object:
        return await bot.send_message(chat_id, text)

    options = dict(window_s=0.1, per_chat_interval_s=0.0, poll_s=0.05, backoff_base_s=0.05, stream_down_alert_s=0.2)
    options.update(kw)
    return Notifier(db, send, lambda: CHATS, **options)  # type: ignore[arg-type]


async def _pending_is(db: Database, n: int) -> bool:
    return await db.outbox.pending_count() == n


async def _probed(db: Database) -> bool:
    """Rows for every chat are in the outbox and a send of one of them failed (the channel is paused)."""
    rows = await db.outbox.due(10**15)
    return {row.chat_id for row in rows} == set(CHATS) and any(row.attempts >= 1 and row.last_error for row in rows)


async def as_core(db: Database, bus: EventBus, event: OrderFilled) -> None:
    """What the core does with a fill: its alert row in the fill's own transaction (one row for every chat, worded
    at delivery), then the event on the bus (which only wakes the notifier)."""
    await db.outbox.enqueue(EVENTS, payload=events_payload([event]), now=int(time.time() * 1000))
    bus.publish(event)


def fill(i: int) -> OrderFilled:
    return OrderFilled("BTCUSDT", Side.BUY, Decimal("65000"), Decimal("0.001"), Decimal("0.065"), f"c{i}", "grid:1",
                       i, i)


async def test_burst_of_fifty_fills_is_one_message_per_chat(fake: FakeTelegram, db: Database, bot: ExtBot) -> None:
    bus = EventBus()
    notifier = make_notifier(db, bot)
    notifier.attach(bus)
    for i in range(50):  # a burst: the core wrote 50 fill rows before the notifier's next delivery
        await as_core(db, bus, fill(i))
    await notifier.start()
    await fake.wait_for(lambda: all(fake.sent_to(c) for c in CHATS))
    await wait_for(lambda: _pending_is(db, 0), 10, "every outbox row sent")
    await asyncio.sleep(0.3)  # quiet period: a second message (the burst split in two windows) shows up now
    await notifier.stop()
    for chat in CHATS:
        texts = fake.texts_to(chat)
        assert len(texts) == 1, texts
        assert "50 FILLS" in texts[0]
    assert await db.outbox.pending_count() == 0


async def test_flood_control_delays_but_loses_nothing(fake: FakeTelegram, db: Database, bot: ExtBot) -> None:
    bus = EventBus()
    notifier = make_notifier(db, bot)
    notifier.attach(bus)
    await notifier.start()
    fake.fail_next("sendMessage", retry_after=1, times=2)
    t0 = time.monotonic()
    await as_core(db, bus, fill(1))
    await wait_for(lambda: any(not c.ok and c.method == "sendMessage" for c in fake.calls), 10,
                   "the first window's send answered 429")
    await as_core(db, bus, fill(2))  # a second window while the first waits out the flood control
    await fake.wait_for(lambda: "\n".join(t for c in CHATS for t in fake.texts_to(c)).count("FILL") >= 4, timeout=8)
    elapsed = time.monotonic() - t0
    await notifier.stop()
    assert elapsed >= 1.0  # retry_after was honoured
    delivered = "\n".join(t for c in CHATS for t in fake.texts_to(c))
    assert delivered.count("FILL BTCUSDT BUY 0.001 @ 65000") == 2 * len(CHATS)
    assert await db.outbox.pending_count() == 0
    rows = await db.fetchall("SELECT attempts, last_error FROM outbox ORDER BY id")
    assert any(row[1] and "RetryAfter" in row[1] for row in rows)


async def test_alerts_of_a_long_outage_arrive_soon_after_telegram_is_back(fake: FakeTelegram, db: Database,
                                                                           bot: ExtBot) -> None:
    """The channel backs off (capped), not each row: after many failed attempts the alerts still go out
    within about one capped retry of Telegram answering again, oldest first, each once."""
    bus = EventBus()
    notifier = make_notifier(db, bot, network_retry_cap_s=0.3)
    notifier.attach(bus)
    await notifier.start()
    fake.unreachable = True
    for i in range(5):
        await as_core(db, bus, fill(i))
        await asyncio.sleep(0.5)  # 2.5 s down: per-row doubling from 0.05 s would now wait seconds
    await wait_for(lambda: notifier.network_failures >= 5, 10, "at least 5 failed delivery attempts")
    assert not fake.sent_to(777)
    fake.unreachable = False
    back = time.monotonic()
    await fake.wait_for(lambda: all(fake.sent_to(c) for c in CHATS), timeout=5)
    assert time.monotonic() - back < 1.0
    await wait_for(lambda: all("\n".join(fake.texts_to(c)).count("FILL BTCUSDT BUY") >= 5 for c in CHATS), 10,
                   "all 5 alerts delivered to every chat")
    await wait_for(lambda: _pending_is(db, 0), 10, "every outbox row sent")
    await asyncio.sleep(0.3)  # quiet period: a duplicate delivery shows up now
    await notifier.stop()
    for chat in CHATS:
        assert "\n".join(fake.texts_to(chat)).count("FILL BTCUSDT BUY") == 5
    assert await db.outbox.pending_count() == 0
    rows = await db.fetchall("SELECT attempts FROM outbox WHERE chat_id IS NOT NULL")
    assert max(r[0] for r in rows) >= 3  # attempts are still counted for inspection


async def test_reconnect_to_telegram_ends_the_outage_backoff_at_once(fake: FakeTelegram, db: Database,
                                                                     bot: ExtBot) -> None:
    """The polling loop reconnecting proves Telegram is back: the notifier stops waiting out its backoff."""
    bus = EventBus()
    notifier = make_notifier(db, bot, backoff_base_s=20.0, network_retry_cap_s=60.0)
    notifier.attach(bus)
    await notifier.start()
    fake.unreachable = True
    await as_core(db, bus, fill(1))
    await fake.wait_for(lambda: notifier.network_failures >= 1, timeout=3)  # now waiting 20 s
    fake.unreachable = False
    back = time.monotonic()
    notifier.wake(network_back=True)
    await fake.wait_for(lambda: all(fake.sent_to(c) for c in CHATS), timeout=5)
    assert time.monotonic() - back < 2.0
    await notifier.stop()


async def test_unsent_alerts_are_delivered_after_restart(fake: FakeTelegram, tmp_path: Path) -> None:
    path = tmp_path / "restart.sqlite"
    db = await Database.open(path)
    ext = ExtBot(fake.token, base_url=fake.base_url, rate_limiter=AIORateLimiter(max_retries=0))
    try:
        await ext.initialize()
        bus = EventBus()
        notifier = make_notifier(db, ext)
        notifier.attach(bus)
        await notifier.start()
        fake.unreachable = True
        await as_core(db, bus, fill(1))
        await as_core(db, bus, fill(2))
        await wait_for(lambda: _probed(db), 10, "the window's rows written and one send failed")
        await notifier.stop()  # "crash": nothing delivered
        assert not fake.sent_to(777)
    finally:
        await ext.shutdown()
        await db.close()

    fake.unreachable = False
    db = await Database.open(path)
    ext = ExtBot(fake.token, base_url=fake.base_url, rate_limiter=AIORateLimiter(max_retries=0))
    try:
        assert await db.outbox.pending_count() == 2 * len(CHATS)  # each fill's row, for every chat
        rows = await db.outbox.due(10**15)
        assert any(row.attempts >= 1 and row.last_error for row in rows)  # one probe pauses the channel
        await db.execute("UPDATE outbox SET next_attempt_ms = 0")  # skip the first run's backoff wait
        await ext.initialize()
        notifier = make_notifier(db, ext)
        await notifier.start()
        await fake.wait_for(lambda: all(fake.sent_to(c) for c in CHATS), timeout=5)
        await notifier.stop()
        for chat in CHATS:
            assert fake.texts_to(chat)[0].count("FILL BTCUSDT BUY") == 2
        assert await db.outbox.pending_count() == 0
    finally:
        await ext.shutdown()
        await db.close()


async def test_short_stream_outage_is_silent_long_one_is_reported(fake: FakeTelegram, db: Database,
                                                                  bot: ExtBot) -> None:
    bus = EventBus()
    notifier = make_notifier(db, bot, stream_down_alert_s=0.3)
    notifier.attach(bus)
    await notifier.start()
    bus.publish(StreamDown("market", "blip", 1))
    await asyncio.sleep(0.05)  # the blip itself (scenario pacing)
    bus.publish(StreamUp("market", 0.05, 0, 2))
    await asyncio.sleep(0.5)  # quiet period past the 0.3 s alert threshold: a wrong alert would be sent now
    assert not fake.sent_to(777)
    bus.publish(StreamDown("user", "connection reset", 3))
    await fake.wait_for(lambda: any("STREAM DOWN (user)" in t for t in fake.texts_to(777)), timeout=3)
    bus.publish(StreamUp("user", 40.0, 2, 4))
    for chat in CHATS:
        await fake.wait_for(lambda: any("STREAM BACK (user)" in t for t in fake.texts_to(chat)), timeout=3)
    await notifier.stop()
    assert any("2 fill(s) recovered" in t for t in fake.texts_to(888))


async def test_rows_written_before_typed_alerts_are_delivered_with_their_text(fake: FakeTelegram, bot: ExtBot,
                                                                              tmp_path: Path) -> None:
    """A database from before the typed-alerts migration: its unsent rows hold text and no payload; they
    keep their text and go out as before, next to a new row worded from its payload at delivery."""
    path = tmp_path / "old.sqlite"
    con = old_database(path, 3)
    now = int(time.time() * 1000)  # written just before the upgrade (an alert from long ago would carry its time)
    con.execute("INSERT INTO outbox(chat_id, kind, text, created_ms, next_attempt_ms) VALUES (NULL, 'stop-loss', ?, ?, ?)",
                ("grid 1 BTCUSDT: stop-loss at 38000 (trigger 39000); orders cancelled, selling 0.1 BTC; realized 5 USDT",
                 now, now))
    con.execute("INSERT INTO outbox(chat_id, kind, text, created_ms, next_attempt_ms) VALUES (777, 'alert', ?, ?, ?)",
                ("FILL BTCUSDT BUY 0.001 @ 65000 [grid:1]", now + 1, now + 1))
    con.commit()
    con.close()
    db = await Database.open(path)
    try:
        [old, _] = await db.outbox.due(10**15)
        assert (old.payload, old.channel, old.kind) == (None, "telegram", "stop-loss")
        await db.outbox.enqueue("grid-residue", chat_id=777, payload={"grid_id": 2, "symbol": "ETHUSDT", "qty": "0.0001",
                                                                      "base_asset": "ETH"})
        notifier = make_notifier(db, bot)
        await notifier.start()
        await wait_for(lambda: _pending_is(db, 0), 10, "every outbox row sent")
        await notifier.stop()
    finally:
        await db.close()
    old_alert = "grid 1 BTCUSDT: stop-loss at 38000 (trigger 39000); orders cancelled, selling 0.1 BTC; realized 5 USDT"
    assert fake.texts_to(888) == [old_alert]
    assert "\n\n".join(fake.texts_to(777)) == "\n\n".join([
        "FILL BTCUSDT BUY 0.001 @ 65000 [grid:1]",
        "grid 2: 0.0001 ETH is below the symbol filters and was not sold",
        old_alert,
    ])


async def test_a_notifier_delivers_only_its_own_channel(fake: FakeTelegram, db: Database, bot: ExtBot) -> None:
    await db.outbox.enqueue("daily-summary", chat_id=777, payload={"status": {}, "pnl": {}}, channel="discord")
    notifier = make_notifier(db, bot)
    await notifier.start()
    await notifier.enqueue_alert("events", {"events": [{"type": "StreamDown", "stream": "user", "reason": "reset",
                                                        "ts_ms": 1}]})
    await fake.wait_for(lambda: all(fake.sent_to(c) for c in CHATS), timeout=5)
    await notifier.stop()
    assert fake.texts_to(777) == ["STREAM DOWN (user): reset"]
    assert await db.outbox.pending_count() == 1  # the Discord row waits for its own front end


# ---------------------------------------------------------------- issue 16: durable, readable, housekept


async def test_an_event_reaches_the_outbox_at_once_not_after_a_window(fake: FakeTelegram, db: Database,
                                                                      bot: ExtBot) -> None:
    """A SIGKILL must find the alert on disk: with the defaults, nothing waits in memory for a window."""
    bus = EventBus()
    fake.unreachable = True

    async def send(chat_id: int, text: str) -> object:
        return await bot.send_message(chat_id, text)

    notifier = Notifier(db, send, lambda: CHATS)  # the defaults, as build_application uses them
    notifier.attach(bus)
    await notifier.start()
    await as_core(db, bus, fill(1))
    t0 = time.monotonic()
    await wait_for(lambda: _pending_is(db, len(CHATS)), 2, "the fill's alert in the outbox", interval=0.005)
    assert time.monotonic() - t0 < 0.5  # the old window held it in memory for 1 s
    await notifier.stop()


async def test_consecutive_alerts_are_coalesced_at_delivery(fake: FakeTelegram, db: Database, bot: ExtBot) -> None:
    for i in range(20):  # twenty separate rows (e.g. written one by one while the chat was paced)
        await db.outbox.enqueue("events", chat_id=777, payload=events_payload([fill(i)]))
    notifier = make_notifier(db, bot)
    await notifier.start()
    await wait_for(lambda: _pending_is(db, 0), 10, "every outbox row sent")
    await notifier.stop()
    assert len(fake.texts_to(777)) == 1 and "20 FILLS" in fake.texts_to(777)[0], fake.texts_to(777)


async def test_a_late_alert_carries_its_time_and_a_backlog_becomes_one_digest(fake: FakeTelegram, db: Database,
                                                                              bot: ExtBot) -> None:
    now = int(time.time() * 1000)
    await db.outbox.enqueue("events", chat_id=777, payload=events_payload([fill(1)]), now=now - 3 * 60_000)
    hour_ago = now - 3600_000
    for i in range(36):  # an hour of alerts while Telegram was unreachable, and a stop-loss among them
        await db.outbox.enqueue("events", chat_id=888, payload=events_payload([fill(i)]), now=hour_ago + i * 100_000)
        if i == 30:
            await db.outbox.enqueue("stop-loss", chat_id=888, now=hour_ago + i * 100_000 + 1, payload={
                "grid_id": 1, "symbol": "BTCUSDT", "price": "38000", "trigger": "39000", "sell_on_stop": True,
                "qty": "0.1", "base_asset": "BTC", "realized": "-162.57", "quote_asset": "USDT"})
    notifier = make_notifier(db, bot)
    await notifier.start()
    await wait_for(lambda: _pending_is(db, 0), 10, "every outbox row sent")
    await notifier.stop()
    [late] = fake.texts_to(777)
    assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d UTC, delivered 3 min late\]\nFILL BTCUSDT BUY", late), late
    [digest] = fake.texts_to(888)
    assert digest.startswith("While alerts could not be delivered (") and "37 alert(s)." in digest, digest
    assert "36 FILLS" in digest and "stop-loss at 38000" in digest and len(digest) <= 4096


async def test_delivered_alerts_are_purged_after_the_retention(fake: FakeTelegram, db: Database, bot: ExtBot) -> None:
    old = int(time.time() * 1000) - 40 * 86400_000
    kept = await db.outbox.enqueue("events", chat_id=777, payload=events_payload([fill(1)]), now=old)
    await db.outbox.mark_sent(kept, old)
    await db.outbox.enqueue("events", chat_id=777, payload=events_payload([fill(2)]))
    notifier = make_notifier(db, bot, retention_s=30 * 86400.0)
    await notifier.start()
    await wait_for(lambda: _pending_is(db, 0), 10, "the new row sent")
    await notifier.stop()
    rows = await db.fetchall("SELECT id FROM outbox")
    assert [r[0] for r in rows] == [kept + 1]  # the 40-day-old delivered row is gone; the fresh one stays


async def test_alerts_about_money_start_with_what_happened_and_how_much(fake: FakeTelegram, db: Database,
                                                                        bot: ExtBot) -> None:
    trip = GridRoundTrip(1, "BTCUSDT", Decimal("50000"), Decimal("55000"), Decimal("0.001"), Decimal("0.8123"), 1)
    await db.outbox.enqueue("events", chat_id=777, payload=events_payload([fill(1), trip]))
    await db.outbox.enqueue("stop-loss", chat_id=888, payload={
        "grid_id": 1, "symbol": "BTCUSDT", "price": "38000", "trigger": "39000", "sell_on_stop": True,
        "qty": "0.1", "base_asset": "BTC", "realized": "0", "quote_asset": "USDT"})
    await db.outbox.enqueue("exit-finished", chat_id=888, payload={
        "grid_id": 1, "symbol": "BTCUSDT", "reason": "stop-loss", "legs": 1, "state": "done", "base_asset": "BTC",
        "realized": "-162.5712", "quote_asset": "USDT"})
    notifier = make_notifier(db, bot)
    await notifier.start()
    await wait_for(lambda: _pending_is(db, 0), 10, "every outbox row sent")
    await notifier.stop()
    [gain] = fake.texts_to(777)
    assert gain.splitlines()[0] == "✅ +0.81 USDT round trip · BTCUSDT grid #1", gain
    assert "ROUND TRIP grid #1 BTCUSDT: bought 50000 sold 55000" in gain  # the details follow unchanged
    [loss] = fake.texts_to(888)
    lines = loss.splitlines()
    assert lines[0] == "🛑 STOP-LOSS at 38000 · BTCUSDT grid #1", loss  # its money is in the exit below
    assert lines[1].startswith("grid 1 BTCUSDT: stop-loss at 38000")
    assert "🛑 STOP-LOSS −162.57 USDT · BTCUSDT grid #1" in lines, loss
    assert lines[lines.index("🛑 STOP-LOSS −162.57 USDT · BTCUSDT grid #1") + 1].startswith(
        "grid 1 BTCUSDT: exit (stop-loss) finished")


async def test_a_rejected_token_pauses_alerts_as_fatal_not_as_an_outage(fake: FakeTelegram, db: Database,
                                                                        bot: ExtBot) -> None:
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(f"{m.record['level'].name} {m.record['message']}"), level="INFO")
    try:
        bus = EventBus()
        notifier = make_notifier(db, bot)
        notifier.attach(bus)
        await notifier.start()
        fake.revoked = True
        await as_core(db, bus, fill(1))
        await wait_for(lambda: any("FATAL" in line for line in lines), 5, "the rejected token said loudly")
        await notifier.stop()
    finally:
        logger.remove(sink)
    assert any(line.startswith("CRITICAL") for line in lines)
    assert not any("unreachable" in line for line in lines), lines
    assert notifier.network_failures == 0 and await db.outbox.pending_count() == len(CHATS)  # kept for later
