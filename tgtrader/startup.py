"""Start in any weather (issue 19): trading starts when the exchange answers, never before, and never crashes.

`tgtrader run` used to exit at once when Binance was unreachable; under Docker's restart policy that became a
silent crash loop. Now the start (exchange connection, loading, recovery, reconciliation) is one attempt that
is retried with capped backoff until it succeeds; meanwhile the chat front end is already up and answers every
command with why the bot is not trading yet (`StartingApi`). Settings errors are not retried (they exit 2
before any of this runs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from loguru import logger

from tgtrader.core.api import ApiError
from tgtrader.core.events import ErrorEvent, EventBus
from tgtrader.errors import ExchangeError

T = TypeVar("T")
RETRY_FIRST_S = 1.0
RETRY_CAP_S = 60.0
# Binance error codes that a retry will not fix: a person must change the key or its IP restriction.
AUTH_CODES = frozenset({-2014, -2015, -1022, -1002})


class StartingApi:
    """The chat front end's `TradingApi` from the first second: until `target` (the started core) is set,
    every call is refused with the reason trading has not started; after that every call goes to the core."""

    def __init__(self, bus: EventBus, clock: Callable[[], float] = time.time) -> None:
        self.bus = bus
        self.target: Any = None
        self.reason = "starting: connecting to the exchange"
        self.since = clock()

    def refusal(self) -> str:
        since = time.strftime("%H:%M:%S UTC", time.gmtime(self.since))
        return (f"Not trading yet: {self.reason} (since {since}). The bot keeps retrying and starts trading, "
                "after reconciling with the exchange, as soon as it answers.")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        target = self.__dict__.get("target")
        if target is not None:
            return getattr(target, name)

        async def not_yet(*_args: Any, **_kwargs: Any) -> Any:
            raise ApiError(self.refusal())

        return not_yet


def is_network_failure(exc: BaseException) -> bool:
    """What a retry can fix: the exchange's own errors (mapped by the adapter) and the network libraries' errors
    that reach the start unmapped. Anything else is a bug: it is raised, not retried forever behind a green
    healthcheck."""
    import aiohttp
    from websockets.exceptions import WebSocketException

    return isinstance(exc, ExchangeError | OSError | TimeoutError | aiohttp.ClientError | WebSocketException)


def is_auth_failure(exc: BaseException) -> bool:
    return isinstance(exc, ExchangeError) and (exc.code in AUTH_CODES or getattr(exc, "http_status", None) == 401)


def describe(exc: BaseException) -> str:
    from tgtrader.logging_setup import masker

    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return masker(f"{type(exc).__name__}: {text}" if not isinstance(exc, ExchangeError) else text)


async def reconciled_start(start: Callable[[], Awaitable[None]], bus: EventBus) -> None:
    """`start` (the core's), refused if its reconciliation could not read a symbol from the exchange: trading on
    state the bot could not reconcile is what this start-up must never do, so the attempt fails and is retried."""
    problems: list[str] = []

    def watch(event: object) -> None:
        if isinstance(event, ErrorEvent) and event.where == "reconcile":
            problems.append(event.message)

    unsubscribe = bus.subscribe(watch)
    try:
        await start()
    finally:
        unsubscribe()
    if problems:
        raise ExchangeError(f"reconciliation incomplete ({problems[0]})")


async def retry_until_started(
    attempt: Callable[[], Awaitable[T]],
    stop: asyncio.Event,
    on_failure: Callable[[BaseException, float, int], Awaitable[None]],
    first_s: float = RETRY_FIRST_S,
    cap_s: float = RETRY_CAP_S,
) -> T | None:
    """Run `attempt` until it returns (its value) or `stop` is set (None). Each failure is reported to
    `on_failure(exc, next_delay_s, failures_so_far)`; delays double from `first_s` up to `cap_s`. An attempt in
    progress when `stop` is set is cancelled. Only exchange and network errors are retried (is_network_failure)."""
    delay = first_s
    failures = 0
    while not stop.is_set():
        task = asyncio.ensure_future(attempt())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        exc = task.exception()
        if exc is None:
            return task.result()
        if not is_network_failure(exc):
            raise exc
        failures += 1
        await on_failure(exc, delay, failures)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            pass
        delay = min(cap_s, delay * 2)
    logger.debug("start-up retries ended by a stop request")
    return None
