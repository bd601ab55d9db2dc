"""Order and trade records of the fake venue, and their JSON shapes (rest-api.md, user-data-stream.md).

Enum values are quoted from enums.md. Nothing here imports tgtrader: the venue must not agree with the adapter
by construction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

ZERO = Decimal(0)


def f8(d: Decimal) -> str:
    """Binance prints amounts with 8 decimals ("price": "0.10000000")."""
    return f"{d.quantize(Decimal('0.00000001'), rounding=ROUND_DOWN):.8f}"


class Side(str, enum.Enum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(str, enum.Enum):
    """enums.md, "Order types": LIMIT, MARKET, STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT, LIMIT_MAKER."""

    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"
    TAKE_PROFIT = "TAKE_PROFIT"
    TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"
    LIMIT_MAKER = "LIMIT_MAKER"

    @property
    def is_algo(self) -> bool:
        """filters.md, MAX_NUM_ALGO_ORDERS: '"Algo" orders are STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT, and
        TAKE_PROFIT_LIMIT orders.'"""
        return self in (OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT,
                        OrderType.TAKE_PROFIT_LIMIT)


class Status(str, enum.Enum):
    """enums.md, "Order status"."""

    NEW = "NEW"
    PENDING_NEW = "PENDING_NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    PENDING_CANCEL = "PENDING_CANCEL"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    # "The order was expired by the exchange due to STP. (e.g. an order with EXPIRE_TAKER will match with
    # existing orders on the book with the same account or same tradeGroupId)"
    EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"

    @property
    def is_open(self) -> bool:
        return self in (Status.NEW, Status.PENDING_NEW, Status.PARTIALLY_FILLED, Status.PENDING_CANCEL)


class StpMode(str, enum.Enum):
    """enums.md, "STP Modes"; faqs/stp_faq.md, "What happens when STP is triggered?"."""

    NONE = "NONE"
    EXPIRE_TAKER = "EXPIRE_TAKER"
    EXPIRE_MAKER = "EXPIRE_MAKER"
    EXPIRE_BOTH = "EXPIRE_BOTH"
    DECREMENT = "DECREMENT"
    TRANSFER = "TRANSFER"


@dataclass
class Trade:
    """One execution of one of the account's orders (GET /api/v3/myTrades row)."""

    symbol: str
    id: int
    order_id: int
    client_order_id: str
    side: Side
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_maker: bool

    # the attribute names tgtrader's Fill uses, so tests can read both kinds of record alike
    @property
    def trade_id(self) -> int:
        return self.id

    @property
    def exchange_order_id(self) -> int:
        return self.order_id

    @property
    def fee(self) -> Decimal:
        return self.commission

    @property
    def fee_asset(self) -> str:
        return self.commission_asset

    def rest(self) -> dict[str, Any]:
        """rest-api.md, "Account trade list (USER_DATA)" response row."""
        return {
            "symbol": self.symbol, "id": self.id, "orderId": self.order_id, "orderListId": -1,
            "price": f8(self.price), "qty": f8(self.qty), "quoteQty": f8(self.price * self.qty),
            "commission": f8(self.commission), "commissionAsset": self.commission_asset, "time": self.time,
            "isBuyer": self.side is Side.BUY, "isMaker": self.is_maker, "isBestMatch": True,
        }


@dataclass
class PreventedMatch:
    """faqs/stp_faq.md, "What is a Prevented Match?"."""

    id: int
    taker_order_id: int
    maker_order_id: int
    mode: StpMode
    price: Decimal
    taker_prevented: Decimal | None
    maker_prevented: Decimal | None
    time: int


@dataclass
class Order:
    """The venue's record of one order. `locked` is what it still holds of `locked_asset`."""

    account: str
    symbol: str
    client_order_id: str
    order_id: int
    side: Side
    type: OrderType
    orig_qty: Decimal
    price: Decimal  # 0 for MARKET, as Binance reports it
    stop_price: Decimal
    time_in_force: str
    stp_mode: StpMode
    created_ms: int
    seq: int
    status: Status = Status.NEW
    updated_ms: int = 0
    working: bool = True  # False while a stop waits for its trigger ("isWorking")
    working_ms: int = -1
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    prevented_qty: Decimal = ZERO  # "the cumulative quantity expired due to STP over the lifetime of the order"
    prevented_match_id: int | None = None
    locked_asset: str = ""
    locked: Decimal = ZERO
    visible_from: float = 0.0  # monotonic time from which queries (Memory => Database) see it
    prevented: list[PreventedMatch] = field(default_factory=list)

    @property
    def order_type(self) -> OrderType:
        return self.type

    @property
    def remaining(self) -> Decimal:
        """stp_faq.md: "original order quantity - executed quantity - prevented quantity = quantity available
        for further execution"."""
        return self.orig_qty - self.executed_qty - self.prevented_qty

    def rest(self) -> dict[str, Any]:
        """rest-api.md, "Query order (USER_DATA)" response (also openOrders rows)."""
        out: dict[str, Any] = {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_order_id, "price": f8(self.price), "origQty": f8(self.orig_qty),
            "executedQty": f8(self.executed_qty), "cummulativeQuoteQty": f8(self.cum_quote),
            "status": self.status.value, "timeInForce": self.time_in_force, "type": self.type.value,
            "side": self.side.value, "stopPrice": f8(self.stop_price), "icebergQty": "0.00000000",
            "time": self.created_ms, "updateTime": self.updated_ms, "isWorking": self.working,
            "workingTime": self.working_ms, "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": self.stp_mode.value,
        }
        self._stp_fields(out)
        return out

    def _stp_fields(self, out: dict[str, Any]) -> None:
        # stp_faq.md: "API responses for orders which expired due to STP will also have a preventedQuantity field"
        if self.prevented_match_id is not None:
            out["preventedMatchId"] = self.prevented_match_id
            out["preventedQuantity"] = f8(self.prevented_qty)

    def ack(self, fills: list[Trade], transact_ms: int) -> dict[str, Any]:
        """rest-api.md, "New order (TRADE)", Response FULL."""
        out: dict[str, Any] = {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_order_id, "transactTime": transact_ms, "price": f8(self.price),
            "origQty": f8(self.orig_qty), "executedQty": f8(self.executed_qty), "origQuoteOrderQty": "0.00000000",
            "cummulativeQuoteQty": f8(self.cum_quote), "status": self.status.value,
            "timeInForce": self.time_in_force, "type": self.type.value, "side": self.side.value,
            "workingTime": self.working_ms,
            "fills": [{"price": f8(t.price), "qty": f8(t.qty), "commission": f8(t.commission),
                       "commissionAsset": t.commission_asset, "tradeId": t.id} for t in fills],
            "selfTradePreventionMode": self.stp_mode.value,
        }
        if self.prevented:  # stp_faq.md, Scenario B: the taker's answer lists "preventedMatches"
            out["preventedMatches"] = [_prevented_row(p, self.order_id) for p in self.prevented]
        self._stp_fields(out)
        return out

    def cancel_answer(self, cancel_cid: str, transact_ms: int) -> dict[str, Any]:
        """rest-api.md, "Cancel order (TRADE)" response."""
        return {
            "symbol": self.symbol, "origClientOrderId": self.client_order_id, "orderId": self.order_id,
            "orderListId": -1, "clientOrderId": cancel_cid, "transactTime": transact_ms, "price": f8(self.price),
            "origQty": f8(self.orig_qty), "executedQty": f8(self.executed_qty), "origQuoteOrderQty": "0.00000000",
            "cummulativeQuoteQty": f8(self.cum_quote), "status": self.status.value,
            "timeInForce": self.time_in_force, "type": self.type.value, "side": self.side.value,
            "selfTradePreventionMode": self.stp_mode.value,
        }


def _prevented_row(p: PreventedMatch, own_id: int) -> dict[str, Any]:
    row: dict[str, Any] = {"preventedMatchId": p.id, "makerOrderId": p.maker_order_id, "price": f8(p.price)}
    if p.maker_prevented is not None:
        row["makerPreventedQuantity"] = f8(p.maker_prevented)
    if p.taker_prevented is not None:
        row["takerPreventedQuantity"] = f8(p.taker_prevented)
    return row


def execution_report(o: Order, exec_type: str, now_ms: int, exec_id: int, trade: Trade | None = None,
                     cancel_cid: str = "", last_prevented: Decimal | None = None) -> dict[str, Any]:
    """user-data-stream.md, "Order Update" (`executionReport`), field by field.

    "C": "Original client order ID; This is the ID of the order being canceled" (and `c` is then the cancel
    request's id); "v": "Prevented Match Id; This is only visible if the order expired due to STP";
    stp_faq.md: "A" prevented quantity, "B" last prevented quantity ("present for execution type
    TRADE_PREVENTION").
    """
    cancel = exec_type == "CANCELED"
    ev: dict[str, Any] = {
        "e": "executionReport", "E": now_ms, "s": o.symbol, "c": cancel_cid if cancel else o.client_order_id,
        "S": o.side.value, "o": o.type.value, "f": o.time_in_force, "q": f8(o.orig_qty), "p": f8(o.price),
        "P": f8(o.stop_price), "F": "0.00000000", "g": -1, "C": o.client_order_id if cancel else "",
        "x": exec_type, "X": o.status.value, "r": "NONE", "i": o.order_id,
        "l": f8(trade.qty) if trade else "0.00000000", "z": f8(o.executed_qty),
        "L": f8(trade.price) if trade else "0.00000000",
        "n": f8(trade.commission) if trade else "0", "N": trade.commission_asset if trade else None,
        "T": trade.time if trade else now_ms, "t": trade.id if trade else -1, "I": exec_id,
        "w": o.working and o.status.is_open, "m": trade.is_maker if trade else False, "M": bool(trade),
        "O": o.created_ms, "Z": f8(o.cum_quote), "Y": f8(trade.price * trade.qty) if trade else "0.00000000",
        "Q": "0.00000000", "V": o.stp_mode.value,
    }
    if o.working_ms >= 0:
        ev["W"] = o.working_ms  # "This is only visible if the order has been placed on the book."
    if o.prevented_match_id is not None:
        ev["v"] = o.prevented_match_id
        ev["A"] = f8(o.prevented_qty)
    if last_prevented is not None:
        ev["B"] = f8(last_prevented)
    return ev
