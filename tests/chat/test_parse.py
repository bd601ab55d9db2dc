"""The command parser: typed requests for good input, one-line reasons with the syntax for bad input."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgtrader.chat import parse as p
from tgtrader.types import Side

CTX = p.Context(frozenset({"BTCUSDT", "ETHUSDT", "SHIBUSDT"}),
                {"BTCUSDT": Decimal("0.01"), "ETHUSDT": Decimal("0.01"), "SHIBUSDT": Decimal("1E-12")})


def err(text: str, ctx: p.Context = CTX) -> p.ParseError:
    with pytest.raises(p.ParseError) as info:
        p.parse(text, ctx)
    return info.value


def test_grid_new_full() -> None:
    req = p.parse("/grid new btcusdt 60000 70000 10 1000 geo sl=58000 tp=72000 sell_on_stop", CTX)
    assert isinstance(req, p.GridNew)
    spec = req.spec
    assert (spec.symbol, spec.lower, spec.upper, spec.grids, spec.investment) == (
        "BTCUSDT", Decimal(60000), Decimal(70000), 10, Decimal(1000))
    assert spec.spacing == "geometric" and spec.stop_loss == Decimal(58000) and spec.take_profit == Decimal(72000)
    assert spec.sell_on_stop


def test_grid_bot_suffix_and_defaults() -> None:
    req = p.parse("/grid@tgtrader_bot new BTCUSDT 60000.5 70000 2 0.5")
    assert isinstance(req, p.GridNew) and req.spec.spacing == "arithmetic" and req.spec.grids == 2


@pytest.mark.parametrize(
    "text, needle",
    [
        ("/grid new DOGEUSDT 1 2 10 100", "unknown symbol DOGEUSDT"),
        ("/grid new BTCUSDT abc 70000 10 1000", "LOWER must be a number"),
        ("/grid new BTCUSDT NaN 70000 10 1000", "finite"),
        ("/grid new BTCUSDT 60000 Infinity 10 1000", "finite"),
        ("/grid new BTCUSDT 70000 60000 10 1000", "LOWER must be below UPPER"),
        ("/grid new BTCUSDT 60000 60000 10 1000", "LOWER must be below UPPER"),
        ("/grid new BTCUSDT 60000 70000 1 1000", "GRIDS must be from 2 to 200"),
        ("/grid new BTCUSDT 60000 70000 201 1000", "GRIDS must be from 2 to 200"),
        ("/grid new BTCUSDT 60000 70000 2.5 1000", "GRIDS must be a whole number"),
        ("/grid new BTCUSDT 60000 70000 10 -5", "must be positive"),
        ("/grid new BTCUSDT 60000 70000 10 0", "greater than 0"),
        ("/grid new BTCUSDT 60000.001 70000 10 1000", "not on the BTCUSDT price tick 0.01"),
        ("/grid new BTCUSDT 60000 70000 10 1000 geo sl=1 tp=80000 sell accept_loss trail_up=75000 trail_down=2 x",
         "too many arguments"),
        ("/grid new BTCUSDT 60000 70000 10 1000 wat", "unknown option"),
        ("/grid new BTCUSDT 60000 70000 10 1000 sl=61000", "sl must be below LOWER"),
        ("/grid new BTCUSDT 60000 70000 10 1000 tp=69000", "tp must be above UPPER"),
        ("/grid new BTCUSDT 60000 70000 10 1000 geo arith", "given twice"),
        ("/grid new BTCUSDT 60000 70000", "missing"),
        ("/grid new BTCUSDT 1e5 70000 10 1000", "must be a number"),
        ("/grid show x", "whole number"),
        ("/grid show 0", "positive"),
        ("/grid stop 3 now", "expected 'sell'"),
        ("/grid frobnicate", "unknown /grid action"),
        ("/grid list extra", "too many arguments"),
        ("/buy BTCUSDT 0", "greater than 0"),
        ("/buy BTCUSDT 1 2", "expected max=PRICE"),
        ("/buy BTCUSDT 1 max=65000.005", "not on the BTCUSDT price tick"),
        ("/sell BTCUSDT", "missing"),
        ("/stop BTCUSDT 62000 medium", "soft, hard or tp"),
        ("/stop cancel abc", "whole number"),
        ("/size BTCUSDT 100 100", "STOP must differ"),
        ("/size BTCUSDT 100 90 150", "below 100"),
        ("/size kelly 1.5 2", "between 0 and 1"),
        ("/size kelly 0.5", "missing"),
        ("/pnl 0", "from 1 to"),
        ("/pnl x", "whole number"),
        ("/status now", "too many arguments"),
        ("/frob", "unknown command /frob"),
        ("hello", "not a command"),
        ("", "empty message"),
        ("/chart", "missing grid ID"),
        ("/grid new 1234 1 2 10 100", "is not a symbol"),
        ("/grid new BTCUSDT 1 99999999999999999999 10 100", "too many digits"),
        ("/buy BTCUSDT 0.0000000000001", "too many digits"),
    ],
)
def test_bad_input_gets_reason_and_syntax(text: str, needle: str) -> None:
    error = err(text)
    assert needle in error.reason, error.reason
    assert "\n" not in error.reason
    if text.startswith("/grid new"):
        assert error.syntax == p.SYNTAX["grid new"]


def test_other_commands() -> None:
    assert p.parse("/grid") == p.GridList()
    assert p.parse("/grid list") == p.GridList()
    assert p.parse("/grid show #3") == p.GridShow(3)
    assert p.parse("/grid 3") == p.GridShow(3)
    assert p.parse("/grid stop 3 sell") == p.GridStop(3, True)
    assert p.parse("/grid pause 2") == p.GridPause(2)
    assert p.parse("/grid resume 2") == p.GridResume(2)
    assert p.parse("/orders ethusdt", CTX) == p.Orders("ETHUSDT")
    assert p.parse("/pnl 30") == p.Pnl(30)
    assert p.parse("/size BTCUSDT 65000 63000 1%", CTX) == p.SizeFixed("BTCUSDT", Decimal(65000), Decimal(63000), Decimal("0.01"))
    assert p.parse("/size kelly 55% 1.5") == p.SizeKelly(Decimal("0.55"), Decimal("1.5"))
    assert p.parse("/size kelly 0.55 1.5") == p.SizeKelly(Decimal("0.55"), Decimal("1.5"))
    assert p.parse("/buy BTCUSDT 0.01 max=65100", CTX) == p.Trade(Side.BUY, "BTCUSDT", Decimal("0.01"), Decimal(65100))
    assert p.parse("/sell BTCUSDT 0.01", CTX) == p.Trade(Side.SELL, "BTCUSDT", Decimal("0.01"), None)
    assert p.parse("/stop BTCUSDT 62000 hard", CTX) == p.StopAdd("BTCUSDT", Decimal(62000), "hard")
    assert p.parse("/stop cancel 2") == p.StopCancel(2)
    assert p.parse("/stops") == p.StopList()
    assert p.parse("/panic") == p.Panic()
    assert p.parse("/resume_all") == p.ResumeAll()
    assert p.parse("/chart 1") == p.Chart(1)
    assert p.parse("/balance") == p.Balances()
    assert p.parse("/start") == p.Start()


def test_every_command_answers_help() -> None:
    for name in p.PARSERS:
        req = p.parse(f"/{name} help")
        assert isinstance(req, p.Help)
        assert req.command == name
    assert p.parse("/grid new help") == p.Help("grid new")
    assert p.parse("/size kelly help") == p.Help("size kelly")
    assert p.parse("/help grid") == p.Help("grid")
    assert p.parse("/help grid new") == p.Help("grid new")
    assert p.parse("/help /size kelly") == p.Help("size kelly")
    assert p.parse("/help") == p.Help(None)


def test_without_context_symbols_are_not_checked() -> None:
    req = p.parse("/grid new XYZUSDT 1 2 10 100")
    assert isinstance(req, p.GridNew)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text_only_parse_errors(text: str) -> None:
    try:
        p.parse(text, CTX)
    except p.ParseError as exc:
        assert exc.answer()


WORDS = st.sampled_from(
    ["/grid", "new", "list", "show", "stop", "sell", "BTCUSDT", "ethusdt", "NaN", "-1", "0", "1e9", "60000",
     "70000", "10", "1000", "geo", "sl=", "tp=5", "max=", "%", "/size", "kelly", "/buy", "/pnl", "/stop",
     "cancel", "#3", "help", "0.001", "1,000", "999999999999999999999", ".5", "5.", "∞", "\x00", "/chart",
     "SHIBUSDT", "999999999999999.999999999999", "max=999999999999999", "sl=0.000000000001"]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(WORDS, st.text(max_size=8)), max_size=12))
def test_fuzz_command_like_text(words: list[str]) -> None:
    text = " ".join(words)
    try:
        p.parse(text, CTX)
    except p.ParseError as exc:
        assert exc.answer()
