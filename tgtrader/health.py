"""`tgtrader health`: is the running bot alive, and is it trading, trying, or broken? (Docker's HEALTHCHECK)

`tgtrader run` rewrites a small heartbeat file next to the database every few seconds (state, reason, time,
pid; never a secret). This command only reads it, so it needs no network and answers in milliseconds:

- exit 0: the heartbeat is fresh and the bot is trading, or alive and trying (the exchange is unreachable and
  it retries with backoff): restarting the container would not help, it would only lose the retry state;
- exit 1: broken: no heartbeat, a stale one (the process hangs or is gone), or a state that needs a person
  (trading halted because the database could not be written, the exchange refuses the API key).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tgtrader.config import load_settings

BEAT_EVERY_S = 10.0
STALE_AFTER_S = 60.0  # six missed beats: the event loop is stuck or the process is gone
TRADING, WAITING, STARTING, BROKEN = "trading", "waiting", "starting", "broken"
HEALTHY = (TRADING, WAITING, STARTING)


@dataclass
class Heartbeat:
    state: str = STARTING
    reason: str = ""
    ts_ms: int = 0
    pid: int = 0
    since_ms: int = 0  # when `state` began


def heartbeat_path(db_path: str | os.PathLike[str]) -> Path:
    p = Path(db_path)
    return p.with_name(p.name + ".health")


def write(path: Path, beat: Heartbeat) -> None:
    """Atomic replace: a reader never sees half a file. Not fsynced: it is rewritten every few seconds."""
    beat.ts_ms, beat.pid = int(time.time() * 1000), os.getpid()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(beat)), encoding="utf-8")
    os.replace(tmp, path)


def read(path: Path) -> Heartbeat | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Heartbeat(**{k: data[k] for k in ("state", "reason", "ts_ms", "pid", "since_ms") if k in data})
    except (OSError, ValueError, TypeError):
        return None


def verdict(beat: Heartbeat | None, now_ms: int) -> tuple[int, str]:
    """(exit code, one line)."""
    if beat is None:
        return 1, "broken: no heartbeat (is `tgtrader run` running?)"
    age_s = (now_ms - beat.ts_ms) / 1000
    if age_s > STALE_AFTER_S:
        return 1, f"broken: the last heartbeat is {age_s:.0f} s old (state then: {beat.state})"
    since = max(0.0, (now_ms - beat.since_ms) / 1000) if beat.since_ms else 0.0
    if beat.state == TRADING:
        return 0, "trading"
    if beat.state in HEALTHY:
        return 0, f"alive and trying for {since:.0f} s: {beat.reason or beat.state}"
    return 1, f"broken ({beat.state}) for {since:.0f} s: {beat.reason}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", default=None, help="the heartbeat file (default: next to TGTRADER_DB)")


def run(args: argparse.Namespace) -> int:
    path = Path(args.file) if args.file else heartbeat_path(load_settings().db_path)
    code, line = verdict(read(path), int(time.time() * 1000))
    print(f"tgtrader health: {line}", file=sys.stdout if code == 0 else sys.stderr)
    return code
