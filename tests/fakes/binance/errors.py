"""Binance's error codes and messages, copied from errors.md (binance-spot-api-docs), nothing else.

errors.md: "Errors consist of two parts: an error code and a message. Codes are universal, but messages can
vary." Every message below is quoted from the document; `VenueError` carries the HTTP status the REST API
answers with (rest-api.md, "HTTP Return Codes": 4XX for malformed requests, 5XX for internal errors).
"""

from __future__ import annotations

from typing import Any

# --- 10xx: General Server or Network issues -------------------------------------------------------------
UNKNOWN = -1000  # "An unknown error occurred while processing the request."
DISCONNECTED = -1001  # "Internal error; unable to process your request. Please try again."
TOO_MANY_REQUESTS = -1003
UNEXPECTED_RESP = -1006  # "An unexpected response was received from the message bus. Execution status unknown."
TIMEOUT = -1007  # "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
INVALID_MESSAGE = -1013  # "The request is rejected by the API. (i.e. The request didn't reach the Matching Engine.)"
TOO_MANY_ORDERS = -1015
INVALID_TIMESTAMP = -1021
INVALID_SIGNATURE = -1022
# --- 11xx: Request issues --------------------------------------------------------------------------------
ILLEGAL_CHARS = -1100
MANDATORY_PARAM_EMPTY_OR_MALFORMED = -1102
PARAM_NOT_REQUIRED = -1106
INVALID_TIF = -1115
INVALID_ORDER_TYPE = -1116
INVALID_SIDE = -1117
BAD_SYMBOL = -1121
INVALID_PARAMETER = -1130
# --- 20xx ------------------------------------------------------------------------------------------------
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
REJECTED_MBX_KEY = -2015
CANCEL_REPLACE_PARTIALLY_FAILED = -2021  # "Order cancel-replace partially failed."
CANCEL_REPLACE_FAILED = -2022  # "Order cancel-replace failed."

MSG_UNKNOWN = "An unknown error occurred while processing the request."
MSG_DISCONNECTED = "Internal error; unable to process your request. Please try again."
MSG_UNEXPECTED_RESP = "An unexpected response was received from the message bus. Execution status unknown."
MSG_TIMEOUT = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
MSG_BAD_SYMBOL = "Invalid symbol."
MSG_INVALID_TIF = "Invalid timeInForce."
MSG_INVALID_ORDER_TYPE = "Invalid orderType."
MSG_INVALID_SIDE = "Invalid side."
MSG_NO_SUCH_ORDER = "Order does not exist."


def mandatory(param: str) -> str:
    """-1102: "Mandatory parameter '%s' was not sent, was empty/null, or malformed." """
    return f"Mandatory parameter '{param}' was not sent, was empty/null, or malformed."


def either(a: str, b: str) -> str:
    """-1102: "Param '%s' or '%s' must be sent, but both were empty/null!" """
    return f"Param '{a}' or '{b}' must be sent, but both were empty/null!"


def not_required(param: str) -> str:
    """-1106: "Parameter '%s' sent when not required." """
    return f"Parameter '{param}' sent when not required."


# errors.md, "Messages for -1010 ERROR_MSG_RECEIVED, -2010 NEW_ORDER_REJECTED, -2011 CANCEL_REJECTED, and -2038
# ORDER_AMEND_REJECTED": "This code is sent when an error has been returned by the matching engine."
MSG_UNKNOWN_ORDER = "Unknown order sent."  # "The order (by either orderId, clOrdId, origClOrdId) could not be found."
MSG_DUPLICATE = "Duplicate order sent."  # "The clOrdId is already in use."
MSG_MARKET_CLOSED = "Market is closed."  # "The symbol is not trading."
MSG_INSUFFICIENT = "Account has insufficient balance for requested action."
MSG_MARKET_NOT_SUPPORTED = "Market orders are not supported for this symbol."
MSG_STOP_LIMIT_NOT_SUPPORTED = "Stop loss limit orders are not supported for this symbol."
MSG_PRICE_QTY_ZERO = "Price * QTY is zero or less."
MSG_UNSUPPORTED_COMBINATION = "Unsupported order combination"
MSG_WOULD_TRIGGER = "Order would trigger immediately."  # "The order's stop price is not valid when compared to the last traded price."
MSG_WOULD_MATCH = "Order would immediately match and take."  # "LIMIT_MAKER order type would immediately match and trade"
MSG_CANCEL_REPLACE_NOT_SUPPORTED = "Order cancel-replace is not supported for this symbol."
# faqs/stp_faq.md, "How do I know which symbol uses STP?": code -1013 with this message.
MSG_STP_MODE_NOT_ALLOWED = "This symbol does not allow the specified self-trade prevention mode."


def filter_failure(name: str) -> str:
    """errors.md, "Filter failures": "Filter failure: PRICE_FILTER", "Filter failure: LOT_SIZE", ..."""
    return f"Filter failure: {name}"


class VenueError(Exception):
    """What the REST API answers instead of a result: HTTP status, code, msg (and cancelReplace's `data`)."""

    def __init__(self, code: int, msg: str, status: int = 400, data: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status, self.data = code, msg, status, data
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "msg": self.msg}
        if self.data is not None:
            out["data"] = self.data
        return out
