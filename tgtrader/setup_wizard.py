"""`tgtrader setup`: the first run, from a fresh clone to a checked `.env` (issue 19).

It asks for the bot token and checks it with getMe, asks the trader to send /start to the bot and takes their
chat id and user id from getUpdates (nobody has to look ids up), asks for the Binance keys and their kind
(HMAC, Ed25519 or RSA; none for paper trading), writes `.env` with mode 0600 and runs the `doctor` checks on it.
Interactive by default; `--non-interactive` takes everything from flags and the environment (secrets are best
passed as environment variables: a flag shows in the process list). A secret is read without echo and never
printed back, not even masked in part; an existing `.env` keeps its other lines and comments.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tgtrader.config import DEFAULT_ENV_FILE, Settings, read_env_file

TOKEN_RE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
KEY_TYPES = ("hmac", "ed25519", "rsa")
WAIT_START_S = 300.0
POLL_S = 20.0
SAFE_VALUE = re.compile(r"^[A-Za-z0-9_:./,@+=-]*$")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class SetupError(Exception):
    """A step failed; the message is shown as is (never holds a secret). `code` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Io:
    """The terminal, replaceable in tests: `ask` echoes, `secret` does not."""

    out: IO[str] = field(default_factory=lambda: sys.stdout)
    ask_fn: Callable[[str], str] = input
    secret_fn: Callable[[str], str] = getpass.getpass

    def say(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    def ask(self, prompt: str, default: str = "") -> str:
        hint = f" [{default}]" if default else ""
        answer = self.ask_fn(f"{prompt}{hint}: ").strip()
        return answer or default

    def secret(self, prompt: str, have: bool = False) -> str:
        hint = " (input hidden; Enter keeps the current one)" if have else " (input hidden)"
        return self.secret_fn(f"{prompt}{hint}: ").strip()

    def yes(self, prompt: str, default: bool) -> bool:
        answer = self.ask(f"{prompt} [{'Y/n' if default else 'y/N'}]").lower()
        return default if not answer else answer.startswith("y")


# ---------------------------------------------------------------------------- the Bot API


class BotApi:
    """The three Bot API methods setup needs, over plain HTTPS (the token is never in an error text)."""

    def __init__(self, base: str, token: str) -> None:
        self.url = f"{base}{token}/"

    async def call(self, method: str, timeout_s: float = 15.0, **params: Any) -> Any:
        import aiohttp

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
                form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}  # as PTB sends
                async with session.post(self.url + method, data=form) as response:
                    body: Any = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SetupError(f"cannot reach the Telegram Bot API ({type(exc).__name__})") from None
        if isinstance(body, dict) and body.get("ok"):
            return body.get("result")
        code = body.get("error_code") if isinstance(body, dict) else None
        text = body.get("description", "unexpected answer") if isinstance(body, dict) else "unexpected answer"
        if code in (401, 404):
            raise SetupError("Telegram refused this bot token (check it with @BotFather)")
        if code == 409:
            raise SetupError("this bot has a webhook set, so its messages cannot be read here: give --chat-id, "
                             "or remove the webhook (stop the bot that uses it)")
        raise SetupError(f"Telegram answered {method}: {text}")


@dataclass(frozen=True)
class Trader:
    chat_id: int
    user_id: int
    where: str  # "private chat with @name" / "group 'Title'"


def _trader_of(update: dict[str, Any]) -> Trader | None:
    message = update.get("message") or {}
    text = str(message.get("text") or "")
    if not text.startswith("/start"):
        return None
    chat, user = message.get("chat") or {}, message.get("from") or {}
    if "id" not in chat or "id" not in user:
        return None
    name = f"@{user['username']}" if user.get("username") else str(user.get("first_name", "someone"))
    where = f"private chat with {name}" if chat.get("type") == "private" else f"group '{chat.get('title', '?')}' ({name})"
    return Trader(int(chat["id"]), int(user["id"]), where)


async def wait_for_start(api: BotApi, wait_s: float, clock: Callable[[], float] = time.monotonic) -> Trader:
    """The newest /start sent to the bot (waiting up to `wait_s` for one); the updates read are confirmed, so the
    bot does not see them again when it starts."""
    deadline = clock() + wait_s
    offset: int | None = None
    while True:
        left = deadline - clock()
        poll = max(0.0, min(POLL_S, left))
        params: dict[str, Any] = {"timeout": int(poll), "allowed_updates": ["message"]}
        if offset is not None:
            params["offset"] = offset
        updates = await api.call("getUpdates", timeout_s=poll + 15, **params) or []
        found = None
        for update in updates:
            offset = int(update["update_id"]) + 1
            found = _trader_of(update) or found
        if found is not None:
            await api.call("getUpdates", offset=offset, timeout=0)  # confirm: read once
            return found
        if left <= 0:
            raise SetupError(f"no /start reached the bot within {wait_s:.0f} s; send /start to the bot and run "
                             "setup again (or give --chat-id)")


# ---------------------------------------------------------------------------- .env


def _env_value(name: str, value: str) -> str:
    if SAFE_VALUE.match(value):
        return value
    if '"' in value or "\n" in value or "\\" in value:
        raise SetupError(f"{name}: the value has characters a .env line cannot hold; edit .env by hand", EXIT_USAGE)
    return f'"{value}"'


def merge_env(existing: str, values: dict[str, str | None]) -> str:
    """`existing` with each KEY in `values` set (None: removed), other lines and comments kept, new keys appended."""
    lines, done = [], set()
    for line in existing.splitlines():
        m = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        key = m.group(1) if m else None
        if key in values:
            if key not in done and values[key] is not None:
                lines.append(f"{key}={_env_value(key, values[key] or '')}")
            done.add(key)
            continue
        lines.append(line)
    new = [(k, v) for k, v in values.items() if k not in done and v is not None]
    if new:
        if lines and lines[-1].strip():
            lines.append("")
        lines.append("# written by `tgtrader setup`")
        lines += [f"{k}={_env_value(k, v or '')}" for k, v in new]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write `text` so that no other user can read it at any moment: a 0600 temporary file, then a rename."""
    tmp = path.with_name(f".{path.name}.setup-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- the steps


@dataclass
class Choices:
    values: dict[str, str | None] = field(default_factory=dict)  # .env keys to write (None: remove)
    secrets: list[str] = field(default_factory=list)


def _from(flag: str | None, env_name: str, existing: dict[str, str]) -> str:
    return flag or os.environ.get(env_name, "") or existing.get(env_name, "")


async def _telegram(args: argparse.Namespace, io: Io, existing: dict[str, str], ch: Choices) -> None:
    base = os.environ.get("TELEGRAM_API_BASE") or existing.get("TELEGRAM_API_BASE") or Settings().telegram_api_base
    current = _from(args.token, "TELEGRAM_BOT_TOKEN", existing)
    for attempt in range(3):
        token = current
        if not args.non_interactive and (attempt or not args.token):
            io.say("Telegram: create a bot with @BotFather (/newbot) and paste its token here.")
            token = io.secret("Bot token", have=bool(current)) or current
        if not token:
            raise SetupError("a bot token is needed (--token, or TELEGRAM_BOT_TOKEN in the environment)", EXIT_USAGE)
        ch.secrets.append(token)
        _mask(ch.secrets)
        if not TOKEN_RE.match(token):
            problem = "that is not a bot token (it looks like 123456789:AA...)"
        else:
            try:
                me = await BotApi(base, token).call("getMe")
                break
            except SetupError as exc:
                problem = str(exc)
        if args.non_interactive:
            raise SetupError(problem)
        io.say(f"  FAIL  {problem}")
        current = ""
    else:
        raise SetupError("no working bot token after 3 tries")
    bot = BotApi(base, token)
    name = f"@{me.get('username', '?')}"
    io.say(f"  OK    the token belongs to {name}")
    ch.values["TELEGRAM_BOT_TOKEN"] = token

    if args.chat_id is not None:
        trader = Trader(args.chat_id, args.user_id if args.user_id is not None else args.chat_id, "given")
    else:
        io.say(f"Now open Telegram and send /start to {name}. Waiting up to {args.wait:.0f} s ...")
        trader = await wait_for_start(bot, args.wait)
        io.say(f"  OK    /start from chat {trader.chat_id}, user {trader.user_id} ({trader.where})")
        if not args.non_interactive and not io.yes("Allow this chat and user to control the bot?", True):
            raise SetupError("setup stopped: send /start from the right account and run setup again")
    ch.values["TELEGRAM_ALLOWED_CHAT_IDS"] = str(trader.chat_id)
    ch.values["TELEGRAM_ALLOWED_USER_IDS"] = str(args.user_id if args.user_id is not None else trader.user_id)
    try:
        await bot.call("sendMessage", chat_id=trader.chat_id,
                       text="tgtrader setup: this chat may now control the bot. Finish the setup in the terminal, "
                            "then start the bot with `tgtrader run`.")
    except SetupError as exc:  # the bot may not be allowed to write there yet: not a reason to stop
        io.say(f"  WARN  could not write to the chat ({exc})")


async def _binance(args: argparse.Namespace, io: Io, existing: dict[str, str], ch: Choices) -> None:
    key = _from(args.api_key, "BINANCE_API_KEY", existing)
    if not args.non_interactive and not args.api_key:
        io.say("Binance: an API key with Spot trading enabled and withdrawals DISABLED (restrict it to this "
               "server's IP). Leave it empty to paper-trade on public market data (no key needed).")
        key = io.secret("Binance API key", have=bool(key)) or key
    if not key:
        ch.values.update({"TGTRADER_MODE": "paper"})
        io.say("  OK    no Binance key: paper trading (simulated fills on live market data)")
        return
    ch.secrets.append(key)
    _mask(ch.secrets)
    kind = (args.key_type or os.environ.get("BINANCE_KEY_TYPE") or existing.get("BINANCE_KEY_TYPE") or "").lower()
    if not args.non_interactive and not args.key_type:
        kind = io.ask("Key type: hmac (Binance's 'system generated'), ed25519 (recommended) or rsa",
                      kind or "hmac").lower()
    kind = kind or "hmac"
    if kind not in KEY_TYPES:
        raise SetupError(f"key type must be hmac, ed25519 or rsa, got {kind!r}", EXIT_USAGE)
    values: dict[str, str | None] = {"BINANCE_API_KEY": key, "BINANCE_KEY_TYPE": kind}
    if kind == "hmac":
        secret = _from(args.api_secret, "BINANCE_API_SECRET", existing)
        if not args.non_interactive and not args.api_secret:
            secret = io.secret("Binance API secret", have=bool(secret)) or secret
        if not secret:
            raise SetupError("an HMAC key needs its API secret (--api-secret or BINANCE_API_SECRET)", EXIT_USAGE)
        ch.secrets.append(secret)
        _mask(ch.secrets)
        values.update({"BINANCE_API_SECRET": secret, "BINANCE_PRIVATE_KEY_PATH": None, "BINANCE_PRIVATE_KEY": None})
    else:
        path = args.private_key_path or os.environ.get("BINANCE_PRIVATE_KEY_PATH") or existing.get(
            "BINANCE_PRIVATE_KEY_PATH", "")
        if not args.non_interactive and not args.private_key_path:
            path = io.ask(f"Path of the {kind} private key file (PEM; Binance keeps only the public key)", path)
        if not path:
            raise SetupError(f"an {kind} key needs its private key file (--private-key-path)", EXIT_USAGE)
        pem_path = Path(path).expanduser().resolve()
        passphrase = os.environ.get("BINANCE_PRIVATE_KEY_PASSPHRASE") or existing.get("BINANCE_PRIVATE_KEY_PASSPHRASE", "")
        if not args.non_interactive:
            passphrase = io.secret("Passphrase of the private key (Enter if none)", have=bool(passphrase)) or passphrase
        if passphrase:
            ch.secrets.append(passphrase)
            _mask(ch.secrets)
        _check_private_key(kind, pem_path, passphrase or None)
        io.say(f"  OK    {pem_path} holds an {kind} private key")
        values.update({"BINANCE_PRIVATE_KEY_PATH": str(pem_path), "BINANCE_PRIVATE_KEY_PASSPHRASE": passphrase or None,
                       "BINANCE_API_SECRET": None, "BINANCE_PRIVATE_KEY": None})
    testnet = args.testnet
    if not args.non_interactive and not testnet:
        testnet = io.yes("Use the Binance spot testnet (test money)?", existing.get("BINANCE_TESTNET") == "true")
    live = args.live
    if not args.non_interactive and not live:
        live = io.yes("Trade for real (TGTRADER_MODE=live)? No keeps paper trading", False)
    values.update({"BINANCE_TESTNET": "true" if testnet else None, "TGTRADER_MODE": "live" if live else "paper"})
    ch.values.update(values)


def _check_private_key(kind: str, path: Path, passphrase: str | None) -> None:
    try:
        pem = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SetupError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    from tgtrader import config

    check = getattr(config, "private_key_problem", None)  # the settings' own check, where this version has it
    problem = check(kind, pem, passphrase) if check is not None else None
    if problem:
        raise SetupError(f"{path} {problem}", EXIT_USAGE)


def _mask(secrets: list[str]) -> None:
    from tgtrader.logging_setup import masker

    masker.add_secrets([s for s in secrets if s])


# ---------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", default=str(DEFAULT_ENV_FILE), help="the file to write (default: ./.env)")
    parser.add_argument("--non-interactive", action="store_true",
                        help="ask nothing: take every answer from the flags and the environment")
    parser.add_argument("--force", action="store_true", help="--non-interactive: update an existing .env")
    parser.add_argument("--token", help="bot token (better: TELEGRAM_BOT_TOKEN in the environment)")
    parser.add_argument("--chat-id", type=int, help="the chat to allow, instead of waiting for /start")
    parser.add_argument("--user-id", type=int, help="the user who may command (default: who sent /start)")
    parser.add_argument("--wait", type=float, default=WAIT_START_S, help="seconds to wait for /start (default 300)")
    parser.add_argument("--key-type", choices=KEY_TYPES, help="kind of Binance API key (default hmac)")
    parser.add_argument("--api-key", help="Binance API key (better: BINANCE_API_KEY in the environment)")
    parser.add_argument("--api-secret", help="HMAC API secret (better: BINANCE_API_SECRET in the environment)")
    parser.add_argument("--private-key-path", help="Ed25519/RSA private key file (PEM)")
    parser.add_argument("--testnet", action="store_true", help="use the Binance spot testnet")
    parser.add_argument("--live", action="store_true", help="TGTRADER_MODE=live (real orders); default paper")
    parser.add_argument("--no-doctor", action="store_true", help="do not run the doctor checks at the end")


async def wizard(args: argparse.Namespace, io: Io) -> int:
    path = Path(args.env_file)
    existing: dict[str, str] = {}
    text = ""
    if path.exists():
        if args.non_interactive and not args.force:
            io.say(f"setup: {path} exists; add --force to update it (its other lines are kept)")
            return EXIT_USAGE
        try:
            text = path.read_text(encoding="utf-8")
            existing = read_env_file(path)
        except Exception as exc:  # noqa: BLE001 - a broken .env is replaced, not fatal
            io.say(f"setup: {path} cannot be read ({type(exc).__name__}); it will be rewritten")
            text = ""
        if not args.non_interactive and not io.yes(f"{path} exists. Update it (other lines are kept)?", True):
            return EXIT_USAGE
    io.say("tgtrader setup: a Telegram bot, your chat, the Binance keys; then the checks.")
    choices = Choices()
    try:
        await _telegram(args, io, existing, choices)
        await _binance(args, io, existing, choices)
        write_private(path, merge_env(text, choices.values))
    except SetupError as exc:
        io.say(f"setup: {exc}")
        return exc.code
    written = ", ".join(k for k, v in choices.values.items() if v is not None)
    io.say(f"  OK    wrote {path} (mode 600, readable only by you): {written}")
    if args.no_doctor:
        return EXIT_OK
    io.say("")
    from tgtrader.doctor import diagnose

    code = await diagnose(env_file=str(path), out=io.out)
    io.say("")
    io.say("Next: `tgtrader run` (or `docker run ... --env-file .env`)." if code == 0
           else "Fix what FAILed above, then run `tgtrader doctor` again before `tgtrader run`.")
    return code


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(wizard(args, Io()))
    except (KeyboardInterrupt, EOFError):
        print("\nsetup: stopped; nothing was written", file=sys.stderr)
        return 130
