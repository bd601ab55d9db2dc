"""`tgtrader setup` (issue 19) against the fake Bot API and the fake Binance: the token checked with getMe, the
trader's chat and user id taken from their /start, .env written 0600, the doctor run, no secret printed back."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fakes.fake_binance import API_KEY, API_SECRET, FakeBinance
from tests.fakes.fake_telegram import TOKEN, FakeTelegram
from tgtrader import cli
from tgtrader.config import load_settings
from tgtrader.setup_wizard import Io, add_arguments, merge_env, wizard

CHAT, USER = 4242, 4242


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("TGTRADER_", "TELEGRAM_", "BINANCE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TGTRADER_DB", str(tmp_path / "data" / "t.db"))
    monkeypatch.setenv("TGTRADER_LOG_DIR", str(tmp_path / "logs"))
    yield


@pytest.fixture
async def fakes(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeTelegram, FakeBinance]]:
    binance = await FakeBinance().start()
    telegram = await FakeTelegram().start()
    monkeypatch.setenv("TELEGRAM_API_BASE", telegram.base_url)
    monkeypatch.setenv("BINANCE_REST_URL", binance.rest_url)
    try:
        yield telegram, binance
    finally:
        await telegram.stop()
        await binance.stop()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


class Script(Io):
    """Answers prompts in order; records every prompt. `on_prompt` runs when a prompt containing a key shows."""

    def __init__(self, answers: list[str], hooks: dict[str, object] | None = None) -> None:
        super().__init__(out=io.StringIO(), ask_fn=self._next, secret_fn=self._next)
        self.answers = answers
        self.prompts: list[str] = []

    def _next(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.answers:
            raise AssertionError(f"unexpected prompt {prompt!r}")
        return self.answers.pop(0)

    @property
    def text(self) -> str:
        assert isinstance(self.out, io.StringIO)
        return self.out.getvalue() + "\n".join(self.prompts)


def _private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_non_interactive_setup_writes_a_private_env_and_runs_doctor(
        tmp_path: Path, fakes: tuple[FakeTelegram, FakeBinance], monkeypatch: pytest.MonkeyPatch) -> None:
    telegram, _ = fakes
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("BINANCE_API_KEY", API_KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", API_SECRET)
    telegram.push_command(CHAT, "/start", user_id=USER)
    term = Script([])
    code = await wizard(_args("--non-interactive", "--key-type", "hmac", "--wait", "5"), term)
    env = tmp_path / ".env"
    assert code == 0, term.text
    assert _private(env)
    written = env.read_text()
    assert f"TELEGRAM_ALLOWED_CHAT_IDS={CHAT}" in written and f"TELEGRAM_ALLOWED_USER_IDS={USER}" in written
    assert "TGTRADER_MODE=paper" in written and "BINANCE_KEY_TYPE=hmac" in written
    for secret in (TOKEN, API_KEY, API_SECRET):
        assert secret in written and secret not in term.text
    assert "getMe" in [c.method for c in telegram.calls]
    assert "tgtrader doctor" in term.text and "ready" in term.text
    assert any("may now control the bot" in t for t in telegram.texts_to(CHAT))
    settings = load_settings(env={}, env_file=env)  # the bot reads it as written
    assert settings.telegram_allowed_chat_ids and CHAT in settings.telegram_allowed_chat_ids
    assert settings.binance_api_key is not None and settings.binance_api_key.reveal() == API_KEY


async def test_interactive_setup_retries_a_wrong_token_and_waits_for_start(
        tmp_path: Path, fakes: tuple[FakeTelegram, FakeBinance]) -> None:
    telegram, _ = fakes
    wrong = "999:wrong-token"
    term = Script([wrong, TOKEN, "y", API_KEY, "hmac", API_SECRET, "n", "n"])

    async def trader_sends_start() -> None:
        await telegram.wait_for(lambda: any(c.method == "getUpdates" for c in telegram.calls), timeout=10)
        telegram.push_command(-100777, "/start", user_id=USER)  # from a group: chat and user differ

    sender = asyncio.create_task(trader_sends_start())
    code = await wizard(_args("--wait", "10", "--no-doctor"), term)
    await sender
    assert code == 0, term.text
    assert "refused this bot token" in term.text
    written = (tmp_path / ".env").read_text()
    assert "TELEGRAM_ALLOWED_CHAT_IDS=-100777" in written and f"TELEGRAM_ALLOWED_USER_IDS={USER}" in written
    assert _private(tmp_path / ".env")
    for secret in (wrong, TOKEN, API_KEY, API_SECRET):
        assert secret not in term.text


async def test_an_existing_env_keeps_its_other_lines(tmp_path: Path, fakes: tuple[FakeTelegram, FakeBinance],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("# my settings\nTGTRADER_MAX_GRID_QUOTE=700\nTELEGRAM_ALLOWED_CHAT_IDS=1\n")
    env.chmod(0o644)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    term = Script([])
    assert await wizard(_args("--non-interactive", "--chat-id", "55", "--no-doctor"), term) == 2  # no --force
    assert await wizard(_args("--non-interactive", "--force", "--chat-id", "55", "--no-doctor"), term) == 0
    text = env.read_text()
    assert text.startswith("# my settings\nTGTRADER_MAX_GRID_QUOTE=700\nTELEGRAM_ALLOWED_CHAT_IDS=55\n")
    assert "TGTRADER_MODE=paper" in text and _private(env)


async def test_refused_token_non_interactive_fails_without_echo(
        tmp_path: Path, fakes: tuple[FakeTelegram, FakeBinance], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "111:not-the-bots-token")
    term = Script([])
    assert await wizard(_args("--non-interactive", "--chat-id", "5"), term) == 1
    assert "refused this bot token" in term.text and "not-the-bots-token" not in term.text
    assert not (tmp_path / ".env").exists()


def test_merge_env_quotes_and_removes() -> None:
    out = merge_env("A=1\nexport B=2\n# c\n", {"B": "x y", "A": None, "D": "4"})
    assert out == 'export B=2\n'.replace("export B=2", 'B="x y"') + "# c\n\n# written by `tgtrader setup`\nD=4\n"


def test_setup_is_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["setup", "--help"]) == 0
    assert "--non-interactive" in capsys.readouterr().out


async def test_ed25519_key_is_checked_and_written_as_a_path(tmp_path: Path, fakes: tuple[FakeTelegram, FakeBinance],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from Crypto.PublicKey import ECC

    key = ECC.generate(curve="ed25519")
    pem = tmp_path / "binance-ed25519.pem"
    pem.write_text(key.export_key(format="PEM"))
    public = tmp_path / "public.pem"
    public.write_text(key.public_key().export_key(format="PEM"))
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("BINANCE_API_KEY", API_KEY)
    term = Script([])
    base = ("--non-interactive", "--force", "--chat-id", "9", "--key-type", "ed25519", "--no-doctor")
    assert await wizard(_args(*base, "--private-key-path", str(public)), term) == 2  # Binance keeps that one
    assert "public key" in term.text
    assert await wizard(_args(*base, "--private-key-path", str(pem)), term) == 0
    written = (tmp_path / ".env").read_text()
    assert "BINANCE_KEY_TYPE=ed25519" in written and f"BINANCE_PRIVATE_KEY_PATH={pem}" in written
    assert "BINANCE_API_SECRET" not in written and "PRIVATE KEY" not in written
    assert load_settings(env={}, env_file=tmp_path / ".env").has_binance_keys


async def test_clone_setup_doctor_run_and_the_bot_answers_in_the_chat(
        tmp_path: Path, fakes: tuple[FakeTelegram, FakeBinance], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19's 'done when': setup, doctor and run alone take a fresh install to a bot answering /start."""
    from tgtrader.doctor import diagnose
    from tgtrader.runner import serve

    telegram, binance = fakes
    await binance.set_price("BTCUSDT", "50000")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    telegram.push_command(CHAT, "/start", user_id=USER)
    assert await wizard(_args("--non-interactive", "--wait", "5", "--no-doctor"), Script([])) == 0
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")  # from here on only .env holds it
    assert await diagnose(quick=True, out=io.StringIO()) == 0
    monkeypatch.setenv("BINANCE_WS_URL", binance.ws_url)  # the loopback exchange (real Binance by default)
    stop = asyncio.Event()
    settings = load_settings()
    bot = asyncio.create_task(serve(settings, paper=not settings.is_live, stop=stop))  # as `tgtrader run` decides
    try:
        before = len(telegram.texts_to(CHAT))
        await telegram.wait_for(lambda: any(c.method == "getUpdates" for c in telegram.calls[-5:]), timeout=15)
        telegram.push_command(CHAT, "/start", user_id=USER)
        await telegram.wait_for(lambda: any("PAPER" in t.upper() for t in telegram.texts_to(CHAT)[before:]),
                                timeout=15)
    finally:
        stop.set()
        assert await asyncio.wait_for(bot, 30) == 0
