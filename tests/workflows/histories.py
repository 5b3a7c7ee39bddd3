"""Saved workflow histories for the replay test (tests/workflows/test_replay.py).

Workflow tests call `await keep_history(handle, "approval_two_step")` when their workflow has finished. In a normal
run that does nothing. With TRADEFLOW_RECORD_HISTORIES=1 it writes the history as JSON under
tests/workflows/histories/, to be committed: those files stand for processes that were running under the code of
the day, and test_replay.py replays every one against the current code, so a change that would break a running
order or approval (a reordered activity, a new timer without `workflow.patched`) fails the build.

Record new files when a workflow gains a path worth guarding (a new name: an existing file is never overwritten);
never re-record an old file to make a failing replay pass — that would hide exactly the break the file is there to
catch (version the change with workflow.patched). The q2c files without "_lean" were recorded before workflows were
started with their search attributes (the old, patched-asking path); the "_lean" ones after (see
workflows/search_attributes.SearchAttributeBoard); the "_standing" ones after starters set
QuoteToCashInput.standing_timers (one timer per deadline): every kind of running order is guarded.
"""

from __future__ import annotations

import os
from pathlib import Path

from temporalio.client import WorkflowHandle

HISTORY_DIR = Path(__file__).resolve().parent / "histories"
RECORD_ENV = "TRADEFLOW_RECORD_HISTORIES"


async def keep_history(handle: WorkflowHandle, name: str) -> Path | None:
    if os.environ.get(RECORD_ENV) != "1":
        return None
    path = HISTORY_DIR / f"{name}.json"
    if path.exists():
        return None  # a recorded history stands for processes of its day: never overwritten (see above)
    history = await handle.fetch_history()
    HISTORY_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(history.to_json())
    return path
