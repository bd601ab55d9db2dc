"""Issue 16 item 5, durable alerts, with the real bot process: a fill's alert is on disk right after the fill, so a
SIGKILL 0.2 s later (Telegram unreachable meanwhile) still delivers it after the restart. The notifier used to
hold alerts in memory for a 1 s coalescing window; they were lost with the process."""

from __future__ import annotations

import asyncio

from tests.reliability.harness import Harness
from tests.waiting import wait_for


async def test_a_fill_alert_survives_a_sigkill_0_2_s_after_the_fill(harness: Harness) -> None:
    h = harness
    await h.start_bot()
    await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
    assert await h.settle(quiet_s=0.5)
    assert await h.outbox_drained(20)
    h.telegram.unreachable = True  # alerts can only wait in the outbox
    stored = h.db_rows("SELECT COUNT(*) FROM fills")[0][0]
    await h.move("BTCUSDT", "49400")  # the buy at 49500 fills
    await wait_for(lambda: h.db_rows("SELECT COUNT(*) FROM fills")[0][0] > stored, 10, "the fill stored")
    await asyncio.sleep(0.2)  # the scenario: the kill lands 0.2 s after the fill
    await h.kill_and_wait()
    assert h.fills_alerted(), h.outbox()[-3:]  # every fill of the run has its alert on disk
    h.telegram.unreachable = False
    sent = len(h.telegram.texts_to(h.chat_id))
    await h.start_bot()
    await wait_for(lambda: any("FILL BTCUSDT BUY" in t and "49500" in t
                               for t in h.telegram.texts_to(h.chat_id)[sent:]), 30, "the fill's alert delivered")
