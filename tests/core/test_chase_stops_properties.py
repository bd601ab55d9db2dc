"""Hypothesis properties of the chase and stop machines on real symbol rules."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tgtrader.core.chase import Chase
from tgtrader.core.stops import Stop
from tgtrader.types import OrderType, PlaceOrder, ReplaceOrder, Side, Tick

from .conftest import REAL_RULES
from .sim import Sim, drive

CENTER = {"BTCUSDT": D("50000"), "ETHUSDT": D("3500"), "XRPUSDT": D("1.1"), "BNBUSDT": D("400")}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    symbol=st.sampled_from(sorted(s for s in CENTER if s in REAL_RULES)),
    side=st.sampled_from(list(Side)),
    notional=st.integers(15, 3000),
    limit_bp=st.integers(0, 50),
    moves=st.lists(st.tuples(st.integers(-40, 40), st.booleans()), max_size=30),
    fallback=st.booleans(),
)
def test_chase_orders_pass_filters_never_cross_limit_never_overfill(
    symbol: str, side: Side, notional: int, limit_bp: int, moves: list[tuple[int, bool]], fallback: bool
) -> None:
    rules = REAL_RULES[symbol]
    center = CENTER[symbol]
    qty = rules.round_qty(D(notional) / center)
    sign = 1 if side is Side.BUY else -1
    limit = rules.round_price(center * (1 + sign * D(limit_bp) / 10000), side)
    c = Chase(symbol, side, qty, rules, "tg-c1-", "chase:1", limit, step_ms=1000, market_fallback=fallback)
    sim = Sim(rules, center)
    tick = rules.tick_size
    drive(c, sim, c.start(0, bid=center - tick, ask=center + tick))
    for bp, timer in moves:
        price = rules.round_price(center * (1 + D(bp) / 10000))
        drive(c, sim, [], sim.move(price))
        if timer:
            drive(c, sim, c.on_timer(sim.ts))
        assert sim.violations == []
        assert c.filled <= qty
        for p in sim.placed:
            if p.order_type is OrderType.LIMIT_MAKER:
                assert (p.price <= limit) if side is Side.BUY else (p.price >= limit)  # type: ignore[operator]
        live = [cid for cid, leg in c.legs.items() if not leg.final and cid in sim.resting]
        assert len(live) <= 1
    r = c.report()
    assert r.maker_qty + r.taker_qty == r.filled_qty == c.filled


@settings(max_examples=80, deadline=None)
@given(
    symbol=st.sampled_from(sorted(s for s in CENTER if s in REAL_RULES)),
    purpose=st.sampled_from(["stop-loss", "take-profit"]),
    mode=st.sampled_from(["soft", "hard"]),
    dist_bp=st.integers(10, 3000),
    notional=st.integers(20, 5000),
    offset_bp=st.integers(1, 200),
)
def test_stop_orders_pass_real_filters(symbol: str, purpose: str, mode: str, dist_bp: int, notional: int,
                                       offset_bp: int) -> None:
    rules = REAL_RULES[symbol]
    center = CENTER[symbol]
    sign = -1 if purpose == "stop-loss" else 1
    trigger = rules.round_price(center * (1 + sign * D(dist_bp) / 10000))
    qty = rules.round_qty(D(notional) / center)
    s = Stop(1, symbol, purpose, mode, qty, trigger, rules, limit_offset=D(offset_bp) / 10000, silence_ms=1000)
    out = s.arm(0)
    out += s.on_timer(5000)  # soft: silence -> hard twin
    beyond = rules.round_price(trigger * (1 + sign * D("0.001")))
    out += s.on_tick(Tick(symbol, None, None, beyond, 6000))
    orders = [o for o in out if isinstance(o, PlaceOrder)] + [o.place for o in out if isinstance(o, ReplaceOrder)]
    assert orders
    for o in orders:
        ref = trigger if o.order_type is OrderType.MARKET else None
        problems = rules.check_order(o.side, o.order_type, o.qty, o.price, reference_price=ref, stop_price=o.stop_price)
        if notional >= 30:  # 30 quote stays above the 10 minNotional even 30 % lower, after step rounding
            assert problems == []
        else:
            assert [p for p in problems if p.filter != "NOTIONAL"] == []
