"""The FastAPI app: `create_app(settings)` builds it; `app` is what uvicorn serves (`uvicorn api.main:app`).

The engine is made here from settings.database_url and kept on app.state.engine; every request gets its own
Session from it (api/deps.py). The schema comes from Alembic (`make run` migrates); the app never creates tables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

import config
from api import auth, health, inbox, inbox_pages, order_pages, pages, policies, policy_pages, quotes, substitutions
from api import portal, portal_pages
from api import purchasing, purchasing_pages
from api.errors import install_error_handlers
from api.routes import ROUTERS
from config import Settings
from models.db import make_engine

STATIC_DIR = Path(__file__).resolve().parent.parent / "ui" / "static"
SESSION_COOKIE = "tradeflow_session"


def _operation_id(route: APIRoute) -> str:
    # Stable, readable OpenAPI operation ids for generated clients (the template's convention).
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or config.get_settings()
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        client = getattr(app.state, "temporal_client", None)
        if client is not None and hasattr(client, "close"):
            await client.close()
        app.state.engine.dispose()

    app = FastAPI(
        title="Tradeflow",
        summary="Process platform for wholesale distributors",
        version="0.1.0",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    app.state.engine = engine
    # Every Depends(config.get_settings) in any module answers with this app's settings.
    app.dependency_overrides[config.get_settings] = lambda: settings

    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key.get_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_seconds,
        same_site="lax",
        https_only=settings.app_env == "prod",
    )
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    app.include_router(auth.router)
    app.include_router(auth.api)
    for router in ROUTERS:
        app.include_router(router, prefix="/api/v1")
    app.include_router(health.router)
    app.include_router(pages.router)
    app.include_router(inbox.router)
    app.include_router(inbox_pages.router)
    app.include_router(policies.router)
    app.include_router(policy_pages.router)
    app.include_router(substitutions.router, prefix="/api/v1")
    app.include_router(substitutions.pages)
    app.include_router(quotes.router)  # carries /api/v1 itself
    app.include_router(order_pages.router)
    app.include_router(portal.router)  # carries /api/v1 itself
    app.include_router(portal_pages.router)
    app.include_router(purchasing.router)  # carries /api/v1 itself
    app.include_router(purchasing_pages.router)
    install_error_handlers(app)
    return app


app = create_app()
