"""docker-compose.yml cannot run here (no Docker engine), so its contract is checked as data: the services
exist, the app runs in production mode, every variable the api and worker get is a setting Tradeflow knows,
and those settings pass the production guard."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from config import PROJECT_ROOT, Settings, load_settings

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
APP_SERVICES = ("api", "worker")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; $$ escapes a literal $.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """What `docker compose` does with the variables: from .env, else the default, else an error."""

    def substitute(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op and op.endswith("-"):
            return arg
        raise AssertionError(f"compose needs {name}, which .env.example does not set: {arg or ''}")

    return INTERPOLATION.sub(substitute, text).replace("$$", "$")


def test_the_services_are_all_there(compose):
    assert set(compose["services"]) >= {"postgres", "temporal", "temporal-ui", "api", "worker"}
    # The one-shots that make a fresh Temporal usable: schema, then namespace.
    assert {"temporal-schema", "temporal-namespace"} <= set(compose["services"])


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_set_only_variables_the_settings_know(compose, service):
    known = {name.upper() for name in Settings.model_fields}
    variables = set(compose["services"][service]["environment"])
    assert variables - known == set(), f"{service} sets variables no Settings field reads"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_run_in_production_mode_and_pass_the_guard(compose, example_env, service, monkeypatch, tmp_path):
    environment = compose["services"][service]["environment"]
    assert environment["APP_ENV"] == "prod"
    assert environment["TEMPORAL_EMBEDDED"] == "false"
    monkeypatch.chdir(tmp_path)  # no developer .env
    for name in {field.upper() for field in Settings.model_fields}:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, interpolate(str(value), example_env))
    settings = load_settings()  # SystemExit with the reasons if the production guard refuses
    assert settings.app_env == "prod"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.temporal_address == "temporal:7233"


def test_every_variable_compose_needs_has_a_default_or_an_example(example_env):
    # interpolate() raises for a required variable that .env.example leaves out.
    interpolate(COMPOSE_FILE.read_text(), example_env)


def test_images_are_pinned(compose, example_env):
    for name, service in compose["services"].items():
        image = interpolate(service["image"], example_env) if "image" in service else None
        if "build" in service:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and re.fullmatch(r"\d+\.\d+(\.\d+)?", tag), f"{name}: image {image} is not pinned"
    versions = {interpolate(compose["services"][s]["image"], example_env).rpartition(":")[2]
                for s in ("temporal", "temporal-schema", "temporal-namespace")}
    assert len(versions) == 1, "the Temporal server and admin-tools must be the same version"


def test_startup_order_and_health(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on a missing service {dependency}"
    assert services["api"]["depends_on"]["temporal-namespace"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"
    for name in ("postgres", "temporal", "api"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_the_api_migrates_and_registers_search_attributes_before_serving(compose):
    command = " ".join(compose["services"]["api"]["command"])
    assert command.index("python -m models.migrate") < command.index("python -m workflows.search_attributes")
    assert command.index("python -m workflows.search_attributes") < command.index("uvicorn api.main:app")
    assert compose["services"]["worker"]["command"] == ["python", "worker.py"]


def test_files_the_services_mount_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).exists(), f"{name} mounts {source}, which is missing"
        build = service.get("build")
        if build:
            assert (PROJECT_ROOT / build["context"] / build["dockerfile"]).is_file()
    assert Path(PROJECT_ROOT / "deploy/temporal/dynamicconfig/production.yaml").is_file()
