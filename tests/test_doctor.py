"""`tgtrader doctor`'s chat-safety checks (issue 16): who may command in a group, the .env's permissions, a
token Telegram refuses."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.fake_telegram import FakeTelegram
from tgtrader.doctor import diagnose

TOKEN = "123456:TEST-TOKEN-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as server:
        yield server


def _env_file(tmp_path: Path, mode: int, **extra: str) -> Path:
    values = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_ALLOWED_CHAT_IDS": "777,-4001",
              "TGTRADER_DB": str(tmp_path / "t.db"), "TGTRADER_LOG_DIR": str(tmp_path / "logs"), **extra}
    path = tmp_path / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    os.chmod(path, mode)
    return path


async def test_a_group_without_a_user_list_and_a_readable_env_file_are_warned(tmp_path: Path) -> None:
    out = io.StringIO()
    path = _env_file(tmp_path, 0o644)
    assert await diagnose(quick=True, env_file=str(path), env={}, out=out) == 0  # advice, not failures
    text = out.getvalue()
    assert "WARN  telegram     group chat(s) -4001 allowed without TELEGRAM_ALLOWED_USER_IDS" in text, text
    assert f"WARN  env file     {path} is readable by other users (mode 644); run: chmod 600 {path}" in text
    assert TOKEN.split(":")[1] not in text


async def test_listed_users_and_a_private_env_file_are_ok(tmp_path: Path) -> None:
    out = io.StringIO()
    path = _env_file(tmp_path, 0o600, TELEGRAM_ALLOWED_USER_IDS="888")
    assert await diagnose(quick=True, env_file=str(path), env={}, out=out) == 0
    text = out.getvalue()
    assert "OK    telegram     token set; allowed chats: 777, -4001; may command: 777, 888" in text, text
    assert "OK    env file" in text and "WARN" not in text


async def test_a_revoked_token_fails(tmp_path: Path, fake: FakeTelegram) -> None:
    fake.revoked = True
    out = io.StringIO()
    path = _env_file(tmp_path, 0o600, TELEGRAM_ALLOWED_USER_IDS="888", TELEGRAM_API_BASE=fake.base_url)
    assert await diagnose(env_file=str(path), env={}, out=out) == 1
    assert "FAIL  telegram     the Bot API refused the token: Unauthorized" in out.getvalue()


def test_files_a_run_creates_are_private(tmp_path: Path) -> None:
    """The database and the logs hold trades and ids: created 0600 (umask 077 for the run)."""
    from tgtrader.cli import main

    env = {"TGTRADER_DB": str(tmp_path / "db" / "t.db"), "TGTRADER_LOG_DIR": str(tmp_path / "logs")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["doctor", "--quick", "--env-file", str(_env_file(tmp_path, 0o600))]) == 0
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    created = [p for p in (tmp_path / "db").iterdir()]
    assert created and all(p.stat().st_mode & 0o077 == 0 for p in created), [oct(p.stat().st_mode) for p in created]
