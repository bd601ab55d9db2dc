"""Settings, read once at start-up from the environment and an optional `.env` file.

Every problem is collected (not just the first) and reported as one plain line per field,
so a user fixes their configuration in one pass. Secrets live in `Secret`, whose str and repr
are masked, so printing Settings (or an exception holding it) never leaks a key.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, TypeVar

from tgtrader.envfile import parse_env_text as parse_env_text  # re-exported: tests and tools import it here
from tgtrader.envfile import read_env_file as read_env_file
from tgtrader.errors import ConfigError
from tgtrader.fees import DEFAULT_FEE_ASSET, FeeAsset, fee_asset_of
from tgtrader.keys import KeyType, key_type_of, pem_text, private_key_problem

MASK = "********"
DEFAULT_ENV_FILE = Path(".env")
_USE_DEFAULT_ENV_FILE: Any = object()

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
Mode = Literal["paper", "live"]


class Secret:
    """A secret string: masked in str/repr/format; `.reveal()` is the one way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:  # pickling would be a way to dump it; refuse
        raise TypeError("Secret cannot be pickled")


@dataclass(frozen=True)
class Settings:
    """Validated settings. Construct with `load_settings()`; field defaults are the documented defaults."""

    # Telegram
    telegram_bot_token: Secret | None = None
    telegram_allowed_chat_ids: tuple[int, ...] = ()  # where the bot talks
    telegram_allowed_user_ids: tuple[int, ...] = ()  # who may command (plus the owners of allowed private chats)
    telegram_readonly_user_ids: tuple[int, ...] = ()  # may read (/status...), never trade
    telegram_max_command_age_s: float = 60.0  # older commands (queued while offline) are never executed
    telegram_outbox_retention_days: float = 30.0  # delivered alerts are purged after this
    telegram_api_base: str = "https://api.telegram.org/bot"
    telegram_webhook_url: str | None = None  # set: Telegram pushes updates here instead of being long-polled
    telegram_webhook_listen: str = "127.0.0.1"  # the TLS reverse proxy in front reaches it locally
    telegram_webhook_port: int = 8080
    telegram_webhook_secret: Secret | None = None  # unset: a random one per start
    # Binance
    binance_api_key: Secret | None = None
    binance_api_secret: Secret | None = None
    # faqs/api_key_types.md: Binance supports Ed25519 (recommended), HMAC ("deprecated") and RSA keys. With
    # ed25519/rsa the private key (PEM, from BINANCE_PRIVATE_KEY or the file BINANCE_PRIVATE_KEY_PATH) signs.
    binance_key_type: KeyType = "hmac"
    binance_private_key: Secret | None = None
    binance_private_key_passphrase: Secret | None = None
    binance_testnet: bool = False
    binance_rest_url: str | None = None
    binance_ws_url: str | None = None
    # Storage and logs
    db_path: Path = Path("./data/tgtrader.db")
    log_dir: Path = Path("./data/logs")
    log_level: str = "INFO"
    log_json: bool = False
    log_rotation: str = "10 MB"
    log_retention: int = 5
    # Trading
    mode: Mode = "paper"
    paper_maker_fee: Decimal = Decimal("0.001")
    paper_taker_fee: Decimal = Decimal("0.001")
    paper_balances: dict[str, Decimal] = field(default_factory=lambda: {"USDT": Decimal("10000")})
    paper_fee_asset: FeeAsset = DEFAULT_FEE_ASSET  # who pays paper commissions (tgtrader/fees.py)
    max_grid_quote: Decimal = Decimal("5000")
    max_total_quote: Decimal = Decimal("10000")
    max_open_orders: int = 200
    confirm_trade_above: Decimal = Decimal("1000")  # /buy and /sell worth more (quote) ask first; 0: never
    daily_summary_utc: dt.time | None = None  # when set, every allowed chat gets a summary at this UTC time

    @property
    def is_live(self) -> bool:
        return self.mode == "live"

    @property
    def has_binance_keys(self) -> bool:
        signer = self.binance_api_secret if self.binance_key_type == "hmac" else self.binance_private_key
        return bool(self.binance_api_key) and bool(signer)

    def secrets(self) -> list[str]:
        """The revealed secret values, for the log masking filter only (a PEM key also line by line)."""
        values = (self.telegram_bot_token, self.binance_api_key, self.binance_api_secret, self.telegram_webhook_secret,
                  self.binance_private_key, self.binance_private_key_passphrase)
        out = [s.reveal() for s in values if s]
        if self.binance_private_key:
            out += [line.strip() for line in self.binance_private_key.reveal().splitlines()
                    if len(line.strip()) >= 16 and not line.startswith("-----")]
        return out


# ---------------------------------------------------------------------------- validation

T = TypeVar("T")


class _Reader:
    """Reads raw strings, records one problem per bad field, and returns defaults for bad ones."""

    def __init__(self, raw: Mapping[str, str]):
        self.raw = raw
        self.problems: list[str] = []

    def get(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def field(self, name: str, default: T, convert: Callable[[str], T]) -> T:
        value = self.get(name)
        if value is None:
            return default
        try:
            return convert(value)
        except ValueError as exc:
            self.problems.append(f"{name}: {exc}")
            return default

    def problem(self, name: str, message: str) -> None:
        self.problems.append(f"{name}: {message}")


def _path(value: str) -> Path:
    """A path with ~ expanded; `~name` of a user this machine does not know is a settings error, not a crash."""
    try:
        return Path(value).expanduser()
    except RuntimeError:
        raise ValueError(f"cannot expand the home directory in {value!r}") from None


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false (1/0, yes/no), got {value!r}")


def _chat_ids(value: str) -> tuple[int, ...]:
    ids: list[int] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if not re.fullmatch(r"-?\d+", part):
            raise ValueError(f"must be a comma-separated list of numeric chat ids, got {part!r}")
        ids.append(int(part))
    if not ids:
        raise ValueError("must list at least one numeric chat id")
    return tuple(dict.fromkeys(ids))


def _user_ids(value: str) -> tuple[int, ...]:
    ids = _chat_ids(value)
    if any(i <= 0 for i in ids):
        raise ValueError("user ids are positive numbers (a negative id is a group: put it in TELEGRAM_ALLOWED_CHAT_IDS)")
    return ids


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def convert(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"must be a number of seconds, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"must be from {low:g} to {high:g}, got {value!r}")
        return number

    return convert


def _url(*schemes: str) -> Callable[[str], str]:
    def convert(value: str) -> str:
        if not any(value.startswith(s + "://") for s in schemes) or len(value) <= len(schemes[0]) + 3:
            raise ValueError(f"must be a {' or '.join(s + '://' for s in schemes)} URL, got {value!r}")
        return value

    return convert


def _host(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", value):
        raise ValueError(f"must be an IP address or host name to listen on, got {value!r}")
    return value


def _secret(kind: str, pattern: str | None = None) -> Callable[[str], Secret]:
    def convert(value: str) -> Secret:
        if any(ch.isspace() for ch in value):
            raise ValueError(f"{kind} contains whitespace (check for a stray space or quote)")
        if pattern and not re.fullmatch(pattern, value):
            raise ValueError(f"does not look like a {kind}")
        return Secret(value)

    return convert


def _pem(value: str) -> Secret:
    return Secret(pem_text(value))


def _level(value: str) -> str:
    upper = value.upper()
    if upper not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return upper


_SIZE_RE = re.compile(r"\d+(\.\d+)?\s*(b|kb|mb|gb|kib|mib|gib)", re.I)
_TIME_RE = re.compile(r"\d+(\.\d+)?\s*(second|minute|hour|day|week|month)s?|\d{1,2}:\d{2}", re.I)


def _rotation(value: str) -> str:
    if not (_SIZE_RE.fullmatch(value) or _TIME_RE.fullmatch(value)):
        raise ValueError(f"must be a size like '10 MB' or a period like '1 day', got {value!r}")
    return value


def _retention(value: str) -> int:
    match = re.fullmatch(r"(\d+)(\s*files?)?", value, re.I)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"must be a number of files (at least 1), got {value!r}")
    return int(match.group(1))


def _time_of_day(value: str) -> dt.time:
    try:
        return dt.time.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"must be a UTC time of day like 20:00, got {value.strip()!r}") from None


def _mode(value: str) -> Mode:
    lowered = value.lower()
    if lowered not in ("paper", "live"):
        raise ValueError(f"must be 'paper' or 'live', got {value!r}")
    return lowered  # type: ignore[return-value]


def _decimal(low: Decimal, high: Decimal | None = None, *, low_inclusive: bool = True) -> Callable[[str], Decimal]:
    def convert(value: str) -> Decimal:
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"must be a number, got {value!r}") from None
        if not number.is_finite():
            raise ValueError(f"must be a finite number, got {value!r}")
        too_low = number < low if low_inclusive else number <= low
        if too_low or (high is not None and number > high):
            bound = f">= {low}" if low_inclusive else f"> {low}"
            rng = f"{bound} and <= {high}" if high is not None else bound
            raise ValueError(f"must be {rng}, got {value!r}")
        return number

    return convert


def _int(low: int, high: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        if not re.fullmatch(r"\d+", value) or not low <= int(value) <= high:
            raise ValueError(f"must be a whole number from {low} to {high}, got {value!r}")
        return int(value)

    return convert


def _balances(value: str) -> dict[str, Decimal]:
    balances: dict[str, Decimal] = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        asset, sep, amount = part.partition("=")
        asset = asset.strip().upper()
        if not sep or not re.fullmatch(r"[A-Z0-9]{1,20}", asset):
            raise ValueError(f"must look like 'USDT=10000,BTC=0.5', got {part!r}")
        try:
            number = Decimal(amount.strip())
        except InvalidOperation:
            raise ValueError(f"amount for {asset} must be a number, got {amount.strip()!r}") from None
        if not number.is_finite() or number < 0:
            raise ValueError(f"amount for {asset} must be zero or more, got {amount.strip()!r}")
        balances[asset] = number
    if not balances:
        raise ValueError("must list at least one ASSET=AMOUNT")
    return balances


def load_settings(
    env: Mapping[str, str] | None = None,
    env_file: Path | str | None = _USE_DEFAULT_ENV_FILE,
) -> Settings:
    """Settings from `env` (default: os.environ) over the `.env` file (default: ./.env if present).

    Variables in the environment win over the file. Raises ConfigError with one line per problem.
    """
    environ = dict(os.environ if env is None else env)
    raw: dict[str, str] = {}
    if env_file is _USE_DEFAULT_ENV_FILE:
        if DEFAULT_ENV_FILE.is_file():
            raw.update(read_env_file(DEFAULT_ENV_FILE))
    elif env_file is not None:
        path = Path(env_file)
        if not path.is_file():
            raise ConfigError([f"{path}: env file not found"])
        raw.update(read_env_file(path))
    raw.update(environ)

    r = _Reader(raw)
    d = Settings()  # defaults
    token = r.field("TELEGRAM_BOT_TOKEN", None, _secret("bot token", r"\d+:[A-Za-z0-9_-]+"))
    chat_ids = r.field("TELEGRAM_ALLOWED_CHAT_IDS", d.telegram_allowed_chat_ids, _chat_ids)
    user_ids = r.field("TELEGRAM_ALLOWED_USER_IDS", d.telegram_allowed_user_ids, _user_ids)
    readonly_ids = r.field("TELEGRAM_READONLY_USER_IDS", d.telegram_readonly_user_ids, _user_ids)
    command_age = r.field("TELEGRAM_MAX_COMMAND_AGE_S", d.telegram_max_command_age_s, _seconds(5, 3600))
    retention = r.field("TELEGRAM_OUTBOX_RETENTION_DAYS", d.telegram_outbox_retention_days, _seconds(1, 3650))
    api_base = r.field("TELEGRAM_API_BASE", d.telegram_api_base, _url("https", "http"))
    webhook_url = r.field("TELEGRAM_WEBHOOK_URL", d.telegram_webhook_url, _url("https"))  # Telegram: https only
    webhook_listen = r.field("TELEGRAM_WEBHOOK_LISTEN", d.telegram_webhook_listen, _host)
    webhook_port = r.field("TELEGRAM_WEBHOOK_PORT", d.telegram_webhook_port, _int(1, 65535))
    webhook_secret = r.field("TELEGRAM_WEBHOOK_SECRET", None,
                             _secret("webhook secret (1-256 of A-Z a-z 0-9 _ -)", r"[A-Za-z0-9_-]{1,256}"))
    api_key = r.field("BINANCE_API_KEY", None, _secret("API key"))
    api_secret = r.field("BINANCE_API_SECRET", None, _secret("API secret"))
    key_type = r.field("BINANCE_KEY_TYPE", d.binance_key_type, key_type_of)
    private_key = r.field("BINANCE_PRIVATE_KEY", None, _pem)
    private_key_path = r.field("BINANCE_PRIVATE_KEY_PATH", None, _path)
    passphrase = r.field("BINANCE_PRIVATE_KEY_PASSPHRASE", None, Secret)
    testnet = r.field("BINANCE_TESTNET", d.binance_testnet, _bool)
    rest_url = r.field("BINANCE_REST_URL", d.binance_rest_url, _url("https", "http"))
    ws_url = r.field("BINANCE_WS_URL", d.binance_ws_url, _url("wss", "ws"))
    db_path = r.field("TGTRADER_DB", d.db_path, _path)
    log_dir = r.field("TGTRADER_LOG_DIR", d.log_dir, _path)
    log_level = r.field("TGTRADER_LOG_LEVEL", d.log_level, _level)
    log_json = r.field("TGTRADER_LOG_JSON", d.log_json, _bool)
    log_rotation = r.field("TGTRADER_LOG_ROTATION", d.log_rotation, _rotation)
    log_retention = r.field("TGTRADER_LOG_RETENTION", d.log_retention, _retention)
    mode = r.field("TGTRADER_MODE", d.mode, _mode)
    maker_fee = r.field("TGTRADER_PAPER_MAKER_FEE", d.paper_maker_fee, _decimal(Decimal(0), Decimal("0.1")))
    taker_fee = r.field("TGTRADER_PAPER_TAKER_FEE", d.paper_taker_fee, _decimal(Decimal(0), Decimal("0.1")))
    balances = r.field("TGTRADER_PAPER_BALANCES", d.paper_balances, _balances)
    fee_asset = r.field("TGTRADER_PAPER_FEE_ASSET", d.paper_fee_asset, fee_asset_of)
    max_grid = r.field("TGTRADER_MAX_GRID_QUOTE", d.max_grid_quote, _decimal(Decimal(0), low_inclusive=False))
    max_total = r.field("TGTRADER_MAX_TOTAL_QUOTE", d.max_total_quote, _decimal(Decimal(0), low_inclusive=False))
    max_orders = r.field("TGTRADER_MAX_OPEN_ORDERS", d.max_open_orders, _int(1, 10_000))
    confirm_above = r.field("TGTRADER_CONFIRM_TRADE_ABOVE", d.confirm_trade_above, _decimal(Decimal(0)))
    daily = r.field("TGTRADER_DAILY_SUMMARY_UTC", d.daily_summary_utc, _time_of_day)

    # Rules across fields. A field that is present but invalid already has its own problem line.
    has = {name: r.get(name) is not None for name in ("TELEGRAM_BOT_TOKEN", "BINANCE_API_KEY", "BINANCE_API_SECRET")}
    if has["TELEGRAM_BOT_TOKEN"] and r.get("TELEGRAM_ALLOWED_CHAT_IDS") is None:
        r.problem("TELEGRAM_ALLOWED_CHAT_IDS", "required when TELEGRAM_BOT_TOKEN is set (who may use the bot?)")
    key_name, secret_name = "BINANCE_API_KEY", "BINANCE_API_SECRET"
    private_key = _private_key_rules(r, key_type, private_key, private_key_path, passphrase)
    if key_type != "hmac":  # the private key signs; there is no API secret
        secret_name = "BINANCE_PRIVATE_KEY"
        has[secret_name] = r.get(secret_name) is not None or r.get("BINANCE_PRIVATE_KEY_PATH") is not None
    if mode == "live":
        for name in (key_name, secret_name):
            if not has[name]:
                r.problem(name, "required when TGTRADER_MODE=live")
    elif has[key_name] != has[secret_name]:
        missing, present = (secret_name, key_name) if has[key_name] else (key_name, secret_name)
        r.problem(missing, f"{present} is set, so this is required too")
    if max_grid > max_total:
        r.problem(
            "TGTRADER_MAX_GRID_QUOTE",
            f"must not exceed TGTRADER_MAX_TOTAL_QUOTE ({max_grid} > {max_total})",
        )

    if r.problems:
        raise ConfigError(r.problems)
    return Settings(
        telegram_bot_token=token,
        telegram_allowed_chat_ids=chat_ids,
        telegram_allowed_user_ids=user_ids,
        telegram_readonly_user_ids=readonly_ids,
        telegram_max_command_age_s=command_age,
        telegram_outbox_retention_days=retention,
        telegram_api_base=api_base,
        telegram_webhook_url=webhook_url,
        telegram_webhook_listen=webhook_listen,
        telegram_webhook_port=webhook_port,
        telegram_webhook_secret=webhook_secret,
        binance_api_key=api_key,
        binance_api_secret=api_secret,
        binance_key_type=key_type,
        binance_private_key=private_key,
        binance_private_key_passphrase=passphrase,
        binance_testnet=testnet,
        binance_rest_url=rest_url,
        binance_ws_url=ws_url,
        db_path=db_path,
        log_dir=log_dir,
        log_level=log_level,
        log_json=log_json,
        log_rotation=log_rotation,
        log_retention=log_retention,
        mode=mode,
        paper_maker_fee=maker_fee,
        paper_taker_fee=taker_fee,
        paper_balances=balances,
        paper_fee_asset=fee_asset,
        max_grid_quote=max_grid,
        max_total_quote=max_total,
        max_open_orders=max_orders,
        confirm_trade_above=confirm_above,
        daily_summary_utc=daily,
    )


def _private_key_rules(r: _Reader, kind: KeyType, value: Secret | None, path: Path | None,
                       passphrase: Secret | None) -> Secret | None:
    """The private key (read from its file if given by path), checked against BINANCE_KEY_TYPE."""
    if value is not None and path is not None:
        r.problem("BINANCE_PRIVATE_KEY_PATH", "set either BINANCE_PRIVATE_KEY or BINANCE_PRIVATE_KEY_PATH, not both")
        return None
    if path is not None:
        try:
            value = _pem(path.read_text())
        except OSError as exc:
            r.problem("BINANCE_PRIVATE_KEY_PATH", f"cannot read {path}: {exc.strerror or type(exc).__name__}")
            return None
        except ValueError as exc:
            r.problem("BINANCE_PRIVATE_KEY_PATH", f"{path}: {exc}")
            return None
    name = "BINANCE_PRIVATE_KEY_PATH" if path is not None else "BINANCE_PRIVATE_KEY"
    if value is None:
        return None
    if kind == "hmac":
        r.problem(name, "set BINANCE_KEY_TYPE=ed25519 (or rsa) to sign with a private key")
        return None
    problem = private_key_problem(kind, value.reveal(), passphrase.reveal() if passphrase else None)
    if problem is not None:
        r.problem(name, problem)
        return None
    return value


def env_variable_names() -> list[str]:
    """Every variable load_settings reads (the README table and .env.example list exactly these)."""
    return list(ENV_VARS)


ENV_VARS: tuple[str, ...] = (
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_ALLOWED_CHAT_IDS",
    "TELEGRAM_ALLOWED_USER_IDS",
    "TELEGRAM_READONLY_USER_IDS",
    "TELEGRAM_MAX_COMMAND_AGE_S",
    "TELEGRAM_OUTBOX_RETENTION_DAYS",
    "TELEGRAM_API_BASE",
    "TELEGRAM_WEBHOOK_URL",
    "TELEGRAM_WEBHOOK_LISTEN",
    "TELEGRAM_WEBHOOK_PORT",
    "TELEGRAM_WEBHOOK_SECRET",
    "BINANCE_API_KEY",
    "BINANCE_API_SECRET",
    "BINANCE_KEY_TYPE",
    "BINANCE_PRIVATE_KEY",
    "BINANCE_PRIVATE_KEY_PATH",
    "BINANCE_PRIVATE_KEY_PASSPHRASE",
    "BINANCE_TESTNET",
    "BINANCE_REST_URL",
    "BINANCE_WS_URL",
    "TGTRADER_DB",
    "TGTRADER_LOG_DIR",
    "TGTRADER_LOG_LEVEL",
    "TGTRADER_LOG_JSON",
    "TGTRADER_LOG_ROTATION",
    "TGTRADER_LOG_RETENTION",
    "TGTRADER_MODE",
    "TGTRADER_PAPER_MAKER_FEE",
    "TGTRADER_PAPER_TAKER_FEE",
    "TGTRADER_PAPER_BALANCES",
    "TGTRADER_PAPER_FEE_ASSET",
    "TGTRADER_MAX_GRID_QUOTE",
    "TGTRADER_MAX_TOTAL_QUOTE",
    "TGTRADER_MAX_OPEN_ORDERS",
    "TGTRADER_CONFIRM_TRADE_ABOVE",
    "TGTRADER_DAILY_SUMMARY_UTC",
)
