"""REST request pacing for Binance: used-weight tracking, Retry-After / ban windows, and backoff delays.

Binance answers 429 when the per-minute request weight is exceeded and bans the IP (418) if a client
keeps going. So the adapter reads `X-MBX-USED-WEIGHT-1M` from every answer, pauses before the limit
instead of hitting it, honours Retry-After, and refuses to send anything while banned.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass, field


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
