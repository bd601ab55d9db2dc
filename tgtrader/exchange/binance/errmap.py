"""Binance error answers as the core's typed errors, by code and message family (errors.md).

errors.md: "Errors consist of two parts: an error code and a message. Codes are universal, but messages can
vary." So the code decides first, and within -1013 / -2010 / -2011 (the codes whose meaning is carried by the
message: "Messages for -1010 ERROR_MSG_RECEIVED, -2010 NEW_ORDER_REJECTED, -2011 CANCEL_REJECTED, and -2038
ORDER_AMEND_REJECTED", "Filter failures") a family of words found in the message decides the RejectReason.
The core reads only the typed error and its `reason`; the venue's words stay in the message for people.
"""

from __future__ import annotations

from binance.exceptions import BinanceAPIException

from tgtrader.errors import (
    BadSymbol,
    ClockSkew,
    ExchangeError,
    ExchangeUnavailable,
    FilterRejected,
    InsufficientBalance,
    IpBanned,
    RateLimited,
    UnknownOrder,
    WouldMatch,
    WouldTrigger,
)


class DuplicateOrder(ExchangeError):
    """-2010 "Duplicate order sent." - "The clOrdId is already in use." Binance refuses a client order id only while
    the order using it is open, so this means the order is live: the adapter adopts it, never reports REJECTED."""

    code = -2010


_FILTER_TEXT = {
    "NOTIONAL": "the order value is outside the allowed range (too small or too large)",
    "MIN_NOTIONAL": "the order value is below the minimum",
    "LOT_SIZE": "the quantity is too small, too large or not a multiple of the step size",
    "MARKET_LOT_SIZE": "the market order quantity is outside the allowed range",
    "PRICE_FILTER": "the price is outside the allowed range or not a multiple of the tick size",
    "PERCENT_PRICE_BY_SIDE": "the price is too far from the current average price",
    "PERCENT_PRICE": "the price is too far from the current average price",
    "MAX_NUM_ORDERS": "there are too many open orders on this symbol",
    "MAX_NUM_ALGO_ORDERS": "there are too many open stop orders on this symbol",
    "MAX_POSITION": "the position in this coin would exceed the maximum Binance allows",
    "EXCHANGE_MAX_NUM_ORDERS": "there are too many open orders on the account",
    "EXCHANGE_MAX_NUM_ALGO_ORDERS": "there are too many open stop orders on the account",
}

# errors.md, -2010 NEW_ORDER_REJECTED messages (lower case word families) -> what the order's refusal means.
# "Order would immediately match and take." (LIMIT_MAKER) -> would-match;
# "Account has insufficient balance for requested action." -> insufficient balance;
# "Order would trigger immediately." (a stop on the wrong side of the last price), "Market is closed.",
# "... orders are not supported for this symbol.", "Price * QTY is zero or less.", "Unsupported order combination",
# "Order cancel-replace is not supported for this symbol.", "This symbol is not permitted / restricted for this
# account." -> the order does not fit the symbol's rules (filter).
_WOULD_MATCH = ("immediately match",)
_INSUFFICIENT = ("insufficient balance",)
_DUPLICATE = ("duplicate order",)
_WOULD_TRIGGER = ("would trigger immediately",)
_UNFIT = ("market is closed", "not supported for this symbol", "zero or less",
          "unsupported order combination", "not permitted for this", "restricted for this account",
          "self-trade prevention mode")
# errors.md, -2011 CANCEL_REJECTED: "Unknown order sent." means gone; "Order was not canceled due to cancel
# restrictions." does not.
_UNKNOWN = ("unknown order",)


def retry_after(exc: BinanceAPIException, default: float) -> float:
    try:
        return float(exc.response.headers.get("Retry-After", default))
    except (AttributeError, TypeError, ValueError):
        return default


def _has(msg: str, family: tuple[str, ...]) -> bool:
    return any(word in msg for word in family)


def map_api_error(exc: BinanceAPIException, what: str) -> ExchangeError:
    """A BinanceAPIException as a typed error whose message a trader understands (never contains secrets)."""
    code, status, msg = exc.code, exc.status_code, str(exc.message or "")
    low = msg.lower()
    if status == 418:
        ra = retry_after(exc, 120.0)
        return IpBanned(f"Binance banned this IP for about {ra:.0f} s for sending too many requests; "
                        "trading is paused until the ban ends.", retry_after=ra, code=code, http_status=418)
    if status == 429:
        ra = retry_after(exc, 1.0)
        return RateLimited(f"Binance rate limit reached while trying to {what}; retry in {ra:.0f} s.",
                           retry_after=ra, code=code, http_status=429)
    if status >= 500:
        return ExchangeUnavailable(f"Binance is not answering properly (HTTP {status}) while trying to {what}.",
                                   code=code, http_status=status)
    if code == -1013:  # INVALID_MESSAGE: "Filter failure: X", or the STP-mode refusal (faqs/stp_faq.md)
        flt = msg.split(":", 1)[1].strip() if low.startswith("filter failure") else msg
        text = _FILTER_TEXT.get(flt, f"it breaks the {flt} rule")
        return FilterRejected(f"Binance rejected the order ({what}): {text} [{flt}].", code=code, http_status=status)
    if code in (-2010, -1010, -2038):
        if _has(low, _WOULD_MATCH):
            return WouldMatch(f"The maker-only order ({what}) would have traded immediately, so Binance did not place it.",
                              code=code, http_status=status)
        if _has(low, _INSUFFICIENT):
            return InsufficientBalance(f"Not enough free balance on Binance to {what}.", code=code, http_status=status)
        if _has(low, _DUPLICATE):
            return DuplicateOrder(f"Binance already has this order open ({what}).", code=code, http_status=status)
        if _has(low, _WOULD_TRIGGER):
            return WouldTrigger(f"The stop order ({what}) would trigger immediately: the market already crossed its "
                                "stop price.", code=code, http_status=status)
        if _has(low, _UNFIT):
            return FilterRejected(f"Binance rejected the order ({what}): {msg}", code=code, http_status=status)
        if _has(low, _UNKNOWN):
            return UnknownOrder(f"Binance does not know this order ({what}).", code=code, http_status=status)
        return ExchangeError(f"Binance rejected the order ({what}): {msg}", code=code, http_status=status)
    if code == -2011:
        if _has(low, _UNKNOWN) or not low:
            return UnknownOrder(f"Binance does not know this order ({what}): it was already filled, cancelled or never "
                                "placed.", code=code, http_status=status)
        return ExchangeError(f"Binance refused to {what}: {msg}", code=code, http_status=status)
    if code in (-2013, -2026):  # NO_SUCH_ORDER "Order does not exist."; ORDER_ARCHIVED (over 90 days old)
        return UnknownOrder(f"Binance does not know this order ({what}): it was already filled, cancelled or never "
                            "placed.", code=code, http_status=status)
    if code == -1121:
        return BadSymbol(f"Binance does not list that symbol ({what}).", http_status=status)
    if code == -1021:
        return ClockSkew("This machine's clock is too far from Binance's even after a resync; check the system time (NTP).",
                         http_status=status)
    if code in (-2014, -2015, -1022):
        return ExchangeError("Binance rejected the API key or signature: check the key, the secret, the IP whitelist "
                             "and that spot trading is enabled for the key.", code=code, http_status=status)
    return ExchangeError(f"Binance refused to {what}: {msg} (code {code}).", code=code, http_status=status)
