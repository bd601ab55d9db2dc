"""The chat front end: parsing, authorization, formatting, buttons and alerts; no trading logic.

Layers, each usable without the next:
- `parse`    text -> typed request, or ParseError(reason, syntax). Pure.
- `render`   api results / core events -> plain text and button specs; the `Reply` model. Pure.
- `commands` the one command table (name, syntax, example, description, handler): Telegram handlers,
             the command menu, /help and `/cmd help` all come from it.
- `actions`  request -> TradingApi call -> Reply (transport neutral).
- `dispatch` `Dispatcher.dispatch(text, chat)` / `.press(data, chat)`: what Telegram and the console call;
             buttons are random tokens bound to a chat, expiring, single use.
- `notify`   core events -> coalesced alerts -> SQLite outbox -> every authorized chat, with retries.
- `handlers`, `app`  python-telegram-bot wiring: `build_application(...)`, `frontend(app).start()/stop()`.
"""
