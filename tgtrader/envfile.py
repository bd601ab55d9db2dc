"""The strict `.env` parser (config.py reads settings from its result; `tgtrader setup` rewrites the file)."""

from __future__ import annotations

import re
from pathlib import Path

from tgtrader.errors import ConfigError

_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def parse_env_text(text: str, source: str = ".env") -> dict[str, str]:
    """A strict .env parser: `KEY=VALUE`, `export KEY=VALUE`, `#` comments, '…' and "…" quotes.

    A malformed line raises ConfigError naming the file and line number (never its content,
    which may hold a secret).
    """
    values: dict[str, str] = {}
    problems: list[str] = []
    text = text.removeprefix("\ufeff")  # editors on Windows like to add a byte-order mark
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].lstrip()
        key, sep, rest = line.partition("=")
        key = key.rstrip()
        if not sep:
            problems.append(f"{source} line {number}: expected KEY=VALUE")
            continue
        if not _KEY_RE.fullmatch(key):
            problems.append(f"{source} line {number}: invalid variable name (letters, digits and _ only)")
            continue
        try:
            values[key] = _parse_value(rest.strip())
        except ValueError as exc:
            problems.append(f"{source} line {number}: {exc}")
    if problems:
        raise ConfigError(problems)
    return values


def _parse_value(rest: str) -> str:
    if not rest:
        return ""
    quote = rest[0]
    if quote not in ("'", '"'):
        # unquoted: an inline comment starts at " #"
        value = re.split(r"\s+#", rest, maxsplit=1)[0].rstrip()
        if value[-1] in "'\"":
            raise ValueError("unbalanced quote")
        return value
    out: list[str] = []
    i = 1
    while i < len(rest):
        ch = rest[i]
        if ch == quote:
            tail = rest[i + 1 :].strip()
            if tail and not tail.startswith("#"):
                raise ValueError("unexpected text after the closing quote")
            return "".join(out)
        if ch == "\\" and quote == '"' and i + 1 < len(rest):
            nxt = rest[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    raise ValueError(f"missing closing {quote} quote")


def read_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    return parse_env_text(text, source=str(path))
