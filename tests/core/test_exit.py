"""The one exit primitive (core/exit.py): wait for the owner's orders, sell min(owed, free) leg after leg, finish
flat or say what is left and why."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from tgtrader.core.exit import Action, ExitState, SellUntilFlat, Step, market_sell_qty
from tgtrader.types import OrderStatus, RejectReason

from .conftest import REAL_RULES


def sellable(q: D) -> D:
    q = q.quantize(D("0.001"), rounding="ROUND_DOWN")
    return q if q >= D("0.01") else D(0)


def test_waits_for_the_owners_orders_but_not_forever() -> None:
    ex = SellUntilFlat(wait_ms=1000)
    ex.begin(0, "stop-loss")
    assert ex.step(D("1"), True, False, 500, sellable).step is Step.WAIT
    assert ex.step(D("1"), True, False, 1000, sellable) == Action(Step.SELL, D("1"))


def test_a_refusal_for_balance_reads_it_and_sells_what_is_free_then_reports_the_rest() -> None:
    ex = SellUntilFlat()
    ex.begin(0, "panic")
    act = ex.step(D("1"), False, False, 0, sellable)
    assert act.step is Step.SELL and act.qty == D("1")
    ex.placed("a")
    assert not ex.leg_ended("a", OrderStatus.REJECTED, RejectReason.INSUFFICIENT_BALANCE, D("1"))
    assert ex.step(D("1"), False, False, 1, sellable).step is Step.NEED_BALANCE
    ex.on_balance(D("0.4"))
    act = ex.step(D("1"), False, False, 2, sellable)
    assert act.step is Step.SELL and act.qty == D("0.4")
    ex.placed("b")
    ex.leg_ended("b", OrderStatus.FILLED, None, D("0.6"), D("0.4"))
    act = ex.step(D("0.6"), False, False, 3, sellable)  # the balance moved: try the rest
    assert act.step is Step.SELL and act.qty == D("0.6")
    ex.placed("c")
    ex.leg_ended("c", OrderStatus.REJECTED, RejectReason.INSUFFICIENT_BALANCE, D("0.6"))
    ex.on_balance(D("0"))
    assert ex.step(D("0.6"), False, False, 4, sellable).step is Step.DONE
    assert ex.state is ExitState.FLAT and ex.residue == D("0.6") and ex.why_left == "not-free"


def test_a_partly_filled_or_expired_leg_is_followed_by_one_for_the_remainder() -> None:
    ex = SellUntilFlat()
    ex.begin(0, "stop-loss")
    ex.placed("a")
    assert ex.step(D("1"), False, True, 1, sellable).step is Step.WAIT  # the leg is still working
    ex.leg_ended("a", OrderStatus.EXPIRED, None, D("0.3"), D("0.7"))
    act = ex.step(D("0.3"), False, False, 2, sellable)
    assert act.step is Step.SELL and act.qty == D("0.3")
    ex.placed("b")
    ex.leg_ended("b", OrderStatus.FILLED, None, D("0.005"), D("0.295"))
    assert ex.step(D("0.005"), False, False, 3, sellable).step is Step.DONE
    assert ex.why_left == "below-filters" and ex.residue == D("0.005")


def test_gives_up_after_repeated_refusals_and_survives_a_restart() -> None:
    ex = SellUntilFlat(max_refusals=2)
    ex.begin(0, "panic")
    ex.placed("a")
    ex.leg_ended("a", OrderStatus.REJECTED, RejectReason.OTHER, D("1"))
    again = SellUntilFlat.from_dict(ex.to_dict())
    assert again == ex
    again.on_balance(D("1"))
    again.placed("b")
    assert again.leg_ended("b", OrderStatus.REJECTED, RejectReason.OTHER, D("1"))
    assert again.state is ExitState.GAVE_UP and again.why_left == "refused" and again.residue == D("1")


def test_legs_that_expire_unfilled_on_an_empty_book_end_the_exit_instead_of_hammering_the_venue() -> None:
    ex = SellUntilFlat()
    ex.begin(0, "panic")
    for cid in "abc":
        assert ex.step(D("1"), False, False, 1, sellable).step is Step.SELL
        ex.placed(cid)
        gave_up = ex.leg_ended(cid, OrderStatus.EXPIRED, None, D("1"), D("0"))
    assert gave_up and ex.state is ExitState.GAVE_UP and ex.why_left == "no-liquidity" and ex.residue == D("1")


def test_transient_failures_never_end_the_exit_they_back_off() -> None:
    """A 429 or a 5xx is not the venue refusing the sale: the exit tries again later (doubling, capped), however
    often, instead of giving up after three (the chaos run's /panic left a grid's coins unsold that way)."""
    ex = SellUntilFlat()
    ex.begin(0, "panic")
    ts = 0
    for cid in "abcdef":
        act = ex.step(D("1"), False, False, ts, sellable)
        assert act.step is Step.SELL
        ex.placed(cid)
        assert not ex.leg_ended(cid, OrderStatus.REJECTED, RejectReason.RATE_LIMITED, D("1"), D("0"), ts)
        assert ex.step(D("1"), False, False, ts + 1, sellable).step is Step.WAIT  # backing off
        ts = ex.retry_at
    assert ex.state is ExitState.SELLING and ex.transient == 6 and ex.refusals == 0


def test_a_position_larger_than_one_market_order_is_sold_leg_after_leg() -> None:
    """The chaos run's /panic left 137.5 ADA: more than MARKET_LOT_SIZE maxQty (128) failed the filter check and
    was taken for an unsellable residue. Each leg is now capped at the market maximum."""
    rules = replace(REAL_RULES["BTCUSDT"], market_max_qty=D("1"))
    assert market_sell_qty(rules, D("2.5"), D("50000")) == D("1")
    assert market_sell_qty(rules, D("0.5"), D("50000")) == D("0.5")
    assert market_sell_qty(rules, D("0.00001"), D("50000")) == 0  # below minNotional: a real residue
