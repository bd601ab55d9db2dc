"""Security against the real bot process: strangers change nothing and learn nothing, forged or stale
buttons do nothing, and the API key, secret and bot token never appear in any output.

Related unit-level coverage (not duplicated here): button binding/expiry in tests/telegram (dispatcher and
bot e2e tests), the command parser fuzz in tests/telegram/test_parse.py, log masking in tests/test_logging.py.
"""

from __future__ import annotations

import asyncio
import secrets as pysecrets

from tests.reliability.harness import INTRUDER, Harness
from tests.reliability.test_crash_restart import assert_invariants
from tests.waiting import wait_for
from tgtrader.chat.commands import COMMANDS
from tgtrader.telegram.handlers import REFUSAL

# every command with arguments that an allowed chat could use to change state or read data
EVERY_COMMAND = [
    "/start", "/help", "/help grid", "/status", "/balance", "/orders", "/orders BTCUSDT", "/pnl 7",
    "/grid list", "/grid show 1", "/grid new BTCUSDT 49000 51000 4 400", "/grid pause 1", "/grid resume 1",
    "/grid stop 1 sell", "/size BTCUSDT 50000 49000 1%", "/size kelly 0.55 1.5", "/buy BTCUSDT 0.001",
    "/sell BTCUSDT 0.001 min=50000", "/stop BTCUSDT 45000 hard", "/stop cancel 1", "/stops", "/panic",
    "/resume_all", "/chart 1", "/pnl chart", "/notify", "/notify all off", "/grid", "/grid BTCUSDT", "hello",
    "/nonexistent",
]


def _intruder_calls(h: Harness) -> list:
    return [c for c in h.telegram.calls if c.method != "getUpdates" and (
        str(c.params.get("chat_id")) == str(INTRUDER) or c.method == "answerCallbackQuery")]


async def test_unauthorized_chat_changes_nothing_and_learns_nothing(harness: Harness) -> None:
    h = harness
    await h.start_bot()
    gid = await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
    assert await h.settle(quiet_s=0.5)
    # live buttons issued to the owner: a grid-stop confirmation and a panic confirmation
    await h.command(f"/grid stop {gid} sell")
    stop_buttons = h.telegram.buttons(h.chat_id)
    await h.command("/panic")
    panic_buttons = h.telegram.buttons(h.chat_id)
    await h.command("/grid new ETHUSDT 2800 3200 4 400")
    preview_buttons = h.telegram.buttons(h.chat_id)
    assert stop_buttons and panic_buttons and preview_buttons
    await h.alerts_written()  # the grid start's fill alerts are in the outbox (the snapshot includes it)...
    assert await h.outbox_drained(10)  # ...and sent
    before = h.snapshot()
    answered_before = len([c for c in h.telegram.calls if c.method == "answerCallbackQuery"])
    assert {c.name for c in COMMANDS} <= {t.split()[0].lstrip("/") for t in EVERY_COMMAND}

    for text in EVERY_COMMAND:
        h.telegram.push_command(INTRUDER, text)
    for button in stop_buttons + panic_buttons + preview_buttons:  # the owner's real buttons, pressed by a stranger
        h.telegram.push_callback(INTRUDER, button["callback_data"], message_text="x")
    h.telegram.push_callback(INTRUDER, "b1:" + pysecrets.token_urlsafe(12), message_text="x")
    h.telegram.push_callback(INTRUDER, "grid_stop:1", message_text="x")
    n_buttons = len(stop_buttons + panic_buttons + preview_buttons) + 2
    await h.telegram.wait_for(
        lambda: len([c for c in h.telegram.calls if c.method == "answerCallbackQuery"]) >= answered_before + n_buttons,
        timeout=15)
    await wait_for(lambda: any(str(c.params.get("text")) == REFUSAL for c in _intruder_calls(h)
                               if c.method == "sendMessage"), 15, "the refusal sent to the intruder's chat")
    await asyncio.sleep(1.0)  # quiet period: anything else the intruder caused (a change, a message) shows up now

    after = h.snapshot()
    assert not h.diff(before, after), h.diff(before, after)  # DB tables, exchange orders, balances and POST counters all unchanged
    calls = _intruder_calls(h)
    sent = [c for c in calls if c.method != "answerCallbackQuery"]
    # one neutral refusal per hour per chat, nothing else: no data, no command list, no hint of the owner
    assert [str(c.params.get("text")) for c in sent] == [REFUSAL], [c.params for c in sent]
    answers = [c for c in h.telegram.calls[-(n_buttons * 3):] if c.method == "answerCallbackQuery"]
    assert answers and all(str(c.params.get("text", REFUSAL)) == REFUSAL for c in answers[-n_buttons:])
    assert all(str(INTRUDER) not in row[3] for row in h.outbox())
    # and the owner's buttons still work for the owner afterwards
    answer = await h.press("Cancel")  # the latest message with buttons: the ETH preview
    assert "nothing was placed" in answer
    assert_invariants(h, outbox=False)


async def test_forged_stale_reused_and_foreign_chat_buttons_do_nothing(tmp_path) -> None:
    other = 515151
    h = Harness(tmp_path, other_chats=(other,))
    await h.start()
    try:
        await h.start_bot()
        gid = await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
        assert await h.settle(quiet_s=0.5)
        await h.command(f"/grid stop {gid} sell")
        stop_btn = next(b["callback_data"] for b in h.telegram.buttons(h.chat_id) if b["text"].startswith("Stop grid"))
        assert await h.quiesce()
        before = h.snapshot()

        # a confirmation issued to one allowed chat, pressed from another allowed chat
        answer = await h.press_data(stop_btn, other)
        assert "another chat" in answer and "nothing was done" in answer
        # forged data: malformed, random token, another grid's id spelled out
        for data in ("b1:" + pysecrets.token_urlsafe(12), f"grid_stop:{gid + 1}", f"b1:{gid}", "b1:" + "A" * 200, ""):
            answer = await h.press_data(data, h.chat_id)
            assert "nothing was done" in answer, (data, answer)
        assert not h.diff(before, h.snapshot()), h.diff(before, h.snapshot())

        # a confirmation from before a restart is dead
        await h.kill_and_wait()
        await h.start_bot()
        assert await h.quiesce()
        before = h.snapshot()
        answer = await h.press_data(stop_btn, h.chat_id)
        assert "no longer valid" in answer and "nothing was done" in answer
        assert not h.diff(before, h.snapshot()), h.diff(before, h.snapshot())

        # a used confirmation cannot be replayed
        await h.command("/panic")
        abort = next(b["callback_data"] for b in h.telegram.buttons(h.chat_id) if b["text"] == "Cancel")
        confirm = next(b["callback_data"] for b in h.telegram.buttons(h.chat_id) if b["text"] == "CONFIRM PANIC")
        assert "cancelled" in (await h.press_data(abort, h.chat_id)).lower()
        answer = await h.press_data(confirm, h.chat_id)  # sibling of a used button
        assert "already used" in answer
        assert not h.diff(before, h.snapshot()), h.diff(before, h.snapshot())
        assert [g["state"] for g in h.grids()] == ["running"]
        assert_invariants(h, outbox=False)
    finally:
        await h.close()


async def test_full_session_never_leaks_secrets(tmp_path) -> None:
    """DEBUG logs, tracebacks, stdout/stderr of every run, every Telegram call, every byte of the DB."""
    h = Harness(tmp_path, log_level="DEBUG")
    await h.start()
    try:
        await h.start_bot()
        await h.command("/start")
        gid = await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
        assert await h.settle(quiet_s=0.5)
        for text in ("/status", "/balance", "/orders", "/pnl", "/grid list", f"/grid show {gid}", "/stops",
                     "/grid new BTCUSDT 1 2 3", "/size BTCUSDT 50000 49000 1%", "/grid show 99"):
            await h.command(text)
        h.binance.lose_next_order_response()  # a cut connection: exception paths and tracebacks get logged
        h.binance.fail_next(503, path="/api/v3/order")
        await h.move("BTCUSDT", "49400")
        assert await h.settle(timeout=30, quiet_s=0.5)
        h.binance.fail_next(400, code=-2015, msg="Invalid API-key, IP, or permissions for action.", path="/api/v3/account")
        await h.command("/balance")
        h.telegram.fail_next("sendMessage", retry_after=1)
        await h.move("BTCUSDT", "50100")
        await h.kill_and_wait()
        await h.start_bot()
        await h.command("/status")
        await h.command("/panic")
        await h.press("CONFIRM PANIC", timeout=30)
        await h.alerts_written()  # the panic sell's alert too: every alert reaches the scanned outputs
        assert await h.outbox_drained(15)
        await h.stop_bot()
        assert h.runs[-1].returncode == 0
        logs = list(h.log_dir.rglob("*"))
        assert logs and sum(p.stat().st_size for p in logs if p.is_file()) > 10_000  # DEBUG really logged
        assert "DEBUG" in "".join(p.read_text(errors="replace") for p in logs if p.is_file())
        leaks = h.scan_secrets()
        assert not leaks, leaks
    finally:
        await h.close()


async def test_secret_scanner_finds_planted_secrets(tmp_path) -> None:
    """The scanner itself works: a secret planted in a log file, the DB and a Telegram call is reported."""
    h = Harness(tmp_path)
    h.log_dir.mkdir(parents=True)
    (h.log_dir / "tgtrader.log").write_text(f"oops {h.secrets.api_secret}\n")
    h.db_path.write_bytes(b"SQLite" + h.secrets.api_key.encode())
    (h.out_dir / "stderr.0.txt").write_text(h.secrets.bot_token.split(":", 1)[1])
    found = h.scan_secrets()
    assert any("api_secret in tgtrader.log" in f for f in found)
    assert any("api_key in tgtrader.sqlite" in f for f in found)
    assert any("bot_token_secret_part in stderr.0.txt" in f for f in found)
