"""Telegram unreachable (connections dropped), a SIGKILL and a restart while it is down, then Telegram back
with 429 flood control: the bot keeps trading throughout and every outbox alert arrives exactly once.
Notifier-level tests (coalescing, retry_after) are in tests/telegram/test_notify.py."""

from __future__ import annotations

import asyncio
import time

from tests.reliability.harness import Harness
from tests.reliability.test_crash_restart import assert_invariants


async def test_telegram_down_kill_restart_then_429_alerts_exactly_once(harness: Harness) -> None:
    h = harness
    await h.start_bot()
    await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
    assert await h.settle(quiet_s=0.5)

    h.telegram.unreachable = True
    await h.move("BTCUSDT", "49400")  # fills while Telegram is down: alerts wait in the outbox
    assert await h.settle(quiet_s=0.5)
    await h.alerts_written()  # the fills' alert is in the outbox before the kill (a buffered one would be lost)
    await h.kill_and_wait()
    await h.move("BTCUSDT", "50100")  # and while the bot is dead too
    await h.start_bot(wait_telegram=False)  # Telegram still down: the bot must start and trade anyway
    assert await h.settle(quiet_s=0.5)
    await h.move("BTCUSDT", "49400")
    assert await h.settle(quiet_s=0.5)
    await h.alerts_written()  # recovered and new fills alerted; Telegram is down, so nothing leaves the outbox
    pending = h.db_rows("SELECT COUNT(*) FROM outbox WHERE sent_ms IS NULL")[0][0]
    assert pending >= 2, pending
    assert_invariants(h, outbox=False)

    h.telegram.fail_next("sendMessage", retry_after=1, times=2)  # back, but flood control first
    h.telegram.unreachable = False
    back = time.monotonic()
    assert await h.outbox_drained(timeout=45)
    delivered_after = time.monotonic() - back
    await asyncio.sleep(1.0)  # a duplicate would show up now
    assert_invariants(h)
    assert any(not c.ok and c.method == "sendMessage" for c in h.telegram.calls)  # the 429s were hit
    texts = [row[3] for row in h.outbox()]
    assert any("(recovered)" in t for t in texts), texts
    assert delivered_after < 45
