"""Batched sweep: many grid settings over the same candles in one numpy pass, no Python loop over settings'
candles.

Why: guided `/grid` ranks about a thousand settings on 30 days of 1m candles while the trader waits; the
per-setting backtest (`vector.run_backtest`, the reference the tests compare against) spends most of its
time on work every setting repeats: locating each of the 4 x candles path vertices among its levels, and
per-candle equity arrays. Here:

- The levels of every setting are merged into one sorted array U; one `searchsorted` of the path in U gives
  every falling / rising crossing of every distinct level (a level shared by settings is crossed once).
- An interval [L_i, L_i+1] fills as the alternation of the falling crossings of L_i and the rising
  crossings of L_i+1 (vector.py's model): both lists are gathered per (setting, interval) from the per-level
  lists and merged with two `searchsorted` calls on pair-offset keys (no sort of the events).
- Money per fill is vector/money.py's closed form (no symbol rounding), vectorized across settings.
- Max drawdown: between two candles with fills a setting's equity is A + B x close with constant A, B, so
  each such piece's lowest and highest equity come from range-min/max queries of the closes (sparse table).
  A piece whose highest equity is not above the earlier peak has drawdown 1 - lowest / peak exactly; a piece
  that may set a new peak (few: the price moves less than a grid step between fills inside the range) is
  expanded candle by candle. Exact, like the reference, without per-candle arrays for every setting.

Scope: no stop-loss / take-profit, no trailing and no symbol rounding (`rules`); those settings go through
`run_backtest` (the suggestions re-run their few winners there with the rules for the numbers shown).
`workers=2` splits the settings over two forked processes.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from typing import Any

import numpy as np

from tgtrader.backtest.candles import Candles
from tgtrader.backtest.vector import BacktestInputError, candle_path, validate
from tgtrader.core.api import GridSpec
from tgtrader.fees import DEFAULT_FEE_ASSET, FeeAsset

FIELDS = ("buys", "sells", "round_trips", "grid_profit", "realized", "fees", "final_equity", "total_pnl",
          "return_pct", "max_drawdown_pct", "time_in_range_pct")


@dataclass(frozen=True, eq=False)
class BatchResult:
    """One value per setting (arrays of equal length, in the order the settings were given)."""

    specs: tuple[GridSpec, ...]
    fees_rate: np.ndarray
    buys: np.ndarray
    sells: np.ndarray
    round_trips: np.ndarray
    grid_profit: np.ndarray  # completed round trips after both fees
    realized: np.ndarray  # every sale against its cost
    fees: np.ndarray
    final_equity: np.ndarray
    total_pnl: np.ndarray  # final equity - investment
    return_pct: np.ndarray
    max_drawdown_pct: np.ndarray
    time_in_range_pct: np.ndarray  # share of candle closes within [lower, upper]

    def __len__(self) -> int:
        return len(self.specs)

    def row(self, i: int) -> dict[str, Any]:
        return {k: getattr(self, k)[i].item() for k in FIELDS}


@dataclass(frozen=True, eq=False)
class _Prepared:
    """What every chunk shares: the path, the closes and their sparse tables."""

    path: np.ndarray
    close: np.ndarray
    sorted_close: np.ndarray
    tmin: list[np.ndarray]
    tmax: list[np.ndarray]


def _prepare(candles: Candles) -> _Prepared:
    close = np.ascontiguousarray(candles.close, dtype=np.float64)
    tmin, tmax = [close], [close]
    k = 1
    while 2 * k <= close.shape[0]:
        tmin.append(np.minimum(tmin[-1][:-k], tmin[-1][k:]))
        tmax.append(np.maximum(tmax[-1][:-k], tmax[-1][k:]))
        k *= 2
    return _Prepared(candle_path(candles), close, np.sort(close), tmin, tmax)


def _range_minmax(prep: _Prepared, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min and max of close[start:stop] for every (start, stop), stop > start (sparse-table queries)."""
    length = stop - start
    k = np.floor(np.log2(length)).astype(np.int64)
    lo = np.empty(start.shape[0])
    hi = np.empty(start.shape[0])
    for j in np.unique(k).tolist():
        sel = k == j
        a, b = start[sel], stop[sel] - (1 << j)
        lo[sel] = np.minimum(prep.tmin[j][a], prep.tmin[j][b])
        hi[sel] = np.maximum(prep.tmax[j][a], prep.tmax[j][b])
    return lo, hi


def _seg_cummax(x: np.ndarray, seg_start: np.ndarray, longest: int | None = None) -> np.ndarray:
    """Running max of x restarted at every index where seg_start is True (log-step doubling; `longest`
    bounds the segments' length when known)."""
    out = x.copy()
    first = np.maximum.accumulate(np.where(seg_start, np.arange(x.shape[0]), 0))  # start of each row's segment
    pos = np.arange(x.shape[0])
    step = 1
    while step < min(x.shape[0], longest or x.shape[0]):
        src = pos - step
        ok = src >= first
        if not ok.any():
            break
        out[ok] = np.maximum(out[ok], out[src[ok]])
        step *= 2
    return out


def _csr(keys: np.ndarray, values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Group values by key (stable, so each group keeps the values' order): (pointer[size + 1], values)."""
    small = keys.astype(np.uint16) if size <= 1 << 16 else keys  # 16-bit keys sort by radix: much faster
    order = np.argsort(small, kind="stable")
    ptr = np.zeros(size + 1, np.int64)
    np.cumsum(np.bincount(keys, minlength=size), out=ptr[1:])
    return ptr, values[order]


def _gather(ptr: np.ndarray, vals: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the lists of `groups` (in that order): (owner index into groups, value)."""
    counts = ptr[groups + 1] - ptr[groups]
    total = int(counts.sum())
    owner = np.repeat(np.arange(groups.shape[0]), counts)
    offs = np.cumsum(counts) - counts
    idx = np.arange(total) - offs[owner] + ptr[groups][owner]
    return owner, vals[idx]


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vertex, level) for every level in [lo[s], hi[s]) of every segment s (s ends at vertex s + 1)."""
    idx = np.flatnonzero(hi > lo)
    counts = hi[idx] - lo[idx]
    total = int(counts.sum())
    vertex = np.repeat(idx + 1, counts)
    starts = np.cumsum(counts) - counts
    level = np.repeat(lo[idx] - starts, counts) + np.arange(total)
    return vertex, level


def _levels(spec: GridSpec) -> np.ndarray:
    """The same floats as vector.grid_levels (core.grid.plan.level_prices), without the Decimal round trip."""
    lo, hi, n = float(spec.lower), float(spec.upper), spec.grids
    raw = np.geomspace(lo, hi, n + 1) if spec.spacing == "geometric" else np.linspace(lo, hi, n + 1)
    raw[0], raw[-1] = lo, hi
    return raw


def _run_chunk(prep: _Prepared, specs: list[GridSpec], fee: np.ndarray, fee_asset: FeeAsset) -> dict[str, np.ndarray]:
    path, close = prep.path, prep.close
    n, nv = close.shape[0], path.shape[0]
    S = len(specs)
    grids = np.array([s.grids for s in specs], np.int64)
    invest = np.array([float(s.investment) for s in specs])
    lower = np.array([float(s.lower) for s in specs])
    upper = np.array([float(s.upper) for s in specs])
    lv_all = np.concatenate([_levels(s) for s in specs])
    lv_off = np.cumsum(grids + 1) - (grids + 1)  # first level of each setting in lv_all
    p0 = float(path[0])

    # ---- pairs: (setting, interval); buy at level i, sell at level i + 1
    P = int(grids.sum())
    pair_set = np.repeat(np.arange(S), grids)
    pair_off = np.cumsum(grids) - grids
    pair_i = np.arange(P) - pair_off[pair_set]
    buy_lv = lv_all[lv_off[pair_set] + pair_i]
    sell_lv = lv_all[lv_off[pair_set] + pair_i + 1]
    hold0 = buy_lv >= p0
    n_hold = np.bincount(pair_set, weights=hold0, minlength=S)
    waiting_sum = np.bincount(pair_set, weights=np.where(hold0, 0.0, buy_lv), minlength=S)
    q = invest / (waiting_sum + p0 * n_hold)

    # ---- every distinct level's crossings, grouped per level (vertex order kept)
    U, inv = np.unique(lv_all, return_inverse=True)
    cl = np.searchsorted(U, path, side="left")
    cr = cl + (np.append(U, np.inf)[cl] == path)
    dn_v, dn_k = _expand(cl[1:], cl[:-1])  # falling: p[u] <= U_k < p[u-1]
    up_v, up_k = _expand(cr[:-1], cr[1:])  # rising: p[u-1] < U_k <= p[u]
    del cl, cr
    dn_ptr, dn_vs = _csr(dn_k, dn_v, U.shape[0])
    up_ptr, up_vs = _csr(up_k, up_v, U.shape[0])
    ga = inv[lv_off[pair_set] + pair_i]
    gb = inv[lv_off[pair_set] + pair_i + 1]
    d_pair, d_v = _gather(dn_ptr, dn_vs, ga)
    u_pair, u_v = _gather(up_ptr, up_vs, gb)
    # ---- merge each pair's buy and sell crossings by vertex (they never share a vertex)
    d_key = d_pair * nv + d_v
    u_key = u_pair * nv + u_v
    pos_d = np.arange(d_key.shape[0]) + np.searchsorted(u_key, d_key)
    pos_u = np.arange(u_key.shape[0]) + np.searchsorted(d_key, u_key)
    m = d_key.shape[0] + u_key.shape[0]
    e_pair = np.empty(m, np.int64)
    e_v = np.empty(m, np.int64)
    e_sell = np.zeros(m, bool)
    e_pair[pos_d], e_pair[pos_u] = d_pair, u_pair
    e_v[pos_d], e_v[pos_u] = d_v, u_v
    e_sell[pos_u] = True
    keep = np.empty(m, bool)
    if m:
        start = np.empty(m, bool)
        start[0] = True
        start[1:] = e_pair[1:] != e_pair[:-1]
        changed = np.empty(m, bool)
        changed[0] = True
        changed[1:] = e_sell[1:] != e_sell[:-1]
        keep = np.where(start, e_sell == hold0[e_pair], changed)
    f_pair, f_v, f_sell = e_pair[keep], e_v[keep], e_sell[keep]

    # ---- money per fill (money.fill_money's closed form, every setting at once)
    fb = fee if fee_asset == "base" else np.zeros(S)
    start_qty = q * n_hold
    start_notional = start_qty * p0
    start_fee = start_notional * fee
    if fee_asset == "base":
        base0, spent0, bnb0, cost0 = start_qty * (1 - fee), start_notional, np.zeros(S), start_notional
    elif fee_asset == "quote":
        base0, spent0, bnb0, cost0 = start_qty, start_notional + start_fee, np.zeros(S), start_notional + start_fee
    else:
        base0, spent0, bnb0, cost0 = start_qty, start_notional, start_fee, start_notional + start_fee
    quote0 = invest - spent0
    share_cost = np.divide(cost0, n_hold, out=np.zeros(S), where=n_hold > 0)
    fs = pair_set[f_pair]
    nf = f_pair.shape[0]
    got = q * (1 - fb)
    first = np.empty(nf, bool)
    if nf:
        first[0] = True
        first[1:] = f_pair[1:] != f_pair[:-1]
    px = np.where(f_sell, sell_lv[f_pair], buy_lv[f_pair])
    qty = np.where(f_sell, got[fs], q[fs])
    notional = qty * px
    fee_v = notional * fee[fs]
    bnb = fee_v if fee_asset == "bnb" else np.zeros(nf)
    buy_cost = q[fs] * buy_lv[f_pair] * (1.0 + (0.0 if fee_asset == "base" else fee[fs]))
    start_sale = f_sell & first & hold0[f_pair]
    cost_sold = np.where(start_sale, share_cost[fs], buy_cost)
    cash = np.where(f_sell, notional - (0.0 if fee_asset == "bnb" else fee_v),
                    -notional - (fee_v if fee_asset == "quote" else 0.0))
    dbase = np.where(f_sell, -qty, got[fs])
    profit = np.where(f_sell, notional - fee_v - cost_sold, 0.0)
    rt = start_sale ^ f_sell  # a sell that is not an interval's first sale of its start base

    def per_set(w: np.ndarray | None, mask: np.ndarray | None = None) -> np.ndarray:
        idx = fs if mask is None else fs[mask]
        ww = w if (w is None or mask is None) else w[mask]
        return np.bincount(idx, weights=ww, minlength=S)

    sells = per_set(None, f_sell).astype(np.int64)
    buys = np.bincount(fs, minlength=S) - sells
    quote = quote0 + per_set(cash)
    base = base0 + per_set(dbase)
    bnb_fees = bnb0 + per_set(bnb)
    final = quote + base * float(close[-1]) - bnb_fees
    out = {
        "buys": buys, "sells": sells, "round_trips": per_set(None, rt).astype(np.int64),
        "grid_profit": per_set(profit, rt), "realized": per_set(profit), "fees": start_fee + per_set(fee_v),
        "final_equity": final, "total_pnl": final - invest, "return_pct": (final / invest - 1.0) * 100.0,
        "max_drawdown_pct": _drawdown(prep, S, fs, f_v // 4, cash - bnb, dbase, quote0 - bnb0, base0, invest),
        "time_in_range_pct": (np.searchsorted(prep.sorted_close, upper, "right")
                              - np.searchsorted(prep.sorted_close, lower, "left")) / n * 100.0,
    }
    return out


def _drawdown(prep: _Prepared, S: int, fs: np.ndarray, candle: np.ndarray, da: np.ndarray, db: np.ndarray,
              a0: np.ndarray, b0: np.ndarray, invest: np.ndarray) -> np.ndarray:
    """Max drawdown (%) of equity A + B x close at every candle close, the investment as the first peak."""
    n = prep.close.shape[0]
    # per (setting, candle with fills): the change of A and B; plus a piece starting at candle 0 per setting
    key = np.concatenate((fs * n + candle, np.arange(S) * n))
    da = np.concatenate((da, np.zeros(S)))
    db = np.concatenate((db, np.zeros(S)))
    order = np.argsort(key, kind="stable")
    key, da, db = key[order], da[order], db[order]
    new = np.empty(key.shape[0], bool)
    new[0] = True
    new[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(new)
    pkey = key[starts]
    pa, pb = np.add.reduceat(da, starts), np.add.reduceat(db, starts)
    pset, c0 = pkey // n, pkey % n
    seg = np.empty(pkey.shape[0], bool)
    seg[0] = True
    seg[1:] = pset[1:] != pset[:-1]
    # A and B per piece: segmented cumulative sums
    ca, cb = np.cumsum(pa), np.cumsum(pb)
    base_a = np.maximum.accumulate(np.where(seg, np.arange(seg.shape[0]), 0))
    A = a0[pset] + ca - ca[base_a] + pa[base_a]
    B = b0[pset] + cb - cb[base_a] + pb[base_a]
    c1 = np.empty_like(c0)
    c1[:-1] = np.where(seg[1:], n, c0[1:])
    c1[-1] = n
    cmin, cmax = _range_minmax(prep, c0, c1)
    e_lo = A + np.minimum(B * cmin, B * cmax)
    e_hi = A + np.maximum(B * cmin, B * cmax)
    peak_incl = _seg_cummax(np.maximum(e_hi, invest[pset]), seg)
    peak_prev = np.where(seg, invest[pset], np.roll(peak_incl, 1))
    dd = 1.0 - e_lo / peak_prev
    flat = e_hi - e_lo <= 1e-12 * np.abs(e_hi)  # no base held (above the range): equity constant
    dd = np.where(flat, 1.0 - e_lo / np.maximum(peak_prev, e_hi), dd)
    grows = np.flatnonzero((e_hi > peak_prev) & ~flat)  # may set a new peak inside: walk those candle by candle
    glens = c1[grows] - c0[grows]
    short = grows[glens <= _SHORT]
    if short.size:  # many short pieces at once (running max by log-step doubling over at most _SHORT candles)
        lens = c1[short] - c0[short]
        owner = np.repeat(np.arange(short.size), lens)
        t = np.arange(int(lens.sum())) - (np.cumsum(lens) - lens)[owner] + c0[short][owner]
        g = short[owner]
        eq = A[g] + B[g] * prep.close[t]
        piece_start = np.empty(owner.shape[0], bool)
        piece_start[0] = True
        piece_start[1:] = owner[1:] != owner[:-1]
        pk = _seg_cummax(np.maximum(eq, np.where(piece_start, peak_prev[g], -np.inf)), piece_start, _SHORT)
        dd[short] = np.maximum.reduceat(1.0 - eq / pk, np.flatnonzero(piece_start))
    long = grows[glens > _SHORT]  # the price beyond the range, all base held: padded rows of similar length
    width = 1 << np.ceil(np.log2(np.maximum(c1[long] - c0[long], 1))).astype(np.int64)
    for w in np.unique(width).tolist():
        rows = long[width == w]
        for r0 in range(0, rows.size, max(1, _BLOCK // w)):
            j = rows[r0:r0 + max(1, _BLOCK // w)]
            t = np.minimum(c0[j][:, None] + np.arange(w)[None, :], (c1[j] - 1)[:, None])  # pad: repeat the last
            eq = A[j][:, None] + B[j][:, None] * prep.close[t]
            pk = np.maximum.accumulate(np.maximum(eq, peak_prev[j][:, None]), axis=1)
            dd[j] = np.max(1.0 - eq / pk, axis=1)
    worst = np.zeros(S)
    np.maximum.at(worst, pset, dd)
    return np.maximum(worst, 0.0) * 100.0


_SHORT = 32  # pieces up to this many candles are expanded together, longer ones one by one
_BLOCK = 1 << 20  # candles per padded block of long pieces
_SHARED: _Prepared | None = None


def _worker(args: tuple[list[GridSpec], np.ndarray, FeeAsset]) -> dict[str, np.ndarray]:
    assert _SHARED is not None
    return _run_chunk(_SHARED, *args)


def run_batch(
    candles: Candles,
    specs: list[GridSpec],
    fee: float | np.ndarray = 0.001,
    fee_asset: FeeAsset = DEFAULT_FEE_ASSET,
    workers: int = 1,
    chunk: int = 64,
) -> BatchResult:
    """Backtest every spec (no stop-loss / take-profit, unrounded) over `candles`; `fee` per spec or one rate.

    Raises BacktestInputError naming the first spec the backtest refuses. `workers > 1` forks that many
    processes over chunks of `chunk` settings (worth it from a few hundred settings on)."""
    global _SHARED
    if len(candles) == 0:
        raise BacktestInputError("no candles to backtest")
    fees = np.broadcast_to(np.asarray(fee, dtype=np.float64), (len(specs),)).copy()
    for spec, rate in zip(specs, fees.tolist(), strict=True):
        validate(spec, rate, fee_asset)
        if spec.stop_loss is not None or spec.take_profit is not None:
            raise BacktestInputError("the batched sweep has no stop-loss / take-profit: use run_backtest")
        if spec.trail_up is not None or spec.trail_down is not None:
            raise BacktestInputError("the batched sweep does not trail (its levels are fixed): use run_backtest")
    prep = _prepare(candles)
    parts = [(specs[i:i + chunk], fees[i:i + chunk], fee_asset) for i in range(0, len(specs), chunk)]
    if workers > 1 and len(parts) > 1 and "fork" in mp.get_all_start_methods():
        _SHARED = prep
        try:
            with mp.get_context("fork").Pool(min(workers, len(parts))) as pool:
                outs = pool.map(_worker, parts)
        finally:
            _SHARED = None
    else:
        outs = [_run_chunk(prep, *p) for p in parts]
    merged = {k: np.concatenate([o[k] for o in outs]) if outs else np.empty(0) for k in FIELDS}
    return BatchResult(tuple(specs), fees, **merged)
