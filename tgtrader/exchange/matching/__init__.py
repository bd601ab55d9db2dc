"""A pure, synchronous, in-process spot matching engine (paper exchange and the fake Binance share it).

Why: paper trading, candle replay and the loopback fake Binance must fill orders exactly the same
way, with Binance's validation and error codes, and fast enough for a million ticks.

Model (documented choices):
- Accounts hold per-asset free/locked balances. Symbols come from `SymbolRules`.
- Commission as Binance charges it (`fees.FeeModel`, `tgtrader.fees`): by default a BUY pays rate x qty in
  BASE (it receives less) and a SELL pays rate x price x qty in QUOTE out of its proceeds; optionally every
  fee in quote, or in BNB while the account holds enough (else as by default). Amounts are exact (BNB: 8
  decimals). A BUY locks price x qty quote at placement, plus max(maker, taker) of it when its fee is paid
  in quote, so the fee can always be paid from the order's own lock; the unused part goes back on fill.
  A SELL locks the base qty.
- Market movement comes from `on_trade` (last trade price) and `on_book` (best bid/ask). A trade tick
  from p_prev to p is a continuous move: every resting order the move touched fills in full AT ITS LIMIT
  PRICE as maker (buy at L when price <= L, sell at L when price >= L), in the order the path meets them
  (falling: highest buy first; rising: lowest sell first; FIFO within a price). A tick may carry the trade's
  quantity: then only that much fills, in the same order, and an order it partly covers becomes
  PARTIALLY_FILLED and keeps its place. No depth model beyond that (a taker order fills in full).
- STOP_LOSS_LIMIT triggers on the last trade price (sell: last <= stop, buy: last >= stop) or, with a book
  feed, on the touch side (sell: bid <= stop, buy: ask >= stop). It then becomes a LIMIT at the point of
  the path where it triggered: if that limit crosses the price there, it fills at that price as taker.
  Placing a stop that would trigger at once is rejected (-2010 "Stop price would trigger immediately.").
- A LIMIT that crosses on placement fills at once as taker at the current price, which is never worse than
  its limit (buy: min(limit, ask or last), sell: max(limit, bid or last)), as Binance does.
  LIMIT_MAKER that would cross is rejected (-2010 "Order would immediately match and take.").
- MARKET fills at once as taker: buys at the ask (else last), sells at the bid (else last).
- Every mutation appends `EngineEvent(account, event)` values (OrderUpdate, Fill, BalanceUpdate) to an
  internal buffer; `drain()` hands them out in order. For a fill the order is: Fill, OrderUpdate(FILLED),
  BalanceUpdate. No clock is read: every timestamp is passed in (default: the last tick's ts).
- `cancel_all` on a symbol with nothing open returns [] (real Binance answers -2011; the fake maps it).

Layout: `orders` (the order record, events, error messages), `book` (resting orders by price level),
`filters` (Binance's placement checks), `engine` (MatchingEngine), `codec` (snapshots and fill rows).
"""

from tgtrader.exchange.matching.codec import fill_from_row, fill_to_row
from tgtrader.exchange.matching.engine import MatchingEngine
from tgtrader.exchange.matching.orders import (
    DEFAULT_FEE,
    MSG_BAD_SYMBOL,
    MSG_DUPLICATE,
    MSG_INSUFFICIENT,
    MSG_NO_PRICE,
    MSG_STOP_IMMEDIATE,
    MSG_UNKNOWN_ORDER,
    MSG_WOULD_MATCH,
    ZERO,
    EngineEvent,
    EngineOrder,
)

__all__ = [
    "DEFAULT_FEE",
    "MSG_BAD_SYMBOL",
    "MSG_DUPLICATE",
    "MSG_INSUFFICIENT",
    "MSG_NO_PRICE",
    "MSG_STOP_IMMEDIATE",
    "MSG_UNKNOWN_ORDER",
    "MSG_WOULD_MATCH",
    "ZERO",
    "EngineEvent",
    "EngineOrder",
    "MatchingEngine",
    "fill_from_row",
    "fill_to_row",
]
