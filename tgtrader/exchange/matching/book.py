"""Our own resting orders of one symbol: sorted price levels with FIFO queues, and the market's last prices."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from decimal import Decimal

from tgtrader.core.rules import SymbolRules
from tgtrader.exchange.matching.orders import EngineOrder


class _Side:
    """Resting orders of one kind on one side: sorted distinct price levels + FIFO lists per level."""

    __slots__ = ("prices", "levels")

    def __init__(self) -> None:
        self.prices: list[Decimal] = []
        self.levels: dict[Decimal, list[EngineOrder]] = {}

    def add(self, key: Decimal, order: EngineOrder) -> None:
        level = self.levels.get(key)
        if level is None:
            self.levels[key] = [order]
            insort(self.prices, key)
        else:
            level.append(order)

    def remove(self, key: Decimal, order: EngineOrder) -> None:
        level = self.levels.get(key)
        if not level:
            return
        try:
            level.remove(order)
        except ValueError:
            return
        if not level:
            del self.levels[key]
            i = bisect_left(self.prices, key)
            if i < len(self.prices) and self.prices[i] == key:
                del self.prices[i]

    def pop_at_or_above(self, price: Decimal) -> list[tuple[Decimal, EngineOrder]]:
        """Remove every order keyed >= price, highest key first (FIFO within a level)."""
        i = bisect_left(self.prices, price)
        keys = self.prices[i:]
        del self.prices[i:]
        out: list[tuple[Decimal, EngineOrder]] = []
        for key in reversed(keys):
            out.extend((key, o) for o in self.levels.pop(key))
        return out

    def pop_at_or_below(self, price: Decimal) -> list[tuple[Decimal, EngineOrder]]:
        """Remove every order keyed <= price, lowest key first (FIFO within a level)."""
        i = bisect_right(self.prices, price)
        keys = self.prices[:i]
        del self.prices[:i]
        out: list[tuple[Decimal, EngineOrder]] = []
        for key in keys:
            out.extend((key, o) for o in self.levels.pop(key))
        return out


class _Book:
    __slots__ = ("rules", "bids", "asks", "stop_sells", "stop_buys", "last", "bid", "ask", "next_trade_id", "ts_ms")

    def __init__(self, rules: SymbolRules) -> None:
        self.rules = rules
        self.bids = _Side()  # resting buy limits, keyed by limit price
        self.asks = _Side()  # resting sell limits
        self.stop_sells = _Side()  # waiting sell stops, keyed by stop price (trigger when price <= stop)
        self.stop_buys = _Side()  # waiting buy stops (trigger when price >= stop)
        self.last: Decimal | None = None
        self.bid: Decimal | None = None
        self.ask: Decimal | None = None
        self.next_trade_id = 1
        self.ts_ms = 0

    def clear_orders(self) -> None:
        """Drop every resting order and waiting stop (prices and trade ids stay)."""
        self.bids, self.asks, self.stop_sells, self.stop_buys = _Side(), _Side(), _Side(), _Side()

    def ref_buy(self) -> Decimal | None:
        """The price a buy would take at now: ask, else last trade."""
        return self.ask if self.ask is not None else self.last

    def ref_sell(self) -> Decimal | None:
        return self.bid if self.bid is not None else self.last

    def reference(self) -> Decimal | None:
        """A stand-in for Binance's average price (percent-price bands, market notional)."""
        if self.last is not None:
            return self.last
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2
        return self.bid if self.bid is not None else self.ask

