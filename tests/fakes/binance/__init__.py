"""A Binance spot venue written from Binance's own documents (binance-spot-api-docs), for the loopback fake.

It imports nothing from tgtrader, so the adapter and the venue cannot agree by construction: each rule quotes
the document it comes from next to the code. Modules: `errors` (errors.md codes and texts), `filters`
(filters.md), `orders` (records and JSON shapes of rest-api.md / user-data-stream.md), `book` (one symbol's
market), `venue` (placement, matching, self-trade prevention, commission, events).
"""

from tests.fakes.binance.errors import VenueError
from tests.fakes.binance.orders import Order, OrderType, Side, Status, StpMode, Trade
from tests.fakes.binance.venue import Balance, Venue

__all__ = ["Balance", "Order", "OrderType", "Side", "Status", "StpMode", "Trade", "Venue", "VenueError"]
