"""Conversions between Python values and SQLite columns. Decimal goes to TEXT, never through float."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any


def now_ms() -> int:
    return int(time.time() * 1000)


def dec_to_db(value: Decimal | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Decimal):
        raise TypeError(f"expected Decimal, got {type(value).__name__}")
    return str(value)


def dec_from_db(value: Any) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value)) if not isinstance(value, str) else Decimal(value)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "value") and isinstance(obj.value, (str, int)):  # enums
        return obj.value
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def json_to_db(value: Any) -> str | None:
    """JSON text; Decimals become strings (exact) and enums their value. The reader converts back."""
    if value is None:
        return None
    return json.dumps(value, default=_json_default, separators=(",", ":"), sort_keys=True)


def json_from_db(text: str | None) -> Any:
    if text is None:
        return None
    return json.loads(text)
