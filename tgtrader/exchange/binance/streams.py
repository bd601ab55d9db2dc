"""Market streams: combined-stream sockets, SUBSCRIBE/UNSUBSCRIBE, the frame handler, supervision.

- Market data: one combined stream per <= 1024 streams; SUBSCRIBE/UNSUBSCRIBE are sent on the open
  connection (`ReconnectingWebsocket.ws.send`, at most 5 control messages/s) and the socket's path is
  rewritten so the library's own reconnects come back with the current stream list. Ticks are parsed inside
  the library's read loop (its `_handle_message` is replaced per socket): one orjson decode, no per-message
  asyncio.Queue hop, and no queue that can overflow and kill the stream. One supervising task per socket
  recv()s with a timeout what still goes through the queue (the library's {"e": "error"} dicts, control
  errors), treats silence as a fault, re-creates the socket with backoff + jitter on ReadLoopClosed, and
  renews it before Binance's 24 h cut.
- Switch-over, never a gap: on `serverShutdown` and before the 24 h cut, a new socket with the same streams is
  opened first and the old one closed only once the new one is connected (web-socket-streams.md: "A single
  connection to stream.binance.com is only valid for 24 hours"; "serverShutdown event is sent when the server
  is about to shut down. Please establish a new connection as soon as possible to prevent interruption.").

The python-binance internals this needs are reached through compat.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from binance.exceptions import ReadLoopClosed
from binance.ws.reconnecting_websocket import ReconnectingWebsocket
from loguru import logger

from tgtrader.core.ports import StreamStatus
from tgtrader.exchange.binance import compat
from tgtrader.exchange.binance.events import _now_ms
from tgtrader.exchange.ratelimit import MessageRate, backoff_delay

MAX_STREAMS_PER_CONNECTION = 1024
_SUBSCRIBE_CHUNK = 200  # stream names per SUBSCRIBE message
_SHUTDOWN = {"e": "serverShutdown"}


def _is_shutdown(frame: Any) -> bool:
    """web-socket-streams.md, "Server Shutdown", combined stream: {"stream": "!serverShutdown", "data": {...}}."""
    if isinstance(frame, bytes):
        return b'"!serverShutdown"' in frame
    return isinstance(frame, str) and '"!serverShutdown"' in frame



@dataclass(eq=False)
class MarketConn:
    streams: set[str] = field(default_factory=set)
    sock: ReconnectingWebsocket | None = None
    task: asyncio.Task | None = None
    connected_at: float = 0.0
    last_msg: float = 0.0
    up: bool = False
    rate: MessageRate = field(default_factory=MessageRate)
    next_id: int = 1
    shutdown: bool = False  # the server announced serverShutdown on the current socket



class MarketStreamsMixin:
    """BinanceExchange's market side (see module docstring); ticks go to the sink from the read loop."""

    def _streams_for(self, symbols: set[str]) -> set[str]:
        return {f"{s.lower()}@{k}" for s in symbols for k in self.stream_kinds}

    async def subscribe(self, symbols: set[str]) -> None:
        symbols = {s.upper() for s in symbols} - self._symbols
        if not symbols:
            return
        self._symbols |= symbols
        wanted = sorted(self._streams_for(symbols))
        for s in wanted:
            self.parser.add_stream(s)
        # fill connections with spare capacity first, open new ones for the rest
        for conn in self._conns:
            room = self.max_streams - len(conn.streams)
            if room <= 0 or not wanted:
                continue
            take, wanted = wanted[:room], wanted[room:]
            conn.streams.update(take)
            await self._send_control(conn, "SUBSCRIBE", take)
        while wanted:
            take, wanted = wanted[: self.max_streams], wanted[self.max_streams:]
            self._conns.append(MarketConn(streams=set(take)))
        self._start_market_tasks()

    def _start_market_tasks(self) -> None:
        """One supervising task per connection (only once started: before that, start() does it)."""
        if not self._started or self._closing:
            return
        for i, conn in enumerate(self._conns):
            if conn.task is None:
                conn.task = asyncio.create_task(self._market_loop(conn), name=f"binance-market-{i + 1}")

    async def unsubscribe(self, symbols: set[str]) -> None:
        symbols = {s.upper() for s in symbols} & self._symbols
        if not symbols:
            return
        self._symbols -= symbols
        gone = self._streams_for(symbols)
        for conn in list(self._conns):
            mine = sorted(conn.streams & gone)
            if not mine:
                continue
            conn.streams.difference_update(mine)
            if conn.streams:
                await self._send_control(conn, "UNSUBSCRIBE", mine)
            else:  # nothing left on this connection: close it
                self._conns.remove(conn)
                if conn.task:
                    await _cancel_and_wait(conn.task)
                await compat.close_socket(conn.sock)
                conn.sock = None
        for s in gone:
            self.parser.remove_stream(s)

    @staticmethod
    def _set_path(conn: MarketConn) -> None:
        """Make the library's own reconnects come back with the current stream list."""
        if conn.sock is not None and conn.streams:
            compat.set_stream_path(conn.sock, conn.streams)

    async def _send_control(self, conn: MarketConn, method: str, streams: list[str]) -> None:
        self._set_path(conn)
        sock = conn.sock
        if sock is None or not compat.is_streaming(sock):
            return  # not connected: the (re)connect uses the updated path
        for i in range(0, len(streams), _SUBSCRIBE_CHUNK):
            chunk = streams[i : i + _SUBSCRIBE_CHUNK]
            await conn.rate.acquire()  # Binance: at most 5 incoming messages per second per connection
            msg = {"method": method, "params": chunk, "id": conn.next_id}
            conn.next_id += 1
            try:
                await compat.send_text(sock, orjson.dumps(msg).decode())
            except Exception as exc:  # noqa: BLE001 - the drop is seen by the drain task; path is already updated
                logger.info("binance: {} not sent ({}); the reconnect will carry it", method, type(exc).__name__)
                return

    async def _open_market(self, conn: MarketConn) -> None:
        assert self.bsm is not None
        wait = self.connections.wait_needed()
        if wait > 0:
            await asyncio.sleep(wait)
        self.connections.record()
        conn.sock = await compat.open_market_socket(self.bsm, sorted(conn.streams), self.market_handler(conn))
        conn.connected_at = time.monotonic()

    def _market_status(self, conn: MarketConn, up: bool, reason: str = "") -> None:
        if conn.up == up:
            return
        conn.up = up
        if not up:
            self._reconnects.append(time.monotonic())
        self._emit(StreamStatus("market", up, reason=reason, ts_ms=_now_ms()))

    def market_handler(self, conn: MarketConn) -> Callable[[Any], Any]:
        """Replaces the socket's `_handle_message`: runs inside the library's read loop on the raw frame.

        Ticks are parsed (orjson, once) and pushed to the sink right there, and nothing is queued, so there is
        no second decode, no asyncio.Queue hop per message and no queue to overflow (the library stops a
        stream for good when its queue fills). Only control replies with an error go to the queue, where the
        drain task logs them next to the library's own {"e": "error"} reports. Must never raise: an exception
        here would end the library's read loop.
        """
        parse_raw = self.parser.parse_raw
        emit = self._emit
        mono = time.monotonic

        def handle(frame: Any) -> Any:
            try:
                now = mono()
                conn.last_msg = now
                self._market_last_msg = now
                if not conn.up:
                    self._market_status(conn, True)
                tick = parse_raw(frame)
                if tick is not None:
                    emit(tick)
                    return None
                if isinstance(frame, (str, bytes)) and frame[:10] not in ('{"stream":', b'{"stream":'):
                    msg = orjson.loads(frame)
                    if isinstance(msg, dict) and "error" in msg:
                        return msg
                elif _is_shutdown(frame):
                    conn.shutdown = True
                    return _SHUTDOWN  # wakes the supervising task, which switches over
                return None
            except Exception:  # noqa: BLE001 - see docstring
                logger.exception("binance: market frame handler failed")
                return None

        return handle

    def _stream_backoff(self, failures: int) -> float:
        """Wait before the next try to open a market socket after `failures` failed tries (0: just dropped)."""
        return backoff_delay(failures, self.backoff_base_s, self.stream_reconnect_cap_s)

    async def _market_dropped(self, conn: MarketConn, reason: str) -> None:
        """The socket is gone: report it, close what is left of it, and let _market_loop open a new one."""
        if conn.up:
            logger.warning("binance: market stream dropped ({}); reconnecting", reason)
        self._market_status(conn, False, reason)
        sock, conn.sock = conn.sock, None
        await compat.close_socket(sock)

    async def _market_switch(self, conn: MarketConn, reason: str) -> None:
        """Open a new socket with the same streams, then close the old one (no gap). If the new one cannot be
        opened, the old one is left to end on its own; _market_loop then reconnects as after any drop."""
        old = conn.sock
        logger.info("binance: moving a market stream to a new connection ({})", reason)
        try:
            await self._open_market(conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any connect failure: keep the old socket while it lasts
            conn.sock = old
            logger.warning("binance: no new market connection ({}); keeping the old one while it lasts",
                           type(exc).__name__)
            return
        conn.shutdown = False
        self.market_switchovers += 1
        await compat.close_socket(old)

    async def _market_loop(self, conn: MarketConn) -> None:
        """Supervise one combined-stream socket: drops, silence, age. Ticks bypass this task.

        Every way a socket can end (an error reported in-band, the read loop gone, silence, the 24 h renewal)
        leads to conn.sock = None, and the top of the loop always opens a new one, after a wait that grows
        with consecutive failures but never exceeds `stream_reconnect_cap_s`. So a market socket is never
        left down while its streams are wanted, whatever python-binance does.
        """
        failures = 0  # consecutive tries to open a socket that failed
        dropped = False  # the last socket ended: wait a little before the first new try
        check = min(1.0, self.market_silence_s, self.proactive_reconnect_s)
        while not self._closing and conn.streams:
            if conn.sock is None:
                if dropped or failures:
                    await asyncio.sleep(self._stream_backoff(failures))
                try:
                    await self._open_market(conn)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any connect failure: back off and retry
                    failures += 1
                    self._market_status(conn, False, f"cannot connect: {type(exc).__name__}")
                    logger.info("binance: market stream connect failed ({}), try {}; retrying", type(exc).__name__, failures)
                    continue
                if failures or dropped:
                    logger.info("binance: market stream reconnected ({} failed tries)", failures)
                failures, dropped = 0, False
            sock = conn.sock
            try:
                msg = await asyncio.wait_for(sock.recv(), timeout=check)
            except TimeoutError:
                now = time.monotonic()
                if now - max(conn.last_msg, conn.connected_at) > self.market_silence_s:
                    await self._market_dropped(conn, f"no market data for {self.market_silence_s:.0f} s")
                    dropped = True
                elif now - conn.connected_at > self.proactive_reconnect_s:
                    await self._market_switch(conn, "renewal before the 24 h cut")
                continue
            except ReadLoopClosed:
                await self._market_dropped(conn, "market stream closed; reconnecting")
                dropped = True
                continue
            if msg is _SHUTDOWN:
                if conn.shutdown:  # a late one from a socket already replaced does not count
                    await self._market_switch(conn, "serverShutdown")
                continue
            if type(msg) is dict and msg.get("e") == "error":  # the library reports drops in-band
                await self._market_dropped(conn, f"{msg.get('type')}: {msg.get('m')}"[:200])
                dropped = True
            elif type(msg) is dict and "error" in msg:
                logger.warning("binance: market stream control error: {}", str(msg)[:200])
            else:  # a data message that reached the queue (handler not installed): parse it here
                tick = self.parser.parse(msg)
                if tick is not None:
                    self._emit(tick)


async def _cancel_and_wait(task: asyncio.Task, timeout: float = 5.0) -> None:
    """Cancel until the task is done: Python 3.11's wait_for can swallow a cancel that races a result."""
    deadline = time.monotonic() + timeout
    while not task.done() and time.monotonic() < deadline:
        task.cancel()
        try:
            await asyncio.wait({task}, timeout=0.1)
        except asyncio.CancelledError:
            raise
    if task.done() and not task.cancelled():
        exc = task.exception()
        if exc is not None:
            logger.debug("binance: task {} ended with {}", task.get_name(), type(exc).__name__)
