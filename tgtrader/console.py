"""A console chat for the demo: the same parser, handlers and renderer as the Telegram bot.

Type commands with or without the leading slash. Inline buttons become numbered choices (type the
number); `yes` presses the confirming button (e.g. CONFIRM PANIC), `no` the cancelling one. Alerts
from the core are coalesced like in Telegram and printed as they come. Charts are written as PNG files.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from tgtrader.chat.alerts import render_alerts
from tgtrader.chat.dispatch import Dispatcher
from tgtrader.chat.prefs import MemoryKv, NotifyPrefs, event_kind
from tgtrader.chat.render import Button, Reply
from tgtrader.core.api import TradingApi
from tgtrader.core.events import CoreEvent, StopTriggered

CONSOLE_CHAT_ID = 0
PROMPT = "tgtrader> "


class ConsoleChat:
    def __init__(self, api: TradingApi, *, write: Callable[[str], None] | None = None,
                 chart_dir: Path | str = ".", alert_window_s: float = 0.3, chat_id: int = CONSOLE_CHAT_ID) -> None:
        self.api = api
        self.write = write or (lambda text: print(text, flush=True))
        self.prefs = NotifyPrefs(MemoryKv())  # /notify for this session: 'off' kinds are not printed
        self.dispatcher = Dispatcher(api, bot_name="tgtrader console", progress=self._progress, prefs=self.prefs)
        self.chart_dir = Path(chart_dir)
        self.alert_window_s = alert_window_s
        self.chat_id = chat_id
        self.buttons: list[Button] = []
        self._alerts: list[CoreEvent] = []
        self._alert_handle: asyncio.TimerHandle | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._charts = 0

    async def _progress(self, chat_id: int, text: str) -> None:
        self.write(text)

    # ------------------------------------------------------------ alerts

    def attach(self) -> None:
        self._unsubscribe = self.api.bus.subscribe(self._on_event)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.flush_alerts()

    def _on_event(self, event: CoreEvent) -> None:
        self._alerts.append(event)
        if self._alert_handle is None:
            try:
                self._alert_handle = asyncio.get_running_loop().call_later(self.alert_window_s, self.flush_alerts)
            except RuntimeError:
                self.flush_alerts()

    def flush_alerts(self) -> None:
        if self._alert_handle is not None:
            self._alert_handle.cancel()
            self._alert_handle = None
        events, self._alerts = self._alerts, []
        wanted = self.prefs.known(self.chat_id)
        # a stop's trigger is told by its machine's alert (AlertRaised), as in the chat
        events = [e for e in events if wanted.get(event_kind(e)) != "off" and not isinstance(e, StopTriggered)]
        text = render_alerts(events) if events else None
        if text:
            self.write("ALERT " + text.replace("\n", "\n      "))

    # ------------------------------------------------------------ input

    async def handle_line(self, line: str) -> str:
        """Answer one typed line; returns what was printed ('' for nothing)."""
        line = line.strip()
        if not line:
            return ""
        try:
            reply = await self._reply_for(line)
        except Exception as exc:  # same promise as Telegram: a line, never a traceback
            reply = self.dispatcher.internal_error(exc)
        text = self.show(reply)
        self.write(text)
        return text

    async def _reply_for(self, line: str) -> Reply:
        word = line.lower()
        if self.buttons and (word.isdigit() or word in {"yes", "y", "no", "n"}):
            button = self._choose(word)
            if button is None:
                return Reply(f"choose 1-{len(self.buttons)}, yes or no")
            self.buttons = []
            return await self.dispatcher.press(button.data, self.chat_id)
        if word in {"yes", "y", "no", "n"} or word.isdigit():
            return Reply("nothing to confirm")
        if not line.startswith("/"):
            line = "/" + line
        return await self.dispatcher.dispatch(line, self.chat_id)

    def _choose(self, word: str) -> Button | None:
        if word.isdigit():
            index = int(word) - 1
            return self.buttons[index] if 0 <= index < len(self.buttons) else None
        if word in {"yes", "y"}:
            return self.buttons[0]  # the confirming button always comes first
        return self.buttons[-1]  # Cancel / Keep running come last

    def show(self, reply: Reply) -> str:
        """Reply -> console text; remembers its buttons as numbered choices."""
        parts = [reply.text]
        if reply.photo is not None:
            self._charts += 1
            self.chart_dir.mkdir(parents=True, exist_ok=True)
            path = self.chart_dir / f"chart_{self._charts}.png"
            path.write_bytes(reply.photo)
            parts.append(f"(chart saved to {path})")
        buttons = [button for row in reply.buttons for button in row]
        if buttons or reply.edit:
            self.buttons = buttons
        if buttons:
            choices = "  ".join(f"[{i}] {b.label}" for i, b in enumerate(buttons, 1))
            parts.append(f"{choices}   (type a number, yes or no)")
        for extra in reply.extra:
            parts.append(self.show(extra))
        return "\n".join(parts)


async def run_console(api: TradingApi, stdin: TextIO | None = None, chart_dir: Path | str = ".") -> None:
    """Read lines until EOF or 'quit'; the caller owns the api's lifecycle."""
    stdin = stdin or sys.stdin
    chat = ConsoleChat(api, chart_dir=chart_dir)
    chat.attach()
    chat.write(f"tgtrader console ({api.mode}). Type 'help' for commands, 'quit' to leave.")
    try:
        while True:
            if stdin.isatty():
                print(PROMPT, end="", flush=True)
            line = await asyncio.to_thread(stdin.readline)
            if not line or line.strip().lower() in {"quit", "exit", "/quit"}:
                break
            await chat.handle_line(line)
    finally:
        chat.detach()
