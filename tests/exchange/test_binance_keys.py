"""API keys (issue 14 item 9): Ed25519 and RSA keys besides HMAC, recvWindow <= 5000 ms, doctor's key line.

faqs/api_key_types.md: "We recommend to use Ed25519 API keys"; "HMAC keys are deprecated". rest-api.md, "SIGNED
Endpoint security": RSA (RSASSA-PKCS1-v1_5, SHA-256) and Ed25519 signatures are base64 and case-sensitive; the
fake verifies them with the public key (FakeBinance.use_public_key), on REST and on the WebSocket API.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import pytest
from Crypto.PublicKey import ECC, RSA

from tests.exchange import test_binance as kit
from tests.fakes.fake_binance import API_KEY, FakeBinance
from tgtrader.doctor import diagnose
from tgtrader.errors import ExchangeError
from tgtrader.exchange.binance import BinanceExchange, compat
from tgtrader.types import Fill, OrderStatus, Side

pytestmark = pytest.mark.timeout(60)
fake, fast_ws = kit.fake, kit.fast_ws  # the fixtures of the adapter's main test module
Recorder, limit, make_exchange, until = kit.Recorder, kit.limit, kit.make_exchange, kit.until


@cache
def ed25519_pair(passphrase: str | None = None) -> tuple[str, str]:
    key = ECC.generate(curve="Ed25519")
    private = key.export_key(format="PEM", passphrase=passphrase,
                             protection="PBKDF2WithHMAC-SHA512AndAES256-CBC" if passphrase else None)
    return private, key.public_key().export_key(format="PEM")


@cache
def rsa_pair() -> tuple[str, str]:
    key = RSA.generate(2048)
    return key.export_key(pkcs=8).decode(), key.public_key().export_key().decode()


async def _round_trip(fake: FakeBinance, **signing: str | None) -> None:
    """Start (the user stream subscribes with a signed WS-API request), place, fill through the stream, cancel."""
    rec = Recorder()
    ex = BinanceExchange(API_KEY, "", rest_url=fake.rest_url, ws_url=fake.ws_url, request_timeout=2.0,
                         backoff_base_s=0.02, user_check_s=0.5, **signing)  # type: ignore[arg-type]
    ex.set_event_sink(rec)
    await ex.start()
    try:
        assert fake.user_subscriptions_opened == 1
        await ex.place_order(limit("tg-g1-0B1", Side.BUY, "0.001", "49000"))
        await fake.set_price("BTCUSDT", "49000")
        await until(lambda: any(isinstance(e, Fill) and e.client_order_id == "tg-g1-0B1" for e in rec.events))
        await ex.place_order(limit("tg-g1-1B1", Side.BUY, "0.001", "40000"))
        assert (await ex.cancel_order("BTCUSDT", "tg-g1-1B1")).status is OrderStatus.CANCELED
        assert (await ex.balances())["USDT"].free > 0
    finally:
        await ex.close()


async def test_ed25519_key_signs_rest_and_the_user_stream(fake: FakeBinance) -> None:
    private, public = ed25519_pair()
    fake.use_public_key(public)
    await _round_trip(fake, key_type="ed25519", private_key=private)
    assert fake.signatures_checked["ed25519"] >= 5 and fake.signatures_checked["hmac"] == 0


async def test_an_encrypted_ed25519_key_with_its_passphrase(fake: FakeBinance) -> None:
    """python-binance's own loader takes any PEM over 120 characters for RSA and gives no passphrase to the
    Ed25519 import; the adapter loads the key itself."""
    private, public = ed25519_pair("correct horse")
    fake.use_public_key(public)
    await _round_trip(fake, key_type="ed25519", private_key=private, private_key_pass="correct horse")


async def test_rsa_key_signs_rest_and_the_user_stream(fake: FakeBinance) -> None:
    private, public = rsa_pair()
    fake.use_public_key(public)
    await _round_trip(fake, key_type="rsa", private_key=private)
    assert fake.signatures_checked["rsa"] >= 5


async def test_the_fake_refuses_a_signature_by_another_key(fake: FakeBinance) -> None:
    fake.use_public_key(ed25519_pair()[1])
    other, _ = rsa_pair()
    ex = make_exchange(fake, key_type="rsa", private_key=other, user_stream=False)
    await ex.start()  # time and exchangeInfo are not signed
    try:
        with pytest.raises(ExchangeError) as info:
            await ex.balances()
        assert info.value.code == -1022
    finally:
        await ex.close()
    hmac_ex = make_exchange(fake, user_stream=False)  # HMAC against an Ed25519 key: refused as well
    await hmac_ex.start()
    try:
        with pytest.raises(ExchangeError):
            await hmac_ex.balances()
    finally:
        await hmac_ex.close()


def test_a_wrong_or_unreadable_key_is_a_clear_error_without_the_key() -> None:
    private, public = rsa_pair()
    for kind, pem in (("ed25519", private), ("rsa", public), ("rsa", "junk")):
        with pytest.raises(ValueError) as info:
            compat.load_signing_key(kind, pem)
        assert "private key" in str(info.value) and private.splitlines()[1] not in str(info.value)


def test_recv_window_is_5000_ms_or_less() -> None:
    """rest-api.md, "Timing security": "It is recommended to use a small recvWindow of 5000 or less!" The lost-
    answer bound follows: timestamp + recvWindow + the 10 s backend timeout + 1 s = 16 s (README)."""
    ex = BinanceExchange(API_KEY, "x")
    assert ex.recv_window_ms == 5000 and ex.order_settle_s == 16.0
    with pytest.raises(ValueError):
        BinanceExchange(API_KEY, "x", recv_window_ms=10_000)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "about 16 s with" in readme and "5 s `recvWindow`" in readme


async def test_requests_carry_recv_window_5000(fake: FakeBinance) -> None:
    seen: list[str] = []
    ex = make_exchange(fake, user_stream=False)
    await ex.start()
    try:
        assert ex.client is not None
        original = ex.client._request  # type: ignore[attr-defined]

        async def spy(method: str, uri: str, signed: bool, force_params: bool = False, **kwargs: object) -> object:
            result = await original(method, uri, signed, force_params, **kwargs)
            data = kwargs.get("data")
            if signed and isinstance(data, dict):
                seen.append(str(data.get("recvWindow")))
            return result

        ex.client._request = spy  # type: ignore[attr-defined,method-assign]
        await ex.balances()
        assert seen == ["5000"]
    finally:
        await ex.close()


async def test_doctor_reports_the_key_type_and_signs_with_ed25519(tmp_path: Path, fake: FakeBinance) -> None:
    private, public = ed25519_pair()
    fake.use_public_key(public)
    key_file = tmp_path / "key.pem"
    key_file.write_text(private)
    env = {"BINANCE_API_KEY": API_KEY, "BINANCE_KEY_TYPE": "ed25519", "BINANCE_PRIVATE_KEY_PATH": str(key_file),
           "BINANCE_REST_URL": fake.rest_url, "TGTRADER_DB": str(tmp_path / "t.db"),
           "TGTRADER_LOG_DIR": str(tmp_path / "logs")}
    out = io.StringIO()
    await diagnose(env=env, out=out)
    text = out.getvalue()
    assert "OK    key type     Ed25519" in text
    assert "OK    api key" in text  # GET /api/v3/account, signed with the Ed25519 key, accepted by the fake
    assert private.splitlines()[1] not in text
    out = io.StringIO()
    hmac_env = {**env, "BINANCE_KEY_TYPE": "hmac", "BINANCE_API_SECRET": "s3cret"}
    del hmac_env["BINANCE_PRIVATE_KEY_PATH"]
    await diagnose(env=hmac_env, out=out, quick=True)
    assert "WARN  key type     HMAC" in out.getvalue()
