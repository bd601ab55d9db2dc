"""Settings for Ed25519 / RSA API keys (issue 14 item 9): key type, the PEM by value or by path, masking."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from Crypto.PublicKey import ECC, RSA

from tgtrader.config import load_settings
from tgtrader.errors import ConfigError


@cache
def ed25519_pem() -> str:
    return ECC.generate(curve="Ed25519").export_key(format="PEM")


def _live(**extra: str) -> dict[str, str]:
    return {"TGTRADER_MODE": "live", "BINANCE_API_KEY": "key123", **extra}


def test_hmac_stays_the_default() -> None:
    s = load_settings(_live(BINANCE_API_SECRET="sec"), env_file=None)
    assert s.binance_key_type == "hmac" and s.has_binance_keys and s.binance_private_key is None


def test_ed25519_key_by_value_with_escaped_line_breaks_needs_no_secret() -> None:
    pem = ed25519_pem()
    s = load_settings(_live(BINANCE_KEY_TYPE="Ed25519", BINANCE_PRIVATE_KEY=pem.replace("\n", "\\n")), env_file=None)
    assert s.binance_key_type == "ed25519" and s.has_binance_keys and s.binance_api_secret is None
    assert s.binance_private_key is not None and s.binance_private_key.reveal() == pem
    body = pem.splitlines()[1]
    assert body not in repr(s) and body not in str(s)
    assert pem in s.secrets() and body in s.secrets()  # the log masker hides the key, and any line of it


def test_rsa_key_by_path(tmp_path: Path) -> None:
    path = tmp_path / "rsa.pem"
    path.write_bytes(RSA.generate(2048).export_key(pkcs=8))
    s = load_settings(_live(BINANCE_KEY_TYPE="rsa", BINANCE_PRIVATE_KEY_PATH=str(path)), env_file=None)
    assert s.binance_key_type == "rsa" and s.has_binance_keys


@pytest.mark.parametrize(("env", "expected"), [
    (_live(BINANCE_KEY_TYPE="ed25519"), "BINANCE_PRIVATE_KEY: required when TGTRADER_MODE=live"),
    (_live(BINANCE_KEY_TYPE="dsa", BINANCE_API_SECRET="s"), "BINANCE_KEY_TYPE: must be hmac, ed25519 or rsa"),
    (_live(BINANCE_KEY_TYPE="rsa", BINANCE_PRIVATE_KEY=ed25519_pem()), "is not a readable RSA private key"),
    (_live(BINANCE_API_SECRET="s", BINANCE_PRIVATE_KEY=ed25519_pem()), "set BINANCE_KEY_TYPE=ed25519"),
    (_live(BINANCE_KEY_TYPE="ed25519", BINANCE_PRIVATE_KEY="abc"), "must be a PEM private key"),
    (_live(BINANCE_KEY_TYPE="ed25519", BINANCE_PRIVATE_KEY_PATH="/nonexistent/k.pem"), "cannot read"),
    (_live(BINANCE_KEY_TYPE="ed25519",
           BINANCE_PRIVATE_KEY=ECC.generate(curve="Ed25519").public_key().export_key(format="PEM")),
     "must be a PEM private key"),
])
def test_key_problems_are_one_clear_line_without_the_key(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env, env_file=None)
    text = "\n".join(info.value.problems)
    assert expected in text
    for value in env.values():
        if "PRIVATE KEY" in value:
            assert value.splitlines()[1] not in text
