"""Transition tables: the only way a machine's state changes.

Each machine declares its states as a str-valued enum (the values are what the store keeps) and a table of
allowed moves. `Transitions.move` applies a legal move and refuses an illegal one with a log line, leaving
the state as it was, so a late or duplicate event can never push a machine backwards silently.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Generic, TypeVar

from loguru import logger

S = TypeVar("S", bound=enum.Enum)


class Transitions(Generic[S]):
    def __init__(self, what: str, table: Mapping[S, frozenset[S]]) -> None:
        self.what = what
        self.table = dict(table)

    def allowed(self, old: S, new: S) -> bool:
        return old == new or new in self.table.get(old, frozenset())

    def move(self, who: str, old: S, new: S) -> S:
        """The state to keep: `new` when the move is legal, else `old` (logged)."""
        if self.allowed(old, new):
            return new
        logger.error("{} {}: illegal {} transition {} -> {} refused", self.what, who, self.what, old.value, new.value)
        return old

    def final(self, state: S) -> bool:
        return not self.table.get(state)
