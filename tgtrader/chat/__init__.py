"""The transport-neutral chat front end: parsing, rendering, buttons, actions and alert wording; no trading
logic and no transport (python-telegram-bot lives in `tgtrader.telegram`, the console in `tgtrader.console`).

Layers, each usable without the next:
- `parse`    text -> typed request, or ParseError(reason, syntax). Pure.
- `render`   api results -> plain text and button specs; the `Reply` model. Pure.
- `alerts`   an alert's kind + payload (a machine's AlertIntent, a window of core events, the daily
             summary) -> its message, worded at delivery (`render_alert`, `outbox_text`). Pure.
- `chart`    a grid chart as PNG bytes.
- `commands` the one command table (name, syntax, example, description, handler): each front end's
             command list, the menu, /help and `/cmd help` all come from it.
- `actions`  request -> TradingApi call -> Reply.
- `dispatch` `Dispatcher.dispatch(text, chat)` / `.press(data, chat)`: what every front end calls;
             buttons are random tokens bound to a chat, expiring, single use.

A new front end (web, Discord) is one adapter: it calls `Dispatcher`, shows `Reply`s and delivers its
channel's outbox rows through `alerts.outbox_text`.
"""
