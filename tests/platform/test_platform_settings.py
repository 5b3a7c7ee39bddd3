"""Settings are validated at start with messages that name the variable; production refuses the dev defaults."""

from __future__ import annotations

import pytest

from config import load_settings

PROD_OK = {
    "APP_ENV": "prod",
    "DATABASE_URL": "postgresql://tradeflow:pw@db:5432/tradeflow",
    "TEMPORAL_EMBEDDED": "false",
    "TEMPORAL_ADDRESS": "temporal:7233",
    "SECRET_KEY": "x" * 40,
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """Only what each test sets: no inherited variables and no developer .env in the working directory."""
    for name in ("APP_ENV", "DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_EMBEDDED", "SECRET_KEY", "API_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def refusal(monkeypatch, **variables) -> str:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as refused:
        load_settings()
    return str(refused.value)


def test_bad_database_url_names_the_variable(monkeypatch):
    message = refusal(monkeypatch, DATABASE_URL="mysql://root@localhost/tradeflow")
    assert message.startswith("Tradeflow: invalid settings")
    assert "DATABASE_URL: Value error, DATABASE_URL must be sqlite:///<path> or postgresql" in message


@pytest.mark.parametrize("address", ["localhost", "7233", "localhost:port", ":7233"])
def test_bad_temporal_address_names_the_variable(monkeypatch, address):
    message = refusal(monkeypatch, TEMPORAL_ADDRESS=address)
    assert "TEMPORAL_ADDRESS: Value error, TEMPORAL_ADDRESS must be host:port" in message


def test_out_of_range_port_names_the_variable(monkeypatch):
    assert "API_PORT:" in refusal(monkeypatch, API_PORT="70000")


def test_production_refuses_sqlite_embedded_temporal_and_the_dev_secret(monkeypatch):
    message = refusal(monkeypatch, APP_ENV="prod")
    assert "production settings refused" in message
    assert "DATABASE_URL must point at PostgreSQL, not SQLite" in message
    assert "TEMPORAL_EMBEDDED must be false" in message
    assert "SECRET_KEY must be set" in message


def test_production_refuses_embedded_temporal_even_with_postgresql(monkeypatch):
    message = refusal(monkeypatch, **{**PROD_OK, "TEMPORAL_EMBEDDED": "true"})
    assert "TEMPORAL_EMBEDDED must be false" in message
    assert "DATABASE_URL" not in message


def test_production_settings_that_are_right_load(monkeypatch):
    for name, value in PROD_OK.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.app_env == "prod"
    # psycopg 3 is the installed driver; a plain postgresql:// URL is pointed at it.
    assert settings.database_url == "postgresql+psycopg://tradeflow:pw@db:5432/tradeflow"
    assert (settings.temporal_host, settings.temporal_port) == ("temporal", 7233)
