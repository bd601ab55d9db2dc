from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.test_bot_e2e import Stack, close_stack, make_stack
from tgtrader.store.db import Database


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "tg.sqlite")
    yield database
    await database.close()


@pytest.fixture
async def stack(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Stack]:
    """The real python-telegram-bot Application on the core and the paper venue, talking to the fake Bot API."""
    s = await make_stack(tmp_path, fake)
    try:
        yield s
    finally:
        await close_stack(s)
