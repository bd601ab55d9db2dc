"""The few error types that cross layers. Messages are written for a trader, never contain secrets."""

from __future__ import annotations


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
    """An exchange refused or failed a request. `code` is Binance's error code when there is one."""

    code: int | None = None

    def __init__(self, message: str, code: int | None = None, http_status: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.http_status = http_status


class FilterRejected(ExchangeError):
    code = -1013


class InsufficientBalance(ExchangeError):
    code = -2010


class WouldMatch(ExchangeError):
    """A LIMIT_MAKER order would have crossed the book (-2010 'Order would immediately match and take.')."""

    code = -2010


class UnknownOrder(ExchangeError):
    code = -2011


class BadSymbol(ExchangeError):
    code = -1121


class ClockSkew(ExchangeError):
    code = -1021


class RateLimited(ExchangeError):
    """HTTP 429; `retry_after` seconds from the Retry-After header."""

    def __init__(self, message: str, retry_after: float, code: int | None = -1003, http_status: int | None = 429):
        super().__init__(message, code, http_status)
        self.retry_after = retry_after


class IpBanned(RateLimited):
    """HTTP 418: the IP is banned for `retry_after` seconds; trading must stop."""


class ExchangeUnavailable(ExchangeError):
    """5xx or a network failure: the request may be retried (orders only after a lookup)."""


class OrderStatusUnknown(ExchangeError):
    """An order request got no answer: it may or may not exist. Look it up by client order id."""
