"""Engines and sessions. Query functions in models/ flush and never commit: the caller owns the transaction."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine


def make_engine(database_url: str, *, pool_size: int = 10) -> Engine:
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_LOCK_WAIT_SECONDS},
        )
        _tune_sqlite(engine)
        return engine
    return create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )


# How long a transaction waits for SQLite's write lock before it fails (as the busy timeout did).
SQLITE_LOCK_WAIT_SECONDS = 30.0
# Between two tries at the write lock held by another process: short, because transactions here are short.
_SQLITE_RETRY_SLEEPS = (0.0005, 0.001, 0.002, 0.003, 0.005)


def _tune_sqlite(engine: Engine) -> None:
    """Every transaction takes SQLite's write lock at its start (BEGIN IMMEDIATE), and waits for it well.

    pysqlite's own transaction handling starts transactions late and lets a read lock be upgraded to a write lock
    mid-transaction, which fails at once under concurrent writers (busy_timeout cannot help). SQLAlchemy's documented
    recipe: turn pysqlite's handling off and begin every transaction ourselves with BEGIN IMMEDIATE, so writers queue
    and a read-check-write sequence is atomic.

    How they queue matters. SQLite's busy handler sleeps 1, 2, 5, 10 ... up to 100 ms between tries whatever the
    holder does, so under load a waiter sleeps on long after the lock is free: measured with 8 orders in flight, the
    worker's transactions waited 53 ms on average at BEGIN (2.5 s at worst) for locks held a few ms. So:
    - within a process, threads queue on a lock of our own, taken before BEGIN and given back right after COMMIT or
      ROLLBACK: the next thread goes the moment the lock is free;
    - against other processes (the API, the worker), BEGIN is retried after sleeps of 0.5-5 ms (the busy timeout is
      off for that one statement and back on for the rest, which may still meet a lock: a checkpoint, say).
    """
    lock = threading.Lock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_LOCK_WAIT_SECONDS * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        if connection.get_execution_options().get(READ_ONLY):
            # WAL: a reader sees its snapshot without the write lock, and neither waits for the writer nor makes it
            # wait. (A write in it would have to upgrade its lock mid-transaction: don't.)
            connection.connection.dbapi_connection.execute("BEGIN")
            return
        deadline = time.monotonic() + SQLITE_LOCK_WAIT_SECONDS
        if not lock.acquire(timeout=SQLITE_LOCK_WAIT_SECONDS):
            raise sqlite3.OperationalError("database is locked (by another transaction of this process)")
        dbapi = connection.connection.dbapi_connection
        try:
            dbapi.execute("PRAGMA busy_timeout=0")
            try:
                for attempt in itertools.count():
                    try:
                        dbapi.execute("BEGIN IMMEDIATE")
                        break
                    except sqlite3.OperationalError as err:
                        if "locked" not in str(err) or time.monotonic() > deadline:
                            raise
                    time.sleep(_SQLITE_RETRY_SLEEPS[min(attempt, len(_SQLITE_RETRY_SLEEPS) - 1)])
            finally:
                dbapi.execute(f"PRAGMA busy_timeout={int(SQLITE_LOCK_WAIT_SECONDS * 1000)}")
        except BaseException:
            lock.release()
            raise
        connection.info[_HOLDS_LOCK] = lock

    # COMMIT and ROLLBACK are sent here, so the lock is given back after them, not before (SQLAlchemy's events come
    # before the driver's call; pysqlite's own commit()/rollback() then find no transaction and do nothing).
    @event.listens_for(engine, "commit")
    def _on_commit(connection):
        try:
            connection.connection.dbapi_connection.execute("COMMIT")
        finally:
            _release(connection.info)

    @event.listens_for(engine, "rollback")
    def _on_rollback(connection):
        try:
            dbapi = connection.connection.dbapi_connection
            if not dbapi.in_transaction:
                return
            dbapi.execute("ROLLBACK")
        finally:
            _release(connection.info)

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection, record):
        # A connection back in the pool never keeps the lock (the pool has rolled it back).
        _release(record.info)


_HOLDS_LOCK = "tradeflow_sqlite_lock"
READ_ONLY = "tradeflow_read_only"


def _release(info: dict) -> None:
    lock = info.pop(_HOLDS_LOCK, None)
    if lock is not None:
        lock.release()


def insert_if_absent(session: Session, table, values: dict, key: str) -> int | None:
    """Insert unless a row with the same unique `key` exists, in one statement (INSERT ... ON CONFLICT DO NOTHING,
    on SQLite and PostgreSQL alike); the new row's id, or None when it existed already. RETURNING tells reliably
    whether the row was new (rowcount of an upsert differs between drivers)."""
    new_ids = insert_rows_if_absent(session, table, [values], key)
    return new_ids[0] if new_ids else None


def insert_rows_if_absent(session: Session, table, rows: list[dict], key: str) -> list[int]:
    """insert_if_absent for several rows in one statement (INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING
    RETURNING id): the ids of the rows that were new; a row whose `key` exists already is skipped."""
    if not rows:
        return []
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(rows).on_conflict_do_nothing(index_elements=[key])
    return list(session.execute(stmt.returning(table.c.id)).scalars())


def is_postgres(session_or_engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


@contextmanager
def read_only_session(engine: Engine) -> Iterator[Session]:
    """A session that only reads. On SQLite its transaction begins DEFERRED instead of IMMEDIATE: it neither waits
    for the write lock nor holds it (a page or a poller reading while workflows write). It must not write."""
    with Session(engine, expire_on_commit=False) as session:
        session.connection(execution_options={READ_ONLY: True})
        yield session


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any error (nothing half-written)."""
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            yield session
