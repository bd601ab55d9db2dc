"""Turn Binance user-data events and REST payloads into `tgtrader.types` values; the number helpers.

Everything here is total: malformed JSON, missing fields, wrong types, NaN/Infinity strings and absurd
numbers give `None` (and a rate-limited log line), never an exception, because these functions run
inside the stream drain loops where one bad message must not stop the feed.

The market-data hot path (`StreamParser`) is in fastpath.py; it shares the number helpers and the
malformed-input log of this module.
"""

from __future__ import annotations

import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from loguru import logger

from tgtrader.core.ports import BalanceUpdate
from tgtrader.types import Balance, Fill, OrderStatus, OrderType, OrderUpdate, RejectReason, Side

ZERO = Decimal(0)
_MAX_EXP = 20  # prices/quantities of 1e21 and more are garbage, not markets
_MIN_EXP = 40  # and so are non-zero amounts below 1e-40
_MAX_STR = 64  # numeric strings longer than this are rejected before Decimal parses them


class BadPayload(ValueError):
    """Internal: a payload field is missing or unusable (caught inside this package)."""


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
    "STOP_PRICE_WOULD_TRIGGER_IMMEDIATELY": RejectReason.WOULD_TRIGGER,
    "OCO_BAD_PRICES": RejectReason.FILTER,
}


def _reject_fields(value: Any) -> dict[str, Any]:
    """OrderUpdate's reject_reason / reject_text from an executionReport's `r` (empty when not rejected)."""
    if value in (None, "NONE"):
        return {}
    text = str(value)[:100]
    return {"reject_reason": _REJECT_REASONS.get(text, RejectReason.OTHER), "reject_text": text}


def _stp_fields(status: Any, prevented: Any) -> dict[str, Any]:
    """Self-trade prevention as typed values. enums.md: EXPIRED_IN_MATCH "The order was expired by the exchange due
    to STP"; faqs/stp_faq.md: executionReport "A" is "the cumulative quantity expired due to STP over the lifetime
    of the order", and "API responses for orders which expired due to STP will also have a preventedQuantity
    field"."""
    out: dict[str, Any] = {}
    if prevented not in (None, ""):
        out["prevented_qty"] = _nonneg(prevented)
    if status == "EXPIRED_IN_MATCH":
        out.update(reject_reason=RejectReason.SELF_TRADE, reject_text="EXPIRED_IN_MATCH")
    return out


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
            **_stp_fields(d["X"], d.get("A")),
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
            **_stp_fields(d["status"], d.get("preventedQuantity")),
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
