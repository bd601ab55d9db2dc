"""Turn Binance stream messages and REST payloads into `tgtrader.types` values.

Everything here is total: malformed JSON, missing fields, wrong types, NaN/Infinity strings and absurd
numbers give `None` (and a rate-limited log line), never an exception, because these functions run
inside the stream drain loops where one bad message must not stop the feed.

The market-data path (`StreamParser`) is the hot one (hundreds of thousands of messages per second
with hundreds of symbols): stream names are resolved to interned symbols once at subscribe time, JSON is
parsed with orjson, and price strings go through a small cache so repeated prices (prices live on a tick
grid and repeat constantly) cost a dict lookup instead of a `Decimal` construction and validation.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Literal, Mapping

import msgspec
import orjson
from loguru import logger

from tgtrader.core.ports import BalanceUpdate
from tgtrader.types import Balance, Fill, OrderStatus, OrderType, OrderUpdate, RejectReason, Side, Tick

ZERO = Decimal(0)
_MAX_EXP = 20  # prices/quantities of 1e21 and more are garbage, not markets
_MIN_EXP = 40  # and so are non-zero amounts below 1e-40
_MAX_STR = 64  # numeric strings longer than this are rejected before Decimal parses them

KIND_BOOK = 1
KIND_TRADE = 2

_STREAM_SUFFIX = {"bookTicker": KIND_BOOK, "trade": KIND_TRADE}


class BadPayload(ValueError):
    """Internal: a payload field is missing or unusable (caught inside this module)."""


# ---------------------------------------------------------------- number helpers

_bad_counts: dict[str, int] = {}


def _report_bad(where: str, err: object) -> None:
    """Log malformed input without flooding: the 1st, 10th, 100th... occurrence per place."""
    n = _bad_counts.get(where, 0) + 1
    _bad_counts[where] = n
    if n & (n - 1) == 0 or n % 10000 == 0:  # powers of two, then every 10k
        text = str(err)
        logger.warning("binance: ignored malformed {} ({} so far): {}", where, n, text[:200])


def bad_payload_counts() -> dict[str, int]:
    """How many malformed payloads each parser dropped (for health / tests)."""
    return dict(_bad_counts)


def to_decimal(value: Any) -> Decimal:
    """A finite, reasonably sized Decimal from a Binance number (string, int or float); raises BadPayload."""
    if isinstance(value, str):
        if len(value) > _MAX_STR:
            raise BadPayload(f"number too long: {value[:20]}...")
        try:
            d = Decimal(value)
        except (InvalidOperation, ValueError) as exc:
            raise BadPayload(f"not a number: {value!r}") from exc
    elif isinstance(value, bool) or value is None:
        raise BadPayload(f"not a number: {value!r}")
    elif isinstance(value, (int, float)):
        try:
            d = Decimal(str(value))
        except (InvalidOperation, ValueError) as exc:
            raise BadPayload(f"not a number: {value!r}") from exc
    else:
        raise BadPayload(f"not a number: {type(value).__name__}")
    # adjusted() reads the exponent without a decimal context: abs()/compare on 1E+1000000 would trap Overflow
    if not d.is_finite():
        raise BadPayload(f"number out of range: {value!r}")
    if not d:
        return ZERO
    if not -_MIN_EXP <= d.adjusted() <= _MAX_EXP:
        raise BadPayload(f"number out of range: {value!r}")
    return d


def _nonneg(value: Any) -> Decimal:
    d = to_decimal(value)
    if d < 0:
        raise BadPayload(f"negative amount: {value!r}")
    return d


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise BadPayload(f"not an integer: {value!r}")
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return value
        raise BadPayload("integer out of range")
    if isinstance(value, str) and 0 < len(value) <= 20:
        try:
            return int(value)
        except ValueError as exc:
            raise BadPayload(f"not an integer: {value!r}") from exc
    raise BadPayload(f"not an integer: {value!r}")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise BadPayload(f"not a string: {value!r}"[:80])
    return value


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise BadPayload(f"not a boolean: {value!r}"[:80])


_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}
_TYPES = {t.value: t for t in OrderType}
# Binance types we never place but may see (orders entered by hand on the website):
_TYPES.update({"STOP_LOSS": OrderType.MARKET, "TAKE_PROFIT": OrderType.MARKET, "TAKE_PROFIT_LIMIT": OrderType.LIMIT})
_STATUSES = {s.value: s for s in OrderStatus}
_STATUSES.update({"EXPIRED_IN_MATCH": OrderStatus.EXPIRED, "PENDING_NEW": OrderStatus.PENDING_NEW})


def _side(value: Any) -> Side:
    try:
        return _SIDES[value]
    except (KeyError, TypeError) as exc:
        raise BadPayload(f"unknown side {value!r}"[:80]) from exc


def _otype(value: Any) -> OrderType:
    try:
        return _TYPES[value]
    except (KeyError, TypeError) as exc:
        raise BadPayload(f"unknown order type {value!r}"[:80]) from exc


# user-data-stream.md, "Order Reject Reason": executionReport field `r`.
#   NONE                                  N/A (i.e. The order was not rejected.)
#   INSUFFICIENT_BALANCES                 "Account has insufficient balance for requested action."
#   STOP_PRICE_WOULD_TRIGGER_IMMEDIATELY  "Order would trigger immediately."
#   WOULD_MATCH_IMMEDIATELY               "Order would immediately match and take."
#   OCO_BAD_PRICES                        "The relationship of the prices for the orders is not correct."
_REJECT_REASONS = {
    "INSUFFICIENT_BALANCES": RejectReason.INSUFFICIENT_BALANCE,
    "WOULD_MATCH_IMMEDIATELY": RejectReason.WOULD_MATCH,
    "STOP_PRICE_WOULD_TRIGGER_IMMEDIATELY": RejectReason.FILTER,
    "OCO_BAD_PRICES": RejectReason.FILTER,
}


def _reject_fields(value: Any) -> dict[str, Any]:
    """OrderUpdate's reject_reason / reject_text from an executionReport's `r` (empty when not rejected)."""
    if value in (None, "NONE"):
        return {}
    text = str(value)[:100]
    return {"reject_reason": _REJECT_REASONS.get(text, RejectReason.OTHER), "reject_text": text}


def _status(value: Any) -> OrderStatus:
    try:
        return _STATUSES[value]
    except (KeyError, TypeError) as exc:
        raise BadPayload(f"unknown order status {value!r}"[:80]) from exc


def _symbol(value: Any) -> str:
    s = _str(value)
    if not (0 < len(s) <= 30) or not s.isalnum():
        raise BadPayload(f"bad symbol {s[:40]!r}")
    return sys.intern(s.upper())


# ---------------------------------------------------------------- market data (hot path)


# Tick is a frozen slots dataclass; its generated __init__ goes through object.__setattr__ per field (~430 ns),
# and even filling the slots through their descriptors costs ~240 ns. The hot path builds the instance as a
# plain mutable object with exactly Tick's slot layout (plain attribute stores, ~10 ns each) and then sets its
# __class__ to Tick (CPython allows it between identical layouts): the result is a genuine Tick, equal and
# hashable like one built by Tick(...), ~100 ns in all. Tick has no __post_init__; fields it may gain later
# (with defaults) are filled by the layout class's __init__; tests compare both constructions.
_TICK_FIELDS = ("symbol", "bid", "ask", "last", "ts_ms")


def _tick_layout() -> type:
    """A mutable class with Tick's slots, whose instances can become Ticks by `__class__` assignment."""
    extra: list[tuple[str, Callable[[], Any]]] = []
    for f in dataclasses.fields(Tick):
        if f.name in _TICK_FIELDS:
            continue
        if f.default_factory is not dataclasses.MISSING:
            extra.append((f.name, f.default_factory))
        else:
            extra.append((f.name, (lambda v: lambda: v)(f.default)))
    ns: dict[str, Any] = {"__slots__": tuple(Tick.__slots__), "__module__": __name__}  # type: ignore[attr-defined]
    if extra:
        def __init__(self: Any) -> None:
            for name, make in extra:
                object.__setattr__(self, name, make())

        ns["__init__"] = __init__
    return type("_TickSlots", (), ns)


_TickSlots = _tick_layout()


def fast_tick(symbol: str, bid: Decimal | None, ask: Decimal | None, last: Decimal | None, ts_ms: int) -> Tick:
    """Tick(...) without the frozen-dataclass __init__ overhead (same value)."""
    t = _TickSlots()
    t.symbol = symbol
    t.bid = bid
    t.ask = ask
    t.last = last
    t.ts_ms = ts_ms
    t.__class__ = Tick
    return t  # type: ignore[return-value]


class _Data(msgspec.Struct, gc=False):
    """The `data` fields a Tick needs (bookTicker: b, a; trade: p, T); msgspec skips all others unbuilt.

    b and a are also int in trade payloads (buyer/seller order ids), hence the union. A field of another
    type makes the decode fail, and the frame goes to the full path.
    """

    b: str | int | None = None
    a: str | int | None = None
    p: str | None = None
    T: int | None = None


class _Frame(msgspec.Struct, gc=False):
    """A combined-stream frame: {"stream": ..., "data": {...}}."""

    stream: str
    data: _Data


_FRAME_DECODER = msgspec.json.Decoder(_Frame)


def _fields(d: Any) -> _Data:
    """A decoded `data` dict -> `_Data` (the handlers' input); a missing field becomes None, which the handlers
    reject like the missing key it is (T alone is optional)."""
    if type(d) is not dict:
        raise TypeError(f"data is {type(d).__name__}, not an object")
    return _Data(b=d.get("b"), a=d.get("a"), p=d.get("p"), T=d.get("T"))


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class StreamParser:
    """Combined-stream messages -> `Tick`, with per-stream handlers built once at subscribe time.

    `conflate=True` drops bookTicker updates whose best bid and ask strings are unchanged (Binance sends
    one for every size change at the top of the book; a Tick carries no sizes, so they carry no news).
    """

    def __init__(self, conflate: bool = True, cache_max: int = 200_000,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self._routes: dict[str, Callable[[Any], Tick | None]] = {}
        self._kinds: dict[str, tuple[int, str]] = {}
        self._cache: dict[str, Decimal] = {}
        self._cache_max = cache_max
        self._conflate = conflate
        self.clock_ms = clock_ms or _wall_ms
        self.dropped_bad = 0
        # the frame decoder, rebuilt lazily (on the next frame) after the stream set changes
        self._decode: list[Callable[[Any], _Frame]] = [self._rebuild_decoder]
        self._bind_parsers()

    # routing ---------------------------------------------------------
    @property
    def conflate(self) -> bool:
        return self._conflate

    @conflate.setter
    def conflate(self, value: bool) -> None:
        self._conflate = value  # fresh handlers: the conflation state (last bid/ask) lives in each closure
        for stream, (kind, sym) in self._kinds.items():
            self._routes[stream] = self._handler(kind, sym)

    def add_stream(self, stream: str) -> None:
        sym, _, suffix = stream.partition("@")
        kind = _STREAM_SUFFIX.get(suffix)
        if kind is None:
            raise ValueError(f"unsupported stream {stream!r}")
        stream = sys.intern(stream)
        symbol = sys.intern(sym.upper())
        self._kinds[stream] = (kind, symbol)
        self._routes[stream] = self._handler(kind, symbol)
        self._decode[0] = self._rebuild_decoder

    def remove_stream(self, stream: str) -> None:
        self._routes.pop(stream, None)  # with its handler goes its conflation state
        self._decode[0] = self._rebuild_decoder
        self._kinds.pop(stream, None)

    @property
    def streams(self) -> set[str]:
        return set(self._routes)

    def _handler(self, kind: int, sym: str) -> Callable[[Any], Tick | None]:
        """A closure for one stream: everything it needs is bound, so a message costs a few dict lookups."""
        clock = self.clock_ms
        if kind != KIND_BOOK:
            return self._handler_trade(sym, clock)
        book = self._handler_book(sym)
        if clock is _wall_ms:
            return book

        def book_clocked(d: Any) -> Tick | None:  # an injected clock (tests): same Tick, its time
            t = book(d)
            return None if t is None else fast_tick(sym, t.bid, t.ask, None, clock())

        return book_clocked

    def _handler_book(self, sym: str) -> Callable[[Any], Tick | None]:
        """bookTicker -> Tick stamped with the wall clock, read inline (one Python call less per message)."""
        cache = self._cache
        price = self._price
        now_ns = time.time_ns
        if self._conflate:
            last_b: Any = None  # the bid/ask strings of the last Tick of this stream (closure cells)
            last_a: Any = None

            def book(d: Any) -> Tick | None:
                nonlocal last_b, last_a
                b = d.b
                a = d.a
                if b == last_b and a == last_a and b is not None:
                    return None
                bd = cache.get(b) or price(b)
                ad = cache.get(a) or price(a)
                last_b = b
                last_a = a
                t = _TickSlots()
                t.symbol = sym
                t.bid = bd
                t.ask = ad
                t.last = None
                t.ts_ms = now_ns() // 1_000_000
                t.__class__ = Tick
                return t

            return book

        def book_all(d: Any) -> Tick | None:
            b = d.b
            a = d.a
            t = _TickSlots()
            t.symbol = sym
            t.bid = cache.get(b) or price(b)
            t.ask = cache.get(a) or price(a)
            t.last = None
            t.ts_ms = now_ns() // 1_000_000
            t.__class__ = Tick
            return t

        return book_all

    def _handler_trade(self, sym: str, clock: Callable[[], int]) -> Callable[[Any], Tick | None]:
        cache = self._cache
        price = self._price

        def trade(d: Any) -> Tick | None:
            p = d.p
            ts = d.T
            if type(ts) is not int:
                ts = _int(ts) if ts is not None else clock()
            elif not 0 <= ts < 2**63:
                raise BadPayload("timestamp out of range")
            t = _TickSlots()
            t.symbol = sym
            t.bid = None
            t.ask = None
            t.last = cache.get(p) or price(p)
            t.ts_ms = ts
            t.__class__ = Tick
            return t

        return trade

    def _rebuild_decoder(self, raw: bytes | str) -> Any:
        """Build the frame decoder for the current streams, install it, and decode `raw` with it.

        `stream` is typed as a Literal of the subscribed names: msgspec then hands back the very (interned)
        key object of the route table instead of a new string, so the route lookup hashes nothing, and a
        frame for any other stream fails the decode and takes the full path. Built once per change of the
        stream set, on the next frame (subscribing 1000 streams one by one costs one build, not 1000).
        """
        streams = tuple(self._routes)
        if streams:
            frame = msgspec.defstruct("_Frame", [("stream", Literal[streams]), ("data", _Data)], gc=False)
            decode = msgspec.json.Decoder(frame).decode
        else:
            decode = _FRAME_DECODER.decode
        self._decode[0] = decode
        return decode(raw)

    # numbers ---------------------------------------------------------
    def _price(self, text: Any) -> Decimal:
        """Cache miss (or junk): validate and remember. Unhashable junk raises TypeError (caught by parse)."""
        if type(text) is not str:
            raise BadPayload(f"bad price {text!r}"[:80])
        d = to_decimal(text)
        if d <= 0:
            raise BadPayload(f"non-positive price {text!r}")
        if len(self._cache) >= self._cache_max:
            self._cache.clear()
        self._cache[text] = d
        return d

    # parsing ---------------------------------------------------------
    def _bind_parsers(self) -> None:
        """parse_raw / parse as closures over the route table (no attribute lookups per message)."""
        routes = self._routes
        rejected = self._rejected
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        expected = (KeyError, TypeError, AttributeError, BadPayload, IndexError, ArithmeticError)
        decoder = self._decode
        fields = _fields

        def parse_full(raw: bytes | str) -> Tick | None:
            """The general path: orjson to dicts, every error classified, counted and logged."""
            msg = None
            try:
                msg = loads(raw)
                return routes[msg["stream"]](fields(msg["data"]))
            except (decode_error, ValueError) as exc:
                self.dropped_bad += 1
                _report_bad("market message (json)", exc)
                return None
            except expected as exc:
                return rejected(msg, exc)

        def parse_raw(raw: bytes | str) -> Tick | None:
            """One raw combined-stream frame -> Tick (None for control replies, conflated or bad messages).

            msgspec decodes straight into `_Frame` (only the fields a Tick needs; the rest are skipped without
            building objects). Anything that does not fit that shape or fails in a handler (control replies,
            junk, wrong types, bad numbers) is re-parsed by `parse_full`, which decides, counts and logs exactly
            as before; handlers change no state before they succeed, so running one twice is harmless.
            """
            try:
                m = decoder[0](raw)
                return routes[m.stream](m.data)
            except Exception:  # noqa: BLE001 - the full path classifies it
                return parse_full(raw)

        def parse(msg: Any) -> Tick | None:
            """An already-decoded combined-stream message (what python-binance's recv() returns) -> Tick."""
            try:
                return routes[msg["stream"]](fields(msg["data"]))
            except expected as exc:
                return rejected(msg, exc)

        self.parse_raw = parse_raw
        self.parse_full = parse_full
        self.parse = parse

    def _rejected(self, msg: Any, exc: Exception) -> None:
        if isinstance(msg, dict):
            stream = msg.get("stream")
            if stream is None and ("result" in msg or "error" in msg):
                return None  # a SUBSCRIBE/UNSUBSCRIBE reply
            if isinstance(stream, str) and stream not in self._routes:
                return None  # a stream we just unsubscribed from
        self.dropped_bad += 1
        _report_bad("market message", exc)
        return None


def parse_market_naive(raw: bytes | str, routes: Mapping[str, str], clock_ms: Callable[[], int]) -> Tick | None:
    """Reference implementation for the benchmark baseline: json.loads + dict lookup + Decimal per field."""
    msg = json.loads(raw)
    stream = msg["stream"]
    sym = routes.get(stream)
    if sym is None:
        return None
    d = msg["data"]
    if stream.endswith("@bookTicker"):
        return Tick(sym, Decimal(d["b"]), Decimal(d["a"]), None, clock_ms())
    return Tick(sym, None, None, Decimal(d["p"]), int(d["T"]))


# ---------------------------------------------------------------- user data stream

def parse_execution_report(d: Any) -> tuple[OrderUpdate, Fill | None] | None:
    """executionReport -> (OrderUpdate, Fill when the execution type is TRADE)."""
    try:
        symbol = _symbol(d["s"])
        exec_type = d.get("x")
        cid = _str(d["c"])
        orig = d.get("C")
        if isinstance(orig, str) and orig and exec_type in ("CANCELED", "REPLACED", "EXPIRED"):
            cid = orig  # for cancels `c` is the cancel request's id, `C` the order's own
        side = _side(d["S"])
        otype = _otype(d["o"])
        order_id = _int(d["i"])
        ts = _int(d.get("T") or d.get("E") or 0)
        update = OrderUpdate(
            symbol=symbol,
            client_order_id=cid,
            side=side,
            order_type=otype,
            status=_status(d["X"]),
            price=_nonneg(d["p"]),
            orig_qty=_nonneg(d["q"]),
            executed_qty=_nonneg(d["z"]),
            cum_quote=_nonneg(d.get("Z", "0")),
            exchange_order_id=order_id,
            ts_ms=ts,
            **_reject_fields(d.get("r")),
        )
        fill = None
        if exec_type == "TRADE":
            qty = _nonneg(d["l"])
            price = _nonneg(d["L"])
            if qty <= 0 or price <= 0:
                raise BadPayload("TRADE with zero price or quantity")
            trade_id = _int(d["t"])
            if trade_id < 0:
                raise BadPayload("TRADE without a trade id")
            fee_asset = d.get("N")
            fill = Fill(
                symbol=symbol,
                trade_id=trade_id,
                client_order_id=cid,
                side=side,
                price=price,
                qty=qty,
                fee=_nonneg(d.get("n") or "0"),
                fee_asset=fee_asset if isinstance(fee_asset, str) else "",
                is_maker=_bool(d.get("m", False)),
                ts_ms=ts,
                exchange_order_id=order_id,
            )
        return update, fill
    except (KeyError, TypeError, AttributeError, BadPayload, ArithmeticError) as exc:
        _report_bad("executionReport", exc)
        return None


def parse_account_position(d: Any) -> BalanceUpdate | None:
    """outboundAccountPosition -> BalanceUpdate (only the assets that changed)."""
    try:
        rows = d["B"]
        if not isinstance(rows, list):
            raise BadPayload("B is not a list")
        balances = tuple(
            Balance(asset=_str(r["a"]), free=_nonneg(r["f"]), locked=_nonneg(r["l"])) for r in rows
        )
        return BalanceUpdate(balances=balances, ts_ms=_int(d.get("E") or d.get("u") or 0))
    except (KeyError, TypeError, AttributeError, BadPayload, ArithmeticError) as exc:
        _report_bad("outboundAccountPosition", exc)
        return None


def user_event_kind(d: Any) -> str | None:
    """The `e` field of a user-data event, or None."""
    if isinstance(d, dict):
        e = d.get("e")
        return e if isinstance(e, str) else None
    return None


# ---------------------------------------------------------------- REST payloads

def order_from_rest(d: Any) -> OrderUpdate | None:
    """POST/GET/DELETE /api/v3/order (and cancelReplace halves) -> OrderUpdate."""
    try:
        cid = d.get("origClientOrderId") or d["clientOrderId"]
        return OrderUpdate(
            symbol=_symbol(d["symbol"]),
            client_order_id=_str(cid),
            side=_side(d["side"]),
            order_type=_otype(d["type"]),
            status=_status(d["status"]),
            price=_nonneg(d.get("price", "0")),
            orig_qty=_nonneg(d["origQty"]),
            executed_qty=_nonneg(d.get("executedQty", "0")),
            cum_quote=_nonneg(d.get("cummulativeQuoteQty", "0")),
            exchange_order_id=_int(d["orderId"]),
            ts_ms=_int(d.get("updateTime") or d.get("transactTime") or d.get("time") or 0),
        )
    except (KeyError, TypeError, AttributeError, BadPayload, ArithmeticError) as exc:
        _report_bad("REST order", exc)
        return None


def fills_from_rest_order(d: Any, update: OrderUpdate) -> list[Fill]:
    """The `fills` of a FULL order response (MARKET / crossing LIMIT orders fill inside the answer)."""
    out: list[Fill] = []
    rows = d.get("fills") if isinstance(d, dict) else None
    if not isinstance(rows, list):
        return out
    ts = update.ts_ms
    for r in rows:
        try:
            out.append(
                Fill(
                    symbol=update.symbol,
                    trade_id=_int(r["tradeId"]),
                    client_order_id=update.client_order_id,
                    side=update.side,
                    price=_nonneg(r["price"]),
                    qty=_nonneg(r["qty"]),
                    fee=_nonneg(r.get("commission", "0")),
                    fee_asset=_str(r.get("commissionAsset", "")),
                    is_maker=False,  # an order that fills in its own answer took liquidity
                    ts_ms=ts,
                    exchange_order_id=update.exchange_order_id,
                )
            )
        except (KeyError, TypeError, AttributeError, BadPayload, ArithmeticError) as exc:
            _report_bad("REST order fill", exc)
    return out


def fill_from_my_trade(d: Any, client_order_id: str) -> Fill | None:
    """One GET /api/v3/myTrades row -> Fill (the row has no client order id; the caller supplies it)."""
    try:
        return Fill(
            symbol=_symbol(d["symbol"]),
            trade_id=_int(d["id"]),
            client_order_id=client_order_id,
            side=Side.BUY if _bool(d["isBuyer"]) else Side.SELL,
            price=_nonneg(d["price"]),
            qty=_nonneg(d["qty"]),
            fee=_nonneg(d.get("commission", "0")),
            fee_asset=_str(d.get("commissionAsset", "")),
            is_maker=_bool(d.get("isMaker", False)),
            ts_ms=_int(d.get("time", 0)),
            exchange_order_id=_int(d["orderId"]),
        )
    except (KeyError, TypeError, AttributeError, BadPayload, ArithmeticError) as exc:
        _report_bad("REST myTrades row", exc)
        return None


def balances_from_account(d: Any) -> dict[str, Balance]:
    """GET /api/v3/account -> {asset: Balance}; bad rows are skipped."""
    out: dict[str, Balance] = {}
    rows = d.get("balances") if isinstance(d, dict) else None
    if not isinstance(rows, list):
        _report_bad("REST account", "no balances list")
        return out
    for r in rows:
        try:
            asset = _str(r["asset"])
            out[asset] = Balance(asset=asset, free=_nonneg(r["free"]), locked=_nonneg(r["locked"]))
        except (KeyError, TypeError, AttributeError, BadPayload, ArithmeticError) as exc:
            _report_bad("REST account balance", exc)
    return out
