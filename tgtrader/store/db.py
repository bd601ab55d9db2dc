"""The SQLite database: one aiosqlite connection, one writer, forward migrations.

Why one connection: SQLite allows one writer at a time anyway, and a single connection
serialised by an asyncio.Lock never sees SQLITE_BUSY between our own tasks. `busy_timeout`
still covers other processes (e.g. `tgtrader doctor` while the bot runs).

Reads outside `transaction()` run on the same connection, so a read issued by another task
while a transaction is open sees that transaction's uncommitted rows. Writers that need
atomicity group their writes in one `async with db.transaction():` block.

Durability (issue 19): WAL with `synchronous=FULL`, so a commit is on disk (the WAL fsynced) before the
caller goes on. That is what the money path needs: an order is written PENDING_NEW in its reaction's
transaction BEFORE it is sent, and a fill is written before its counter order is sent; with NORMAL a power
loss may roll back such commits after the orders left. Writes whose loss costs nothing but a repeat
(an alert marked delivered: at-least-once anyway) pass `durable=False` and commit with NORMAL.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from tgtrader.errors import StoreError
from tgtrader.store.codec import now_ms
from tgtrader.store.migrations import MIGRATIONS, latest_version

Statement = tuple[str, tuple[Any, ...]]  # one write statement and its parameters

SQLITE_HEADER = b"SQLite format 3\x00"
DEFAULT_BUSY_TIMEOUT_MS = 5000
SYNCHRONOUS = ("FULL", "NORMAL")  # the first is the default; NORMAL only for benchmarks' baseline and tests


class Database:
    """Use `db = await Database.open(path)`; repositories are attributes (`db.orders`, ...)."""

    def __init__(self, conn: aiosqlite.Connection, path: Path | None, synchronous: str = "FULL"):
        from tgtrader.store.fills import FillRepo
        from tgtrader.store.grids import GridRepo
        from tgtrader.store.kv import KvRepo
        from tgtrader.store.orders import OrderRepo
        from tgtrader.store.outbox import OutboxRepo
        from tgtrader.store.stops import StopRepo

        self.conn = conn
        self.path = path
        self.journal_mode = ""
        self.synchronous = synchronous
        self._lock = asyncio.Lock()
        self._tx_owner: asyncio.Task[Any] | None = None
        self._depth = 0
        self._closed = False
        self.grids = GridRepo(self)
        self.orders = OrderRepo(self)
        self.fills = FillRepo(self)
        self.stops = StopRepo(self)
        self.outbox = OutboxRepo(self)
        self.kv = KvRepo(self)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
                   synchronous: str = SYNCHRONOUS[0]) -> "Database":
        """Open (creating the file and its directory if needed) and migrate to the latest schema.

        `synchronous` is SQLite's setting for durable commits ("FULL", the default, or "NORMAL": see above).

        Raises StoreError, with one line and without modifying the file, if it is not a
        tgtrader database, is from a newer tgtrader, or the location is not writable.
        """
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
        memory = str(path) == ":memory:"
        p = None if memory else Path(path).expanduser()
        if p is not None:
            _precheck(p)
        try:
            pending = aiosqlite.connect(":memory:" if p is None else str(p), isolation_level=None)
            _daemon_worker(pending)
            conn = await pending
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {p}: {exc}") from None
        db = cls(conn, p, synchronous)
        try:
            await db._setup(busy_timeout_ms)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(_describe(p, exc)) from None
            raise
        return db

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.conn.close()

    async def __aenter__(self) -> "Database":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _setup(self, busy_timeout_ms: int) -> None:
        await self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        # Read-only inspection first: a foreign, corrupt or newer file must not be touched.
        tables = {r[0] for r in await self.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
        current = 0
        if "schema_version" in tables:
            row = await self.fetchone("SELECT MAX(version) FROM schema_version")
            current = int(row[0] or 0) if row else 0
        elif tables - {"sqlite_sequence"}:
            raise StoreError(
                f"{self.path} is a SQLite database but not a tgtrader one (no schema_version table); left untouched"
            )
        if current > latest_version():
            raise StoreError(
                f"{self.path} has schema version {current}, newer than this tgtrader understands "
                f"({latest_version()}); upgrade tgtrader. The file was left untouched."
            )
        row = await self.fetchone("PRAGMA journal_mode = WAL")
        self.journal_mode = str(row[0]).lower() if row else ""
        await self.conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        await self.conn.execute("PRAGMA foreign_keys = ON")
        await self._migrate(current)

    async def _migrate(self, current: int) -> None:
        for version in range(current + 1, latest_version() + 1):
            migration = MIGRATIONS[version - 1]
            async with self.transaction() as conn:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)"
                )
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version(version, name, applied_ms) VALUES (?, ?, ?)",
                    (version, migration.name, now_ms()),
                )

    # ------------------------------------------------------------------ transactions

    @asynccontextmanager
    async def transaction(self, durable: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on any exception.

        Re-entrant for the task that holds it: a nested block becomes a SAVEPOINT, so
        repository methods (which open their own transaction) compose inside a caller's block.
        `durable=False`: commit with synchronous=NORMAL (a power loss may undo it; see the module doc).
        A nested block joins its outer transaction's durability.
        """
        task = asyncio.current_task()
        if self._tx_owner is not None and self._tx_owner is task:
            self._depth += 1
            name = f"sp{self._depth}"
            try:
                await self.conn.execute(f"SAVEPOINT {name}")
                try:
                    yield self.conn
                except BaseException:
                    await self.conn.execute(f"ROLLBACK TO {name}")
                    await self.conn.execute(f"RELEASE {name}")
                    raise
                await self.conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return

        async with self._lock:
            self._tx_owner = task
            relaxed = not durable and self.synchronous != "NORMAL"
            try:
                if relaxed:
                    await self.conn.execute("PRAGMA synchronous = NORMAL")
                try:
                    await self.conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    raise StoreError(_describe(self.path, exc)) from None
                except BaseException:  # cancelled while BEGIN was in flight: the thread may still open it
                    await self._end_open_transaction()
                    raise
                try:
                    yield self.conn
                    await self.conn.execute("COMMIT")
                except BaseException as exc:
                    await self._end_open_transaction()
                    if isinstance(exc, sqlite3.OperationalError):
                        raise StoreError(_describe(self.path, exc)) from None
                    raise
            finally:
                self._tx_owner = None
                if relaxed:
                    await self.conn.execute(f"PRAGMA synchronous = {self.synchronous}")

    async def _end_open_transaction(self) -> None:
        """After an error or a cancellation inside a transaction: roll back whatever is still open.

        A cancelled `await conn.execute(...)` does not stop the statement: aiosqlite's thread still runs it (a
        BEGIN then opens a transaction nobody ends, and every later write fails with "cannot start a transaction
        within a transaction"; a COMMIT still commits, and a ROLLBACK after it fails). So first a no-op queued
        behind whatever is in flight, then ROLLBACK only if a transaction is really open. Runs to the end even if
        cancelled again: the lock must not be released over an open transaction."""
        async def settle() -> None:
            await self.conn.execute("SELECT 1")
            if self.conn.in_transaction:
                await self.conn.execute("ROLLBACK")

        cleanup = asyncio.ensure_future(settle())
        while not cleanup.done():
            try:
                await asyncio.shield(cleanup)
            except asyncio.CancelledError:
                continue
        cleanup.result()

    async def write(self, statements: Sequence[Statement]) -> None:
        """Write statements as one durable transaction in ONE trip to the database thread.

        Why: every `await` on aiosqlite is a hand-off to its thread and back; the engine writes each reaction (the
        fill, its order, the machine, the new orders, the alert row) before the counter order may leave, and as
        separate statements those hand-offs were most of the fill reaction's time. BEGIN IMMEDIATE, the statements
        and COMMIT run back to back in the thread (ROLLBACK there on any error), so a cancelled caller can never
        leave a transaction open. Inside the calling task's open transaction they run in a savepoint instead.
        Statements only: whatever they depend on must be read before."""
        if not statements:
            return
        if self._tx_owner is not None and self._tx_owner is asyncio.current_task():
            await _in_thread(self.conn, _run_all, statements, "SAVEPOINT batch", "RELEASE batch",
                             "ROLLBACK TO batch")
            return
        async with self._lock:
            try:
                await _in_thread(self.conn, _run_all, statements, "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
            except sqlite3.OperationalError as exc:
                raise StoreError(_describe(self.path, exc)) from None

    # ------------------------------------------------------------------ helpers

    async def execute(self, sql: str, params: Iterable[Any] = (), *, durable: bool = True) -> int:
        """One write statement in its own transaction (joins the caller's if one is open); returns rowcount."""
        return (await self._statement(sql, params, durable))[0]

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> tuple[int, int]:
        """An INSERT in a transaction; returns (rowcount, lastrowid)."""
        return await self._statement(sql, params)

    async def _statement(self, sql: str, params: Iterable[Any], durable: bool = True) -> tuple[int, int]:
        """Run one write statement. Inside the calling task's open transaction it needs no savepoint of its own:
        SQLite already undoes a failed statement by itself, and each savepoint costs two more round trips to
        the database thread on the hot path (the engine persists every fill before its counter order leaves)."""
        if self._tx_owner is not None and self._tx_owner is asyncio.current_task():
            return await self._run(self.conn, sql, params)
        async with self.transaction(durable) as conn:
            return await self._run(conn, sql, params)

    @staticmethod
    async def _run(conn: aiosqlite.Connection, sql: str, params: Iterable[Any]) -> tuple[int, int]:
        # One trip to the database thread: a write is complete once executed, rowcount and lastrowid are plain
        # attribute reads, and the cursor is freed with its last reference (closing it would be a second trip).
        cur = await conn.execute(sql, tuple(params))
        return cur.rowcount, cur.lastrowid or 0

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(await self.conn.execute_fetchall(sql, tuple(params)))  # one trip, not execute+fetch+close

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        """The first row; callers ask by key or aggregate, so the rest is at most a few rows."""
        rows = await self.conn.execute_fetchall(sql, tuple(params))
        return next(iter(rows), None)

    async def schema_version(self) -> int:
        row = await self.fetchone("SELECT MAX(version) FROM schema_version")
        return int(row[0] or 0) if row else 0

    async def quick_check(self) -> str:
        """SQLite's `PRAGMA quick_check`: 'ok' or the first problem found."""
        row = await self.fetchone("PRAGMA quick_check")
        return str(row[0]) if row else "no answer"


async def _in_thread(conn: aiosqlite.Connection, fn: Any, *args: Any) -> Any:
    """Run `fn(sqlite3_connection, *args)` on the connection's own thread, in one hand-off. aiosqlite (0.22) has no
    public call for it: its `_execute` queues a callable to the worker and `_conn` is the sqlite3 connection there
    (tests/store/test_db_write.py pins both)."""
    return await conn._execute(lambda: fn(conn._conn, *args))


def _run_all(db: sqlite3.Connection, statements: Sequence[Statement], begin: str, end: str, undo: str) -> None:
    db.execute(begin)
    try:
        for sql, params in statements:
            db.execute(sql, params)
        db.execute(end)
    except BaseException:
        if db.in_transaction:
            db.execute(undo)
            if undo.startswith("ROLLBACK TO"):
                db.execute(end)  # a savepoint rolled back to is still open: release it
        raise


def _daemon_worker(conn: aiosqlite.Connection) -> None:
    """aiosqlite (0.22) runs each connection on a non-daemon thread that only stops on close() or garbage
    collection, so one connection left open (a crash path, a test) makes the interpreter hang at exit, in
    threading's shutdown, before any collection runs. A daemon worker cannot: the database is crash-safe
    anyway (WAL; the bot survives SIGKILL), and every orderly path still closes it."""
    thread = getattr(conn, "_thread", None)
    if thread is not None and not thread.is_alive():
        thread.daemon = True


def _precheck(path: Path) -> None:
    """Refuse, without touching anything, a path we cannot or must not use."""
    if path.is_dir():
        raise StoreError(f"database path {path} is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create database directory {path.parent}: {exc.strerror or exc}") from None
    if path.exists():
        try:
            with path.open("rb") as fh:
                header = fh.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise StoreError(f"cannot read database {path}: {exc.strerror or exc}") from None
        if header and header != SQLITE_HEADER:  # an empty file is a valid empty database
            raise StoreError(f"{path} is not a tgtrader database (file is not a database); left untouched")
        if not os.access(path, os.W_OK):
            raise StoreError(f"database {path} is not writable")
    elif not os.access(path.parent, os.W_OK):
        raise StoreError(f"database directory {path.parent} is not writable")


def _describe(path: Path | None, exc: sqlite3.Error) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    where = str(path) if path is not None else ":memory:"
    if "not a database" in text or "malformed" in text:
        return f"{where} is not a usable tgtrader database ({text}); left untouched"
    if "readonly" in text or "unable to open" in text:
        return f"database {where} is not writable ({text})"
    return f"database {where}: {text}"
