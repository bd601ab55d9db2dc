"""The command line: help for every command, exit codes, one line per problem, and doctor."""

from __future__ import annotations

import argparse
import importlib.machinery
import io
import subprocess
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tgtrader import cli
from tgtrader.config import load_settings
from tgtrader.doctor import diagnose
from tgtrader.errors import StoreError


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every test in an empty directory (no stray .env) with no tgtrader variables set."""
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith(("TGTRADER_", "TELEGRAM_", "BINANCE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TGTRADER_DB", str(tmp_path / "db" / "t.db"))
    monkeypatch.setenv("TGTRADER_LOG_DIR", str(tmp_path / "logs"))
    return tmp_path


def _fake_command(monkeypatch: pytest.MonkeyPatch, run: Any) -> str:
    """Register an in-memory subcommand module `fakecmd` whose run() is `run`."""
    name = "tgtrader_fake_command"
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.add_arguments = lambda parser: parser.add_argument("--flag", action="store_true")  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + (("fakecmd", name, "a test command"),))
    return "fakecmd"


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("run", "demo", "backtest", "doctor"):
        assert f"    {name}" in out


@pytest.mark.parametrize("command", ["run", "demo", "backtest", "doctor"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([command, "--help"]) == 0
    assert f"usage: tgtrader {command}" in capsys.readouterr().out


def test_no_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: tgtrader" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fly"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_missing_module_says_not_implemented(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + (("later", "tgtrader.no_such_module", "comes later"),))
    assert cli.main(["later"]) == 3
    assert capsys.readouterr().err.strip() == "tgtrader later: not implemented yet in this version"
    assert cli.main(["--help"]) == 0
    assert "comes later (not implemented yet)" in " ".join(capsys.readouterr().out.split())
    assert cli.main(["later", "--help"]) == 0
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "demo", "backtest", "doctor"])
def test_real_commands_are_implemented_or_say_so(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = dict((n, m) for n, m, _ in cli.COMMANDS)[command]
    if cli._module_exists(module):
        mod = cli._load(module)
        assert mod is not None and callable(mod.add_arguments) and callable(mod.run)
    else:
        assert cli.main([command]) == 3
        assert "not implemented yet in this version" in capsys.readouterr().err


def test_bad_settings_give_one_line_each_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _fake_command(monkeypatch, lambda args: load_settings() and 0)
    monkeypatch.setenv("TGTRADER_MODE", "lvie")
    monkeypatch.setenv("BINANCE_TESTNET", "maybe")
    assert cli.main([name]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "config: BINANCE_TESTNET: must be true or false (1/0, yes/no), got 'maybe'",
        "config: TGTRADER_MODE: must be 'paper' or 'live', got 'lvie'",
    ]
    assert "Traceback" not in captured.err + captured.out


def test_malformed_env_file_names_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    name = _fake_command(monkeypatch, lambda args: load_settings() and 0)
    (tmp_path / ".env").write_text("TGTRADER_MODE=paper\nnonsense here\n")
    assert cli.main([name]) == 2
    assert capsys.readouterr().err.strip() == "config: .env line 2: expected KEY=VALUE"


def test_store_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def run(args: argparse.Namespace) -> int:
        raise StoreError("/x/t.db has schema version 9, newer than this tgtrader understands (2)")

    name = _fake_command(monkeypatch, run)
    assert cli.main([name]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "database: /x/t.db has schema version 9, newer than this tgtrader understands (2)"
    ]


def test_unexpected_error_is_one_masked_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tgtrader.logging_setup import masker

    secret = "very-secret-value-123"
    masker.set_secrets([secret])

    def run(args: argparse.Namespace) -> int:
        raise RuntimeError(f"boom {secret}")

    name = _fake_command(monkeypatch, run)
    try:
        assert cli.main([name, "--flag"]) == 1
    finally:
        masker.set_secrets([])
    err = capsys.readouterr().err
    assert "unexpected error: RuntimeError: boom ********" in err
    assert secret not in err and "Traceback" not in err


def test_command_exit_code_is_passed_through(monkeypatch: pytest.MonkeyPatch) -> None:
    name = _fake_command(monkeypatch, lambda args: 7 if args.flag else None)
    assert cli.main([name, "--flag"]) == 7
    assert cli.main([name]) == 0


def test_python_dash_m_works(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tgtrader", "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 0 and "doctor" in proc.stdout


def test_readme_quick_start_matches_ci() -> None:
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text().splitlines()
    ci = [line for line in (root / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(ci) == 1 and ci[0] in readme
    assert ("python3 -m venv .venv && .venv/bin/pip install -q --require-hashes -r requirements.lock"
            " && .venv/bin/pip install -q --no-deps -e . && .venv/bin/tgtrader demo") in readme
    assert "--require-hashes -r requirements-dev.lock" in ci[0]  # CI installs from the lock file


# ------------------------------------------------------------------ doctor


def test_doctor_quick_on_tmp_db_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "OK    database" in out and "WAL" in out
    assert "OK    log dir" in out
    assert "FAIL" not in out
    assert (tmp_path / "db" / "t.db").exists()


def test_doctor_reports_newer_database_as_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    path = tmp_path / "db" / "t.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT, applied_ms INTEGER)")
    conn.execute("INSERT INTO schema_version VALUES (999, 'future', 0)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    assert cli.main(["doctor", "--quick"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  database" in out and "newer" in out
    assert path.read_bytes() == before


def test_doctor_bad_settings_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TGTRADER_MODE", "live")
    assert cli.main(["doctor", "--quick"]) == 2
    out = capsys.readouterr().out
    assert "FAIL  settings     BINANCE_API_KEY: required when TGTRADER_MODE=live" in out
    assert "FAIL  settings     BINANCE_API_SECRET: required when TGTRADER_MODE=live" in out


def test_doctor_unwritable_log_dir_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "blocker").write_text("x")
    monkeypatch.setenv("TGTRADER_LOG_DIR", str(tmp_path / "blocker" / "logs"))
    assert cli.main(["doctor", "--quick"]) == 0
    assert "WARN  log dir" in capsys.readouterr().out


# A loopback Binance with just what doctor asks: time, account, API restrictions.

KEY = "doctor-test-key-0123456789"
SECRET = "doctor-test-secret-0123456789"


@pytest.fixture
async def fake_binance() -> AsyncIterator[dict[str, Any]]:
    state: dict[str, Any] = {
        "offset_ms": 0,
        "restrictions": {"ipRestrict": False, "enableWithdrawals": True, "enableSpotAndMarginTrading": True},
        "account_status": 200,
    }

    async def server_time(request: web.Request) -> web.Response:
        import time

        return web.json_response({"serverTime": int(time.time() * 1000) + state["offset_ms"]})

    async def account(request: web.Request) -> web.Response:
        assert request.headers.get("X-MBX-APIKEY") == KEY and "signature" in request.query
        if state["account_status"] != 200:
            return web.json_response(
                {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}, status=401
            )
        return web.json_response({"canTrade": True, "canWithdraw": True, "balances": [], "permissions": ["SPOT"]})

    async def restrictions(request: web.Request) -> web.Response:
        return web.json_response({**state["restrictions"], "createTime": 1, "enableReading": True})

    app = web.Application()
    async def ping(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get("/api/v3/ping", ping)
    app.router.add_get("/api/v3/time", server_time)
    app.router.add_get("/api/v3/account", account)
    app.router.add_get("/sapi/v1/account/apiRestrictions", restrictions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state["url"] = f"http://127.0.0.1:{port}/api"
    try:
        yield state
    finally:
        await runner.cleanup()


def _keys_env(tmp_path: Path, url: str) -> dict[str, str]:
    return {
        "BINANCE_API_KEY": KEY,
        "BINANCE_API_SECRET": SECRET,
        "BINANCE_REST_URL": url,
        "TGTRADER_DB": str(tmp_path / "db" / "t.db"),
        "TGTRADER_LOG_DIR": str(tmp_path / "logs"),
    }


async def test_doctor_with_keys_checks_clock_and_permissions(tmp_path: Path, fake_binance: dict[str, Any]) -> None:
    out = io.StringIO()
    assert await diagnose(env=_keys_env(tmp_path, fake_binance["url"]), out=out) == 0
    text = out.getvalue()
    assert "OK    binance" in text and "OK    clock" in text and "OK    api key" in text
    assert "WARN  permissions  this key can WITHDRAW funds" in text
    assert "WARN  ip           the key is not restricted to trusted IPs; IP restriction advised" in text
    assert KEY not in text and SECRET not in text


async def test_doctor_clock_skew_and_rejected_key(tmp_path: Path, fake_binance: dict[str, Any]) -> None:
    fake_binance["offset_ms"] = 60_000
    fake_binance["account_status"] = 401
    out = io.StringIO()
    assert await diagnose(env=_keys_env(tmp_path, fake_binance["url"]), out=out) == 1
    text = out.getvalue()
    assert "FAIL  clock" in text and "60.0 s behind" in text
    assert "FAIL  api key" in text


async def test_doctor_unreachable_exchange_fails(tmp_path: Path) -> None:
    out = io.StringIO()
    assert await diagnose(env=_keys_env(tmp_path, "http://127.0.0.1:9/api"), out=out) == 1
    assert "FAIL  binance      cannot reach Binance" in out.getvalue()


@pytest.fixture
async def fake_bot_api() -> AsyncIterator[str]:
    good = "123456:GOOD-token-for-doctor-tests"

    async def get_me(request: web.Request) -> web.Response:
        if request.match_info["token"] != good:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        return web.json_response({"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "T", "username": "tg_bot"}})

    app = web.Application()
    app.router.add_get("/bot{token}/getMe", get_me)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/bot"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("token, status, text", [
    ("123456:GOOD-token-for-doctor-tests", "OK", "bot @tg_bot answers"),
    ("123456:BAD-token-for-doctor-tests", "FAIL", "the Bot API refused the token: Unauthorized"),
])
async def test_doctor_checks_the_bot_token(tmp_path: Path, fake_bot_api: str, token: str, status: str, text: str) -> None:
    out = io.StringIO()
    env = {
        "TELEGRAM_BOT_TOKEN": token,
        "TELEGRAM_ALLOWED_CHAT_IDS": "1",
        "TELEGRAM_API_BASE": fake_bot_api,
        "TGTRADER_DB": str(tmp_path / "db" / "t.db"),
        "TGTRADER_LOG_DIR": str(tmp_path / "logs"),
    }
    code = await diagnose(env=env, out=out)
    assert f"{status:<5} telegram     {text}" in out.getvalue()
    assert code == (0 if status == "OK" else 1)
    assert token not in out.getvalue()
