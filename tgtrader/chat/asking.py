"""Where the message being answered came from, for handlers that need more than its chat (kept apart from
dispatch.py so a command module can ask without importing the dispatcher)."""

from __future__ import annotations

import contextvars

# the forum topic the message came from (chats with topics; None elsewhere): /notify here points alerts at it
_topic: contextvars.ContextVar[int | None] = contextvars.ContextVar("topic", default=None)


def asked_in_topic() -> int | None:
    """The forum topic of the message being answered (None: no topic, or the General one)."""
    return _topic.get()


def answering_in(topic: int | None) -> contextvars.Token[int | None]:
    return _topic.set(topic)


def done_answering(token: contextvars.Token[int | None]) -> None:
    _topic.reset(token)
