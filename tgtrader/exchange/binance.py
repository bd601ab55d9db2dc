"""Binance spot adapter on python-binance 1.0.37: REST discipline, market streams, user-data stream.

Design notes (facts about the library are in shared/notes/offline-clients.md):
- Endpoints come from settings. A REST/WS override redirects the client (subclass attributes API_URL and
  WS_API_URL, the socket manager's STREAM_URL); `testnet=True` is only passed when there is no override,
  because the library's testnet flag replaces API_URL on every call.
- REST: time offset synced at start and again (with ONE retry) on -1021; `X-MBX-USED-WEIGHT-1M` is read from
  every answer and requests pause near the limit; 429 waits Retry-After; 418 stops all requests until the ban
  ends and is surfaced as IpBanned + StreamStatus("rest", up=False); reads retry 5xx/network errors with
  backoff. An order whose answer was lost (timeout, cut connection, 5xx) is looked up by client order id
  before anything is re-sent.
- Market data: one combined stream per <= 1024 streams; SUBSCRIBE/UNSUBSCRIBE are sent on the open
  connection (`ReconnectingWebsocket.ws.send`, at most 5 control messages/s) and the socket's path is
  rewritten so the library's own reconnects come back with the current stream list. Ticks are parsed inside
  the library's read loop (its `_handle_message` is replaced per socket): one orjson decode, no per-message
  asyncio.Queue hop, and no queue that can overflow and kill the stream. One supervising task per socket
  recv()s with a timeout what still goes through the queue (the library's {"e": "error"} dicts, control
  errors), treats silence as a fault, re-creates the socket with backoff + jitter on ReadLoopClosed, and
  renews it before Binance's 24 h cut.
- User data: `bsm.user_socket()` (WS-API userDataStream.subscribe.signature). A WS-API drop kills the
  subscription, so the drain task drops the socket, waits for the WS-API connection to settle, subscribes
  again (resyncing the clock on -1021) and reconciles (missed fills via myTrades since the last seen trade
  id, then order states), then emits StreamStatus("user", up=True, recovered_fills=N). A reconciliation
  that fails is retried in the background with backoff.
- The adapter never emits the same fill twice (dedup by (symbol, trade id) across the REST answer, the
  stream and reconciliation); the core/store dedups again across restarts.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Awaitable, Callable, Mapping

import aiohttp
import orjson
from binance import AsyncClient, BinanceSocketManager
from binance.exceptions import BinanceAPIException, BinanceRequestException, ReadLoopClosed
from binance.ws.constants import WSListenerState
from binance.ws.reconnecting_websocket import ReconnectingWebsocket
from loguru import logger

from tgtrader.core.rules import SymbolRules, fmt_decimal, rules_from_exchange_info
from tgtrader.errors import (
    BadSymbol,
    ClockSkew,
    ExchangeError,
    ExchangeUnavailable,
    FilterRejected,
    InsufficientBalance,
    IpBanned,
    OrderStatusUnknown,
    RateLimited,
    UnknownOrder,
    WouldMatch,
)
from tgtrader.exchange import binance_parse as bp
from tgtrader.core.ports import EventSink, ExchangeEvent, ExchangeHealth, StreamStatus
from tgtrader.exchange.ratelimit import ConnectionBudget, MessageRate, RestLimiter, backoff_delay
from tgtrader.exchange.reconcile import reconcile
from tgtrader.types import Balance, Fill, OrderType, OrderUpdate, PlaceOrder, ReplaceOrder

MAX_STREAMS_PER_CONNECTION = 1024
_SUBSCRIBE_CHUNK = 200  # stream names per SUBSCRIBE message


def _now_ms() -> int:
    return int(time.time() * 1000)


class _LostAnswer(Exception):
    """Internal: a write request may or may not have been executed (timeout, cut connection, 5xx)."""


class TgAsyncClient(AsyncClient):
    """AsyncClient that shows every HTTP answer to the adapter (weight header) and keeps error bodies."""

    tg_on_response: Callable[[aiohttp.ClientResponse], None] | None = None

    async def _handle_response(self, response: aiohttp.ClientResponse):  # type: ignore[override]
        hook = self.tg_on_response
        if hook is not None:
            hook(response)
        if not str(response.status).startswith("2"):
            text = await response.text()
            exc = BinanceAPIException(response, response.status, text)
            try:
                exc.payload = orjson.loads(text)  # type: ignore[attr-defined]
            except orjson.JSONDecodeError:
                exc.payload = None  # type: ignore[attr-defined]
            raise exc
        return await super()._handle_response(response)


# ---------------------------------------------------------------- error mapping

_FILTER_TEXT = {
    "NOTIONAL": "the order value is outside the allowed range (too small or too large)",
    "MIN_NOTIONAL": "the order value is below the minimum",
    "LOT_SIZE": "the quantity is too small, too large or not a multiple of the step size",
    "MARKET_LOT_SIZE": "the market order quantity is outside the allowed range",
    "PRICE_FILTER": "the price is outside the allowed range or not a multiple of the tick size",
    "PERCENT_PRICE_BY_SIDE": "the price is too far from the current average price",
    "PERCENT_PRICE": "the price is too far from the current average price",
    "MAX_NUM_ORDERS": "there are too many open orders on this symbol",
}


def _retry_after(exc: BinanceAPIException, default: float) -> float:
    try:
        return float(exc.response.headers.get("Retry-After", default))
    except (AttributeError, TypeError, ValueError):
        return default


def map_api_error(exc: BinanceAPIException, what: str) -> ExchangeError:
    """A BinanceAPIException as a typed error whose message a trader understands (never contains secrets)."""
    code, status, msg = exc.code, exc.status_code, str(exc.message or "")
    if status == 418:
        ra = _retry_after(exc, 120.0)
        return IpBanned(f"Binance banned this IP for about {ra:.0f} s for sending too many requests; "
                        "trading is paused until the ban ends.", retry_after=ra, code=code, http_status=418)
    if status == 429:
        ra = _retry_after(exc, 1.0)
        return RateLimited(f"Binance rate limit reached while trying to {what}; retry in {ra:.0f} s.",
                           retry_after=ra, code=code, http_status=429)
    if status >= 500:
        return ExchangeUnavailable(f"Binance is not answering properly (HTTP {status}) while trying to {what}.",
                                   code=code, http_status=status)
    if code == -1013:
        flt = msg.split(":", 1)[1].strip() if ":" in msg else msg
        text = _FILTER_TEXT.get(flt, f"it breaks the {flt} rule")
        return FilterRejected(f"Binance rejected the order ({what}): {text} [{flt}].", http_status=status)
    if code == -2010:
        low = msg.lower()
        if "immediately match" in low:
            return WouldMatch(f"The maker-only order ({what}) would have traded immediately, so Binance did not place it.",
                              http_status=status)
        if "insufficient balance" in low:
            return InsufficientBalance(f"Not enough free balance on Binance to {what}.", http_status=status)
        return ExchangeError(f"Binance rejected the order ({what}): {msg}", code=code, http_status=status)
    if code in (-2011, -2013):
        return UnknownOrder(f"Binance does not know this order ({what}): it was already filled, cancelled or never placed.",
                            code=code, http_status=status)
    if code == -1121:
        return BadSymbol(f"Binance does not list that symbol ({what}).", http_status=status)
    if code == -1021:
        return ClockSkew("This machine's clock is too far from Binance's even after a resync; check the system time (NTP).",
                         http_status=status)
    if code in (-2014, -2015, -1022):
        return ExchangeError("Binance rejected the API key or signature: check the key, the secret, the IP whitelist "
                             "and that spot trading is enabled for the key.", code=code, http_status=status)
    return ExchangeError(f"Binance refused to {what}: {msg} (code {code}).", code=code, http_status=status)


# ---------------------------------------------------------------- market sockets


@dataclass(eq=False)
class _MarketConn:
    streams: set[str] = field(default_factory=set)
    sock: ReconnectingWebsocket | None = None
    task: asyncio.Task | None = None
    connected_at: float = 0.0
    last_msg: float = 0.0
    up: bool = False
    rate: MessageRate = field(default_factory=MessageRate)
    next_id: int = 1


class BinanceExchange:
    """The Exchange protocol on Binance spot (see module docstring)."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        testnet: bool = False,
        rest_url: str | None = None,
        ws_url: str | None = None,
        ws_api_url: str | None = None,
        stream_kinds: tuple[str, ...] = ("bookTicker",),
        request_timeout: float = 10.0,
        recv_window_ms: int = 10_000,
        market_silence_s: float = 60.0,
        user_check_s: float = 30.0,
        max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION,
        proactive_reconnect_s: float = 23.5 * 3600,
        read_retries: int = 3,
        max_rate_wait_s: float = 60.0,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 60.0,
        stream_reconnect_cap_s: float = 5.0,
        lookup_delay_s: float = 0.5,
        resend_after_absent: bool = True,
        queue_size: int = 10_000,
        rules_ttl_s: float = 3600.0,
        conflate_book: bool = True,
        session_params: dict[str, Any] | None = None,
        user_stream: bool = True,
    ) -> None:
        self.name = "binance-testnet" if testnet else "binance"
        self._key, self._secret = api_key, api_secret
        self._testnet = testnet
        self._rest_url = self._norm_rest(rest_url) if rest_url else None
        self._ws_url = (ws_url if ws_url.endswith("/") else ws_url + "/") if ws_url else None
        if ws_api_url is None and self._ws_url is not None:
            ws_api_url = self._derive_ws_api_url(self._ws_url)
        self._ws_api_url = ws_api_url
        self.stream_kinds = stream_kinds
        self.request_timeout = request_timeout
        self.recv_window_ms = recv_window_ms
        self.market_silence_s = market_silence_s
        self.user_check_s = user_check_s
        self.max_streams = max(1, min(max_streams_per_connection, MAX_STREAMS_PER_CONNECTION))
        self.proactive_reconnect_s = proactive_reconnect_s
        self.read_retries = read_retries
        self.max_rate_wait_s = max_rate_wait_s
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        # Longest wait between two tries to reopen a dropped market socket. The adapter, not python-binance,
        # reconnects market sockets: the library's own schedule (1-2, 1-4, 1-8, 1-16 s, then it gives up)
        # left prices blind for seconds after a short outage and raced our own close of the socket.
        self.stream_reconnect_cap_s = stream_reconnect_cap_s
        self.lookup_delay_s = lookup_delay_s
        self.resend_after_absent = resend_after_absent
        self.queue_size = queue_size
        self.rules_ttl_s = rules_ttl_s
        self._session_params = session_params or {}
        self.user_stream = user_stream  # False: market data only (paper trading on live prices, no keys)

        self.client: TgAsyncClient | None = None
        self.bsm: BinanceSocketManager | None = None
        self.limiter = RestLimiter()
        self.connections = ConnectionBudget()
        self.parser = bp.StreamParser(conflate=conflate_book)
        self._sink: EventSink = lambda ev: None
        self._rules: dict[str, SymbolRules] = {}
        self._rules_loaded_at = 0.0
        self._rules_lock = asyncio.Lock()
        self._time_lock = asyncio.Lock()
        self._closing = False
        self._started = False
        # market streams
        self._symbols: set[str] = set()
        self._conns: list[_MarketConn] = []
        self._market_last_msg = 0.0
        # user stream
        self._user_task: asyncio.Task | None = None
        self._user_sock: Any = None
        self._user_ready = asyncio.Event()
        self._user_last_msg = 0.0
        self._user_up = False
        # tracking for dedup and reconciliation
        self._seen: dict[str, set[int]] = {}
        self._last_trade_id: dict[str, int] = {}
        self._open_cids: dict[str, set[str]] = {}
        self._our_cids: dict[str, set[str]] = {}
        self._cid_by_order_id: dict[int, str] = {}
        self._unknown: dict[str, set[str]] = {}  # orders whose placement answer was lost
        self._reconcile_source: Callable[[], Mapping[str, int | None]] | None = None
        self._reconcile_lock = asyncio.Lock()
        self._reconcile_retry: asyncio.Task | None = None
        self._rest_down = False
        self.recovered_fills_total = 0
        self._reconnects: list[float] = []

    # ------------------------------------------------------------ wiring

    @staticmethod
    def _derive_ws_api_url(ws_url: str) -> str:
        """The WebSocket API next to a market-stream URL: Binance's own hosts differ, anything else is the same host."""
        from urllib.parse import urlsplit

        host = urlsplit(ws_url).hostname or ""
        if host == "stream.testnet.binance.vision":
            return "wss://ws-api.testnet.binance.vision/ws-api/v3"
        if host.startswith("stream.binance."):
            return f"wss://ws-api.binance.{host.split('binance.', 1)[1]}/ws-api/v3"
        if host == "data-stream.binance.vision":  # market data only; the account lives on binance.com
            return "wss://ws-api.binance.com/ws-api/v3"
        return ws_url + "ws-api/v3"

    @staticmethod
    def _norm_rest(url: str) -> str:
        url = url.rstrip("/")
        if url.endswith("/api/v3"):
            url = url[: -len("/v3")]
        return url if url.endswith("/api") else url + "/api"

    def set_event_sink(self, sink: EventSink) -> None:
        self._sink = sink

    def set_reconcile_source(self, source: Callable[[], Mapping[str, int | None]]) -> None:
        """The engine's view: {symbol: last processed trade id or None} for every symbol with activity."""
        self._reconcile_source = source

    def expect_open_orders(self, symbol: str, client_order_ids: set[str]) -> None:
        """After a restart: orders the store believes open, so reconciliation reports how each ended."""
        self._open_cids.setdefault(symbol, set()).update(client_order_ids)
        self._our_cids.setdefault(symbol, set()).update(client_order_ids)

    def _emit(self, event: ExchangeEvent) -> None:
        try:
            self._sink(event)
        except Exception:  # noqa: BLE001 - a faulty consumer must not kill a stream loop
            logger.exception("binance: event sink failed on {}", type(event).__name__)

    def _emit_fill(self, fill: Fill) -> bool:
        """Push a fill once per (symbol, trade id); returns False for a repeat."""
        seen = self._seen.setdefault(fill.symbol, set())
        if fill.trade_id in seen:
            return False
        seen.add(fill.trade_id)
        if len(seen) > 50_000:  # keep the newest half; older ids are below the last-id watermark anyway
            keep = sorted(seen)[-25_000:]
            seen.clear()
            seen.update(keep)
        if fill.trade_id > self._last_trade_id.get(fill.symbol, -1):
            self._last_trade_id[fill.symbol] = fill.trade_id
        self._emit(fill)
        return True

    def _already_seen(self, symbol: str, trade_id: int) -> bool:
        return trade_id in self._seen.get(symbol, ())

    def _track(self, update: OrderUpdate) -> None:
        if update.exchange_order_id is not None:
            self._cid_by_order_id[update.exchange_order_id] = update.client_order_id
        self._our_cids.setdefault(update.symbol, set()).add(update.client_order_id)
        opened = self._open_cids.setdefault(update.symbol, set())
        if update.status.is_open:
            opened.add(update.client_order_id)
        else:
            opened.discard(update.client_order_id)
            self._unknown.get(update.symbol, set()).discard(update.client_order_id)

    def _emit_update(self, update: OrderUpdate) -> None:
        self._track(update)
        self._emit(update)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect REST (clock sync, symbol rules) and the user stream (which reconciles once up)."""
        attrs: dict[str, Any] = {"REQUEST_TIMEOUT": self.request_timeout, "REQUEST_RECVWINDOW": self.recv_window_ms}
        if self._rest_url:
            attrs["API_URL"] = self._rest_url
        if self._ws_api_url:
            attrs["WS_API_URL"] = self._ws_api_url
        cls = type("TgBinanceClient", (TgAsyncClient,), attrs)
        use_testnet = self._testnet and not self._rest_url
        self.client = cls(self._key, self._secret, testnet=use_testnet, session_params=self._session_params)
        self.client.tg_on_response = self._on_response
        self._harden_ws_api()
        if self._testnet and self._rest_url:
            self.name = "binance-testnet"
        await self.sync_time()
        await self._load_rules()
        self.bsm = BinanceSocketManager(self.client, max_queue_size=self.queue_size)
        if self._ws_url:
            self.bsm.STREAM_URL = self._ws_url
        elif use_testnet:
            self.bsm.STREAM_URL = self.bsm.STREAM_TESTNET_URL
        self._started = True
        self._start_market_tasks()
        if not self.user_stream:
            return
        self._user_task = asyncio.create_task(self._user_loop(), name="binance-user-stream")
        try:
            await asyncio.wait_for(self._user_ready.wait(), timeout=max(5.0, self.request_timeout))
        except asyncio.TimeoutError:
            logger.warning("binance: user data stream not up yet; it keeps retrying in the background")

    async def close(self) -> None:
        self._closing = True
        tasks = [c.task for c in self._conns if c.task] + [t for t in (self._user_task, self._reconcile_retry) if t]
        for t in tasks:
            await _cancel_and_wait(t)
        for conn in self._conns:
            await self._close_sock(conn.sock)
            conn.sock = None
        self._conns.clear()
        await self._drop_user_sock(unsubscribe=True)
        if self.client is not None:
            ws_api = self.client.ws_api
            if ws_api is not None and ws_api.ws is not None:
                ws_api.ws_state = WSListenerState.EXITING
                try:
                    await ws_api.ws.close()
                except Exception:  # noqa: BLE001
                    pass
            try:
                await asyncio.wait_for(self.client.close_connection(), timeout=5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                pass
            try:
                await self.client.ws_future.close()
            except Exception:  # noqa: BLE001
                pass

    def _harden_ws_api(self) -> None:
        """Drop unreadable WebSocket-API frames instead of letting them end the library's read loop.

        python-binance's `_handle_message` raises on invalid JSON (and on an error reply for an unknown request
        id); its read loop then stops for good, silently taking the user data stream with it. One bad frame is
        not worth a reconnect and a reconciliation, so it is logged and skipped.
        """
        assert self.client is not None
        ws_api = self.client.ws_api
        original = ws_api._handle_message

        def handle(msg: Any) -> Any:
            try:
                return original(msg)
            except Exception as exc:  # noqa: BLE001 - see docstring
                bp._report_bad("WebSocket-API frame", f"{type(exc).__name__}: {exc}")
                return None

        ws_api._handle_message = handle
        # The user stream reconnects on the adapter's schedule too (see _open_market): after a drop the
        # library's read loop ends at once and _user_loop resubscribes, which reopens the connection.
        ws_api.MAX_RECONNECTS = 0

    # ------------------------------------------------------------ REST core

    def _on_response(self, response: aiohttp.ClientResponse) -> None:
        w = response.headers.get("X-MBX-USED-WEIGHT-1M") or response.headers.get("x-mbx-used-weight-1m")
        if w is not None:
            try:
                self.limiter.record_weight(int(w))
            except ValueError:
                pass

    async def sync_time(self) -> int:
        """Set the client's timestamp offset from Binance's clock (ms). Retries like any read."""
        assert self.client is not None
        async with self._time_lock:
            t0 = _now_ms()
            res = await self._rest("read the server time", self.client.get_server_time, _signed=False)
            t1 = _now_ms()
            server = bp._int(res["serverTime"]) if isinstance(res, dict) and "serverTime" in res else None
            if server is None:
                raise ExchangeUnavailable("Binance answered the time request with something unexpected.")
            self.client.timestamp_offset = server - (t0 + t1) // 2
            return self.client.timestamp_offset

    async def _rest(self, what: str, fn: Callable[..., Awaitable[Any]], *, _read: bool = True,
                    _signed: bool = True, **params: Any) -> Any:
        """One REST call with pacing, Retry-After, ban handling, -1021 resync and (for reads) retries."""
        attempt = 0
        resynced = False
        while True:
            if self.limiter.banned:
                raise IpBanned(f"Binance has banned this IP for another {self.limiter.ban_remaining():.0f} s; "
                               f"not sending ({what}).", retry_after=self.limiter.ban_remaining(), http_status=418)
            await self.limiter.before_request()
            try:
                result = await fn(**params)
                if self._rest_down:
                    self._rest_down = False
                    self._emit(StreamStatus("rest", True, reason="the IP ban has ended", ts_ms=_now_ms()))
                return result
            except BinanceAPIException as exc:
                status = exc.status_code
                if status == 418:
                    err = map_api_error(exc, what)
                    assert isinstance(err, IpBanned)
                    self.limiter.record_ban(err.retry_after)
                    self._rest_down = True
                    logger.error("binance: {}", err)
                    self._emit(StreamStatus("rest", False, reason=str(err), ts_ms=_now_ms()))
                    raise err from None
                if status == 429:
                    ra = _retry_after(exc, 1.0)
                    self.limiter.record_retry_after(ra)
                    logger.warning("binance: 429 while trying to {}; waiting {:.1f} s", what, ra)
                    if ra > self.max_rate_wait_s or attempt >= 5:
                        raise map_api_error(exc, what) from None
                    attempt += 1
                    continue  # a 429 was not executed, so a retry is safe even for orders
                if exc.code == -1021 and not resynced and _signed:
                    resynced = True
                    logger.warning("binance: clock skew (-1021) while trying to {}; resyncing time", what)
                    await self.sync_time()
                    continue
                if status >= 500:
                    if not _read:
                        raise _LostAnswer(f"HTTP {status}") from exc
                    if attempt < self.read_retries:
                        await asyncio.sleep(backoff_delay(attempt, self.backoff_base_s, self.backoff_cap_s))
                        attempt += 1
                        continue
                raise map_api_error(exc, what) from None
            except aiohttp.ClientConnectorError as exc:  # never reached the server: safe to retry anything
                if attempt < self.read_retries:
                    await asyncio.sleep(backoff_delay(attempt, self.backoff_base_s, self.backoff_cap_s))
                    attempt += 1
                    continue
                raise ExchangeUnavailable(f"Cannot reach Binance to {what}: {type(exc).__name__}.") from None
            except (aiohttp.ClientError, asyncio.TimeoutError, BinanceRequestException, OSError) as exc:
                if not _read:
                    raise _LostAnswer(type(exc).__name__) from exc
                if attempt < self.read_retries:
                    await asyncio.sleep(backoff_delay(attempt, self.backoff_base_s, self.backoff_cap_s))
                    attempt += 1
                    continue
                raise ExchangeUnavailable(f"No usable answer from Binance while trying to {what} "
                                          f"({type(exc).__name__}).") from None

    # ------------------------------------------------------------ symbol rules

    async def _load_rules(self) -> None:
        assert self.client is not None
        info = await self._rest("load the symbol rules", self.client.get_exchange_info, _signed=False)
        rules = rules_from_exchange_info(info)
        if not rules:
            raise ExchangeUnavailable("Binance sent an exchangeInfo without symbols.")
        self._rules = rules
        self._rules_loaded_at = time.monotonic()
        for limit in info.get("rateLimits", []) if isinstance(info, dict) else []:
            if limit.get("rateLimitType") == "REQUEST_WEIGHT" and limit.get("interval") == "MINUTE":
                try:
                    self.limiter.weight_limit = int(limit["limit"]) * max(1, int(limit.get("intervalNum", 1)))
                except (KeyError, TypeError, ValueError):
                    pass

    def all_rules(self) -> dict[str, SymbolRules]:
        """Every spot symbol's rules as last loaded (paper trading on live data copies them)."""
        return dict(self._rules)

    async def known_symbols(self) -> frozenset[str]:
        if not self._rules:
            await self._load_rules()
        return frozenset(self._rules)

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        symbol = symbol.upper()
        stale = time.monotonic() - self._rules_loaded_at > self.rules_ttl_s
        if symbol not in self._rules or stale:
            async with self._rules_lock:
                if symbol not in self._rules or time.monotonic() - self._rules_loaded_at > self.rules_ttl_s:
                    try:
                        await self._load_rules()
                    except ExchangeError:
                        if symbol not in self._rules:
                            raise
        try:
            return self._rules[symbol]
        except KeyError:
            raise BadSymbol(f"{symbol} is not a Binance spot symbol.") from None

    # ------------------------------------------------------------ orders

    @staticmethod
    def _order_params(order: PlaceOrder) -> dict[str, Any]:
        p: dict[str, Any] = {
            "symbol": order.symbol,
            "side": order.side.value,
            "type": order.order_type.value,
            "quantity": fmt_decimal(order.qty),
            "newClientOrderId": order.client_order_id,
            "newOrderRespType": "FULL",
        }
        if order.order_type is not OrderType.MARKET:
            if order.price is None:
                raise FilterRejected(f"A {order.order_type.value} order needs a price.")
            p["price"] = fmt_decimal(order.price)
        if order.order_type in (OrderType.LIMIT, OrderType.STOP_LOSS_LIMIT):
            p["timeInForce"] = order.time_in_force or "GTC"
        if order.order_type is OrderType.STOP_LOSS_LIMIT:
            if order.stop_price is None:
                raise FilterRejected("A stop-limit order needs a stop price.")
            p["stopPrice"] = fmt_decimal(order.stop_price)
        return p

    @staticmethod
    def _describe(order: PlaceOrder) -> str:
        px = f" @ {fmt_decimal(order.price)}" if order.price is not None else ""
        return f"{order.side.value.lower()} {fmt_decimal(order.qty)} {order.symbol} {order.order_type.value}{px}"

    def _absorb_order_answer(self, resp: Any, what: str) -> OrderUpdate:
        update = bp.order_from_rest(resp)
        if update is None:
            raise ExchangeUnavailable(f"Binance answered ({what}) with something unreadable.")
        self._track(update)
        for fill in bp.fills_from_rest_order(resp, update):
            self._emit_fill(fill)
        return update

    async def place_order(self, order: PlaceOrder) -> OrderUpdate:
        assert self.client is not None
        what = self._describe(order)
        params = self._order_params(order)
        self._our_cids.setdefault(order.symbol, set()).add(order.client_order_id)
        try:
            resp = await self._rest(f"place {what}", self.client.create_order, _read=False, **params)
        except _LostAnswer as lost:
            logger.warning("binance: answer lost for order {} ({}); looking it up", order.client_order_id, lost)
            return await self._recover_lost_order(order, params, what)
        return self._absorb_order_answer(resp, what)

    async def _recover_lost_order(self, order: PlaceOrder, params: dict[str, Any], what: str) -> OrderUpdate:
        """Query by client order id; resend only after it is confirmed absent twice (never a blind resend)."""
        absent = 0
        for attempt in range(4):
            await asyncio.sleep(self.lookup_delay_s if attempt else 0.05)
            try:
                found = await self.get_order(order.symbol, order.client_order_id)
            except ExchangeError as exc:
                logger.warning("binance: lookup of {} failed: {}", order.client_order_id, exc)
                continue
            if found is not None:
                return found
            absent += 1
            if absent >= 2:
                break
        if absent >= 2 and self.resend_after_absent:
            logger.warning("binance: order {} confirmed absent; sending it once more", order.client_order_id)
            assert self.client is not None
            try:
                resp = await self._rest(f"place {what}", self.client.create_order, _read=False, **params)
                return self._absorb_order_answer(resp, what)
            except _LostAnswer:
                pass
        self._unknown.setdefault(order.symbol, set()).add(order.client_order_id)
        self._open_cids.setdefault(order.symbol, set()).add(order.client_order_id)  # reconciliation checks it
        raise OrderStatusUnknown(f"No answer from Binance for the order ({what}); it may or may not exist. "
                                 "It will be checked again at the next reconciliation.")

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderUpdate:
        assert self.client is not None
        what = f"cancel order {client_order_id} on {symbol}"
        try:
            resp = await self._rest(what, self.client.cancel_order, _read=False,
                                    symbol=symbol, origClientOrderId=client_order_id)
        except _LostAnswer:
            found = await self.get_order(symbol, client_order_id)
            if found is None:
                raise UnknownOrder(f"Binance does not know this order ({what}).") from None
            if found.status.is_open:  # the cancel did not land (yet): cancelling twice is harmless
                try:
                    resp = await self._rest(what, self.client.cancel_order, symbol=symbol, origClientOrderId=client_order_id)
                except UnknownOrder:  # the first cancel landed in the meantime
                    found = await self.get_order(symbol, client_order_id)
                    if found is None:
                        raise
                    return found
            else:
                self._track(found)
                return found
        update = bp.order_from_rest(resp)
        if update is None:
            raise ExchangeUnavailable(f"Binance answered ({what}) with something unreadable.")
        self._track(update)
        return update

    async def cancel_all(self, symbol: str) -> list[OrderUpdate]:
        assert self.client is not None
        try:
            resp = await self._rest(f"cancel all orders on {symbol}", self.client.cancel_all_open_orders, symbol=symbol)
        except UnknownOrder:
            return []
        out = []
        for row in resp if isinstance(resp, list) else []:
            update = bp.order_from_rest(row)
            if update is not None:
                self._track(update)
                out.append(update)
        return out

    async def replace_order(self, replace: ReplaceOrder) -> OrderUpdate:
        assert self.client is not None
        new = replace.place
        what = f"replace {replace.cancel.client_order_id} with {self._describe(new)}"
        params = self._order_params(new)
        params.pop("newOrderRespType", None)
        params["newOrderRespType"] = "FULL"
        params.update(cancelReplaceMode="STOP_ON_FAILURE", cancelOrigClientOrderId=replace.cancel.client_order_id)
        self._our_cids.setdefault(new.symbol, set()).add(new.client_order_id)
        try:
            resp = await self._rest(what, self.client.cancel_replace_order, _read=False, **params)
        except _LostAnswer:
            found = await self.get_order(new.symbol, new.client_order_id)
            if found is not None:
                return found
            old = await self.get_order(new.symbol, replace.cancel.client_order_id)
            if old is not None and old.status.is_open:  # nothing happened: the exchange never saw it
                resp = await self._rest(what, self.client.cancel_replace_order, _read=False, **params)
            else:
                self._unknown.setdefault(new.symbol, set()).add(new.client_order_id)
                raise OrderStatusUnknown(f"No answer from Binance for ({what}); the new order may or may not exist.") from None
        except ExchangeError as err:
            raise self._replace_error(err, what) from None
        cancel_part = bp.order_from_rest(resp.get("cancelResponse")) if isinstance(resp, dict) else None
        if cancel_part is not None:
            self._track(cancel_part)
        return self._absorb_order_answer(resp.get("newOrderResponse") if isinstance(resp, dict) else None, what)

    def _replace_error(self, err: ExchangeError, what: str) -> ExchangeError:
        cause = err.__context__
        payload = getattr(cause, "payload", None) if cause is not None else None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            return err
        if data.get("cancelResult") == "FAILURE":
            c = data.get("cancelResponse") or {}
            if c.get("code") in (-2011, -2013):
                return UnknownOrder(f"Cannot {what}: the old order is no longer open on Binance.", code=-2011,
                                    http_status=err.http_status)
            return ExchangeError(f"Cannot {what}: Binance refused the cancel ({c.get('msg')}).", code=c.get("code"))
        n = data.get("newOrderResponse") or {}
        fake = BinanceAPIException(None, 400, orjson.dumps(n).decode())
        inner = map_api_error(fake, what)
        msg = f"The old order was cancelled but the new one was rejected: {inner}"
        return type(inner)(msg, code=inner.code, http_status=inner.http_status) if not isinstance(inner, RateLimited) \
            else inner

    async def get_order(self, symbol: str, client_order_id: str) -> OrderUpdate | None:
        assert self.client is not None
        try:
            resp = await self._rest(f"look up order {client_order_id} on {symbol}", self.client.get_order,
                                    symbol=symbol, origClientOrderId=client_order_id)
        except UnknownOrder:
            return None
        update = bp.order_from_rest(resp)
        if update is not None:
            self._track(update)
        return update

    async def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        assert self.client is not None
        params = {"symbol": symbol} if symbol else {}
        resp = await self._rest(f"list open orders{' on ' + symbol if symbol else ''}", self.client.get_open_orders, **params)
        out = []
        for row in resp if isinstance(resp, list) else []:
            update = bp.order_from_rest(row)
            if update is not None:
                self._track(update)
                out.append(update)
        return out

    async def _cid_for(self, symbol: str, order_id: int) -> str:
        cid = self._cid_by_order_id.get(order_id)
        if cid is not None:
            return cid
        assert self.client is not None
        try:
            resp = await self._rest(f"look up order #{order_id} on {symbol}", self.client.get_order,
                                    symbol=symbol, orderId=order_id)
        except UnknownOrder:
            return ""
        update = bp.order_from_rest(resp)
        if update is None:
            return ""
        self._cid_by_order_id[order_id] = update.client_order_id
        return update.client_order_id

    async def my_trades(self, symbol: str, from_trade_id: int | None = None) -> list[Fill]:
        """Our trades on `symbol` with id >= from_trade_id, oldest first (pages of 1000; without an id: the last 500)."""
        assert self.client is not None
        rows: list[Any] = []
        if from_trade_id is None:
            resp = await self._rest(f"list trades on {symbol}", self.client.get_my_trades, symbol=symbol, limit=500)
            rows = resp if isinstance(resp, list) else []
        else:
            next_id = from_trade_id
            for _ in range(100):  # at most 100k trades per call
                resp = await self._rest(f"list trades on {symbol}", self.client.get_my_trades,
                                        symbol=symbol, fromId=next_id, limit=1000)
                page = resp if isinstance(resp, list) else []
                rows.extend(page)
                if len(page) < 1000:
                    break
                try:
                    next_id = max(bp._int(r["id"]) for r in page) + 1
                except (KeyError, TypeError, bp.BadPayload):
                    break
        out: list[Fill] = []
        for row in rows:
            try:
                oid = bp._int(row["orderId"])
            except (KeyError, TypeError, bp.BadPayload):
                continue
            fill = bp.fill_from_my_trade(row, await self._cid_for(symbol, oid))
            if fill is not None:
                out.append(fill)
        out.sort(key=lambda f: f.trade_id)
        return out

    async def order_trades(self, symbol: str, client_order_id: str, order_id: int) -> list[Fill]:
        """The trades of one order (GET myTrades?orderId=): no per-row order lookups, one request."""
        assert self.client is not None
        resp = await self._rest(f"list trades of order {client_order_id}", self.client.get_my_trades,
                                symbol=symbol, orderId=order_id)
        fills = [bp.fill_from_my_trade(row, client_order_id) for row in (resp if isinstance(resp, list) else [])]
        return sorted((f for f in fills if f is not None), key=lambda f: f.trade_id)

    async def balances(self) -> dict[str, Balance]:
        assert self.client is not None
        return bp.balances_from_account(await self._rest("read balances", self.client.get_account))

    async def ticker_price(self, symbol: str) -> Decimal:
        assert self.client is not None
        resp = await self._rest(f"read the price of {symbol}", self.client.get_symbol_ticker, _signed=False, symbol=symbol)
        try:
            return bp.to_decimal(resp["price"])
        except (KeyError, TypeError, bp.BadPayload):
            raise ExchangeUnavailable(f"Binance sent an unreadable price for {symbol}.") from None

    # ------------------------------------------------------------ health

    def health(self) -> ExchangeHealth:
        now = time.monotonic()
        cutoff = now - 3600
        self._reconnects = [t for t in self._reconnects if t > cutoff]
        return ExchangeHealth(
            market_last_msg_age_s=(now - self._market_last_msg) if self._market_last_msg else None,
            user_last_msg_age_s=(now - self._user_last_msg) if self._user_last_msg else None,
            reconnects_last_hour=len(self._reconnects),
            clock_offset_ms=self.client.timestamp_offset if self.client else 0,
            used_weight_1m=self.limiter.used_weight,
            banned_until_ms=_now_ms() + int(self.limiter.ban_remaining() * 1000) if self.limiter.banned else 0,
        )

    # ------------------------------------------------------------ market streams

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
            self._conns.append(_MarketConn(streams=set(take)))
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
                await self._close_sock(conn.sock)
                conn.sock = None
        for s in gone:
            self.parser.remove_stream(s)

    @staticmethod
    def _set_path(conn: _MarketConn) -> None:
        """Make the library's own reconnects come back with the current stream list."""
        if conn.sock is not None and conn.streams:
            conn.sock._path = "streams=" + "/".join(sorted(conn.streams))

    async def _send_control(self, conn: _MarketConn, method: str, streams: list[str]) -> None:
        self._set_path(conn)
        sock = conn.sock
        if sock is None or sock.ws is None or sock.ws_state != WSListenerState.STREAMING:
            return  # not connected: the (re)connect uses the updated path
        for i in range(0, len(streams), _SUBSCRIBE_CHUNK):
            chunk = streams[i : i + _SUBSCRIBE_CHUNK]
            await conn.rate.acquire()  # Binance: at most 5 incoming messages per second per connection
            msg = {"method": method, "params": chunk, "id": conn.next_id}
            conn.next_id += 1
            try:
                await sock.ws.send(orjson.dumps(msg).decode())
            except Exception as exc:  # noqa: BLE001 - the drop is seen by the drain task; path is already updated
                logger.info("binance: {} not sent ({}); the reconnect will carry it", method, type(exc).__name__)
                return

    async def _open_market(self, conn: _MarketConn) -> None:
        assert self.bsm is not None
        wait = self.connections.wait_needed()
        if wait > 0:
            await asyncio.sleep(wait)
        self.connections.record()
        sock = self.bsm.multiplex_socket(sorted(conn.streams))
        # we own the lifecycle (the path changes at run time), so don't leave it in the manager's cache
        for key, value in list(self.bsm._conns.items()):
            if value is sock:
                del self.bsm._conns[key]
        # ...and its reconnects: on a drop the library's read loop reports the error and ends at once
        # (BinanceWebsocketUnableToConnect, then ReadLoopClosed), and _market_loop opens a fresh socket on its
        # own bounded schedule. A library reconnect could also revive a socket we had just closed (its
        # connect() overwrites the EXITING state), leaving a connection nobody reads.
        sock.MAX_RECONNECTS = 0
        sock._handle_message = self._market_handler(conn)  # ticks go to the sink from the read loop
        await sock.connect()
        conn.sock = sock
        conn.connected_at = time.monotonic()

    async def _close_sock(self, sock: Any) -> None:
        """Close a library socket without waiting out its 10 s read timeout."""
        if sock is None:
            return
        try:
            sock.ws_state = WSListenerState.EXITING
            if sock.ws is not None:
                await sock.ws.close()
            await asyncio.wait_for(sock.__aexit__(None, None, None), timeout=5)
        except Exception:  # noqa: BLE001 - closing a broken socket may fail; it is gone either way
            pass

    def _market_status(self, conn: _MarketConn, up: bool, reason: str = "") -> None:
        if conn.up == up:
            return
        conn.up = up
        if not up:
            self._reconnects.append(time.monotonic())
        self._emit(StreamStatus("market", up, reason=reason, ts_ms=_now_ms()))

    def _market_handler(self, conn: _MarketConn) -> Callable[[Any], Any]:
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
                return None
            except Exception:  # noqa: BLE001 - see docstring
                logger.exception("binance: market frame handler failed")
                return None

        return handle

    def _stream_backoff(self, failures: int) -> float:
        """Wait before the next try to open a market socket after `failures` failed tries (0: just dropped)."""
        return backoff_delay(failures, self.backoff_base_s, self.stream_reconnect_cap_s)

    async def _market_dropped(self, conn: _MarketConn, reason: str) -> None:
        """The socket is gone: report it, close what is left of it, and let _market_loop open a new one."""
        if conn.up:
            logger.warning("binance: market stream dropped ({}); reconnecting", reason)
        self._market_status(conn, False, reason)
        sock, conn.sock = conn.sock, None
        await self._close_sock(sock)

    async def _market_loop(self, conn: _MarketConn) -> None:
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
            except asyncio.TimeoutError:
                now = time.monotonic()
                if now - max(conn.last_msg, conn.connected_at) > self.market_silence_s:
                    await self._market_dropped(conn, f"no market data for {self.market_silence_s:.0f} s")
                    dropped = True
                elif now - conn.connected_at > self.proactive_reconnect_s:
                    logger.info("binance: renewing a market stream connection before the 24 h cut")
                    await self._close_sock(sock)
                    conn.sock = None
                continue
            except ReadLoopClosed:
                await self._market_dropped(conn, "market stream closed; reconnecting")
                dropped = True
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

    # ------------------------------------------------------------ user stream

    async def _drop_user_sock(self, unsubscribe: bool = False) -> None:
        sock, self._user_sock = self._user_sock, None
        if sock is None:
            return
        if self.bsm is not None:
            for key, value in list(self.bsm._conns.items()):
                if value is sock:
                    del self.bsm._conns[key]
        timer = getattr(sock, "_timer", None)
        if timer is not None:
            timer.cancel()
            sock._timer = None
        sub = getattr(sock, "_subscription_id", None)
        if sub is not None and self.client is not None:
            self.client.ws_api.unregister_subscription_queue(sub)
        if unsubscribe and sub is not None:
            try:
                await asyncio.wait_for(sock._unsubscribe_from_user_data_stream(), timeout=2)
            except Exception:  # noqa: BLE001 - the connection may be gone already
                pass
        sock._subscription_id = None

    async def _ws_api_settled(self, timeout: float = 15.0) -> None:
        """Wait until the WS-API connection is streaming or its read loop has given up (then a request reconnects).

        Subscribing while the library's read loop is itself reconnecting opens a second connection whose
        answer gets lost, so don't.
        """
        assert self.client is not None
        ws_api = self.client.ws_api
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ws_api._handle_read_loop is None and ws_api.ws is not None and ws_api.ws_state == WSListenerState.STREAMING:
                # The read loop died (e.g. on an unparseable frame) but the socket is still open: every request
                # would be sent and time out forever. Close it so the next request reconnects.
                try:
                    await asyncio.wait_for(ws_api.close(), timeout=5)
                except Exception:  # noqa: BLE001 - closing a broken connection may fail; ws is dropped anyway
                    ws_api.ws = None
                return
            if ws_api._handle_read_loop is None or ws_api.ws_state == WSListenerState.STREAMING:
                return
            await asyncio.sleep(0.05)

    async def _subscribe_user(self) -> None:
        assert self.bsm is not None
        wait = self.connections.wait_needed()
        if wait > 0:
            await asyncio.sleep(wait)
        self.connections.record()
        await self._ws_api_settled()
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
        ws_api = self.client.ws_api
        return ws_api.ws is not None and ws_api.ws_state == WSListenerState.STREAMING and ws_api._handle_read_loop is not None

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
            handle = self._on_user_event
            try:
                while not self._closing:
                    try:
                        msg = await asyncio.wait_for(sock.recv(), timeout=self.user_check_s)
                    except asyncio.TimeoutError:
                        if self._user_alive():
                            continue
                        raise _StreamDropped("the WebSocket API connection is gone")
                    if type(msg) is dict and msg.get("e") == "error":
                        raise _StreamDropped(f"{msg.get('type')}: {msg.get('m')}"[:200])
                    self._user_last_msg = time.monotonic()
                    handle(msg)
            except _StreamDropped as drop:
                logger.warning("binance: user data stream dropped ({}); resubscribing", drop)
                await self._drop_user_sock()
                self._user_status(False, str(drop))
                await asyncio.sleep(backoff_delay(0, self.backoff_base_s, self.backoff_cap_s))

    def _on_user_event(self, msg: Any) -> None:
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


class _StreamDropped(Exception):
    pass


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
