"""Durable alert outbox: an alert is written before delivery is tried, so a crash or a
Telegram outage delays it but never loses it. The notifier polls `due(now)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tgtrader.store.codec import now_ms

if TYPE_CHECKING:
    from tgtrader.store.db import Database


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    chat_id: int | None  # None: every allowed chat
    kind: str
    text: str
    created_ms: int
    attempts: int
    next_attempt_ms: int
    sent_ms: int | None
    last_error: str | None


_COLS = "id, chat_id, kind, text, created_ms, attempts, next_attempt_ms, sent_ms, last_error"


def _row(r: Any) -> OutboxRow:
    return OutboxRow(*r)


class OutboxRepo:
    def __init__(self, db: "Database"):
        self._db = db

    async def enqueue(self, kind: str, text: str, chat_id: int | None = None, *, now: int | None = None) -> int:
        """Queue an alert, due at once. Returns its id."""
        ts = now_ms() if now is None else now
        _, alert_id = await self._db.insert(
            "INSERT INTO outbox(chat_id, kind, text, created_ms, attempts, next_attempt_ms) VALUES (?,?,?,?,0,?)",
            (chat_id, kind, text, ts, ts),
        )
        return alert_id

    async def due(self, now: int, limit: int = 50) -> list[OutboxRow]:
        """Unsent alerts whose next attempt time has come, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_COLS} FROM outbox WHERE sent_ms IS NULL AND next_attempt_ms <= ? ORDER BY id LIMIT ?",
            (now, limit),
        )
        return [_row(r) for r in rows]

    async def get(self, alert_id: int) -> OutboxRow | None:
        r = await self._db.fetchone(f"SELECT {_COLS} FROM outbox WHERE id = ?", (alert_id,))
        return _row(r) if r else None

    async def mark_sent(self, alert_id: int, now: int | None = None) -> bool:
        n = await self._db.execute(
            "UPDATE outbox SET sent_ms = ?, attempts = attempts + 1 WHERE id = ? AND sent_ms IS NULL",
            (now_ms() if now is None else now, alert_id),
        )
        return n == 1

    async def reschedule(self, alert_id: int, next_attempt_ms: int, error: str | None = None) -> bool:
        """A delivery attempt failed: count it and try again at `next_attempt_ms`."""
        n = await self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?, last_error = ?"
            " WHERE id = ? AND sent_ms IS NULL",
            (next_attempt_ms, error, alert_id),
        )
        return n == 1

    async def pending_count(self) -> int:
        r = await self._db.fetchone("SELECT COUNT(*) FROM outbox WHERE sent_ms IS NULL")
        return int(r[0]) if r else 0

    async def purge_sent(self, older_than_ms: int) -> int:
        """Delete delivered alerts sent before `older_than_ms` (housekeeping)."""
        return await self._db.execute(
            "DELETE FROM outbox WHERE sent_ms IS NOT NULL AND sent_ms < ?", (older_than_ms,)
        )
