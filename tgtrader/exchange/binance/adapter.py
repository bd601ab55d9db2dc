"""Binance spot adapter on python-binance 1.0.37: REST discipline, market streams, user-data stream.

BinanceExchange is composed of one mixin per part, all sharing the state set up in its __init__:
- events.py: the guarded sink, fills once per (symbol, trade id), order tracking;
- rest.py: pacing, clock sync, error mapping, orders and reads;
- streams.py: market data (combined-stream sockets, the frame handler, their supervision);
- user_stream.py: the WS-API user data stream and the reconciliation after each (re)subscription;
- compat.py: every use of python-binance internals (nothing else reaches into the library);
- parse.py / fastpath.py: Binance payloads -> tgtrader.types values.

Design notes (facts about the library are in shared/notes/offline-clients.md):
- Endpoints come from settings. A REST/WS override redirects the client (subclass attributes API_URL and
  WS_API_URL, the socket manager's STREAM_URL); `testnet=True` is only passed when there is no override,
  because the library's testnet flag replaces API_URL on every call.
- The adapter never emits the same fill twice (dedup by (symbol, trade id) across the REST answer, the
  stream and reconciliation); the core/store dedups again across restarts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from binance import BinanceSocketManager
from loguru import logger

from tgtrader.core.ports import EventSink, ExchangeHealth
from tgtrader.core.rules import SymbolRules
from tgtrader.exchange.binance import compat
from tgtrader.exchange.binance.compat import TgAsyncClient
from tgtrader.exchange.binance.events import EventsMixin, _now_ms
from tgtrader.exchange.binance.fastpath import StreamParser
from tgtrader.exchange.binance.rest import RestMixin
from tgtrader.exchange.binance.streams import (
    MAX_STREAMS_PER_CONNECTION,
    MarketConn,
    MarketStreamsMixin,
    _cancel_and_wait,
)
from tgtrader.exchange.binance.user_stream import UserStreamMixin
from tgtrader.exchange.ratelimit import ConnectionBudget, OrderPacer, RestLimiter


class BinanceExchange(EventsMixin, RestMixin, MarketStreamsMixin, UserStreamMixin):
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
        recv_window_ms: int = 5_000,
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
        queue_size: int = 10_000,
        rules_ttl_s: float = 3600.0,
        conflate_book: bool = True,
        session_params: dict[str, Any] | None = None,
        user_stream: bool = True,
        key_type: str = "hmac",
        private_key: str | None = None,
        private_key_pass: str | None = None,
    ) -> None:
        self.name = "binance-testnet" if testnet else "binance"
        self._key, self._secret = api_key, api_secret
        # "hmac", or an asymmetric key Binance recommends (faqs/api_key_types.md: "We recommend to use Ed25519
        # API keys"; "HMAC keys are deprecated"): then `private_key` (PEM) signs and `api_secret` is unused.
        self.key_type = key_type
        self._private_key, self._private_key_pass = private_key, private_key_pass
        # rest-api.md, "Timing security": "It is recommended to use a small recvWindow of 5000 or less!"
        if not 0 < recv_window_ms <= 5_000:
            raise ValueError("recv_window_ms must be 1..5000 (Binance recommends 5000 or less)")
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
        self.queue_size = queue_size
        self.rules_ttl_s = rules_ttl_s
        self._session_params = session_params or {}
        self.user_stream = user_stream  # False: market data only (paper trading on live prices, no keys)

        self.client: TgAsyncClient | None = None
        self.bsm: BinanceSocketManager | None = None
        self.limiter = RestLimiter()
        self.order_pacer = OrderPacer(server_ms=self._server_ms)
        self.connections = ConnectionBudget()
        self.parser = StreamParser(conflate=conflate_book)
        self._sink: EventSink = lambda ev: None
        self._rules: dict[str, SymbolRules] = {}
        self._rules_loaded_at = 0.0
        self._rules_lock = asyncio.Lock()
        self._time_lock = asyncio.Lock()
        self._closing = False
        self._started = False
        # market streams
        self._symbols: set[str] = set()
        self._conns: list[MarketConn] = []
        self._market_last_msg = 0.0
        # user stream
        self._user_task: asyncio.Task | None = None
        self._user_sock: Any = None
        self._user_ready = asyncio.Event()
        self._user_last_msg = 0.0
        self._user_up = False
        self._user_switch: str | None = None  # why the WS-API connection must be replaced (serverShutdown)
        self._ws_api_conn: object | None = None  # the WS-API connection whose age is measured, and its opening
        self._ws_api_opened_at = 0.0
        self.user_switchovers = 0  # WS-API connections replaced without a gap (serverShutdown, 24 h)
        self.market_switchovers = 0
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

    def _server_ms(self) -> int:
        """Binance's clock as the signed requests see it (our clock + the synced offset)."""
        return _now_ms() + (compat.clock_offset(self.client) if self.client is not None else 0)

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

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect REST (clock sync, symbol rules) and the user stream (which reconciles once up)."""
        use_testnet = self._testnet and not self._rest_url
        self.client = compat.new_client(
            self._key, self._secret, testnet=use_testnet, rest_url=self._rest_url, ws_api_url=self._ws_api_url,
            request_timeout=self.request_timeout, recv_window_ms=self.recv_window_ms,
            session_params=self._session_params, on_response=self._on_response, key_type=self.key_type,
            private_key=self._private_key, private_key_pass=self._private_key_pass)
        compat.harden_ws_api(self.client, self._on_ws_api_shutdown)
        if self._testnet and self._rest_url:
            self.name = "binance-testnet"
        await self.sync_time()
        await self._load_rules()
        self.bsm = compat.new_socket_manager(self.client, queue_size=self.queue_size, stream_url=self._ws_url,
                                             testnet=use_testnet)
        self._started = True
        self._start_market_tasks()
        if not self.user_stream:
            return
        self._user_task = asyncio.create_task(self._user_loop(), name="binance-user-stream")
        try:
            await asyncio.wait_for(self._user_ready.wait(), timeout=max(5.0, self.request_timeout))
        except TimeoutError:
            logger.warning("binance: user data stream not up yet; it keeps retrying in the background")

    async def close(self) -> None:
        self._closing = True
        tasks = [c.task for c in self._conns if c.task] + [t for t in (self._user_task, self._reconcile_retry) if t]
        for t in tasks:
            await _cancel_and_wait(t)
        for conn in self._conns:
            await compat.close_socket(conn.sock)
            conn.sock = None
        self._conns.clear()
        await self._drop_user_sock(unsubscribe=True)
        if self.client is not None:
            await compat.close_client(self.client)

    # ------------------------------------------------------------ health

    def health(self) -> ExchangeHealth:
        now = time.monotonic()
        cutoff = now - 3600
        self._reconnects = [t for t in self._reconnects if t > cutoff]
        return ExchangeHealth(
            market_last_msg_age_s=(now - self._market_last_msg) if self._market_last_msg else None,
            user_last_msg_age_s=(now - self._user_last_msg) if self._user_last_msg else None,
            reconnects_last_hour=len(self._reconnects),
            clock_offset_ms=compat.clock_offset(self.client) if self.client else 0,
            used_weight_1m=self.limiter.used_weight,
            banned_until_ms=_now_ms() + int(self.limiter.ban_remaining() * 1000) if self.limiter.banned else 0,
        )

