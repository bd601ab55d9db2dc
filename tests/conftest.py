"""Shared fixtures. Keep this small; put area-specific fixtures in that area's conftest."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from tgtrader.store import Database

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    """tests/data: copies of real recorded Binance payloads."""
    return DATA_DIR


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, migrated database in a temporary directory."""
    database = await Database.open(tmp_path / "tgtrader.db")
    try:
        yield database
    finally:
        await database.close()
