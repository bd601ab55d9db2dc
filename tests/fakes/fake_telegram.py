"""A loopback fake of the Telegram Bot API (aiohttp on 127.0.0.1) for driving the real python-telegram-bot.

Speaks what PTB 22 sends: form-encoded (or multipart for photos) POSTs to /bot<TOKEN>/<method>, with
non-string fields JSON-encoded; answers `{"ok": true, "result": ...}`. It records every call the bot
makes, queues updates built as real Update JSON (commands carry a `bot_command` entity, or PTB would
ignore them), long-polls getUpdates and releases waiting polls on stop. Failure injection: HTTP 429
with `retry_after` for the next N calls of a method, and an "unreachable" mode that drops connections;
per chat, ChatMigrated (`migrate_chat`) and Forbidden (`block_chat`); a revoked token (`revoked`: 401);
slow methods (`delays`); setWebhook refuses http:// (but loopback) and unresolvable hosts (*.invalid) with 400.
Updates can be dated in the past (`age_s`), come from several users of a group, from a forum topic, or be the
service messages of a supergroup upgrade (`push_migration`).
After setWebhook it behaves like Telegram in webhook mode: updates are POSTed as JSON to the registered URL
with the registered secret in X-Telegram-Bot-Api-Secret-Token, and getUpdates answers 409 Conflict.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

TOKEN = "123456:TEST-TOKEN-abcdefghijklmnopqrstuvwxyz"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "tgtrader", "username": "tgtrader_test_bot"}
_RAW_FIELDS = {"text", "caption", "callback_query_id", "parse_mode", "inline_message_id", "url", "description"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    t: float
    files: dict[str, bytes] = field(default_factory=dict)
    ok: bool = True  # False when the fake answered with an injected 429


class FakeTelegram:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []  # every call, including getUpdates
        self.sent: asyncio.Queue[Call] = asyncio.Queue()  # every call except polling
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}  # (chat, message_id) -> message the bot sent
        self.commands: list[dict[str, Any]] = []  # the last list set (any scope)
        self.command_scopes: dict[str, list[dict[str, Any]]] = {}  # scope as sorted JSON -> its commands
        self.unreachable = False
        self.revoked = False  # True: the bot's token is refused (401), as after /revoke in @BotFather
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(100)
        self._cbq_ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._closing = False
        self._failures: dict[str, list[int]] = {}  # method -> retry_after per upcoming call
        self.chat_errors: dict[int, tuple[int, str, dict[str, Any]]] = {}  # chat -> (status, description, params)
        self.deleted_topics: set[tuple[int, int]] = set()  # (chat, message_thread_id): sends there fail as Telegram's
        self.delays: dict[str, float] = {}  # method -> seconds the fake waits before answering
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.webhook: dict[str, Any] | None = None  # setWebhook's parameters while a webhook is set
        self.webhook_statuses: list[int] = []  # HTTP status of every update POSTed to the webhook
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    async def start(self) -> "FakeTelegram":
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self._closing = True
        self._wake.set()  # release long polls first, or teardown waits out the poll timeout
        if self._webhook_tasks:
            await asyncio.wait(self._webhook_tasks, timeout=5)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeTelegram":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ injection

    def fail_next(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next `times` calls of `method` answer HTTP 429 with parameters.retry_after."""
        self._failures.setdefault(method, []).extend([retry_after] * times)

    def migrate_chat(self, old: int, new: int) -> None:
        """`old` was upgraded to a supergroup: sends to it answer 400 with parameters.migrate_to_chat_id."""
        self.chat_errors[old] = (400, "Bad Request: group chat was upgraded to a supergroup chat",
                                 {"migrate_to_chat_id": new})

    def block_chat(self, chat_id: int) -> None:
        """The user blocked the bot: sends to this chat answer 403 Forbidden."""
        self.chat_errors[chat_id] = (403, "Forbidden: bot was blocked by the user", {})

    def _user(self, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}", "username": f"user{user_id}"}

    def _chat(self, chat_id: int) -> dict[str, Any]:
        if chat_id < 0:
            return {"id": chat_id, "type": "group", "title": f"Group{chat_id}"}
        return {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"}

    def push_text(self, chat_id: int, text: str, user_id: int | None = None, age_s: float = 0.0,
                  thread_id: int | None = None) -> int:
        """A plain text message from a user (sent `age_s` ago: Telegram keeps updates while the bot is
        offline and delivers them with their original date; in forum topic `thread_id`); commands get a
        bot_command entity."""
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time() - age_s),
            "chat": self._chat(chat_id),
            "from": self._user(user_id if user_id is not None else abs(chat_id)),
            "text": text,
        }
        if thread_id is not None:  # a forum supergroup's topic
            message["chat"] = {"id": chat_id, "type": "supergroup", "title": f"Forum{chat_id}", "is_forum": True}
            message.update(message_thread_id=thread_id, is_topic_message=True)
        if text.startswith("/"):
            length = len(text.split()[0]) if text.split() else 1
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return self._push({"message": message})

    def push_migration(self, old: int, new: int, user_id: int = 1) -> None:
        """A group upgraded to a supergroup: Telegram's two service messages (old group, then new supergroup)."""
        for chat, extra in ((self._chat(old), {"migrate_to_chat_id": new}),
                            ({"id": new, "type": "supergroup", "title": f"Super{new}"}, {"migrate_from_chat_id": old})):
            self._push({"message": {"message_id": next(self._message_ids), "date": int(time.time()), "chat": chat,
                                    "from": self._user(user_id), **extra}})

    def push_edit(self, chat_id: int, message_id: int, text: str, user_id: int | None = None) -> int:
        """The user edited an earlier message of theirs (Telegram sends an `edited_message` update)."""
        message: dict[str, Any] = {
            "message_id": message_id, "date": int(time.time()) - 5, "edit_date": int(time.time()),
            "chat": self._chat(chat_id), "from": self._user(user_id if user_id is not None else abs(chat_id)),
            "text": text,
        }
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self._push({"edited_message": message})

    def push_command(self, chat_id: int, command: str, user_id: int | None = None, age_s: float = 0.0) -> int:
        """push_command(777, 'grid new BTCUSDT ...') or with the leading slash."""
        return self.push_text(chat_id, command if command.startswith("/") else "/" + command, user_id, age_s)

    def push_callback(self, chat_id: int, data: str, message_id: int | None = None, user_id: int | None = None,
                      message_text: str = "") -> str:
        """A button press on a message the bot sent to `chat_id` (the latest one with buttons by default)."""
        if message_id is None:
            message_id = self.last_message_with_buttons(chat_id)
        message = dict(self.messages.get((chat_id, message_id or 0), {}))
        if not message:
            message = {"message_id": message_id or 1, "date": int(time.time()), "chat": self._chat(chat_id),
                       "from": BOT_USER, "text": message_text or "old message"}
        cbq_id = f"cbq{next(self._cbq_ids)}"
        self._push({"callback_query": {
            "id": cbq_id, "from": self._user(user_id if user_id is not None else abs(chat_id)),
            "chat_instance": f"ci{chat_id}", "data": data, "message": message,
        }})
        return cbq_id

    def _push(self, body: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        update = {"update_id": update_id, **body}
        if self.webhook is not None:
            secret = self.webhook.get("secret_token")
            task = asyncio.get_running_loop().create_task(self.post_to_webhook(update, secret))
            self._webhook_tasks.add(task)
            task.add_done_callback(self._webhook_tasks.discard)
            return update_id
        self._updates.append(update)
        self._wake.set()
        return update_id

    async def post_to_webhook(self, update: dict[str, Any], secret: str | None) -> int:
        """POST one update to the registered webhook URL as Telegram does; returns (and records) the status."""
        assert self.webhook is not None, "no webhook set"
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        async with self._session.post(str(self.webhook["url"]), json=update, headers=headers) as resp:
            self.webhook_statuses.append(resp.status)
            return resp.status

    # ------------------------------------------------------------ queries for tests

    def last_message_with_buttons(self, chat_id: int) -> int | None:
        for (chat, message_id), message in sorted(self.messages.items(), reverse=True):
            if chat == chat_id and message.get("reply_markup", {}).get("inline_keyboard"):
                return message_id
        return None

    def buttons(self, chat_id: int, message_id: int | None = None) -> list[dict[str, str]]:
        """Inline buttons (text, callback_data) of a message the bot sent (latest with buttons by default)."""
        message_id = message_id if message_id is not None else self.last_message_with_buttons(chat_id)
        message = self.messages.get((chat_id, message_id or 0), {})
        rows = message.get("reply_markup", {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]

    def sent_to(self, chat_id: int, methods: tuple[str, ...] = ("sendMessage", "sendPhoto", "editMessageText")
                ) -> list[Call]:
        """Calls the fake accepted (not the ones it answered with 429) addressed to `chat_id`."""
        return [c for c in self.calls
                if c.ok and c.method in methods and _int(c.params.get("chat_id")) == chat_id]

    def texts_to(self, chat_id: int) -> list[str]:
        return [str(c.params.get("text", c.params.get("caption", ""))) for c in self.sent_to(chat_id)]

    async def next_call(self, method: str | tuple[str, ...] | None = None, timeout: float = 5.0) -> Call:
        """The next recorded non-polling call (of `method` when given), skipping others."""
        methods = (method,) if isinstance(method, str) else method
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            call = await asyncio.wait_for(self.sent.get(), max(remaining, 0.001))
            if methods is None or call.method in methods:
                return call

    async def wait_for(self, predicate: Any, timeout: float = 5.0, interval: float = 0.01) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached")
            await asyncio.sleep(interval)

    # ------------------------------------------------------------ protocol

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if part.filename is not None:
                    files[part.name or "file"] = bytes(await part.read())
                else:
                    params[part.name or ""] = await part.text()
        elif request.can_read_body:
            form = await request.post()
            params = {k: v for k, v in form.items() if isinstance(v, str)}
        params.update({k: v for k, v in request.query.items()})
        decoded: dict[str, Any] = {}
        for key, value in params.items():
            if key in _RAW_FIELDS:
                decoded[key] = value
                continue
            try:
                decoded[key] = json.loads(value)
            except (ValueError, TypeError):
                decoded[key] = value
        for key, value in list(decoded.items()):  # attach:// references for multipart files
            if isinstance(value, str) and value.startswith("attach://") and value[9:] in files:
                files[key] = files[value[9:]]
        return decoded, files

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.unreachable:
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPBadGateway()
        if request.match_info["token"] != self.token or self.revoked:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params, files = await self._params(request)
        call = Call(method, params, time.monotonic(), files)
        self.calls.append(call)
        pending = self._failures.get(method)
        if pending:
            retry_after = pending.pop(0)
            call.ok = False
            return web.json_response({
                "ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {retry_after}",
                "parameters": {"retry_after": retry_after},
            }, status=429)
        if method != "getUpdates":
            self.sent.put_nowait(call)
        if self.delays.get(method):
            await asyncio.sleep(self.delays[method])
        chat_error = self.chat_errors.get(_int(params.get("chat_id")) or 0)
        if chat_error is not None and method.startswith(("send", "edit")):
            status, description, parameters = chat_error
            call.ok = False
            body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
            if parameters:
                body["parameters"] = parameters
            return web.json_response(body, status=status)
        thread = _int(params.get("message_thread_id"))
        if thread is not None and (_int(params.get("chat_id")) or 0, thread) in self.deleted_topics:
            call.ok = False
            return web.json_response({"ok": False, "error_code": 400, "description": "Bad Request: message thread "
                                      "not found"}, status=400)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found: method not found"},
                                     status=404)
        result = handler(params, files)
        if asyncio.iscoroutine(result):
            result = await result
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response({"ok": True, "result": result})

    def _m_getMe(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return BOT_USER

    def _m_deleteWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.webhook = None
        return True

    def _m_setWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        url = str(params.get("url", ""))
        loopback = url.startswith(("http://127.0.0.1", "http://localhost"))  # tests' own webhook servers
        if url and not url.startswith("https://") and not loopback:
            return _bad("Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if ".invalid/" in url or url.endswith(".invalid"):  # RFC 2606: never resolves
            return _bad("Bad Request: bad webhook: Failed to resolve host: Name or service not known")
        self.webhook = dict(params)
        return True

    def _m_getWebhookInfo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}

    def _m_setMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.commands = list(params.get("commands", []))
        self.command_scopes[json.dumps(params.get("scope") or {"type": "default"}, sort_keys=True)] = self.commands
        return True

    def _m_deleteMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.command_scopes.pop(json.dumps(params.get("scope") or {"type": "default"}, sort_keys=True), None)
        return True

    def _m_getMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self.commands

    async def _m_getUpdates(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if self.webhook is not None:
            return web.json_response({"ok": False, "error_code": 409, "description": "Conflict: can't use "
                                      "getUpdates method while webhook is active; use deleteWebhook to delete "
                                      "the webhook first"}, status=409)
        offset = _int(params.get("offset")) or 0
        timeout = float(params.get("timeout") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates and timeout > 0 and not self._closing:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
        limit = _int(params.get("limit")) or 100
        return self._updates[:limit]

    def _new_message(self, chat_id: int, extra: dict[str, Any]) -> dict[str, Any]:
        message = {"message_id": next(self._message_ids), "date": int(time.time()), "chat": self._chat(chat_id),
                   "from": BOT_USER, **extra}
        self.messages[(chat_id, message["message_id"])] = message
        return message

    def _m_sendMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id = _int(params.get("chat_id"))
        if chat_id is None:
            return _bad("Bad Request: chat_id is empty")
        text = str(params.get("text", ""))
        if not text.strip():
            return _bad("Bad Request: message text is empty")
        if len(text) > 4096:
            return _bad("Bad Request: message is too long")
        extra: dict[str, Any] = {"text": text}
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and markup.get("inline_keyboard"):  # a Message only carries inline markup
            extra["reply_markup"] = markup
        return self._new_message(chat_id, extra)

    def _m_sendPhoto(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id = _int(params.get("chat_id"))
        if chat_id is None or "photo" not in files:
            return _bad("Bad Request: there is no photo in the request")
        return self._new_message(chat_id, {
            "photo": [{"file_id": "ph1", "file_unique_id": "u1", "width": 900, "height": 500}],
            "caption": params.get("caption", ""),
        })

    def _m_editMessageText(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id, message_id = _int(params.get("chat_id")), _int(params.get("message_id"))
        message = self.messages.get((chat_id or 0, message_id or 0))
        if message is None:
            return _bad("Bad Request: message to edit not found")
        message = dict(message, text=str(params.get("text", "")), edit_date=int(time.time()))
        message.pop("reply_markup", None)
        if isinstance(params.get("reply_markup"), dict):
            message["reply_markup"] = params["reply_markup"]
        self.messages[(chat_id or 0, message_id or 0)] = message
        return message

    def _m_editMessageReplyMarkup(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id, message_id = _int(params.get("chat_id")), _int(params.get("message_id"))
        message = self.messages.get((chat_id or 0, message_id or 0))
        if message is None:
            return _bad("Bad Request: message to edit not found")
        message = dict(message)
        message.pop("reply_markup", None)
        if isinstance(params.get("reply_markup"), dict) and params["reply_markup"].get("inline_keyboard"):
            message["reply_markup"] = params["reply_markup"]
        self.messages[(chat_id or 0, message_id or 0)] = message
        return message

    def _m_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return True


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _bad(description: str) -> web.Response:
    return web.json_response({"ok": False, "error_code": 400, "description": description}, status=400)
