"""Alerts: core events -> durable outbox -> coalesced at delivery -> every authorized chat.

Why this shape: the event bus is synchronous and must never wait on Telegram, so events are only
buffered here until the next turn of the event loop (`window_s`, 0 by default: a crash must not lose what
sat in memory), then written to the SQLite outbox as one typed alert (kind `events`, the events as its
payload), one row per chat, BEFORE any send is tried. Coalescing happens at delivery: consecutive `events`
rows of a chat are worded together (`chat.alerts.render_alerts`: fifty fills become one message), an alert
delivered late carries its time, and a backlog after a long outage becomes one digest. A row is marked sent
only after Telegram accepted it, and otherwise rescheduled with backoff (honouring Telegram's retry_after);
rows left unsent by a crash or an outage are simply due at the next start.

Telegram's answers are classified: network errors back off the whole channel; flood control pauses it;
a blocked or refused chat (Forbidden, BadRequest) backs off that chat alone; a group upgraded to a
supergroup (ChatMigrated) is followed; a rejected token pauses everything, loudly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from loguru import logger
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter, TelegramError

from tgtrader.chat import headline
from tgtrader.chat import prefs as prefs_mod
from tgtrader.chat.alerts import EVENTS, events_from_payload, events_payload, outbox_text, render_alerts
from tgtrader.chat.render import MAX_MESSAGE, clip, when
from tgtrader.core.events import (
    ALERTED_BY_CORE,
    AlertRaised,
    CoreEvent,
    EventBus,
    OrderRejected,
    StopTriggered,
    StreamDown,
    StreamUp,
)
from tgtrader.store.outbox import DEFAULT_CHANNEL, OutboxRow
from tgtrader.telegram.access import Access

NOTICE = "notice"  # an outbox row carrying ready text from the front end itself (e.g. a chat migration)
PURGE_EVERY_S = 3600.0
LATE_AFTER_S = 60.0  # an alert delivered later than this after its event says when the event happened
DIGEST_AFTER_S = 300.0  # a backlog older than this (an outage) is sent as one digest
DIGEST_MIN_ROWS = 4

SendFn = Callable[[int, str], Awaitable[object]]


def covered_by_core(event: CoreEvent) -> bool:
    """Events not to alert from the bus: the core already wrote their alert to the outbox as an
    AlertIntent (in the same transaction as the state change), so rendering them again would alert
    twice; and a chase's rejections ("would match" re-pricing), which the /buy or /sell answer reports."""
    if isinstance(event, (StopTriggered, AlertRaised, *ALERTED_BY_CORE)):  # fills, round trips, grid states: issue
        return True                                                       # 16 item 5; machines' alerts: their rows
    return isinstance(event, OrderRejected) and event.owner.startswith(("grid:", "stop:", "chase:"))


def _now_ms() -> int:
    return int(time.time() * 1000)


def retry_after_s(exc: RetryAfter) -> float:
    """RetryAfter.retry_after is deprecated in PTB 22 (int -> timedelta); read the private timedelta."""
    value = getattr(exc, "_retry_after", None)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)):
        return float(value)
    return 1.0


class Notifier:
    def __init__(
        self,
        db: Any,
        send: SendFn,
        recipients: Callable[[], Iterable[int]],
        *,
        window_s: float = 0.0,
        stream_down_alert_s: float = 30.0,
        per_chat_interval_s: float = 1.0,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 600.0,
        network_retry_cap_s: float = 15.0,
        give_up_after_s: float = 86400.0,
        poll_s: float = 1.0,
        clock_ms: Callable[[], int] = _now_ms,
        channel: str = DEFAULT_CHANNEL,
        access: Access | None = None,
        retention_s: float = 30 * 86400.0,
        prefs: prefs_mod.NotifyPrefs | None = None,
    ) -> None:
        self.db = db  # tgtrader.store.Database: its outbox, and transactions for fan-out
        self.outbox = db.outbox
        self.send = send
        self.recipients = recipients
        self.window_s = window_s
        self.stream_down_alert_s = stream_down_alert_s
        self.per_chat_interval_s = per_chat_interval_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.network_retry_cap_s = network_retry_cap_s
        self.give_up_after_s = give_up_after_s
        self.poll_s = poll_s
        self.clock_ms = clock_ms
        self.channel = channel  # the outbox rows this notifier delivers (and writes)
        self.access = access  # where alerts go; follows supergroup upgrades (None: `recipients` as given)
        self.retention_s = retention_s  # sent rows older than this are purged
        self.prefs = prefs  # per chat: each alert kind on, silent or off (/notify); None: all on
        self._purged_at_ms = 0
        self._buffer: list[CoreEvent] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._wake_handle: asyncio.TimerHandle | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._paused_until_ms = 0  # global pause after a 429 (flood control: must be honoured)
        self._network_retry_ms = 0  # next probe while Telegram is unreachable
        self.network_failures = 0  # consecutive; the channel backs off, not each row
        self._chat_next_ms: dict[int, int] = {}
        self._down: dict[str, tuple[StreamDown, bool]] = {}  # stream -> (event, alerted?)
        self._down_timers: dict[str, asyncio.TimerHandle] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._stopping = False
        self.sent_messages = 0

    # ------------------------------------------------------------ events in (sync, never blocks)

    def attach(self, bus: EventBus) -> None:
        self._unsubscribe = bus.subscribe(self.on_event)

    def on_event(self, event: CoreEvent) -> None:
        """Bus subscriber. Stream outages are only reported once they last `stream_down_alert_s`."""
        if covered_by_core(event):
            if isinstance(event, (AlertRaised, *ALERTED_BY_CORE)):  # the core wrote its alert with the reaction (this is published
                self._wake_soon()                    # after the commit): deliver it, a burst coalesced in one window
            return
        if isinstance(event, StreamDown):
            self._on_stream_down(event)
            return
        if isinstance(event, StreamUp):
            down = self._down.pop(event.stream, None)
            timer = self._down_timers.pop(event.stream, None)
            if timer is not None:
                timer.cancel()
            alerted = down is not None and down[1]
            if not (alerted or event.down_for_s >= self.stream_down_alert_s or event.recovered_fills):
                return
        self._add(event)

    def _wake_soon(self) -> None:
        if self._wake_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def fire() -> None:
            self._wake_handle = None
            self.wake()

        self._wake_handle = loop.call_later(self.window_s, fire)

    def _add(self, event: CoreEvent) -> None:
        self._buffer.append(event)
        if self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # published outside a loop (sync tests): flushed on the next flush()
                return
            self._flush_handle = loop.call_later(self.window_s, self._schedule_flush)

    def _on_stream_down(self, event: StreamDown) -> None:
        if event.stream in self._down:
            return
        self._down[event.stream] = (event, False)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def fire() -> None:
            self._down_timers.pop(event.stream, None)
            if event.stream in self._down:
                self._down[event.stream] = (event, True)
                self._add(event)

        self._down_timers[event.stream] = loop.call_later(self.stream_down_alert_s, fire)

    def _schedule_flush(self) -> None:
        self._flush_handle = None
        task = asyncio.get_running_loop().create_task(self.flush())
        self._flush_tasks.add(task)
        task.add_done_callback(self._flush_tasks.discard)

    # ------------------------------------------------------------ buffer -> outbox

    async def flush(self) -> int:
        """Write everything buffered to the outbox as one alert for every chat (worded when it is sent)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        events, self._buffer = self._buffer, []
        if not events or not render_alerts(events):  # nothing anybody needs to hear about
            return 0
        return await self.enqueue_alert(EVENTS, events_payload(events))

    async def enqueue_alert(self, kind: str, payload: Mapping[str, object]) -> int:
        """A typed alert (kind + payload, see `chat.alerts`) for every chat, through the outbox."""
        count = 0
        now = self.clock_ms()
        for chat_id in sorted(set(self.recipients())):
            await self.outbox.enqueue(kind, chat_id=chat_id, payload=payload, channel=self.channel, now=now)
            count += 1
        self._wake.set()
        return count

    # ------------------------------------------------------------ outbox -> Telegram

    async def start(self) -> None:
        if self._loop_task is None:
            self._stopping = False
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="alert-outbox")

    async def stop(self) -> None:
        """Write what is still buffered to the outbox (it is sent now or after the restart), then stop."""
        for timer in self._down_timers.values():
            timer.cancel()
        self._down_timers.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._flush_tasks:  # short writes: let them finish (a write cancelled mid-transaction can leave the
            await asyncio.wait(set(self._flush_tasks), timeout=2.0)  # connection inside BEGIN for everyone)
        try:
            await self.flush()
        except Exception:
            logger.exception("could not write buffered alerts to the outbox at shutdown")
        if self._loop_task is not None:
            self._stopping = True
            self._wake.set()
            done, _ = await asyncio.wait({self._loop_task}, timeout=5.0)
            if not done:  # stuck in a send: cancel it (the row stays unsent and is retried next start)
                self._loop_task.cancel()
                await asyncio.wait({self._loop_task}, timeout=2.0)
            self._loop_task = None
        for task in list(self._flush_tasks):
            task.cancel()

    def wake(self, chat_id: int | None = None, network_back: bool = False) -> None:
        """Try now (e.g. a chat just sent /start, so Telegram will accept messages to it; or the bot has just
        reconnected to Telegram, `network_back`, so the outage backoff is over)."""
        if chat_id is not None:
            self._chat_next_ms.pop(chat_id, None)
        if network_back:
            self._network_retry_ms = 0
            self.network_failures = 0
        self._wake.set()

    async def _run(self) -> None:
        # A stop flag rather than cancellation alone: on Python 3.11 asyncio.wait_for can swallow a
        # cancel that races with its inner wait, which left this loop running forever.
        while not self._stopping:
            self._wake.clear()  # before delivering: a wake-up during delivery must not be lost
            try:
                delay = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("alert delivery loop failed; retrying")
                delay = self.poll_s
            if self._stopping:
                break
            try:
                async with asyncio.timeout(max(0.01, delay)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def deliver_due(self) -> float:
        """Send every due row (consecutive rows for one chat merged into one message).

        Returns how long to sleep before the next attempt.
        """
        now = self.clock_ms()
        if now - self._purged_at_ms >= PURGE_EVERY_S * 1000:
            await self.purge()
        paused_until = max(self._paused_until_ms, self._network_retry_ms)
        if now < paused_until:
            return (paused_until - now) / 1000
        rows = await self.outbox.due(now, limit=200, channel=self.channel)
        if not rows:
            return self.poll_s
        by_chat: dict[int, list[OutboxRow]] = {}
        for row in rows:
            if row.chat_id is None:  # written by the core for "every chat": one row per chat, atomically
                async with self.db.transaction():
                    for chat_id in sorted(set(self.recipients())):
                        await self.outbox.enqueue(row.kind, row.text, chat_id, payload=row.payload,
                                                  channel=row.channel, now=now)
                    await self.outbox.mark_sent(row.id, now)
                self._wake.set()
                continue
            by_chat.setdefault(row.chat_id, []).append(row)
        sleep = self.poll_s
        for chat_id, chat_rows in by_chat.items():
            wait_ms = self._chat_next_ms.get(chat_id, 0) - self.clock_ms()
            if wait_ms > 0:
                sleep = min(sleep, wait_ms / 1000)
                continue
            wanted = await self.prefs.of(chat_id) if self.prefs is not None else None
            if wanted is not None:
                chat_rows = await self._as_preferred(chat_rows, wanted)
                if not chat_rows:
                    continue
            batch, text = compose(chat_rows, self.clock_ms())
            if not text.strip():
                for row in batch:
                    await self.outbox.mark_sent(row.id, self.clock_ms())
                continue
            quiet = wanted is not None and not any(prefs_mod.loud(row, wanted) for row in batch)
            ok = await self._send_batch(chat_id, batch, text, quiet)
            paused_until = max(self._paused_until_ms, self._network_retry_ms)
            if self.clock_ms() < paused_until:
                return (paused_until - self.clock_ms()) / 1000
            if ok:
                self._chat_next_ms[chat_id] = self.clock_ms() + int(self.per_chat_interval_s * 1000)
                if len(batch) < len(chat_rows):
                    sleep = min(sleep, self.per_chat_interval_s)
        return sleep

    async def _as_preferred(self, rows: list[OutboxRow], wanted: Mapping[str, str]) -> list[OutboxRow]:
        """The rows as the chat wants them (/notify): what it turned off is marked sent, never sent."""
        kept: list[OutboxRow] = []
        for row in rows:
            shown = prefs_mod.apply(row, wanted)
            if shown is None:
                await self.outbox.mark_sent(row.id, self.clock_ms())
            else:
                kept.append(shown)
        return kept

    async def _send_batch(self, chat_id: int, batch: list[OutboxRow], text: str, silent: bool = False) -> bool:
        topic = await self.prefs.topic(chat_id) if self.prefs is not None else None  # /notify here
        extra: dict[str, object] = {"silent": True} if silent else {}
        if topic is not None:
            extra["topic"] = topic
        try:
            await self.send(chat_id, text, **extra)  # type: ignore[call-arg]
        except RetryAfter as exc:
            wait = retry_after_s(exc)
            until = self.clock_ms() + int((wait + 0.1) * 1000)
            self._paused_until_ms = max(self._paused_until_ms, until)
            logger.warning("Telegram flood control: pausing alerts for {:.1f} s", wait)
            for row in batch:
                await self.outbox.reschedule(row.id, until, f"RetryAfter {wait:.0f}s")
            return False
        except ChatMigrated as exc:  # the group became a supergroup: follow it, this chat only
            await self.chat_migrated(chat_id, int(exc.new_chat_id))
            return False
        except InvalidToken:  # fatal for every chat: said loudly by the front end, retried slowly
            logger.critical("FATAL: Telegram rejected the bot token while sending alerts; they wait in the outbox")
            self.pause(self.token_pause_s)
            return False
        except BadRequest as exc:
            if topic is not None and "thread not found" in str(exc).lower():  # the alert topic was deleted
                assert self.prefs is not None
                await self.prefs.set_topic(chat_id, None)
                logger.warning("chat {}: the alert topic {} is gone; alerts go to General again", chat_id, topic)
                self._wake.set()  # sent there on the next pass, rows still due
                return False
            await self._failed(batch, f"{type(exc).__name__}: {exc}", cap_s=max(self.backoff_cap_s, 600.0))
            return False
        except Forbidden as exc:  # blocked, chat not started yet, chat gone: this chat only
            await self._failed(batch, f"{type(exc).__name__}: {exc}", cap_s=max(self.backoff_cap_s, 600.0))
            return False
        except (TimeoutError, TelegramError, OSError) as exc:  # network, 5xx, timeouts
            await self._network_down(batch, f"{type(exc).__name__}: {exc}")
            return False
        self.network_failures = 0
        now = self.clock_ms()
        for row in batch:
            await self.outbox.mark_sent(row.id, now)
        self.sent_messages += 1
        return True

    token_pause_s = 300.0

    def pause(self, seconds: float) -> None:
        """Send nothing for `seconds` (a rejected token); rows stay due."""
        self._network_retry_ms = max(self._network_retry_ms, self.clock_ms() + int(seconds * 1000))

    async def chat_migrated(self, old: int, new: int) -> None:
        """`old` is now the supergroup `new`: remember it (database), move its waiting alerts there, and tell
        every chat, once, which id to put in the settings."""
        known = self.access is not None and not await self.access.migrate(self.db.kv, old, new)
        moved = await self.outbox.retarget(old, new, channel=self.channel)
        self._chat_next_ms.pop(old, None)
        if not known:
            text = (f"This group was upgraded to a supergroup: its id changed from {old} to {new}. Alerts and"
                    f" commands follow it; replace {old} with {new} in TELEGRAM_ALLOWED_CHAT_IDS.")
            for chat_id in sorted(set(self.recipients())):
                await self.outbox.enqueue(NOTICE, text, chat_id, channel=self.channel, now=self.clock_ms())
            logger.warning("chat {} migrated to {}; {} waiting alert(s) moved", old, new, moved)
        self._wake.set()

    async def purge(self) -> int:
        """Delete sent rows older than the retention (the outbox would grow forever otherwise)."""
        now = self.clock_ms()
        self._purged_at_ms = now
        removed = await self.outbox.purge_sent(now - int(self.retention_s * 1000))
        if removed:
            logger.info("purged {} delivered alert(s) older than {:.0f} days", removed, self.retention_s / 86400)
        return int(removed)

    async def _network_down(self, batch: list[OutboxRow], error: str) -> None:
        """Telegram unreachable: the whole channel backs off (capped at `network_retry_cap_s`), the rows stay
        due. Backing off per row instead would leave alerts of a long outage minutes behind once Telegram is
        back (their attempt counts grew while it was down); one probe at a time finds it back quickly."""
        self.network_failures += 1
        delay = min(self.network_retry_cap_s, self.backoff_base_s * (2 ** min(self.network_failures - 1, 20)))
        now = self.clock_ms()
        self._network_retry_ms = now + int(delay * 1000)
        for row in batch:
            if now - row.created_ms > self.give_up_after_s * 1000:
                await self._failed([row], error, cap_s=self.backoff_cap_s)  # drops it, with a log line
            else:
                await self.outbox.reschedule(row.id, now, error[:300])
        if self.network_failures in (1, 10) or self.network_failures % 100 == 0:
            logger.warning("Telegram unreachable ({}); alerts wait in the outbox, retrying in {:.1f} s",
                           error[:200], delay)

    async def _failed(self, batch: list[OutboxRow], error: str, cap_s: float) -> None:
        now = self.clock_ms()
        for row in batch:
            if now - row.created_ms > self.give_up_after_s * 1000:
                logger.error("alert {} to chat {} dropped after {} attempts: {}", row.id, row.chat_id,
                             row.attempts + 1, error)
                await self.outbox.reschedule(row.id, now, error)
                await self.outbox.mark_sent(row.id, now)  # given up; kept with last_error for inspection
                continue
            delay = min(cap_s, self.backoff_base_s * (2 ** min(row.attempts, 20)))
            await self.outbox.reschedule(row.id, now + int(delay * 1000), error[:300])
        logger.warning("alert delivery failed ({}); will retry", error[:200])


def _events_text(rows: list[OutboxRow]) -> str:
    """Several `events` rows worded as one alert (their events together, in order)."""
    try:
        events = [event for row in rows for event in events_from_payload(row.payload or {})]
        text = render_alerts(events) or ""
        head = headline.for_events(events)
        return f"{head}\n{text}" if head and text else text
    except Exception:  # a payload this version can't read: each row on its own, as its facts
        return "\n\n".join(outbox_text(row.kind, row.text, row.payload) for row in rows)


def _row_text(row: OutboxRow) -> str:
    """One row's alert, with a headline when it is about money (a stop-loss's result...)."""
    text = outbox_text(row.kind, row.text, row.payload)
    head = headline.for_alert(row.kind, row.payload)
    return f"{head}\n{text}" if head and text else text


def _units(rows: list[OutboxRow]) -> list[tuple[list[OutboxRow], str]]:
    """Rows in order, each run of consecutive `events` rows worded together (as long as it fits one message)."""
    units: list[tuple[list[OutboxRow], str]] = []
    run: list[OutboxRow] = []
    text = ""
    for row in rows:
        if row.kind == EVENTS and row.payload is not None:
            longer = _events_text([*run, row])
            if run and len(longer) > MAX_MESSAGE - 200:
                units.append((run, text))
                run, longer = [], _events_text([row])
            run.append(row)
            text = longer
            continue
        if run:
            units.append((run, text))
            run = []
        units.append(([row], _row_text(row)))
    if run:
        units.append((run, text))
    return units


def _late(row: OutboxRow, now_ms: int) -> str:
    minutes = (now_ms - row.created_ms) / 60000
    delay = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return f"[{when(row.created_ms)}, delivered {delay} late]"


def compose(rows: list[OutboxRow], now_ms: int) -> tuple[list[OutboxRow], str]:
    """The rows to send now as one message (a prefix of `rows`, oldest first), and its text.

    After an outage (the oldest row waited more than DIGEST_AFTER_S) the backlog becomes one digest: a header
    with the period and the count, the events of all `events` rows summarised together (counts, volumes,
    profit), and the other alerts (stops, grid state changes written by the core) in full, in order."""
    if not rows:
        return [], ""
    oldest = rows[0]
    if now_ms - oldest.created_ms > DIGEST_AFTER_S * 1000 and len(rows) >= DIGEST_MIN_ROWS:
        return _digest(rows, now_ms)
    batch: list[OutboxRow] = []
    texts: list[str] = []
    size = 0
    for unit, body in _units(rows):
        if not body:  # nothing anybody needs to hear about: marked sent with the rest
            batch += unit
            continue
        if now_ms - unit[0].created_ms > LATE_AFTER_S * 1000:
            body = _late(unit[0], now_ms) + "\n" + body
        extra = len(body) + (2 if batch else 0)
        if batch and size + extra > MAX_MESSAGE:
            break
        batch += unit
        texts.append(body)
        size += extra
    return batch, clip("\n\n".join(texts))


def _digest(rows: list[OutboxRow], now_ms: int) -> tuple[list[OutboxRow], str]:
    events_rows = [row for row in rows if row.kind == EVENTS and row.payload is not None]
    others = [row for row in rows if not (row.kind == EVENTS and row.payload is not None)]
    batch: list[OutboxRow] = []
    parts: list[str] = []
    size = 200  # the header, written last
    summary = ""
    if events_rows:
        taken: list[OutboxRow] = []
        for row in events_rows:  # as many as fit (a summary is short: counts, then MAX_LINES_PER_KIND lines)
            longer = _events_text([*taken, row])
            if taken and len(longer) > MAX_MESSAGE // 2:
                break
            taken.append(row)
            summary = longer
        batch += taken
        parts.append(summary)
        size += len(summary)
    for row in others:
        body = f"[{when(row.created_ms)}] {_row_text(row)}"
        if batch and size + len(body) + 2 > MAX_MESSAGE:
            break
        batch.append(row)
        parts.append(body)
        size += len(body) + 2
    batch.sort(key=lambda row: row.id)
    first, last = batch[0].created_ms, batch[-1].created_ms
    header = (f"While alerts could not be delivered ({when(first)} – {when(last)}): {len(batch)} alert(s)"
              + (f", {len(rows) - len(batch)} more follow" if len(batch) < len(rows) else "") + ".")
    return batch, clip("\n\n".join([header, *parts]))
