"""REST discipline: pacing, error mapping, orders, reads.

- REST: time offset synced at start and again (with ONE retry) on -1021; `X-MBX-USED-WEIGHT-1M` is read from
  every answer and requests pause near the limit; 429 waits Retry-After; 418 stops all requests until the ban
  ends and is surfaced as IpBanned + StreamStatus("rest", up=False); reads retry 5xx/network errors with
  backoff. An order whose answer was lost (timeout, cut connection, 5xx) is looked up by client order id
  before anything is re-sent.
- New orders are paced by `order_pacer` (ratelimit.OrderPacer) from exchangeInfo's ORDERS limits and the
  `X-MBX-ORDER-COUNT-*` headers; a 429 with -1015 (the per-account unfilled-order count) holds only ordinary
  new orders, never cancels, lookups, reads, stops, exits or panic sells. A 429 for IP weight and a 418 still
  hold every request.
- Every BinanceAPIException leaves this module as a typed ExchangeError whose message a trader understands
  (`map_api_error`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
from binance.exceptions import BinanceAPIException, BinanceRequestException
from loguru import logger

from tgtrader.core.ids import parse_client_order_id
from tgtrader.core.ports import StreamStatus
from tgtrader.core.rules import SymbolRules, fmt_decimal
from tgtrader.errors import (
    BadSymbol,
    ExchangeError,
    ExchangeUnavailable,
    FilterRejected,
    IpBanned,
    OrderStatusUnknown,
    RateLimited,
    UnknownOrder,
)
from tgtrader.exchange.binance import compat
from tgtrader.exchange.binance import parse as bp
from tgtrader.exchange.binance.errmap import DuplicateOrder, map_api_error
from tgtrader.exchange.binance.errmap import retry_after as _retry_after
from tgtrader.exchange.binance.events import _now_ms
from tgtrader.exchange.binance.rules import rules_from_exchange_info
from tgtrader.exchange.ratelimit import backoff_delay
from tgtrader.types import Balance, Fill, OrderType, OrderUpdate, PlaceOrder, ReplaceOrder


class _LostAnswer(Exception):
    """Internal: a write request may or may not have been executed (timeout, cut connection, 5xx, -1006/-1007)."""


# rest-api.md, "General API Information": "APIs have a timeout of 10 seconds when processing a request. If a
# response from the Matching Engine takes longer than this, the API responds with 'Timeout waiting for response
# from backend server. Send status unknown; execution status unknown.' (-1007 TIMEOUT). This does not always
# mean that the request failed in the Matching Engine." errors.md: -1006 UNEXPECTED_RESP "An unexpected response
# was received from the message bus. Execution status unknown."
EXECUTION_UNKNOWN_CODES = (-1006, -1007)
BACKEND_TIMEOUT_S = 10.0
# errors.md: "-1015 TOO_MANY_ORDERS: Too many new orders; current limit is %s orders per %s." faqs/
# order_count_decrement.md: "When an order is rejected by the system due to the unfilled order rate limit, the
# HTTP status code is set to 429 Too Many Requests and the error code is -1015".
TOO_MANY_ORDERS = -1015
ORDINARY, PRIORITY = 1, 2  # `_rest(_new_order=...)`: a new order, and whether it may use the reserve


def order_priority(order: PlaceOrder) -> int:
    """PRIORITY for the orders that protect or free money (stop-loss, grid exit, panic sell), else ORDINARY."""
    parsed = parse_client_order_id(order.client_order_id)
    if parsed is not None and (parsed.kind in ("stop", "panic") or (parsed.kind == "grid" and parsed.role == "exit")):
        return PRIORITY
    return ORDINARY


# ---------------------------------------------------------------- self-trade prevention

# faqs/stp_faq.md: "STP behavior is typically determined by the STP mode of the taker order only." The adapter
# chooses per order kind instead of leaving it to the symbol's defaultSelfTradePreventionMode:
# - an order that must complete (MARKET, stop-loss, exit, panic sell) takes EXPIRE_MAKER: the bot's own resting
#   orders in its way are expired (EXPIRED_IN_MATCH, reported with RejectReason.SELF_TRADE and prevented_qty) and
#   the order goes on against the rest of the book;
# - any other order (grid levels, chase and manual limits) takes EXPIRE_TAKER: a new order never expires the
#   bot's resting ones; if it would trade with one, it is the order that expires.
# A mode the symbol does not allow ("allowedSelfTradePreventionModes") is not sent: the symbol default applies.
STP_MUST_COMPLETE, STP_DEFAULT = "EXPIRE_MAKER", "EXPIRE_TAKER"


def stp_mode_for(order: PlaceOrder) -> str:
    kind = order.owner.split(":", 1)[0]
    if order.order_type in (OrderType.MARKET, OrderType.STOP_LOSS_LIMIT) or kind in ("stop", "panic", "exit") \
            or order_priority(order) == PRIORITY:
        return STP_MUST_COMPLETE
    return STP_DEFAULT


class RestMixin:
    """BinanceExchange's REST side: every request goes through `_rest` (see module docstring)."""

    # symbol -> exchangeInfo "allowedSelfTradePreventionModes" (rebound, never mutated, by _load_rules)
    _stp_allowed: dict[str, frozenset[str]] = {}

    # ------------------------------------------------------------ REST core

    def _on_response(self, response: aiohttp.ClientResponse) -> None:
        w = response.headers.get("X-MBX-USED-WEIGHT-1M") or response.headers.get("x-mbx-used-weight-1m")
        if w is not None:
            try:
                self.limiter.record_weight(int(w))
            except ValueError:
                pass
        self.order_pacer.record_headers(response.headers)

    async def _pace_new_order(self, what: str, priority: bool) -> None:
        """Wait until a new order fits Binance's ORDERS limits (see OrderPacer); too long a wait is a refusal."""
        while True:
            wait = self.order_pacer.wait_needed(priority)
            if wait <= 0:
                self.order_pacer.sent()
                return
            if wait > self.max_rate_wait_s:
                raise RateLimited(f"Binance's limit on new orders is reached; cannot {what} for another {wait:.0f} s.",
                                  retry_after=wait, code=TOO_MANY_ORDERS, http_status=429)
            self.order_pacer.waits += 1
            logger.info("binance: pacing new orders, waiting {:.1f} s before trying to {}", wait, what)
            await asyncio.sleep(wait)

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
            return compat.set_clock_offset(self.client, server - (t0 + t1) // 2)

    async def _rest(self, what: str, fn: Callable[..., Awaitable[Any]], *, _read: bool = True,
                    _signed: bool = True, _new_order: int = 0, **params: Any) -> Any:
        """One REST call with pacing, Retry-After, ban handling, -1021 resync and (for reads) retries.

        `_new_order`: ORDINARY or PRIORITY for a request that places an order (it counts towards ORDERS)."""
        attempt = 0
        resynced = False
        while True:
            if self.limiter.banned:
                raise IpBanned(f"Binance has banned this IP for another {self.limiter.ban_remaining():.0f} s; "
                               f"not sending ({what}).", retry_after=self.limiter.ban_remaining(), http_status=418)
            if _new_order:
                await self._pace_new_order(what, _new_order == PRIORITY)
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
                if status == 429 and exc.code == TOO_MANY_ORDERS:
                    # Only new orders are refused: hold them, not the IP's other requests (see OrderPacer).
                    ra = _retry_after(exc, 1.0)
                    self.order_pacer.record_refused(ra)
                    logger.warning("binance: too many new orders (-1015) while trying to {}; new orders wait {:.1f} s",
                                   what, ra)
                    if not _new_order or ra > self.max_rate_wait_s or attempt >= 5:
                        raise RateLimited(f"Binance refuses new orders for now (too many new orders); cannot {what} "
                                          f"for about {ra:.0f} s.", retry_after=ra, code=TOO_MANY_ORDERS,
                                          http_status=429) from None
                    attempt += 1
                    if _new_order == PRIORITY:  # the pacer does not hold these; wait here, then try again
                        await asyncio.sleep(ra)
                    continue  # a 429 was not executed, so a retry is safe
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
                if exc.code in EXECUTION_UNKNOWN_CODES and not _read:
                    raise _LostAnswer(f"code {exc.code}, execution status unknown") from exc  # any HTTP status
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
            except (TimeoutError, aiohttp.ClientError, BinanceRequestException, OSError) as exc:
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
        self._stp_allowed = {s["symbol"]: frozenset(s.get("allowedSelfTradePreventionModes") or ())
                             for s in (info.get("symbols", []) if isinstance(info, dict) else [])
                             if isinstance(s, dict) and "symbol" in s and "allowedSelfTradePreventionModes" in s}
        if not rules:
            raise ExchangeUnavailable("Binance sent an exchangeInfo without symbols.")
        self._rules = rules
        self._rules_loaded_at = time.monotonic()
        self.order_pacer.configure(info.get("rateLimits") if isinstance(info, dict) else None)
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

    def _with_stp(self, order: PlaceOrder, params: dict[str, Any]) -> dict[str, Any]:
        """Add the explicit selfTradePreventionMode (see stp_mode_for) when the symbol allows it."""
        mode = stp_mode_for(order)
        allowed = self._stp_allowed.get(order.symbol)
        if allowed is None or mode in allowed:
            params["selfTradePreventionMode"] = mode
        return params

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
        params = self._with_stp(order, self._order_params(order))
        self._our_cids.setdefault(order.symbol, set()).add(order.client_order_id)
        sent_at = time.monotonic()
        try:
            resp = await self._rest(f"place {what}", self.client.create_order, _read=False,
                                    _new_order=order_priority(order), **params)
        except _LostAnswer as lost:
            logger.warning("binance: answer lost for order {} ({}); looking it up", order.client_order_id, lost)
            return await self._look_up_lost_order(order, what, sent_at)
        except DuplicateOrder:
            # errors.md "Duplicate order sent." - "The clOrdId is already in use": the order is live (a resend
            # after a lost answer). Adopt it; a query may not see it yet ("Memory => Database"), so look it up
            # like a lost answer.
            logger.warning("binance: order {} is already open on Binance; adopting it", order.client_order_id)
            return await self._look_up_lost_order(order, what, sent_at)
        return self._absorb_order_answer(resp, what)

    @property
    def order_settle_s(self) -> float:
        """Seconds after which Binance can no longer execute a request signed now (see "Timing security" in
        rest-api.md: the API forwards a request to the Matching Engine only while serverTime - timestamp <=
        recvWindow; then up to BACKEND_TIMEOUT_S for the engine's answer). One second of margin for clocks."""
        return self.recv_window_ms / 1000 + BACKEND_TIMEOUT_S + 1.0

    def _settle_after_s(self, sent_at: float) -> float:
        return max(0.0, self.order_settle_s - (time.monotonic() - sent_at))

    async def _look_up_lost_order(self, order: PlaceOrder, what: str, sent_at: float) -> OrderUpdate:
        """Query by client order id. Found: its state. Not found: that proves nothing yet (the request may still
        be on its way, and a query may not see a just-accepted order), so never resend here: raise
        OrderStatusUnknown with the time after which absence is final; the core's gateway decides."""
        for attempt in range(2):
            await asyncio.sleep(self.lookup_delay_s if attempt else 0.05)
            try:
                found = await self.get_order(order.symbol, order.client_order_id)
            except ExchangeError as exc:
                logger.warning("binance: lookup of {} failed: {}", order.client_order_id, exc)
                continue
            if found is not None:
                return found
        self._unknown.setdefault(order.symbol, set()).add(order.client_order_id)
        self._open_cids.setdefault(order.symbol, set()).add(order.client_order_id)  # reconciliation checks it
        raise OrderStatusUnknown(f"No answer from Binance for the order ({what}); it may or may not exist.",
                                 settle_after_s=self._settle_after_s(sent_at))

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
        return self._tracked_list(resp)

    async def replace_order(self, replace: ReplaceOrder) -> OrderUpdate:
        assert self.client is not None
        new = replace.place
        rules = self._rules.get(new.symbol)
        if rules is not None and not rules.cancel_replace_allowed:
            # exchangeInfo cancelReplaceAllowed false: Binance answers "Order cancel-replace is not supported for
            # this symbol." (errors.md). Cancel, then place; a failed cancel places nothing (STOP_ON_FAILURE).
            await self.cancel_order(new.symbol, replace.cancel.client_order_id)
            return await self.place_order(new)
        what = f"replace {replace.cancel.client_order_id} with {self._describe(new)}"
        params = self._with_stp(new, self._order_params(new))
        params.pop("newOrderRespType", None)
        params["newOrderRespType"] = "FULL"
        params.update(cancelReplaceMode="STOP_ON_FAILURE", cancelOrigClientOrderId=replace.cancel.client_order_id)
        self._our_cids.setdefault(new.symbol, set()).add(new.client_order_id)
        sent_at = time.monotonic()
        try:
            resp = await self._rest(what, self.client.cancel_replace_order, _read=False,
                                    _new_order=order_priority(new), **params)
        except _LostAnswer:
            found = await self.get_order(new.symbol, new.client_order_id)
            if found is not None:
                return found
            old = await self.get_order(new.symbol, replace.cancel.client_order_id)
            if old is not None and old.status.is_open:
                # Sending it again is safe even if the first request is still in flight: with
                # cancelReplaceMode=STOP_ON_FAILURE only the request whose cancel succeeds places the new order,
                # and the new order's client order id is refused while the other one is open.
                resp = await self._rest(what, self.client.cancel_replace_order, _read=False,
                                        _new_order=order_priority(new), **params)
            else:
                self._unknown.setdefault(new.symbol, set()).add(new.client_order_id)
                raise OrderStatusUnknown(f"No answer from Binance for ({what}); the new order may or may not exist.",
                                         settle_after_s=self._settle_after_s(sent_at)) from None
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

    def _tracked_list(self, resp: object) -> list[OrderUpdate]:
        """A REST list of orders (openOrders, the cancel-all answer) as tracked updates; unreadable rows skipped."""
        out = []
        for row in resp if isinstance(resp, list) else []:
            update = bp.order_from_rest(row)
            if update is not None:
                self._track(update)
                out.append(update)
        return out

    async def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        assert self.client is not None
        params = {"symbol": symbol} if symbol else {}
        resp = await self._rest(f"list open orders{' on ' + symbol if symbol else ''}", self.client.get_open_orders, **params)
        return self._tracked_list(resp)

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

    async def commission_rate(self) -> Decimal | None:
        """rest-api.md, "Account information (USER_DATA)": `commissionRates.taker` is the account's own rate
        (VIP tier, BNB discount excluded); previews and fee estimates use it instead of a setting."""
        assert self.client is not None
        account = await self._rest("read the commission rates", self.client.get_account)
        try:
            return Decimal(str(account["commissionRates"]["taker"]))
        except (KeyError, TypeError, ArithmeticError):
            return None

    async def ticker_price(self, symbol: str) -> Decimal:
        assert self.client is not None
        resp = await self._rest(f"read the price of {symbol}", self.client.get_symbol_ticker, _signed=False, symbol=symbol)
        try:
            return bp.to_decimal(resp["price"])
        except (KeyError, TypeError, bp.BadPayload):
            raise ExchangeUnavailable(f"Binance sent an unreadable price for {symbol}.") from None

    async def avg_price(self, symbol: str) -> Decimal | None:
        """rest-api.md "Current average price": the weighted average over `mins` minutes, the reference of
        PERCENT_PRICE_BY_SIDE (filters.md: "the weightedAveragePrice calculated over the last avgPriceMins")."""
        assert self.client is not None
        resp = await self._rest(f"read the average price of {symbol}", self.client.get_avg_price, _signed=False,
                                symbol=symbol)
        try:
            return bp.to_decimal(resp["price"])
        except (KeyError, TypeError, bp.BadPayload):
            return None

    async def klines(self, symbol: str, interval: str, start_ms: int, end_ms: int | None = None,
                     limit: int = 1000) -> list[tuple[int, str, str, str, str, str]]:
        """rest-api.md "Kline/Candlestick data" (weight 2): up to `limit` (<= 1000) candles opening in
        [start_ms, end_ms], oldest first, as (open time ms, open, high, low, close, volume) strings (issue 17)."""
        assert self.client is not None
        params: dict[str, Any] = dict(symbol=symbol, interval=interval, startTime=start_ms, limit=limit)
        if end_ms is not None:
            params["endTime"] = end_ms
        resp = await self._rest(f"read {symbol} {interval} candles", self.client.get_klines, _signed=False, **params)
        try:
            return [(int(k[0]), str(k[1]), str(k[2]), str(k[3]), str(k[4]), str(k[5])) for k in resp]
        except (IndexError, TypeError, ValueError):
            raise ExchangeUnavailable(f"Binance sent unreadable {symbol} candles.") from None
