"""Engines and sessions. Query functions in models/ flush and never commit: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine


def make_engine(database_url: str, *, pool_size: int = 10) -> Engine:
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        _tune_sqlite(engine)
        return engine
    return create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )


def _tune_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling starts transactions late and lets a read lock be upgraded to a
    # write lock mid-transaction, which fails at once under concurrent writers (busy_timeout cannot help).
    # SQLAlchemy's documented recipe: turn pysqlite's handling off and begin every transaction ourselves with
    # BEGIN IMMEDIATE, so writers queue on the busy timeout and a read-check-write sequence is atomic.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(session_or_engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any error (nothing half-written)."""
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            yield session
