"""The Telegram front end: python-telegram-bot wiring around the transport-neutral `tgtrader.chat`.

- `access`   who may command (users) and where the bot talks (chats); supergroup upgrades, remembered.
- `handlers` Telegram updates -> `chat.dispatch.Dispatcher` -> messages, inline keyboards, photos;
             authorization per person, stale commands refused, the refusal for unknown chats.
- `notify`   core events -> SQLite outbox at once (channel 'telegram') -> coalesced and worded at delivery
             (`chat.alerts`, `chat.headline`) -> every authorized chat; Telegram's errors classified.
- `app`      `build_application(...)`, `frontend(app).start()/stop()`: polling or webhook, the command
             menu per allowed chat, the daily summary, a rejected token retried slowly.
"""
