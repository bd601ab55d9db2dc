"""binance.parse / binance.fastpath: recorded Binance payloads parse to the right values; junk never raises."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tgtrader.core.ports import BalanceUpdate
from tgtrader.exchange.binance import fastpath
from tgtrader.exchange.binance import parse as bp
from tgtrader.types import OrderStatus, OrderType, Side, Tick

# Recorded payloads (shared/data/binance/*.json), inlined so CI on a fresh clone has them.
BOOK_TICKER = {"stream": "nknusdt@bookTicker", "data": {"u": 499869768, "s": "NKNUSDT", "b": "0.35210000",
                                                       "B": "672.00000000", "a": "0.35260000", "A": "3199.00000000"}}
TRADE = {"stream": "ethusdt@trade", "data": {"e": "trade", "E": 1639351062244, "s": "ETHUSDT", "t": 705291099,
                                             "p": "4149.74000000", "q": "0.43870000", "b": 7038593583,
                                             "a": 7038593613, "T": 1639351062243, "m": True, "M": True}}
EXEC_NEW = {"e": "executionReport", "E": 1616627567900, "s": "BTCUSDT", "c": "c4wyKsIhoAaittTYlIVLqk", "S": "BUY",
            "o": "LIMIT", "f": "GTC", "q": "0.00028400", "p": "52789.10000000", "P": "0.00000000", "F": "0.00000000",
            "g": -1, "C": "", "x": "NEW", "X": "NEW", "r": "NONE", "i": 5340845958, "l": "0.00000000",
            "z": "0.00000000", "L": "0.00000000", "n": "0", "N": "BTC", "T": 1616627567900, "t": -1,
            "I": 11388173160, "w": True, "m": False, "M": False, "O": 1616627567900, "Z": "0.00000000",
            "Y": "0.00000000", "Q": "0.00000000", "W": 1616627567900}
EXEC_TRADE = {"e": "executionReport", "E": 1616633041556, "s": "BTCUSDT", "c": "YeULctvPAnHj5HXCQo9Mob", "S": "BUY",
              "o": "LIMIT", "f": "GTC", "q": "0.00028600", "p": "52436.85000000", "P": "0.00000000",
              "F": "0.00000000", "g": -1, "C": "", "x": "TRADE", "X": "FILLED", "r": "NONE", "i": 5341783271,
              "l": "0.00028600", "z": "0.00028600", "L": "52436.85000000", "n": "0.00000029", "N": "BTC",
              "T": 1616633041555, "t": 726946523, "I": 11390206312, "w": False, "m": False, "M": True,
              "O": 1616633041555, "Z": "14.99693910", "Y": "14.99693910", "Q": "0.00000000", "W": 1616633041555}
ACCOUNT_POS = {"e": "outboundAccountPosition", "E": 1616628815745, "u": 1616628815745,
               "B": [{"a": "BTC", "f": "0.00225109", "l": "0.00123000"}, {"a": "BNB", "f": "0.00000000", "l": "0.00000000"},
                     {"a": "USDT", "f": "54.43390661", "l": "0.00000000"}]}


def make_parser() -> fastpath.StreamParser:
    p = fastpath.StreamParser(clock_ms=lambda: 42)
    p.add_stream("nknusdt@bookTicker")
    p.add_stream("ethusdt@trade")
    return p


def test_book_ticker_and_trade_from_recorded_messages() -> None:
    p = make_parser()
    tick = p.parse_raw(json.dumps(BOOK_TICKER))
    assert tick == Tick("NKNUSDT", Decimal("0.35210000"), Decimal("0.35260000"), None, 42)
    trade = p.parse(TRADE)
    assert trade == Tick("ETHUSDT", None, None, Decimal("4149.74000000"), 1639351062243)


def test_book_ticker_conflates_size_only_updates() -> None:
    p = make_parser()
    assert p.parse(BOOK_TICKER) is not None
    sized = copy.deepcopy(BOOK_TICKER)
    sized["data"]["B"] = "1.0"
    assert p.parse(sized) is None  # same bid/ask: no news for a Tick
    moved = copy.deepcopy(BOOK_TICKER)
    moved["data"]["b"] = "0.35220000"
    assert p.parse(moved).bid == Decimal("0.35220000")
    p.conflate = False
    assert p.parse(moved) is not None


def test_control_replies_and_unknown_streams_are_ignored() -> None:
    p = make_parser()
    assert p.parse({"result": None, "id": 1}) is None
    assert p.parse({"stream": "btcusdt@bookTicker", "data": {}}) is None
    assert p.dropped_bad == 0


def test_bad_prices_are_dropped() -> None:
    p = make_parser()
    for bad in ("NaN", "Infinity", "-1", "0", "1e999999", "10E999999", "1E-999999", "abc", None, [], {}, "9" * 100):
        msg = copy.deepcopy(BOOK_TICKER)
        msg["data"]["b"] = bad
        assert p.parse(msg) is None, bad


def test_huge_exponents_are_rejected_without_decimal_traps() -> None:
    for text in ("10E999999", "-10E999999", "1E-999999"):
        ev = dict(EXEC_TRADE, L=text)
        assert bp.parse_execution_report(ev) is None
    assert bp.parse_execution_report(dict(EXEC_TRADE, n="0E-999999")) is not None  # a zero fee is fine


def test_execution_report_new_and_trade() -> None:
    upd, fill = bp.parse_execution_report(EXEC_NEW)
    assert fill is None
    assert (upd.symbol, upd.client_order_id, upd.side, upd.order_type, upd.status) == (
        "BTCUSDT", "c4wyKsIhoAaittTYlIVLqk", Side.BUY, OrderType.LIMIT, OrderStatus.NEW)
    assert upd.price == Decimal("52789.1") and upd.exchange_order_id == 5340845958
    upd, fill = bp.parse_execution_report(EXEC_TRADE)
    assert upd.status is OrderStatus.FILLED and upd.executed_qty == Decimal("0.000286")
    assert fill is not None
    assert (fill.trade_id, fill.price, fill.qty, fill.fee, fill.fee_asset, fill.is_maker) == (
        726946523, Decimal("52436.85"), Decimal("0.000286"), Decimal("0.00000029"), "BTC", False)


def test_cancel_report_uses_original_client_order_id() -> None:
    ev = dict(EXEC_NEW, x="CANCELED", X="CANCELED", c="cancel-request-id", C="c4wyKsIhoAaittTYlIVLqk")
    upd, _ = bp.parse_execution_report(ev)
    assert upd.client_order_id == "c4wyKsIhoAaittTYlIVLqk" and upd.status is OrderStatus.CANCELED


def test_account_position() -> None:
    bal = bp.parse_account_position(ACCOUNT_POS)
    assert isinstance(bal, BalanceUpdate)
    assert [(b.asset, b.free, b.locked) for b in bal.balances][0] == ("BTC", Decimal("0.00225109"), Decimal("0.00123"))


def test_rest_shapes() -> None:
    order = {"symbol": "BTCUSDT", "orderId": 28, "orderListId": -1, "clientOrderId": "6gCrw2kRUAF9CvJDGP16IP",
             "transactTime": 1507725176595, "price": "1.00000000", "origQty": "10.00000000",
             "executedQty": "10.00000000", "cummulativeQuoteQty": "10.00000000", "status": "FILLED",
             "timeInForce": "GTC", "type": "MARKET", "side": "SELL", "workingTime": 1507725176595,
             "fills": [{"price": "4000.00000000", "qty": "1.00000000", "commission": "4.00000000",
                        "commissionAsset": "USDT", "tradeId": 56}], "selfTradePreventionMode": "NONE"}
    upd = bp.order_from_rest(order)
    assert upd.status is OrderStatus.FILLED and upd.side is Side.SELL
    fills = bp.fills_from_rest_order(order, upd)
    assert [(f.trade_id, f.price, f.fee_asset) for f in fills] == [(56, Decimal("4000"), "USDT")]
    trade = {"symbol": "BNBBTC", "id": 28457, "orderId": 100234, "orderListId": -1, "price": "4.00000100",
             "qty": "12.00000000", "quoteQty": "48.000012", "commission": "10.10000000", "commissionAsset": "BNB",
             "time": 1499865549590, "isBuyer": True, "isMaker": False, "isBestMatch": True}
    f = bp.fill_from_my_trade(trade, "cid")
    assert (f.trade_id, f.side, f.client_order_id, f.exchange_order_id) == (28457, Side.BUY, "cid", 100234)
    assert bp.balances_from_account({"balances": [{"asset": "BTC", "free": "1", "locked": "0"}]})["BTC"].free == 1


# ---------------------------------------------------------------- fuzz: never raises

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30) | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999999999", "-0", "0x10", "1_0",
                                            "99999999999999999999999999", "10E999999", "1E-999999", "0E-999999", "", " 1 ", "BUY", "TRADE", "FILLED"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4),
    max_leaves=12,
)


def _mutations(base: dict) -> st.SearchStrategy[dict]:
    keys = sorted(base)
    return st.lists(st.tuples(st.sampled_from(keys), st.one_of(st.just("__delete__"), junk)), max_size=5).map(
        lambda changes: _apply(base, changes))


def _apply(base: dict, changes: list) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes:
        if value == "__delete__":
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _finite(*values: object) -> bool:
    return all(not isinstance(v, Decimal) or v.is_finite() for v in values)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_raw_bytes(raw: bytes) -> None:
    make_parser().parse_raw(raw)  # must not raise


@settings(max_examples=300, deadline=None)
@given(junk)
@example({"p": "10E999999"})  # found by this fuzz: abs() on it trapped decimal.Overflow
def test_fuzz_any_json_value(value: object) -> None:
    p = make_parser()
    p.parse(value)
    p.parse({"stream": "nknusdt@bookTicker", "data": value})
    p.parse({"stream": "ethusdt@trade", "data": value})
    try:
        raw = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return
    p.parse_raw(raw)
    bp.parse_execution_report(value)
    bp.parse_account_position(value)
    bp.order_from_rest(value)
    bp.fill_from_my_trade(value, "x")
    bp.balances_from_account(value)


@settings(max_examples=400, deadline=None)
@given(_mutations(EXEC_TRADE))
def test_fuzz_execution_report_fields(event: dict) -> None:
    out = bp.parse_execution_report(event)
    if out is not None:
        upd, fill = out
        assert _finite(upd.price, upd.orig_qty, upd.executed_qty, upd.cum_quote)
        if fill is not None:
            assert _finite(fill.price, fill.qty, fill.fee) and fill.qty > 0 and fill.price > 0


@settings(max_examples=300, deadline=None)
@given(_mutations(BOOK_TICKER["data"]), _mutations(TRADE["data"]))
def test_fuzz_market_fields(book: dict, trade: dict) -> None:
    p = make_parser()
    for msg in ({"stream": "nknusdt@bookTicker", "data": book}, {"stream": "ethusdt@trade", "data": trade}):
        tick = p.parse(msg)
        if tick is not None:
            assert _finite(tick.bid, tick.ask, tick.last)
            assert all(v is None or v > 0 for v in (tick.bid, tick.ask, tick.last))


@settings(max_examples=200, deadline=None)
@given(_mutations(ACCOUNT_POS))
def test_fuzz_account_position(event: dict) -> None:
    out = bp.parse_account_position(event)
    if out is not None:
        assert all(_finite(b.free, b.locked) for b in out.balances)


@settings(max_examples=300, deadline=None)
@given(_mutations(EXEC_TRADE), junk, st.text(max_size=120))
def test_fuzz_adapter_handlers_never_raise(event: dict, value: object, text: str) -> None:
    """The adapter's user-event and market-frame handlers run inside stream loops: they must swallow junk."""
    from tgtrader.exchange.binance import BinanceExchange
    from tgtrader.exchange.binance.streams import MarketConn

    got: list = []
    ex = BinanceExchange("k", "s")
    ex.set_event_sink(got.append)
    ex.parser.add_stream("btcusdt@bookTicker")
    ex.on_user_event(event)
    ex.on_user_event(value)
    handle = ex.market_handler(MarketConn(up=True))
    for frame in (text, text.encode(), '{"stream":"btcusdt@bookTicker","data":' + text + "}", value):
        out = handle(frame)
        assert out is None or isinstance(out, dict)


# ---------------------------------------------------------------- msgspec fast path == full (orjson) path


def test_fast_tick_is_a_real_tick() -> None:
    import dataclasses

    import pytest

    t = fastpath.fast_tick("BTCUSDT", Decimal("1.5"), Decimal("1.6"), None, 7)
    ref = Tick("BTCUSDT", Decimal("1.5"), Decimal("1.6"), None, 7)
    assert type(t) is Tick and t == ref and hash(t) == hash(ref) and repr(t) == repr(ref)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.bid = Decimal(2)  # type: ignore[misc]
    book = make_parser().parse_raw(orjson.dumps(BOOK_TICKER))
    assert type(book) is Tick and book == Tick("NKNUSDT", Decimal("0.3521"), Decimal("0.3526"), None, 42)


_price_text = st.one_of(
    st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("99999999"), places=8).map(lambda d: f"{d:.8f}"),
    st.sampled_from(["0.35210000", "0.35260000", "4149.74000000", "NaN", "Infinity", "-1", "0", "1e999999", "abc", ""]),
)
_junk_value = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


@st.composite
def _frame(draw: st.DrawFn) -> str:
    """A combined-stream frame, mostly valid, with Binance's fields in a random order plus occasional junk."""
    stream = draw(st.sampled_from(["nknusdt@bookTicker", "ethusdt@trade", "btcusdt@bookTicker"]))
    if stream.endswith("@trade"):
        data: dict = {"e": "trade", "E": 1639351062244, "s": "ETHUSDT", "t": 705291099, "p": draw(_price_text),
                      "q": "0.43870000", "b": 7038593583, "a": 7038593613, "T": draw(st.integers(0, 2**62)),
                      "m": True, "M": True}
    else:
        data = {"u": 499869768, "s": "NKNUSDT", "b": draw(st.sampled_from(["0.35210000", "0.35220000"]) | _price_text),
                "B": "672.00000000", "a": draw(st.sampled_from(["0.35260000", "0.35270000"]) | _price_text),
                "A": "3199.00000000"}
    for _ in range(draw(st.integers(0, 2))):  # wrong types, missing fields, extra fields
        key = draw(st.sampled_from(["b", "a", "p", "T", "x", "s"]))
        if draw(st.booleans()):
            data.pop(key, None)
        else:
            data[key] = draw(_junk_value | _price_text)
    items = draw(st.permutations(list(data.items())))
    envelope = [("stream", stream), ("data", dict(items))]
    if draw(st.booleans()):
        envelope.reverse()
    return json.dumps(dict(envelope))


@settings(max_examples=300, deadline=None)
@given(st.lists(_frame(), min_size=1, max_size=12), st.booleans(), st.booleans())
def test_fast_path_equals_full_decoder(frames: list[str], conflate: bool, as_bytes: bool) -> None:
    """parse_raw (msgspec, typed frame) and parse_full (orjson, dicts) give the same Ticks, drops and conflation."""
    fast, full = make_parser(), make_parser()
    fast.conflate = full.conflate = conflate
    for frame in frames:
        raw = frame.encode() if as_bytes else frame
        assert fast.parse_raw(raw) == full.parse_full(raw), frame
    assert fast.dropped_bad == full.dropped_bad


def test_fast_path_falls_back_for_other_shapes() -> None:
    p = make_parser()
    assert p.parse_raw(b'{"result":null,"id":1}') is None
    assert p.parse_raw(b'{"stream":"btcusdt@bookTicker","data":{"b":"1","a":"2"}}') is None  # unsubscribed
    assert p.dropped_bad == 0
    trade = dict(TRADE["data"], T=str(TRADE["data"]["T"]))  # T as a string: full path converts it
    assert p.parse_raw(orjson.dumps({"stream": "ethusdt@trade", "data": trade})).ts_ms == 1639351062243
    for bad in (b'{"stream":"nknusdt@bookTicker","data":[1]}', b'{"stream":"nknusdt@bookTicker","data":{"b":1,"a":"2"}}',
                b'{"stream":"ethusdt@trade","data":{"p":"1","T":99999999999999999999}}', b'{"stream":5,"data":{}}',
                b'{"stream":"ethusdt@trade","data":{"p":NaN}}', b"", b"[]"):
        assert p.parse_raw(bad) is None, bad
    assert p.dropped_bad == 7


def test_fast_decoder_follows_subscribe_and_unsubscribe() -> None:
    """The typed decoder is rebuilt for the current stream set: new streams parse, removed ones stop, and a
    re-subscribed book stream starts with fresh conflation state (its first frame makes a Tick again)."""
    p = make_parser()
    btc = b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"100.5","B":"1","a":"100.6","A":"1"}}'
    assert p.parse_raw(btc) is None  # not subscribed yet
    p.add_stream("btcusdt@bookTicker")
    assert p.parse_raw(btc) == Tick("BTCUSDT", Decimal("100.5"), Decimal("100.6"), None, 42)
    assert p.parse_raw(btc) is None  # same bid/ask: conflated
    nkn = orjson.dumps(BOOK_TICKER)
    assert p.parse_raw(nkn) is not None  # the older streams still route after the rebuild
    p.remove_stream("btcusdt@bookTicker")
    assert p.parse_raw(btc) is None and "btcusdt@bookTicker" not in p.streams
    p.add_stream("btcusdt@bookTicker")
    assert p.parse_raw(btc) is not None
    for s in list(p.streams):
        p.remove_stream(s)
    assert p.parse_raw(nkn) is None and p.dropped_bad == 0
