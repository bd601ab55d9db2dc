"""A loopback Binance spot server for tests: the real python-binance client talks to it over HTTP/WebSocket.

It speaks the wire protocol the adapter uses, with Binance's JSON shapes (field sets copied from recorded
payloads in shared/data/binance), HMAC-SHA256 signatures, timestamp/recvWindow checks, symbol filters and
error codes, a small matching engine, a test API to move the market, and fault injection:

    fake = FakeBinance(); await fake.start()         # fake.rest_url / fake.ws_url / fake.ws_api_url
    fake.set_balance("USDT", "10000")
    await fake.set_price("BTCUSDT", "50000")          # trade + bookTicker messages, fills resting orders
    fake.fail_next(429, n=1, retry_after=1)           # next REST call(s) answer 429 / 418 / 5xx
    fake.delay_next(3.0)                              # next REST call executes, then answers late
    fake.lose_next_order_response()                   # next order executes, the connection is cut
    await fake.drop_websockets(); fake.refuse_ws_for(2.0); fake.clock_offset_ms = 60_000
    fake.order_posts["my-cid"]                        # how many times a client order id was POSTed

Everything runs on 127.0.0.1 with a random port.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import itertools
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from aiohttp import WSMsgType, web

from tgtrader.core.rules import SymbolRules
from tgtrader.types import OrderType, Side

API_KEY = "test-api-key"
API_SECRET = "test-api-secret"

D0 = Decimal(0)
FEE_RATE = Decimal("0.001")

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
class FakeOrder:
    symbol: str
    order_id: int
    client_order_id: str
    side: Side
    type: str
    tif: str
    price: Decimal
    orig_qty: Decimal
    stop_price: Decimal = D0
    executed_qty: Decimal = D0
    cum_quote: Decimal = D0
    status: str = "NEW"
    time: int = 0
    update_time: int = 0
    locked_asset: str = ""
    locked_amount: Decimal = D0

    def rest(self, **extra: Any) -> dict[str, Any]:
        """GET /api/v3/order shape."""
        out = {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_order_id, "price": f8(self.price), "origQty": f8(self.orig_qty),
            "executedQty": f8(self.executed_qty), "cummulativeQuoteQty": f8(self.cum_quote),
            "status": self.status, "timeInForce": self.tif, "type": self.type, "side": self.side.value,
            "stopPrice": f8(self.stop_price), "icebergQty": "0.00000000", "time": self.time,
            "updateTime": self.update_time, "isWorking": self.status in ("NEW", "PARTIALLY_FILLED"),
            "workingTime": self.time, "origQuoteOrderQty": "0.00000000", "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        out.update(extra)
        return out

    def ack(self, fills: list[dict[str, Any]], transact_time: int) -> dict[str, Any]:
        """POST /api/v3/order FULL response shape."""
        return {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_order_id, "transactTime": transact_time, "price": f8(self.price),
            "origQty": f8(self.orig_qty), "executedQty": f8(self.executed_qty),
            "origQuoteOrderQty": "0.00000000",
            "cummulativeQuoteQty": f8(self.cum_quote), "status": self.status, "timeInForce": self.tif,
            "type": self.type, "side": self.side.value, "workingTime": transact_time,
            "fills": fills, "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def cancel_answer(self, cancel_cid: str, transact_time: int) -> dict[str, Any]:
        """DELETE /api/v3/order shape."""
        return {
            "symbol": self.symbol, "origClientOrderId": self.client_order_id, "orderId": self.order_id,
            "orderListId": -1, "clientOrderId": cancel_cid, "transactTime": transact_time,
            "price": f8(self.price), "origQty": f8(self.orig_qty), "executedQty": f8(self.executed_qty),
            "origQuoteOrderQty": "0.00000000",
            "cummulativeQuoteQty": f8(self.cum_quote), "status": self.status, "timeInForce": self.tif,
            "type": self.type, "side": self.side.value, "selfTradePreventionMode": "EXPIRE_MAKER",
        }


@dataclass
class FakeTrade:
    symbol: str
    id: int
    order_id: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool

    def rest(self) -> dict[str, Any]:
        """GET /api/v3/myTrades row."""
        return {
            "symbol": self.symbol, "id": self.id, "orderId": self.order_id, "orderListId": -1,
            "price": f8(self.price), "qty": f8(self.qty), "quoteQty": f8(self.price * self.qty),
            "commission": f8(self.commission), "commissionAsset": self.commission_asset, "time": self.time,
            "isBuyer": self.is_buyer, "isMaker": self.is_maker, "isBestMatch": True,
        }


@dataclass
class _Fault:
    status: int
    retry_after: float | None = None
    code: int | None = None
    msg: str = ""
    path: str | None = None  # only calls to this path (e.g. "/api/v3/order") are affected


@dataclass
class _MarketConn:
    ws: web.WebSocketResponse
    streams: set[str] = field(default_factory=set)


class FakeBinance:
    """The server. One instance per test; `await start()` / `await stop()`."""

    def __init__(self, symbols: list[dict[str, Any]] | None = None, api_key: str = API_KEY,
                 api_secret: str = API_SECRET, weight_limit: int = 6000, control_routes: bool = False) -> None:
        self.control_routes = control_routes  # HTTP test API (/_fake/...) for a fake in another process
        self.api_key, self.api_secret = api_key, api_secret
        self.symbols = {s["symbol"]: s for s in (symbols or copy.deepcopy(DEFAULT_SYMBOLS))}
        self.rules = {k: SymbolRules.from_exchange_info(v) for k, v in self.symbols.items()}
        self.weight_limit = weight_limit
        self.port = 0
        self._runner: web.AppRunner | None = None
        # market and account state
        self.prices: dict[str, Decimal] = {}
        self.balances: dict[str, list[Decimal]] = defaultdict(lambda: [D0, D0])  # asset -> [free, locked]
        self.orders: dict[int, FakeOrder] = {}
        self.orders_by_cid: dict[tuple[str, str], FakeOrder] = {}
        self.trades: dict[str, list[FakeTrade]] = defaultdict(list)
        self._order_ids = itertools.count(1000)
        self._trade_ids: dict[str, itertools.count] = defaultdict(lambda: itertools.count(5000))
        self._market_trade_ids = itertools.count(900_000)
        # counters for tests
        self.order_posts: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.market_connections_opened = 0
        self.user_subscriptions_opened = 0
        self.control_messages: list[dict[str, Any]] = []
        self.order_received_at: dict[str, float] = {}  # cid -> perf_counter at POST arrival (benchmarks)
        self.trade_event_sent_at: dict[str, float] = {}  # cid -> perf_counter when its TRADE event was written
        # fault injection
        self.clock_offset_ms = 0
        self._faults: list[_Fault] = []
        self._delays: list[float] = []
        self._lose_order_responses = 0
        self._refuse_ws_until = 0.0
        self.used_weight = 0
        self.forced_used_weight: int | None = None
        self.weight_window_s = 60.0
        self._weight_window_start = time.monotonic()
        # sockets
        self._market_conns: list[_MarketConn] = []
        self._ws_api_conns: set[web.WebSocketResponse] = set()
        self._user_subs: dict[web.WebSocketResponse, set[int]] = {}
        self._sub_ids = itertools.count(0)
        self._outboxes: dict[web.WebSocketResponse, asyncio.Queue] = {}
        self._writers: set[asyncio.Future] = set()
        self.user_event_hook = None  # optional callable(event_dict) for benchmarks
        self.mute_user_stream = False  # events are generated but not delivered (a silent gap)

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

    def set_balance(self, asset: str, free: str | Decimal, locked: str | Decimal = "0") -> None:
        self.balances[asset] = [Decimal(free), Decimal(locked)]

    async def set_price(self, symbol: str, price: str | Decimal, qty: str = "0.01000000") -> int:
        """Move the market: broadcast a trade and a bookTicker, fill every resting order the move touched.

        Returns the number of our orders that filled.
        """
        px = Decimal(price)
        self.prices[symbol] = px
        now = self.server_ms()
        tick = self.rules[symbol].tick_size
        low_s = symbol.lower()
        self._broadcast(f"{low_s}@trade", {
            "e": "trade", "E": now, "s": symbol, "t": next(self._market_trade_ids), "p": f8(px), "q": qty,
            "T": now, "m": True, "M": True,
        })
        self._broadcast(f"{low_s}@bookTicker", {
            "u": next(self._market_trade_ids), "s": symbol, "b": f8(px - tick), "B": "1.00000000",
            "a": f8(px + tick), "A": "1.00000000",
        })
        filled = 0
        for order in sorted(self._resting(symbol), key=lambda o: o.order_id):
            if order.type not in ("LIMIT", "LIMIT_MAKER"):
                continue
            if (order.side is Side.BUY and px <= order.price) or (order.side is Side.SELL and px >= order.price):
                self._execute(order, order.price, order.orig_qty - order.executed_qty, maker=True)
                filled += 1
        await asyncio.sleep(0)
        return filled

    def _resting(self, symbol: str) -> list[FakeOrder]:
        return [o for o in self.orders.values() if o.symbol == symbol and o.status in ("NEW", "PARTIALLY_FILLED")]

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

    def refuse_ws_for(self, seconds: float) -> None:
        """WebSocket handshakes fail (HTTP 503) for `seconds`."""
        self._refuse_ws_until = time.monotonic() + seconds

    async def drop_websockets(self) -> None:
        """Close every market-stream and WebSocket-API connection now (user subscriptions die with them)."""
        conns = [c.ws for c in self._market_conns] + list(self._ws_api_conns)
        self._market_conns.clear()
        self._ws_api_conns.clear()
        self._user_subs.clear()
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
        good = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(good, sig):
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
        try:
            await self._gate(request, weight)
            params = await self._params(request, signed)
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
        return self._json(result)

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
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
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

    def _find(self, p: dict[str, str], sym: str, cid_key: str = "origClientOrderId", id_key: str = "orderId") -> FakeOrder | None:
        if p.get(id_key):
            o = self.orders.get(int(p[id_key]))
            return o if o is not None and o.symbol == sym else None
        if p.get(cid_key):
            return self.orders_by_cid.get((sym, p[cid_key]))
        raise ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")

    async def _order(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return await self._call(request, 1, True, lambda p: self._new_order(p, request))
        if request.method == "GET":
            def get(p: dict[str, str]) -> dict[str, Any]:
                sym = self._symbol(p)
                o = self._find(p, sym)
                if o is None:
                    raise ApiError(400, -2013, "Order does not exist.")
                return o.rest()
            return await self._call(request, 4, True, get)
        if request.method == "DELETE":
            def cancel(p: dict[str, str]) -> dict[str, Any]:
                sym = self._symbol(p)
                o = self._find(p, sym)
                if o is None or o.status not in ("NEW", "PARTIALLY_FILLED"):
                    raise ApiError(400, -2011, "Unknown order sent.")
                return self._cancel(o, p.get("newClientOrderId") or f"cancel{o.order_id}")
            return await self._call(request, 1, True, cancel)
        return web.Response(status=405)

    async def _new_order(self, p: dict[str, str], request: web.Request) -> Any:
        cid = p.get("newClientOrderId") or f"fake{next(self._order_ids)}"
        self.order_posts[cid] += 1
        self.order_received_at[cid] = time.perf_counter()
        answer = self._place(p, cid)
        if self._lose_order_responses > 0:
            self._lose_order_responses -= 1
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)  # never reaches the client: the connection is gone
        return answer

    def _place(self, p: dict[str, str], cid: str) -> dict[str, Any]:
        sym = self._symbol(p)
        rules = self.rules[sym]
        try:
            side = Side(p["side"])
            otype = OrderType(p["type"])
        except (KeyError, ValueError):
            raise ApiError(400, -1116, "Invalid orderType.") from None
        try:
            qty = Decimal(p["quantity"])
            price = Decimal(p["price"]) if p.get("price") else None
            stop = Decimal(p["stopPrice"]) if p.get("stopPrice") else None
        except (KeyError, ArithmeticError):
            raise ApiError(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.") from None
        existing = self.orders_by_cid.get((sym, cid))
        if existing is not None and existing.status in ("NEW", "PARTIALLY_FILLED"):
            raise ApiError(400, -2010, "Duplicate order sent.")
        if otype is not OrderType.MARKET and p.get("timeInForce") is None and otype is not OrderType.LIMIT_MAKER:
            raise ApiError(400, -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
        market = self.prices.get(sym)
        problems = rules.check_order(side, otype, qty, price, reference_price=market, stop_price=stop)
        if problems:
            raise ApiError(400, -1013, f"Filter failure: {problems[0].filter}")
        crosses = market is not None and price is not None and (
            (side is Side.BUY and price >= market) or (side is Side.SELL and price <= market))
        if otype is OrderType.LIMIT_MAKER and crosses:
            raise ApiError(400, -2010, "Order would immediately match and take.")
        if otype is OrderType.MARKET and market is None:
            raise ApiError(400, -2010, "Market is closed.")
        base, quote = rules.base_asset, rules.quote_asset
        lock_price = price if price is not None else market
        assert lock_price is not None
        lock_asset, lock_amount = (quote, lock_price * qty) if side is Side.BUY else (base, qty)
        bal = self.balances[lock_asset]
        if bal[0] < lock_amount:
            raise ApiError(400, -2010, "Account has insufficient balance for requested action.")
        now = self.server_ms()
        order = FakeOrder(
            symbol=sym, order_id=next(self._order_ids), client_order_id=cid, side=side, type=otype.value,
            tif=p.get("timeInForce", "GTC"), price=price or D0, orig_qty=qty, stop_price=stop or D0,
            time=now, update_time=now, locked_asset=lock_asset, locked_amount=lock_amount,
        )
        bal[0] -= lock_amount
        bal[1] += lock_amount
        self.orders[order.order_id] = order
        self.orders_by_cid[(sym, cid)] = order
        self._user_event(self._exec_report(order, "NEW"))
        self._account_event([lock_asset])
        fills: list[dict[str, Any]] = []
        if otype is OrderType.MARKET or (otype is OrderType.LIMIT and crosses):
            assert market is not None
            trade = self._execute(order, market, qty, maker=False)
            fills.append({"price": f8(trade.price), "qty": f8(trade.qty), "commission": f8(trade.commission),
                          "commissionAsset": trade.commission_asset, "tradeId": trade.id})
        return order.ack(fills, now)

    def _execute(self, order: FakeOrder, price: Decimal, qty: Decimal, maker: bool) -> FakeTrade:
        rules = self.rules[order.symbol]
        base, quote = rules.base_asset, rules.quote_asset
        now = self.server_ms()
        notional = price * qty
        if order.side is Side.BUY:
            spend = notional
            release = order.locked_amount if qty >= order.orig_qty - order.executed_qty else (order.price or price) * qty
            self.balances[quote][1] -= release
            self.balances[quote][0] += release - spend
            order.locked_amount -= release
            fee, fee_asset = qty * FEE_RATE, base
            self.balances[base][0] += qty - fee
        else:
            self.balances[base][1] -= qty
            order.locked_amount -= qty
            fee, fee_asset = notional * FEE_RATE, quote
            self.balances[quote][0] += notional - fee
        order.executed_qty += qty
        order.cum_quote += notional
        order.status = "FILLED" if order.executed_qty >= order.orig_qty else "PARTIALLY_FILLED"
        order.update_time = now
        trade = FakeTrade(order.symbol, next(self._trade_ids[order.symbol]), order.order_id, price, qty,
                          fee, fee_asset, now, order.side is Side.BUY, maker)
        self.trades[order.symbol].append(trade)
        self._user_event(self._exec_report(order, "TRADE", trade))
        self._account_event([base, quote])
        return trade

    def _cancel(self, o: FakeOrder, cancel_cid: str) -> dict[str, Any]:
        o.status = "CANCELED"
        o.update_time = self.server_ms()
        bal = self.balances[o.locked_asset]
        bal[1] -= o.locked_amount
        bal[0] += o.locked_amount
        o.locked_amount = D0
        self._user_event(self._exec_report(o, "CANCELED", cancel_cid=cancel_cid))
        self._account_event([o.locked_asset])
        return o.cancel_answer(cancel_cid, o.update_time)

    async def _open_orders(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            def listing(p: dict[str, str]) -> list[dict[str, Any]]:
                sym = p.get("symbol")
                if sym is not None:
                    self._symbol(p)
                return [o.rest() for o in self.orders.values()
                        if o.status in ("NEW", "PARTIALLY_FILLED") and (sym is None or o.symbol == sym)]
            return await self._call(request, 6, True, listing)
        if request.method == "DELETE":
            def cancel_all(p: dict[str, str]) -> list[dict[str, Any]]:
                sym = self._symbol(p)
                resting = sorted(self._resting(sym), key=lambda o: o.order_id)
                if not resting:
                    raise ApiError(400, -2011, "Unknown order sent.")
                return [self._cancel(o, f"cancelall{o.order_id}") for o in resting]
            return await self._call(request, 1, True, cancel_all)
        return web.Response(status=405)

    async def _cancel_replace(self, request: web.Request) -> web.StreamResponse:
        def replace(p: dict[str, str]) -> dict[str, Any]:
            sym = self._symbol(p)
            cid = p.get("newClientOrderId") or f"fake{next(self._order_ids)}"
            self.order_posts[cid] += 1
            o = self._find(p, sym, cid_key="cancelOrigClientOrderId", id_key="cancelOrderId")
            if o is None or o.status not in ("NEW", "PARTIALLY_FILLED"):
                raise ApiError(400, -2022, "Order cancel-replace failed.", data={
                    "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                    "cancelResponse": {"code": -2011, "msg": "Unknown order sent."}, "newOrderResponse": None})
            cancel_answer = self._cancel(o, p.get("cancelNewClientOrderId") or f"cancel{o.order_id}")
            try:
                new_answer = self._place(p, cid)
            except ApiError as err:
                raise ApiError(409, -2021, "Order cancel-replace partially failed.", data={
                    "cancelResult": "SUCCESS", "newOrderResult": "FAILURE", "cancelResponse": cancel_answer,
                    "newOrderResponse": {"code": err.code, "msg": err.msg}}) from None
            return {"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS", "cancelResponse": cancel_answer,
                    "newOrderResponse": new_answer}
        return await self._call(request, 1, True, replace)

    async def _my_trades(self, request: web.Request) -> web.StreamResponse:
        def trades(p: dict[str, str]) -> list[dict[str, Any]]:
            sym = self._symbol(p)
            rows = self.trades[sym]
            limit = min(int(p.get("limit", "500")), 1000)
            if p.get("orderId"):
                rows = [t for t in rows if t.order_id == int(p["orderId"])]
            if p.get("fromId"):
                from_id = int(p["fromId"])
                return [t.rest() for t in rows if t.id >= from_id][:limit]
            return [t.rest() for t in rows[-limit:]]
        return await self._call(request, 20, True, trades)

    async def _account(self, request: web.Request) -> web.StreamResponse:
        def account(p: dict[str, str]) -> dict[str, Any]:
            return {
                "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
                "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000", "seller": "0.00000000"},
                "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.server_ms(),
                "accountType": "SPOT",
                "balances": [{"asset": a, "free": f8(b[0]), "locked": f8(b[1])} for a, b in sorted(self.balances.items())],
                "permissions": ["SPOT"], "uid": 354937868,
            }
        return await self._call(request, 20, True, account)

    def _price_of(self, sym: str) -> Decimal:
        if sym not in self.prices:
            raise ApiError(400, -1121, "Invalid symbol.")
        return self.prices[sym]

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
            px, tick = self._price_of(sym), self.rules[sym].tick_size
            return {"symbol": sym, "bidPrice": f8(px - tick), "bidQty": "1.00000000",
                    "askPrice": f8(px + tick), "askQty": "1.00000000"}
        return await self._call(request, 2, False, book)

    async def _avg_price(self, request: web.Request) -> web.StreamResponse:
        def avg(p: dict[str, str]) -> Any:
            sym = self._symbol(p)
            return {"mins": 5, "price": f8(self._price_of(sym)), "closeTime": self.server_ms()}
        return await self._call(request, 2, False, avg)

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
        conn = _MarketConn(ws, {s for s in streams.split("/") if s})
        self._market_conns.append(conn)
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
            if conn in self._market_conns:
                self._market_conns.remove(conn)
        return ws

    def _broadcast(self, stream: str, data: dict[str, Any]) -> None:
        frame: str | None = None
        for conn in self._market_conns:
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
        self._ws_api_conns.add(ws)
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
                    self._user_subs.setdefault(ws, set()).add(sub)
                    self.user_subscriptions_opened += 1
                    await ws.send_bytes(orjson.dumps({"id": rid, "status": 200, "result": {"subscriptionId": sub}}))
                elif method == "userDataStream.unsubscribe":
                    self._user_subs.get(ws, set()).discard(params.get("subscriptionId"))
                    await ws.send_bytes(orjson.dumps({"id": rid, "status": 200, "result": {}}))
                else:
                    await ws.send_bytes(orjson.dumps({"id": rid, "status": 400,
                                                      "error": {"code": -1100, "msg": f"Unknown method {method}"}}))
        finally:
            self._ws_api_conns.discard(ws)
            self._user_subs.pop(ws, None)
        return ws

    def _check_ws_signature(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("apiKey") != self.api_key:
            return {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        unsigned = {k: v for k, v in params.items() if k != "signature"}
        good = hmac.new(self.api_secret.encode(), urlencode(dict(sorted(unsigned.items()))).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(good, str(params.get("signature", ""))):
            return {"code": -1022, "msg": "Signature for this request is not valid."}
        ts = int(params.get("timestamp", 0))
        if abs(self.server_ms() - ts) > 10_000:
            return {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
        return None

    def _user_event(self, event: dict[str, Any]) -> None:
        if self.user_event_hook is not None:
            self.user_event_hook(event)
        if self.mute_user_stream:
            return
        for ws, subs in list(self._user_subs.items()):
            if ws.closed:
                continue
            for sub in subs:
                stamp = event["c"] if event.get("x") == "TRADE" else None
                self._send(ws, orjson.dumps({"subscriptionId": sub, "event": event}).decode(), stamp)

    def _exec_report(self, o: FakeOrder, exec_type: str, trade: FakeTrade | None = None, cancel_cid: str = "") -> dict[str, Any]:
        """executionReport in Binance's field layout (ws_user_executionReport_*.json)."""
        now = self.server_ms()
        cancel = exec_type == "CANCELED"
        return {
            "e": "executionReport", "E": now, "s": o.symbol,
            "c": cancel_cid if cancel else o.client_order_id,
            "S": o.side.value, "o": o.type, "f": o.tif, "q": f8(o.orig_qty), "p": f8(o.price), "P": f8(o.stop_price),
            "F": "0.00000000", "g": -1, "C": o.client_order_id if cancel else "", "x": exec_type, "X": o.status,
            "r": "NONE", "i": o.order_id,
            "l": f8(trade.qty) if trade else "0.00000000", "z": f8(o.executed_qty),
            "L": f8(trade.price) if trade else "0.00000000",
            "n": f8(trade.commission) if trade else "0", "N": trade.commission_asset if trade else None,
            "T": trade.time if trade else now, "t": trade.id if trade else -1, "I": next(self._market_trade_ids),
            "w": o.status == "NEW", "m": trade.is_maker if trade else False, "M": bool(trade), "O": o.time,
            "Z": f8(o.cum_quote), "Y": f8(trade.price * trade.qty) if trade else "0.00000000",
            "Q": "0.00000000", "W": o.time, "V": "EXPIRE_MAKER",
        }

    def _account_event(self, assets: list[str]) -> None:
        now = self.server_ms()
        self._user_event({
            "e": "outboundAccountPosition", "E": now, "u": now,
            "B": [{"a": a, "f": f8(self.balances[a][0]), "l": f8(self.balances[a][1])} for a in dict.fromkeys(assets)],
        })
