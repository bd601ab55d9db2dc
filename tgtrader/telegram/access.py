"""Who may do what, and where: people, not just chats.

`TELEGRAM_ALLOWED_CHAT_IDS` says where the bot talks (alerts, answers); `TELEGRAM_ALLOWED_USER_IDS` says who
may command. A private chat's id is its user's id, so a private chat on the chat list is also a user on the
user list: settings written before user lists existed keep working. In a group, a member may command only if
listed; without any user list every member of an allowed group can trade, which start-up and `doctor` warn
about. Read-only users (`TELEGRAM_READONLY_USER_IDS`) get the read commands, never a trading one or a button.

A group upgraded to a supergroup gets a new id (Telegram's `migrate_to_chat_id`); the new id is remembered in
the database and counts as the allowed group from then on, so neither alerts nor commands are lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from loguru import logger

MIGRATIONS_KEY = "telegram.chat_migrations"  # kv: {"old id": new id, ...}


class Role(Enum):
    NONE = "none"
    READ = "read"
    TRADE = "trade"


@dataclass
class Access:
    chats: frozenset[int]
    users: frozenset[int] = frozenset()  # TELEGRAM_ALLOWED_USER_IDS as set (may be empty)
    readonly: frozenset[int] = frozenset()
    migrations: dict[int, int] = field(default_factory=dict)  # old chat id -> new chat id

    @classmethod
    def of(cls, chats: Iterable[int], users: Iterable[int] = (), readonly: Iterable[int] = ()) -> Access:
        return cls(frozenset(int(c) for c in chats), frozenset(int(u) for u in users),
                   frozenset(int(u) for u in readonly))

    # ------------------------------------------------------------ where

    def current(self, chat_id: int) -> int:
        """The chat's id now (following supergroup upgrades)."""
        seen = {chat_id}
        while chat_id in self.migrations and self.migrations[chat_id] not in seen:
            chat_id = self.migrations[chat_id]
            seen.add(chat_id)
        return chat_id

    def recipients(self) -> list[int]:
        """Every allowed chat, by its current id: where alerts go."""
        return sorted({self.current(c) for c in self.chats})

    def chat_allowed(self, chat_id: int) -> bool:
        return chat_id in self.chats or chat_id in self.recipients()

    # ------------------------------------------------------------ who

    @property
    def traders(self) -> frozenset[int]:
        """Users who may command: the user list plus the owners of allowed private chats (unless they are listed
        as read-only: their private chat is on the chat list so that they get the alerts)."""
        return self.users | ({c for c in self.chats if c > 0} - self.readonly)

    @property
    def open_groups(self) -> bool:
        """No user list at all: any member of an allowed group may trade (the behaviour before user lists)."""
        return not self.users and not self.readonly

    def role(self, chat_id: int | None, user_id: int | None, private: bool) -> Role:
        if chat_id is None or not self.chat_allowed(chat_id):
            return Role.NONE
        if user_id is not None and user_id in self.traders:
            return Role.TRADE
        if user_id is not None and user_id in self.readonly:
            return Role.READ
        if not private and self.open_groups and user_id is not None:
            return Role.TRADE
        return Role.NONE

    def warnings(self) -> list[str]:
        """Advice for start-up and `doctor`: an allowed group without a user list."""
        groups = sorted(c for c in self.chats if c < 0)
        if not groups or self.users:
            return []
        listed = ", ".join(str(g) for g in groups)
        if self.open_groups:
            return [f"group chat(s) {listed} allowed without TELEGRAM_ALLOWED_USER_IDS: ANY member can trade and"
                    " press PANIC; list the people who may command in TELEGRAM_ALLOWED_USER_IDS"]
        return [f"group chat(s) {listed} allowed without TELEGRAM_ALLOWED_USER_IDS: only the owners of the"
                " allowed private chats can command there; set TELEGRAM_ALLOWED_USER_IDS to be explicit"]

    # ------------------------------------------------------------ supergroup upgrades (persisted)

    async def load(self, kv: Any) -> None:
        raw = await kv.get(MIGRATIONS_KEY)
        if not raw:
            return
        try:
            self.migrations.update({int(k): int(v) for k, v in json.loads(raw).items()})
        except (ValueError, TypeError, AttributeError):
            logger.error("ignoring unreadable {} in the database", MIGRATIONS_KEY)

    async def migrate(self, kv: Any, old: int, new: int) -> bool:
        """Remember that `old` is now `new`; False if it was known already (or would make a loop)."""
        if self.migrations.get(old) == new or old == new or self.current(new) == old:
            return False
        self.migrations[old] = new
        if kv is not None:
            await kv.set(MIGRATIONS_KEY, json.dumps({str(k): v for k, v in self.migrations.items()}))
        logger.warning("chat {} was upgraded to supergroup {}: alerts and commands follow it", old, new)
        return True
