"""Settings: every field's validation, defaults, the strict .env parser, secret masking."""

from __future__ import annotations

import pickle
from decimal import Decimal
from pathlib import Path

import pytest

from tgtrader.config import ENV_VARS, Secret, Settings, load_settings, parse_env_text
from tgtrader.errors import ConfigError

TOKEN = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def load(**env: str) -> Settings:
    return load_settings(env, env_file=None)


def problems(**env: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(**env)
    return err.value.problems


def test_defaults() -> None:
    s = load()
    assert s.mode == "paper" and not s.is_live
    assert s.telegram_api_base == "https://api.telegram.org/bot"
    assert s.db_path == Path("./data/tgtrader.db") and s.log_dir == Path("./data/logs")
    assert (s.log_level, s.log_json, s.log_rotation, s.log_retention) == ("INFO", False, "10 MB", 5)
    assert s.paper_maker_fee == s.paper_taker_fee == Decimal("0.001")
    assert s.paper_balances == {"USDT": Decimal("10000")}
    assert s.telegram_bot_token is None and s.binance_api_key is None and not s.has_binance_keys
    assert s.secrets() == []


def test_full_valid_configuration() -> None:
    s = load(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_ALLOWED_CHAT_IDS=" 111, -1002233, 111 ",
        TELEGRAM_API_BASE="http://127.0.0.1:8081/bot",
        BINANCE_API_KEY=KEY,
        BINANCE_API_SECRET=SECRET,
        BINANCE_TESTNET="yes",
        BINANCE_REST_URL="http://127.0.0.1:9000/api",
        BINANCE_WS_URL="ws://127.0.0.1:9000/",
        TGTRADER_DB="/tmp/x/t.db",
        TGTRADER_LOG_DIR="/tmp/x/logs",
        TGTRADER_LOG_LEVEL="debug",
        TGTRADER_LOG_JSON="1",
        TGTRADER_LOG_ROTATION="1 day",
        TGTRADER_LOG_RETENTION="3 files",
        TGTRADER_MODE="LIVE",
        TGTRADER_PAPER_MAKER_FEE="0.00075",
        TGTRADER_PAPER_TAKER_FEE="0",
        TGTRADER_PAPER_BALANCES="usdt=500.5, BTC=0.01",
        TGTRADER_MAX_GRID_QUOTE="100",
        TGTRADER_MAX_TOTAL_QUOTE="300",
        TGTRADER_MAX_OPEN_ORDERS="50",
    )
    assert s.telegram_allowed_chat_ids == (111, -1002233)
    assert s.telegram_bot_token is not None and s.telegram_bot_token.reveal() == TOKEN
    assert s.binance_testnet and s.is_live and s.has_binance_keys
    assert s.log_level == "DEBUG" and s.log_json and s.log_retention == 3
    assert s.paper_balances == {"USDT": Decimal("500.5"), "BTC": Decimal("0.01")}
    assert (s.max_grid_quote, s.max_total_quote, s.max_open_orders) == (Decimal(100), Decimal(300), 50)
    assert sorted(s.secrets()) == sorted([TOKEN, KEY, SECRET])


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("TGTRADER_MODE", "lvie", "TGTRADER_MODE: must be 'paper' or 'live', got 'lvie'"),
        ("TELEGRAM_ALLOWED_CHAT_IDS", "12,abc", "TELEGRAM_ALLOWED_CHAT_IDS: must be a comma-separated list"),
        ("TELEGRAM_ALLOWED_CHAT_IDS", ",,", "TELEGRAM_ALLOWED_CHAT_IDS: must list at least one"),
        ("TELEGRAM_API_BASE", "api.telegram.org", "TELEGRAM_API_BASE: must be a https:// or http:// URL"),
        ("TELEGRAM_WEBHOOK_URL", "bot.example.com/hook", "TELEGRAM_WEBHOOK_URL: must be a https:// URL"),
        ("TELEGRAM_WEBHOOK_PORT", "70000", "TELEGRAM_WEBHOOK_PORT: must be"),
        ("TELEGRAM_WEBHOOK_LISTEN", "0.0.0.0; rm", "TELEGRAM_WEBHOOK_LISTEN: must be an IP address or host name"),
        ("TELEGRAM_WEBHOOK_SECRET", "has/slash", "TELEGRAM_WEBHOOK_SECRET: does not look like a webhook secret"),
        ("BINANCE_TESTNET", "maybe", "BINANCE_TESTNET: must be true or false"),
        ("BINANCE_REST_URL", "ftp://x", "BINANCE_REST_URL: must be a https:// or http:// URL"),
        ("BINANCE_WS_URL", "http://x", "BINANCE_WS_URL: must be a wss:// or ws:// URL"),
        ("TGTRADER_LOG_LEVEL", "loud", "TGTRADER_LOG_LEVEL: must be one of"),
        ("TGTRADER_LOG_JSON", "2", "TGTRADER_LOG_JSON: must be true or false"),
        ("TGTRADER_LOG_ROTATION", "big", "TGTRADER_LOG_ROTATION: must be a size"),
        ("TGTRADER_LOG_RETENTION", "0", "TGTRADER_LOG_RETENTION: must be a number of files"),
        ("TGTRADER_PAPER_MAKER_FEE", "-0.1", "TGTRADER_PAPER_MAKER_FEE: must be >= 0 and <= 0.1"),
        ("TGTRADER_PAPER_TAKER_FEE", "x", "TGTRADER_PAPER_TAKER_FEE: must be a number"),
        ("TGTRADER_PAPER_BALANCES", "USDT:100", "TGTRADER_PAPER_BALANCES: must look like"),
        ("TGTRADER_PAPER_BALANCES", "USDT=-1", "TGTRADER_PAPER_BALANCES: amount for USDT must be zero or more"),
        ("TGTRADER_MAX_GRID_QUOTE", "0", "TGTRADER_MAX_GRID_QUOTE: must be > 0"),
        ("TGTRADER_MAX_TOTAL_QUOTE", "NaN", "TGTRADER_MAX_TOTAL_QUOTE: must be a finite number"),
        ("TGTRADER_MAX_OPEN_ORDERS", "1.5", "TGTRADER_MAX_OPEN_ORDERS: must be a whole number"),
        ("TGTRADER_DAILY_SUMMARY_UTC", "8pm", "TGTRADER_DAILY_SUMMARY_UTC: must be a UTC time of day like 20:00"),
        ("TELEGRAM_BOT_TOKEN", "not a token", "TELEGRAM_BOT_TOKEN: bot token contains whitespace"),
        ("BINANCE_API_KEY", "abc def", "BINANCE_API_KEY: API key contains whitespace"),
    ],
)
def test_each_bad_field_gives_one_line(name: str, value: str, expected: str) -> None:
    env = {name: value}
    if name == "TELEGRAM_BOT_TOKEN":
        env["TELEGRAM_ALLOWED_CHAT_IDS"] = "1"
    if name == "BINANCE_API_KEY":
        env["BINANCE_API_SECRET"] = SECRET
    found = problems(**env)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found
    assert "\n" not in found[0]


def test_all_problems_are_collected() -> None:
    found = problems(TGTRADER_MODE="lvie", BINANCE_TESTNET="maybe", TGTRADER_LOG_LEVEL="loud")
    assert [p.split(":")[0] for p in found] == ["BINANCE_TESTNET", "TGTRADER_LOG_LEVEL", "TGTRADER_MODE"]


def test_live_requires_keys() -> None:
    assert problems(TGTRADER_MODE="live") == [
        "BINANCE_API_KEY: required when TGTRADER_MODE=live",
        "BINANCE_API_SECRET: required when TGTRADER_MODE=live",
    ]
    assert load(TGTRADER_MODE="live", BINANCE_API_KEY=KEY, BINANCE_API_SECRET=SECRET).is_live


def test_half_a_key_pair_is_an_error() -> None:
    assert problems(BINANCE_API_KEY=KEY) == ["BINANCE_API_SECRET: BINANCE_API_KEY is set, so this is required too"]
    assert problems(BINANCE_API_SECRET=SECRET) == ["BINANCE_API_KEY: BINANCE_API_SECRET is set, so this is required too"]


def test_bot_token_needs_allowed_chats() -> None:
    found = problems(TELEGRAM_BOT_TOKEN=TOKEN)
    assert found == ["TELEGRAM_ALLOWED_CHAT_IDS: required when TELEGRAM_BOT_TOKEN is set (who may use the bot?)"]


def test_grid_cap_cannot_exceed_total_cap() -> None:
    assert problems(TGTRADER_MAX_GRID_QUOTE="20000", TGTRADER_MAX_TOTAL_QUOTE="100")[0].startswith(
        "TGTRADER_MAX_GRID_QUOTE: must not exceed"
    )


def test_empty_value_means_default() -> None:
    assert load(TGTRADER_MODE="", TELEGRAM_BOT_TOKEN="").mode == "paper"


def test_secrets_never_appear_in_problems_or_repr() -> None:
    found = problems(TELEGRAM_BOT_TOKEN="12345:bad token", TELEGRAM_ALLOWED_CHAT_IDS="1", BINANCE_API_KEY=KEY)
    assert all("bad token" not in p and KEY not in p for p in found)
    s = load(TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_ALLOWED_CHAT_IDS="1", BINANCE_API_KEY=KEY, BINANCE_API_SECRET=SECRET)
    for text in (repr(s), str(s), f"{s}", f"{s.binance_api_secret}", f"{s.binance_api_key:>80}"):
        assert TOKEN not in text and KEY not in text and SECRET not in text
    assert "Secret('********')" in repr(s)


def test_secret_type() -> None:
    secret = Secret("hunter2")
    assert str(secret) == "********" and repr(secret) == "Secret('********')"
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2") and secret != Secret("other") and bool(secret)
    with pytest.raises(TypeError):
        pickle.dumps(secret)


# ------------------------------------------------------------------ .env files


def test_env_file_parsing() -> None:
    text = "\n".join(
        [
            "# a comment",
            "",
            "PLAIN=value",
            "export EXPORTED=1",
            "SPACED = spaced value   # trailing comment",
            "SINGLE='it''s #not a comment'".replace("''", ""),
            'DOUBLE="line\\nbreak \\"quoted\\" # kept"',
            "EMPTY=",
            "HASH=abc#def",
        ]
    )
    assert parse_env_text(text) == {
        "PLAIN": "value",
        "EXPORTED": "1",
        "SPACED": "spaced value",
        "SINGLE": "its #not a comment",
        "DOUBLE": 'line\nbreak "quoted" # kept',
        "EMPTY": "",
        "HASH": "abc#def",
    }


def test_env_file_with_bom_and_crlf() -> None:
    assert parse_env_text("\ufeffA=1\r\nB='2'\r\n") == {"A": "1", "B": "2"}


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ("JUST_A_WORD", "expected KEY=VALUE"),
        ("1BAD=x", "invalid variable name"),
        ('OPEN="never closed', "missing closing"),
        ("'X'=y", "invalid variable name"),
        ('TAIL="a" b', "unexpected text after the closing quote"),
        ("HALF=abc'", "unbalanced quote"),
    ],
)
def test_malformed_env_line_names_the_line(tmp_path: Path, bad_line: str, reason: str) -> None:
    path = tmp_path / ".env"
    path.write_text(f"# header\nTGTRADER_MODE=paper\n{bad_line}\n")
    with pytest.raises(ConfigError) as err:
        load_settings({}, env_file=path)
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(f"{path} line 3: {reason}")


def test_malformed_line_does_not_echo_its_content() -> None:
    with pytest.raises(ConfigError) as err:
        parse_env_text(f'BINANCE_API_SECRET="{SECRET}')
    assert SECRET not in str(err.value)


def test_environment_overrides_env_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("TGTRADER_MODE=live\nTGTRADER_LOG_LEVEL=DEBUG\n")
    with pytest.raises(ConfigError):  # live from the file, keys missing
        load_settings({}, env_file=path)
    s = load_settings({"TGTRADER_MODE": "paper"}, env_file=path)
    assert s.mode == "paper" and s.log_level == "DEBUG"


def test_default_env_file_is_dot_env_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).log_level == "INFO"  # no .env: fine
    (tmp_path / ".env").write_text("TGTRADER_LOG_LEVEL=WARNING\n")
    assert load_settings({}).log_level == "WARNING"


def test_missing_explicit_env_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="env file not found"):
        load_settings({}, env_file=tmp_path / "nope.env")


def test_env_example_documents_every_variable() -> None:
    example = Path(__file__).resolve().parent.parent / ".env.example"
    text = example.read_text()
    parsed = parse_env_text(text)  # the example itself must parse
    documented = {line.lstrip("# ").split("=")[0] for line in text.splitlines() if "=" in line}
    assert set(ENV_VARS) <= documented
    assert set(parsed) <= set(ENV_VARS)


def test_readme_documents_every_variable() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [name for name in ENV_VARS if f"| `{name}` |" not in readme]
    assert missing == []


def test_daily_summary_time_is_optional_and_parsed() -> None:
    import datetime as dt

    assert load_settings(env={}, env_file=None).daily_summary_utc is None
    assert load_settings(env={"TGTRADER_DAILY_SUMMARY_UTC": ""}, env_file=None).daily_summary_utc is None
    assert load_settings(env={"TGTRADER_DAILY_SUMMARY_UTC": "20:30"}, env_file=None).daily_summary_utc == dt.time(20, 30)


def test_webhook_settings_and_secret_masking() -> None:
    from tgtrader.telegram.app import webhook_of

    assert webhook_of(load()) is None  # default: long polling
    s = load(TELEGRAM_WEBHOOK_URL="https://bot.example.com/tg/hook", TELEGRAM_WEBHOOK_PORT="8443",
             TELEGRAM_WEBHOOK_SECRET="s3cr3t_Webhook-Token")
    hook = webhook_of(s)
    assert hook is not None and (hook.url, hook.listen, hook.port, hook.path) == (
        "https://bot.example.com/tg/hook", "127.0.0.1", 8443, "tg/hook")  # the proxy in front is local
    assert hook.secret_token == "s3cr3t_Webhook-Token" and "s3cr3t" not in repr(hook) + repr(s)
    assert "s3cr3t_Webhook-Token" in s.secrets()  # masked in logs like the token and keys
    random_a = webhook_of(load(TELEGRAM_WEBHOOK_URL="https://h/x"))
    random_b = webhook_of(load(TELEGRAM_WEBHOOK_URL="https://h/x"))
    assert random_a and random_b and len(random_a.secret_token) >= 32 and random_a.secret_token != random_b.secret_token


def test_a_home_directory_that_cannot_be_expanded_is_a_settings_error() -> None:
    """Found by the settings fuzz test: TGTRADER_DB='~0' (no user named 0) crashed with RuntimeError."""
    with pytest.raises(ConfigError) as err:
        load_settings({"TGTRADER_DB": "~0", "TGTRADER_LOG_DIR": "~no-such-user-here"}, env_file=None)
    assert any(p.startswith("TGTRADER_DB: cannot expand") for p in err.value.problems)
    assert any(p.startswith("TGTRADER_LOG_DIR: cannot expand") for p in err.value.problems)
