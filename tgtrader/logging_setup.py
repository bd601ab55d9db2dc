"""Logging: loguru console + rotating file, optional JSON lines, secrets masked everywhere.

Masking happens in two places, on purpose:
- a core patcher masks the message and `extra` of every record, and formats any exception
  itself (traceback text, masked) into `extra["exc_text"]`, clearing `record["exception"]`,
  so no sink (file, JSON, or one added later by a test) ever formats the raw exception;
- the console sink is a function that masks the final text again, which also covers
  `opt(colors=True)` messages, which loguru renders from its own copy.
`diagnose` is off everywhere: variable values in tracebacks could hold secrets.
"""

from __future__ import annotations

import inspect
import logging
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from loguru import logger

from tgtrader.config import MASK, Settings

MIN_SECRET_LEN = 6
NOISY_LIBRARIES = ("httpx", "httpcore", "websockets", "aiohttp.access", "apscheduler", "asyncio", "urllib3")
ROUTED_LIBRARIES = ("telegram", "httpx", "binance", "aiohttp", "websockets", "apscheduler")

_CONSOLE_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{line} - {message}"
_FILE_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSSZZ} | {level: <8} | {process}:{thread.name} | {name}:{function}:{line} - {message}"


class Masker:
    """Replaces every known secret (and its URL-encoded form) with ********."""

    def __init__(self) -> None:
        self._needles: list[str] = []

    def set_secrets(self, secrets: Iterable[str]) -> None:
        needles: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < MIN_SECRET_LEN:
                continue
            needles.add(secret)
            needles.add(quote(secret, safe=""))
            if ":" in secret:  # a bot token "<id>:<key>": the key part alone is the secret bit
                tail = secret.split(":", 1)[1]
                if len(tail) >= MIN_SECRET_LEN:
                    needles.add(tail)
        self._needles = sorted(needles, key=len, reverse=True)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Mask these too (e.g. a webhook secret generated at start), keeping the ones already set."""
        current = set(self._needles)
        self.set_secrets([*current, *secrets])

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, MASK)
        return text


masker = Masker()


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return masker(value)
    return value


def _patch(record: dict[str, Any]) -> None:
    record["message"] = masker(record["message"])
    extra = record["extra"]
    for key, value in list(extra.items()):
        extra[key] = _mask_value(value)
    exc = record["exception"]
    if exc is not None:
        if exc.type is not None:
            text = "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
            extra["exc_text"] = masker(text.rstrip("\n"))
        record["exception"] = None


def _format(base: str) -> Any:
    def fmt(record: dict[str, Any]) -> str:
        if record["extra"].get("exc_text"):
            return base + "\n{extra[exc_text]}\n"
        return base + "\n"

    return fmt


class _ConsoleSink:
    """Writes masked text to a stream (stderr by default)."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, message: Any) -> None:
        self.stream.write(masker(str(message)))
        self.stream.flush()


class InterceptHandler(logging.Handler):
    """Routes standard `logging` records (telegram, httpx, binance, aiohttp, websockets) into loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format args must not crash us
            message = str(record.msg)
        frame, depth = inspect.currentframe(), 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, message)


@dataclass
class LogSetup:
    file_path: Path | None
    warning: str | None = None


_handler_ids: list[int] = []
_warned_dirs: set[str] = set()
_default_removed = False


def setup_logging(
    settings: Settings | None = None,
    secrets: Iterable[str] = (),
    *,
    console: IO[str] | None = None,
    file: bool = True,
) -> LogSetup:
    """(Re)configure logging; calling it again replaces what the previous call installed.

    Never raises for an unwritable log directory: it warns once on the console and
    keeps logging to the console only.
    """
    global _default_removed
    settings = settings or Settings()
    masker.set_secrets([*settings.secrets(), *secrets])
    logger.configure(patcher=_patch)

    for handler_id in _handler_ids:
        try:
            logger.remove(handler_id)
        except ValueError:
            pass
    _handler_ids.clear()
    if not _default_removed:
        try:
            logger.remove(0)  # loguru's own default stderr sink, which does not mask
        except ValueError:
            pass
        _default_removed = True

    stream = console if console is not None else sys.stderr
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    _handler_ids.append(
        logger.add(
            _ConsoleSink(stream).write,
            level=settings.log_level,
            format=_format(_CONSOLE_FORMAT),
            colorize=is_tty,
            backtrace=False,
            diagnose=False,
        )
    )

    result = LogSetup(file_path=None)
    if file:
        log_dir = Path(settings.log_dir)
        path = log_dir / ("tgtrader.jsonl" if settings.log_json else "tgtrader.log")
        problem = _check_writable(log_dir)
        if problem is None:
            try:
                _handler_ids.append(
                    logger.add(
                        str(path),
                        level=settings.log_level,
                        format=_format(_FILE_FORMAT),
                        serialize=settings.log_json,
                        rotation=settings.log_rotation,
                        retention=settings.log_retention,
                        encoding="utf-8",
                        backtrace=False,
                        diagnose=False,
                        colorize=False,
                    )
                )
                result.file_path = path
            except (OSError, ValueError) as exc:
                problem = str(exc)
        if problem is not None:
            result.warning = f"log directory {log_dir} is not writable ({problem}); logging to the console only"
            if str(log_dir) not in _warned_dirs:
                _warned_dirs.add(str(log_dir))
                logger.warning(result.warning)

    _route_standard_logging(settings.log_level)
    return result


def reset_logging() -> None:
    """Undo setup_logging (for tests): our sinks, the patcher, the stdlib routing; loguru's default stderr sink back."""
    global _default_removed
    for handler_id in _handler_ids:
        try:
            logger.remove(handler_id)
        except ValueError:
            pass
    _handler_ids.clear()
    _warned_dirs.clear()
    masker.set_secrets([])
    logger.configure(patcher=_no_patch)
    if _default_removed:
        logger.add(sys.stderr)
        _default_removed = False
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, InterceptHandler):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET)


def _no_patch(record: dict[str, Any]) -> None:
    return None


def _check_writable(log_dir: Path) -> str | None:
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        probe = log_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _route_standard_logging(level: str) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, InterceptHandler):
            root.removeHandler(handler)
    root.addHandler(InterceptHandler())
    root.setLevel(logging.DEBUG if level in ("TRACE", "DEBUG") else logging.INFO)
    for name in ROUTED_LIBRARIES:
        lib = logging.getLogger(name)
        lib.handlers = [h for h in lib.handlers if not isinstance(h, InterceptHandler)]
        lib.propagate = True
    quiet = logging.DEBUG if level == "TRACE" else logging.WARNING
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(quiet)
