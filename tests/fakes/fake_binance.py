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
import copy
import itertools
import time
from collections import Counter
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from aiohttp import web

from tests.fakes.binance import Order, Trade, Venue, VenueError
from tests.fakes.fake_binance_faults import FaultInjection
from tests.fakes.fake_binance_sockets import Sockets
from tests.fakes.fake_binance_wire import (  # noqa: F401 (re-exported: tests import them from here)
    ACCOUNT,
    API_KEY,
    API_SECRET,
    D0,
    DEFAULT_SYMBOLS,
    ApiError,
    MarketConn,
    _Fault,
    f8,
    symbol_info,
)


class FakeBinance(FaultInjection, Sockets):
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
