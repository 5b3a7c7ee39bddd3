"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from models.db import make_engine
from models.migrate import upgrade_database


def _schema_diff(url: str) -> list:
    engine = make_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, SQLModel.metadata)
    engine.dispose()
    return diff


def test_upgrade_head_on_empty_sqlite_matches_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade_database(url)
    upgrade_database(url)  # a second run is a no-op, as `make run` relies on
    assert _schema_diff(url) == []
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select version_num from alembic_version")).scalar() is not None
    engine.dispose()


def test_upgrade_head_on_empty_postgres_matches_the_models(pg_database_url):
    engine = make_engine(pg_database_url)
    SQLModel.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        for enum in conn.execute(sa.text("select typname from pg_type where typtype = 'e'")).scalars().all():
            conn.execute(sa.text(f'DROP TYPE IF EXISTS "{enum}" CASCADE'))
    engine.dispose()
    upgrade_database(pg_database_url)
    assert _schema_diff(pg_database_url) == []
