"""Schema migrations (Alembic): `upgrade_database(url)` brings any database to the current schema.

Command line: `python -m models.migrate [--database-url URL]` (default: DATABASE_URL from the settings).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alembic import command
from alembic.config import Config

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade_database(database_url: str) -> None:
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), "head")


def main() -> None:
    parser = argparse.ArgumentParser(description="Bring the Tradeflow database to the current schema.")
    parser.add_argument("--database-url", help="default: DATABASE_URL from the environment / settings")
    args = parser.parse_args()
    url = args.database_url
    if not url:
        from config import load_settings

        url = load_settings().database_url
    upgrade_database(url)
    print(f"database at head: {url.split('@')[-1]}")


if __name__ == "__main__":
    main()
