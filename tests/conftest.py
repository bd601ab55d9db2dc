"""Shared fixtures. Keep this small; put area-specific fixtures in that area's conftest."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings

from tgtrader.store import Database

# CI runs the property tests with a fixed seed, so a run is repeatable: a red run means the code changed.
# HYPOTHESIS_PROFILE=explore searches with fresh random examples (run it locally, keep what it finds as tests).
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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
