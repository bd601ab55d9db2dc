"""Bounded waits on the condition a test asserts, instead of fixed sleeps.

Why: a fixed sleep before an assertion on asynchronously arriving state is too short on a loaded machine
(the test flakes) and too long everywhere else (the suite is slow). Waiting on exactly the asserted
condition, with a generous bound, is both fast and deterministic. Fixed sleeps stay only where the passing
of time is the scenario itself, or where a test checks that something did NOT happen (a quiet period).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Condition = Callable[[], T | Awaitable[T]]


async def wait_for(cond: Condition[T], timeout: float = 20.0, what: str = "", interval: float = 0.05) -> T:
    """Poll `cond` (sync or async) every `interval` s until it returns something truthy; return that value.

    Raises AssertionError naming `what` if it is still falsy after `timeout` s. The condition is checked
    once more at the deadline, so a starved event loop does not turn a met condition into a failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {what or getattr(cond, '__name__', cond)}")
        await asyncio.sleep(interval)
