from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from tgtrader.core.risk import ExposureLimits, check_exposure, fixed_fraction, kelly, kelly_fraction
from tgtrader.core.rules import SymbolRules


def test_fixed_fraction_literature_example() -> None:
    r = fixed_fraction(D("10000"), D("0.01"), D("0.05"))
    assert r.ok and r.position_quote == D("2000") and r.fraction == D("0.2")


def test_fixed_fraction_rounds_to_rules(btc_rules: SymbolRules) -> None:
    r = fixed_fraction(D("10000"), D("0.01"), D("0.05"), price=D("43210.55"), rules=btc_rules)
    assert r.ok and r.qty == D("0.04628")  # 2000 / 43210.55 = 0.046285.. down to 0.00001
    assert r.position_quote is not None and r.position_quote <= D("2000")
    small = fixed_fraction(D("40"), D("0.01"), D("0.05"), price=D("43210.55"), rules=btc_rules)
    assert not small.ok and "NOTIONAL" in small.reason


def test_fixed_fraction_cap_and_bad_input() -> None:
    r = fixed_fraction(D("10000"), D("0.02"), D("0.01"))
    assert r.ok and r.fraction == 1 and "capped" in r.reason
    assert not fixed_fraction(D("10000"), D("0"), D("0.05")).ok
    assert not fixed_fraction(D("10000"), D("0.01"), D("1.5")).ok
    assert not fixed_fraction(D("-1"), D("0.01"), D("0.05")).ok


def test_kelly_half_and_cap() -> None:
    assert kelly_fraction(D("0.6"), D("2")) == D("0.4")
    r = kelly(D("10000"), D("0.6"), D("2"))
    assert r.ok and r.fraction == D("0.20") and "capped" not in r.reason  # half = 0.2, exactly the cap
    r = kelly(D("10000"), D("0.7"), D("2"))
    assert r.ok and r.fraction == D("0.20") and "capped" in r.reason  # half of 0.55 = 0.275 > 0.2
    r = kelly(D("10000"), D("0.55"), D("1"))
    assert r.ok and r.fraction == D("0.05") and r.position_quote == D("500")


def test_negative_kelly_means_no_trade() -> None:
    r = kelly(D("10000"), D("0.4"), D("1"))
    assert not r.ok and r.reason.startswith("no trade") and "loses money" in r.reason


def test_kelly_below_min_notional(btc_rules: SymbolRules) -> None:
    r = kelly(D("50"), D("0.55"), D("1"), price=D("50000"), rules=btc_rules)
    assert not r.ok and "too small" in r.reason


@given(
    capital=st.decimals(D("1"), D("10000000"), places=2),
    p=st.decimals(D("0"), D("1"), places=3),
    b=st.decimals(D("0.01"), D("100"), places=2),
    mult=st.decimals(D("0.1"), D("1"), places=2),
    cap=st.decimals(D("0.01"), D("1"), places=2),
)
def test_kelly_never_exceeds_cap(capital: D, p: D, b: D, mult: D, cap: D) -> None:
    r = kelly(capital, p, b, kelly_multiplier=mult, cap=cap)
    if r.ok:
        assert r.fraction is not None and 0 < r.fraction <= cap
        assert r.position_quote is not None and r.position_quote <= capital * cap
    r2 = kelly(capital, p, b, price=D("43210.55"), rules=_btc(), kelly_multiplier=mult, cap=cap)
    if r2.ok:
        assert r2.position_quote is not None and r2.position_quote <= capital * cap
        assert not _btc().check_order(__import__("tgtrader.types").types.Side.BUY,
                                      __import__("tgtrader.types").types.OrderType.LIMIT, r2.qty, D("43210.55"))


@given(
    capital=st.decimals(D("1"), D("10000000"), places=2),
    risk=st.decimals(D("0.001"), D("0.1"), places=3),
    stop=st.decimals(D("0.001"), D("0.5"), places=3),
    maxf=st.decimals(D("0.01"), D("1"), places=2),
)
def test_fixed_fraction_never_exceeds_cap(capital: D, risk: D, stop: D, maxf: D) -> None:
    r = fixed_fraction(capital, risk, stop, price=D("43210.55"), rules=_btc(), max_fraction=maxf)
    if r.ok:
        assert r.position_quote is not None and r.position_quote <= capital * maxf
        assert r.position_quote <= capital * risk / stop


def _btc() -> SymbolRules:
    from .conftest import REAL_RULES

    return REAL_RULES["BTCUSDT"]


def test_exposure_limits_name_the_breach() -> None:
    lim = ExposureLimits(max_per_grid=D("1000"), max_total_in_grids=D("2500"), max_open_orders=50)
    assert check_exposure(lim, D("1001")).limit == "max_per_grid"  # type: ignore[union-attr]
    assert check_exposure(lim, D("1000"), [D("1000"), D("600")]).limit == "max_total_in_grids"  # type: ignore[union-attr]
    b = check_exposure(lim, D("500"), [D("1000")], open_orders=45, new_orders=10)
    assert b is not None and b.limit == "max_open_orders" and "50" in str(b)
    assert check_exposure(lim, D("500"), [D("1000")], open_orders=10, new_orders=10) is None
    assert check_exposure(ExposureLimits(), D("1e9"), [], 10**6, 10**6) is None
