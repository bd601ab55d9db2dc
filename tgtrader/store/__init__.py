"""SQLite persistence: `db = await Database.open(path)`, then `db.grids`, `db.orders`, `db.fills`,
`db.stops`, `db.outbox`, `db.kv`; group writes with `async with db.transaction():`."""

from tgtrader.store.db import Database
from tgtrader.store.grids import GridRow
from tgtrader.store.orders import OrderRow
from tgtrader.store.outbox import OutboxRow
from tgtrader.store.stops import StopRow

__all__ = ["Database", "GridRow", "OrderRow", "OutboxRow", "StopRow"]
