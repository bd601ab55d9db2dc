"""Trailing grids (issue 17) through the real python-telegram-bot Application against the fake Bot API, on the
paper core: `/grid new ... trail_up=... trail_down=...` answers with a preview that names the limits, Start runs a
grid that carries them, and when the price passes its top the alert, /grid show, /status and /chart follow the
move; a limit on the wrong side of the range is refused in one line before the core is asked."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tests.telegram.test_bot_e2e import ALICE, GRID, Stack

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


async def test_grid_new_with_trailing_limits_previews_them_and_starts_on_paper(stack: Stack) -> None:
    preview = await stack.ask(ALICE, GRID + " trail_up=70000 trail_down=35000")
    assert "Grid preview BTCUSDT" in preview and "Levels: 40000, 45000, 50000, 55000, 60000" in preview
    assert "Trailing: up to 70000, down to 35000" in preview and "no market orders" in preview, preview
    assert "Cannot start" not in preview
    assert [b["text"] for b in stack.fake.buttons(ALICE)] == ["Start", "Cancel"]
    assert not await stack.core.list_grids()  # the preview placed nothing

    started = await stack.press(ALICE, stack.fake.buttons(ALICE)[0]["callback_data"])
    assert "Grid #1 BTCUSDT started" in started
    config = stack.core.machines.grids[1].config  # the limits reached the grid the core runs
    assert (config.trail_up, config.trail_down) == (D(70000), D(35000))
    shown = await stack.ask(ALICE, "/grid show 1")
    assert "Range 40000 - 60000, 4 grids" in shown and "Trailing: up to 70000, down to 35000; not moved yet" in shown
    await stack.core.idle()

    await stack.price("56000", "61000", "65000")  # its sells fill, then 65000 is one step over the top: it moves
    await stack.fake.wait_for(lambda: any("moved up" in t for t in stack.fake.texts_to(ALICE)), timeout=5)
    alert = next(t for t in stack.fake.texts_to(ALICE) if "moved up" in t)
    assert "grid 1 BTCUSDT moved up at 65000: now trades 45000 - 65000 (1 move up so far)" in alert, alert
    shown = await stack.ask(ALICE, "/grid show 1")
    assert "Range now 45000 - 65000 (set 40000 - 60000)" in shown and "moved up 1" in shown, shown
    status = await stack.ask(ALICE, "/status")
    assert "#1 BTCUSDT running 45000-65000 x4 (trailing up to 70000, down to 35000; moved up 1)" in status, status
    assert (await stack.core.chart_data(1)).marks[-1][1:] == ("trail-up", D(65000))
    assert (await stack.ask(ALICE, "/chart 1", "sendPhoto")).startswith("Grid #1 BTCUSDT")


async def test_a_trailing_limit_inside_the_range_is_refused_before_the_core(stack: Stack) -> None:
    answer = await stack.ask(ALICE, GRID + " trail_up=55000")
    assert answer.startswith("trail_up must be above UPPER 60000, got 55000\nUsage: /grid new"), answer
    answer = await stack.ask(ALICE, GRID + " sl=38000 trail_down=36000")
    assert answer.startswith("trail_down 36000 must not be below sl 38000"), answer
    assert not await stack.core.list_grids() and not stack.fake.buttons(ALICE)
