"""python-telegram-bot callbacks: authorization, commands, buttons, errors. Thin by design: each one
hands the text or callback data to `Dispatcher` and sends the `Reply` it gets back."""

from __future__ import annotations

import asyncio
import time

from loguru import logger
from telegram import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from telegram.ext import ApplicationHandlerStop, ContextTypes

from tgtrader.chat.dispatch import Dispatcher
from tgtrader.chat.render import Reply

REFUSAL = "Sorry, this is a private bot."
REFUSAL_EVERY_S = 3600.0
CAPTION_LIMIT = 1024
ANSWER_WITHIN_S = 2.0  # Telegram wants callback queries answered quickly (the spinner, ~15 s expiry)


def markup(reply: Reply) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
    if reply.buttons:
        return InlineKeyboardMarkup(
            [[InlineKeyboardButton(b.label, callback_data=b.data) for b in row] for row in reply.buttons]
        )
    if reply.keyboard:
        return ReplyKeyboardMarkup([list(row) for row in reply.keyboard], resize_keyboard=True)
    return None


class TelegramHandlers:
    def __init__(self, dispatcher: Dispatcher, allowed_chat_ids: frozenset[int]) -> None:
        self.dispatcher = dispatcher
        self.allowed = frozenset(allowed_chat_ids)
        self._refused_at: dict[int, float] = {}

    # ------------------------------------------------------------ group -1: authorization

    def is_authorized(self, update: Update) -> bool:
        """A chat is authorized when its id is listed (a private chat's id is the user's id)."""
        chat = update.effective_chat
        if chat is not None:
            return chat.id in self.allowed
        user = update.effective_user
        return user is not None and user.id in self.allowed

    async def authorize(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not isinstance(update, Update):
            raise ApplicationHandlerStop
        if self.is_authorized(update):
            return
        user = update.effective_user
        chat = update.effective_chat
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

    # ------------------------------------------------------------ commands and text

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        chat = update.effective_chat
        if message is None or chat is None or not message.text:
            return
        reply = await self.dispatcher.dispatch(message.text, chat.id)
        await self.send(context, chat.id, reply)

    async def send(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, reply: Reply) -> Message:
        bot = context.bot
        if reply.photo is not None:
            sent = await bot.send_photo(chat_id, photo=reply.photo, caption=reply.text[:CAPTION_LIMIT] or None)
        else:
            sent = await bot.send_message(chat_id, reply.text, reply_markup=markup(reply))
        for extra in reply.extra:
            sent = await self.send(context, chat_id, extra)
        return sent

    # ------------------------------------------------------------ buttons

    async def on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        chat = update.effective_chat
        chat_id = chat.id if chat is not None else (query.from_user.id if query.from_user else 0)
        task = asyncio.ensure_future(self.dispatcher.press(query.data or "", chat_id))
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
                return
            except BadRequest as exc:
                logger.info("editMessageText failed ({}); sending a new message", exc)
        await self.send(context, chat_id, Reply(reply.text, reply.buttons, photo=reply.photo))

    @staticmethod
    async def _answer(query: CallbackQuery, text: str | None) -> bool:
        try:
            await query.answer(text)
            return True
        except BadRequest as exc:  # query too old to answer: the message below still tells the user
            logger.info("answerCallbackQuery failed: {}", exc)
            return False

    # ------------------------------------------------------------ errors

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log with an id; tell an authorized chat only the id, never the traceback."""
        if isinstance(context.error, (NetworkError, RetryAfter)):  # Telegram itself is unwell: telling fails too
            logger.warning("Telegram request failed: {}", self.dispatcher.scrub(str(context.error)))
            return
        reply = self.dispatcher.internal_error(context.error)
        if not isinstance(update, Update) or not self.is_authorized(update) or update.effective_chat is None:
            return
        try:
            await context.bot.send_message(update.effective_chat.id, reply.text)
        except TelegramError as exc:
            logger.warning("could not report internal error to chat: {}", exc)
