"""models/db.py on SQLite: writers of one process queue on the process's own lock, readers do not queue at all.

Every transaction but a read_only_session's takes SQLite's write lock at BEGIN (IMMEDIATE); the engine's own lock
makes threads of one process take turns without SQLite's sleeping busy handler, and hands the turn over after
COMMIT or ROLLBACK. The join timeouts below are guards against a hang, not speed assertions.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from models.db import make_engine, read_only_session, transaction


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'locking.db'}")
    with transaction(engine) as s:
        s.exec(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        s.exec(text("INSERT INTO counter VALUES (0)"))
    yield engine
    engine.dispose()


def count(engine) -> int:
    with read_only_session(engine) as s:
        return s.exec(text("SELECT n FROM counter")).one()[0]


def test_writers_of_one_process_take_turns_and_lose_nothing(engine):
    # Read-modify-write without any row lock: correct only if the transactions really run one at a time.
    def bump(times: int) -> None:
        for _ in range(times):
            with transaction(engine) as s:
                n = s.exec(text("SELECT n FROM counter")).one()[0]
                s.exec(text("UPDATE counter SET n = :n"), params={"n": n + 1})

    threads = [threading.Thread(target=bump, args=(50,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert count(engine) == 400


def test_a_failed_transaction_rolls_back_and_hands_the_turn_on(engine):
    with pytest.raises(ValueError):
        with transaction(engine) as s:
            s.exec(text("UPDATE counter SET n = 99"))
            raise ValueError("the caller's own error")
    # Nothing half-written, and the next writer (another thread) is not stuck behind the failed one.
    done = threading.Event()

    def write() -> None:
        with transaction(engine) as s:
            s.exec(text("UPDATE counter SET n = n + 1"))
        done.set()

    t = threading.Thread(target=write)
    t.start()
    t.join(timeout=10)
    assert done.is_set()
    assert count(engine) == 1


def test_a_reader_neither_waits_for_a_writer_nor_sees_its_uncommitted_work(engine):
    writing, reader_done = threading.Event(), threading.Event()
    seen: list[int] = []

    def writer() -> None:
        with transaction(engine) as s:
            s.exec(text("UPDATE counter SET n = 7"))
            writing.set()
            # Holds the write lock until the reader has finished: a reader that queued for it would hang here.
            reader_done.wait(timeout=10)

    def reader() -> None:
        seen.append(count(engine))
        reader_done.set()

    w = threading.Thread(target=writer)
    w.start()
    assert writing.wait(timeout=10)
    r = threading.Thread(target=reader)
    r.start()
    r.join(timeout=10)
    w.join(timeout=10)
    assert seen == [0]  # read while the writer held the lock, from the last committed state
    assert count(engine) == 7
