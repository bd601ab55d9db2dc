"""Benchmark (issue 17): the trailing backtest (backtest/trailing.py, a Python walk from event to event) next to
the vectorized one (vector.py) on the same 527,040 candles as bench_backtest.py, in the same run.

Rows: the vectorized run of the grid without trailing; the walk of that same grid (no trailing: the same fills
and numbers, so the two times compare like for like); the walk with trail_up / trail_down set (it moves, so it
trades a different ladder). Grid: bench_backtest.py's (20 arithmetic grids between the 5th and 95th percentile
of the closes, 10,000 quote, fee 0.001), and the same range with 200 grids (the most allowed: many fills, the
walk's worst case); fee in base (Binance's default) and in quote. Trailing limits: 1.5 x
upper and 0.5 x lower. Median of RUNS warm runs each; the box is shared, so the load average is printed.

Run: .venv/bin/python bench/bench_trailing.py   (about a minute; writes bench/results/trailing.json)
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_backtest import COPIES, DATA, FEE, GRIDS, INVESTMENT, chained  # noqa: E402
from tgtrader.backtest.candles import Candles, load_candles  # noqa: E402
from tgtrader.backtest.trailing import run_trailing  # noqa: E402
from tgtrader.backtest.vector import Result, candle_path, run_backtest  # noqa: E402
from tgtrader.core.api import GridSpec  # noqa: E402
from tgtrader.fees import FeeAsset  # noqa: E402

RUNS = 3
DENSE = 200  # the most grids a grid may have: many fills, the walk's worst case
FEE_ASSETS_RUN: tuple[FeeAsset, ...] = ("base", "quote")


def timed(fn: Callable[[], Result], runs: int = RUNS) -> tuple[float, Result]:
    results = [fn() for _ in range(runs)]
    return statistics.median(r.elapsed_s for r in results), results[-1]


def bench(candles: Candles, path: np.ndarray, spec: GridSpec, trail: GridSpec, fee_asset: FeeAsset) -> dict[str, Any]:
    vec_s, vec = timed(lambda: run_backtest(candles, spec, fee=FEE, fee_asset=fee_asset, path=path))
    walk_s, walk = timed(lambda: run_trailing(candles, spec, fee=FEE, fee_asset=fee_asset, path=path))
    assert [r[:4] for r in walk.fills.records()] == [r[:4] for r in vec.fills.records()]
    assert abs(walk.final_equity - vec.final_equity) < 1e-6 * INVESTMENT
    tr_s, tr = timed(lambda: run_backtest(candles, trail, fee=FEE, fee_asset=fee_asset, path=path))
    print(f"{spec.grids} grids, fee in {fee_asset}: vectorized {vec_s * 1e3:.0f} ms ({len(vec.fills):,} fills); "
          f"walk of the same grid {walk_s * 1e3:.0f} ms; walk trailing {tr_s * 1e3:.0f} ms ({len(tr.fills):,} fills, "
          f"{len(tr.trail_moves):,} moves) on {len(candles):,} candles")
    return {
        "grids": spec.grids, "fee_asset": fee_asset,
        "vectorized_no_trailing_s": vec_s, "walk_no_trailing_s": walk_s, "walk_trailing_s": tr_s,
        "fills_no_trailing": len(vec.fills), "fills_trailing": len(tr.fills), "moves": len(tr.trail_moves),
        "moves_up": sum(1 for m in tr.trail_moves if m.direction == "up"),
        "final_equity_no_trailing": vec.final_equity, "final_equity_trailing": tr.final_equity,
    }


def main() -> int:
    candles = chained(load_candles(DATA), COPIES)
    path = candle_path(candles)
    lower, upper = (float(np.round(x, 3)) for x in np.percentile(candles.close, [5, 95]))
    up, down = Decimal(repr(round(upper * 1.5, 3))), Decimal(repr(round(lower * 0.5, 3)))
    rows = []
    for grids in (GRIDS, DENSE):
        spec = GridSpec("FILUSDT", Decimal(repr(lower)), Decimal(repr(upper)), grids, Decimal(repr(INVESTMENT)))
        trail = replace(spec, trail_up=up, trail_down=down)
        for fee_asset in FEE_ASSETS_RUN:
            rows.append(bench(candles, path, spec, trail, fee_asset))
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    results = {
        "bench": "trailing",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "candles": len(candles),
        "data": f"{DATA.name} chained x{COPIES} (as bench_backtest.py)",
        "grid": {"lower": lower, "upper": upper, "investment": INVESTMENT, "fee": FEE, "trail_up": float(up),
                 "trail_down": float(down)},
        "runs": RUNS,
        "load_average": load,
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / "trailing.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
