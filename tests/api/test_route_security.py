"""Every page and endpoint is authenticated: a request without a session or token gets 401 (JSON), a redirect to
the login page (HTML) or 403 (a write without CSRF), never data, a success or a 500. The routes are read from the
app itself, so a router added later is covered the day it is wired in."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import SQLModel

from api.main import create_app
from config import Settings

# Open on purpose: signing in, health probes for the orchestrator, the API's own documentation.
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/docs"),
          ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"), ("GET", "/openapi.json")}


def all_routes(app) -> list[tuple[str, str]]:
    found = set()
    for route in app.router.routes:
        contexts = route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]
        for ctx in contexts:
            path = getattr(ctx, "path", None)
            for method in getattr(ctx, "methods", None) or ():
                if path and method not in ("HEAD", "OPTIONS"):
                    found.add((method, path))
    return sorted(found)


def concrete(path: str) -> str:
    # Path parameters get a plausible value: an id, a number, a task key.
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.fixture(scope="module")
def app_and_routes(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('security') / 'tradeflow.db'}"
    app = create_app(Settings(database_url=url, app_env="test", secret_key="route-security-secret-0123456789"))
    SQLModel.metadata.create_all(app.state.engine)
    return app, all_routes(app)


def test_the_app_has_the_routes_of_every_area(app_and_routes):
    _, routes = app_and_routes
    paths = {p for _, p in routes}
    for expected in ("/api/v1/quotes", "/api/v1/tasks", "/api/v1/policies", "/api/v1/products", "/orders",
                     "/inbox", "/policies", "/warehouse/shipments", "/payments/new", "/out-of-office"):
        assert expected in paths, expected
    assert len(routes) > 100


def test_no_route_answers_an_anonymous_caller(app_and_routes):
    app, routes = app_and_routes
    problems = []
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        for method, path in routes:
            if (method, path) in PUBLIC:
                continue
            response = client.request(method, concrete(path), headers={"accept": "text/html"} if not
                                      path.startswith("/api/") else {})
            code = response.status_code
            to_login = code in (302, 303, 307) and "/login" in response.headers.get("location", "")
            if not (code in (401, 403) or to_login):
                problems.append(f"{method} {path}: {code}")
    assert problems == []
