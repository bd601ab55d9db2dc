"""/pnl chart (issue 17): daily realized PnL as bars, rendered to PNG; sizes and non-empty content checked."""

from __future__ import annotations

import io
import struct
from decimal import Decimal as D

import numpy as np
from matplotlib.image import imread

from tgtrader.chat import parse as p
from tgtrader.chat.pnl_chart import GAIN, LOSS, render_pnl_png
from tgtrader.core.api import PnlView

PNG = b"\x89PNG\r\n\x1a\n"


def size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG)
    return struct.unpack(">II", png[16:24])


def has_colour(png: bytes, hex_colour: str) -> bool:
    pixels = imread(io.BytesIO(png))[:, :, :3]
    want = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(pixels - want).max(axis=2) < 0.02).sum() > 50)


def test_parse() -> None:
    assert p.parse("/pnl chart") == p.Pnl(30, True)
    assert p.parse("/pnl chart 7") == p.Pnl(7, True)
    assert p.parse("/pnl 7") == p.Pnl(7)


def test_gains_and_losses_as_bars() -> None:
    view = PnlView(days=(("2026-11-28", D("12.5"), 3), ("2026-11-29", D("-4.25"), 1), ("2026-11-30", D("7"), 2)),
                   total=D("15.25"))
    png = render_pnl_png(view)
    assert size(png) == (900, 400) and len(png) > 10_000
    assert has_colour(png, GAIN) and has_colour(png, LOSS)


def test_no_days_still_renders() -> None:
    png = render_pnl_png(PnlView(days=(), total=D(0)))
    assert size(png) == (900, 400)
    assert not has_colour(png, GAIN) and not has_colour(png, LOSS)


async def test_dispatcher_answers_with_a_photo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tgtrader.chat.dispatch import Dispatcher
    from tgtrader.core.config import CoreConfig
    from tgtrader.core.events import EventBus
    from tgtrader.core.service import TradingCore
    from tgtrader.exchange.paper import PaperExchange
    from tgtrader.store.core_store import CoreStore
    from tgtrader.store.db import Database

    db = await Database.open(tmp_path / "p.sqlite")
    paper = PaperExchange(db, initial_balances={"USDT": D("1000")})
    core = TradingCore(paper, CoreStore(db), EventBus(), CoreConfig(timer_interval_s=0), mode="paper")
    await core.start()
    try:
        reply = await Dispatcher(core).dispatch("/pnl chart 14", 1)
        assert reply.photo is not None and size(reply.photo) == (900, 400)
        assert reply.text.startswith("Realized PnL per day, last 14 days")
        assert "Realized profit per day" in (await Dispatcher(core).dispatch("/pnl", 1)).text
    finally:
        await core.stop()
        await paper.close()
        await db.close()
