"""Full chaos run: the real bot process (`python -m tgtrader run`, live mode) against the loopback fake
Binance and fake Bot API, under every fault of issue 7 at once, with the invariants checked by code.

    .venv/bin/python bench/chaos.py            # ~5 min; prints a table, writes bench/results/chaos.json
    .venv/bin/python bench/chaos.py --quick    # a 1-minute smoke of the same script

Faults: >= 50 WebSocket drops (most right after a market jump that fills several orders, i.e. during
fill bursts), Binance's serverShutdown (then a close) on every stream connection and eventStreamTerminated
on the user data subscription (issue 14), refused reconnects (up to 30 s), REST 429/500/502/503 and 429/-1015
("too many new orders") on order placement, lost and late order answers,
>= 20 SIGKILLs (some exactly between the exchange executing an order and the bot storing its answer,
some while fills happen and the bot is dead), Telegram unreachable for minutes then 429, and finally
/panic during a fault storm (timed). Checked after every restart and at the end: every exchange fill
stored exactly once, no client order id POSTed twice, every grid interval has exactly one resting order
the DB agrees with, orders resting at a kill never cancelled by the restart, every alert delivered
exactly once once Telegram is back, no secret in any output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.fake_binance import ACCOUNT  # noqa: E402
from tests.reliability.harness import Harness, rss_kb  # noqa: E402

T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


GRIDS = [("BTCUSDT", "48000", "52000", 8, "1600"), ("ETHUSDT", "2800", "3200", 8, "1600"),
         ("ADAUSDT", "0.4500", "0.5500", 6, "100")]  # the fake's ADA MARKET_LOT_SIZE maxQty is 128


class Chaos:
    def __init__(self, tmp: Path, seed: int, quick: bool, telegram_down_s: float = 150.0) -> None:
        self.telegram_down_s = telegram_down_s
        self.rng = random.Random(seed)
        self.quick = quick
        self.h = Harness(tmp, log_level=os.environ.get("CHAOS_LOG_LEVEL", "INFO"), balances={"USDT": "1000000", "BTC": "2", "ETH": "30"})
        self.counts: dict[str, int] = {k: 0 for k in (
            "ws_drops", "ws_drops_in_burst", "server_shutdowns", "stream_terminations", "rest_1015",
            "refused_windows", "refused_s", "rest_429", "rest_5xx",
            "lost_answers", "late_answers", "sigkill", "sigkill_after_exec", "sigkill_with_fills_while_down",
            "market_moves", "invariant_checks", "telegram_down_s", "telegram_429")}
        self.violations: dict[str, list[str]] = {}
        self.timings: dict[str, Any] = {}
        self.gids: list[int] = []

    # ------------------------------------------------------------ helpers

    def record(self, result: dict[str, list[str]]) -> None:
        self.counts["invariant_checks"] += 1
        for name, problems in result.items():
            if problems:
                self.violations.setdefault(name, []).extend(problems[:5])

    async def jump(self, burst: bool = True) -> int:
        """Move one grid symbol to a random price inside (or just outside) its range: a burst of fills."""
        symbol, lo, hi, *_ = self.rng.choice(GRIDS)
        lo_d, hi_d = Decimal(lo), Decimal(hi)
        span = hi_d - lo_d
        frac = Decimal(str(self.rng.uniform(-0.05, 1.05)))
        tick = self.h.binance.rules[symbol].tick_size
        price = ((lo_d + span * frac) / tick).quantize(Decimal(1)) * tick
        self.counts["market_moves"] += 1
        return await self.h.move(symbol, price)

    async def drop(self, in_burst: bool) -> None:
        if in_burst:
            await self.jump()
            self.counts["ws_drops_in_burst"] += 1
        kind = self.rng.random()
        if kind < 0.15:  # Binance's planned shutdown: serverShutdown on every connection, closed soon after
            self.h.binance.server_shutdown(close_after_s=self.rng.uniform(0.3, 1.5))
            self.counts["server_shutdowns"] += 1
        elif kind < 0.25:  # the user data subscription ends while the connection stays up
            self.counts["stream_terminations"] += self.h.binance.terminate_user_streams()
        else:
            await self.h.binance.drop_websockets()
            self.counts["ws_drops"] += 1

    def rest_fault(self) -> None:
        kind = self.rng.choice(["429", "1015", "500", "502", "503", "lost", "late", "none"])
        order = "/api/v3/order"
        if kind == "429":
            self.h.binance.fail_next(429, retry_after=1, path=order)
            self.counts["rest_429"] += 1
        elif kind == "1015":  # another client of the account used up the ORDERS count: new orders get -1015
            self.h.binance.use_up_order_count()  # until the 10 s window turns (cancels and reads still work)
            self.counts["rest_1015"] += 1
        elif kind in ("500", "502", "503"):
            self.h.binance.fail_next(int(kind), path=order)
            self.counts["rest_5xx"] += 1
        elif kind == "lost":
            self.h.binance.lose_next_order_response()
            self.counts["lost_answers"] += 1
        elif kind == "late":
            self.h.binance.delay_next(self.rng.uniform(1.0, 3.0))
            self.counts["late_answers"] += 1

    async def kill_cycle(self) -> None:
        h = self.h
        mode = self.rng.choice(["random", "after_exec", "after_exec", "random"])
        if mode == "after_exec":
            fired: list[str] = []

            def kill_now(cid: str) -> None:
                if not fired and h.alive:
                    fired.append(cid)
                    h.note_kill()
                    os.kill(h.pid(), signal.SIGKILL)

            h.binance.after_order_hook = kill_now
            for _ in range(6):  # jumps until the bot sends an order (a fill's counter order)
                await self.jump()
                await asyncio.sleep(0.3)
                if fired:
                    break
            h.binance.after_order_hook = None
            if fired:
                self.counts["sigkill_after_exec"] += 1
            else:
                h.kill()
        else:
            await self.jump()
            await asyncio.sleep(self.rng.uniform(0.0, 0.6))
            h.kill()
        await h.wait_exit()
        self.counts["sigkill"] += 1
        if self.rng.random() < 0.6:  # fills while the bot is dead
            if await self.jump() > 0:
                self.counts["sigkill_with_fills_while_down"] += 1
        await h.start_bot(wait_telegram=not h.telegram.unreachable)
        ok = await h.settle(timeout=60, quiet_s=1.0)
        result = h.check_all(include_outbox=False)
        log(f"kill #{self.counts['sigkill']} ({mode}) settled={ok} problems={sum(len(v) for v in result.values())}")
        if not ok:
            self.violations.setdefault("settle_after_restart", []).append(
                f"restart {self.counts['sigkill']}: " + "; ".join(p for v in result.values() for p in v)[:300])
        self.record(result)

    # ------------------------------------------------------------ phases

    async def run(self) -> dict[str, Any]:
        h = self.h
        t_start = time.monotonic()
        await h.start()
        await h.start_bot()
        await h.command("/start")
        for symbol, lo, hi, n, invest in GRIDS:
            self.gids.append(await h.create_grid(symbol, lo, hi, n, invest))
        assert await h.settle(quiet_s=1.0)
        rss_start = rss_kb(h.pid())

        rounds = 6 if self.quick else 22
        drops_per_round = 1 if self.quick else 3
        tg_down_at = 2 if self.quick else 3
        tg_down_for = 10.0 if self.quick else self.telegram_down_s
        refuse_at = {3: 8.0} if self.quick else {7: 30.0, 17: 15.0}
        tg_down_t = 0.0
        for rnd in range(rounds):
            if rnd == tg_down_at:
                h.telegram.unreachable = True
                tg_down_t = time.monotonic()
                log("Telegram unreachable")
            if h.telegram.unreachable and tg_down_t and time.monotonic() - tg_down_t >= tg_down_for:
                self.counts["telegram_down_s"] = int(time.monotonic() - tg_down_t)
                h.telegram.fail_next("sendMessage", retry_after=2, times=3)
                self.counts["telegram_429"] += 3
                h.telegram.unreachable = False
                self.timings["telegram_back_at"] = time.monotonic()
                log("Telegram back (429 first)")
            log(f"round {rnd}: drops so far {self.counts['ws_drops']}, kills {self.counts['sigkill']}")
            for _ in range(drops_per_round):
                self.rest_fault()
                await self.drop(in_burst=self.rng.random() < 0.8)
                await asyncio.sleep(self.rng.uniform(0.2, 1.2))
            if rnd in refuse_at:
                secs = refuse_at[rnd]
                h.binance.refuse_ws_for(secs)
                await self.drop(in_burst=True)
                self.counts["refused_windows"] += 1
                self.counts["refused_s"] += int(secs)
                t0 = time.monotonic()
                while time.monotonic() - t0 < secs:  # the market keeps moving while the bot is cut off
                    await self.jump()
                    await asyncio.sleep(2.0)
                back = time.monotonic()
                ok = await h.settle(timeout=90, quiet_s=1.0)
                self.timings.setdefault("catch_up_after_refusal_s", []).append(round(time.monotonic() - back, 1))
                if not ok:
                    self.violations.setdefault("settle_after_refusal", []).append(f"round {rnd}")
                self.record(h.check_all(include_outbox=False))
            await self.kill_cycle()
        while h.telegram.unreachable and time.monotonic() - tg_down_t < tg_down_for:  # keep it down long enough
            await self.drop(in_burst=True)
            await asyncio.sleep(2.0)
        if h.telegram.unreachable:
            h.telegram.fail_next("sendMessage", retry_after=2, times=3)
            self.counts["telegram_429"] += 3
            h.telegram.unreachable = False
            self.counts["telegram_down_s"] = int(time.monotonic() - tg_down_t)
            self.timings["telegram_back_at"] = time.monotonic()
        # let the last faults play out, then the full check including alerts
        if not await h.settle(timeout=60, quiet_s=1.5):
            self.violations.setdefault("final_settle", []).append("did not settle in 60 s")
        log("final checks")
        await asyncio.sleep(1.5)
        log("waiting for the outbox to drain")
        drained = await h.outbox_drained(timeout=300)
        self.timings["alerts_drained_after_telegram_back_s"] = round(time.monotonic() - self.timings.pop("telegram_back_at"), 1)
        if not drained:
            self.violations.setdefault("outbox_not_drained", []).append("unsent alerts remain")
        await asyncio.sleep(1.0)
        self.record(h.check_all(include_outbox=True))
        rss_end = rss_kb(h.pid())

        # /panic during a fault storm
        panic = await self.panic_storm()

        rc = await h.stop_bot(timeout=30)
        leaks = h.scan_secrets()
        if leaks:
            self.violations["secrets"] = leaks
        fills = len(h.fake_fills())
        outbox = h.outbox()
        return {
            "seed": self.seed_used, "quick": self.quick, "wall_s": round(time.monotonic() - t_start, 1),
            "counts": self.counts, "fills": fills, "orders_posted": len(h.binance.order_posts),
            "alerts": len([r for r in outbox if r[1] is not None]),
            "alert_duplicates_from_kill_between_send_and_mark": len(h.alert_dups_kill_window), "alerts_recovered_mentions": sum(r[3].count("(recovered)") for r in outbox),
            "restarts": len(h.runs) - 1, "timings": self.timings, "panic": panic,
            "violations": self.violations, "graceful_stop_rc": rc,
            "rss_kb_last_process": {"start_of_first": rss_start, "end_before_panic": rss_end},
        }

    async def panic_storm(self) -> dict[str, Any]:
        h = self.h
        stop = asyncio.Event()

        async def storm() -> None:
            while not stop.is_set():
                await h.binance.drop_websockets()
                self.counts["ws_drops"] += 1
                await asyncio.sleep(0.7)

        await h.command("/panic")
        h.binance.fail_next(503, path="/api/v3/openOrders")
        h.binance.fail_next(429, retry_after=1, path="/api/v3/order")
        h.binance.fail_next(502)
        h.telegram.fail_next("editMessageText", retry_after=1)
        task = asyncio.create_task(storm())
        t0 = time.monotonic()
        try:
            answer = await h.press("CONFIRM PANIC", timeout=120)
        finally:
            elapsed = time.monotonic() - t0
            stop.set()
            await task
        for o in h.orders():
            h.user_cancels.add(o.client_order_id)
        await asyncio.sleep(2.0)
        open_left = len(h.resting())
        rules = h.binance.rules
        leftovers = {}
        for symbol, *_ in GRIDS:  # /panic sells what the bot bought; the trader's own holdings stay (issue 13)
            base = rules[symbol].base_asset
            bal = h.binance.engine.balance(ACCOUNT, base)
            bots = bal.free + bal.locked - Decimal(h.balances.get(base, "0"))
            if bots * h.binance.prices[symbol] >= rules[symbol].min_notional:
                leftovers[base] = str(bots)
        if open_left or leftovers:
            self.violations.setdefault("panic_not_flat", []).append(f"open={open_left} leftovers={leftovers}")
        self.counts["ws_drops"] += 0
        return {"seconds_press_to_report": round(elapsed, 2), "open_orders_left": open_left,
                "assets_above_min_notional_left": leftovers, "report_first_line": answer.splitlines()[0] if answer else ""}


def table(res: dict[str, Any]) -> str:
    c, v = res["counts"], res["violations"]
    ok = lambda *names: "PASS" if not any(v.get(n) for n in names) else "FAIL"  # noqa: E731
    rows = [
        ("WebSocket drops (market + user data)", f"{c['ws_drops']} ({c['ws_drops_in_burst']} right after a fill burst)",
         "every exchange fill stored exactly once", ok("fills_exactly_once")),
        ("serverShutdown, then close (market + WS-API)", f"{c['server_shutdowns']}",
         "every exchange fill stored exactly once", ok("fills_exactly_once")),
        ("eventStreamTerminated (user data)", f"{c['stream_terminations']}",
         "every exchange fill stored exactly once", ok("fills_exactly_once")),
        ("429 / -1015 on orders (too many new orders)", f"{c['rest_1015']}", "no client order id POSTed twice",
         ok("no_double_post")),
        ("Refused reconnects", f"{c['refused_windows']} windows, {c['refused_s']} s total",
         f"caught up after refusal in {res['timings'].get('catch_up_after_refusal_s')} s", ok("settle_after_refusal")),
        ("REST 429 / 5xx on orders", f"{c['rest_429']} / {c['rest_5xx']}", "no client order id POSTed twice",
         ok("no_double_post")),
        ("Lost / late order answers", f"{c['lost_answers']} / {c['late_answers']}", "order looked up, never re-sent",
         ok("no_double_post")),
        ("SIGKILL + restart", f"{c['sigkill']} ({c['sigkill_after_exec']} between execution and stored ack, "
         f"{c['sigkill_with_fills_while_down']} with fills while down)",
         "intervals = exchange orders; resting orders kept", ok("grid_orders_match_exchange", "restart_kept_resting_orders",
                                                               "settle_after_restart")),
        ("Telegram unreachable, then 429", f"{c['telegram_down_s']} s down, {c['telegram_429']} x 429",
         f"{res['alerts']} alerts delivered exactly once, "
         f"{res['alert_duplicates_from_kill_between_send_and_mark']} re-sent after a kill "
         f"({res['timings'].get('alerts_drained_after_telegram_back_s')} s after Telegram came back)",
         ok("alerts_exactly_once", "outbox_not_drained")),
        ("/panic during a fault storm", "drops every 0.7 s, 503/502/429 on REST, 429 on Telegram",
         f"flat in {res['panic']['seconds_press_to_report']} s: {res['panic']['open_orders_left']} open orders left",
         ok("panic_not_flat")),
        ("Secrets in every output", "logs, stdout/stderr, Telegram calls, SQLite bytes", "key/secret/token absent",
         ok("secrets")),
    ]
    w = [max(len(r[i]) for r in rows + [("Injected", "How many", "Checked", "Result")]) for i in range(4)]
    lines = [" | ".join(h.ljust(w[i]) for i, h in enumerate(("Injected", "How many", "Checked", "Result")))]
    lines.append("-+-".join("-" * x for x in w))
    lines += [" | ".join(r[i].ljust(w[i]) for i in range(4)) for r in rows]
    lines.append(f"{c['invariant_checks']} invariant checks, {res['fills']} fills, {res['orders_posted']} orders, "
                 f"{res['restarts']} restarts, {res['wall_s']} s wall; violations: {sum(len(x) for x in v.values())}")
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    with tempfile.TemporaryDirectory(prefix="tgtrader-chaos-") as tmp:
        if args.keep:
            tmp = tempfile.mkdtemp(prefix="tgtrader-chaos-kept-")
            log(f"keeping files in {tmp}")
        chaos = Chaos(Path(tmp), seed, args.quick, args.telegram_down)
        chaos.seed_used = seed  # type: ignore[attr-defined]
        try:
            res = await chaos.run()
        finally:
            await chaos.h.close()
    out = ROOT / "bench" / "results" / ("chaos-quick.json" if args.quick else "chaos.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    print(table(res))
    print(f"seed {seed}; results in {out.relative_to(ROOT)}")
    return 0 if not res["violations"] else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run (~1 min)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--telegram-down", type=float, default=150.0, help="seconds Telegram stays unreachable")
    ap.add_argument("--keep", action="store_true", help="keep the run's DB, logs and process output")
    return asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
