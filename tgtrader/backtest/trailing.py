"""Trailing grids in the backtest (issue 17): the candle path walked event by event while the ladder moves.

Why a walk: vector.py finds every fill in one numpy pass because its levels never move; which orders a trailing
grid has resting depends on every earlier fill and move. This model keeps vector.py's fill model exactly (its
docstring: the 4-vertex path; a falling segment fills buys, higher first, a rising one sells, lower first; a
counter order fills on a later segment only; a stop exit after the segment's fills, at the vertex price less the
slippage) and books every fill's money in Decimal as the core does (money.py's base-fee recurrence, here in every
fee mode), so a grid that never moves gives vector.py's numbers (tests/backtest/test_trailing.py checks it on
real candles), and one that moves follows the rule the core follows (tgtrader/core/grid/trailing.py):

- Up: at a vertex with price P >= rung s+n+1 (one step over the top), that rung <= trail_up, the lowest interval
  s waiting, and its quote q_s x rung s buying q_new = q_s x rung s / rung s+n (rounded down to the step with
  rules) passes the filters as a limit buy at rung s+n: interval s goes (its buy cancelled, any base it held
  moves along) and a new top interval s+n buys q_new at rung s+n, below P. s += 1.
- Down: P <= rung s-1, that rung >= trail_down, the top interval holding and its base (rounded down) passing the
  filters as a limit sell at rung s: that base and its cost move to a new bottom interval s-1, which sells it at
  rung s (position profit, not a round trip: it was not bought at rung s-1) and later buys the same quantity at
  rung s-1. s -= 1.
- At one vertex: the segment's fills first, then the stop check, then the moves, repeated while one holds.
  Nothing is bought or sold at market by a move; rungs beyond 0..n are `core.grid.plan.ladder_level`'s.

Speed: between events only four prices matter: the highest resting buy, the lowest resting sell, a stop
trigger and the next move's threshold. A numpy scan of the path in growing chunks finds the next vertex that
reaches one, so Python runs per event (fill, move, stop), not per vertex.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from tgtrader.backtest.candles import Candles
from tgtrader.backtest.vector import BUY, DEFAULT_FEE, SELL, Fills, Result, Setup, TrailMove, prepare
from tgtrader.core.api import GridSpec
from tgtrader.core.grid.plan import GridConfig, ladder_level
from tgtrader.core.rules import SymbolRules
from tgtrader.fees import DEFAULT_FEE_ASSET, FeeAsset
from tgtrader.types import OrderType, Side

ZERO = Decimal(0)
INF = float("inf")


@dataclass(slots=True)
class _Interval:
    k: int  # its lower rung: it buys at rung k and sells at rung k + 1
    holding: bool
    q: Decimal  # the base its buy buys (the grid's q; a trailed-up interval's is the same quote value)
    base: Decimal = ZERO
    cost: Decimal = ZERO
    bought: bool = False  # its base came from its own buy: selling it is a round trip


class _Ladder:
    """Rung k's price (Decimal and float): rungs 0..n are the run's levels (vector.py's), the others the
    core's `ladder_level` (the level formula continued beyond the range, rounded to the tick)."""

    def __init__(self, spec: GridSpec, levels: np.ndarray, rules: SymbolRules | None) -> None:
        self.config = GridConfig(spec.symbol, spec.lower, spec.upper, spec.grids, spec.investment, spec.spacing)
        self.rules = rules
        self.dec: dict[int, Decimal] = {k: _dec(x) for k, x in enumerate(levels.tolist())}
        self.flt: dict[int, float] = dict(enumerate(levels.tolist()))

    def d(self, k: int) -> Decimal:
        x = self.dec.get(k)
        if x is None:
            x = self.dec[k] = ladder_level(self.config, k, self.rules)
            self.flt[k] = float(x)
        return x

    def f(self, k: int) -> float:
        x = self.flt.get(k)
        return x if x is not None else float(self.d(k))


class _Walk:
    """The grid's state along the path: intervals, balances, fills and moves (money in Decimal, as the core)."""

    def __init__(self, spec: GridSpec, rules: SymbolRules | None, setup: Setup, fee: float, fee_asset: FeeAsset,
                 n_candles: int) -> None:
        self.rules = rules
        self.rate = _dec(fee)
        self.mode = fee_asset
        self.n = spec.grids
        self.s = 0
        self.trail_up, self.trail_down = spec.trail_up, spec.trail_down
        self.ladder = _Ladder(spec, setup.levels, rules)
        q = _dec(setup.q)
        self.ivs = [_Interval(k, bool(h), q) for k, h in enumerate(setup.holding0.tolist())]
        self.m = self.n - setup.n_hold  # the waiting intervals are ivs[:m] (see refresh)
        self.quote = Decimal(spec.investment)
        self.fees = self.bnb = self.realized = self.grid_profit = ZERO
        self.round_trips = 0
        self.d_quote = np.zeros(n_candles)  # balance changes per candle, for the equity curve
        self.d_base = np.zeros(n_candles)
        self.d_bnb = np.zeros(n_candles)
        self.fills: list[tuple[int, int, int, Decimal, Decimal]] = []  # (vertex, side, rung, price, qty)
        self.moves: list[TrailMove] = []
        self.hb = self.ls = self.lo = self.hi = 0.0
        self._start(q, _dec(setup.p0), setup.n_hold)
        self.quote0, self.base0 = self.quote, sum((iv.base for iv in self.ivs), ZERO)  # after the start buy

    # ---------------------------------------------------------------- money (the core's booking, per fee mode)

    def _round(self, qty: Decimal, market: bool = False) -> Decimal:
        return self.rules.round_qty(qty, market=market) if self.rules is not None else qty

    def _start(self, q: Decimal, p0: Decimal, h: int) -> None:
        """The start buy at P0 (market), shared among the holding intervals as the core's allocate_start does."""
        self.start_fee = self.start_bnb = ZERO
        if not h:
            return
        qty = self._round(q * h, market=True)
        notional = qty * p0
        fee = notional * self.rate
        pool, pool_cost = qty, notional + fee
        if self.mode == "base":
            pool, pool_cost = qty - qty * self.rate, notional
        self.quote -= notional + (fee if self.mode == "quote" else ZERO)
        self.start_fee = fee
        self.start_bnb = fee if self.mode == "bnb" else ZERO
        self.fees += fee
        self.bnb += self.start_bnb
        holding = [iv for iv in self.ivs if iv.holding]
        share = self._round(pool / h)
        left = pool
        for i, iv in enumerate(holding):
            iv.base = left if i == len(holding) - 1 else share
            left -= iv.base
            iv.cost = pool_cost * iv.base / pool

    def _book(self, candle: int, dquote: Decimal, dbase: Decimal, bnb: Decimal) -> None:
        self.quote += dquote
        self.bnb += bnb
        self.d_quote[candle] += float(dquote)
        self.d_base[candle] += float(dbase)
        if bnb:
            self.d_bnb[candle] += float(bnb)

    def _buy(self, u: int, iv: _Interval) -> None:
        price = self.ladder.d(iv.k)
        b = self._round(iv.q - iv.base) if iv.base < iv.q else ZERO
        notional = b * price
        fee = notional * self.rate
        if self.mode == "base":
            got, cost, dquote, bnb = b - b * self.rate, notional, -notional, ZERO
        else:
            got, cost, bnb = b, notional + fee, fee if self.mode == "bnb" else ZERO
            dquote = -notional - (fee if self.mode == "quote" else ZERO)
        self.fees += fee
        iv.base += got
        iv.cost += cost
        iv.holding = iv.bought = True
        self._book(u // 4, dquote, got, bnb)
        self.fills.append((u, BUY, iv.k, price, b))

    def _sell(self, u: int, iv: _Interval) -> None:
        price = self.ladder.d(iv.k + 1)
        s = self._round(iv.base)
        notional = s * price
        fee = notional * self.rate
        part = min(iv.cost * s / iv.base, iv.cost) if iv.base > 0 else ZERO
        profit = notional - fee - part
        self.fees += fee
        self.realized += profit
        if iv.bought:
            self.round_trips += 1
            self.grid_profit += profit
        iv.base -= s
        iv.cost -= part
        iv.holding = iv.bought = False
        bnb = fee if self.mode == "bnb" else ZERO
        self._book(u // 4, notional - (ZERO if bnb else fee), -s, bnb)
        self.fills.append((u, SELL, iv.k + 1, price, s))

    def exit(self, u: int, price: float) -> tuple[Decimal, Decimal]:
        """Stop-loss / take-profit: every interval's base sold at market at `price` (vector.py's exit)."""
        held = sum((iv.base for iv in self.ivs), ZERO)
        cost = sum((iv.cost for iv in self.ivs), ZERO)
        qty = self._round(held, market=True) if held > 0 else ZERO
        proceeds = qty * _dec(price)
        fee = proceeds * self.rate
        self.fees += fee
        self.realized += proceeds - fee - (cost * qty / held if held > 0 else ZERO)
        bnb = fee if self.mode == "bnb" else ZERO
        self._book(u // 4, proceeds - (ZERO if bnb else fee), -qty, bnb)
        left = qty
        for iv in self.ivs:  # what stays is the dust below the market step
            take = min(iv.base, left)
            iv.base -= take
            left -= take
        return qty, _dec(price)

    # ---------------------------------------------------------------- the path

    def _tradable(self, side: Side, qty: Decimal, price: Decimal) -> bool:
        if qty <= 0:
            return False
        return self.rules is None or not self.rules.check_order(side, OrderType.LIMIT, qty, price,
                                                                reference_price=price)

    def _up_qty(self) -> Decimal:
        low, lad = self.ivs[0], self.ladder
        return self._round(low.q * lad.d(low.k) / lad.d(self.s + self.n))

    def _up_at(self, limit: Decimal) -> float:
        """The price from which the grid moves up (inf: it cannot now)."""
        s, n, lad = self.s, self.n, self.ladder
        top = lad.d(s + n + 1)
        if top > limit or top <= lad.d(s + n) or not self._tradable(Side.BUY, self._up_qty(), lad.d(s + n)):
            return INF
        return lad.f(s + n + 1)

    def _down_at(self, limit: Decimal) -> float:
        """The price from which the grid moves down (-inf: it cannot now)."""
        s, lad, top = self.s, self.ladder, self.ivs[-1]
        bottom = lad.d(s - 1)
        if bottom < limit or bottom >= lad.d(s) or not self._tradable(Side.SELL, self._round(top.base),
                                                                                lad.d(s)):
            return -INF
        return lad.f(s - 1)

    def refresh(self, stop_loss: float | None, take_profit: float | None) -> None:
        """The prices the next event is at: lo (a vertex at or below it) and hi (at or above it).

        Every buy rests below the price and every sell above it, so the waiting intervals are the lowest m
        (ivs[:m]) and the holding ones the rest: the highest buy is ivs[m-1]'s, the lowest sell ivs[m]'s. A move
        up needs the lowest interval waiting and the price over the top, where every sell has filled (m = n);
        a move down, the mirror (m = 0): only then are the moves' thresholds (filter checks) computed."""
        f, m, n, ivs = self.ladder.f, self.m, self.n, self.ivs
        self.hb = f(ivs[m - 1].k) if m > 0 else -INF
        self.ls = f(ivs[m].k + 1) if m < n else INF
        up, down = self.trail_up, self.trail_down
        self.up_at = self._up_at(up) if m == n and up is not None else INF
        self.down_at = self._down_at(down) if m == 0 and down is not None else -INF
        self.lo = max(self.hb, -INF if stop_loss is None else stop_loss, self.down_at)
        self.hi = min(self.ls, INF if take_profit is None else take_profit, self.up_at)

    def fill(self, u: int, p: float) -> None:
        """The segment into vertex u: a falling one fills the buys it reached (higher first), a rising one the
        sells (lower first). Every order rests on its side of the previous price, so "reached" is "crossed"."""
        f, ivs = self.ladder.f, self.ivs
        j = self.m
        if p <= self.hb:
            while j > 0 and f(ivs[j - 1].k) >= p:
                j -= 1
                self._buy(u, ivs[j])
        elif p >= self.ls:
            while j < self.n and f(ivs[j].k + 1) <= p:
                self._sell(u, ivs[j])
                j += 1
        self.m = j

    def trail(self, u: int, p: float, stop_loss: float | None, take_profit: float | None) -> None:
        """Move while the rule holds at price p (a jump over several rungs moves several times)."""
        lad = self.ladder
        while True:
            if p >= self.up_at:
                q_new = self._up_qty()
                low = self.ivs.pop(0)
                new = _Interval(self.s + self.n, False, q_new, low.base, low.cost)
                self.ivs.append(new)
                self.s += 1
                self.moves.append(TrailMove(u // 4, "up", lad.f(self.s), lad.f(self.s + self.n)))
            elif p <= self.down_at:
                top = self.ivs.pop()
                self.ivs.insert(0, _Interval(self.s - 1, True, top.q, top.base, top.cost))
                self.s -= 1
                self.moves.append(TrailMove(u // 4, "down", lad.f(self.s), lad.f(self.s + self.n)))
            else:
                return
            self.refresh(stop_loss, take_profit)


def _dec(x: float) -> Decimal:
    """The float's shortest repr: the run's floats are reprs of the core's Decimals (levels, q, fee, prices)."""
    return Decimal(repr(float(x)))


def _next_event(path: np.ndarray, start: int, lo: float, hi: float) -> int:
    """First vertex from `start` at or below lo or at or above hi (len(path) if none): numpy over growing chunks."""
    end = int(path.shape[0])
    if start < end and not lo < path[start] < hi:  # often the very next one (a price around a level)
        return start
    i, step = start + 1, 32
    while i < end:
        j = min(end, i + step)
        hit = (path[i:j] <= lo) | (path[i:j] >= hi)
        first = int(hit.argmax())
        if hit[first]:
            return i + first
        i = j
        step = min(step * 4, 1 << 16)
    return end


def run_trailing(
    candles: Candles,
    spec: GridSpec,
    rules: SymbolRules | None = None,
    *,
    fee: float = DEFAULT_FEE,
    fee_asset: FeeAsset = DEFAULT_FEE_ASSET,
    slippage_bps: float = 0.0,
    path: np.ndarray | None = None,
) -> Result:
    """Backtest a grid that may trail (`spec.trail_up` / `trail_down`); `run_backtest` sends trailing specs here.
    A spec without trailing gives vector.py's result (the model's own parity check)."""
    t0 = time.perf_counter()
    setup = prepare(candles, spec, rules, fee, fee_asset, slippage_bps, path)
    path, n = setup.path, len(candles)
    sl, tp = setup.stop_loss, setup.take_profit
    w = _Walk(spec, rules, setup, fee, fee_asset, n)
    w.refresh(sl, tp)
    w.trail(0, setup.p0, sl, tp)  # the start price (never past a move's threshold with a whole start buy)
    stop: str | None = None
    stop_v: int | None = None
    stop_price: float | None = None
    stop_trigger: float | None = None
    stop_qty = ZERO
    u = 0
    while True:
        u = _next_event(path, u + 1, w.lo, w.hi)
        if u >= path.shape[0]:
            break
        p = float(path[u])
        w.fill(u, p)
        if sl is not None and p <= sl:
            stop, stop_trigger = "stop_loss", sl
        elif tp is not None and p >= tp:
            stop, stop_trigger = "take_profit", tp
        if stop is not None:
            stop_v = u
            stop_price = p * (1.0 - slippage_bps / 10_000.0)  # a market sell, after the slippage
            stop_qty, _ = w.exit(u, stop_price)
            break
        w.refresh(sl, tp)
        w.trail(u, p, sl, tp)
    return _result(candles, spec, setup, w, fee, fee_asset, slippage_bps, t0, stop, stop_v, stop_price,
                   stop_trigger, stop_qty)


def _result(candles: Candles, spec: GridSpec, setup: Setup, w: _Walk, fee: float, fee_asset: FeeAsset,
            slippage_bps: float, t0: float, stop: str | None, stop_v: int | None, stop_price: float | None,
            stop_trigger: float | None, stop_qty: Decimal) -> Result:
    n = len(candles)
    investment = setup.investment
    base = sum((iv.base for iv in w.ivs), ZERO)
    rows = w.fills
    vertex = np.array([r[0] for r in rows], dtype=np.int64)
    side = np.array([r[1] for r in rows], dtype=np.int8)
    level = np.array([r[2] for r in rows], dtype=np.int64)
    fills = Fills(vertex=vertex, candle=vertex // 4, side=side, level=level,
                  interval=np.where(side == SELL, level - 1, level),
                  price=np.array([float(r[3]) for r in rows]), qty=np.array([float(r[4]) for r in rows]))
    quote_t = float(w.quote0) + np.cumsum(w.d_quote)
    base_t = float(w.base0) + np.cumsum(w.d_base)
    equity = quote_t + base_t * candles.close
    if fee_asset == "bnb":
        equity -= float(w.start_bnb) + np.cumsum(w.d_bnb)
    final_price = float(candles.close[-1])
    quote, basef, bnb = float(w.quote), float(base), float(w.bnb)
    final_equity = quote + basef * final_price - bnb
    peak = np.maximum.accumulate(np.concatenate(([investment], equity)))[1:]
    max_dd = float(np.max((peak - equity) / peak)) * 100.0
    sells = int((side == SELL).sum())
    lad = w.ladder
    return Result(
        candles=n,
        start_price=setup.p0,
        final_price=final_price,
        buys=len(rows) - sells,
        sells=sells,
        round_trips=w.round_trips,
        quote=quote,
        base=basef,
        grid_profit=float(w.grid_profit),
        realized=float(w.realized),
        fees=float(w.fees),
        final_equity=final_equity,
        return_pct=(final_equity / investment - 1.0) * 100.0,
        hold_return_pct=(final_price / setup.p0 - 1.0) * 100.0,
        max_drawdown_pct=max(max_dd, 0.0),
        elapsed_s=time.perf_counter() - t0,
        spec=spec,
        fee=fee,
        levels=np.array([lad.f(k) for k in range(w.s, w.s + w.n + 1)]),
        qty=setup.q,
        holding_start=setup.n_hold,
        start_time_ms=int(candles.open_time[0]),
        end_time_ms=int(candles.open_time[-1]),
        fills=fills,
        equity=equity,
        stop=stop,
        stop_candle=None if stop_v is None else stop_v // 4,
        stop_price=stop_price,
        stop_qty=float(stop_qty),
        stop_trigger=stop_trigger,
        fee_asset=fee_asset,
        slippage_bps=slippage_bps,
        bnb_fees=bnb,
        trail_moves=tuple(w.moves),
    )
