"""Hostile input and a hostile disk.

- Settings loading fuzzed with hypothesis: any environment gives Settings or a ConfigError (one line per
  problem) and no problem line ever echoes a secret. (The exchange-message parser fuzz lives in
  tests/exchange/test_binance_parse.py and the command parser fuzz in tests/telegram/test_parse.py; here the
  same kind of garbage goes over the real wire into the running bot, which must survive and place nothing.)
- The database locked by another process (BEGIN EXCLUSIVE held for seconds) while fills arrive, and an
  unwritable log directory: the bot survives and the invariants hold.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.harness import Harness
from tests.reliability.test_crash_restart import assert_invariants
from tgtrader.config import load_settings
from tgtrader.errors import ConfigError

NAMES = ["TELEGRAM_BOT_TOKEN", "TELEGRAM_ALLOWED_CHAT_IDS", "TELEGRAM_API_BASE", "BINANCE_API_KEY",
         "BINANCE_API_SECRET", "BINANCE_TESTNET", "BINANCE_REST_URL", "BINANCE_WS_URL", "TGTRADER_DB",
         "TGTRADER_LOG_DIR", "TGTRADER_LOG_LEVEL", "TGTRADER_LOG_JSON", "TGTRADER_LOG_ROTATION",
         "TGTRADER_LOG_RETENTION", "TGTRADER_MODE", "TGTRADER_PAPER_MAKER_FEE", "TGTRADER_PAPER_TAKER_FEE",
         "TGTRADER_PAPER_BALANCES", "TGTRADER_MAX_GRID_QUOTE", "TGTRADER_MAX_TOTAL_QUOTE",
         "TGTRADER_MAX_OPEN_ORDERS"]
NASTY = st.sampled_from(["", " ", "NaN", "nan", "Infinity", "-Infinity", "inf", "1e999999", "-1", "0", "1e-30",
                         "9" * 400, "0x10", "true", "yes", "None", "null", "[]", "{}", "\x00", "live", "paper",
                         "LIVE", "123:abc", "http://", "ws://x", "USDT=NaN", "USDT=1e999,BTC=-1", "1,2,x",
                         "../../etc/passwd", "DEBUG", "TRACE", "1 GB", "10 days"])
VALUES = st.one_of(NASTY, st.text(max_size=40))
SECRET_KEY = "FUZZKEY0123456789abcdefFUZZKEY"
SECRET = "FUZZSECRET0123456789abcdefFUZZSECRET"
TOKEN = "123456:FUZZTOKENabcdefghijklmnopqrstuvwxyz"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=len(NAMES)), st.booleans())
def test_fuzz_settings_loading_never_crashes_nor_echoes_secrets(env: dict[str, str], with_secrets: bool) -> None:
    env = {k: v.replace("\x00", "") for k, v in env.items()}
    if with_secrets:
        env.update(BINANCE_API_KEY=SECRET_KEY, BINANCE_API_SECRET=SECRET, TELEGRAM_BOT_TOKEN=TOKEN)
    try:
        s = load_settings(env, env_file=None)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        text = "\n".join(exc.problems) + str(exc)
        for secret in (SECRET_KEY, SECRET, TOKEN, TOKEN.split(":")[1]):
            assert secret not in text
        return
    assert s.is_live in (True, False)
    for secret in (SECRET_KEY, SECRET, TOKEN):
        assert secret not in repr(s) and secret not in str(s)


GARBAGE_MARKET = [
    b"not json", b"", b"{", b"[]", b"null", b'"x"', b"1e999999",
    b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","p":"NaN","q":"1","T":1}}',
    b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","p":"Infinity","q":"1","T":1}}',
    b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","p":"-5","q":"1","T":1}}',
    b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","p":"1' + b"0" * 300 + b'","q":"1","T":1}}',
    b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","p":40000,"q":null,"T":"x"}}',
    b'{"stream":"btcusdt@trade","data":{"e":"trade"}}',
    b'{"stream":"btcusdt@trade","data":[1,2,3]}',
    b'{"stream":"btcusdt@bookTicker","data":{"s":"BTCUSDT","b":"nan","a":"inf","B":"1","A":"1","u":1}}',
    b'{"stream":"btcusdt@bookTicker","data":{"s":"BTCUSDT","b":"0","a":"0","B":"-1","A":"x","u":"y"}}',
    b'{"stream":12,"data":{}}',
]


def _user_garbage(sub: int) -> list[bytes]:
    base = {"e": "executionReport", "E": 1, "s": "BTCUSDT", "c": "tg-g1-0B999", "S": "BUY", "o": "LIMIT",
            "f": "GTC", "q": "1", "p": "49000", "x": "TRADE", "X": "FILLED", "i": 1, "l": "1", "z": "1",
            "L": "49000", "n": "0", "N": "USDT", "T": 1, "t": 1, "m": True}
    variants = [
        {**base, "L": "NaN"}, {**base, "l": "Infinity"}, {**base, "l": "1e999999"}, {**base, "t": "x"},
        {**base, "S": "SIDEWAYS"}, {**base, "c": None}, {k: v for k, v in base.items() if k not in ("l", "L", "t")},
        {**base, "x": "NEW", "X": "BOGUS"}, {"e": "outboundAccountPosition", "B": [{"a": "BTC", "f": "NaN", "l": None}]},
        {"e": "outboundAccountPosition", "B": "x"}, {"e": None}, [1, 2],
    ]
    out = [orjson.dumps({"subscriptionId": sub, "event": v}) for v in variants]
    return out + [b"{", b"null", orjson.dumps({"subscriptionId": sub})]


async def test_garbage_on_the_wire_neither_crashes_nor_places_orders(harness: Harness) -> None:
    h = harness
    await h.start_bot()
    await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
    assert await h.settle(quiet_s=0.5)
    posts = dict(h.binance.order_posts)
    for conn in list(h.binance.market_conns):
        for frame in GARBAGE_MARKET:
            await conn.ws.send_bytes(frame) if frame[:1] not in (b"{", b"[") else await conn.ws.send_str(frame.decode())
    for ws, subs in list(h.binance.user_subs.items()):
        for frame in _user_garbage(next(iter(subs))):
            await ws.send_str(frame.decode())
    await asyncio.sleep(2.0)  # quiet period: a crash or an order caused by the garbage would show up now
    assert h.alive, h.stderr()[-2000:]
    assert dict(h.binance.order_posts) == posts  # nothing placed because of garbage
    # still trading normally afterwards (a stream the parser broke would be reconnected)
    await h.move("BTCUSDT", "49400")
    assert await h.settle(timeout=40, quiet_s=0.7)
    assert h.alive
    assert_invariants(h, outbox=False)
    assert len(h.binance.order_posts) > len(posts)
    assert await h.command("/status")


async def test_database_locked_by_another_process_for_seconds(harness: Harness) -> None:
    h = harness
    await h.start_bot()
    await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
    assert await h.settle(quiet_s=0.5)
    other = sqlite3.connect(str(h.db_path), timeout=10, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        t0 = time.monotonic()
        await h.move("BTCUSDT", "49400")  # fills arrive while nobody else can write (or read)
        h.telegram.push_command(h.chat_id, "/status")
        await asyncio.sleep(3.0)
        assert h.alive, h.stderr()[-2000:]
    finally:
        other.execute("COMMIT")
        other.close()
    held = time.monotonic() - t0
    assert held >= 3.0
    assert await h.settle(timeout=40, quiet_s=0.7)
    assert h.alive, h.stderr()[-2000:]
    assert_invariants(h, outbox=False)
    await h.move("BTCUSDT", "50100")
    assert await h.settle(timeout=30, quiet_s=0.7)
    assert_invariants(h, outbox=False)
    assert await h.command("/status")


async def test_unwritable_log_dir_bot_still_runs(tmp_path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log directory should be")  # unwritable even for root
    h = Harness(tmp_path, extra_env={"TGTRADER_LOG_DIR": str(blocker / "logs")})
    await h.start()
    try:
        await h.start_bot()
        await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
        await h.move("BTCUSDT", "49400")
        assert await h.settle(quiet_s=0.5)
        assert h.alive
        assert_invariants(h, outbox=False)
        assert "not writable" in h.stderr()  # said once, in plain words, on the console
    finally:
        await h.close()
