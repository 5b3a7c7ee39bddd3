"""Workflow code stays deterministic without the SDK's sandbox (workflows.registry.workflow_runner runs unsandboxed).

A workflow is replayed from its history on any worker, any day: its code may not read the clock, draw random
numbers, touch files, the network or the database, start threads, or keep state between runs in module globals.
The sandbox used to refuse such calls at run time; this test refuses them in the source of workflows/, and the
saved histories (test_replay.py) catch a changed command sequence.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKFLOWS_DIR = Path(__file__).resolve().parents[2] / "workflows"

# Modules whose use in workflow code is non-deterministic or I/O (activities do this work).
FORBIDDEN_MODULES = frozenset({
    "time", "random", "secrets", "uuid", "os", "sys", "io", "pathlib", "socket", "ssl", "subprocess", "threading",
    "multiprocessing", "concurrent", "sqlite3", "sqlalchemy", "sqlmodel", "psycopg", "httpx", "urllib", "smtplib",
    "logging", "models", "api", "config",
})
# Calls with a deterministic workflow counterpart: workflow.now(), workflow.sleep(), workflow.uuid4(), ...
FORBIDDEN_CALLS = {
    "datetime.now": "workflow.now()", "datetime.utcnow": "workflow.now()", "datetime.today": "workflow.now()",
    "date.today": "workflow.now().date()", "asyncio.sleep": "workflow.sleep()", "open": "an activity",
    "input": "an activity", "print": "workflow.logger", "asyncio.to_thread": "an activity",
    "asyncio.get_event_loop": "the workflow's own loop", "hash": "a stable key (str hashes vary per process)",
}
# Client-side code that lives beside the workflow code it serves (never runs inside a workflow): file -> functions.
CLIENT_SIDE = {"search_attributes.py": {"_main"}}
# Importing an activity module to name its activities is fine: the workflow never runs its code itself.
ALLOWED_FROM = {"activities.sales", "activities.approvals", "activities.inventory", "activities.mailer"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def problems(source: str, filename: str = "<workflow>") -> list[str]:
    """What in `source` a workflow module may not do, as 'file:line: reason'."""
    found = []
    tree = ast.parse(source, filename)
    skipped = CLIENT_SIDE.get(filename, set())
    tree.body = [n for n in tree.body if not (
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name in skipped
        or isinstance(n, ast.If) and ast.unparse(n.test) == "__name__ == '__main__'")]
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in FORBIDDEN_MODULES and node.module not in ALLOWED_FROM:
                found.append(f"{where}: imports from {node.module}")
            if node.module.split(".")[0] == "activities" and node.module not in ALLOWED_FROM:
                found.append(f"{where}: imports from {node.module}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in FORBIDDEN_CALLS:
                found.append(f"{where}: calls {name}() (use {FORBIDDEN_CALLS[name]})")
        elif isinstance(node, ast.Global):
            found.append(f"{where}: assigns module state (global {', '.join(node.names)})")
    return found


@pytest.mark.parametrize("path", sorted(WORKFLOWS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_workflow_code_has_no_clock_randomness_io_or_module_state(path):
    assert problems(path.read_text(), path.name) == []


@pytest.mark.parametrize(("snippet", "reason"), [
    ("from datetime import datetime\ndef f():\n    return datetime.now()\n", "calls datetime.now()"),
    ("import random\n", "imports random"),
    ("from uuid import uuid4\n", "imports from uuid"),
    ("from models.orders import get_order\n", "imports from models.orders"),
    ("import asyncio\nasync def f():\n    await asyncio.sleep(1)\n", "calls asyncio.sleep()"),
    ("seen = []\ndef f():\n    global seen\n    seen = [1]\n", "global seen"),
    ("def f(s):\n    return hash(s)\n", "calls hash()"),
])
def test_the_check_refuses_what_breaks_replay(snippet, reason):
    found = problems(snippet)
    assert len(found) == 1 and reason in found[0], found
