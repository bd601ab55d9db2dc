"""Binance API key kinds and private-key checks for the settings (issue 14 item 9).

faqs/api_key_types.md: Binance supports Ed25519 ("We recommend to use Ed25519 API keys"), HMAC ("HMAC keys are
deprecated") and RSA keys; with Ed25519 and RSA the private key (PEM) signs every request. These checks run at
start-up so a wrong key is one plain settings line, never a crash in the middle of trading, and never quote the
key. Kept out of config.py so that module stays small; the adapter loads the key itself (binance/compat.py).
"""

from __future__ import annotations

from typing import Any, Literal

KeyType = Literal["hmac", "ed25519", "rsa"]
KEY_TYPES: tuple[KeyType, ...] = ("hmac", "ed25519", "rsa")


def key_type_of(value: str) -> KeyType:
    for kind in KEY_TYPES:
        if value.lower() == kind:
            return kind
    raise ValueError(f"must be hmac, ed25519 or rsa, got {value!r}")


def pem_text(value: str) -> str:
    """A PEM private key as given in the environment (`\\n` written for line breaks is accepted)."""
    if "-----BEGIN" not in value or "PRIVATE KEY-----" not in value:
        raise ValueError("must be a PEM private key (-----BEGIN PRIVATE KEY----- ...); in .env write the line "
                         "breaks as \\n inside double quotes, or use BINANCE_PRIVATE_KEY_PATH")
    return value.replace("\\n", "\n")


def private_key_problem(kind: str, pem: str, passphrase: str | None) -> str | None:
    """Why `pem` is not a usable `kind` private key, or None (the key is never quoted)."""
    from Crypto.PublicKey import ECC, RSA

    key: Any
    try:
        if kind == "ed25519":
            key = ECC.import_key(pem, passphrase=passphrase)
            if key.curve != "Ed25519":
                return f"is an ECC key on {key.curve}, not Ed25519"
        else:
            key = RSA.import_key(pem, passphrase=passphrase)
    except (ValueError, IndexError, TypeError):
        name = "Ed25519" if kind == "ed25519" else "RSA"
        return f"is not a readable {name} private key (PEM, PKCS#8; check the passphrase if it is encrypted)"
    if not key.has_private():
        return "is a public key; the private key is needed (Binance keeps the public one)"
    return None
