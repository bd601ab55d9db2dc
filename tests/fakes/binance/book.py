"""One symbol's market as the fake venue sees it: the account's resting orders, waiting stops, the outside
liquidity a taker can hit, the last price and the trades behind the average price.

The outside market is a test device, not a Binance rule: by default a taker finds unlimited quantity at the
touch (the last price, `spread_ticks` away); `set_liquidity` gives it a thin book instead, so MARKET / IOC orders
fill partly and expire the rest (faqs/market_orders_faq.md: "If the exchange does not have enough liquidity to
fill the order, your MARKET order will be partially filled to the extent of available liquidity, and the
remaining quantity will expire.").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from tests.fakes.binance.filters import SymbolSpec
from tests.fakes.binance.orders import Order, Side

ZERO = Decimal(0)


@dataclass
class Level:
    """Outside liquidity at one price; qty None means unlimited."""

    price: Decimal
    qty: Decimal | None


@dataclass
class Market:
    spec: SymbolSpec
    bids: list[Order] = field(default_factory=list)  # resting buys, best (highest, oldest) first
    asks: list[Order] = field(default_factory=list)  # resting sells, best (lowest, oldest) first
    stops: list[Order] = field(default_factory=list)  # stop orders waiting for their trigger
    last: Decimal | None = None
    spread_ticks: int = 0
    outside_bids: list[Level] | None = None  # None: unlimited at the touch
    outside_asks: list[Level] | None = None
    tape: list[tuple[int, Decimal, Decimal]] = field(default_factory=list)  # (ms, price, qty) market trades
    avg_override: Decimal | None = None
    next_trade_id: int = 1

    # ------------------------------------------------------------ resting orders

    def rest(self, o: Order) -> None:
        if o.side is Side.BUY:
            self.bids.append(o)
            self.bids.sort(key=lambda x: (-x.price, x.seq))
        else:
            self.asks.append(o)
            self.asks.sort(key=lambda x: (x.price, x.seq))

    def unrest(self, o: Order) -> None:
        for lst in (self.bids, self.asks, self.stops):
            if o in lst:
                lst.remove(o)

    # ------------------------------------------------------------ outside market

    def touch(self, side: Side) -> Decimal | None:
        """The outside price a taker on `side` meets first: the ask for a buy, the bid for a sell."""
        if self.last is None:
            return None
        offset = self.spec.tick * self.spread_ticks
        return self.last + offset if side is Side.BUY else self.last - offset

    def outside(self, taker: Side, at: Decimal | None = None) -> list[Level]:
        """The outside levels a taker on `taker` can hit, best first. `at` overrides the touch (a stop triggered
        on the way to the last price meets the market where it triggered)."""
        explicit = self.outside_asks if taker is Side.BUY else self.outside_bids
        if explicit is not None:
            return [lv for lv in explicit if lv.qty is None or lv.qty > 0]
        px = at if at is not None else self.touch(taker)
        return [] if px is None else [Level(px, None)]

    def record_trade(self, ms: int, price: Decimal, qty: Decimal) -> None:
        self.last = price
        self.tape.append((ms, price, qty))
        if len(self.tape) > 10_000:
            del self.tape[:5_000]

    def avg_price(self, now_ms: int) -> Decimal | None:
        """filters.md (PERCENT_PRICE_BY_SIDE, NOTIONAL): "the volume weighted average price over the preceding
        avgPriceMins minutes is used ... If avgPriceMins is 0, then the last price is used". With no trade in the
        window the last price stands in (GET /api/v3/avgPrice always answers a price)."""
        if self.avg_override is not None:
            return self.avg_override
        mins = self.spec.avg_price_mins()
        if mins <= 0:
            return self.last
        since = now_ms - mins * 60_000
        window = [(p, q) for ms, p, q in self.tape if ms >= since]
        vol = sum((q for _, q in window), ZERO)
        if not window or vol <= 0:
            return self.last
        return sum((p * q for p, q in window), ZERO) / vol
