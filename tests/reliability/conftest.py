"""Fixtures for the reliability suite: the real bot as a subprocess against loopback fakes (harness.py)."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.reliability.harness import Harness

# The suite drives `python -m tgtrader run`; without the runner/engine (partial checkout) there is nothing to test.
if importlib.util.find_spec("tgtrader.runner") is None or importlib.util.find_spec("tgtrader.core.service") is None:
    pytest.skip("tgtrader run (runner/engine) not available", allow_module_level=True)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    await h.start()
    try:
        yield h
    finally:
        await h.close()


def no_problems(result: dict[str, list[str]]) -> bool:
    return all(not v for v in result.values())
