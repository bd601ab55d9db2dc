"""A loopback Binance spot server for tests: the real python-binance client talks to it over HTTP/WebSocket.

It speaks the wire protocol the adapter uses, with Binance's JSON shapes (field sets copied from recorded
payloads in shared/data/binance), HMAC-SHA256 signatures, timestamp/recvWindow checks, and a venue written from
Binance's documents (tests/fakes/binance: filters, errors, matching with limited depth, self-trade prevention,
commission; it imports nothing from tgtrader), a test API to move the market, and fault injection:

    fake = FakeBinance(); await fake.start()         # fake.rest_url / fake.ws_url / fake.ws_api_url
    fake.set_balance("USDT", "10000")
    await fake.set_price("BTCUSDT", "50000")          # trade + bookTicker messages, fills resting orders
    fake.fail_next(429, n=1, retry_after=1)           # next REST call(s) answer 429 / 418 / 5xx
    fake.delay_next(3.0)                              # next REST call executes, then answers late
    fake.lose_next_order_response()                   # next order executes, the connection is cut
    await fake.drop_websockets(); fake.refuse_ws_for(2.0); fake.clock_offset_ms = 60_000
    fake.order_posts["my-cid"]                        # how many times a client order id was POSTed
    fake.venue.set_liquidity("BTCUSDT", asks=[("50000", "0.001")])  # thin book: MARKET orders expire the rest
    fake.venue.commission = "quote"; fake.venue.bnb_fees = True   # commission asset (default: Binance's)

Everything runs on 127.0.0.1 with a random port.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import orjson
from aiohttp import WSMsgType, web
from Crypto.Hash import SHA256
from Crypto.PublicKey import ECC, RSA
from Crypto.Signature import eddsa, pkcs1_15

from tests.fakes.binance import Order, Trade, Venue, VenueError

API_KEY = "test-api-key"
API_SECRET = "test-api-secret"

D0 = Decimal(0)
ACCOUNT = "main"  # the one account the API key trades on

# BTCUSDT as GET /api/v3/exchangeInfo returns it (field set from the recorded ccxt static markets, numbers as ints
# the way the live API sends them). Other symbols are derived from it.
_BTCUSDT_INFO: dict[str, Any] = {
    "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "baseAssetPrecision": 8,
    "quoteAsset": "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
    "quoteCommissionPrecision": 8,
    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
    "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
    "cancelReplaceAllowed": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": True,
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
        {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
        {"filterType": "ICEBERG_PARTS", "limit": 10},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "128.52621715", "stepSize": "0.00000000"},
        {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
         "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
        {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
         "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
        {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
         "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
    ],
    "permissions": [], "permissionSets": [["SPOT", "MARGIN"]],
    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
    "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
}


def symbol_info(symbol: str, base: str, quote: str, tick: str, step: str, min_qty: str | None = None) -> dict[str, Any]:
    info = copy.deepcopy(_BTCUSDT_INFO)
    info.update(symbol=symbol, baseAsset=base, quoteAsset=quote)
    for f in info["filters"]:
        if f["filterType"] == "PRICE_FILTER":
            f["tickSize"] = tick
            f["minPrice"] = tick
        elif f["filterType"] == "LOT_SIZE":
            f["stepSize"] = step
            f["minQty"] = min_qty or step
    return info


DEFAULT_SYMBOLS = [
    copy.deepcopy(_BTCUSDT_INFO),
    symbol_info("ETHUSDT", "ETH", "USDT", "0.01000000", "0.00010000"),
    symbol_info("ADAUSDT", "ADA", "USDT", "0.00010000", "0.10000000"),
]


def f8(d: Decimal) -> str:
    """Binance prints amounts with 8 decimals."""
    return f"{d.quantize(Decimal('0.00000001'), rounding=ROUND_DOWN):.8f}"


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None, data: Any = None):
        super().__init__(msg)
        self.status, self.code, self.msg, self.headers, self.data = status, code, msg, headers or {}, data


@dataclass
class _Fault:
    status: int
    retry_after: float | None = None
    code: int | None = None
    msg: str = ""
    path: str | None = None  # only calls to this path (e.g. "/api/v3/order") are affected


@dataclass
class MarketConn:
    ws: web.WebSocketResponse
    streams: set[str] = field(default_factory=set)


class FakeBinance:
    """The server. One instance per test; `await start()` / `await stop()`."""

    def __init__(self, symbols: list[dict[str, Any]] | None = None, api_key: str = API_KEY,
                 api_secret: str = API_SECRET, weight_limit: int = 6000, control_routes: bool = False) -> None:
        self.control_routes = control_routes  # HTTP test API (/_fake/...) for a fake in another process
        self.api_key, self.api_secret = api_key, api_secret
        self.symbols = {s["symbol"]: s for s in (symbols or copy.deepcopy(DEFAULT_SYMBOLS))}
        self.weight_limit = weight_limit
        self.port = 0
        self._runner: web.AppRunner | None = None
        # market and account state: the venue written from Binance's documents (tests/fakes/binance/)
        self.venue = Venue(self.symbols.values(), self.server_ms)
        self.engine = self.venue  # older tests' name for it
        # Binance's default (commission_faq.md): a buy's commission in the base asset received, a sell's in
        # quote (venue.commission = "received", set by the venue); tests switch to "quote" or BNB per case.
        self.rules = {k: m.spec for k, m in self.venue.markets.items()}
        self._market_trade_ids = itertools.count(900_000)
        self._market_update_ids = itertools.count(400_000_000)
        # counters for tests
        self.order_posts: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.market_connections_opened = 0
        self.user_subscriptions_opened = 0
        self.ws_api_connections_opened = 0
        self.control_messages: list[dict[str, Any]] = []
        self.order_received_at: dict[str, float] = {}  # cid -> perf_counter at POST arrival (benchmarks)
        self.trade_event_sent_at: dict[str, float] = {}  # cid -> perf_counter when its TRADE event was written
        # fault injection
        self.clock_offset_ms = 0
        self._faults: list[_Fault] = []
        self._delays: list[float] = []
        self._lose_order_responses = 0
        self._errors_after_execution: list[tuple[int, int, str]] = []  # see fail_next_order_after_execution
        self._query_lag_s = 0.0
        self._refuse_ws_until = 0.0
        self.used_weight = 0
        self.forced_used_weight: int | None = None
        self.max_connection_age_s: float | None = None  # WebSocket connections are closed at this age (Binance: 24 h)
        self.use_public_key(None)  # HMAC with api_secret until a test hands an Ed25519 / RSA public key
        self.shutdowns_sent = 0
        # ORDERS (unfilled order count) limits: see set_order_limits
        self.order_limits: list[tuple[str, int, int]] = [("SECOND", 10, 100), ("DAY", 1, 200_000)]
        self._order_counts: dict[tuple[str, int], tuple[int, int]] = {}  # (interval, num) -> (window start, count)
        self.orders_refused = 0  # 429 / -1015 answers sent
        self.weight_window_s = 60.0
        self._weight_window_start = time.monotonic()
        # sockets
        self.market_conns: list[MarketConn] = []
        self.ws_api_conns: set[web.WebSocketResponse] = set()
        self.user_subs: dict[web.WebSocketResponse, set[int]] = {}
        self._sub_ids = itertools.count(0)
        self._outboxes: dict[web.WebSocketResponse, asyncio.Queue] = {}
        self._writers: set[asyncio.Future] = set()
        self.user_event_hook = None  # optional callable(event_dict) for benchmarks
        self.mute_user_stream = False  # events are generated but not delivered (a silent gap)
        # optional callable(client_order_id) run after a POSTed order executed, before its answer is sent
        # (the reliability suite SIGKILLs the bot there: executed on the exchange, ack never stored)
        self.after_order_hook: Any = None

    # ------------------------------------------------------------ lifecycle

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def ws_api_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws-api/v3"

    async def start(self) -> "FakeBinance":
        app = web.Application()
        r = app.router
        r.add_get("/api/v3/ping", self._ping)
        r.add_get("/api/v3/time", self._time)
        r.add_get("/api/v3/exchangeInfo", self._exchange_info)
        r.add_route("*", "/api/v3/order", self._order)
        r.add_route("*", "/api/v3/openOrders", self._open_orders)
        r.add_post("/api/v3/order/cancelReplace", self._cancel_replace)
        r.add_get("/api/v3/myTrades", self._my_trades)
        r.add_get("/api/v3/account", self._account)
        r.add_get("/api/v3/ticker/price", self._ticker_price)
        r.add_get("/api/v3/ticker/bookTicker", self._book_ticker)
        r.add_get("/api/v3/avgPrice", self._avg_price)
        r.add_get("/api/v3/klines", self._klines)
        r.add_get("/stream", self._market_ws)
        r.add_get("/ws-api/v3", self._ws_api)
        if self.control_routes:
            r.add_post("/_fake/set_price", self._ctl_set_price)
            r.add_post("/_fake/balance", self._ctl_balance)
            r.add_get("/_fake/stats", self._ctl_stats)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        await self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ test API: market and account

    def server_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    def set_balance(self, asset: str, free: str | Decimal) -> None:
        """Set the account's free balance of `asset` (no event, like a deposit done before the test)."""
        self.venue.set_balance(ACCOUNT, asset, Decimal(free))

    @property
    def prices(self) -> dict[str, Decimal]:
        out = {}
        for sym in self.venue.symbols:
            last = self.venue.last_price(sym)
            if last is not None:
                out[sym] = last
        return out

    def trades(self, symbol: str) -> list[Trade]:
        """Every trade of the account on `symbol`, oldest first."""
        return self.venue.my_trades(ACCOUNT, symbol)

    async def set_price(self, symbol: str, price: str | Decimal, qty: str = "0.01000000") -> int:
        """Move the market: broadcast a trade and a bookTicker, fill every resting order the move touched
        (at its limit price, in path order; stops reached trigger). Returns orders that traded."""
        px = Decimal(price)
        now = self.server_ms()
        tick = self.venue.market(symbol).spec.tick
        low_s = symbol.lower()
        self._broadcast(f"{low_s}@trade", {
            "e": "trade", "E": now, "s": symbol, "t": next(self._market_trade_ids), "p": f8(px), "q": qty,
            "T": now, "m": True, "M": True,
        })
        self._broadcast(f"{low_s}@bookTicker", {
            "u": next(self._market_update_ids), "s": symbol, "b": f8(px - tick), "B": "1.00000000",
            "a": f8(px + tick), "A": "1.00000000",
        })
        filled = self.venue.on_trade(symbol, px, Decimal(qty))
        self._publish()
        await asyncio.sleep(0)
        return filled

    def _publish(self) -> None:
        """Send the venue's news (executionReport, outboundAccountPosition, already in Binance's layout)."""
        for _account, event in self.venue.drain():
            self._user_event(event)

    async def _ctl_set_price(self, request: web.Request) -> web.Response:
        body = await request.json()
        filled = await self.set_price(body["symbol"], body["price"])
        return self._json({"filled": filled})

    async def _ctl_balance(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.set_balance(body["asset"], body["free"])
        return self._json({})

    async def _ctl_stats(self, request: web.Request) -> web.Response:
        return self._json({"order_received_at": self.order_received_at, "trade_event_sent_at": self.trade_event_sent_at,
                           "order_posts": dict(self.order_posts)})

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

    # ------------------------------------------------------------ HTTP plumbing

    def _json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        h = {"X-MBX-USED-WEIGHT-1M": str(self.forced_used_weight if self.forced_used_weight is not None else self.used_weight)}
        if headers:
            h.update(headers)
        return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json", headers=h)

    def _error(self, err: ApiError) -> web.Response:
        body: dict[str, Any] = {"code": err.code, "msg": err.msg}
        if err.data is not None:
            body["data"] = err.data
        return self._json(body, err.status, err.headers)

    async def _params(self, request: web.Request, signed: bool) -> dict[str, str]:
        body = await request.text() if request.can_read_body else ""
        raw = request.query_string
        if body:
            raw = f"{raw}&{body}" if raw else body
        params = dict(parse_qsl(raw, keep_blank_values=True))
        if not signed:
            return params
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if "&signature=" not in raw and not raw.startswith("signature="):
            raise ApiError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        payload, _, sig = raw.rpartition("signature=")
        payload = payload[:-1] if payload.endswith("&") else payload
        if not self._signature_ok(payload, unquote(sig)):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        try:
            ts = int(params["timestamp"])
        except (KeyError, ValueError):
            raise ApiError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.") from None
        recv_window = int(params.get("recvWindow", "5000"))
        now = self.server_ms()
        if ts > now + 1000:
            raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > recv_window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return params

    async def _gate(self, request: web.Request, weight: int) -> None:
        """Faults, weight accounting and delays common to every REST call."""
        self.requests[f"{request.method} {request.path}"] += 1
        now = time.monotonic()
        if now - self._weight_window_start >= self.weight_window_s:
            self._weight_window_start, self.used_weight = now, 0
        fault = next((f for f in self._faults if f.path is None or f.path == request.path), None)
        if fault is not None:
            self._faults.remove(fault)
            hdr = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after is not None else {}
            if fault.code is not None:
                raise ApiError(fault.status, fault.code, fault.msg or "Injected error.", hdr)
            if fault.status == 429:
                raise ApiError(429, -1003, f"Too much request weight used; current limit is {self.weight_limit} request "
                               "weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.", hdr)
            if fault.status == 418:
                until = self.server_ms() + int((fault.retry_after or 120) * 1000)
                raise ApiError(418, -1003, f"Way too much request weight used; IP banned until {until}. "
                               "Please use WebSocket Streams for live updates to avoid bans.", hdr)
            if fault.status == 502:
                raise ApiError(502, 0, "Bad Gateway")
            if fault.status == 503:
                raise ApiError(503, -1001, "Internal error; unable to process your request. Please try again.")
            raise ApiError(fault.status, -1000, "An unknown error occured while processing the request.")
        self.used_weight += weight

    async def _late(self) -> None:
        if self._delays:
            await asyncio.sleep(self._delays.pop(0))

    async def _call(self, request: web.Request, weight: int, signed: bool, fn) -> web.StreamResponse:
        new_order = request.method == "POST" and request.path in ("/api/v3/order", "/api/v3/order/cancelReplace")
        try:
            await self._gate(request, weight)
            params = await self._params(request, signed)
            if new_order:
                self._check_order_count()
            result = fn(params)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as err:
            if err.status == 502 and err.code == 0:
                return web.Response(text="<html><body><h1>502 Bad Gateway</h1></body></html>", status=502,
                                    content_type="text/html")
            return self._error(err)
        if isinstance(result, web.StreamResponse):
            return result
        await self._late()
        return self._json(result, headers=self._count_order(result) if new_order else None)

    # ------------------------------------------------------------ ORDERS limits (unfilled order count)

    _LETTER = {"SECOND": ("S", 1), "MINUTE": ("M", 60), "HOUR": ("H", 3600), "DAY": ("D", 86400)}

    def set_order_limits(self, limits: list[tuple[str, int, int]]) -> None:
        """The ORDERS rate limits, as exchangeInfo lists them: [(interval, intervalNum, limit)], e.g.
        [("SECOND", 10, 100), ("DAY", 1, 200_000)] (Binance's); [] turns them off.

        rest-api.md, "Unfilled Order Count": every successful order answer carries X-MBX-ORDER-COUNT-(intervalNum)
        (intervalLetter); over the limit, a 429 with Retry-After (errors.md -1015 "Too many new orders; current
        limit is %s orders per %s."). faqs/order_count_decrement.md: fixed windows ("at most 100 new orders between
        12:34:00 and 12:34:10, then 100 more from 12:34:10 to 12:34:20"), cancels are not orders, and an order that
        fills at once as taker decrements the count by one (a later maker fill is not modelled: it only makes this
        fake stricter than Binance).
        """
        self.order_limits = list(limits)
        self._order_counts.clear()

    def use_up_order_count(self) -> None:
        """Another client of the account has placed orders up to the shortest ORDERS limit in its current window
        (faqs/order_count_decrement.md: "Unfilled order count is shared across all IP addresses, all API keys,
        and all APIs"): new orders get 429 / -1015 until that window turns (the day's count is left alone)."""
        windows = self._order_windows()
        if windows:
            key, _header, limit, start, _count = min(
                windows, key=lambda w: self._LETTER[w[0][0]][1] * w[0][1])
            self._order_counts[key] = (start, limit)

    def _order_windows(self) -> list[tuple[tuple[str, int], str, int, int, int]]:
        """[(key, header, limit, window start ms, count in that window)] at the server's current time."""
        now = self.server_ms()
        out = []
        for interval, num, limit in self.order_limits:
            letter, unit = self._LETTER[interval]
            span = num * unit * 1000
            start = now - now % span
            seen_start, count = self._order_counts.get((interval, num), (start, 0))
            out.append(((interval, num), f"X-MBX-ORDER-COUNT-{num}{letter}", limit, start,
                        count if seen_start == start else 0))
        return out

    def _check_order_count(self) -> None:
        for (interval, num), header, limit, start, count in self._order_windows():
            if count >= limit:
                span_ms = num * self._LETTER[interval][1] * 1000
                retry = max(1, -(-(start + span_ms - self.server_ms()) // 1000))
                self.orders_refused += 1
                raise ApiError(429, -1015, f"Too many new orders; current limit is {limit} orders per "
                               f"{num} {interval}.", {"Retry-After": str(retry), header: str(count)})

    def _count_order(self, result: Any) -> dict[str, str]:
        """Count an accepted order in every window; the X-MBX-ORDER-COUNT-* headers of its answer."""
        ack = result.get("newOrderResponse") if isinstance(result, dict) and "newOrderResponse" in result else result
        filled_now = isinstance(ack, dict) and Decimal(str(ack.get("executedQty") or "0")) > 0
        headers = {}
        for key, header, _limit, start, count in self._order_windows():
            count = count + (0 if filled_now else 1)
            self._order_counts[key] = (start, count)
            headers[header] = str(count)
        return headers

    # ------------------------------------------------------------ REST handlers

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        return await self._call(request, 1, False, lambda p: {})

    async def _time(self, request: web.Request) -> web.StreamResponse:
        return await self._call(request, 1, False, lambda p: {"serverTime": self.server_ms()})

    async def _exchange_info(self, request: web.Request) -> web.StreamResponse:
        def answer(p: dict[str, str]) -> dict[str, Any]:
            syms = list(self.symbols.values())
            if "symbol" in p:
                if p["symbol"] not in self.symbols:
                    raise ApiError(400, -1121, "Invalid symbol.")
                syms = [self.symbols[p["symbol"]]]
            return {
                "timezone": "UTC", "serverTime": self.server_ms(),
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.weight_limit},
                    *({"rateLimitType": "ORDERS", "interval": i, "intervalNum": n, "limit": lim}
                      for i, n, lim in self.order_limits),
                    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
                ],
                "exchangeFilters": [], "symbols": syms,
            }
        return await self._call(request, 20, False, answer)

    def _symbol(self, p: dict[str, str]) -> str:
        sym = p.get("symbol")
        if not sym:
            raise ApiError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if sym not in self.symbols:
            raise ApiError(400, -1121, "Invalid symbol.")
        return sym

    def _find(self, p: dict[str, str], sym: str, query: bool = False) -> Order | None:
        """The order a request names. `query`: GET /api/v3/order, whose data source is "Memory => Database"
        (rest-api.md): with lag_order_queries it does not see an order accepted less than that long ago."""
        if p.get("orderId"):
            o = self.venue.find(ACCOUNT, sym, order_id=int(p["orderId"]))
        elif p.get("origClientOrderId"):
            o = self.venue.find(ACCOUNT, sym, client_order_id=p["origClientOrderId"])
        else:
            raise ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if o is not None and query and not self._visible(o):
            return None  # see lag_order_queries
        return o

    def _visible(self, o: Order) -> bool:
        """Whether a "Memory => Database" read (query order, open orders, trade list) sees `o` yet."""
        return time.monotonic() - o.visible_from >= self._query_lag_s

    @staticmethod
    def _api_error(err: VenueError) -> ApiError:
        return ApiError(err.status, err.code, err.msg, err.headers, err.data)

    async def _order(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return await self._call(request, 1, True, lambda p: self._new_order(p, request))
        if request.method == "GET":
            def get(p: dict[str, str]) -> dict[str, Any]:
                sym = self._symbol(p)
                o = self._find(p, sym, query=True)
                if o is None:
                    raise ApiError(400, -2013, "Order does not exist.")
                return o.rest()
            return await self._call(request, 4, True, get)
        if request.method == "DELETE":
            def cancel(p: dict[str, str]) -> dict[str, Any]:
                sym = self._symbol(p)
                o = self._find(p, sym)
                if o is None or not o.status.is_open:
                    raise ApiError(400, -2011, "Unknown order sent.")
                return self._cancel(o, p.get("newClientOrderId") or f"cancel{o.order_id}")
            return await self._call(request, 1, True, cancel)
        return web.Response(status=405)

    async def _new_order(self, p: dict[str, str], request: web.Request) -> Any:
        cid = p.get("newClientOrderId") or f"fake{len(self.order_posts) + 1}"
        self.order_posts[cid] += 1
        self.order_received_at[cid] = time.perf_counter()
        answer = self._place(p, cid)
        if self.after_order_hook is not None:  # the order is executed, its answer not yet written
            self.after_order_hook(cid)
        if self._errors_after_execution:
            status, code, msg = self._errors_after_execution.pop(0)
            raise ApiError(status, code, msg)
        if self._lose_order_responses > 0:
            self._lose_order_responses -= 1
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)  # never reaches the client: the connection is gone
        return answer

    def _place(self, p: dict[str, str], cid: str) -> dict[str, Any]:
        self._symbol(p)
        try:
            o, fills = self.venue.place(ACCOUNT, p, cid)
        except VenueError as err:
            raise self._api_error(err) from None
        finally:
            self._publish()
        return o.ack(fills, self.server_ms())

    def _cancel(self, o: Order, cancel_cid: str) -> dict[str, Any]:
        try:
            self.venue.cancel(ACCOUNT, o.symbol, cancel_cid, order_id=o.order_id)
        except VenueError as err:
            raise self._api_error(err) from None
        finally:
            self._publish()
        return o.cancel_answer(cancel_cid, self.server_ms())

    async def _open_orders(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            def listing(p: dict[str, str]) -> list[dict[str, Any]]:
                sym = self._symbol(p) if "symbol" in p else None
                return [o.rest() for o in self.venue.open_order_records(ACCOUNT, sym) if self._visible(o)]
            return await self._call(request, 6, True, listing)
        if request.method == "DELETE":
            def cancel_all(p: dict[str, str]) -> list[dict[str, Any]]:
                sym = self._symbol(p)
                resting = self.venue.open_order_records(ACCOUNT, sym)
                if not resting:
                    raise ApiError(400, -2011, "Unknown order sent.")
                return [self._cancel(o, f"cancelall{o.order_id}") for o in resting]
            return await self._call(request, 1, True, cancel_all)
        return web.Response(status=405)

    async def _cancel_replace(self, request: web.Request) -> web.StreamResponse:
        def replace(p: dict[str, str]) -> dict[str, Any]:
            self._symbol(p)
            cid = p.get("newClientOrderId") or f"fake{len(self.order_posts) + 1}"
            self.order_posts[cid] += 1
            cancel_cid = p.get("cancelNewClientOrderId") or f"cancel{cid}"
            try:
                return self.venue.cancel_replace(ACCOUNT, p, cid, cancel_cid)
            except VenueError as err:
                raise self._api_error(err) from None
            finally:
                self._publish()
        return await self._call(request, 1, True, replace)

    async def _my_trades(self, request: web.Request) -> web.StreamResponse:
        def trades(p: dict[str, str]) -> list[dict[str, Any]]:
            sym = self._symbol(p)
            limit = min(int(p.get("limit", "500")), 1000)
            rows = self.venue.my_trades(ACCOUNT, sym, int(p["fromId"]) if p.get("fromId") else None)
            if p.get("orderId"):
                rows = [t for t in rows if t.order_id == int(p["orderId"])]
            if self._query_lag_s:
                hidden = {o.order_id for o in self.venue.all_orders(ACCOUNT) if not self._visible(o)}
                rows = [t for t in rows if t.order_id not in hidden]
            rows = rows[:limit] if p.get("fromId") else rows[-limit:]
            return [t.rest() for t in rows]
        return await self._call(request, 20, True, trades)

    async def _account(self, request: web.Request) -> web.StreamResponse:
        def account(p: dict[str, str]) -> dict[str, Any]:
            return {
                "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
                "commissionRates": {"maker": f8(self.venue.maker_rate), "taker": f8(self.venue.taker_rate),
                                    "buyer": "0.00000000", "seller": "0.00000000"},
                "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.server_ms(),
                "accountType": "SPOT",
                "balances": [{"asset": a, "free": f8(b.free), "locked": f8(b.locked)}
                             for a, b in sorted(self.venue.balances(ACCOUNT).items())],
                "permissions": ["SPOT"], "uid": 354937868,
            }
        return await self._call(request, 20, True, account)

    def _price_of(self, sym: str) -> Decimal:
        px = self.venue.last_price(sym)
        if px is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return px

    async def _ticker_price(self, request: web.Request) -> web.StreamResponse:
        def price(p: dict[str, str]) -> Any:
            if "symbol" in p:
                sym = self._symbol(p)
                return {"symbol": sym, "price": f8(self._price_of(sym))}
            return [{"symbol": s, "price": f8(v)} for s, v in self.prices.items()]
        return await self._call(request, 2, False, price)

    async def _book_ticker(self, request: web.Request) -> web.StreamResponse:
        def book(p: dict[str, str]) -> Any:
            sym = self._symbol(p)
            px, tick = self._price_of(sym), self.venue.market(sym).spec.tick
            return {"symbol": sym, "bidPrice": f8(px - tick), "bidQty": "1.00000000",
                    "askPrice": f8(px + tick), "askQty": "1.00000000"}
        return await self._call(request, 2, False, book)

    async def _avg_price(self, request: web.Request) -> web.StreamResponse:
        def avg(p: dict[str, str]) -> Any:
            sym = self._symbol(p)
            # rest-api.md, "Current average price": {"mins": 5, "price": ..., "closeTime": last trade time}
            spec = self.venue.market(sym).spec
            avg = self.venue.avg_price(sym)
            if avg is None:
                raise ApiError(400, -1121, "Invalid symbol.")
            return {"mins": spec.avg_price_mins(), "price": f8(avg), "closeTime": self.server_ms()}
        return await self._call(request, 2, False, avg)

    async def _klines(self, request: web.Request) -> web.StreamResponse:
        from tests.fakes.fake_klines import answer  # candles: deterministic per symbol, or self.kline_rows

        return await self._call(request, 2, False, lambda p: answer(self, p))

    # ------------------------------------------------------------ market-stream WebSocket

    def _refusing(self) -> bool:
        return time.monotonic() < self._refuse_ws_until

    async def _market_ws(self, request: web.Request) -> web.StreamResponse:
        if self._refusing():
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.market_connections_opened += 1
        streams = request.query.get("streams", "")
        conn = MarketConn(ws, {s for s in streams.split("/") if s})
        self.market_conns.append(conn)
        aged = self._age_limit(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = orjson.loads(msg.data)
                    method, rid = req.get("method"), req.get("id")
                except (orjson.JSONDecodeError, AttributeError):
                    await ws.send_str('{"error":{"code":2,"msg":"Invalid request"},"id":null}')
                    continue
                self.control_messages.append(req)
                params = req.get("params") or []
                if method == "SUBSCRIBE":
                    conn.streams.update(params)
                    await ws.send_bytes(orjson.dumps({"result": None, "id": rid}))
                elif method == "UNSUBSCRIBE":
                    conn.streams.difference_update(params)
                    await ws.send_bytes(orjson.dumps({"result": None, "id": rid}))
                elif method == "LIST_SUBSCRIPTIONS":
                    await ws.send_bytes(orjson.dumps({"result": sorted(conn.streams), "id": rid}))
                else:
                    await ws.send_bytes(orjson.dumps({"error": {"code": 1, "msg": "Invalid value type"}, "id": rid}))
        finally:
            if aged is not None:
                aged.cancel()
            if conn in self.market_conns:
                self.market_conns.remove(conn)
        return ws

    def _broadcast(self, stream: str, data: dict[str, Any]) -> None:
        frame: str | None = None
        for conn in self.market_conns:
            if stream in conn.streams and not conn.ws.closed:
                if frame is None:
                    frame = orjson.dumps({"stream": stream, "data": data}).decode()
                self._send(conn.ws, frame)

    def _send(self, ws: web.WebSocketResponse, frame: str, stamp: str | None = None) -> None:
        """Queue a frame for `ws`; one writer task per socket keeps frames in order."""
        q = self._outboxes.get(ws)
        if q is None:
            q = self._outboxes[ws] = asyncio.Queue()
            self._writers.add(asyncio.ensure_future(self._writer(ws, q)))
        q.put_nowait((frame, stamp))

    async def _writer(self, ws: web.WebSocketResponse, q: asyncio.Queue) -> None:
        try:
            while not ws.closed:
                frame, stamp = await q.get()
                if stamp is not None:
                    self.trade_event_sent_at[stamp] = time.perf_counter()
                await ws.send_str(frame)
        except Exception:  # noqa: BLE001 - the peer is gone; a real exchange just drops it
            pass
        finally:
            self._outboxes.pop(ws, None)

    # ------------------------------------------------------------ WebSocket API (user data stream)

    async def _ws_api(self, request: web.Request) -> web.StreamResponse:
        if self._refusing():
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.ws_api_conns.add(ws)
        self.ws_api_connections_opened += 1
        aged = self._age_limit(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    continue
                rid, method, params = req.get("id"), req.get("method"), req.get("params") or {}
                if method == "userDataStream.subscribe.signature":
                    err = self._check_ws_signature(params)
                    if err is not None:
                        await ws.send_bytes(orjson.dumps({"id": rid, "status": 400, "error": err}))
                        continue
                    sub = next(self._sub_ids)
                    self.user_subs.setdefault(ws, set()).add(sub)
                    self.user_subscriptions_opened += 1
                    await ws.send_bytes(orjson.dumps({"id": rid, "status": 200, "result": {"subscriptionId": sub}}))
                elif method == "userDataStream.unsubscribe":
                    subs = self.user_subs.get(ws, set())
                    sub = params.get("subscriptionId")
                    await ws.send_bytes(orjson.dumps({"id": rid, "status": 200, "result": {}}))
                    if sub in subs:  # user-data-stream.md, "Event Stream Terminated"
                        subs.discard(sub)
                        await ws.send_str(self._terminated(sub))
                else:
                    await ws.send_bytes(orjson.dumps({"id": rid, "status": 400,
                                                      "error": {"code": -1100, "msg": f"Unknown method {method}"}}))
        finally:
            if aged is not None:
                aged.cancel()
            self.ws_api_conns.discard(ws)
            self.user_subs.pop(ws, None)
        return ws

    def _check_ws_signature(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("apiKey") != self.api_key:
            return {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        unsigned = {k: v for k, v in params.items() if k != "signature"}
        if not self._signature_ok(urlencode(dict(sorted(unsigned.items()))), str(params.get("signature", ""))):
            return {"code": -1022, "msg": "Signature for this request is not valid."}
        # rest-api.md / web-socket-api.md, "Timing security": recvWindow defaults to 5000 ms; a timestamp more
        # than 1 s ahead of the server is refused.
        ts, window = int(params.get("timestamp", 0)), float(params.get("recvWindow", 5000))
        if ts >= self.server_ms() + 1000 or self.server_ms() - ts > window:
            return {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
        return None

    # ------------------------------------------------------------ API keys (HMAC, Ed25519, RSA)

    def use_public_key(self, pem: str | None) -> None:
        """Verify signatures with this Ed25519 or RSA public key (PEM) instead of the HMAC secret (None: HMAC).

        rest-api.md, "SIGNED Endpoint security": HMAC signatures are hex and "not case-sensitive"; RSA
        (RSASSA-PKCS1-v1_5 with SHA-256) and Ed25519 signatures are base64 and case-sensitive; the signed
        payload is the query string concatenated with the body, percent-encoded as sent."""
        self.key_type = "hmac"
        self.public_key: Any = None
        if pem is not None:
            try:
                self.public_key, self.key_type = ECC.import_key(pem), "ed25519"
            except ValueError:
                self.public_key, self.key_type = RSA.import_key(pem), "rsa"
        self.signatures_checked: Counter[str] = Counter()

    def _signature_ok(self, payload: str, sig: str) -> bool:
        kind = self.key_type
        self.signatures_checked[kind] += 1
        if kind == "hmac":
            good = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
            return hmac.compare_digest(good, sig.lower())
        try:
            raw = base64.b64decode(sig, validate=True)
            if kind == "ed25519":
                eddsa.new(self.public_key, "rfc8032").verify(payload.encode(), raw)
            else:
                pkcs1_15.new(self.public_key).verify(SHA256.new(payload.encode()), raw)
        except (ValueError, TypeError):
            return False
        return True

    def _user_event(self, event: dict[str, Any]) -> None:
        if self.user_event_hook is not None:
            self.user_event_hook(event)
        if self.mute_user_stream:
            return
        for ws, subs in list(self.user_subs.items()):
            if ws.closed:
                continue
            for sub in subs:
                stamp = event["c"] if event.get("x") == "TRADE" else None
                self._send(ws, orjson.dumps({"subscriptionId": sub, "event": event}).decode(), stamp)
