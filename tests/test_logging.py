"""Logging: secrets masked in messages and tracebacks on every sink, stdlib routed, unwritable dir survives."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from tgtrader.config import Settings, load_settings
from tgtrader.logging_setup import reset_logging, setup_logging

TOKEN = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def _settings(log_dir: Path, **extra: str) -> Settings:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_ALLOWED_CHAT_IDS": "1",
        "BINANCE_API_KEY": KEY,
        "BINANCE_API_SECRET": SECRET,
        "TGTRADER_LOG_DIR": str(log_dir),
        "TGTRADER_LOG_LEVEL": "DEBUG",
        **extra,
    }
    return load_settings(env, env_file=None)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    reset_logging()  # other tests see loguru and logging as they were


def _assert_clean(text: str) -> None:
    assert TOKEN not in text and KEY not in text and SECRET not in text
    assert TOKEN.split(":")[1] not in text


def test_secrets_masked_in_messages_and_tracebacks(tmp_path: Path) -> None:
    console = io.StringIO()
    result = setup_logging(_settings(tmp_path / "logs"), console=console)
    assert result.file_path is not None and result.warning is None
    logger.info(f"connecting with key={KEY} secret={SECRET}")
    logger.bind(url=f"https://api.telegram.org/bot{TOKEN}/getMe").info("extra carries {extra}", extra="x")
    logger.opt(colors=True).info(f"<red>colored {SECRET}</red>")
    try:
        raise RuntimeError(f"signature failed for {SECRET} (token {TOKEN})")
    except RuntimeError:
        logger.exception("request failed")
    logger.complete()
    out = console.getvalue()
    file_text = result.file_path.read_text()
    for text in (out, file_text):
        _assert_clean(text)
        assert "RuntimeError: signature failed for ********" in text
        assert "Traceback (most recent call last)" in text
        assert "key=******** secret=********" in text


def test_json_lines_are_masked(tmp_path: Path) -> None:
    result = setup_logging(_settings(tmp_path / "logs", TGTRADER_LOG_JSON="1"), console=io.StringIO())
    assert result.file_path is not None and result.file_path.suffix == ".jsonl"
    try:
        raise ValueError(KEY)
    except ValueError:
        logger.exception("bad {}", SECRET)
    logger.complete()
    lines = result.file_path.read_text().splitlines()
    _assert_clean("\n".join(lines))
    entry = json.loads(lines[-1])
    assert entry["record"]["message"] == "bad ********"
    assert "ValueError: ********" in entry["text"]


def test_standard_logging_is_routed_and_masked(tmp_path: Path) -> None:
    console = io.StringIO()
    setup_logging(_settings(tmp_path / "logs"), console=console)
    logging.getLogger("telegram.ext").info("polling %s", f"https://api.telegram.org/bot{TOKEN}/getUpdates")
    logging.getLogger("binance.client").error("rejected", exc_info=(ValueError, ValueError(SECRET), None))
    logging.getLogger("httpx").info("noise at INFO is dropped")
    out = console.getvalue()
    _assert_clean(out)
    assert "polling https://api.telegram.org/bot********/getUpdates" in out
    assert "rejected" in out and "ValueError: ********" in out
    assert "noise" not in out


def test_unwritable_log_dir_warns_once_and_keeps_console(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    settings = _settings(blocker / "logs")
    console = io.StringIO()
    first = setup_logging(settings, console=console)
    second = setup_logging(settings, console=console)  # idempotent, and the warning is not repeated
    assert first.file_path is None and first.warning and "console only" in first.warning
    assert second.file_path is None
    logger.info("still logging")
    out = console.getvalue()
    assert out.count("is not writable") == 1
    assert "still logging" in out


def test_setup_is_idempotent(tmp_path: Path) -> None:
    console = io.StringIO()
    settings = _settings(tmp_path / "logs")
    setup_logging(settings, console=console)
    setup_logging(settings, console=console)
    logger.info("once")
    assert console.getvalue().count("once") == 1
    assert sum(type(h).__name__ == "InterceptHandler" for h in logging.getLogger().handlers) == 1


def test_reset_restores_plain_loguru(tmp_path: Path) -> None:
    setup_logging(_settings(tmp_path / "logs"), console=io.StringIO())
    reset_logging()
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(str(m)), format="{message} {exception}")
    try:
        try:
            raise KeyError(KEY)
        except KeyError:
            logger.exception("after reset")
    finally:
        logger.remove(sink)
    assert "KeyError" in seen[0]  # the exception reaches sinks normally again
    assert not any(type(h).__name__ == "InterceptHandler" for h in logging.getLogger().handlers)


def test_level_filters_console(tmp_path: Path) -> None:
    console = io.StringIO()
    setup_logging(_settings(tmp_path / "logs", TGTRADER_LOG_LEVEL="WARNING"), console=console)
    logger.info("hidden")
    logger.warning("shown")
    assert "hidden" not in console.getvalue() and "shown" in console.getvalue()
