"""Soak: the real bot process with 200 symbols streaming and 10 grids trading for minutes; is its memory flat?

    .venv/bin/python bench/soak.py                      # 8.5 min soak; table + bench/results/soak.json
    .venv/bin/python bench/soak.py --with-chaos         # the README command: soak and bench/chaos.py side by side
    .venv/bin/python bench/soak.py --minutes 1          # a short look

Setup: a fake exchange with 200 USDT symbols; 10 of them carry a grid (fills and counter orders all the time),
the other 190 carry a soft stop-loss far below the price so the bot subscribes their trade and bookTicker
streams. The driver moves every symbol's price several times a second (random walk; grid symbols swing
across their levels). RSS of the bot process is sampled every 2 s from /proc: reported start (after setup and
a 20 s warm-up), end, peak, and the slope of a least-squares line over the run. At the end the issue-7
invariants are checked (fills exactly once, no double POST, intervals = exchange orders).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.fake_binance import DEFAULT_SYMBOLS, symbol_info  # noqa: E402
from tests.reliability.harness import Harness, hwm_kb, rss_kb  # noqa: E402

N_SYMBOLS = 200
N_GRIDS = 10


def log(msg: str, t0: float = time.monotonic()) -> None:
    print(f"[soak {time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def make_symbols() -> tuple[list[dict[str, Any]], dict[str, str], dict[str, str]]:
    symbols = [s for s in DEFAULT_SYMBOLS if s["symbol"] == "BTCUSDT"]
    prices = {"BTCUSDT": "50000"}
    balances = {"USDT": "10000000", "BTC": "1"}
    for i in range(N_SYMBOLS - 1):
        base = f"S{i:03d}X"
        symbols.append(symbol_info(f"{base}USDT", base, "USDT", "0.01000000", "0.01000000"))
        prices[f"{base}USDT"] = "100.00"
        balances[base] = "100"
    return symbols, prices, balances


def slope_kb_per_min(samples: list[tuple[float, int]]) -> float:
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    num = sum((t - mx) * (v - my) for t, v in samples)
    den = sum((t - mx) ** 2 for t, _ in samples) or 1.0
    return num / den * 60.0


async def soak(minutes: float, seed: int, tmp: Path, grid_move_prob: float) -> dict[str, Any]:
    rng = random.Random(seed)
    symbols, prices, balances = make_symbols()
    h = Harness(tmp, symbols=symbols, prices=prices, balances=balances,
                extra_env={"TGTRADER_MAX_OPEN_ORDERS": "1000"})
    await h.start()
    t_setup = time.monotonic()
    try:
        await h.start_bot()
        names = sorted(prices)
        grid_syms = ["BTCUSDT"] + [s for s in names if s != "BTCUSDT"][: N_GRIDS - 1]
        stop_syms = [s for s in names if s not in grid_syms]
        for sym in grid_syms:
            lo, hi = ("48000", "52000") if sym == "BTCUSDT" else ("90.00", "110.00")
            await h.create_grid(sym, lo, hi, 10, "1000")
        for sym in stop_syms:
            await h.command(f"/stop {sym} 50 soft")
        assert await h.settle(timeout=60, quiet_s=1.0)
        setup_s = time.monotonic() - t_setup
        streams = sum(len(c.streams) for c in h.binance.market_conns)
        log(f"setup done in {setup_s:.1f} s: {len(grid_syms)} grids, {len(stop_syms)} stops, {streams} streams")

        pid = h.pid()
        px = {s: Decimal(p) for s, p in prices.items()}
        samples: list[tuple[float, int]] = []
        moves = 0
        t0 = time.monotonic()
        end = t0 + minutes * 60
        warm = t0 + min(20.0, minutes * 60 / 5)
        next_sample = t0
        rss_start = None
        while time.monotonic() < end:
            for sym in names:  # every symbol moves: 2 market messages each (trade + bookTicker)
                if sym in grid_syms and rng.random() < grid_move_prob:
                    lo, hi = (Decimal(48000), Decimal(52000)) if sym == "BTCUSDT" else (Decimal(90), Decimal(110))
                    step = (hi - lo) / 10
                    new = px[sym] + step * Decimal(rng.choice((-1, 1))) * Decimal(rng.randint(0, 2))
                    new = min(max(new, lo), hi)
                elif sym in grid_syms:  # a small wiggle between level crossings
                    new = px[sym] + Decimal(rng.randint(-1, 1)) * h.binance.rules[sym].tick_size
                else:
                    new = px[sym] + Decimal(rng.randint(-5, 5)) / 100
                    new = min(max(new, Decimal(95)), Decimal(105))
                px[sym] = new
                await h.binance.set_price(sym, new)
                moves += 1
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if now >= next_sample:
                kb = rss_kb(pid)
                if now >= warm:
                    if rss_start is None:
                        rss_start = kb
                    samples.append((now - t0, kb))
                next_sample = now + 2.0
            if not h.alive:
                raise RuntimeError("bot died during the soak:\n" + h.stderr()[-2000:])
        run_s = time.monotonic() - t0
        rss_end = rss_kb(pid)
        peak = hwm_kb(pid)
        ok = await h.settle(timeout=60, quiet_s=1.5)
        checks = h.check_all(include_outbox=False)
        status = await h.command("/status")
        await asyncio.sleep(1.5)
        await h.outbox_drained(60)
        alerts = h.outbox()
        rc = await h.stop_bot(timeout=30)
        return {
            "seed": seed, "minutes": minutes, "grid_move_prob": grid_move_prob, "run_s": round(run_s, 1), "setup_s": round(setup_s, 1),
            "symbols": N_SYMBOLS, "grids": len(grid_syms), "stops": len(stop_syms), "streams": streams,
            "price_moves": moves, "market_messages": moves * 2, "msgs_per_s": round(moves * 2 / run_s),
            "fills": len(h.fake_fills()), "orders": len(h.binance.order_posts),
            "alerts": len([a for a in alerts if a[1] is not None]),
            "rss_kb": {"start": rss_start, "end": rss_end, "peak": peak,
                       "slope_kb_per_min": round(slope_kb_per_min(samples), 1), "samples": samples},
            "settled": ok, "violations": {k: v for k, v in checks.items() if v},
            "status_reply_first_line": status.splitlines()[0] if status else "", "graceful_stop_rc": rc,
        }
    finally:
        await h.close()


def table(r: dict[str, Any]) -> str:
    m = r["rss_kb"]
    mb = lambda kb: f"{(kb or 0) / 1024:.1f} MB"  # noqa: E731
    rows = [
        ("Symbols streaming", f"{r['symbols']} ({r['streams']} streams, {r['msgs_per_s']} market msgs/s)"),
        ("Grids trading", f"{r['grids']} ({r['fills']} fills, {r['orders']} orders, {r['alerts']} alerts)"),
        ("Duration", f"{r['run_s']:.0f} s after {r['setup_s']:.0f} s setup"),
        ("RSS start / end / peak", f"{mb(m['start'])} / {mb(m['end'])} / {mb(m['peak'])}"),
        ("RSS trend", f"{m['slope_kb_per_min']:+.0f} KB/min (least squares over {len(m['samples'])} samples)"),
        ("Invariants", "PASS" if not r["violations"] and r["settled"] else f"FAIL {r['violations']}"),
    ]
    w = max(len(a) for a, _ in rows)
    return "\n".join(f"{a.ljust(w)} | {b}" for a, b in rows)


async def amain(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    chaos = None
    if args.with_chaos:
        chaos = subprocess.Popen([sys.executable, str(ROOT / "bench" / "chaos.py")], cwd=str(ROOT))
    try:
        with tempfile.TemporaryDirectory(prefix="tgtrader-soak-") as tmp:
            res = await soak(args.minutes, seed, Path(tmp), args.grid_move_prob)
    finally:
        chaos_rc = None
        if chaos is not None:
            chaos_rc = await asyncio.to_thread(chaos.wait)
    out = ROOT / "bench" / "results" / "soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    print(table(res))
    print(f"seed {seed}; results in {out.relative_to(ROOT)}")
    bad = bool(res["violations"]) or not res["settled"]
    if chaos_rc is not None:
        print(f"chaos run exit code {chaos_rc} (table above it; bench/results/chaos.json)")
        bad = bad or chaos_rc != 0
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=8.5)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--grid-move-prob", type=float, default=0.05,
                    help="chance per 0.25 s cycle that a grid symbol jumps up to 2 levels (1.0: ~30 fills/s)")
    ap.add_argument("--with-chaos", action="store_true", help="run bench/chaos.py at the same time")
    return asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
