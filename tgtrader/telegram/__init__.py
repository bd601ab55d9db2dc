"""The Telegram front end: python-telegram-bot wiring around the transport-neutral `tgtrader.chat`.

- `handlers` Telegram updates -> `chat.dispatch.Dispatcher` -> messages, inline keyboards, photos;
             authorization and the refusal for unknown chats.
- `notify`   core events -> coalesced typed alerts -> SQLite outbox (channel 'telegram') -> every
             authorized chat, worded at delivery (`chat.alerts`), with retries.
- `app`      `build_application(...)`, `frontend(app).start()/stop()`: polling or webhook, the command
             menu, the daily summary.
"""
