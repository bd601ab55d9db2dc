"""Benchmark (issue 17): a sweep of 1,000 grid settings over 30 days of real 1m candles (43,200).

Same run, same candles, same settings: the per-setting loop (`vector.run_backtest` per setting with the
path built once, what `tgtrader backtest --sweep` does) as the baseline, then the batched kernel
(`backtest.batch.run_batch`) in one process and in two forked workers. Every batched number is checked
against the loop's before timing counts. Wall time, best of `RUNS`, plus the load average (the box is shared).

Settings: 10 lowers x 10 uppers x 10 grid counts (5..50), arithmetic and geometric, 1,000 quote, fee 0.001,
fee in base (Binance's default). Candles: the first 30 days of the real FILUSDT 1m recording.

Run: .venv/bin/python bench/bench_sweep.py   (writes bench/results/sweep.json)
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.shared_data import shared_data  # noqa: E402
from tgtrader.backtest.batch import run_batch  # noqa: E402
from tgtrader.backtest.candles import Candles, load_candles  # noqa: E402
from tgtrader.backtest.vector import candle_path, run_backtest  # noqa: E402
from tgtrader.core.api import GridSpec  # noqa: E402

DATA = shared_data("klines/binance_usdm_FILUSDT_1m_2023-08_2023-11.csv")
CANDLES = 43_200
RUNS = 5
TARGET_S = 0.5


def settings(c: Candles) -> list[GridSpec]:
    lo, hi = float(c.low.min()), float(c.high.max())
    half = (hi - lo) / 2
    out = []
    for lf in np.linspace(0, 0.6, 10):
        for uf in np.linspace(0, 0.6, 10):
            for g in range(5, 55, 5):
                out.append(GridSpec("FILUSDT", Decimal(repr(round(float(lo + lf * half), 4))),
                                    Decimal(repr(round(float(hi - uf * half), 4))), g, Decimal(1000),
                                    spacing="geometric" if g % 10 == 0 else "arithmetic"))
    return out


def best(fn: object, runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    full = load_candles(DATA)
    c = Candles(full.open_time[:CANDLES], full.open[:CANDLES], full.high[:CANDLES], full.low[:CANDLES],
                full.close[:CANDLES], full.volume[:CANDLES], source=DATA.name)
    specs = settings(c)
    path = candle_path(c)

    def loop() -> list:
        return [run_backtest(c, s, path=path) for s in specs]

    ref = loop()
    batch = run_batch(c, specs)
    for key in ("round_trips", "grid_profit", "final_equity", "max_drawdown_pct"):
        want = np.array([getattr(r, key) for r in ref])
        assert np.allclose(getattr(batch, key), want, rtol=1e-9, atol=1e-9), key
    load_before = os.getloadavg()
    t_loop = best(loop, 2)
    t_one = best(lambda: run_batch(c, specs))
    t_two = best(lambda: run_batch(c, specs, workers=2))
    out = {
        "candles": len(c), "settings": len(specs), "source": DATA.name,
        "loop_s": round(t_loop, 4), "batch_1_process_s": round(t_one, 4), "batch_2_workers_s": round(t_two, 4),
        "speedup_1": round(t_loop / t_one, 1), "speedup_2": round(t_loop / t_two, 1),
        "target_s": TARGET_S, "met": min(t_one, t_two) <= TARGET_S,
        "load_avg_before": [round(x, 2) for x in load_before], "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
        "checked": "round trips, grid profit, final equity and max drawdown of all 1,000 settings equal the loop's",
    }
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "sweep.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
