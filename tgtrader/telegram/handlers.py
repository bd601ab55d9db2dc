"""python-telegram-bot callbacks: authorization, commands, buttons, errors. Thin by design: each one
hands the text or callback data to `Dispatcher` and sends the `Reply` it gets back.

The gate (group -1) decides per person (`access.Access`), drops what is not for this bot (plain chatter and
other bots' commands in groups) and never executes a stale command: Telegram keeps updates while the bot is
offline and delivers them at the next start, so a `/buy` typed hours ago would otherwise run at today's
price. The message's own date (set by Telegram) is what counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from loguru import logger
from telegram import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import ApplicationHandlerStop, ContextTypes

from tgtrader.chat.commands import BY_NAME, is_read_only
from tgtrader.chat.dispatch import Dispatcher
from tgtrader.chat.render import CAPTION_LIMIT, Reply
from tgtrader.telegram.access import Access, Role

REFUSAL = "Sorry, this is a private bot."
NOT_ALLOWED_HERE = "Only the people allowed to use this bot can press its buttons."
READ_ONLY_ANSWER = "You have read-only access: /status, /balance, /orders, /pnl, /grid list, /stops, /chart."
REFUSAL_EVERY_S = 3600.0
ANSWER_WITHIN_S = 2.0  # Telegram wants callback queries answered quickly (the spinner, ~15 s expiry)
ANSWER_TIMEOUT_S = 5.0  # an answerCallbackQuery that takes longer is abandoned; the action's result still shows
MAX_COMMAND_AGE_S = 60.0


def ago(seconds: float) -> str:
    """'45 s', '5 min', '6 h', '2 d': how long ago a message was sent."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def markup(reply: Reply) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
    if reply.buttons:
        return InlineKeyboardMarkup(
            [[InlineKeyboardButton(b.label, callback_data=b.data) for b in row] for row in reply.buttons]
        )
    if reply.keyboard:
        return ReplyKeyboardMarkup([list(row) for row in reply.keyboard], resize_keyboard=True)
    return None


def topic(message: object) -> int | None:
    """The forum topic of a message in a forum supergroup, else None."""
    if isinstance(message, Message) and message.is_topic_message:
        return message.message_thread_id
    return None


class TelegramHandlers:
    def __init__(self, dispatcher: Dispatcher, access: Access | frozenset[int], *,
                 max_command_age_s: float = MAX_COMMAND_AGE_S, answer_timeout_s: float = ANSWER_TIMEOUT_S,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.dispatcher = dispatcher
        self.access = access if isinstance(access, Access) else Access.of(access)
        self.max_command_age_s = max_command_age_s
        self.answer_timeout_s = answer_timeout_s
        self.wall_clock = wall_clock
        self.started_at = wall_clock()  # reset by TelegramBot.start: commands sent before it never trade
        # set by TelegramBot: remember that a group became a supergroup (database, outbox, a notice)
        self.on_migrate: Callable[[int, int], Awaitable[None]] | None = None
        self._refused_at: dict[int, float] = {}

    # ------------------------------------------------------------ group -1: authorization

    def role(self, update: Update) -> Role:
        chat, user = update.effective_chat, update.effective_user
        chat_id = chat.id if chat is not None else (user.id if user is not None else None)
        private = chat is None or chat.type == "private"
        return self.access.role(chat_id, user.id if user is not None else None, private)

    def is_authorized(self, update: Update) -> bool:
        return self.role(update) is not Role.NONE

    async def authorize(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not isinstance(update, Update):
            raise ApplicationHandlerStop
        message = update.effective_message
        if message is not None and (message.migrate_to_chat_id or message.migrate_from_chat_id):
            await self._migration(message)
            raise ApplicationHandlerStop
        role = self.role(update)
        if role is not Role.NONE:
            await self._gate(update, context, role)
            return
        user = update.effective_user
        chat = update.effective_chat
        if chat is not None and chat.type != "private" and self.access.chat_allowed(chat.id):
            # an allowed group, a member who may not command: no chatter in the group, a toast for a button
            logger.info("ignored update {} from user id {} in group {} (not an allowed user)",
                        update.update_id, user.id if user else None, chat.id)
            if update.callback_query is not None:
                await self._answer(update.callback_query, NOT_ALLOWED_HERE)
            raise ApplicationHandlerStop
        logger.warning(
            "refused update {} from user id {} (@{}) in chat {}",
            update.update_id, user.id if user else None, user.username if user else None, chat.id if chat else None,
        )
        key = chat.id if chat is not None else (user.id if user is not None else 0)
        now = time.monotonic()
        first = now - self._refused_at.get(key, -1e18) > REFUSAL_EVERY_S
        try:
            if update.callback_query is not None:
                await update.callback_query.answer(REFUSAL)
            elif first and update.effective_message is not None and chat is not None and chat.type == "private":
                self._refused_at[key] = now
                await update.effective_message.reply_text(REFUSAL)
        except TelegramError as exc:
            logger.info("could not send the refusal: {}", exc)
        raise ApplicationHandlerStop

    async def _migration(self, message: Message) -> None:
        """Telegram's service messages when a group is upgraded: one in the old group (migrate_to_chat_id), one
        in the new supergroup (migrate_from_chat_id). Followed only for a group that was allowed."""
        old, new = ((message.chat_id, message.migrate_to_chat_id) if message.migrate_to_chat_id
                    else (message.migrate_from_chat_id, message.chat_id))
        if old is None or new is None or not self.access.chat_allowed(old) or self.access.current(old) == new:
            return
        if self.on_migrate is not None:
            await self.on_migrate(old, new)

    async def _gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE, role: Role) -> None:
        """An authorized update: drop what is not for us, refuse what is stale or beyond the user's role."""
        query = update.callback_query
        if query is not None:
            if role is Role.READ:
                await self._answer(query, READ_ONLY_ANSWER[:200])
                raise ApplicationHandlerStop
            return
        message = update.message
        chat = update.effective_chat
        if message is None or chat is None or not message.text:
            return
        text = message.text
        if chat.type != "private" and not self._for_me(text, context):
            raise ApplicationHandlerStop  # plain chatter, or another bot's command, in a group
        age = self.wall_clock() - message.date.timestamp()
        before_start = message.date.timestamp() + 1 <= self.started_at
        stale = age > self.max_command_age_s or (before_start and not is_read_only(text))
        if stale and not text.startswith("/"):
            raise ApplicationHandlerStop  # old chatter: nothing to run, nothing to say
        if stale:
            name = text.split()[0] if text.split() else text
            when = "while I was offline" if before_start else "and reached me late"
            logger.warning("ignored {} from chat {}: sent {} ago", name[:40], chat.id, ago(age))
            await self._reply(message, f"ignored: {name[:40]} was sent {ago(max(age, 0))} ago {when}"
                                       " — send it again if you still want it.")
            raise ApplicationHandlerStop
        if role is Role.READ and not is_read_only(text):
            await self._reply(message, READ_ONLY_ANSWER)
            raise ApplicationHandlerStop

    @staticmethod
    def _for_me(text: str, context: ContextTypes.DEFAULT_TYPE) -> bool:
        """In a group: only our commands (no '@OtherBot', a command we know)."""
        word = text.split()[0] if text.split() else ""
        if not word.startswith("/"):
            return False
        name, _, addressee = word[1:].partition("@")
        if addressee and addressee.lower() != (context.bot.username or "").lower():
            return False
        return name.lower() in BY_NAME

    async def _reply(self, message: Message, text: str) -> None:
        try:
            await message.reply_text(self.dispatcher.scrub(text))
        except TelegramError as exc:
            logger.info("could not answer: {}", exc)

    # ------------------------------------------------------------ commands and text

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        chat = update.effective_chat
        if message is None or chat is None or not message.text:
            return
        user = update.effective_user
        thread = topic(message)
        reply = await self.dispatcher.dispatch(message.text, chat.id, user.id if user is not None else None, thread)
        await self.send(context, chat.id, reply, thread)

    async def send(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, reply: Reply,
                   thread_id: int | None = None) -> Message:
        """`thread_id`: the forum topic the question came from (the answer goes there, not to General)."""
        bot = context.bot
        if reply.photo is not None:
            sent = await bot.send_photo(chat_id, photo=reply.photo, caption=reply.text[:CAPTION_LIMIT] or None,
                                        message_thread_id=thread_id)
        else:
            sent = await bot.send_message(chat_id, reply.text, reply_markup=markup(reply),
                                          message_thread_id=thread_id)
        for extra in reply.extra:
            sent = await self.send(context, chat_id, extra, thread_id)
        return sent

    # ------------------------------------------------------------ buttons

    async def on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        chat = update.effective_chat
        chat_id = chat.id if chat is not None else (query.from_user.id if query.from_user else 0)
        user_id = query.from_user.id if query.from_user else None
        task = asyncio.ensure_future(self.dispatcher.press(query.data or "", chat_id, user_id))
        done, _ = await asyncio.wait({task}, timeout=ANSWER_WITHIN_S)
        answered = False
        if not done:  # e.g. a panic over many symbols: stop the client's spinner, the edit follows
            answered = await self._answer(query, "Working...")
        try:
            reply = await task
        except Exception:
            if not answered:
                await self._answer(query, "Internal error")
            raise  # the error handler logs it and tells the chat the error id
        if not answered:
            await self._answer(query, reply.toast[:200] or None)
        if reply.edit and query.message is not None:
            try:
                await query.edit_message_text(reply.text, reply_markup=markup(reply))
                for extra in reply.extra:
                    await self.send(context, chat_id, extra, topic(query.message))
                return
            except BadRequest as exc:
                logger.info("editMessageText failed ({}); sending a new message", exc)
        await self.send(context, chat_id, Reply(reply.text, reply.buttons, photo=reply.photo, extra=reply.extra),
                        topic(query.message))

    async def _answer(self, query: CallbackQuery, text: str | None) -> bool:
        """Stop the button's spinner. Best effort: a query too old, a timeout or a network error must not
        hide the result of an action that ran (the edit or message that follows tells the user)."""
        try:
            await query.answer(text, read_timeout=self.answer_timeout_s)
            return True
        except TelegramError as exc:
            logger.info("answerCallbackQuery failed: {}", type(exc).__name__)
            return False

    # ------------------------------------------------------------ errors

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log with an id; tell an authorized chat only the id, never the traceback."""
        if isinstance(context.error, ChatMigrated) and isinstance(update, Update) and update.effective_chat:
            if self.on_migrate is not None and self.access.chat_allowed(update.effective_chat.id):
                await self.on_migrate(update.effective_chat.id, int(context.error.new_chat_id))
            return
        refused = isinstance(context.error, (BadRequest, Forbidden))  # BadRequest is a NetworkError in PTB 22
        if not refused and isinstance(context.error, (NetworkError, RetryAfter)):  # Telegram unwell: telling fails
            logger.warning("Telegram request failed: {}", self.dispatcher.scrub(str(context.error)))
            return
        reply = self.dispatcher.internal_error(context.error)
        if not isinstance(update, Update) or not self.is_authorized(update) or update.effective_chat is None:
            return
        try:
            await context.bot.send_message(update.effective_chat.id, reply.text)
        except TelegramError as exc:
            logger.warning("could not report internal error to chat: {}", exc)
