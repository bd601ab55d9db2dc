"""One exchange contract, every venue: the `venue` fixture runs each case once per registered venue."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from binance.ws.reconnecting_websocket import ReconnectingWebsocket

from tests.contract.venues import VENUES, VenueUnderTest


@pytest.fixture(autouse=True)
def fast_ws(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-binance's reconnect waits (1-16 s) and 10 s timeouts, shortened for tests."""
    monkeypatch.setattr(ReconnectingWebsocket, "_get_reconnect_wait", lambda self, n: 0.1)
    monkeypatch.setattr(ReconnectingWebsocket, "TIMEOUT", 1)


@pytest.fixture(params=sorted(VENUES))
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[VenueUnderTest]:
    async with VENUES[request.param]() as v:
        yield v


def needs(v: VenueUnderTest, cap: str) -> None:
    if cap not in v.caps:
        pytest.skip(f"{v.name} has no '{cap}' lever")
