"""Delivering the notification outbox over SMTP.

Activities write `OutboxMessage` rows in the same transaction as what caused them (`ApprovalActivities.notify`);
`deliver_pending` sends them. What it promises:

- **A committed "sent" is never sent again.** Each message is sent inside its own transaction, which marks it sent
  and commits right after the SMTP server accepted it. Only a crash in that gap (the server has the mail, the
  commit did not happen) sends it once more on the next run: at least once, never silently lost. Such a resend
  carries the same Message-ID and Date (both derived from the row), so mail clients and people recognise it.
- **Two senders never send one message twice.** The transaction holds the message's row lock while it sends:
  on PostgreSQL `SELECT ... FOR UPDATE SKIP LOCKED` (a second sender skips the locked row and takes the next);
  on SQLite every transaction begins IMMEDIATE (models/db.py), so senders simply take turns.
- **Bounded retries.** Every failed try counts an attempt and keeps the error; at `max_attempts` the message is
  failed for good. A permanent SMTP refusal (5xx for the recipient or the content) or a message that cannot be
  built at all fails at once. A message is tried at most once per run, so a run always ends.

The SMTP connection is opened before a message's transaction begins, so waiting on a slow or dead server never
holds a database lock; inside the transaction only the SMTP exchange itself runs, bounded by `timeout`.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from sqlalchemy import Select, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.approvals import OutboxMessage, OutboxStatus
from models.common import utcnow
from models.db import insert_rows_if_absent, is_postgres, transaction
from models.users import Group, User, UserGroup

log = logging.getLogger("tradeflow.outbox")

SMTP_TIMEOUT_SECONDS = 10.0
ERROR_LENGTH = 500  # OutboxMessage.last_error
MESSAGE_ID_FALLBACK_DOMAIN = "tradeflow.invalid"


@dataclass(frozen=True)
class DeliveryReport:
    """What one run did: messages sent, failed for good, and failed this time but to be tried again."""

    sent: int = 0
    failed: int = 0
    retried: int = 0

    @property
    def attempted(self) -> int:
        return self.sent + self.failed + self.retried


# ------------------------------------------------------------------------------------------- queueing


def queue_message(session: Session, *, message_key: str, recipient: str, subject: str, body: str,
                  link: str = "") -> bool:
    """Add one message in the caller's transaction (never commit); False when its key is already queued, so a
    retried activity adds nothing. One INSERT ... ON CONFLICT DO NOTHING: an order's notices queue several
    messages per activity, and a read before every write (and an ORM flush) was a tenth of its statements."""
    return queue_messages(session, [OutgoingMessage(message_key, recipient, subject, body, link)]) == 1


@dataclass(frozen=True)
class OutgoingMessage:
    message_key: str
    recipient: str
    subject: str
    body: str
    link: str = ""


def queue_messages(session: Session, messages: Sequence[OutgoingMessage]) -> int:
    """Add several messages in one statement (INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING RETURNING id):
    the customer's and the rep's copy of a notice, a group's members. Returns how many were new; a key already
    queued is skipped, as queue_message skips it."""
    now = utcnow()
    return len(insert_rows_if_absent(session, OutboxMessage.__table__, [
        {"message_key": m.message_key, "recipient": m.recipient, "subject": m.subject, "body": m.body,
         "link": m.link, "status": OutboxStatus.pending, "attempts": 0, "last_error": "", "created_at": now}
        for m in messages
    ], "message_key"))


def queue_for_groups(session: Session, *, message_key: str, groups: Sequence[str], subject: str, body: str,
                     link: str = "") -> int:
    """One message per active member of the groups (key `<message_key>:<username>`, as ApprovalActivities.notify
    keys its mails), so a person in two of the groups gets one mail; returns how many were new. The members are
    read when the message is queued: whoever is in the group then is who has to act."""
    members = session.execute(
        select(User.username, User.email)
        .join(UserGroup, UserGroup.user_id == User.id)
        .join(Group, Group.id == UserGroup.group_id)
        .where(Group.name.in_(list(groups)), User.active.is_(True))
        .distinct()
        .order_by(User.username)
    ).all()
    return queue_messages(session, [OutgoingMessage(f"{message_key}:{username}", email, subject, body, link)
                                              for username, email in members])


# ------------------------------------------------------------------------------------------- the message


def _address(text: str) -> str:
    """The bare address of "Name <a@b>" or "a@b"; "" when there is none."""
    address = parseaddr(text)[1]
    return address if "@" in address and not any(c.isspace() for c in address) else ""


def _one_line(text: str) -> str:
    # A subject is built from a request's title: a line break in it must not become a header break.
    return " ".join(text.split())


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def message_id(message_key: str, sender: str) -> str:
    """The Message-ID of an outbox message: a function of its key alone, so a resend after a crash carries the
    same id and is recognisable as the same mail."""
    domain = _address(sender).rpartition("@")[2] or MESSAGE_ID_FALLBACK_DOMAIN
    digest = hashlib.sha256(message_key.encode()).hexdigest()[:40]
    return f"<outbox.{digest}@{domain}>"


def build_message(row: OutboxMessage, sender: str) -> EmailMessage:
    """The e-mail of one outbox row; ValueError when it cannot be sent as is (no valid recipient or sender)."""
    recipient = _address(row.recipient)
    if not recipient:
        raise ValueError(f"no valid recipient address in {row.recipient!r}")
    if not _address(sender):
        raise ValueError(f"no valid sender address in {sender!r} (SMTP_SENDER)")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = _one_line(row.subject)
    message["Date"] = format_datetime(_aware(row.created_at))
    message["Message-ID"] = message_id(row.message_key, sender)
    # RFC 3834: machine-made mail. Out-of-office responders do not answer it, which matters here: notifications
    # go precisely to people who are away.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Tradeflow-Message-Key"] = _one_line(row.message_key)
    body = row.body if row.body.endswith("\n") else row.body + "\n"
    if row.link and row.link not in body:
        body += f"\nOpen the task: {row.link}\n"
    message.set_content(body)
    return message


# ------------------------------------------------------------------------------------------- SMTP


class _Smtp:
    """One SMTP connection for a run, opened when first needed and reopened after it broke."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._connection: smtplib.SMTP | None = None

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def connect(self) -> None:
        if self._connection is not None:
            return
        # local_hostname: smtplib would otherwise ask DNS for our FQDN (socket.getfqdn), which can hang for seconds.
        connection = smtplib.SMTP(self.host, self.port, local_hostname=socket.gethostname(), timeout=self.timeout)
        try:
            connection.ehlo_or_helo_if_needed()
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        assert self._connection is not None
        self._connection.send_message(message, from_addr=sender, to_addrs=[recipient])

    def drop(self) -> None:
        """Forget a broken connection (the next message reconnects)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (OSError, smtplib.SMTPException):
                pass
            finally:
                self._connection.close()
                self._connection = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        parts = [f"{code} {_text(reply)}" for code, reply in exc.recipients.values()]
        return f"recipient refused: {'; '.join(parts)}"[:ERROR_LENGTH]
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {exc.smtp_code} {_text(exc.smtp_error)}"[:ERROR_LENGTH]
    return f"{type(exc).__name__}: {exc}"[:ERROR_LENGTH]


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _is_permanent(exc: BaseException) -> bool:
    """A refusal that no retry can change: 5xx for the recipient or for the content (SMTP's own rule: 4xx is
    transient, 5xx permanent). A 5xx for our sender address is a configuration error to fix, so it is retried."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPDataError):
        return exc.smtp_code >= 500
    return isinstance(exc, smtplib.SMTPNotSupportedError)  # e.g. a non-ASCII address and no SMTPUTF8


def _breaks_connection(exc: BaseException) -> bool:
    return isinstance(exc, (OSError, smtplib.SMTPServerDisconnected)) or not isinstance(exc, smtplib.SMTPException)


# ------------------------------------------------------------------------------------------- delivery


class _Tally:
    def __init__(self) -> None:
        self.sent = self.failed = self.retried = 0

    def report(self) -> DeliveryReport:
        return DeliveryReport(self.sent, self.failed, self.retried)


def _pending(session: Session, skip: Sequence[int], limit: int) -> Select:
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.pending)
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
        .limit(limit)
    )
    if skip:
        stmt = stmt.where(OutboxMessage.id.not_in(skip))
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return stmt


def _any_pending(engine: Engine, skip: Sequence[int]) -> bool:
    stmt = select(OutboxMessage.id).where(OutboxMessage.status == OutboxStatus.pending).limit(1)
    if skip:
        stmt = stmt.where(OutboxMessage.id.not_in(skip))
    with transaction(engine) as session:
        return session.scalars(stmt).first() is not None


def _record_failure(row: OutboxMessage, error: str, max_attempts: int, tally: _Tally, *, permanent: bool) -> None:
    row.attempts += 1
    row.last_error = error[:ERROR_LENGTH]
    if permanent or row.attempts >= max_attempts:
        row.status = OutboxStatus.failed
        tally.failed += 1
        log.warning("outbox message %s to %s failed for good after %d attempt(s): %s",
                    row.message_key, row.recipient, row.attempts, row.last_error)
    else:
        tally.retried += 1


def _deliver_one(smtp: _Smtp, row: OutboxMessage, sender: str, max_attempts: int, tally: _Tally) -> None:
    try:
        message = build_message(row, sender)
    except ValueError as exc:
        _record_failure(row, f"cannot build the message: {exc}", max_attempts, tally, permanent=True)
        return
    try:
        smtp.send(message, _address(sender), _address(row.recipient))
    except Exception as exc:  # anything at all: a message that always raises must not block the queue for ever
        if _breaks_connection(exc):
            smtp.drop()
        _record_failure(row, _describe(exc), max_attempts, tally, permanent=_is_permanent(exc))
        return
    row.status = OutboxStatus.sent
    row.sent_at = utcnow()
    row.attempts += 1
    row.last_error = ""
    tally.sent += 1


def _charge_unreachable(engine: Engine, tried: list[int], limit: int, error: str, max_attempts: int,
                        tally: _Tally) -> None:
    """The server cannot be reached: each message this run would have tried counts an attempt."""
    with transaction(engine) as session:
        for row in session.scalars(_pending(session, tried, limit)):
            tried.append(row.id)
            _record_failure(row, f"SMTP server unreachable: {error}", max_attempts, tally, permanent=False)
            session.add(row)


def deliver_pending(
    engine: Engine,
    smtp_host: str,
    smtp_port: int,
    sender: str,
    batch: int = 50,
    max_attempts: int = 5,
    *,
    timeout: float = SMTP_TIMEOUT_SECONDS,
    should_stop: Callable[[], bool] | None = None,
) -> DeliveryReport:
    """Send up to `batch` pending messages, oldest first, one transaction each (see the module docstring).

    `should_stop` is asked between messages (the mailer passes its stop event), so a shutdown waits for one
    message at most."""
    tally = _Tally()
    tried: list[int] = []
    smtp = _Smtp(smtp_host, smtp_port, timeout)
    try:
        while len(tried) < batch and not (should_stop is not None and should_stop()):
            if not smtp.connected:
                if not _any_pending(engine, tried):
                    break  # nothing to send: do not even connect
                try:
                    smtp.connect()
                except Exception as exc:
                    _charge_unreachable(engine, tried, batch - len(tried), _describe(exc), max_attempts, tally)
                    break
            with transaction(engine) as session:
                row = session.scalars(_pending(session, tried, 1)).first()
                if row is None:
                    break
                tried.append(row.id)
                _deliver_one(smtp, row, sender, max_attempts, tally)
                session.add(row)
    finally:
        smtp.close()
    return tally.report()
