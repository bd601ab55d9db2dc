"""Market-stream parse-and-dispatch throughput with 500 symbols multiplexed (one core).

Run: .venv/bin/python bench/bench_stream.py [--messages 300000]

Rows (same messages, same sink, measured in this run):
- naive baseline: json.loads + dict lookup of the stream name + Decimal per price + Tick -> sink.
- tgtrader raw: StreamParser.parse_raw (orjson, interned routes, price cache, conflation) -> sink.
- tgtrader as wired: the frame handler the adapter installs in python-binance's read loop (replacing the
  library's decode + asyncio.Queue hand-off): liveness stamps, parse_raw, guarded sink call.
Two workloads: every bookTicker changes the price (worst case for the conflation), and the size-only share
measured in the recorded Binance stream (shared/data/binance/ws_combined_spot_2021-10-12.jsonl, 68% of
bookTicker updates there change only sizes; the default if the file is absent).
Targets: >= 200,000 msg/s and >= 3x the naive loop.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tgtrader.exchange.binance.fastpath import StreamParser, parse_market_naive  # noqa: E402

RECORDED = Path("/work/shared/data/binance/ws_combined_spot_2021-10-12.jsonl")


def recorded_size_only_share() -> float:
    """Share of bookTicker messages whose best bid/ask equal the previous one for the symbol."""
    if not RECORDED.exists():
        return 0.68
    prev: dict[str, tuple[str, str]] = {}
    same = total = 0
    for line in RECORDED.read_text().splitlines():
        m = json.loads(line)
        if m["stream"].endswith("@bookTicker"):
            d = m["data"]
            key = (d["b"], d["a"])
            same += prev.get(d["s"]) == key
            total += 1
            prev[d["s"]] = key
    return same / total if total else 0.68


def make_messages(n: int, n_symbols: int, size_only_share: float, seed: int = 7) -> tuple[list[bytes], list[str]]:
    """Combined-stream frames in Binance's layout: 80% bookTicker, 20% trade, prices on a tick grid."""
    rng = random.Random(seed)
    symbols = [f"S{i:03d}USDT" for i in range(n_symbols)]
    ticks = {s: rng.randint(10_000, 5_000_000) for s in symbols}  # price in 1e-4 units
    book = {s: (ticks[s], ticks[s] + 1) for s in symbols}
    out: list[bytes] = []
    upd = 1_000_000
    trade_id = 5_000_000
    for _ in range(n):
        s = symbols[rng.randrange(n_symbols)]
        low = s.lower()
        upd += 1
        if rng.random() < 0.8:
            if rng.random() >= size_only_share:
                mid = book[s][0] + rng.choice((-2, -1, 1, 2))
                book[s] = (max(1, mid), max(1, mid) + rng.choice((1, 2)))
            b, a = book[s]
            data = {"u": upd, "s": s, "b": f"{b / 1e4:.8f}", "B": f"{rng.randint(1, 99999) / 1e3:.8f}",
                    "a": f"{a / 1e4:.8f}", "A": f"{rng.randint(1, 99999) / 1e3:.8f}"}
            out.append(orjson.dumps({"stream": f"{low}@bookTicker", "data": data}))
        else:
            trade_id += 1
            ts = 1_700_000_000_000 + upd
            data = {"e": "trade", "E": ts, "s": s, "t": trade_id, "p": f"{book[s][0] / 1e4:.8f}",
                    "q": f"{rng.randint(1, 99999) / 1e4:.8f}", "T": ts, "m": rng.random() < 0.5, "M": True}
            out.append(orjson.dumps({"stream": f"{low}@trade", "data": data}))
    return out, symbols


class Sink:
    """What the engine's sink does with a tick on this path: keep the latest per symbol, count."""

    __slots__ = ("latest", "n")

    def __init__(self) -> None:
        self.latest: dict[str, object] = {}
        self.n = 0

    def __call__(self, tick) -> None:  # type: ignore[no-untyped-def]
        self.latest[tick.symbol] = tick
        self.n += 1


def bench_naive(msgs: list[bytes], symbols: list[str]) -> tuple[float, int]:
    routes = {f"{s.lower()}@{k}": s for s in symbols for k in ("bookTicker", "trade")}
    got = sink = Sink()
    clock = lambda: int(time.time() * 1000)  # noqa: E731
    t0 = time.perf_counter()
    for raw in msgs:
        tick = parse_market_naive(raw, routes, clock)
        if tick is not None:
            sink(tick)
    return time.perf_counter() - t0, got.n


def _parser(symbols: list[str], conflate: bool) -> StreamParser:
    p = StreamParser(conflate=conflate)
    for s in symbols:
        p.add_stream(f"{s.lower()}@bookTicker")
        p.add_stream(f"{s.lower()}@trade")
    return p


def bench_fast(msgs: list[bytes], symbols: list[str], conflate: bool) -> tuple[float, int]:
    p = _parser(symbols, conflate)
    got = sink = Sink()
    parse_raw = p.parse_raw
    t0 = time.perf_counter()
    for raw in msgs:
        tick = parse_raw(raw)
        if tick is not None:
            sink(tick)
    return time.perf_counter() - t0, got.n


def bench_wired(msgs: list[bytes], symbols: list[str], conflate: bool) -> tuple[float, int]:
    """The adapter's real path: the frame handler it installs in python-binance's read loop, fed text frames
    (websockets hands text frames over as str), with its bookkeeping (liveness stamps, status) and the
    guarded sink call."""
    from tgtrader.exchange.binance import BinanceExchange
    from tgtrader.exchange.binance.streams import MarketConn

    sink = Sink()
    ex = BinanceExchange("k", "s", conflate_book=conflate)
    ex.set_event_sink(sink)
    for s in symbols:
        ex.parser.add_stream(f"{s.lower()}@bookTicker")
        ex.parser.add_stream(f"{s.lower()}@trade")
    conn = MarketConn(up=True)
    handle = ex.market_handler(conn)
    frames = [m.decode() if isinstance(m, bytes) else m for m in msgs]
    t0 = time.perf_counter()
    for frame in frames:
        handle(frame)
    return time.perf_counter() - t0, sink.n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--text-frames", action="store_true", help="feed str frames (as websockets delivers) to every path")
    args = ap.parse_args()
    share = recorded_size_only_share()
    kind = "str frames" if args.text_frames else "bytes frames (the read-loop row always gets str)"
    print(f"stream parse-and-dispatch, {args.symbols} symbols, {args.messages:,} messages, one core, {kind}")
    print(f"{'workload':<34}{'path':<38}{'msg/s':>12}{'ticks':>10}{'vs naive':>10}")
    for label, size_only in (("every bookTicker moves the price", 0.0),
                             (f"recorded mix ({share:.0%} size-only)", share)):
        msgs, symbols = make_messages(args.messages, args.symbols, size_only)
        if args.text_frames:  # what websockets hands over for text frames
            msgs = [m.decode() for m in msgs]  # type: ignore[misc]
        for _ in range(1):  # warm-up (Decimal cache, allocator)
            bench_fast(msgs[:20000], symbols, True)
            bench_naive(msgs[:20000], symbols)
        rows = []
        t, n = min((bench_naive(msgs, symbols) for _ in range(3)), key=lambda r: r[0])
        naive = len(msgs) / t
        rows.append(("naive json.loads + dict + Decimal", naive, n))
        for name, fn in (("tgtrader parse_raw (no conflation)", lambda: bench_fast(msgs, symbols, False)),
                         ("tgtrader parse_raw (conflation on)", lambda: bench_fast(msgs, symbols, True)),
                         ("tgtrader as wired (read-loop handler)", lambda: bench_wired(msgs, symbols, True))):
            t, n = min((fn() for _ in range(3)), key=lambda r: r[0])
            rows.append((name, len(msgs) / t, n))
        for name, rate, n in rows:
            print(f"{label:<34}{name:<38}{rate:>12,.0f}{n:>10,}{rate / naive:>9.1f}x")
    _ = Decimal  # keep the import visible: the naive row builds Decimals per field


if __name__ == "__main__":
    main()
