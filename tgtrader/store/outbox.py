"""Durable alert outbox: an alert is written before delivery is tried, so a crash or a
Telegram outage delays it but never loses it. The notifier polls `due(now)`.

A row holds an alert's kind and payload (JSON facts, worded at delivery by `tgtrader.chat.alerts`) and the
channel (front end) it is for; rows written before typed alerts hold their text and no payload."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tgtrader.store.codec import json_from_db, json_to_db, now_ms

if TYPE_CHECKING:
    from tgtrader.store.db import Database, Statement

DEFAULT_CHANNEL = "telegram"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    chat_id: int | None  # None: every allowed chat of the channel
    kind: str
    text: str  # '' on typed rows; the message itself on rows written before them (payload None)
    created_ms: int
    attempts: int
    next_attempt_ms: int
    sent_ms: int | None
    last_error: str | None
    payload: dict[str, Any] | None = None
    channel: str = DEFAULT_CHANNEL


_COLS = "id, chat_id, kind, text, created_ms, attempts, next_attempt_ms, sent_ms, last_error, payload, channel"


def _row(r: Any) -> OutboxRow:
    return OutboxRow(*r[:9], json_from_db(r[9]), r[10])


class OutboxRepo:
    def __init__(self, db: "Database"):
        self._db = db

    async def enqueue(self, kind: str, text: str = "", chat_id: int | None = None, *,
                      payload: Mapping[str, Any] | None = None, channel: str = DEFAULT_CHANNEL,
                      now: int | None = None) -> int:
        """Queue an alert (kind + payload; or a ready text), due at once. Returns its id."""
        _, alert_id = await self._db.insert(*self.enqueue_statement(
            kind, text, chat_id, payload=payload, channel=channel, now=now_ms() if now is None else now))
        return alert_id

    @staticmethod
    def enqueue_statement(kind: str, text: str = "", chat_id: int | None = None, *,
                          payload: Mapping[str, Any] | None = None, channel: str = DEFAULT_CHANNEL,
                          now: int) -> Statement:
        return (
            "INSERT INTO outbox(chat_id, kind, text, payload, channel, created_ms, attempts, next_attempt_ms)"
            " VALUES (?,?,?,?,?,?,0,?)",
            (chat_id, kind, text, json_to_db(None if payload is None else dict(payload)), channel, now, now),
        )

    async def due(self, now: int, limit: int = 50, channel: str = DEFAULT_CHANNEL) -> list[OutboxRow]:
        """The channel's unsent alerts whose next attempt time has come, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_COLS} FROM outbox WHERE sent_ms IS NULL AND next_attempt_ms <= ? AND channel = ?"
            " ORDER BY id LIMIT ?",
            (now, channel, limit),
        )
        return [_row(r) for r in rows]

    async def get(self, alert_id: int) -> OutboxRow | None:
        r = await self._db.fetchone(f"SELECT {_COLS} FROM outbox WHERE id = ?", (alert_id,))
        return _row(r) if r else None

    async def mark_sent(self, alert_id: int, now: int | None = None) -> bool:
        n = await self._db.execute(
            "UPDATE outbox SET sent_ms = ?, attempts = attempts + 1 WHERE id = ? AND sent_ms IS NULL",
            (now_ms() if now is None else now, alert_id), durable=False,  # lost: delivered once more, no harm
        )
        return n == 1

    async def reschedule(self, alert_id: int, next_attempt_ms: int, error: str | None = None) -> bool:
        """A delivery attempt failed: count it and try again at `next_attempt_ms`."""
        n = await self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?, last_error = ?"
            " WHERE id = ? AND sent_ms IS NULL",
            (next_attempt_ms, error, alert_id), durable=False,
        )
        return n == 1

    async def pending_count(self) -> int:
        r = await self._db.fetchone("SELECT COUNT(*) FROM outbox WHERE sent_ms IS NULL")
        return int(r[0]) if r else 0

    async def retarget(self, old_chat_id: int, new_chat_id: int, channel: str = DEFAULT_CHANNEL) -> int:
        """Unsent alerts for a chat that changed id (a group upgraded to a supergroup) go to its new id."""
        return await self._db.execute(
            "UPDATE outbox SET chat_id = ?, next_attempt_ms = MIN(next_attempt_ms, created_ms)"
            " WHERE chat_id = ? AND sent_ms IS NULL AND channel = ?",
            (new_chat_id, old_chat_id, channel),
        )

    async def purge_sent(self, older_than_ms: int) -> int:
        """Delete delivered alerts sent before `older_than_ms` (housekeeping)."""
        return await self._db.execute(
            "DELETE FROM outbox WHERE sent_ms IS NOT NULL AND sent_ms < ?", (older_than_ms,), durable=False
        )
