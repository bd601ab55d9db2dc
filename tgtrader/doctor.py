"""`tgtrader doctor`: check settings, database, log directory, clock and the exchange, in plain words.

`--quick` stays local (no network) so it can be the Docker HEALTHCHECK. Exit code 0 only if
nothing FAILed; WARN lines are advice (e.g. the API key may withdraw, no IP restriction).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import IO, Any

from tgtrader.config import Settings, load_settings
from tgtrader.errors import ConfigError, StoreError

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
NETWORK_TIMEOUT_S = 10.0
CLOCK_WARN_MS = 1000
CLOCK_FAIL_MS = 5000


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="local checks only (settings, database, log directory); no network. Used by the Docker HEALTHCHECK.",
    )
    parser.add_argument("--env-file", default=None, help="read settings from this file instead of ./.env")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(diagnose(quick=bool(args.quick), env_file=getattr(args, "env_file", None)))


async def diagnose(
    quick: bool = False,
    env_file: str | None = None,
    env: dict[str, str] | None = None,
    out: IO[str] | None = None,
) -> int:
    """Run every check, print the checklist, return 0 (no FAIL), 1 (a FAIL) or 2 (settings invalid)."""
    out = out or sys.stdout
    checks: list[Check] = []
    print("tgtrader doctor" + (" (quick: local checks only)" if quick else ""), file=out)

    try:
        settings = load_settings(env) if env_file is None else load_settings(env, env_file=env_file)
    except ConfigError as exc:
        for problem in exc.problems:
            _emit(out, checks, Check(FAIL, "settings", problem))
        _summary(out, checks)
        return 2

    from tgtrader.logging_setup import masker

    masker.set_secrets(settings.secrets())
    _emit(out, checks, _settings_check(settings))
    _emit(out, checks, await _database_check(settings))
    _emit(out, checks, _log_dir_check(settings))
    _emit(out, checks, _telegram_config_check(settings))
    if settings.has_binance_keys:
        _emit(out, checks, _key_type_check(settings))
    env_check = _env_file_check(env_file)
    if env_check is not None:
        _emit(out, checks, env_check)

    if quick:
        _emit(out, checks, Check(SKIP, "network", "skipped with --quick (clock, Binance, Telegram)"))
    else:
        if settings.telegram_bot_token:
            _emit(out, checks, await _guard("telegram", _telegram_check(settings)))
        if settings.has_binance_keys:
            for check in await _binance_checks(settings):
                _emit(out, checks, check)
        else:
            _emit(out, checks, Check(SKIP, "clock", "no Binance API keys set"))
            _emit(out, checks, Check(SKIP, "binance", "no Binance API keys set (paper mode needs none)"))
    _summary(out, checks)
    return 1 if any(c.status == FAIL for c in checks) else 0


def _emit(out: IO[str], checks: list[Check], check: Check) -> None:
    from tgtrader.logging_setup import masker

    checks.append(check)
    print(f"  {check.status:<5} {check.name:<12} {masker(check.detail)}", file=out)


def _summary(out: IO[str], checks: list[Check]) -> None:
    fails = sum(c.status == FAIL for c in checks)
    warns = sum(c.status == WARN for c in checks)
    verdict = "not ready" if fails else "ready"
    print(f"{verdict}: {fails} failed, {warns} warning{'s' if warns != 1 else ''}", file=out)


async def _guard(name: str, coro: Awaitable[Check]) -> Check:
    try:
        return await asyncio.wait_for(coro, NETWORK_TIMEOUT_S)
    except TimeoutError:
        return Check(FAIL, name, f"no answer within {NETWORK_TIMEOUT_S:.0f} s")
    except Exception as exc:  # a check must report, never crash the doctor
        return Check(FAIL, name, f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------- local checks


def _settings_check(s: Settings) -> Check:
    mode = "LIVE (real orders)" if s.is_live else "paper (simulated fills)"
    where = "testnet" if s.binance_testnet else (s.binance_rest_url or "binance.com")
    return Check(OK, "settings", f"mode {mode}; exchange {where}; database {s.db_path}")


async def _database_check(s: Settings) -> Check:
    from tgtrader.store import Database

    try:
        db = await Database.open(s.db_path)
    except StoreError as exc:
        return Check(FAIL, "database", str(exc))
    try:
        version = await db.schema_version()
        try:  # take the write lock and release it: proves writability without changing anything
            async with db.transaction():
                pass
        except StoreError as exc:
            return Check(FAIL, "database", f"not writable: {exc}")
        if db.journal_mode != "wal":
            return Check(WARN, "database", f"schema v{version}, but journal mode is {db.journal_mode!r}, not WAL")
        return Check(OK, "database", f"{s.db_path}: schema v{version}, WAL, writable")
    finally:
        await db.close()


def _log_dir_check(s: Settings) -> Check:
    from tgtrader.logging_setup import _check_writable

    problem = _check_writable(s.log_dir)
    if problem:
        return Check(WARN, "log dir", f"{s.log_dir} is not writable ({problem}); logs go to the console only")
    return Check(OK, "log dir", f"{s.log_dir} is writable")


def _telegram_config_check(s: Settings) -> Check:
    if not s.telegram_bot_token:
        return Check(WARN, "telegram", "no TELEGRAM_BOT_TOKEN: the bot cannot be controlled from Telegram")
    from tgtrader.telegram.access import Access

    access = Access.of(s.telegram_allowed_chat_ids, s.telegram_allowed_user_ids, s.telegram_readonly_user_ids)
    warnings = access.warnings()
    if warnings:
        return Check(WARN, "telegram", warnings[0])
    chats = ", ".join(str(c) for c in s.telegram_allowed_chat_ids)
    users = ", ".join(str(u) for u in sorted(access.traders))
    return Check(OK, "telegram", f"token set; allowed chats: {chats}; may command: {users}")


def _env_file_check(env_file: str | None) -> Check | None:
    """The .env holds the keys: readable by other users of the machine, they can trade (or worse)."""
    import os
    import stat
    from pathlib import Path

    from tgtrader.config import DEFAULT_ENV_FILE

    path = Path(env_file) if env_file else DEFAULT_ENV_FILE
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Check(WARN, "env file", f"{path} is readable by other users (mode {stat.S_IMODE(mode):o});"
                                       f" run: chmod 600 {path}")
    return Check(OK, "env file", f"{path} is private (mode {stat.S_IMODE(mode):o})")


def _key_type_check(s: Settings) -> Check:
    """faqs/api_key_types.md: "We recommend to use Ed25519 API keys"; "HMAC keys are deprecated"."""
    if s.binance_key_type == "ed25519":
        return Check(OK, "key type", "Ed25519 (Binance's recommended key type); requests are signed with the private key")
    if s.binance_key_type == "rsa":
        return Check(OK, "key type", "RSA; requests are signed with the private key (Binance recommends Ed25519)")
    return Check(WARN, "key type", "HMAC: Binance deprecates HMAC keys and recommends Ed25519 "
                 "(BINANCE_KEY_TYPE=ed25519 with BINANCE_PRIVATE_KEY_PATH)")


# ---------------------------------------------------------------------------- network checks


async def _telegram_check(s: Settings) -> Check:
    import aiohttp

    assert s.telegram_bot_token is not None
    url = f"{s.telegram_api_base}{s.telegram_bot_token.reveal()}/getMe"
    timeout = aiohttp.ClientTimeout(total=NETWORK_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url) as response:
                body: Any = await response.json(content_type=None)
    except aiohttp.ClientError as exc:
        return Check(FAIL, "telegram", f"cannot reach the Bot API ({type(exc).__name__})")
    if isinstance(body, dict) and body.get("ok"):
        user = body.get("result") or {}
        return Check(OK, "telegram", f"bot @{user.get('username', '?')} answers")
    description = body.get("description", "unknown error") if isinstance(body, dict) else "unexpected answer"
    return Check(FAIL, "telegram", f"the Bot API refused the token: {description}")


def _sapi_url(rest_url: str) -> str:
    return rest_url[: -len("/api")] + "/sapi" if rest_url.endswith("/api") else rest_url + "/sapi"


async def _binance_checks(s: Settings) -> list[Check]:
    """Clock offset, connectivity, account trading permission, API key restrictions."""
    from binance import AsyncClient
    from binance.exceptions import BinanceAPIException

    from tgtrader.exchange.binance import BinanceExchange, compat, map_api_error

    assert s.binance_api_key is not None
    use_testnet = s.binance_testnet and not s.binance_rest_url
    client = AsyncClient(
        s.binance_api_key.reveal(),
        s.binance_api_secret.reveal() if s.binance_api_secret and s.binance_key_type == "hmac" else None,
        testnet=use_testnet,
        requests_params={"timeout": NETWORK_TIMEOUT_S},
    )
    if s.binance_key_type != "hmac" and s.binance_private_key:
        passphrase = s.binance_private_key_passphrase.reveal() if s.binance_private_key_passphrase else None
        key = compat.load_signing_key(s.binance_key_type, s.binance_private_key.reveal(), passphrase)
        compat.install_signing_key(client, s.binance_key_type, key)
    if s.binance_rest_url:
        rest = BinanceExchange._norm_rest(s.binance_rest_url)
        compat.redirect_rest(client, rest, _sapi_url(rest))
    checks: list[Check] = []

    async def call(what: str, fn: Callable[[], Awaitable[Any]]) -> tuple[Any, str | None]:
        try:
            return await asyncio.wait_for(fn(), NETWORK_TIMEOUT_S), None
        except BinanceAPIException as exc:
            return None, str(map_api_error(exc, what))
        except TimeoutError:
            return None, f"no answer within {NETWORK_TIMEOUT_S:.0f} s"
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    try:
        t0 = time.time() * 1000
        answer, error = await call("read the server time", client.get_server_time)
        t1 = time.time() * 1000
        if error is not None:
            checks.append(Check(FAIL, "binance", f"cannot reach Binance: {error}"))
            checks.append(Check(SKIP, "clock", "Binance did not answer"))
            return checks
        offset = int(answer["serverTime"] - (t0 + t1) / 2)
        where = "testnet" if use_testnet else (s.binance_rest_url or "api.binance.com")
        checks.append(Check(OK, "binance", f"{where} answers ({t1 - t0:.0f} ms round trip)"))
        if abs(offset) >= CLOCK_FAIL_MS:
            side = "behind" if offset > 0 else "ahead of"
            checks.append(Check(FAIL, "clock", f"this machine is {abs(offset) / 1000:.1f} s {side} Binance's clock; fix NTP"))
        elif abs(offset) >= CLOCK_WARN_MS:
            checks.append(Check(WARN, "clock", f"{offset:+d} ms off Binance's clock (corrected at start; check NTP)"))
        else:
            checks.append(Check(OK, "clock", f"{offset:+d} ms off Binance's clock"))
        compat.set_clock_offset(client, offset)

        account, error = await call("read the account", client.get_account)
        if error is not None:
            checks.append(Check(FAIL, "api key", error))
            return checks
        if not account.get("canTrade", False):
            status = FAIL if s.is_live else WARN
            checks.append(Check(status, "api key", "the account or key cannot trade (enable Spot trading on the key)"))
        else:
            checks.append(Check(OK, "api key", "accepted; spot trading allowed"))

        restrictions, error = await call("read the API key restrictions", client.get_account_api_permissions)
        if error is not None or not isinstance(restrictions, dict):
            checks.append(
                Check(WARN, "permissions", f"could not read the key's restrictions ({error}); check them on Binance")
            )
            return checks
        if restrictions.get("enableWithdrawals"):
            checks.append(
                Check(WARN, "permissions", "this key can WITHDRAW funds: create a key without withdrawal permission")
            )
        else:
            checks.append(Check(OK, "permissions", "withdrawals disabled on this key"))
        if not restrictions.get("ipRestrict"):
            checks.append(Check(WARN, "ip", "the key is not restricted to trusted IPs; IP restriction advised"))
        else:
            checks.append(Check(OK, "ip", "the key is restricted to trusted IPs"))
        return checks
    finally:
        await client.close_connection()
