"""Deterministic client order ids, and the parser back to their owner.

Every id is built from its owner (grid, stop, chase, panic, manual) plus a sequence number that the
owner persists with its state, so a retry after a timeout can look the order up by id and a restart
never reuses an id for a new intent. Ids are <= 36 chars of `[A-Za-z0-9_-]` (Binance's limit).

Formats:
- grid order on an interval: ``tg-g{grid}-{level}{B|S}{seq}``   (level = interval's rung; below 0 (a grid
  that trailed down) written ``n{-level}``)
- grid start buy:            ``tg-g{grid}-x{B|S}{seq}``
- grid start chase leg:      ``tg-g{grid}-c{B|S}{seq}``  (the chase's own sequence: never equal to a start buy's id)
- grid exit (sl/tp/stop):    ``tg-g{grid}-z{B|S}{seq}``
- stop:                      ``tg-s{stop}-{seq}``
- chase:                     ``tg-c{chase}-{seq}``
- panic sell (before exits):  ``tg-p{n}-{SYMBOL}``
- exit (panic's sells):      ``tg-e{exit}-{seq}``
- manual:                    ``tg-m{n}``
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tgtrader.types import Side

MAX_LEN = 36
_VALID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_GRID = re.compile(r"^tg-g(\d+)-(\d+|n\d+|x|z|c)([BS])(\d+)$")
_STOP = re.compile(r"^tg-s(\d+)-(\d+)$")
_CHASE = re.compile(r"^tg-c(\d+)-(\d+)$")
_PANIC = re.compile(r"^tg-p(\d+)-([A-Z0-9]+)$")
_MANUAL = re.compile(r"^tg-m(\d+)$")
_EXIT = re.compile(r"^tg-e(\d+)-(\d+)$")


@dataclass(frozen=True, slots=True)
class ParsedId:
    kind: str  # "grid", "stop", "chase", "exit", "panic", "manual"
    owner_id: int
    seq: int
    level: int | None = None  # grid interval index
    role: str = ""  # grid: "level", "start", "exit"
    side: Side | None = None
    symbol: str | None = None  # panic only

    @property
    def owner(self) -> str:
        """The `owner` string used on intents and events, e.g. "grid:3"."""
        return f"{self.kind}:{self.owner_id}"


def _checked(cid: str) -> str:
    if not _VALID.match(cid):
        raise ValueError(f"client order id {cid!r} is not <= {MAX_LEN} chars of [A-Za-z0-9_-]")
    return cid


def grid_order_id(grid_id: int, level: int | str, side: Side, seq: int) -> str:
    """`level` is an interval's rung (negative after trailing down), or "x" (start buy) / "z" (exit sell)."""
    if isinstance(level, int) and level < 0:
        level = f"n{-level}"
    return _checked(f"tg-g{grid_id}-{level}{side.value[0]}{seq}")


def stop_order_id(stop_id: int, seq: int) -> str:
    return _checked(f"tg-s{stop_id}-{seq}")


def chase_order_id(chase_id: int, seq: int) -> str:
    return _checked(f"tg-c{chase_id}-{seq}")


def chase_prefix(chase_id: int) -> str:
    """A chase numbers its legs itself: chase_prefix(n) + str(seq) == chase_order_id(n, seq)."""
    return f"tg-c{chase_id}-"


def grid_chase_prefix(grid_id: int, side: Side = Side.BUY) -> str:
    """The legs of a grid's start chase: their own namespace, apart from the grid's start market order."""
    return f"tg-g{grid_id}-c{side.value[0]}"


def panic_order_id(n: int, symbol: str) -> str:
    return _checked(f"tg-p{n}-{symbol}")


def exit_order_id(exit_id: int, seq: int) -> str:
    return _checked(f"tg-e{exit_id}-{seq}")


def manual_order_id(n: int) -> str:
    return _checked(f"tg-m{n}")


def parse_client_order_id(cid: str) -> ParsedId | None:
    """The owner of an id we made, or None for a foreign id (placed by hand on the exchange)."""
    if m := _GRID.match(cid):
        lvl = m.group(2)
        side = Side.BUY if m.group(3) == "B" else Side.SELL
        if lvl in ("x", "c"):
            return ParsedId("grid", int(m.group(1)), int(m.group(4)), None, "start", side)
        if lvl == "z":
            return ParsedId("grid", int(m.group(1)), int(m.group(4)), None, "exit", side)
        return ParsedId("grid", int(m.group(1)), int(m.group(4)),
                            -int(lvl[1:]) if lvl.startswith("n") else int(lvl), "level", side)
    if m := _STOP.match(cid):
        return ParsedId("stop", int(m.group(1)), int(m.group(2)))
    if m := _CHASE.match(cid):
        return ParsedId("chase", int(m.group(1)), int(m.group(2)))
    if m := _EXIT.match(cid):
        return ParsedId("exit", int(m.group(1)), int(m.group(2)))
    if m := _PANIC.match(cid):
        return ParsedId("panic", int(m.group(1)), 0, symbol=m.group(2))
    if m := _MANUAL.match(cid):
        return ParsedId("manual", int(m.group(1)), 0)
    return None


def owner_of(cid: str) -> str:
    """"grid:3", "stop:7", ... or "foreign" for an id tgtrader did not make."""
    parsed = parse_client_order_id(cid)
    return parsed.owner if parsed else "foreign"
