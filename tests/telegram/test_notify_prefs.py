"""/notify (issue 17): per chat, each alert kind on, silent (disable_notification) or off; stored in SQLite and
honoured by the outbox delivery. Through the real outbox, the real AlertSender and the fake Bot API."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from telegram.ext import ExtBot

from tests.fakes.fake_telegram import FakeTelegram
from tests.waiting import wait_for
from tgtrader.chat import parse as p
from tgtrader.chat import prefs
from tgtrader.chat.commands import is_read_only
from tgtrader.chat.dispatch import Dispatcher
from tgtrader.core.events import EVENTS_ALERT, ErrorEvent, EventBus, GridRoundTrip, OrderFilled, events_payload
from tgtrader.store.db import Database
from tgtrader.store.outbox import OutboxRow
from tgtrader.telegram.app import AlertSender
from tgtrader.telegram.notify import Notifier
from tgtrader.types import Side

ALICE, BOB = 777, 888
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


async def as_core(db: Database, bus: EventBus, *events: OrderFilled | GridRoundTrip) -> None:
    """What the core does with a fill's reaction: one alert row written with it, then the events on the bus."""
    await db.outbox.enqueue(EVENTS_ALERT, payload=events_payload(events), now=0)
    for event in events:
        bus.publish(event)


def fill(i: int) -> OrderFilled:
    return OrderFilled("BTCUSDT", Side.BUY, Decimal("65000"), Decimal("0.001"), Decimal("0.065"), f"c{i}", "grid:1",
                       i, i)


def trip() -> GridRoundTrip:
    return GridRoundTrip(1, "BTCUSDT", Decimal("50000"), Decimal("55000"), Decimal("0.01"), Decimal("49"), 9)


def error() -> ErrorEvent:
    return ErrorEvent("stream", "user data stream lost", 9)


class NoExchange:
    async def known_symbols(self) -> frozenset[str]:
        return frozenset()


def test_parse_and_read_only() -> None:
    assert p.parse("/notify") == prefs.Notify()
    assert p.parse("/notify FILLS off") == prefs.Notify("fills", "off")
    with pytest.raises(p.ParseError, match="kind must be"):
        p.parse("/notify everything off")
    with pytest.raises(p.ParseError, match="level must be"):
        p.parse("/notify fills loud")
    assert is_read_only("/notify") and not is_read_only("/notify fills off")


async def test_preferences_are_kept_per_chat_and_shown(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "n.db") as db:
        store = prefs.NotifyPrefs(db.kv)
        d = Dispatcher(NoExchange(), prefs=store)  # type: ignore[arg-type]
        shown = (await d.dispatch("/notify", ALICE)).text
        assert "fills: silent (default)" in shown and "stops: on (default)" in shown
        saved = (await d.dispatch("/notify daily off", ALICE)).text
        assert saved.startswith("Saved: daily off.") and "daily: off -" in saved
        assert (await prefs.NotifyPrefs(db.kv).of(ALICE))["daily"] == "off"  # in SQLite, not only in memory
        assert (await store.of(BOB))["daily"] == "on"
        await d.dispatch("/notify all on", BOB)
        assert set((await prefs.NotifyPrefs(db.kv).of(BOB)).values()) == {"on"}
        no_db = await Dispatcher(NoExchange()).dispatch("/notify", ALICE)  # type: ignore[arg-type]
        assert "not available here" in no_db.text


async def test_delivery_honours_on_silent_and_off(tmp_path: Path, fake: FakeTelegram) -> None:
    async with await Database.open(tmp_path / "n.db") as db:
        store = prefs.NotifyPrefs(db.kv)
        await store.set(BOB, "fills", "off")
        await store.set(BOB, "trips", "off")
        sender = AlertSender(ExtBot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url), [])
        notifier = Notifier(db, sender, lambda: (ALICE, BOB), window_s=0.05, per_chat_interval_s=0.0, poll_s=0.05,
                            prefs=store)
        bus = EventBus()
        notifier.attach(bus)
        await notifier.start()
        try:
            await as_core(db, bus, fill(1), trip())
            await fake.wait_for(lambda: fake.sent_to(ALICE), timeout=5)
            await wait_for(lambda: _none_pending(db), 5, "the outbox delivered or dropped every row")
            alice = fake.sent_to(ALICE)
            assert len(alice) == 1 and alice[0].params.get("disable_notification") is True  # silent by default
            assert "FILL" in str(alice[0].params["text"]) and "ROUND TRIP" in str(alice[0].params["text"])
            assert not fake.sent_to(BOB)  # off for Bob: never sent
            await as_core(db, bus, fill(2))
            bus.publish(error())
            await fake.wait_for(lambda: fake.sent_to(BOB), timeout=5)
            await wait_for(lambda: _none_pending(db), 5, "every row handled")
            bob = fake.sent_to(BOB)
            assert len(bob) == 1 and "FILL" not in str(bob[0].params["text"])  # his off fills are cut out
            assert bob[0].params.get("disable_notification") in (None, False)  # an error rings
            alice = fake.sent_to(ALICE)
            assert alice[-1].params.get("disable_notification") in (None, False)  # a silent fill with a loud error rings
        finally:
            await notifier.stop()
            await sender.close()


async def _none_pending(db: Database) -> bool:
    return await db.outbox.pending_count() == 0


def row(kind: str, payload: dict[str, object] | None) -> OutboxRow:
    return OutboxRow(1, ALICE, kind, "", 0, 0, 0, None, None, payload)


def test_core_written_alerts_have_kinds_and_notices_always_ring() -> None:
    wanted = dict(prefs.DEFAULTS, stops="off", grids="silent", daily="off")
    assert prefs.row_kinds(row("stop-loss-triggered", {"stop_id": 1, "symbol": "BTCUSDT"})) == {"stops"}
    assert prefs.apply(row("stop-loss-triggered", {"stop_id": 1}), wanted) is None
    assert prefs.row_kinds(row("stop-failed", {"stop_id": 1})) == {"errors"}
    assert prefs.row_kinds(row("stop-loss", {"grid_id": 1})) == {"stops"}
    exit_row = row("exit-finished", {"grid_id": 1})
    assert prefs.apply(exit_row, wanted) is exit_row and not prefs.loud(exit_row, wanted)
    assert prefs.apply(row("daily-summary", {}), wanted) is None
    for notice in (row("startup", None), row("notice", None), row("panic", {"x": 1})):
        assert prefs.apply(notice, dict.fromkeys(prefs.KINDS, "off")) is notice
        assert prefs.loud(notice, dict.fromkeys(prefs.KINDS, "silent"))


async def test_the_console_honours_off() -> None:
    from tgtrader.console import ConsoleChat

    class Api(NoExchange):
        bus = EventBus()

    out: list[str] = []
    chat = ConsoleChat(Api(), write=out.append, alert_window_s=0.01)  # type: ignore[arg-type]
    chat.attach()
    assert "Saved: fills off." in await chat.handle_line("notify fills off")
    Api.bus.publish(fill(1))
    Api.bus.publish(error())
    chat.flush_alerts()
    printed = "\n".join(out)
    assert "user data stream lost" in printed and "FILL" not in printed
