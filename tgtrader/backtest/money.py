"""The backtest's money per fill: quantities, commissions in base / quote / BNB, cost basis and realized profit.

Why: the vectorized backtest must book the same numbers as the live core on the paper exchange under each
commission mode (`tgtrader.fees`), so grid profit, realized PnL, fees and round trips agree three ways.

The core's rules, modelled here (tgtrader/core/grid/machine.py, core/accounting.py):
- A buy of b at L costs b x L, plus its fee when the fee is not taken in base (quote: in quote; BNB: its
  quote value). In base mode it receives b x (1 - fee): the fee shrinks the base, it is not added to cost.
- A sell of s at H pays its fee in quote (BNB in bnb mode) and realizes s x H - fee - cost x s / held.
- With symbol rules, an interval sells what it holds rounded down to the step, so in base mode dust stays
  behind, and its next buy is round_down(q - dust). The start base (bought at P0 at market) is shared among
  the holding intervals: round_down(pool / h) each, the last one takes the rest.
Without rules (no rounding) or when no fee is taken from the base, every buy is q and every sell sells what
the buy received: closed form, vectorized. Base fees with rules follow that recurrence fill by fill, in
Decimal like the core (O(fills); the fills are already few next to the candles).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from tgtrader.core.rules import SymbolRules
from tgtrader.fees import FeeAsset


@dataclass(frozen=True, eq=False)
class StartBuy:
    base: float  # base received
    quote: float  # quote spent (notional, plus the fee when paid in quote)
    fee: float  # the fee's quote value
    bnb: float  # the fee's quote value when BNB paid it (else 0)
    cost: float  # the start position's cost basis
    price: float  # P0


@dataclass(frozen=True, eq=False)
class FillMoney:
    """Per fill, in the order given (interval-major): arrays of equal length, plus what is held at the end."""

    qty: np.ndarray
    quote: np.ndarray  # change of the quote balance
    base: np.ndarray  # change of the base balance
    fee: np.ndarray  # the fee's quote value
    bnb: np.ndarray  # the fee's quote value when BNB paid it
    profit: np.ndarray  # realized profit of a sell (0 for buys)
    held: float  # base the intervals hold at the end
    cost: float  # its cost basis


def start_buy(q: float, n_hold: int, p0: float, fee: float, fee_asset: FeeAsset) -> StartBuy:
    qty = q * n_hold
    notional = qty * p0
    fee_value = notional * fee
    if fee_asset == "base":
        return StartBuy(qty * (1.0 - fee), notional, fee_value, 0.0, notional, p0)
    in_quote = fee_asset == "quote"
    return StartBuy(qty, notional + (fee_value if in_quote else 0.0), fee_value, 0.0 if in_quote else fee_value,
                    notional + fee_value, p0)


def fill_money(
    levels: np.ndarray, iv: np.ndarray, sell: np.ndarray, holding0: np.ndarray, q: float, start: StartBuy,
    fee: float, fee_asset: FeeAsset, rules: SymbolRules | None,
) -> FillMoney:
    """Money of every fill; `iv`, `sell` are in interval-major order (by interval, then time)."""
    if fee_asset == "base" and rules is not None and fee > 0 and iv.shape[0]:
        return _base_fees_stepped(levels, iv, sell, holding0, q, start, fee, rules)
    n_hold = int(holding0.sum())
    m = iv.shape[0]
    fb = fee if fee_asset == "base" else 0.0  # share of a buy taken from its base
    got = q * (1.0 - fb)  # base a buy receives; a sell sells it all
    px = np.where(sell, levels[np.minimum(iv + 1, levels.shape[0] - 1)], levels[iv])
    qty = np.where(sell, got, q)
    notional = qty * px
    fee_v = notional * fee
    bnb = fee_v if fee_asset == "bnb" else np.zeros(m)
    buy_cost = q * levels[iv] * (1.0 + (0.0 if fee_asset == "base" else fee))
    first = np.empty(m, bool)
    if m:
        first[0] = True
        first[1:] = iv[1:] != iv[:-1]
    start_sale = sell & first & holding0[iv]
    share_cost = start.cost / n_hold if n_hold else 0.0
    cost_sold = np.where(start_sale, share_cost, buy_cost)
    quote = np.where(sell, notional - (fee_v if fee_asset != "bnb" else 0.0),
                     -notional - (fee_v if fee_asset == "quote" else 0.0))
    base = np.where(sell, -qty, got)
    profit = np.where(sell, notional - fee_v - cost_sold, 0.0)
    # what the intervals hold at the end: the base and cost of every interval whose last fill was a buy, or
    # that still holds its start share
    last = np.empty(m, bool)
    if m:
        last[-1] = True
        last[:-1] = iv[1:] != iv[:-1]
    ends_bought = last & ~sell
    held = float(got * ends_bought.sum())
    cost = float(buy_cost[ends_bought].sum())
    untouched = holding0.copy()
    untouched[iv] = False
    held += got * float(untouched.sum())
    cost += share_cost * float(untouched.sum())
    return FillMoney(qty, quote, base, fee_v, bnb, profit, held, cost)


def _base_fees_stepped(
    levels: np.ndarray, iv: np.ndarray, sell: np.ndarray, holding0: np.ndarray, q: float, start: StartBuy,
    fee: float, rules: SymbolRules,
) -> FillMoney:
    """Base fees with step rounding: each interval's dust carried fill by fill, exactly as the core does."""
    rate, dq = _dec(fee), _dec(q)
    lv = [_dec(x) for x in levels.tolist()]
    n = holding0.shape[0]
    held = [Decimal(0)] * n
    cost = [Decimal(0)] * n
    hold_idx = [i for i in range(n) if holding0[i]]
    if hold_idx:  # the start base shared as `_allocate_start` does
        pool = dq * len(hold_idx) - dq * len(hold_idx) * rate
        pool_cost = dq * len(hold_idx) * _dec(start.price)  # base fee: the notional alone
        share = rules.round_qty(pool / len(hold_idx))
        left = pool
        for k, i in enumerate(hold_idx):
            held[i] = left if k == len(hold_idx) - 1 else share
            left -= held[i]
            cost[i] = pool_cost * held[i] / pool
    m = iv.shape[0]
    out = np.zeros((6, m))
    for j, (i, is_sell) in enumerate(zip(iv.tolist(), sell.tolist(), strict=True)):
        h, c = held[i], cost[i]
        if is_sell:
            price = lv[i + 1]
            s = rules.round_qty(h)
            notional = s * price
            fee_v = notional * rate
            part = min(c * s / h, c) if h > 0 else Decimal(0)
            held[i], cost[i] = h - s, c - part
            out[:, j] = (s, notional - fee_v, -s, fee_v, 0, notional - fee_v - part)
        else:
            price = lv[i]
            b = rules.round_qty(dq - h) if h < dq else Decimal(0)
            base_fee = b * rate
            held[i], cost[i] = h + b - base_fee, c + b * price
            out[:, j] = (b, -b * price, b - base_fee, base_fee * price, 0, 0)
    return FillMoney(out[0], out[1], out[2], out[3], out[4], out[5], float(sum(held)), float(sum(cost)))


def _dec(x: float) -> Decimal:
    """The float's shortest repr: the backtest's floats are reprs of the core's Decimals (levels, q, fee)."""
    return Decimal(repr(float(x)))
