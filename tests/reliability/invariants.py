"""The reliability suite's invariants (issue 7), checked by code against the fakes' truth and the bot's database:
every fill stored once, no client order id POSTed twice, each running grid's orders match the exchange, orders resting
at a kill kept, every alert delivered once. A mixin of `Harness`, whose fakes and database readers it uses."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from tgtrader.chat.alerts import outbox_text

GRID_CID = re.compile(r"^tg-g(\d+)-(n?\d+)([BS])(\d+)$")  # a grid order on the interval of rung group(2) (n: below 0)
OPEN = ("NEW", "PARTIALLY_FILLED")


class Invariants:
    """Checkers return human-readable problems (empty = the invariant holds)."""

    # ------------------------------------------------------------ invariants (issue 7), by code

    def check_fills(self) -> list[str]:
        """Every fill the exchange made is in the DB exactly once, with the exchange's price and qty."""
        problems = []
        fake = self.fake_fills()
        rows = self.db_fills()
        counts = Counter((s, int(t)) for s, t, *_ in rows)
        for key, n in counts.items():
            if n != 1:
                problems.append(f"fill {key} stored {n} times")
            if key not in fake:
                problems.append(f"fill {key} in DB but the exchange never made it")
        by_key = {(s, int(t)): (cid, Decimal(p), Decimal(q)) for s, t, cid, p, q in rows}
        for key, trade in fake.items():
            if key not in by_key:
                problems.append(f"fill {key} (order {trade.client_order_id}) missing from DB")
                continue
            _, price, qty = by_key[key]
            if price != trade.price or qty != trade.qty:
                problems.append(f"fill {key} stored as {qty}@{price}, exchange says {trade.qty}@{trade.price}")
        return problems

    def check_no_double_post(self) -> list[str]:
        """No client order id was POSTed twice (one intent, one order)."""
        return [f"client order id {cid} POSTed {n} times" for cid, n in self.binance.order_posts.items() if n > 1]

    def check_grid_orders(self, allow_missing: Iterable[tuple[int, int]] = ()) -> list[str]:
        """Each running grid: every interval has exactly one resting order on the exchange (none missing
        unless in flight in the DB), the DB agrees with the exchange about which orders rest, and no
        order rests on the exchange that the bot does not know."""
        problems = []
        allow = set(allow_missing)
        by_interval: dict[tuple[int, int], list[str]] = defaultdict(list)
        resting_cids = set()
        for o in self.resting():
            resting_cids.add(o.client_order_id)
            m = GRID_CID.match(o.client_order_id)
            if m:
                by_interval[(int(m.group(1)), _rung(m.group(2)))].append(o.client_order_id)
        for key, cids in by_interval.items():
            if len(cids) > 1:
                problems.append(f"grid {key[0]} interval {key[1]} has {len(cids)} resting orders: {cids}")
        db_orders = {cid: status for cid, status in self.db_rows("SELECT client_order_id, status FROM orders")}
        inflight = {cid for cid, st in db_orders.items() if st == "PENDING_NEW"}
        for cid in resting_cids:
            st = db_orders.get(cid)
            if st is None:
                problems.append(f"order {cid} rests on the exchange but the DB does not know it")
            elif st not in OPEN and st != "PENDING_NEW":
                problems.append(f"order {cid} rests on the exchange but the DB says {st}")
        for cid, st in db_orders.items():
            if st in OPEN and cid not in resting_cids:
                problems.append(f"DB says {cid} is {st} but it does not rest on the exchange")
        for g in self.grids():
            if g["state"] != "running" or not g["runtime"]:
                continue
            for i in (int(v[0]) for v in g["runtime"].get("intervals", [])):  # each interval's rung (trailing moves them)
                key = (g["id"], i)
                if key in by_interval or key in allow:
                    continue
                if any((m := GRID_CID.match(c)) and (int(m.group(1)), _rung(m.group(2))) == key for c in inflight):
                    continue
                problems.append(f"grid {g['id']} interval {i} has no resting order")
        return problems

    def check_restart_kept_orders(self) -> list[str]:
        """Orders resting at a SIGKILL were not cancelled by the restarted bot (only fills or our own
        pause/stop/panic may end them)."""
        problems = []
        by_id = {o.order_id: o for o in self.orders()}
        for oid in self.resting_at_kill:
            o = by_id[oid]
            if o.status.value == "CANCELED" and o.client_order_id not in self.user_cancels:
                problems.append(f"order {o.client_order_id} resting at a kill was cancelled after restart")
        return problems

    def outbox(self) -> list[tuple]:
        """(id, chat_id, kind, text as delivered, sent_ms) of every outbox row."""
        rows = self.db_rows("SELECT id, chat_id, kind, text, payload, sent_ms FROM outbox ORDER BY id")
        return [(rid, chat, kind, _worded(kind, text, payload), sent) for rid, chat, kind, text, payload, sent in rows]

    def check_outbox(self) -> list[str]:
        """Every outbox row is marked sent and its text reached Telegram exactly once (rows are merged into
        one message per chat, so occurrences are counted inside the accepted messages)."""
        problems = []
        rows = self.outbox()
        accepted: dict[int, list[str]] = defaultdict(list)
        for c in self.telegram.calls:
            if c.ok and c.method == "sendMessage":
                accepted[_int(c.params.get("chat_id")) or 0].append(str(c.params.get("text", "")))
        times: dict[int, list[tuple[float, str]]] = defaultdict(list)
        for c in self.telegram.calls:
            if c.ok and c.method == "sendMessage":
                times[_int(c.params.get("chat_id")) or 0].append((c.t, str(c.params.get("text", ""))))
        wanted: Counter[tuple[int, str]] = Counter()
        fills_wanted: Counter[int] = Counter()
        self.alert_dups_kill_window = []
        for rid, chat, kind, text, sent in rows:
            if sent is None:
                problems.append(f"alert {rid} ({kind}) never delivered")
            if chat is None:  # a row for "every chat": fanned out into one row per chat, which are checked
                continue
            if kind == "events":  # worded together with its neighbours at delivery (issue 16): count its fills
                fills_wanted[chat] += fills_reported(text)
                continue
            wanted[(chat, text)] += 1
        for chat, n in fills_wanted.items():
            seen = sum(fills_reported(msg) for msg in accepted[chat] if _is_alert(msg))
            if seen == n:
                continue
            if seen > n and self.kill_times:
                self.alert_dups_kill_window.append(f"{seen - n} fill(s) to chat {chat}")
                continue
            problems.append(f"{seen} fills reported to chat {chat}; the outbox has {n}")
        for (chat, text), n in wanted.items():
            seen = sum(_blocks(msg, text) for msg in accepted[chat])
            if seen == n:
                continue
            at = [t for t, msg in times[chat] if _blocks(msg, text)]
            if seen > n and any(at[0] <= k <= at[-1] for k in self.kill_times):
                self.alert_dups_kill_window.append(text[:80])
                continue
            problems.append(f"alert text delivered {seen} times, outbox has it {n} times: {text[:80]!r}")
        return problems

    def check_all(self, include_outbox: bool = True) -> dict[str, list[str]]:
        out = {
            "fills_exactly_once": self.check_fills(),
            "no_double_post": self.check_no_double_post(),
            "grid_orders_match_exchange": self.check_grid_orders(),
            "restart_kept_resting_orders": self.check_restart_kept_orders(),
        }
        if include_outbox:
            out["alerts_exactly_once"] = self.check_outbox()
        return out


def _rung(text: str) -> int:
    return -int(text[1:]) if text.startswith("n") else int(text)


def _blocks(message: str, text: str) -> int:
    """How many times `text` is one whole alert inside `message` (alerts are joined with a blank line; since
    issue 16 one may be preceded by its headline or time on the line above, or by '[time] ' in a digest), so
    'FILL X' is not counted inside 'FILL X (recovered)' or inside a fill summary's list."""
    n, i = 0, message.find(text)
    while i >= 0:
        end = i + len(text)
        if (i == 0 or message[i - 1] == "\n" or message[i - 2:i] == "] ") and (
                end == len(message) or message[end:end + 2] == "\n\n"):
            n += 1
        i = message.find(text, i + 1)
    return n


def _worded(kind: str, text: str, payload: str | None) -> str:
    """An outbox row's text as the notifier words it at delivery."""
    return outbox_text(kind, text, None if payload is None else json.loads(payload))


def fills_reported(text: str) -> int:
    """How many fills an alert reports: "N FILLS" summaries plus single "FILL ..." lines (unindented; the
    summary's own indented listing is not counted twice)."""
    n = 0
    for line in text.splitlines():
        m = re.match(r"^(\d+) FILLS$", line)
        n += int(m.group(1)) if m else line.startswith("FILL ")
    return n


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


_ALERT_PREFIXES = ("FILL ", "ROUND TRIP", "GRID #", "STREAM ", "ORDER REJECTED", "IP BANNED", "BAN OVER", "INSUFFICIENT",
                   "ERROR in", "STOP-LOSS", "TAKE-PROFIT", "Daily summary", "✅", "🛑", "🎯", "[", "While alerts")


def _is_alert(text: str) -> bool:
    first = text.lstrip()
    return first.startswith(_ALERT_PREFIXES) or first[:1] in ("✅", "🛑", "🎯", "⏹") or bool(  # money headlines
        re.match(r"^\d+ FILLS|^\d+ ROUND TRIP|^(grid|stop) \d+ [A-Z0-9]+: ", first))  # machines' alerts
