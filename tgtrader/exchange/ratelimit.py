"""REST request pacing for Binance: used-weight tracking, Retry-After / ban windows, new-order pacing, backoff.

Binance answers 429 when the per-minute request weight is exceeded and bans the IP (418) if a client
keeps going. So the adapter reads `X-MBX-USED-WEIGHT-1M` from every answer, pauses before the limit
instead of hitting it, honours Retry-After, and refuses to send anything while banned.

New orders are paced separately (OrderPacer): Binance's unfilled-order count is per account, not per IP, and
a 429 with -1015 refuses only new orders, so it must not hold back cancels, lookups or reads.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def backoff_delay(attempt: int, base: float = 0.2, cap: float = 30.0, jitter: float = 0.5) -> float:
    """Exponential backoff with proportional jitter: base * 2^attempt, capped, +- jitter share."""
    delay = min(cap, base * (2 ** max(0, attempt)))
    return max(0.0, delay * (1 + jitter * (2 * random.random() - 1)))


@dataclass
class RestLimiter:
    """Tracks weight and blocking windows; `before_request` sleeps when the client must hold back.

    `window_s` is Binance's weight window (60 s); the soft limit is `soft_ratio` of `weight_limit`.
    """

    weight_limit: int = 6000
    soft_ratio: float = 0.9
    window_s: float = 60.0
    used_weight: int = 0
    blocked_until: float = 0.0  # monotonic; 429 Retry-After
    banned_until: float = 0.0  # monotonic; 418
    slowdowns: int = 0  # times we paused for weight or Retry-After (tests and health read it)
    _weight_seen_at: float = 0.0
    _clock: object = field(default=time.monotonic, repr=False)

    def now(self) -> float:
        return self._clock()  # type: ignore[operator]

    def record_weight(self, used: int) -> None:
        self.used_weight = used
        self._weight_seen_at = self.now()

    def record_retry_after(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, self.now() + max(0.0, seconds))

    def record_ban(self, seconds: float) -> None:
        self.banned_until = max(self.banned_until, self.now() + max(1.0, seconds))

    @property
    def banned(self) -> bool:
        return self.now() < self.banned_until

    def ban_remaining(self) -> float:
        return max(0.0, self.banned_until - self.now())

    def wait_needed(self) -> float:
        """Seconds to wait before the next request (0 when free to go)."""
        now = self.now()
        wait = max(0.0, self.blocked_until - now)
        soft = int(self.weight_limit * self.soft_ratio)
        if self.used_weight >= soft and self._weight_seen_at:
            # the weight window is a fixed minute; the count we saw resets at most window_s after we saw it
            elapsed = now - self._weight_seen_at
            if elapsed < self.window_s:
                # wait for the window to turn over (Binance resets on the minute; we don't know the phase,
                # so wait out the remaining part of a full window since the reading, at most)
                wait = max(wait, self.window_s - elapsed)
            else:
                self.used_weight = 0
        return wait

    async def before_request(self) -> None:
        wait = self.wait_needed()
        if wait > 0:
            self.slowdowns += 1
            await asyncio.sleep(wait)
            if self.used_weight >= int(self.weight_limit * self.soft_ratio):
                self.used_weight = 0  # the window has turned over since the reading


# rest-api.md, "LIMITS" / "General Info on Limits": intervalLetter SECOND => S, MINUTE => M, HOUR => H, DAY => D;
# "intervalNum describes the amount of the interval".
_INTERVALS = {"SECOND": ("S", 1), "MINUTE": ("M", 60), "HOUR": ("H", 3600), "DAY": ("D", 86400)}


@dataclass
class OrderWindow:
    """One ORDERS rate limit from exchangeInfo, e.g. 100 per 10 SECOND, and what we know of its count."""

    seconds: int
    limit: int
    header: str  # lower case, e.g. "x-mbx-order-count-10s"
    count: int = 0
    window_start_ms: int = -1  # server time at which the window that `count` belongs to began


class OrderPacer:
    """Paces new orders within Binance's ORDERS (unfilled order count) limits.

    rest-api.md, "Unfilled Order Count": "Every successful order response will contain a
    X-MBX-ORDER-COUNT-(intervalNum)(intervalLetter) header indicating how many orders you have placed for that
    interval. [...] If you have exceeded this, you will receive a 429 error with the Retry-After header."
    faqs/order_count_decrement.md: "if the unfilled order rate limit is 100 per 10 seconds [...] you can place at
    most 100 new orders between 12:34:00 and 12:34:10, then 100 more from 12:34:10 to 12:34:20" (fixed windows,
    so they are aligned on Binance's clock here), "Unfilled order count is tracked by (sub)account", and on -1015
    "please stop sending orders until the affected rate limit interval expires".

    The count is ours (+1 per order sent) or the header's, whichever is higher (fills lower Binance's count, which
    only makes us conservative). Ordinary orders stop `reserve` short of each limit, so a stop, an exit or a panic
    sell (`priority`) still finds room; a -1015 holds ordinary orders for its Retry-After and never priority ones
    (they try at once: fills may have lowered the count), nor cancels, lookups or reads, which are not orders.
    """

    def __init__(self, server_ms: Callable[[], int] | None = None, reserve_ratio: float = 0.1,
                 margin_s: float = 0.1) -> None:
        self.windows: list[OrderWindow] = []
        self.reserve_ratio = reserve_ratio
        self.margin_s = margin_s  # wait this much past a window's end (clocks are never exactly in step)
        self.server_ms: Callable[[], int] = server_ms or (lambda: int(time.time() * 1000))
        self.hold_until = 0.0  # monotonic; a -1015's Retry-After, for ordinary orders
        self.waits = 0  # times an order waited (tests and health read it)
        self.refusals = 0  # -1015 answers seen

    def configure(self, rate_limits: Any) -> None:
        """Read the ORDERS entries of exchangeInfo's `rateLimits` (counts already known are kept)."""
        known = {w.header: w for w in self.windows}
        windows: list[OrderWindow] = []
        for item in rate_limits if isinstance(rate_limits, list) else []:
            if not isinstance(item, dict) or item.get("rateLimitType") != "ORDERS":
                continue
            try:
                letter, unit = _INTERVALS[str(item["interval"])]
                num, limit = int(item.get("intervalNum", 1)), int(item["limit"])
            except (KeyError, TypeError, ValueError):
                continue
            if num < 1 or limit < 1:
                continue
            header = f"x-mbx-order-count-{num}{letter}".lower()
            w = known.get(header) or OrderWindow(num * unit, limit, header)
            w.seconds, w.limit = num * unit, limit
            windows.append(w)
        self.windows = windows

    def reserve(self, w: OrderWindow) -> int:
        return min(w.limit - 1, max(1, math.ceil(w.limit * self.reserve_ratio)))

    def _roll(self, w: OrderWindow, now_ms: int) -> None:
        start = now_ms - now_ms % (w.seconds * 1000)
        if start != w.window_start_ms:
            w.window_start_ms, w.count = start, 0

    def wait_needed(self, priority: bool = False) -> float:
        """Seconds before an order may go out (0: now)."""
        now_ms = self.server_ms()
        wait = 0.0 if priority else max(0.0, self.hold_until - time.monotonic())
        for w in self.windows:
            self._roll(w, now_ms)
            cap = w.limit if priority else w.limit - self.reserve(w)
            if w.count >= cap:
                wait = max(wait, (w.window_start_ms + w.seconds * 1000 - now_ms) / 1000 + self.margin_s)
        return wait

    def sent(self) -> None:
        """An order is about to go out: count it in every window."""
        now_ms = self.server_ms()
        for w in self.windows:
            self._roll(w, now_ms)
            w.count += 1

    def record_headers(self, headers: Mapping[str, str]) -> None:
        """Read the X-MBX-ORDER-COUNT-* headers of an order answer (Binance's count for the current window)."""
        if not self.windows:
            return
        low = {k.lower(): v for k, v in headers.items() if k[:18].lower() == "x-mbx-order-count-"}
        if not low:
            return
        now_ms = self.server_ms()
        for w in self.windows:
            value = low.get(w.header)
            if value is None:
                continue
            try:
                seen = int(value)
            except ValueError:
                continue
            self._roll(w, now_ms)
            w.count = max(w.count, seen)

    def record_refused(self, retry_after: float) -> None:
        """A 429 / -1015: ordinary new orders wait `retry_after` seconds (at least until the window turns)."""
        self.refusals += 1
        self.hold_until = max(self.hold_until, time.monotonic() + max(0.0, retry_after))

    def counts(self) -> dict[str, tuple[int, int]]:
        """{header: (count, limit)} for health and tests."""
        return {w.header: (w.count, w.limit) for w in self.windows}


class ConnectionBudget:
    """Binance allows 300 connection attempts per 5 minutes per IP; keep well under it."""

    def __init__(self, max_attempts: int = 250, window_s: float = 300.0) -> None:
        self.max_attempts = max_attempts
        self.window_s = window_s
        self._attempts: deque[float] = deque()

    def wait_needed(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._attempts and now - self._attempts[0] > self.window_s:
            self._attempts.popleft()
        if len(self._attempts) < self.max_attempts:
            return 0.0
        return self.window_s - (now - self._attempts[0])

    def record(self, now: float | None = None) -> None:
        self._attempts.append(time.monotonic() if now is None else now)

    def count_since(self, seconds: float, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        return sum(1 for t in self._attempts if now - t <= seconds)


class MessageRate:
    """Binance allows 5 incoming control messages per second per stream connection."""

    def __init__(self, per_second: int = 5) -> None:
        self.interval = 1.0 / per_second
        self._next = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
            now = self._next
        self._next = max(now, self._next) + self.interval
