"""human_task_candidate.status is a copy of its task's status (the inbox's open views read only the candidate
rows): save_task keeps it in step on every change, the counts follow it, and migration 0005 fills it in for
candidate rows that existed before it. On SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from sqlmodel import Session, SQLModel

from activities.approvals import ApprovalActivities
from models import inbox
from models.approvals import HumanTask, HumanTaskCandidate
from models.db import make_engine
from models.migrate import alembic_config, upgrade_database
from workflows.contracts import SaveTaskInput, TaskSnapshot

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIA = inbox.Viewer("mia.manager", frozenset({"sales-manager"}))
MAX = inbox.Viewer("max.manager", frozenset({"sales-manager"}))
CARL = inbox.Viewer("carl.cfo", frozenset({"cfo"}))


def snapshot(key: str = "quote:Q-9/step1/round1", **changes) -> TaskSnapshot:
    base = TaskSnapshot(
        task_key=key, request_key=key.split("/")[0], workflow_id=f"approval:{key.split('/')[0]}", step_index=0,
        round=0, step_name="Sales manager approval", kind="quote", title="Quote Q-9 for Elektro Nord",
        document_ref="Q-9", requester="sam.sales", branch="NBG", amount="1782.00", status="ready", outcome=None,
        assignee=None, owner=None, delegation_state="none", priority=50, created_at=NOW,
        follow_up_at=NOW + timedelta(hours=24), escalate_at=NOW + timedelta(hours=48),
        due_at=NOW + timedelta(hours=120), escalation_level=0, completed_at=None, completed_by=None,
        acting_for=None, comment="", policy_kind="quote", policy_version=1, rule_ids=("discount>10",),
        candidate_groups=("sales-manager",), candidate_users=(), version=1,
    )
    return replace(base, **changes)


def candidates(engine, key: str = "quote:Q-9/step1/round1") -> set[tuple[str, str, str]]:
    with Session(engine) as s:
        task_id = s.scalars(sa.select(HumanTask.id).where(HumanTask.task_key == key)).one()
        rows = s.execute(sa.select(HumanTaskCandidate.kind, HumanTaskCandidate.name, HumanTaskCandidate.status)
                         .where(HumanTaskCandidate.task_id == task_id))
        return {(k, n, getattr(st, "value", st)) for k, n, st in rows}


def counts(engine, viewer: inbox.Viewer) -> dict[str, int]:
    with Session(engine) as s:
        return inbox.view_counts(s, viewer, NOW)


def test_candidate_status_follows_the_task_through_save_task(any_engine):
    save = ApprovalActivities(any_engine).save_task
    created = snapshot()
    save(SaveTaskInput(created, "created", "system"))
    assert candidates(any_engine) == {("group", "sales-manager", "ready")}
    assert counts(any_engine, MIA)["group_unclaimed"] == 1 and counts(any_engine, MIA)["all_open"] == 1

    claimed = replace(created, status="reserved", assignee="mia.manager", version=2)
    save(SaveTaskInput(claimed, "claimed", "mia.manager"))
    assert candidates(any_engine) == {("group", "sales-manager", "reserved"), ("user", "mia.manager", "reserved")}
    # Claimed: out of the group's unclaimed list, still open for the group, and mia's own.
    assert counts(any_engine, MAX)["group_unclaimed"] == 0 and counts(any_engine, MAX)["all_open"] == 1
    assert counts(any_engine, MIA)["my_tasks"] == 1

    # An older snapshot arriving late (a retried activity) changes nothing, the copy included.
    save(SaveTaskInput(created, "created", "system"))
    assert candidates(any_engine) == {("group", "sales-manager", "reserved"), ("user", "mia.manager", "reserved")}

    delegated = replace(claimed, assignee="max.manager", owner="mia.manager", delegation_state="pending", version=3)
    save(SaveTaskInput(delegated, "delegated", "mia.manager"))
    assert candidates(any_engine) == {("group", "sales-manager", "reserved"), ("user", "mia.manager", "reserved"),
                                      ("user", "max.manager", "reserved")}

    completed = replace(delegated, status="completed", outcome="approved", completed_by="max.manager",
                        completed_at=NOW + timedelta(hours=1), acting_for="mia.manager", version=4)
    save(SaveTaskInput(completed, "approved", "max.manager"))
    assert {st for _, _, st in candidates(any_engine)} == {"completed"}
    assert counts(any_engine, MIA) == {"my_tasks": 0, "group_unclaimed": 0, "delegated_by_me": 0,
                                       "overdue_and_at_risk": 0, "completed_by_me": 0, "all_open": 0}
    assert counts(any_engine, MAX)["completed_by_me"] == 1
    # Closed, but still visible to its people (the task page, "completed by me").
    with Session(any_engine) as s:
        assert inbox.visible_task(s, MIA, completed.task_key) is not None
        assert inbox.visible_task(s, CARL, completed.task_key) is None


def test_open_views_list_exactly_what_they_count(any_engine):
    """The open views read candidate rows (with the copied status), the counts as well: both agree with the task
    rows, task by task, for a mix of states, names and groups."""
    save = ApprovalActivities(any_engine).save_task
    mix = [
        snapshot("quote:Q-1/step1/round1"),
        snapshot("quote:Q-2/step1/round1", status="reserved", assignee="max.manager"),
        snapshot("quote:Q-3/step1/round1", candidate_users=("mia.manager",)),  # mia by name and by group
        snapshot("quote:Q-4/step1/round1", status="completed", outcome="approved", completed_by="mia.manager",
                 completed_at=NOW),
        snapshot("quote:Q-5/step1/round1", status="expired"),
        snapshot("quote:Q-6/step2/round1", candidate_groups=("cfo",), due_at=NOW + timedelta(hours=2)),
        snapshot("quote:Q-7/step1/round1", candidate_groups=(), candidate_users=("mia.manager",), due_at=None),
    ]
    for snap in mix:
        save(SaveTaskInput(snap, "created", "system"))
    expected = {
        MIA: {"group_unclaimed": ["quote:Q-1/step1/round1", "quote:Q-3/step1/round1", "quote:Q-7/step1/round1"],
              "all_open": ["quote:Q-1/step1/round1", "quote:Q-2/step1/round1", "quote:Q-3/step1/round1",
                           "quote:Q-7/step1/round1"]},
        CARL: {"group_unclaimed": ["quote:Q-6/step2/round1"], "all_open": ["quote:Q-6/step2/round1"],
               "overdue_and_at_risk": ["quote:Q-6/step2/round1"]},
    }
    with Session(any_engine) as s:
        for viewer, views in expected.items():
            for view, task_keys in views.items():
                page = inbox.search(s, viewer, view=view, sort="created", now=NOW)
                assert sorted(r.task_key for r in page.rows) == task_keys, (viewer.username, view)
                assert page.total == page.counts[view] == len(task_keys), (viewer.username, view)


def _fresh_postgres(url: str) -> None:
    engine = make_engine(url)
    SQLModel.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        for enum in conn.execute(sa.text("select typname from pg_type where typtype = 'e'")).scalars().all():
            conn.execute(sa.text(f'DROP TYPE IF EXISTS "{enum}" CASCADE'))
    engine.dispose()


def _migrate_with_rows(url: str) -> set[tuple[str, str, str]]:
    """Schema at 0004, a closed and an open task with candidate rows (no status yet), then up to head."""
    command.upgrade(alembic_config(url), "0004")
    engine = make_engine(url)
    task = ("INSERT INTO human_task (id, task_key, request_key, workflow_id, step_index, round, step_name, kind, "
            "title, document_ref, requester, branch, amount, status, delegation_state, priority, created_at, "
            "escalation_level, comment, policy_kind, rule_ids, candidate_groups, candidate_users, version) VALUES "
            "(:id, :key, 'quote:Q-1', 'approval:quote:Q-1', 0, 0, 'step', 'quote', 't', 'Q-1', 'sam.sales', 'NBG', "
            "1, :status, 'none', 50, :at, 0, '', 'quote', '[]', '[]', '[]', 1)")
    with engine.begin() as conn:
        conn.execute(sa.text(task), [{"id": 1, "key": "quote:Q-1/step1/round1", "status": "completed", "at": NOW},
                                     {"id": 2, "key": "quote:Q-1/step2/round1", "status": "ready", "at": NOW}])
        conn.execute(sa.text("INSERT INTO human_task_candidate (task_id, kind, name) VALUES (:t, :k, :n)"),
                     [{"t": 1, "k": "group", "n": "sales-manager"}, {"t": 1, "k": "user", "n": "mia.manager"},
                      {"t": 2, "k": "group", "n": "cfo"}])
    engine.dispose()
    upgrade_database(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT task_id, name, status FROM human_task_candidate")).all()
    engine.dispose()
    return {(str(t), n, s) for t, n, s in rows}


def test_migration_0005_gives_existing_candidates_their_task_status_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'before-0005.db'}"
    assert _migrate_with_rows(url) == {("1", "sales-manager", "completed"), ("1", "mia.manager", "completed"),
                                       ("2", "cfo", "ready")}


def test_migration_0005_gives_existing_candidates_their_task_status_postgres(pg_database_url):
    _fresh_postgres(pg_database_url)
    assert _migrate_with_rows(pg_database_url) == {("1", "sales-manager", "completed"),
                                                   ("1", "mia.manager", "completed"), ("2", "cfo", "ready")}
    _fresh_postgres(pg_database_url)  # leave the shared test database as the other tests expect it: empty
