"""The few error types that cross layers. Messages are written for a trader, never contain secrets."""

from __future__ import annotations

from tgtrader.types import RejectReason


class TgTraderError(Exception):
    """Base for every error tgtrader raises on purpose."""


class ConfigError(TgTraderError):
    """Settings are missing or wrong; `problems` holds one plain line per field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class StoreError(TgTraderError):
    """The database cannot be used (corrupt, from a newer version, unwritable)."""


class ExchangeError(TgTraderError):
    """An exchange refused or failed a request.

    `reason` is what the core acts on; `code` is the venue's own error code, for people and logs only.
    """

    code: int | None = None
    reason: RejectReason = RejectReason.OTHER

    def __init__(self, message: str, code: int | None = None, http_status: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.http_status = http_status


class FilterRejected(ExchangeError):
    code = -1013
    reason = RejectReason.FILTER


class InsufficientBalance(ExchangeError):
    code = -2010
    reason = RejectReason.INSUFFICIENT_BALANCE


class WouldMatch(ExchangeError):
    """A LIMIT_MAKER order would have crossed the book (-2010 'Order would immediately match and take.')."""

    code = -2010
    reason = RejectReason.WOULD_MATCH


class WouldTrigger(ExchangeError):
    """A stop order whose stop price the market already crossed (-2010 'Order would trigger immediately.')."""

    code = -2010
    reason = RejectReason.WOULD_TRIGGER


class UnknownOrder(ExchangeError):
    code = -2011
    reason = RejectReason.UNKNOWN_ORDER


class BadSymbol(ExchangeError):
    code = -1121
    reason = RejectReason.FILTER


class ClockSkew(ExchangeError):
    code = -1021


class RateLimited(ExchangeError):
    """HTTP 429; `retry_after` seconds from the Retry-After header."""

    reason = RejectReason.RATE_LIMITED

    def __init__(self, message: str, retry_after: float, code: int | None = -1003, http_status: int | None = 429):
        super().__init__(message, code, http_status)
        self.retry_after = retry_after


class IpBanned(RateLimited):
    """HTTP 418: the IP is banned for `retry_after` seconds; trading must stop."""

    reason = RejectReason.BANNED


class ExchangeUnavailable(ExchangeError):
    """5xx or a network failure: the request may be retried (orders only after a lookup)."""

    reason = RejectReason.UNAVAILABLE


class OrderStatusUnknown(ExchangeError):
    """An order request got no answer: it may or may not exist. Look it up by client order id.

    `settle_after_s`: after this many seconds the venue can no longer execute the request (for Binance: its
    timestamp + recvWindow + the API's 10 s backend timeout), so an order still absent then never existed
    and may be sent again. Before that, absent from a lookup proves nothing.
    """

    reason = RejectReason.UNAVAILABLE

    def __init__(self, message: str, settle_after_s: float = 0.0, code: int | None = None,
                 http_status: int | None = None):
        super().__init__(message, code, http_status)
        self.settle_after_s = settle_after_s
