"""Notification preferences (issue 17): per chat, each alert kind is on, silent or off.

Why: a busy grid fills all day; a trader wants its stops and errors to ring, its fills to arrive quietly (Telegram's
`disable_notification`), and perhaps no daily summary at all. Stored per chat in the kv table; the notifier
applies them at delivery (an alert already in the outbox follows the preference current when it is sent).
Defaults: fills and round trips silent; grid state, stops, errors and the daily summary loud. Alerts of no kind
below (a panic's, start-up and migration notices) always ring.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tgtrader.chat import parse as p
from tgtrader.chat.alerts import DAILY_SUMMARY, EVENTS, events_from_payload, events_payload
from tgtrader.chat.asking import asked_in_topic
from tgtrader.chat.render import Reply
from tgtrader.core.events import AlertRaised, CoreEvent, GridRoundTrip, GridStateChanged, OrderFilled, StopTriggered
from tgtrader.store.outbox import OutboxRow

if TYPE_CHECKING:
    from tgtrader.chat.dispatch import Dispatcher
    from tgtrader.store.kv import KvRepo

KINDS: dict[str, str] = {  # name typed in /notify -> what it covers
    "fills": "order fills",
    "trips": "grid round trips",
    "grids": "grid state (paused, stopped, exits, trailing moves)",
    "stops": "stop-loss / take-profit",
    "errors": "errors, rejections, stream outages",
    "daily": "the daily summary",
}
LEVELS = ("on", "silent", "off")
DEFAULTS: dict[str, str] = {"fills": "silent", "trips": "silent", "grids": "on", "stops": "on", "errors": "on",
                            "daily": "on"}
SYNTAX = "/notify [KIND on|silent|off | here]"
_KEY = "notify:"
_TOPIC_KEY = "notify_topic:"  # per chat: the forum topic alerts go to (absent: the chat's General topic)
_GRID_KINDS = {"exit-finished": "grids", "stop-loss": "stops", "take-profit": "stops", "order-rejected": "errors",
               "grid-start-failed": "errors", "grid-residue": "grids", "grid-trailed": "grids",
               "grid-trail-stopped": "grids"}


@dataclass(frozen=True, slots=True)
class Notify:
    kind: str | None = None  # None: show the preferences; "all": every kind; "here": alerts to this topic
    level: str | None = None


def parse_notify(args: list[str], ctx: p.Context) -> Notify:
    if not args:
        return Notify()
    if len(args) == 1 and args[0].lower() == "here":
        return Notify("here")
    if len(args) != 2:
        raise p.ParseError("expected a kind and a level, e.g. /notify fills off", SYNTAX)
    kind, level = args[0].lower(), args[1].lower()
    if kind not in KINDS and kind != "all":
        raise p.ParseError(f"kind must be one of {', '.join(KINDS)} or all", SYNTAX)
    if level not in LEVELS:
        raise p.ParseError(f"level must be on, silent or off, got {level[:12]!r}", SYNTAX)
    return Notify(kind, level)


class MemoryKv:
    """The kv table's two calls, in memory (the console keeps its preferences for the session)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key: str, default: str | None = None) -> str | None:
        return self.data.get(key, default)

    async def set(self, key: str, value: str) -> None:
        self.data[key] = value


class NotifyPrefs:
    """Preferences per chat: {kind: level}, only what differs from DEFAULTS is stored."""

    def __init__(self, kv: KvRepo | MemoryKv) -> None:
        self.kv = kv
        self._cache: dict[int, dict[str, str]] = {}
        self._topics: dict[int, int | None] = {}

    async def of(self, chat_id: int) -> dict[str, str]:
        if chat_id not in self._cache:
            raw = await self.kv.get(f"{_KEY}{chat_id}")
            stored = json.loads(raw) if raw else {}
            self._cache[chat_id] = {k: stored.get(k, v) if stored.get(k) in LEVELS else v for k, v in DEFAULTS.items()}
        return dict(self._cache[chat_id])

    def known(self, chat_id: int) -> dict[str, str]:
        """Without a read: what was last read or set for the chat (else the defaults); for sync callers."""
        return dict(self._cache.get(chat_id, DEFAULTS))

    async def topic(self, chat_id: int) -> int | None:
        """The forum topic this chat's alerts go to (None: General, or a chat without topics)."""
        if chat_id not in self._topics:
            raw = await self.kv.get(f"{_TOPIC_KEY}{chat_id}")
            self._topics[chat_id] = int(raw) if raw else None
        return self._topics[chat_id]

    async def set_topic(self, chat_id: int, topic: int | None) -> None:
        await self.kv.set(f"{_TOPIC_KEY}{chat_id}", "" if topic is None else str(int(topic)))
        self._topics[chat_id] = topic

    async def set(self, chat_id: int, kind: str, level: str) -> dict[str, str]:
        prefs = await self.of(chat_id)
        for k in (KINDS if kind == "all" else (kind,)):
            prefs[k] = level
        await self.kv.set(f"{_KEY}{chat_id}", json.dumps({k: v for k, v in prefs.items() if DEFAULTS[k] != v}))
        self._cache[chat_id] = prefs
        return dict(prefs)


# ---------------------------------------------------------------- applied at delivery


def event_kind(event: CoreEvent) -> str:
    if isinstance(event, AlertRaised):
        return next(iter(alert_kinds(event.kind, event.payload)), "errors")
    if isinstance(event, OrderFilled):
        return "fills"
    if isinstance(event, GridRoundTrip):
        return "trips"
    if isinstance(event, GridStateChanged):
        return "grids"
    if isinstance(event, StopTriggered):
        return "stops"
    return "errors"  # stream outages, rejections, errors


def row_kinds(row: OutboxRow) -> set[str]:
    """The preference kinds an outbox row is about; empty: always loud (panic, notices)."""
    payload: Mapping[str, Any] = row.payload or {}
    if row.kind == EVENTS and row.payload is not None:
        try:
            return {event_kind(e) for e in events_from_payload(payload)}
        except Exception:  # unreadable by this version: sent as it is, loud
            return set()
    if row.kind == DAILY_SUMMARY:
        return {"daily"}
    return alert_kinds(row.kind, payload)


def alert_kinds(kind: str, payload: Mapping[str, Any]) -> set[str]:
    """The preference kind of a machine's alert (by its owner and kind); empty: always loud."""
    if "grid_id" in payload:
        return {_GRID_KINDS.get(kind, "grids")}
    if "stop_id" in payload:
        return {"errors" if kind == "stop-failed" else "stops"}
    return set()


def apply(row: OutboxRow, prefs: Mapping[str, str]) -> OutboxRow | None:
    """The row as this chat wants it: None when all it reports is off; an events row keeps only the events
    whose kind is not off."""
    kinds = row_kinds(row)
    if not kinds:
        return row
    if all(prefs.get(k) == "off" for k in kinds):
        return None
    if row.kind == EVENTS and row.payload is not None and any(prefs.get(k) == "off" for k in kinds):
        kept = [e for e in events_from_payload(row.payload) if prefs.get(event_kind(e)) != "off"]
        return replace(row, payload=events_payload(kept))
    return row


def loud(row: OutboxRow, prefs: Mapping[str, str]) -> bool:
    """True when the row rings: it has a kind set on, or no kind at all (panic, notices)."""
    kinds = row_kinds(row)
    return not kinds or any(prefs.get(k, "on") == "on" for k in kinds)


# ---------------------------------------------------------------- /notify


def render(prefs: Mapping[str, str], title: str = "Notifications for this chat:", topic: int | None = None) -> str:
    lines = [title]
    lines += [f"  {k}: {prefs[k]}{' (default)' if prefs[k] == DEFAULTS[k] else ''} - {KINDS[k]}" for k in KINDS]
    lines.append("silent = delivered without a sound; off = not sent. Panic and start-up notices always ring.")
    if topic is not None:
        lines.append(f"Alerts go to forum topic {topic} (/notify here in General moves them back).")
    lines.append(f"Change: {SYNTAX}, e.g. /notify fills off, /notify all on; in a forum topic, /notify here sends"
                 " the alerts there")
    return "\n".join(lines)


async def notify(d: Dispatcher, chat_id: int, req: p.Request) -> Reply:
    assert isinstance(req, Notify)
    store: NotifyPrefs | None = getattr(d, "prefs", None)
    if store is None:
        return Reply("Notification preferences are kept by the Telegram bot's database; not available here.")
    if req.kind == "here":
        topic = asked_in_topic()
        await store.set_topic(chat_id, topic)
        return Reply("Alerts for this chat now go to this topic." if topic is not None
                     else "Alerts for this chat now go to its main thread (General).")
    if req.kind is None or req.level is None:
        return Reply(render(await store.of(chat_id), topic=await store.topic(chat_id)))
    prefs = await store.set(chat_id, req.kind, req.level)
    return Reply(render(prefs, f"Saved: {req.kind} {req.level}.", await store.topic(chat_id)))
