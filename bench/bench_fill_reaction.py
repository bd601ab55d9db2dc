"""Fill reaction: an executionReport fill arriving at the process -> the counter order leaving it.

Run: .venv/bin/python bench/bench_fill_reaction.py [--fills 1000] [--inproc | --engine [--sync FULL|NORMAL|both]]

The fake Binance runs in a separate process (its own core; `--inproc` runs it in this event loop instead).
Default: for each round the bot places a BUY limit, the fake's market is moved onto it, the fake writes the
executionReport TRADE on the WebSocket API, and a minimal reaction callback in the event sink places the
counter SELL (the adapter's own share of the reaction). `--engine`: the real TradingCore runs a grid and
the price oscillates between two levels, so every step fills one grid order and the grid answers with its
counter order (includes the core's SQLite commit before sending). `--sync both` runs the engine twice in the
same run, SQLite synchronous=NORMAL (the baseline) then FULL (the default since issue 19), and prints both.

Measured per fill:
- in-process: the TRADE frame entering python-binance's WebSocket-API message handler -> the counter order's
  HTTP body handed to the socket (aiohttp trace `on_request_chunk_sent`);
- wire-to-wire (fake's clock): the fake writing the TRADE frame -> the fake receiving the counter POST.
Both use CLOCK_MONOTONIC (time.perf_counter), so the two processes' stamps are comparable.
Targets: p50 <= 2 ms, p99 <= 10 ms over >= 1,000 fills.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.fake_binance import API_KEY, API_SECRET, FakeBinance  # noqa: E402
from tgtrader.exchange.binance import BinanceExchange  # noqa: E402
from tgtrader.types import Fill, OrderType, PlaceOrder, Side  # noqa: E402

_children: list[subprocess.Popen] = []  # fake servers this run started (killed on any exit)


async def serve() -> None:
    fake = FakeBinance(control_routes=True)
    # The bench measures one reaction's latency at ~150 fills/s, far above Binance's 100 new orders per 10 s: with
    # the fake's ORDERS limits on, the bot's order pacer (issue 14) would hold orders for seconds and the
    # percentiles would measure the pacing, not the reaction.
    fake.set_order_limits([])
    await fake.start()
    fake.set_balance("USDT", "1000000000")
    fake.set_balance("BTC", "1000")
    await fake.set_price("BTCUSDT", "50000")
    print(fake.port, flush=True)
    await asyncio.Event().wait()


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


async def run(n_fills: int, inproc: bool) -> None:
    proc = None
    fake = None
    if inproc:
        fake = FakeBinance(control_routes=True)
        await fake.start()
        fake.set_balance("USDT", "1000000000")
        fake.set_balance("BTC", "1000")
        await fake.set_price("BTCUSDT", "50000")
        port = fake.port
    else:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, env=env, text=True)
        _children.append(proc)
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
    base = f"http://127.0.0.1:{port}"

    t_out: dict[str, float] = {}

    async def on_chunk(session, ctx, params) -> None:  # type: ignore[no-untyped-def]
        chunk = bytes(params.chunk)
        i = chunk.find(b"newClientOrderId=")
        if i >= 0:
            j = chunk.find(b"&", i)
            t_out[chunk[i + 17 : j if j >= 0 else None].decode()] = time.perf_counter()

    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(on_chunk)
    ex = BinanceExchange(API_KEY, API_SECRET, rest_url=f"{base}/api", ws_url=f"ws://127.0.0.1:{port}/",
                         session_params={"trace_configs": [trace]})
    t_in: dict[str, float] = {}
    last_arrival = [0.0]
    pending: dict[str, asyncio.Future] = {}
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task] = set()

    async def counter(fill: Fill) -> None:
        cid = "s" + fill.client_order_id[1:]
        await ex.place_order(PlaceOrder("BTCUSDT", cid, Side.SELL, OrderType.LIMIT, fill.qty,
                                        fill.price + Decimal(100)))
        fut = pending.pop(fill.client_order_id, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def sink(ev: object) -> None:  # the minimal reaction: a buy fill -> the counter sell
        if isinstance(ev, Fill) and ev.side is Side.BUY and ev.client_order_id.startswith("b"):
            t_in[ev.client_order_id] = last_arrival[0]
            task = loop.create_task(counter(ev))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    ex.set_event_sink(sink)
    await ex.start()
    ws_api = ex.client.ws_api
    orig = ws_api._handle_message

    def stamped(msg):  # type: ignore[no-untyped-def]
        if '"x":"TRADE"' in (msg if isinstance(msg, str) else msg.decode()):
            last_arrival[0] = time.perf_counter()
        return orig(msg)

    ws_api._handle_message = stamped

    warmup = 50
    async with aiohttp.ClientSession() as ctl:
        t_start = time.perf_counter()
        for i in range(n_fills + warmup):
            if i and i % 150 == 0:  # fill the resting counter sells: Binance allows 200 open orders per symbol
                async with ctl.post(f"{base}/_fake/set_price", json={"symbol": "BTCUSDT", "price": "60000"}) as r:
                    await r.read()
                await asyncio.sleep(0.05)
            price = Decimal("49999.00") - Decimal(i) / 100
            cid = f"b{i:06d}"
            await ex.place_order(PlaceOrder("BTCUSDT", cid, Side.BUY, OrderType.LIMIT, Decimal("0.001"), price))
            pending[cid] = loop.create_future()
            fut = pending[cid]
            async with ctl.post(f"{base}/_fake/set_price", json={"symbol": "BTCUSDT", "price": str(price)}) as r:
                await r.read()
            await asyncio.wait_for(fut, 5)
        elapsed = time.perf_counter() - t_start
        async with ctl.get(f"{base}/_fake/stats") as r:
            stats = await r.json()
    await ex.close()
    if fake is not None:
        await fake.stop()
    if proc is not None:
        proc.terminate()
        proc.wait(5)

    sent = stats["trade_event_sent_at"]
    received = stats["order_received_at"]
    inproc_ms: list[float] = []
    wire_ms: list[float] = []
    for i in range(warmup, n_fills + warmup):
        b, s = f"b{i:06d}", f"s{i:06d}"
        inproc_ms.append((t_out[s] - t_in[b]) * 1000)
        wire_ms.append((received[s] - sent[b]) * 1000)
    dup = [k for k, v in stats["order_posts"].items() if v != 1]
    print(f"fill reaction over loopback, {n_fills} fills (after {warmup} warm-up), fake {'in this process' if inproc else 'in its own process'}, "
          f"{(n_fills + warmup) / elapsed:.0f} rounds/s")
    print(f"{'measure':<46}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, vals in (("in-process: TRADE frame in -> counter order out", inproc_ms),
                       ("wire-to-wire: fake sends TRADE -> fake gets POST", wire_ms)):
        print(f"{name:<46}{statistics.median(vals):>9.3f}{pct(vals, 90):>9.3f}{pct(vals, 99):>9.3f}{max(vals):>9.3f}")
    print(f"targets: p50 <= 2 ms, p99 <= 10 ms; duplicate client order ids: {len(dup)}")


async def run_engine(n_fills: int, synchronous: str = "FULL") -> None:
    """The same measurement with the real TradingCore (grid machine + SQLite persistence before sending)."""
    import tempfile

    from tgtrader.core.api import GridSpec
    from tgtrader.core.config import CoreConfig
    from tgtrader.core.service import TradingCore
    from tgtrader.store import Database
    from tgtrader.store.core_store import CoreStore

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, env=env, text=True)
    _children.append(proc)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    base = f"http://127.0.0.1:{port}"
    posts: list[tuple[float, str]] = []  # (time the body left, side) of every order POST

    async def on_chunk(session, ctx, params) -> None:  # type: ignore[no-untyped-def]
        chunk = bytes(params.chunk)
        if b"newClientOrderId=" in chunk:
            side = "SELL" if b"side=SELL" in chunk else "BUY"
            posts.append((time.perf_counter(), side))

    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(on_chunk)
    ex = BinanceExchange(API_KEY, API_SECRET, rest_url=f"{base}/api", ws_url=f"ws://127.0.0.1:{port}/",
                         session_params={"trace_configs": [trace]})
    tmp = tempfile.TemporaryDirectory()
    db = await Database.open(Path(tmp.name) / "bench.db", synchronous=synchronous)
    core = TradingCore(ex, CoreStore(db), config=CoreConfig(timer_interval_s=0), mode="live")
    await core.start()
    arrivals: list[float] = []
    ws_api = ex.client.ws_api
    orig = ws_api._handle_message

    def stamped(msg):  # type: ignore[no-untyped-def]
        if '"x":"TRADE"' in (msg if isinstance(msg, str) else msg.decode()):
            arrivals.append(time.perf_counter())
        return orig(msg)

    ws_api._handle_message = stamped
    lo, hi = Decimal("49000"), Decimal("51000")  # 10 intervals of 200 (100 would not pay the 0.1 % fees: refused)
    pv = await core.preview_grid(GridSpec("BTCUSDT", lo, hi, 10, Decimal("20000")))
    assert pv.ok, pv.problems
    await core.start_grid(pv.token)
    await core.idle()
    await asyncio.sleep(0.5)
    await core.idle()
    latencies: list[float] = []
    async with aiohttp.ClientSession() as ctl:
        async def move(price: Decimal) -> None:
            async with ctl.post(f"{base}/_fake/set_price", json={"symbol": "BTCUSDT", "price": str(price)}) as r:
                await r.read()

        down, up = Decimal("49800"), Decimal("50000")  # a buy rests at 49800 (below the 50000 start)
        t_start = time.perf_counter()
        for i in range(n_fills + 50):
            n_arr, n_posts = len(arrivals), len(posts)
            await move(down if i % 2 == 0 else up)  # each step fills one order; the grid answers with one
            deadline = time.monotonic() + 5
            while (len(arrivals) == n_arr or len(posts) == n_posts) and time.monotonic() < deadline:
                await asyncio.sleep(0.0005)
            await core.idle()
            if len(arrivals) > n_arr and len(posts) > n_posts and i >= 50:
                latencies.append((posts[n_posts][0] - arrivals[n_arr]) * 1000)
        elapsed = time.perf_counter() - t_start
        async with ctl.get(f"{base}/_fake/stats") as r:
            stats = await r.json()
    await core.stop()
    await ex.close()
    await db.close()
    tmp.cleanup()
    proc.terminate()
    proc.wait(5)
    dup = [k for k, v in stats["order_posts"].items() if v != 1]
    print(f"fill reaction through the real TradingCore (grid 49000-51000 x10, SQLite commit before send, "
          f"synchronous={synchronous}), "
          f"{len(latencies)} fills measured, {(n_fills + 50) / elapsed:.0f} rounds/s")
    print(f"{'measure':<46}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    print(f"{'in-process: TRADE frame in -> counter order out':<46}{statistics.median(latencies):>9.3f}"
          f"{pct(latencies, 90):>9.3f}{pct(latencies, 99):>9.3f}{max(latencies):>9.3f}")
    print(f"targets: p50 <= 2 ms, p99 <= 10 ms; duplicate client order ids: {len(dup)}")


async def commit_cost(n: int = 1500) -> None:
    """One small write transaction alone, NORMAL vs FULL, alternating: the fsync a durable commit adds on this disk."""
    import tempfile

    from tgtrader.store import Database

    print(f"one write transaction alone ({n} commits each, database in {ROOT}):")
    for sync in ("NORMAL", "FULL", "NORMAL", "FULL"):
        with tempfile.TemporaryDirectory(dir=ROOT) as d:
            db = await Database.open(Path(d) / "commit.db", synchronous=sync)
            took = []
            for i in range(n):
                t0 = time.perf_counter()
                await db.kv.set("bench", str(i))
                took.append((time.perf_counter() - t0) * 1000)
            await db.close()
        print(f"  synchronous={sync:<7} p50 {statistics.median(took):.3f} ms  p90 {pct(took, 90):.3f} ms  "
              f"p99 {pct(took, 99):.3f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fills", type=int, default=1000)
    ap.add_argument("--inproc", action="store_true")
    ap.add_argument("--engine", action="store_true", help="react with the real TradingCore instead of the minimal callback")
    ap.add_argument("--sync", default="FULL", choices=("FULL", "NORMAL", "both"),
                    help="--engine: SQLite synchronous setting; 'both' measures NORMAL then FULL in one run")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    try:
        if args.engine:
            for sync in (("NORMAL", "FULL") if args.sync == "both" else (args.sync,)):
                asyncio.run(run_engine(args.fills, sync))
            if args.sync == "both":
                asyncio.run(commit_cost())
        else:
            asyncio.run(run(args.fills, args.inproc))
    finally:
        for child in _children:
            if child.poll() is None:
                child.kill()


if __name__ == "__main__":
    main()
