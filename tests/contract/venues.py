"""The venues the exchange contract runs on, behind one small harness each.

A venue is the `Exchange` port (what the core sees) plus the test levers only a harness can pull (move the
market, thin the book, lose an answer). A lever a venue does not have is a missing capability: the case is
skipped there, never faked. A future venue joins every case by registering one more factory:

    @register("kraken-fake")
    @asynccontextmanager
    async def kraken_fake() -> AsyncIterator[VenueUnderTest]: ...
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal as D
from typing import Any

from tests.fakes.fake_binance import API_KEY, API_SECRET, FakeBinance
from tgtrader.core.ports import Exchange
from tgtrader.exchange.binance import BinanceExchange
from tgtrader.exchange.paper import PaperExchange

SYMBOL = "BTCUSDT"
START_PRICE = D("50000")
FUNDS = {"USDT": D("100000"), "BTC": D("2"), "BNB": D("10")}

# capabilities
DEPTH = "depth"  # the book can be made thin: takers fill partly
STP = "stp"  # the venue applies self-trade prevention to the account's own resting orders
LOST_ANSWERS = "lost-answers"  # an order can execute while its answer is lost / answered 5xx / not yet queryable
FEE_ASSETS = "fee-assets"  # commission in the received asset, the quote asset or BNB, switchable
STREAM_GAP = "stream-gap"  # the pushed news can be cut (and must be caught up by reconciliation)


@dataclass
class VenueUnderTest:
    name: str
    ex: Exchange
    caps: frozenset[str]
    events: list[Any] = field(default_factory=list)
    raw: Any = None  # the venue's own object (FakeBinance, PaperExchange)

    async def set_price(self, price: D | str, symbol: str = SYMBOL) -> None:
        raise NotImplementedError

    def thin_asks(self, levels: list[tuple[str, str]], symbol: str = SYMBOL) -> None:
        raise NotImplementedError

    def lose_next_answer(self, how: str, visible_after_s: float) -> None:
        raise NotImplementedError

    def posts(self, cid: str) -> int:
        raise NotImplementedError

    def set_fee_mode(self, mode: str) -> None:
        raise NotImplementedError

    async def cut_news(self) -> None:
        """Drop the pushed news (user-data stream) once; the venue reconnects on its own."""
        raise NotImplementedError

    async def settle(self) -> None:
        """Let pushed news (streams) arrive."""
        await asyncio.sleep(0)


VENUES: dict[str, Callable[[], AbstractAsyncContextManager[VenueUnderTest]]] = {}


def register(name: str) -> Callable[[Callable[[], AbstractAsyncContextManager[VenueUnderTest]]],
                                    Callable[[], AbstractAsyncContextManager[VenueUnderTest]]]:
    def deco(factory: Callable[[], AbstractAsyncContextManager[VenueUnderTest]]
             ) -> Callable[[], AbstractAsyncContextManager[VenueUnderTest]]:
        VENUES[name] = factory
        return factory
    return deco


# ---------------------------------------------------------------- paper


class PaperVenue(VenueUnderTest):
    async def set_price(self, price: D | str, symbol: str = SYMBOL) -> None:
        assert isinstance(self.raw, PaperExchange)
        self.raw.feed_trade(symbol, D(price), int(time.time() * 1000))

    def set_fee_mode(self, mode: str) -> None:
        fees = self.raw.engine.fees
        fees.mode = "base" if mode == "received" else mode  # issue 14 item 10: Binance's default is "received"
        fees.bnb_prices["USDT"] = D("500")


@register("paper")
@asynccontextmanager
async def paper() -> AsyncIterator[VenueUnderTest]:
    ex = PaperExchange(None, initial_balances=dict(FUNDS))
    v = PaperVenue("paper", ex, frozenset({FEE_ASSETS}), raw=ex)
    ex.set_event_sink(v.events.append)
    await ex.start()
    await v.set_price(START_PRICE)
    yield v
    await ex.close()


# ---------------------------------------------------------------- Binance adapter on the doc-written fake


class BinanceFakeVenue(VenueUnderTest):
    async def set_price(self, price: D | str, symbol: str = SYMBOL) -> None:
        assert isinstance(self.raw, FakeBinance)
        await self.raw.set_price(symbol, price)
        await self.settle()

    def thin_asks(self, levels: list[tuple[str, str]], symbol: str = SYMBOL) -> None:
        self.raw.venue.set_liquidity(symbol, asks=levels)

    def lose_next_answer(self, how: str, visible_after_s: float) -> None:
        self.raw.lag_order_queries(visible_after_s)
        if how == "cut":
            self.raw.lose_next_order_response()
        elif how == "5xx":
            self.raw.fail_next_order_after_execution(503, -1001, "Internal error; unable to process your request. "
                                                                 "Please try again.")
        elif how == "-1007":
            self.raw.fail_next_order_after_execution(400, -1007)
        else:
            raise ValueError(how)

    def posts(self, cid: str) -> int:
        return int(self.raw.order_posts[cid])

    async def cut_news(self) -> None:
        self.raw.refuse_ws_for(0.5)
        await self.raw.drop_websockets()

    def set_fee_mode(self, mode: str) -> None:
        venue = self.raw.venue
        venue.bnb_fees = mode == "bnb"
        venue.bnb_price["USDT"] = D("500")
        venue.commission = "quote" if mode == "quote" else "received"

    async def settle(self) -> None:
        await asyncio.sleep(0.15)


@register("binance-fake")
@asynccontextmanager
async def binance_fake() -> AsyncIterator[VenueUnderTest]:
    fake = await FakeBinance().start()
    for asset, amount in FUNDS.items():
        fake.set_balance(asset, amount)
    await fake.set_price(SYMBOL, START_PRICE)
    ex = BinanceExchange(API_KEY, API_SECRET, rest_url=fake.rest_url, ws_url=fake.ws_url, request_timeout=2.0,
                         backoff_base_s=0.02, lookup_delay_s=0.05, user_check_s=0.5, market_silence_s=10.0)
    v = BinanceFakeVenue("binance-fake", ex, frozenset({DEPTH, STP, LOST_ANSWERS, FEE_ASSETS, STREAM_GAP}), raw=fake)
    ex.set_event_sink(v.events.append)
    await ex.start()
    try:
        yield v
    finally:
        await ex.close()
        await fake.stop()
