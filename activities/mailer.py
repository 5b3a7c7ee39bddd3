"""The mailer: a loop beside the Temporal worker that delivers the e-mail outbox over SMTP.

Not a Temporal activity: notifications are already durable as outbox rows (written by the `notify` activity in
its own transaction), so sending them needs no workflow, only a steady sender. Any number of worker processes
may run one: `models.outbox.deliver_pending` locks each message while it sends it.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.engine import Engine

from config import Settings
from models.outbox import DeliveryReport, deliver_pending

log = logging.getLogger("tradeflow.mailer")

INTERVAL_SECONDS = 5.0
# While the SMTP server fails, wait longer between runs (doubling up to this), so an outage neither floods the
# log nor spends every message's attempts within a minute.
MAX_BACKOFF_SECONDS = 300.0
BATCH = 50
MAX_ATTEMPTS = 5


def next_wait(report: DeliveryReport | None, current: float, interval: float, max_backoff: float,
              batch: int) -> float:
    """Seconds to wait before the next run: none while a full batch went out (a backlog is draining), the
    interval after a quiet or successful run, and doubling waits while every try fails (or the run crashed)."""
    if report is not None and report.sent and report.attempted >= batch:
        return 0.0
    if report is None or (report.attempted and not report.sent):
        return min(max(current * 2, interval), max_backoff)
    return interval


async def run_mailer(
    engine: Engine,
    settings: Settings,
    stop_event: asyncio.Event,
    interval: float = INTERVAL_SECONDS,
    *,
    batch: int = BATCH,
    max_attempts: int = MAX_ATTEMPTS,
    max_backoff: float = MAX_BACKOFF_SECONDS,
) -> None:
    """Deliver pending messages every `interval` seconds until `stop_event` is set.

    Each run happens on a thread (smtplib and the database calls block); a stop waits for the message being sent
    at most (deliver_pending checks the event between messages)."""
    log.info("delivering the outbox to %s:%d every %.0f s", settings.smtp_host, settings.smtp_port, interval)
    wait = interval
    failing = False
    while not stop_event.is_set():
        report: DeliveryReport | None
        try:
            report = await asyncio.to_thread(
                deliver_pending,
                engine,
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_sender,
                batch,
                max_attempts,
                should_stop=stop_event.is_set,
            )
        except Exception as exc:
            # The database went away, say (or is not migrated yet). The loop lives on and retries after a
            # back-off; one readable line per failed run, the traceback only when debugging.
            first_line = (str(exc).splitlines() or [""])[0]
            log.error("a delivery run failed: %s: %s", type(exc).__name__, first_line)
            log.debug("the failed run", exc_info=True)
            report = None
        if report is not None and report.attempted:
            level = logging.WARNING if report.failed or (report.retried and not failing) else logging.INFO
            log.log(level, "sent %d, retry later %d, failed for good %d",
                    report.sent, report.retried, report.failed)
        failing = report is None or bool(report.attempted and not report.sent)
        wait = next_wait(report, wait, interval, max_backoff, batch)
        if wait:
            try:
                await asyncio.wait_for(stop_event.wait(), timeout=wait)
            except TimeoutError:
                pass
    log.info("stopped")
