"""Tradeflow's web app: JSON API under /api/v1, login, health endpoints and the HTML pages (api.main.create_app)."""
