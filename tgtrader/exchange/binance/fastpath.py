"""Combined-stream market data -> `Tick`: the hot path.

Everything here is total like parse.py: a malformed message gives `None` (and a rate-limited log line),
never an exception, because the parser runs inside the library's read loop where one bad message must not
stop the feed.

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
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Literal

import msgspec
import orjson

from tgtrader.exchange.binance.parse import BadPayload, _int, _report_bad, to_decimal
from tgtrader.types import Tick

KIND_BOOK = 1
KIND_TRADE = 2

_STREAM_SUFFIX = {"bookTicker": KIND_BOOK, "trade": KIND_TRADE}


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

