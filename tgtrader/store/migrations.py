"""Forward-only schema migrations, applied in order by `Database.open`.

Rules (several people add to this file):
- APPEND new migrations at the end of MIGRATIONS; never edit or reorder one that has shipped,
  because databases in the field already recorded it as applied.
- A migration's version is its position (1-based); `schema_version` holds one row per applied version.
- Money columns are TEXT holding `str(Decimal)`: never REAL, never NUMERIC (both would go through float).
- Each migration runs in its own transaction together with its `schema_version` row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    name: str
    statements: tuple[str, ...]


MIGRATIONS: list[Migration] = [
    Migration(
        name="initial schema: grids, orders, fills, stops, alert outbox, kv",
        statements=(
            """
            CREATE TABLE grids (
                id          INTEGER PRIMARY KEY AUTOINCREMENT,
                symbol      TEXT    NOT NULL,
                config      TEXT    NOT NULL,          -- JSON, Decimals as strings
                state       TEXT    NOT NULL,
                runtime     TEXT,                      -- JSON blob owned by the engine
                created_ms  INTEGER NOT NULL,
                updated_ms  INTEGER NOT NULL
            )
            """,
            "CREATE INDEX grids_state ON grids(state)",
            """
            CREATE TABLE orders (
                client_order_id    TEXT PRIMARY KEY,
                symbol             TEXT    NOT NULL,
                side               TEXT    NOT NULL,
                type               TEXT    NOT NULL,
                price              TEXT,
                stop_price         TEXT,
                qty                TEXT    NOT NULL,
                executed_qty       TEXT    NOT NULL DEFAULT '0',
                status             TEXT    NOT NULL,
                owner              TEXT    NOT NULL DEFAULT '',
                exchange_order_id  INTEGER,
                created_ms         INTEGER NOT NULL,
                updated_ms         INTEGER NOT NULL
            )
            """,
            "CREATE INDEX orders_symbol_status ON orders(symbol, status)",
            "CREATE INDEX orders_owner ON orders(owner)",
            """
            CREATE TABLE fills (
                id                 INTEGER PRIMARY KEY AUTOINCREMENT,
                symbol             TEXT    NOT NULL,
                trade_id           INTEGER NOT NULL,
                client_order_id    TEXT    NOT NULL,
                exchange_order_id  INTEGER,
                side               TEXT    NOT NULL,
                price              TEXT    NOT NULL,
                qty                TEXT    NOT NULL,
                fee                TEXT    NOT NULL,
                fee_asset          TEXT    NOT NULL,
                is_maker           INTEGER NOT NULL,
                ts_ms              INTEGER NOT NULL,
                UNIQUE(symbol, trade_id)
            )
            """,
            "CREATE INDEX fills_client_order_id ON fills(client_order_id)",
            """
            CREATE TABLE stops (
                id                     INTEGER PRIMARY KEY AUTOINCREMENT,
                symbol                 TEXT    NOT NULL,
                kind                   TEXT    NOT NULL,   -- soft | hard | tp
                trigger_price          TEXT    NOT NULL,
                qty                    TEXT    NOT NULL,
                state                  TEXT    NOT NULL,
                hard_client_order_id   TEXT,
                owner                  TEXT    NOT NULL DEFAULT '',
                created_ms             INTEGER NOT NULL,
                updated_ms             INTEGER NOT NULL
            )
            """,
            "CREATE INDEX stops_symbol_state ON stops(symbol, state)",
            """
            CREATE TABLE outbox (
                id               INTEGER PRIMARY KEY AUTOINCREMENT,
                chat_id          INTEGER,                -- NULL: every allowed chat
                kind             TEXT    NOT NULL,
                text             TEXT    NOT NULL,
                created_ms       INTEGER NOT NULL,
                attempts         INTEGER NOT NULL DEFAULT 0,
                next_attempt_ms  INTEGER NOT NULL,
                sent_ms          INTEGER,
                last_error       TEXT
            )
            """,
            "CREATE INDEX outbox_due ON outbox(sent_ms, next_attempt_ms)",
            """
            CREATE TABLE kv (
                key    TEXT PRIMARY KEY,
                value  TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        name="paper exchange state: balances, orders, trades, counters",
        statements=(
            """
            CREATE TABLE paper_balances (
                account  TEXT NOT NULL,
                asset    TEXT NOT NULL,
                free     TEXT NOT NULL,
                locked   TEXT NOT NULL,
                PRIMARY KEY (account, asset)
            )
            """,
            """
            CREATE TABLE paper_orders (
                account          TEXT    NOT NULL,
                symbol           TEXT    NOT NULL,
                client_order_id  TEXT    NOT NULL,
                order_id         INTEGER NOT NULL,
                status           TEXT    NOT NULL,
                data             TEXT    NOT NULL,   -- JSON of EngineOrder.to_row(), Decimals as strings
                PRIMARY KEY (account, symbol, client_order_id)
            )
            """,
            "CREATE INDEX paper_orders_status ON paper_orders(status)",
            """
            CREATE TABLE paper_trades (
                account   TEXT    NOT NULL,
                symbol    TEXT    NOT NULL,
                trade_id  INTEGER NOT NULL,
                data      TEXT    NOT NULL,          -- JSON of matching.fill_to_row()
                PRIMARY KEY (symbol, trade_id)
            )
            """,
            """
            CREATE TABLE paper_state (
                key    TEXT PRIMARY KEY,
                value  TEXT NOT NULL                 -- JSON (id counters, last prices)
            )
            """,
        ),
    ),
    Migration(
        name="machine state in real tables: stop runtime, chases, daily results, sequences, panic-paused grids",
        statements=(
            # a stop's state lived twice (its row and a kv JSON): the row now holds the runtime too
            "ALTER TABLE stops ADD COLUMN runtime TEXT",
            "UPDATE stops SET runtime = (SELECT value FROM kv WHERE kv.key = 'stop:' || stops.id)",
            """
            CREATE TABLE chases (
                id          INTEGER PRIMARY KEY,
                symbol      TEXT    NOT NULL,
                state       TEXT    NOT NULL,
                runtime     TEXT    NOT NULL,          -- JSON, Decimals as strings
                updated_ms  INTEGER NOT NULL
            )
            """,
            "INSERT INTO chases(id, symbol, state, runtime, updated_ms) "
            "SELECT CAST(substr(key, 7) AS INTEGER), json_extract(value, '$.symbol'), "
            "coalesce(json_extract(value, '$.state'), 'working'), value, 0 FROM kv WHERE key LIKE 'chase:%'",
            """
            CREATE TABLE day_results (
                day          TEXT    PRIMARY KEY,      -- YYYY-MM-DD, UTC
                profit       TEXT    NOT NULL,
                round_trips  INTEGER NOT NULL
            )
            """,
            "INSERT INTO day_results(day, profit, round_trips) SELECT substr(key, 5), "
            "json_extract(value, '$.profit'), json_extract(value, '$.trips') FROM kv WHERE key LIKE 'pnl:%'",
            "CREATE TABLE sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            "INSERT INTO sequences(name, value) SELECT substr(key, 5), CAST(value AS INTEGER) FROM kv "
            "WHERE key LIKE 'seq:%'",
            "ALTER TABLE grids ADD COLUMN panic_paused INTEGER NOT NULL DEFAULT 0",
            "UPDATE grids SET panic_paused = 1 WHERE id IN "
            "(SELECT value FROM json_each(coalesce((SELECT value FROM kv WHERE key = 'core:panic_paused'), '[]')))",
            "DELETE FROM kv WHERE key LIKE 'stop:%' OR key LIKE 'chase:%' OR key LIKE 'pnl:%' OR key LIKE 'seq:%' "
            "OR key = 'core:panic_paused'",
        ),
    ),
    Migration(
        name="typed alerts: outbox rows hold kind + payload (JSON), worded at delivery, and their channel",
        statements=(
            # NULL on the rows written before: their stored text is delivered as it is
            "ALTER TABLE outbox ADD COLUMN payload TEXT",
            "ALTER TABLE outbox ADD COLUMN channel TEXT NOT NULL DEFAULT 'telegram'",
        ),
    ),
    Migration(
        name="exits: panic's sells until flat, one row per liquidated symbol (issue 13)",
        statements=(
            """
            CREATE TABLE exits (
                id INTEGER PRIMARY KEY,
                symbol TEXT NOT NULL,
                state TEXT NOT NULL,
                runtime TEXT NOT NULL,
                updated_ms INTEGER NOT NULL
            )
            """,
        ),
    ),
    Migration(
        name="klines: a cache of recent candles for guided /grid's suggestions (issue 17)",
        statements=(
            """
            CREATE TABLE klines (
                symbol TEXT NOT NULL,
                interval TEXT NOT NULL,
                open_time INTEGER NOT NULL,
                open REAL NOT NULL,
                high REAL NOT NULL,
                low REAL NOT NULL,
                close REAL NOT NULL,
                volume REAL NOT NULL,
                PRIMARY KEY (symbol, interval, open_time)
            ) WITHOUT ROWID
            """,
        ),
    ),
    # Append new migrations here.
]


def latest_version() -> int:
    """The schema version this code writes and understands."""
    return len(MIGRATIONS)
