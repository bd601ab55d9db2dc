from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgtrader.core import ids
from tgtrader.types import Side

VALID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


def test_formats_and_parse_back() -> None:
    cid = ids.grid_order_id(3, 12, Side.BUY, 45)
    assert cid == "tg-g3-12B45"
    p = ids.parse_client_order_id(cid)
    assert p is not None and (p.kind, p.owner_id, p.level, p.side, p.seq, p.role) == ("grid", 3, 12, Side.BUY, 45, "level")
    assert p.owner == "grid:3"
    assert ids.parse_client_order_id(ids.grid_order_id(3, "x", Side.BUY, 1)).role == "start"  # type: ignore[union-attr]
    assert ids.parse_client_order_id(ids.grid_order_id(3, "z", Side.SELL, 2)).role == "exit"  # type: ignore[union-attr]
    assert ids.owner_of(ids.stop_order_id(7, 2)) == "stop:7"
    assert ids.owner_of(ids.chase_order_id(9, 1)) == "chase:9"
    p = ids.parse_client_order_id(ids.panic_order_id(2, "BTCUSDT"))
    assert p is not None and p.kind == "panic" and p.symbol == "BTCUSDT"
    assert ids.owner_of(ids.manual_order_id(5)) == "manual:5"
    assert ids.owner_of("web_abcdef123") == "foreign"
    assert ids.parse_client_order_id("tg-g3-12Q45") is None


def test_too_long_is_refused() -> None:
    with pytest.raises(ValueError):
        ids.panic_order_id(1, "X" * 40)


@given(
    grid=st.integers(0, 10**9),
    level=st.integers(0, 200),
    side=st.sampled_from(list(Side)),
    seq=st.integers(0, 10**12),
)
def test_grid_ids_valid_and_round_trip(grid: int, level: int, side: Side, seq: int) -> None:
    cid = ids.grid_order_id(grid, level, side, seq)
    assert VALID.match(cid) and len(cid) <= 36
    p = ids.parse_client_order_id(cid)
    assert p is not None and (p.owner_id, p.level, p.side, p.seq) == (grid, level, side, seq)


@given(a=st.tuples(st.integers(0, 10**6), st.integers(0, 200), st.sampled_from(list(Side)), st.integers(0, 10**6)),
       b=st.tuples(st.integers(0, 10**6), st.integers(0, 200), st.sampled_from(list(Side)), st.integers(0, 10**6)))
def test_distinct_inputs_give_distinct_ids(a: tuple, b: tuple) -> None:
    if a != b:
        assert ids.grid_order_id(*a) != ids.grid_order_id(*b)


def test_a_grids_start_chase_legs_never_share_an_id_with_its_start_market_order() -> None:
    """Issue 13 item 13: the start chase numbered its legs tg-g3-xB1, tg-g3-xB2... exactly like the grid's start
    MARKET order (tg-g3-xB{seq}), so a chase that went to market could reuse an id."""
    from tgtrader.core.ids import chase_order_id, chase_prefix, grid_chase_prefix, grid_order_id, parse_client_order_id

    legs = {grid_chase_prefix(3) + str(n) for n in range(1, 50)}
    starts = {grid_order_id(3, "x", Side.BUY, n) for n in range(1, 50)}
    assert not legs & starts
    parsed = parse_client_order_id(grid_chase_prefix(3) + "7")
    assert parsed is not None and parsed.owner == "grid:3" and parsed.role == "start"
    assert chase_prefix(5) + "2" == chase_order_id(5, 2)
