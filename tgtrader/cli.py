"""The `tgtrader` command line. It holds no logic: each subcommand is a module with
`add_arguments(parser)` and `run(args) -> int`; this file only routes to it and turns the
expected failures (bad settings, unusable database) into one line each and an exit code.

Exit codes: 0 ok, 1 failure reported by the command, 2 bad settings / database / usage,
3 command not implemented in this version, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType

from tgtrader import __version__
from tgtrader.errors import ConfigError, StoreError

EXIT_USAGE = 2
EXIT_NOT_IMPLEMENTED = 3

# name, module, one-line help
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("run", "tgtrader.runner", "run the bot: Telegram control plus the exchange (paper by default)"),
    ("demo", "tgtrader.demo", "try tgtrader offline on embedded defaults: no keys, no network"),
    ("backtest", "tgtrader.backtest.command", "backtest a grid on historical candles"),
    ("candles", "tgtrader.backtest.candles_command", "download recent candles to a CSV for backtest (resumes)"),
    ("doctor", "tgtrader.doctor", "check settings, database, clock and exchange access, in plain words"),
    ("setup", "tgtrader.setup_wizard", "first run: check the bot token, find your chat id, write .env, run doctor"),
    ("health", "tgtrader.health", "is the running bot trading, trying or broken (Docker's HEALTHCHECK; exit 0/1)"),
)


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _load(module: str) -> ModuleType | None:
    """Import a subcommand module; None if exactly that module (or its package) does not exist."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise


def build_parser(selected: str | None = None) -> tuple[argparse.ArgumentParser, ModuleType | None]:
    """The parser; only the selected subcommand's module is imported (so `--help` and the
    HEALTHCHECK stay fast). Returns the parser and that module (None if not implemented)."""
    parser = argparse.ArgumentParser(
        prog="tgtrader",
        description="Grid-trading bot for Binance spot, operated from Telegram. Paper trading unless TGTRADER_MODE=live.",
        epilog="Settings come from the environment and ./.env; see .env.example. Run `tgtrader doctor` to check them.",
    )
    parser.add_argument("--version", action="version", version=f"tgtrader {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    selected_module: ModuleType | None = None
    for name, module, help_text in COMMANDS:
        if not _module_exists(module):
            help_text = f"{help_text} (not implemented yet)"
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            selected_module = _load(module)
            if selected_module is not None:
                selected_module.add_arguments(sp)
            elif not help_text.endswith("(not implemented yet)"):
                sp.description = f"{help_text} (not implemented yet)"
    return parser, selected_module


def _selected_command(argv: Sequence[str]) -> str | None:
    names = {name for name, _, _ in COMMANDS}
    for token in argv:
        if token in names:
            return token
        if not token.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _selected_command(argv)
    try:
        parser, module = build_parser(command)
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    except ImportError as exc:  # the command exists but something it needs does not
        print(f"tgtrader {command}: cannot load it ({exc}); reinstall with `pip install -e .`", file=sys.stderr)
        return 1
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if module is None:
        print(f"tgtrader {args.command}: not implemented yet in this version", file=sys.stderr)
        return EXIT_NOT_IMPLEMENTED
    previous_umask = os.umask(0o077)  # files this run creates (database, logs, .env) are the owner's only (issue 16)
    try:
        code = module.run(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"database: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"tgtrader {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a bare traceback for the user; details with TGTRADER_DEBUG=1
        from tgtrader.logging_setup import masker

        print(f"tgtrader {args.command}: unexpected error: {type(exc).__name__}: {masker(str(exc))}", file=sys.stderr)
        if os.environ.get("TGTRADER_DEBUG"):
            print(masker("".join(traceback.format_exc())), file=sys.stderr)
        else:
            print("(set TGTRADER_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 1
    finally:
        os.umask(previous_umask)
    return int(code or 0)


if __name__ == "__main__":
    raise SystemExit(main())
