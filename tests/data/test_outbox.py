"""The e-mail outbox sender against a real SMTP server (aiosmtpd on an OS-chosen port, started by the test).

What is shown: exactly the pending messages arrive, oldest first, with subject, recipient and the task link; a
second run sends nothing again; an unreachable server counts attempts and fails messages after the last one;
permanent refusals fail at once while temporary ones are retried; and on PostgreSQL two senders at once never
send one message twice.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import timedelta

from sqlalchemy import select
from sqlmodel import Session

from activities.mailer import next_wait, run_mailer
from config import Settings
from models.approvals import OutboxMessage, OutboxStatus
from models.common import utcnow
from models.outbox import DeliveryReport, deliver_pending, message_id
from tests.mail_sink import MailSink, closed_port, mail_sink  # noqa: F401  (mail_sink is a fixture)

SENDER = "Tradeflow <tradeflow@tradeflow.test>"
LINK = "http://tradeflow.test/inbox/quote:Q-{n}/step1/round1"


def queue(engine, n: int, *, recipient: str | None = None, subject: str | None = None, body: str | None = None,
          minutes_ago: int = 0) -> str:
    """One pending outbox row, as ApprovalActivities.notify writes them; returns its message key."""
    key = f"quote:Q-{n}/step1/round1:created:user{n}"
    link = LINK.format(n=n)
    with Session(engine) as s, s.begin():
        s.add(OutboxMessage(
            message_key=key,
            recipient=recipient if recipient is not None else f"user{n}@tradeflow.test",
            subject=subject or f"Approval needed: Quote Q-{n}",
            body=body if body is not None else f"sam.sales asks for approval of Q-{n}.\n\nOpen the task: {link}\n",
            link=link,
            created_at=utcnow() - timedelta(minutes=minutes_ago),
        ))
    return key


def rows(engine) -> dict[str, OutboxMessage]:
    with Session(engine) as s:
        return {r.message_key: r for r in s.scalars(select(OutboxMessage))}


def deliver(engine, sink_or_port, **kw) -> DeliveryReport:
    port = sink_or_port if isinstance(sink_or_port, int) else sink_or_port.port
    return deliver_pending(engine, "127.0.0.1", port, SENDER, **kw)


# ------------------------------------------------------------------------------------------- delivery


def test_pending_messages_arrive_oldest_first_with_subject_recipient_and_link(any_engine, mail_sink):
    keys = [queue(any_engine, n, minutes_ago=10 - n) for n in (1, 2, 3)]

    report = deliver(any_engine, mail_sink)

    assert report == DeliveryReport(sent=3, failed=0, retried=0)
    assert [m.message_key for m in mail_sink.messages] == keys
    for n, mail in zip((1, 2, 3), mail_sink.messages, strict=True):
        assert mail.rcpt_tos == (f"user{n}@tradeflow.test",)
        assert mail.mail_from == "tradeflow@tradeflow.test"
        assert mail.subject == f"Approval needed: Quote Q-{n}"
        assert str(mail.message["To"]) == f"user{n}@tradeflow.test"
        assert LINK.format(n=n) in mail.body
        # Derived from the key: a resend after a crash carries the same id and date.
        assert mail.message["Message-ID"] == message_id(keys[n - 1], SENDER)
        assert mail.message["Date"] is not None
        assert mail.message["Auto-Submitted"] == "auto-generated"  # no out-of-office auto-replies
    stored = rows(any_engine)
    assert {(r.status, r.attempts, r.last_error) for r in stored.values()} == {(OutboxStatus.sent, 1, "")}
    assert all(r.sent_at is not None for r in stored.values())


def test_delivering_twice_never_sends_twice(any_engine, mail_sink):
    queue(any_engine, 1)
    queue(any_engine, 2)
    assert deliver(any_engine, mail_sink).sent == 2

    assert deliver(any_engine, mail_sink) == DeliveryReport()
    assert len(mail_sink.messages) == 2

    new = queue(any_engine, 3)
    assert deliver(any_engine, mail_sink).sent == 1
    assert [m.message_key for m in mail_sink.messages][-1] == new
    assert Counter(m.message_key for m in mail_sink.messages).most_common(1)[0][1] == 1


def test_message_id_depends_on_the_key_alone():
    one = message_id("quote:Q-1/step1/round1:created:mia.manager", "tradeflow@example.com")
    assert one == message_id("quote:Q-1/step1/round1:created:mia.manager", "Tradeflow <tradeflow@example.com>")
    assert one != message_id("quote:Q-1/step1/round1:reminder:mia.manager", "tradeflow@example.com")
    assert one.startswith("<outbox.") and one.endswith("@example.com>")


def test_the_link_is_added_when_the_body_lacks_it(engine, mail_sink):
    queue(engine, 1, body="Please have a look.")
    deliver(engine, mail_sink)
    assert LINK.format(n=1) in mail_sink.messages[0].body


def test_a_line_break_in_the_subject_cannot_add_headers(engine, mail_sink):
    queue(engine, 1, subject="Approval needed: Quote\r\nBcc: someone@evil.test")
    assert deliver(engine, mail_sink).sent == 1
    mail = mail_sink.messages[0]
    assert mail.subject == "Approval needed: Quote Bcc: someone@evil.test"
    assert mail.message["Bcc"] is None
    assert mail.rcpt_tos == ("user1@tradeflow.test",)


def test_batch_bounds_a_run_and_stop_is_checked_between_messages(engine, mail_sink):
    keys = [queue(engine, n, minutes_ago=10 - n) for n in range(1, 6)]
    assert deliver(engine, mail_sink, batch=2).sent == 2
    assert [m.message_key for m in mail_sink.messages] == keys[:2]

    assert deliver(engine, mail_sink, should_stop=lambda: True) == DeliveryReport()
    calls = iter([False, True])
    assert deliver(engine, mail_sink, should_stop=lambda: next(calls)).sent == 1
    assert deliver(engine, mail_sink).sent == 2
    assert [m.message_key for m in mail_sink.messages] == keys


# ------------------------------------------------------------------------------------------- failures


def test_an_unreachable_server_counts_attempts_and_fails_after_the_last(engine, mail_sink):
    keys = [queue(engine, n, minutes_ago=10 - n) for n in (1, 2)]
    dead = closed_port()

    assert deliver(engine, dead, max_attempts=3) == DeliveryReport(sent=0, failed=0, retried=2)
    first = rows(engine)
    assert {(r.status, r.attempts) for r in first.values()} == {(OutboxStatus.pending, 1)}
    assert all("unreachable" in r.last_error and "refused" in r.last_error.lower() for r in first.values())

    assert deliver(engine, dead, max_attempts=3).retried == 2
    assert deliver(engine, dead, max_attempts=3) == DeliveryReport(sent=0, failed=2, retried=0)
    final = rows(engine)
    assert {(r.status, r.attempts) for r in final.values()} == {(OutboxStatus.failed, 3)}

    # Failed is final: the server coming back does not resurrect them.
    assert deliver(engine, mail_sink) == DeliveryReport()
    assert mail_sink.messages == [] and set(final) == set(keys)


def test_a_permanent_refusal_fails_at_once_a_temporary_one_is_retried(engine, mail_sink):
    queue(engine, 1, minutes_ago=3)
    queue(engine, 2, minutes_ago=2)
    ok = queue(engine, 3, minutes_ago=1)
    mail_sink.refuse["user1@tradeflow.test"] = "550 5.1.1 no such mailbox"
    mail_sink.refuse["user2@tradeflow.test"] = "451 4.3.0 mailbox busy, try later"

    # One run tries each message once; the refusals do not stop the others on the same connection.
    assert deliver(engine, mail_sink) == DeliveryReport(sent=1, failed=1, retried=1)
    assert [m.message_key for m in mail_sink.messages] == [ok]
    stored = rows(engine)
    by_n = {n: stored[f"quote:Q-{n}/step1/round1:created:user{n}"] for n in (1, 2, 3)}
    assert (by_n[1].status, by_n[1].attempts) == (OutboxStatus.failed, 1)
    assert "550" in by_n[1].last_error and "no such mailbox" in by_n[1].last_error
    assert (by_n[2].status, by_n[2].attempts) == (OutboxStatus.pending, 1)
    assert "451" in by_n[2].last_error

    del mail_sink.refuse["user2@tradeflow.test"]
    assert deliver(engine, mail_sink) == DeliveryReport(sent=1)
    assert (rows(engine)[by_n[2].message_key].status, rows(engine)[by_n[2].message_key].last_error) == (
        OutboxStatus.sent, "")


def test_a_message_without_a_valid_recipient_fails_without_blocking_the_rest(engine, mail_sink):
    queue(engine, 1, recipient="", minutes_ago=2)
    queue(engine, 2, minutes_ago=1)
    assert deliver(engine, mail_sink) == DeliveryReport(sent=1, failed=1)
    bad = rows(engine)["quote:Q-1/step1/round1:created:user1"]
    assert bad.status == OutboxStatus.failed and "recipient" in bad.last_error


# ------------------------------------------------------------------------------------------- PostgreSQL


def test_two_senders_at_once_never_send_a_message_twice_on_postgres(pg_engine):
    total = 60
    for n in range(total):
        queue(pg_engine, n, minutes_ago=total - n)
    barrier = threading.Barrier(2)
    reports: list[DeliveryReport] = []
    errors: list[BaseException] = []

    with MailSink(delay=0.01) as sink:  # each DATA takes a moment, so the two senders really overlap

        def sender() -> None:
            try:
                barrier.wait(timeout=10)
                reports.append(deliver(pg_engine, sink, batch=total))
            except BaseException as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=sender) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

    assert not errors, errors
    received = Counter(m.message_key for m in sink.messages)
    assert len(received) == total and set(received.values()) == {1}, received.most_common(3)
    assert sum(r.sent for r in reports) == total
    assert all(r.sent > 0 for r in reports), reports  # both took part: the locks, not luck, kept them apart
    assert len({m.peer for m in sink.messages}) == 2
    assert {r.status for r in rows(pg_engine).values()} == {OutboxStatus.sent}


# ------------------------------------------------------------------------------------------- the mailer loop


def test_next_wait_drains_backlogs_and_backs_off_while_failing():
    assert next_wait(DeliveryReport(sent=50), 5, 5, 300, 50) == 0  # a full batch: more may be waiting
    assert next_wait(DeliveryReport(sent=3), 40, 5, 300, 50) == 5  # success resets the back-off
    assert next_wait(DeliveryReport(), 5, 5, 300, 50) == 5  # nothing to do
    assert next_wait(DeliveryReport(retried=2), 5, 5, 300, 50) == 10
    assert next_wait(DeliveryReport(retried=2), 200, 5, 300, 50) == 300
    assert next_wait(None, 5, 5, 300, 50) == 10  # the run itself failed (database down)


async def test_run_mailer_delivers_until_stopped(engine, mail_sink):
    settings = Settings(_env_file=None, smtp_host=mail_sink.host, smtp_port=mail_sink.port,
                        smtp_sender="tradeflow@tradeflow.test")
    stop = asyncio.Event()
    task = asyncio.create_task(run_mailer(engine, settings, stop, interval=0.05))
    try:
        key = queue(engine, 1)
        async with asyncio.timeout(10):
            while not mail_sink.messages:
                await asyncio.sleep(0.02)
        assert mail_sink.messages[0].message_key == key
        queue(engine, 2)
        async with asyncio.timeout(10):
            while len(mail_sink.messages) < 2:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task
    assert task.done() and task.exception() is None
    assert len(mail_sink.messages) == 2


async def test_run_mailer_survives_a_broken_database(tmp_path, mail_sink):
    from models.db import make_engine

    settings = Settings(_env_file=None, smtp_host=mail_sink.host, smtp_port=mail_sink.port)
    unmigrated = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no outbox table: every run fails
    stop = asyncio.Event()
    task = asyncio.create_task(run_mailer(unmigrated, settings, stop, interval=0.02))
    await asyncio.sleep(0.2)
    assert not task.done()  # still looping, backing off
    stop.set()
    async with asyncio.timeout(5):
        await task
    unmigrated.dispose()
