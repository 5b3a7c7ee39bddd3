"""The JSON API under /api/v1, one module per area. Every router declares `dependencies=[CsrfProtected]` (cookie
sessions need the CSRF token on writes; bearer-token clients are exempt) and each route states who may call it."""

from fastapi import APIRouter

from api.routes import catalogue, documents, finance, imports, partners, planning, pricing, users, warehouses

ROUTERS: list[APIRouter] = [
    m.router for m in (catalogue, partners, warehouses, pricing, planning, finance, users, documents, imports)
]
