"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 with a port the OS picks, keeping what it receives.

    with MailSink() as sink:
        deliver_pending(engine, sink.host, sink.port, "tradeflow@test.local")
        assert [m.subject for m in sink.messages] == [...]

`refuse` maps recipient addresses to an SMTP reply ("550 no such user", "451 try later"); `delay` slows every
DATA reply, so concurrent senders really overlap.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    peer: tuple

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return self.message.get_content()

    @property
    def message_key(self) -> str:
        # A long header is folded onto a continuation line; unfolding leaves the leading space.
        return str(self.message["X-Tradeflow-Message-Key"]).strip()


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink.refuse.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        with self.sink.lock:
            self.sink.messages.append(
                ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), parsed, tuple(session.peer))
            )
        return "250 Message accepted for delivery"


class _OsPortController(Controller):
    """aiosmtpd's Controller connects to `port` once to check the server is up; with port 0 (the OS picks) it
    must first learn which port it got."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class MailSink:
    host = "127.0.0.1"

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.refuse: dict[str, str] = {}
        self.messages: list[ReceivedMail] = []
        self.lock = threading.Lock()
        self._controller = _OsPortController(_Handler(self), hostname=self.host, port=0)

    @property
    def port(self) -> int:
        return self._controller.port

    def __enter__(self) -> MailSink:
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[ReceivedMail]:
        return [m for m in self.messages if address in m.rcpt_tos]


def closed_port() -> int:
    """A port nothing listens on (the OS just handed it out and it was closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mail_sink():
    with MailSink() as sink:
        yield sink
