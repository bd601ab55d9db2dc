"""The user data stream on the WebSocket API, and the reconciliation that follows every (re)subscription.

- User data: `bsm.user_socket()` (WS-API userDataStream.subscribe.signature). A WS-API drop kills the
  subscription, so the drain task drops the socket, waits for the WS-API connection to settle, subscribes
  again (resyncing the clock on -1021) and reconciles (missed fills via myTrades since the last seen trade
  id, then order states), then emits StreamStatus("user", up=True, recovered_fills=N). A reconciliation
  that fails is retried in the background with backoff.

The python-binance internals this needs are reached through compat.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from binance.exceptions import BinanceAPIException
from loguru import logger

from tgtrader.core.ports import StreamStatus
from tgtrader.core.recovery import reconcile
from tgtrader.errors import ExchangeError
from tgtrader.exchange.binance import compat
from tgtrader.exchange.binance import parse as bp
from tgtrader.exchange.binance.events import _now_ms
from tgtrader.exchange.ratelimit import backoff_delay


class _StreamDropped(Exception):
    pass


class UserStreamMixin:
    """BinanceExchange's user-data side: subscribe, drain, resubscribe, reconcile (see module docstring)."""

    async def _drop_user_sock(self, unsubscribe: bool = False) -> None:
        sock, self._user_sock = self._user_sock, None
        if sock is None:
            return
        await compat.drop_user_socket(self.bsm, self.client, sock, unsubscribe)

    async def _subscribe_user(self) -> None:
        assert self.bsm is not None
        wait = self.connections.wait_needed()
        if wait > 0:
            await asyncio.sleep(wait)
        self.connections.record()
        assert self.client is not None
        await compat.ws_api_settled(self.client)
        sock = self.bsm.user_socket()
        self._user_sock = sock
        await sock.connect()

    def _user_status(self, up: bool, reason: str = "", recovered: int = 0) -> None:
        if not up and not self._user_up:
            return
        if not up:
            self._reconnects.append(time.monotonic())
        self._user_up = up
        self._emit(StreamStatus("user", up, reason=reason, recovered_fills=recovered, ts_ms=_now_ms()))

    def _user_alive(self) -> bool:
        assert self.client is not None
        return compat.ws_api_alive(self.client)

    async def _user_loop(self) -> None:
        attempt = 0
        self._user_up = True  # so the first failure is reported
        while not self._closing:
            try:
                await self._subscribe_user()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any subscribe failure: back off and retry
                await self._drop_user_sock()
                if isinstance(exc, BinanceAPIException) and exc.code == -1021:
                    try:
                        await self.sync_time()
                        continue  # one immediate retry with the corrected clock
                    except ExchangeError:
                        pass
                self._user_status(False, f"cannot subscribe to the user data stream: {type(exc).__name__}")
                await asyncio.sleep(self._stream_backoff(attempt))
                attempt += 1
                continue
            attempt = 0
            recovered, problems = await self._reconcile_once()
            reason = "" if not problems else "reconciliation incomplete, retrying: " + "; ".join(problems)[:300]
            self._user_status(True, reason=reason, recovered=recovered)
            if problems:
                self._spawn_reconcile_retry()
            self._user_up = True
            self._user_ready.set()
            sock = self._user_sock
            handle = self.on_user_event
            try:
                while not self._closing:
                    try:
                        msg = await asyncio.wait_for(sock.recv(), timeout=self.user_check_s)
                    except TimeoutError:
                        if self._user_alive():
                            continue
                        raise _StreamDropped("the WebSocket API connection is gone") from None
                    if type(msg) is dict and msg.get("e") == "error":
                        raise _StreamDropped(f"{msg.get('type')}: {msg.get('m')}"[:200])
                    self._user_last_msg = time.monotonic()
                    handle(msg)
            except _StreamDropped as drop:
                logger.warning("binance: user data stream dropped ({}); resubscribing", drop)
                await self._drop_user_sock()
                self._user_status(False, str(drop))
                await asyncio.sleep(backoff_delay(0, self.backoff_base_s, self.backoff_cap_s))

    def on_user_event(self, msg: Any) -> None:
        kind = msg.get("e") if type(msg) is dict else None
        if kind == "executionReport":
            parsed = bp.parse_execution_report(msg)
            if parsed is None:
                return
            update, fill = parsed
            if fill is not None:
                self._emit_fill(fill)  # the fill first: the order update that follows is its consequence
            self._emit_update(update)
        elif kind == "outboundAccountPosition":
            bal = bp.parse_account_position(msg)
            if bal is not None:
                self._emit(bal)
        elif kind in ("balanceUpdate", "listStatus", "eventStreamTerminated", "externalLockUpdate"):
            if kind == "eventStreamTerminated":
                logger.warning("binance: the exchange terminated the user data stream")
        elif kind is not None:
            logger.debug("binance: unhandled user event {}", kind)

    async def run_reconcile(self) -> int:
        """Fetch missed fills and order states, push them to the sink once; returns the number of fills recovered."""
        return (await self._reconcile_once())[0]

    def _spawn_reconcile_retry(self) -> None:
        if self._reconcile_retry is not None and not self._reconcile_retry.done():
            return
        self._reconcile_retry = asyncio.create_task(self._retry_reconcile(), name="binance-reconcile-retry")

    async def _retry_reconcile(self) -> None:
        """A reconciliation that failed (REST down, banned) is retried with backoff until it completes."""
        for attempt in range(1, 30):
            await asyncio.sleep(max(self.limiter.ban_remaining(), backoff_delay(attempt, self.backoff_base_s * 5, self.backoff_cap_s)))
            if self._closing:
                return
            n, problems = await self._reconcile_once()
            if not problems:
                if n:
                    self._emit(StreamStatus("user", True, reason="late reconciliation", recovered_fills=n, ts_ms=_now_ms()))
                return
        logger.error("binance: reconciliation keeps failing; missed fills may be unknown until it succeeds")

    async def _reconcile_once(self) -> tuple[int, list[str]]:
        async with self._reconcile_lock:
            last: dict[str, int | None] = {}
            if self._reconcile_source is not None:
                try:
                    last.update(self._reconcile_source())
                except Exception:  # noqa: BLE001 - a broken source must not stop reconnecting
                    logger.exception("binance: reconcile source failed")
            for sym, tid in self._last_trade_id.items():
                prev = last.get(sym)
                last[sym] = tid if prev is None else max(prev, tid)
            for sym in self._our_cids:
                last.setdefault(sym, None)
            expected = {s: set(c) | self._unknown.get(s, set()) for s, c in self._open_cids.items() if c}
            result = await reconcile(self, last, expected, self._already_seen,
                                     our_client_ids=lambda s, c: c in self._our_cids.get(s, ()))
            n = 0
            for fill in result.fills:
                if self._emit_fill(fill):
                    n += 1
            for update in result.orders:
                self._emit_update(update)
            if n:
                logger.info("binance: reconciliation recovered {} fill(s)", n)
            self.recovered_fills_total += n
            return n, result.errors

