"""Issue 16: /buy and /sell worth more than TGTRADER_CONFIRM_TRADE_ABOVE ask first; the confirmation runs it."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from tgtrader.chat.dispatch import Dispatcher
from tgtrader.core.api import ChaseResult
from tgtrader.types import Side


class Api:
    """Just enough of the trading API: a price, and a chase that records what it was asked."""

    def __init__(self) -> None:
        self.chases: list[tuple[Any, ...]] = []

    async def known_symbols(self) -> frozenset[str]:
        return frozenset({"BTCUSDT"})

    async def tick_size(self, symbol: str) -> D:
        return D("0.01")

    async def last_price(self, symbol: str) -> D:
        return D("52000")

    async def chase(self, symbol: str, side: Side, qty: D, limit_price: D | None = None) -> ChaseResult:
        self.chases.append((symbol, side, qty, limit_price))
        return ChaseResult(symbol, side, qty, qty, D("52000"), qty, D(0), D("5.2"), "filled", "")


async def test_a_large_trade_runs_only_after_its_confirmation_and_a_small_one_at_once() -> None:
    api = Api()
    d = Dispatcher(api, confirm_trade_above=D("1000"))  # type: ignore[arg-type]
    ask = await d.dispatch("/sell BTCUSDT 0.05 min=51000", 1)
    assert "Confirm?" in ask.text and not api.chases
    confirm = ask.buttons[0][0]
    assert confirm.label == "Confirm SELL 0.05 BTCUSDT"
    await d.press(confirm.data, 1)
    assert api.chases == [("BTCUSDT", Side.SELL, D("0.05"), D("51000"))]
    await d.dispatch("/buy BTCUSDT 0.001", 1)  # 52 USDT: no question
    assert api.chases[-1] == ("BTCUSDT", Side.BUY, D("0.001"), None)
