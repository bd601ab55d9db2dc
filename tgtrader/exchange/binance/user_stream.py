"""The user data stream on the WebSocket API, and the reconciliation that follows every (re)subscription.

- User data: `bsm.user_socket()` (WS-API userDataStream.subscribe.signature). A WS-API drop kills the
  subscription, so the drain task drops the socket, waits for the WS-API connection to settle, subscribes
  again (resyncing the clock on -1021) and reconciles (missed fills via myTrades since the last seen trade
  id, then order states), then emits StreamStatus("user", up=True, recovered_fills=N). A reconciliation
  that fails is retried in the background with backoff. Reconciliation also reads the balances.
- Switch-over, never a gap: on `serverShutdown` and before the WS-API connection reaches its maximum age
  (`proactive_reconnect_s`, below Binance's 24 h), a second connection is opened, the user stream subscribed on
  it, and only then is the old one closed (the events it still held are handled first); then a reconciliation.
- `eventStreamTerminated` means the subscription is over while the connection may look healthy: the stream
  is dropped, subscribed again and reconciled, like after a drop.

The python-binance internals this needs are reached through compat.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from binance.exceptions import BinanceAPIException
from loguru import logger

from tgtrader.core.ports import BalanceUpdate, StreamStatus
from tgtrader.core.recovery import reconcile
from tgtrader.errors import ExchangeError
from tgtrader.exchange.binance import compat
from tgtrader.exchange.binance import parse as bp
from tgtrader.exchange.binance.events import _now_ms
from tgtrader.exchange.ratelimit import backoff_delay


class _StreamDropped(Exception):
    pass


_WAKE = {"e": "tg-wake"}  # put into the user socket's queue so the drain task looks at a pending switch-over


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

    def _on_ws_api_shutdown(self) -> None:
        """web-socket-api.md, "Connection events": "serverShutdown event is sent when the server is about to
        shut down. Please establish a new connection as soon as possible to prevent interruption." Runs inside
        the library's read loop: only flag it and wake the drain task, which switches over."""
        logger.warning("binance: serverShutdown on the WebSocket API; switching to a new connection")
        self._user_switch = "serverShutdown"
        if self._user_sock is not None:
            compat.wake_user_socket(self._user_sock, _WAKE)

    def _ws_api_age(self) -> float:
        """Seconds since the WS-API connection carrying the user stream was opened (0 if not known)."""
        assert self.client is not None
        conn = compat.ws_api_connection(self.client)
        if conn is not self._ws_api_conn:
            self._ws_api_conn, self._ws_api_opened_at = conn, time.monotonic()
        return time.monotonic() - self._ws_api_opened_at if conn is not None else 0.0

    def _switch_reason(self) -> str | None:
        if self._user_switch is not None:
            return self._user_switch
        # web-socket-api.md: "A single connection to the API is only valid for 24 hours; expect to be
        # disconnected after the 24-hour mark." Renew before it, on our own schedule.
        if self._ws_api_age() > self.proactive_reconnect_s:
            return "renewal before the 24 h cut"
        return None

    async def _switch_user_connection(self, reason: str) -> None:
        """Open a new WS-API connection, subscribe the user stream on it, then close the old connection (its
        unread events are handled first) and reconcile. Raises _StreamDropped if the new one cannot be had."""
        assert self.client is not None
        self._user_switch = None
        logger.info("binance: moving the user data stream to a new WebSocket-API connection ({})", reason)
        old_sock, self._user_sock = self._user_sock, None
        compat.forget_socket(self.bsm, old_sock)  # else user_socket() hands the old one back
        old_api = compat.replace_ws_api(self.client, self._on_ws_api_shutdown)
        try:
            await self._subscribe_user()
        except asyncio.CancelledError:
            await compat.retire_ws_api(old_api, old_sock)
            raise
        except Exception as exc:  # noqa: BLE001 - the old connection is going away anyway: resubscribe as after a drop
            for msg in await compat.retire_ws_api(old_api, old_sock):
                self._user_message(msg)
            raise _StreamDropped(f"no new WebSocket-API connection after {reason}: {type(exc).__name__}") from None
        for msg in await compat.retire_ws_api(old_api, old_sock):
            self._user_message(msg)
        self.user_switchovers += 1
        recovered, problems = await self._reconcile_once()
        if recovered:
            self._emit(StreamStatus("user", True, reason=f"switched connection ({reason})", recovered_fills=recovered,
                                    ts_ms=_now_ms()))
        if problems:
            self._spawn_reconcile_retry()

    def _user_message(self, msg: Any) -> None:
        """One message from the user socket's queue (the library's error reports and our wake-ups skipped)."""
        if type(msg) is dict and (msg.get("e") in ("error", "tg-wake", "eventStreamTerminated")):
            return
        self._user_last_msg = time.monotonic()
        self.on_user_event(msg)

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
            handle = self.on_user_event
            try:
                while not self._closing:
                    reason = self._switch_reason()
                    if reason is not None:
                        await self._switch_user_connection(reason)
                        continue
                    sock = self._user_sock
                    wait = min(self.user_check_s, max(0.05, self.proactive_reconnect_s - self._ws_api_age()))
                    try:
                        msg = await asyncio.wait_for(sock.recv(), timeout=wait)
                    except TimeoutError:
                        if self._user_alive():
                            continue
                        raise _StreamDropped("the WebSocket API connection is gone") from None
                    if type(msg) is dict:
                        kind = msg.get("e")
                        if kind == "error":
                            raise _StreamDropped(f"{msg.get('type')}: {msg.get('m')}"[:200])
                        if kind == "tg-wake":
                            continue
                        if kind == "eventStreamTerminated":
                            # user-data-stream.md, "Event Stream Terminated": the subscription has ended (the
                            # connection may still be up). Subscribe again and reconcile, as after a drop.
                            raise _StreamDropped("Binance ended the user data subscription (eventStreamTerminated)")
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
            pass  # eventStreamTerminated is acted on by the drain task (_user_loop)
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
            errors = list(result.errors)
            try:  # balance events missed during a gap are not replayed by Binance: read the account
                balances = await self.balances()
            except ExchangeError as exc:
                errors.append(f"balances: {exc}")
            else:
                self._emit(BalanceUpdate(tuple(balances.values()), ts_ms=_now_ms()))
            return n, errors

