"""Trailing grids in the chat (issue 17): `trail_up=` / `trail_down=` parsed with specific replies, the preview's
promise, `/grid show` and `/status` with the moves and the range now, the two alerts, their /notify kind, and the
chart's marks (rendered to PNG, sizes and colours checked)."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from decimal import Decimal as D

import numpy as np
import pytest
from matplotlib.image import imread

from tests.chat.test_pnl_chart import size
from tests.core.sim import drive
from tgtrader.chat import alerts as a
from tgtrader.chat import parse as p
from tgtrader.chat import prefs
from tgtrader.chat import render as r
from tgtrader.chat.chart import STOP_MARKS, TRAIL_MARKS, render_chart_png
from tgtrader.chat.commands import BY_NAME, help_text
from tgtrader.core.api import ChartData, GridPreviewView, GridSpec, GridSummary, StatusView
from tgtrader.core.grid.plan import GridConfig, GridPreview
from tgtrader.core.ports import ExchangeHealth
from tgtrader.store.outbox import OutboxRow

CTX = p.Context(frozenset({"BTCUSDT"}), {"BTCUSDT": D("0.01")})
NEW = "/grid new BTCUSDT 40000 48000 4 1000"


def spec_of(text: str) -> GridSpec:
    req = p.parse(text, CTX)
    assert isinstance(req, p.GridNew)
    return req.spec


# ---------------------------------------------------------------- parse


def test_trailing_limits_are_parsed_with_the_other_options() -> None:
    spec = spec_of(NEW + " geo sl=35000 tp=60000 sell_on_stop accept_loss trail_up=56000 trail_down=36000")
    assert (spec.trail_up, spec.trail_down) == (D(56000), D(36000))
    assert spec.spacing == "geometric" and spec.stop_loss == D(35000) and spec.take_profit == D(60000)
    assert (spec.sell_on_stop, spec.accept_loss) == (True, True)
    assert spec_of(NEW + " TRAIL_UP=50000.5").trail_up == D("50000.5")
    assert (spec_of(NEW).trail_up, spec_of(NEW).trail_down) == (None, None)
    assert spec_of(NEW + " trail_down=1,000").trail_down == D(1000)
    assert "trail_up=PRICE" in p.SYNTAX["grid new"] and "trail_down=PRICE" in help_text("grid new")
    example = BY_NAME["grid"].topics[1][1]  # /help's example for /grid new parses, with its trailing limit
    assert "trail_up=71000" in example and p.parse(example, CTX) == p.parse(example)


@pytest.mark.parametrize("options, needle", [
    ("trail_up=47000", "trail_up must be above UPPER 48000, got 47000"),
    ("trail_up=48000", "trail_up must be above UPPER 48000, got 48000"),
    ("trail_down=40000", "trail_down must be below LOWER 40000, got 40000"),
    ("tp=55000 trail_up=56000", "trail_up 56000 must not be above tp 55000"),
    ("sl=37000 trail_down=36000", "trail_down 36000 must not be below sl 37000"),
    ("trail_up=abc", "trail_up must be a number, got 'abc'"),
    ("trail_up=", "trail_up must be a number"),
    ("trail_down=-5", "trail_down must be positive"),
    ("trail_down=0", "trail_down must be greater than 0"),
    ("trail_up=NaN", "trail_up must be a finite number"),
    ("trail_up=50000.001", "trail_up 50000.001 is not on the BTCUSDT price tick 0.01"),
    ("trail_up=50000 trail_up=52000", "given twice"),
    ("trail_up", "trail_up needs a price, e.g. trail_up=65000"),
    ("trailup=50000", "unknown option"),
])
def test_a_bad_trailing_limit_gets_a_short_specific_reply(options: str, needle: str) -> None:
    with pytest.raises(p.ParseError) as info:
        p.parse(f"{NEW} {options}", CTX)
    assert needle in info.value.reason and "\n" not in info.value.reason, info.value.reason
    assert info.value.syntax == p.SYNTAX["grid new"]


# ---------------------------------------------------------------- preview, /grid show, /status


def preview(spec: GridSpec) -> GridPreviewView:
    config = GridConfig(spec.symbol, spec.lower, spec.upper, spec.grids, spec.investment,
                        trail_up=spec.trail_up, trail_down=spec.trail_down)
    levels = (D(40000), D(42000), D(44000), D(46000), D(48000))
    core = GridPreview(config, D(44500), levels, D("0.0055"), D("4.1"), D("4.8"), D(1000), D(0), 3, 1, ())
    return GridPreviewView.of(core, "tok", spec, ())


def test_the_preview_names_the_limits_and_what_they_do_in_one_line() -> None:
    both = r.render_preview(preview(spec_of(NEW + " trail_up=56000 trail_down=36000"))).split("\n")
    at = both.index("Trailing: up to 56000, down to 36000")
    assert "the grid follows it one level at a time" in both[at + 1] and "no market orders" in both[at + 1]
    up = r.render_preview(preview(spec_of(NEW + " trail_up=56000")))
    assert "Trailing: up to 56000\n" in up and "the lowest buy moves to the top" in up and "down to" not in up
    down = r.render_preview(preview(spec_of(NEW + " trail_down=36000")))
    assert "Trailing: down to 36000\n" in down and "the top sell moves to the bottom" in down
    assert "Trailing" not in r.render_preview(preview(spec_of(NEW)))


def summary(**kw: object) -> GridSummary:
    grid = GridSummary(3, "BTCUSDT", "running", "", D(40000), D(48000), 4, "arithmetic", D(1000), D("0.0055"),
                       D("1.5"), D("0.1"), 2, D("0.01"), D(45000), D("-2"), D(52100), None, 4, 1_700_000_000_000)
    return replace(grid, **kw)  # type: ignore[arg-type]


def test_grid_show_and_status_show_the_limits_the_moves_and_the_range_now() -> None:
    moved = summary(trail_up=D(56000), trail_down=D(36000), moves_up=3, moves_down=1,
                    range_lower=D(44000), range_upper=D(52000))
    text = r.render_grid(moved, now_ms=1_700_000_100_000)
    assert "Range now 44000 - 52000 (set 40000 - 48000), 4 grids, arithmetic" in text
    assert "Trailing: up to 56000, down to 36000; moved up 3, down 1" in text
    waiting = r.render_grid(summary(trail_up=D(56000), range_lower=D(40000), range_upper=D(48000)), now_ms=0)
    assert "Range 40000 - 48000, 4 grids" in waiting and "Trailing: up to 56000; not moved yet" in waiting
    plain = r.render_grid(summary(), now_ms=0)  # a grid that does not trail reads as before
    assert "Range 40000 - 48000, 4 grids" in plain and "Trailing" not in plain
    status = StatusView("paper", (moved, summary(id=4)), 5, D(0), D(0), D(0), ExchangeHealth(1.0, 2.0, 0, 5, 40))
    lines = r.render_status(status).split("\n")
    assert any(line.startswith("  #3 BTCUSDT running 44000-52000 x4 (trailing up to 56000, down to 36000;"
                               " moved up 3, down 1) | grid profit") for line in lines)
    assert any(line.startswith("  #4 BTCUSDT running 40000-48000 x4 | grid profit") for line in lines)
    listing = r.render_grid_list([moved, summary(id=5, trail_down=D(36000))])
    assert "#3 BTCUSDT running 44000-52000 x4 (trailing up to 56000, down to 36000; moved up 3, down 1) |" in listing
    assert "#5 BTCUSDT running 40000-48000 x4 (trailing down to 36000) |" in listing


# ---------------------------------------------------------------- alerts and /notify

TRAILED_UP = {"grid_id": 3, "symbol": "BTCUSDT", "direction": "up", "lower": "44000", "upper": "52000",
              "price": "52100.5", "moves": 3}
TRAILED_DOWN = {**TRAILED_UP, "direction": "down", "lower": "38000", "upper": "46000", "price": "37990", "moves": 1}
STALLED_LIMIT = {"grid_id": 3, "symbol": "BTCUSDT", "direction": "up", "reason": "limit", "price": "58050",
                 "limit": "56000"}
STALLED_FILTERS = {**STALLED_LIMIT, "direction": "down", "reason": "filters", "price": "20", "limit": None}


def test_the_two_trailing_alerts_read_on_a_phone() -> None:
    texts = [a.render_alert(kind, json.loads(json.dumps(payload))) for kind, payload in (
        ("grid-trailed", TRAILED_UP), ("grid-trailed", TRAILED_DOWN),
        ("grid-trail-stopped", STALLED_LIMIT), ("grid-trail-stopped", STALLED_FILTERS))]
    assert texts == [
        "grid 3 BTCUSDT moved up at 52100.5: now trades 44000 - 52000 (3 moves up so far)",
        "grid 3 BTCUSDT moved down at 37990: now trades 38000 - 46000 (1 move down so far)",
        "grid 3 BTCUSDT stopped trailing up at 58050: the next move would pass its limit 56000;"
        " it waits for the price to come back into its range",
        "grid 3 BTCUSDT stopped trailing down at 20: the next level's order would not pass BTCUSDT's filters"
        " (order size or price tick); it waits for the price to come back into its range",
    ]
    for text in texts:
        assert "\n" not in text and len(text) < 200 and not re.search(r"[{}]|None|Decimal", text)
        assert a.outbox_text("grid-trailed", "", TRAILED_UP) != ""


@pytest.mark.parametrize("kind, payload", [("grid-trailed", TRAILED_UP), ("grid-trail-stopped", STALLED_LIMIT)])
def test_trailing_alerts_are_grid_state_for_notify(kind: str, payload: dict[str, object]) -> None:
    row = OutboxRow(1, None, kind, "", 0, 0, 0, None, None, dict(payload))
    assert prefs.row_kinds(row) == {"grids"}
    assert prefs.apply(row, {**prefs.DEFAULTS, "grids": "off"}) is None
    assert not prefs.loud(row, {**prefs.DEFAULTS, "grids": "silent"}) and prefs.loud(row, prefs.DEFAULTS)
    assert "trailing moves" in prefs.render(prefs.DEFAULTS)


# ---------------------------------------------------------------- /chart marks

T0 = 1_700_000_000_000


def chart(marks: tuple[tuple[int, str, D], ...]) -> ChartData:
    times = tuple(T0 + i * 60_000 for i in range(8))
    prices = (46000.0, 47500.0, 48100.0, 50200.0, 52100.0, 51000.0, 49000.0, 34900.0)
    levels = (D(44000), D(46000), D(48000), D(50000), D(52000))  # the levels now (moved up twice)
    return ChartData(3, "BTCUSDT", times, prices, levels, ((T0, "BUY", D(46000)),), stop_loss=D(35000),
                     marks=marks)


def has_colour(png: bytes, hex_colour: str, least: int = 15) -> bool:
    """At least `least` pixels of the colour (a small marker covers a few dozen)."""
    pixels = imread(io.BytesIO(png))[:, :, :3]
    want = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(pixels - want).max(axis=2) < 0.02).sum() >= least)


def test_chart_marks_trailing_moves_and_the_stop_trigger() -> None:
    marks = ((T0 + 180_000, "trail-up", D("50200")), (T0 + 240_000, "trail-up", D("52100")),
             (T0 + 360_000, "trail-down", D("49000")), (T0 + 420_000, "stop-loss", D("34900")))
    png = render_chart_png(chart(marks))
    assert size(png) == (900, 500) and len(png) > 10_000
    for _marker, colour, _label in TRAIL_MARKS.values():
        assert has_colour(png, colour)
    assert has_colour(png, STOP_MARKS["stop-loss"][0]) and not has_colour(png, STOP_MARKS["take-profit"][0])
    without = render_chart_png(chart(()))
    assert size(without) == (900, 500)
    for colour in [c for _m, c, _l in TRAIL_MARKS.values()] + [STOP_MARKS["stop-loss"][0]]:
        assert not has_colour(without, colour)
    tp = render_chart_png(chart(((T0 + 420_000, "take-profit", D("52000")), (T0 + 430_000, "take-profit",
                                                                             D("52000")), (T0, "future-kind", D(1)))))
    assert has_colour(tp, STOP_MARKS["take-profit"][0])  # an unknown kind is left out, not an error


def test_the_machines_own_trailing_alerts_render_and_are_grid_state() -> None:
    """The payloads the core writes (not hand-made): every move and stall renders to one line, /notify's grids."""
    from tests.core.test_trailing import started

    g, sim = started(trail_up=D("165"), trail_down=D("80"))
    for price in ("175", "180", "141", "75", "70"):  # up 2 moves, stall at the limit; down past its limit too
        drive(g, sim, [], sim.move(D(price)))
    rows = [x for x in sim.alerts if x.kind in a.TRAIL_ALERTS]
    assert {x.kind for x in rows} == set(a.TRAIL_ALERTS) and g.moves_up == 2 and g.moves_down >= 1
    for alert in rows:
        text = a.render_alert(alert.kind, json.loads(json.dumps(alert.payload)))
        assert text.startswith("grid 1 TESTUSDT ") and "\n" not in text and len(text) < 200, text
        assert not re.search(r"[{}]|None|Decimal", text), text
        assert prefs.row_kinds(OutboxRow(1, None, alert.kind, "", 0, 0, 0, None, None, alert.payload)) == {"grids"}
    texts = [a.render_alert(x.kind, x.payload) for x in rows]
    assert "grid 1 TESTUSDT moved up at 175: now trades 120 - 160 (2 moves up so far)" in texts
    assert any(t.startswith("grid 1 TESTUSDT stopped trailing up at 175: the next move would pass its limit 165")
               for t in texts), texts
