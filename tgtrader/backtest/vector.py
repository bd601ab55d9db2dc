"""Vectorized grid backtest: the documented fill model, computed with numpy and no loop over candles.

Fill model (shared with the grid engine and the paper-exchange candle replay; see PLAN.md / issue 6):
- N intervals, N+1 levels from `lower` to `upper` (arithmetic or geometric; the last level is exactly `upper`).
- P0 = first candle's open. Interval i = [L_i, L_i+1] starts HOLDING if L_i >= P0 (owns q base, sell at
  L_i+1), else WAITING (buy at L_i). q = investment / (sum L_i over waiting + P0 * n_holding). The holding
  base is bought at P0 at the start and pays the fee.
- Each candle is a path open -> low -> high -> close (close >= open) or open -> high -> low -> close;
  candles join close -> next open. A resting buy fills when the path reaches its level on a falling segment,
  a resting sell when it reaches its level on a rising segment; fills are at the level price, in path order
  (falling: higher levels first; rising: lower levels first). A counter order can fill on a later segment.
- Every fill pays fee x its received amount, in the asset `fee_asset` says (tgtrader/fees.py; Binance's
  default "base": a buy's fee in base, a sell's in quote; or all in quote; or all in BNB), booked as the core
  books it (money.py). Stop-loss / take-profit: the first path vertex at or beyond the trigger ends the run;
  every grid fill of the segment into it happens first (the market crossed those levels on its way), then all
  base is sold at market at that vertex's price less `slippage_bps` (taker fee applies) — never at the
  trigger itself when the path jumped past it, as no live exit does.
- final_equity = quote + base x final close; drawdown on equity marked at every candle close.

How it is vectorized: the path has 4 vertices per candle. Every order is placed on the correct side of the
current price, so "the path reaches L" is exactly "the path crosses L": a falling crossing of L at vertex u
is p[u] <= L < p[u-1], a rising crossing is p[u-1] < L <= p[u]. `np.searchsorted` of every vertex in the
level array gives, for every segment, the range of levels it crosses; the events are expanded with
`np.repeat`. Per interval the fills are then the alternation buy, sell, buy, ... of its crossing events,
which is the start of every run of equal event types in the interval's time-ordered event list (after
dropping a leading run of the wrong type): one more vectorized pass. Cost: O(candles x log levels + events).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np

from tgtrader.backtest.candles import Candles
from tgtrader.backtest.money import fill_money, start_buy
from tgtrader.core.api import GridSpec
from tgtrader.core.grid.plan import level_prices, setting_problems
from tgtrader.core.rules import SymbolRules
from tgtrader.errors import TgTraderError
from tgtrader.fees import DEFAULT_FEE_ASSET, FEE_ASSETS, FeeAsset

BUY: int = 1
SELL: int = -1
DEFAULT_FEE = 0.001  # per fill, as a rate of the notional

JSON_KEYS = (
    "candles",
    "start_price",
    "final_price",
    "buys",
    "sells",
    "round_trips",
    "quote",
    "base",
    "grid_profit",
    "realized",
    "fees",
    "final_equity",
    "return_pct",
    "hold_return_pct",
    "max_drawdown_pct",
    "elapsed_s",
)


class BacktestInputError(TgTraderError, ValueError):
    """Grid settings that cannot be backtested; the message is one line for the trader."""


def validate(spec: GridSpec, fee: float, fee_asset: str = DEFAULT_FEE_ASSET, slippage_bps: float = 0.0) -> None:
    """Refuse settings the backtest cannot run, in one line: the core's own checks of a grid's settings
    (`setting_problems`, the ones the live preview makes) plus the backtest's (fee, stop triggers, slippage)."""
    problems = setting_problems(spec.lower, spec.upper, spec.grids, spec.investment, spec.spacing,
                                stop_loss=spec.stop_loss, take_profit=spec.take_profit, trail_up=spec.trail_up,
                                trail_down=spec.trail_down)
    if not (0 <= fee < 0.1):
        problems.append(f"fee must be a rate in [0, 0.1) such as 0.001, got {fee:g}")
    if fee_asset not in FEE_ASSETS:
        problems.append(f"fee asset must be one of {', '.join(FEE_ASSETS)}, got {fee_asset!r}")
    if not (0 <= slippage_bps < 1000):
        problems.append(f"slippage must be in [0, 1000) basis points, got {slippage_bps:g}")
    sl, tp = _float_or_none(spec.stop_loss), _float_or_none(spec.take_profit)
    if sl is not None and not (sl > 0):
        problems.append(f"stop-loss must be positive, got {sl:g}")
    if sl is not None and tp is not None and not (sl < tp):
        problems.append(f"stop-loss ({sl:g}) must be below take-profit ({tp:g})")
    if (sl is not None or tp is not None) and not spec.sell_on_stop:
        problems.append("the backtest sells all base at a stop-loss or take-profit: the spec needs sell_on_stop")
    if problems:
        raise BacktestInputError("; ".join(problems))


def _float_or_none(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, eq=False)
class Fills:
    """Grid limit fills in execution order (one row per fill; arrays of equal length).

    `vertex` is the path vertex the fill's segment ends at (candle = vertex // 4; vertex % 4 == 0 means
    the join segment from the previous close to this candle's open). `level` is the index of the level
    price filled (buy at L_i: level i; sell at L_i+1: level i+1); `interval` is i for both.
    """

    vertex: np.ndarray
    candle: np.ndarray
    side: np.ndarray  # int8: +1 buy, -1 sell
    level: np.ndarray
    interval: np.ndarray
    price: np.ndarray
    qty: np.ndarray

    def __len__(self) -> int:
        return int(self.side.shape[0])

    def records(self) -> list[tuple[int, str, int, float, float]]:
        """(candle, "BUY"/"SELL", level index, price, qty) per fill, in order: the form parity checks compare."""
        sides = np.where(self.side > 0, "BUY", "SELL").tolist()
        return list(
            zip(self.candle.tolist(), sides, self.level.tolist(), self.price.tolist(), self.qty.tolist())
        )


class TrailMove(NamedTuple):
    """One move of a trailing grid (issue 17): in candle `candle` the grid moved one rung `direction` ("up" or
    "down"); its levels are now `lower` .. `upper`."""

    candle: int
    direction: str
    lower: float
    upper: float


@dataclass(frozen=True, eq=False)
class Result:
    candles: int
    start_price: float
    final_price: float
    buys: int
    sells: int
    round_trips: int
    quote: float
    base: float
    grid_profit: float  # completed grid buy-then-sell round trips, after both fees
    realized: float  # every sale against its cost (round trips, start base, the stop exit), fees included once
    fees: float  # every fee's quote value, whichever asset paid it
    final_equity: float  # quote + base at the last close - BNB spent on fees
    return_pct: float
    hold_return_pct: float
    max_drawdown_pct: float
    elapsed_s: float
    # --- details
    spec: GridSpec  # as given (Decimal); the run used its values as floats
    fee: float
    levels: np.ndarray
    qty: float
    holding_start: int  # intervals holding at the start (their base was bought at P0)
    start_time_ms: int
    end_time_ms: int
    fills: Fills
    equity: np.ndarray  # equity at each candle close
    stop: str | None = None  # "stop_loss" | "take_profit" when a trigger ended the run
    stop_candle: int | None = None
    stop_price: float | None = None  # the exit's fill price (the path price beyond the trigger, less slippage)
    stop_qty: float = 0.0
    stop_trigger: float | None = None
    fee_asset: FeeAsset = DEFAULT_FEE_ASSET
    slippage_bps: float = 0.0
    bnb_fees: float = 0.0  # quote value of the fees BNB paid (part of `fees`)
    trail_moves: tuple[TrailMove, ...] = ()  # a trailing grid's moves, in order (trailing.py)
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Everything `--json` prints: the JSON_KEYS first, then the settings and stop details."""
        out: dict[str, Any] = {k: getattr(self, k) for k in JSON_KEYS}
        out.update(
            period_start_ms=self.start_time_ms,
            period_end_ms=self.end_time_ms,
            lower=float(self.spec.lower),
            upper=float(self.spec.upper),
            grids=self.spec.grids,
            spacing=self.spec.spacing,
            investment=float(self.spec.investment),
            fee=self.fee,
            qty=self.qty,
            holding_start=self.holding_start,
            levels=self.levels.tolist(),
            stop=self.stop,
            stop_candle=self.stop_candle,
            stop_price=self.stop_price,
            stop_trigger=self.stop_trigger,
            fee_asset=self.fee_asset,
            slippage_bps=self.slippage_bps,
            bnb_fees=self.bnb_fees,
            trail_up=_float_or_none(self.spec.trail_up),
            trail_down=_float_or_none(self.spec.trail_down),
            trail_moves=[list(m) for m in self.trail_moves],
        )
        return out


# ---------------------------------------------------------------- building blocks


def grid_levels(lower: float, upper: float, grids: int, spacing: str = "arithmetic") -> np.ndarray:
    """N+1 exact levels; the last is exactly `upper` (no float drift at the top).

    The live grid's own formula (`tgtrader.core.grid.plan.level_prices`), as floats: its Decimals are float
    reprs, so the conversion is exact and both compute the very same levels.
    """
    decimals = level_prices(Decimal(repr(float(lower))), Decimal(repr(float(upper))), grids, spacing)
    return np.array([float(x) for x in decimals], dtype=np.float64)


def round_levels(levels: np.ndarray, rules: SymbolRules) -> np.ndarray:
    """Round each level to the tick (nearest, as the core does) with Decimal; refuse collapsed levels."""
    rounded = np.array([float(rules.round_price(Decimal(repr(float(x))))) for x in levels])
    if np.any(np.diff(rounded) <= 0):
        raise BacktestInputError(
            f"levels closer than the {rules.symbol} tick size {rules.tick_size} collapse after rounding: use fewer grids"
        )
    return rounded


def candle_path(candles: Candles) -> np.ndarray:
    """The price path: 4 vertices per candle (open, low/high, high/low, close), joined candle to candle."""
    o, h, lo, c = candles.open, candles.high, candles.low, candles.close
    path = np.empty((o.shape[0], 4), dtype=np.float64)
    rising = c >= o
    path[:, 0] = o
    path[:, 1] = np.where(rising, lo, h)
    path[:, 2] = np.where(rising, h, lo)
    path[:, 3] = c
    return path.reshape(-1)


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vertex, level) for every level in [lo[s], hi[s]) of every segment s (s ends at vertex s + 1)."""
    idx = np.flatnonzero(hi > lo)
    counts = hi[idx] - lo[idx]
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    vertex = np.repeat(idx + 1, counts)
    starts = np.cumsum(counts) - counts
    level = np.repeat(lo[idx] - starts, counts) + np.arange(total)
    return vertex, level


def _first_vertex(mask: np.ndarray) -> int | None:
    hit = np.flatnonzero(mask)
    return int(hit[0]) + 1 if hit.size else None


@dataclass(frozen=True, eq=False)
class Setup:
    """What a run starts from, shared by this model and the trailing walk (trailing.py): the checked settings as
    floats, the levels (rounded to the tick with rules), the path, the quantity per grid and the start split."""

    path: np.ndarray
    levels: np.ndarray
    p0: float
    q: float
    holding0: np.ndarray  # per interval: holding at the start (its base bought at P0)
    n_hold: int
    stop_loss: float | None
    take_profit: float | None
    investment: float


def prepare(
    candles: Candles, spec: GridSpec, rules: SymbolRules | None, fee: float, fee_asset: FeeAsset,
    slippage_bps: float, path: np.ndarray | None = None,
) -> Setup:
    """Check the settings (one line for the trader when they cannot run) and compute the run's start."""
    validate(spec, fee, fee_asset, slippage_bps)
    if len(candles) == 0:
        raise BacktestInputError("no candles to backtest")
    # the numpy boundary: the spec's Decimals as floats from here on
    lower, upper, investment = float(spec.lower), float(spec.upper), float(spec.investment)
    stop_loss, take_profit = _float_or_none(spec.stop_loss), _float_or_none(spec.take_profit)
    levels = grid_levels(lower, upper, spec.grids, spec.spacing)
    if rules is not None:
        levels = round_levels(levels, rules)
    if path is None:
        path = candle_path(candles)
    p0 = float(path[0])
    if stop_loss is not None and not (stop_loss < p0):
        raise BacktestInputError(f"stop-loss ({stop_loss:g}) must be below the start price {p0:g}")
    if take_profit is not None and not (take_profit > p0):
        raise BacktestInputError(f"take-profit ({take_profit:g}) must be above the start price {p0:g}")
    buy_levels = levels[:-1]
    holding0 = buy_levels >= p0
    n_hold = int(holding0.sum())
    q = investment / (float(buy_levels[~holding0].sum()) + p0 * n_hold)
    if rules is not None:
        q = float(rules.round_qty(Decimal(repr(q))))
        if q <= 0:
            raise BacktestInputError(
                f"investment too small: the quantity per grid rounds to 0 at {rules.symbol} step {rules.step_size}"
            )
    return Setup(path, levels, p0, q, holding0, n_hold, stop_loss, take_profit, investment)


# ---------------------------------------------------------------- the backtest


def run_backtest(
    candles: Candles,
    spec: GridSpec,
    rules: SymbolRules | None = None,
    *,
    fee: float = DEFAULT_FEE,
    fee_asset: FeeAsset = DEFAULT_FEE_ASSET,
    slippage_bps: float = 0.0,
    path: np.ndarray | None = None,
) -> Result:
    """Backtest one grid over `candles`, paying `fee` per fill in `fee_asset`'s way; a stop exit sells
    `slippage_bps` below the path price. `spec.symbol` is a label here: pass the rules to round as that symbol
    does. Pass a precomputed `candle_path(candles)` to share it in sweeps."""
    if spec.trail_up is not None or spec.trail_down is not None:
        from tgtrader.backtest.trailing import run_trailing  # the walk builds on this module

        return run_trailing(candles, spec, rules, fee=fee, fee_asset=fee_asset, slippage_bps=slippage_bps, path=path)
    t0 = time.perf_counter()
    setup = prepare(candles, spec, rules, fee, fee_asset, slippage_bps, path)
    path, levels, p0, q, holding0, n_hold = setup.path, setup.levels, setup.p0, setup.q, setup.holding0, setup.n_hold
    stop_loss, take_profit, investment = setup.stop_loss, setup.take_profit, setup.investment
    n = len(candles)
    N = spec.grids

    start = start_buy(q, n_hold, p0, fee, fee_asset)
    quote0 = investment - start.quote
    base0 = start.base

    # ---- crossings: segment s goes from vertex s to vertex s+1
    cl = np.searchsorted(levels, path, side="left")  # number of levels strictly below the price
    cr = cl + (np.append(levels, np.inf)[cl] == path)  # number of levels at or below the price
    # falling: p[u] <= L_k < p[u-1]  <=> k in [cl[u], cl[u-1])
    dn_v, dn_k = _expand(cl[1:], cl[:-1])
    # rising: p[u-1] < L_k <= p[u]  <=> k in [cr[u-1], cr[u])
    up_v, up_k = _expand(cr[:-1], cr[1:])
    del cl, cr
    # only levels 0..N-1 carry buys and only levels 1..N carry sells
    if dn_k.size and (dn_k == N).any():
        keep_dn = dn_k < N
        dn_v, dn_k = dn_v[keep_dn], dn_k[keep_dn]
    if up_k.size and (up_k == 0).any():
        keep_up = up_k > 0
        up_v, up_k = up_v[keep_up], up_k[keep_up]

    ev_v = np.concatenate((dn_v, up_v))
    ev_iv = np.concatenate((dn_k, up_k - 1))
    ev_sell = np.concatenate((np.zeros(dn_v.shape[0], bool), np.ones(up_v.shape[0], bool)))
    # ---- alternation per interval: order events by (interval, vertex), keep the start of each run
    order = np.argsort(ev_iv * path.shape[0] + ev_v, kind="stable")
    v_s, iv_s, sell_s = ev_v[order], ev_iv[order], ev_sell[order]
    m = v_s.shape[0]
    keep = np.empty(m, bool)
    if m:
        group_start = np.empty(m, bool)
        group_start[0] = True
        group_start[1:] = iv_s[1:] != iv_s[:-1]
        changed = np.empty(m, bool)
        changed[0] = True
        changed[1:] = sell_s[1:] != sell_s[:-1]
        keep = np.where(group_start, sell_s == holding0[iv_s], changed)
    v_k, iv_k, sell_k = v_s[keep], iv_s[keep], sell_s[keep]

    # ---- stop-loss / take-profit: the first vertex reaching a trigger ends the run
    stop: str | None = None
    stop_v: int | None = None
    stop_price: float | None = None
    sl_v = _first_vertex(path[1:] <= stop_loss) if stop_loss is not None else None
    tp_v = _first_vertex(path[1:] >= take_profit) if take_profit is not None else None
    if sl_v is not None and (tp_v is None or sl_v < tp_v):
        stop, stop_v, stop_trigger = "stop_loss", sl_v, stop_loss
    elif tp_v is not None:
        stop, stop_v, stop_trigger = "take_profit", tp_v, take_profit
    else:
        stop_trigger = None
    if stop_v is not None:
        stop_price = float(path[stop_v]) * (1.0 - slippage_bps / 10_000.0)  # a market sell, after the slippage
        alive = v_k <= stop_v  # the segment's fills first: the market crossed those levels on its way there
        v_k, iv_k, sell_k = v_k[alive], iv_k[alive], sell_k[alive]

    # a sell is a round trip unless it is the first fill of an interval that started holding
    first_of_iv = np.empty(v_k.shape[0], bool)
    if v_k.shape[0]:
        first_of_iv[0] = True
        first_of_iv[1:] = iv_k[1:] != iv_k[:-1]
    rt = sell_k & ~(first_of_iv & holding0[iv_k])
    money = fill_money(levels, iv_k, sell_k, holding0, q, start, fee, fee_asset, rules)
    grid_profit = float(money.profit[rt].sum())
    realized = float(money.profit.sum())

    # ---- fills in execution order: vertex, then falling = higher level first, rising = lower level first
    level_k = np.where(sell_k, iv_k + 1, iv_k)
    within = np.where(sell_k, level_k, N - level_k)
    t_order = np.argsort(v_k * (N + 2) + within, kind="stable")
    f_v = v_k[t_order]
    f_level = level_k[t_order]
    f_sell = sell_k[t_order]
    f_price = levels[f_level]
    f_side = np.where(f_sell, SELL, BUY).astype(np.int8)
    f_candle = f_v // 4
    nf = f_v.shape[0]
    fills = Fills(
        vertex=f_v,
        candle=f_candle,
        side=f_side,
        level=f_level,
        interval=np.where(f_sell, f_level - 1, f_level),
        price=f_price,
        qty=money.qty[t_order],
    )

    # ---- balances and equity at each candle close
    cash, dbase, bnb = money.quote[t_order], money.base[t_order], money.bnb[t_order]
    cum_cash = np.cumsum(np.bincount(f_candle, weights=cash, minlength=n))
    cum_base = np.cumsum(np.bincount(f_candle, weights=dbase, minlength=n))
    quote_t = quote0 + cum_cash
    base_t = base0 + cum_base
    bnb_t: np.ndarray | float = 0.0  # BNB spent so far (quote value): a third balance only in bnb mode
    if fee_asset == "bnb":
        bnb_t = start.bnb + np.cumsum(np.bincount(f_candle, weights=bnb, minlength=n))
    fees = start.fee + float(np.sum(money.fee))
    bnb_fees = start.bnb + float(np.sum(bnb))
    quote = quote0 + float(np.sum(cash))
    base = base0 + float(np.sum(dbase))
    stop_candle: int | None = None
    stop_qty = 0.0
    if stop_v is not None and stop_price is not None:
        stop_candle = stop_v // 4
        stop_qty = _sellable(base, rules)
        proceeds = stop_qty * stop_price
        exit_fee = proceeds * fee
        fees += exit_fee
        bnb_fees += exit_fee if fee_asset == "bnb" else 0.0
        quote += proceeds - (0.0 if fee_asset == "bnb" else exit_fee)
        realized += proceeds - exit_fee - (money.cost * stop_qty / money.held if money.held > 0 else 0.0)
        base -= stop_qty
        quote_t[stop_candle:] = quote
        base_t[stop_candle:] = base
        if isinstance(bnb_t, np.ndarray):
            bnb_t[stop_candle:] = bnb_fees
    equity = quote_t + base_t * candles.close
    if isinstance(bnb_t, np.ndarray):
        equity -= bnb_t
    final_price = float(candles.close[-1])
    final_equity = quote + base * final_price - bnb_fees
    peak = np.maximum.accumulate(np.concatenate(([investment], equity)))[1:]
    max_dd = float(np.max((peak - equity) / peak)) * 100.0
    buys = int(nf - int(f_sell.sum()))
    sells = int(f_sell.sum())
    elapsed = time.perf_counter() - t0
    return Result(
        candles=n,
        start_price=p0,
        final_price=final_price,
        buys=buys,
        sells=sells,
        round_trips=int(rt.sum()),
        quote=quote,
        base=base,
        grid_profit=grid_profit,
        realized=realized,
        fees=fees,
        final_equity=final_equity,
        return_pct=(final_equity / investment - 1.0) * 100.0,
        hold_return_pct=(final_price / p0 - 1.0) * 100.0,
        max_drawdown_pct=max(max_dd, 0.0),
        elapsed_s=elapsed,
        spec=spec,
        fee=fee,
        levels=levels,
        qty=q,
        holding_start=n_hold,
        start_time_ms=int(candles.open_time[0]),
        end_time_ms=int(candles.open_time[-1]),
        fills=fills,
        equity=equity,
        stop=stop,
        stop_candle=stop_candle,
        stop_price=stop_price,
        stop_qty=stop_qty,
        stop_trigger=stop_trigger,
        fee_asset=fee_asset,
        slippage_bps=slippage_bps,
        bnb_fees=bnb_fees,
    )


def _sellable(base: float, rules: SymbolRules | None) -> float:
    """What a market exit can sell: all of it, or with rules all of it rounded down to the market step (the
    float sum is cleaned to 12 decimals first, so 0.003 summed as 0.0029999999 is still 0.003)."""
    if rules is None or base <= 0:
        return max(base, 0.0)
    return float(rules.round_qty(Decimal(repr(base)).quantize(Decimal("1e-12")), market=True))
