"""Fault injection for the loopback Binance (its test API): failed, late and lost answers, refused and dropped
sockets, server shutdowns and terminated user streams. A mixin of `FakeBinance`, whose state it uses."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp import web

from tests.fakes.fake_binance_wire import _Fault


class FaultInjection:
    """The fault half of the fake's test API (see fake_binance's docstring)."""

    # ------------------------------------------------------------ test API: faults

    def fail_next(self, status: int, n: int = 1, retry_after: float | None = None,
                  code: int | None = None, msg: str = "", path: str | None = None) -> None:
        """The next n REST calls answer `status` (429/418 with Retry-After, 500/502/503, or any status with
        `code`/`msg`, e.g. 400/-1021) without executing."""
        self._faults.extend(_Fault(status, retry_after, code, msg, path) for _ in range(n))

    def delay_next(self, seconds: float, n: int = 1) -> None:
        """The next n REST calls execute, then answer only after `seconds` (past the client's timeout)."""
        self._delays.extend([seconds] * n)

    def lose_next_order_response(self, n: int = 1) -> None:
        """The next n POST /order calls execute, then the connection is closed without an answer."""
        self._lose_order_responses += n

    def fail_next_order_after_execution(self, status: int = 503, code: int = -1007,
                                        msg: str = "Timeout waiting for response from backend server. Send status "
                                                   "unknown; execution status unknown.", n: int = 1) -> None:
        """The next n POST /order calls execute, then answer an error (rest-api.md, "HTTP Return Codes": 5XX "the
        execution status is UNKNOWN and could have been a success"; errors.md -1006 / -1007 "execution status
        unknown")."""
        self._errors_after_execution.extend([(status, code, msg)] * n)

    def lag_order_queries(self, seconds: float) -> None:
        """GET /api/v3/order (and openOrders, myTrades) do not see an order until `seconds` after it was accepted.

        rest-api.md, "Query order (USER_DATA)": Data Source "Memory => Database" (and "Data Sources" in General
        API Information): a query can be answered from a source that does not have a just-accepted order yet.
        """
        self._query_lag_s = seconds

    def refuse_ws_for(self, seconds: float) -> None:
        """WebSocket handshakes fail (HTTP 503) for `seconds`."""
        self._refuse_ws_until = time.monotonic() + seconds

    def server_shutdown(self, close_after_s: float = 1.0) -> None:
        """Every open market-stream and WebSocket-API connection gets `serverShutdown`, then is closed after
        `close_after_s` (new connections are accepted meanwhile: they land on another server).

        web-socket-streams.md, "Server Shutdown": combined streams get {"stream": "!serverShutdown", "data":
        {"e": "serverShutdown", "E": ...}}; web-socket-api.md, "Connection events": {"event": {"e":
        "serverShutdown", "E": ...}}. Both: "Please establish a new connection as soon as possible to prevent
        interruption."
        """
        now = self.server_ms()
        doomed = [c.ws for c in self.market_conns] + list(self.ws_api_conns)
        for c in self.market_conns:
            self._send(c.ws, orjson.dumps({"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": now}}).decode())
        for ws in self.ws_api_conns:
            self._send(ws, orjson.dumps({"event": {"e": "serverShutdown", "E": now}}).decode())
        self.shutdowns_sent += 1
        loop = asyncio.get_running_loop()
        for ws in doomed:
            loop.call_later(close_after_s, self._close_later, ws)

    def _close_later(self, ws: web.WebSocketResponse) -> None:
        if not ws.closed:
            self._writers.add(asyncio.ensure_future(ws.close()))

    def _age_limit(self, ws: web.WebSocketResponse) -> asyncio.TimerHandle | None:
        """web-socket-streams.md: "A single connection to stream.binance.com is only valid for 24 hours; expect
        to be disconnected at the 24 hour mark." web-socket-api.md: the same for the WebSocket API. Tests set
        `max_connection_age_s` to seconds."""
        if self.max_connection_age_s is None:
            return None
        return asyncio.get_running_loop().call_later(self.max_connection_age_s, self._close_later, ws)

    def terminate_user_streams(self) -> int:
        """End every user-data subscription with `eventStreamTerminated`; the connections stay open.

        user-data-stream.md, "Event Stream Terminated": sent when a subscription ends (listen token expiry,
        session.logout, userDataStream.unsubscribe); afterwards that subscription delivers nothing."""
        ended = 0
        for ws, subs in list(self.user_subs.items()):
            for sub in sorted(subs):
                self._send(ws, self._terminated(sub))
                ended += 1
            subs.clear()
        return ended

    def _terminated(self, sub: int) -> str:
        return orjson.dumps({"subscriptionId": sub, "event": {"e": "eventStreamTerminated", "E": self.server_ms()}}).decode()

    async def drop_websockets(self) -> None:
        """Close every market-stream and WebSocket-API connection now (user subscriptions die with them)."""
        conns = [c.ws for c in self.market_conns] + list(self.ws_api_conns)
        self.market_conns.clear()
        self.ws_api_conns.clear()
        self.user_subs.clear()
        for ws in conns:
            try:
                await ws.close()
            except Exception:  # noqa: BLE001 - already gone is fine
                pass
        for w in list(self._writers):
            w.cancel()
        self._writers.clear()
        self._outboxes.clear()
