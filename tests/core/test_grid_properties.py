"""Hypothesis properties of the grid over random price paths on real symbol rules."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tgtrader.core.grid import Grid, GridConfig, preview
from tgtrader.core.ids import parse_client_order_id

from .conftest import REAL_RULES
from .sim import Sim, drive

SYMBOLS = {"BTCUSDT": D("50000"), "ETHUSDT": D("3500"), "BNBUSDT": D("400"), "XRPUSDT": D("1.1"), "ETHBTC": D("0.07")}


@st.composite
def scenario(draw: st.DrawFn) -> tuple:
    symbol = draw(st.sampled_from(sorted(s for s in SYMBOLS if s in REAL_RULES)))
    center = SYMBOLS[symbol]
    lo_pct = draw(st.integers(5, 40))
    hi_pct = draw(st.integers(5, 60))
    lower = REAL_RULES[symbol].round_price(center * (100 - lo_pct) / 100)
    upper = REAL_RULES[symbol].round_price(center * (100 + hi_pct) / 100)
    n = draw(st.integers(2, 25))
    spacing = draw(st.sampled_from(["arithmetic", "geometric"]))
    per_order = draw(st.integers(12, 60))  # quote per order, in min-notional-ish units
    quote_unit = D("0.001") if symbol == "ETHBTC" else D("1")
    investment = per_order * n * quote_unit
    steps = draw(st.lists(st.tuples(st.integers(-30, 30), st.sampled_from([None, D("0.5"), D("0.3")]),
                                    st.sampled_from(["move", "move", "move", "move", "pause", "resume"])),
                          min_size=1, max_size=25))
    start_mode = draw(st.sampled_from(["market", "chase"]))
    return symbol, center, lower, upper, n, spacing, investment, steps, start_mode


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_grid_invariants_over_random_paths(sc: tuple) -> None:
    symbol, center, lower, upper, n, spacing, investment, steps, start_mode = sc
    rules = REAL_RULES[symbol]
    config = GridConfig(symbol, lower, upper, n, investment, spacing, start_mode=start_mode, chase_step_ms=1000)
    start_quote = investment * 2
    pv = preview(config, rules, center, start_quote)
    assume(pv.ok)
    g = Grid(1, config, rules)
    sim = Sim(rules, center, quote=start_quote)
    tick = rules.tick_size
    drive(g, sim, g.start(center, 0, bid=center - tick, ask=center + tick))
    price = center
    for pct, partial, action in steps:
        if action == "pause":
            drive(g, sim, g.pause(sim.ts))
        elif action == "resume":
            drive(g, sim, g.resume(sim.price, sim.ts))
        else:
            price = rules.round_price(max(center * (100 + pct) / 100, tick))
            drive(g, sim, [], sim.move(price, partial))
            drive(g, sim, g.on_timer(sim.ts))
        # at most one open order per interval, on the grid's side and on the venue
        assert all(v <= 1 for v in g.open_orders_per_interval().values())
        per_level: dict[int, int] = {}
        for cid in sim.resting:
            p = parse_client_order_id(cid)
            if p is not None and p.level is not None:
                per_level[p.level] = per_level.get(p.level, 0) + 1
        assert all(v <= 1 for v in per_level.values()), per_level
        # every order that left passed the real filters
        assert sim.violations == []
        # conservation: the venue's wallet moved exactly as the grid's books say (fees included)
        assert sim.quote - start_quote == g.ledger.quote_flow
        assert sim.base == g.base_held()
        assert sim.fees == g.ledger.fees
    # realized + unrealized = what the wallet gained at the last price
    pos = g.position()
    equity_change = sim.quote - start_quote + sim.base * sim.price
    assert abs(equity_change - (g.ledger.realized + pos.unrealized)) <= D("1E-12") * (1 + abs(equity_change))
