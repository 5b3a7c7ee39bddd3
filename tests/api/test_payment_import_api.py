"""Bank statements over HTTP and on the payment page (POST /api/v1/imports/payments, POST /payments/import), and the
shipment-step and engine-refusal robustness of api/quotes.py, against a real Temporal dev server and worker:

- without the engine: the payments are recorded and the answer lists the orders not told; a re-import skips them;
  a bad file is a 422 with every line's reason and records nothing; only finance imports; the page needs its CSRF
  token and shows the result line by line;
- live: an imported payment releases a credit hold, a statement uploaded on the page completes the order;
- a step repeated after the Shipment workflow completed answers with the shipment as it stands (200), not 409;
- a workflow whose last task failed ("Workflow Task in failed state") is a 503 to try again, never a 500.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import date
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlmodel import Session
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from api import quotes
from api.inbox import Refusal
from models.ledger import JournalEntry
from models.records import AuditEvent
from models.sales import CustomerInvoice, CustomerPayment, SalesOrder, Shipment
from tests.api.test_quotes_api import eventually, live, offline, order_row, quote_rows  # noqa: F401  (fixtures)
from tests.sales_world import CABLE, TIGHT_CUSTOMER
from workflows.contracts import ShipmentResult, shipment_id

TODAY = date.today().isoformat()
HEADER = "reference,customer_code,amount,payment_date,invoice_number\n"
URL = "/api/v1/imports/payments"


def csv_file(text: str, name: str = "statement.csv") -> dict:
    return {"file": (name, text.encode(), "text/csv")}


def count(engine, model) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


# ------------------------------------------------------------------------------------------- without the engine


async def test_statement_without_the_engine_is_recorded_and_names_the_orders_not_told(offline):
    [held] = quote_rows(offline.engine, ("sam.sales", TIGHT_CUSTOMER, [(CABLE, "90")], None, "credit_hold"))
    fiona = offline.api("fiona.finance")
    good = HEADER + f"BANK-A1,{TIGHT_CUSTOMER},500.00,{TODAY},\n"

    answer = await fiona.post(URL, files=csv_file(good))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["kind"], body["rows"], body["created"], body["skipped"], D(body["amount_created"])) == (
        "payments", 1, 1, 0, D("500.00"))
    [line] = body["lines"]
    assert (line["line"], line["reference"], line["customer_code"], D(line["amount"]), line["payment_date"],
            line["status"], line["invoice_number"], line["orders"]) == (
        2, "BANK-A1", TIGHT_CUSTOMER, D("500.00"), TODAY, "created", None, [held])
    # Temporal (port 9) cannot be reached: the payment stays recorded, the order on hold is listed as not told.
    assert body["notified"] == []
    [problem] = body["not_notified"]
    assert problem["quote_number"] == held and "not reachable" in problem["reason"], problem
    with Session(offline.engine) as s:
        payment = s.scalars(select(CustomerPayment)).one()
        assert (payment.reference, payment.amount, payment.recorded_by) == ("BANK-A1", D("500.00"), "fiona.finance")

    # The same file again: skipped, nothing posted twice, and the order is named again to be told.
    entries = count(offline.engine, JournalEntry)
    again = (await fiona.post(URL, files=csv_file(good))).json()
    assert (again["created"], again["skipped"], [x["status"] for x in again["lines"]]) == (0, 1, ["skipped"])
    assert [p["quote_number"] for p in again["not_notified"]] == [held]
    assert count(offline.engine, JournalEntry) == entries and count(offline.engine, CustomerPayment) == 1

    # A bad file: 422 with every bad line, the good line of it not recorded, the refusal audited.
    bad = HEADER + f"BANK-A2,{TIGHT_CUSTOMER},12.00,{TODAY},\nBANK-A1,{TIGHT_CUSTOMER},499.00,{TODAY},\n" \
                   f"BANK-A3,C-NOPE,1.00,{TODAY},\n"
    refused = await fiona.post(URL, files=csv_file(bad))
    assert refused.status_code == 422, refused.text
    assert [(e["line"], e["column"]) for e in refused.json()["errors"]] == [(3, "amount"), (4, "customer_code")]
    assert count(offline.engine, CustomerPayment) == 1
    with Session(offline.engine) as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.entity_kind == "payments")
                            .order_by(AuditEvent.id)).all()
    assert actions == ["import", "import", "import_failed"]

    # Only finance (and admin) import payments; the generic importer does not take "payments" as a kind of its own.
    assert (await offline.api("sam.sales").post(URL, files=csv_file(good))).status_code == 403
    assert (await offline.api("carla.credit").post(URL, files=csv_file(good))).status_code == 403


async def test_the_payment_page_uploads_a_statement_with_csrf_and_shows_each_line(offline):
    [held] = quote_rows(offline.engine, ("sam.sales", TIGHT_CUSTOMER, [(CABLE, "90")], None, "credit_hold"))
    fiona = await offline.browser("fiona.finance")
    page = await fiona.get("/payments/new")
    assert page.status_code == 200
    form = page.text.split('id="payment-import"')[1]
    assert 'action="/payments/import"' in form and 'enctype="multipart/form-data"' in form
    token = csrf_of(form)

    statement = HEADER + f"BANK-P1,{TIGHT_CUSTOMER},300.00,{TODAY},\nBANK-P2,{TIGHT_CUSTOMER},200.00,{TODAY},\n"
    forged = await fiona.post("/payments/import", files=csv_file(statement))
    assert forged.status_code == 403 and count(offline.engine, CustomerPayment) == 0

    bad = HEADER + f"BANK-P1,{TIGHT_CUSTOMER},300.00,31.12.2025,\n"
    shown = await fiona.post("/payments/import", data={"csrf_token": token}, files=csv_file(bad, "dec.csv"))
    assert shown.status_code == 422
    errors = shown.text.split('id="import-errors"')[1].split("</table>")[0]
    assert 'data-line="2"' in errors and "payment_date" in errors and "YYYY-MM-DD" in errors
    assert "Nothing was recorded" in shown.text and count(offline.engine, CustomerPayment) == 0

    done = await fiona.post("/payments/import", data={"csrf_token": token}, files=csv_file(statement, "march.csv"))
    assert done.status_code == 200, done.text
    summary = done.text.split('id="import-summary"')[1].split("</div>")[0]
    assert "march.csv: 2 payments recorded (500.00)" in summary
    table = done.text.split('id="import-lines"')[1].split("</table>")[0]
    assert table.count('data-status="created"') == 2 and "BANK-P1" in table and "BANK-P2" in table
    assert f'href="/orders/{held}"' in table
    assert f'data-not-told="{held}"' in done.text  # no engine: the page says which order was not told
    assert count(offline.engine, CustomerPayment) == 2

    again = await fiona.post("/payments/import", data={"csrf_token": token}, files=csv_file(statement, "march.csv"))
    assert again.status_code == 200
    assert again.text.split('id="import-lines"')[1].count('data-status="skipped"') == 2
    assert "2 already recorded before and skipped" in again.text

    sam = await offline.browser("sam.sales")
    refused = await sam.post("/payments/import", data={"csrf_token": csrf_of((await sam.get("/orders")).text)},
                             files=csv_file(statement))
    assert refused.status_code == 403 and count(offline.engine, CustomerPayment) == 2


# ------------------------------------------------------------------------------------------- live


async def test_imported_payments_release_a_credit_hold_and_complete_the_order(live):
    sam, walter, fiona = live.api("sam.sales"), live.api("walter.warehouse"), live.api("fiona.finance")
    # 90 × 10.00 + 19 % = 1,071.00 against C-3000's limit of 1,000.00: the order goes on credit hold.
    created = await sam.post("/api/v1/quotes", json={"customer_code": TIGHT_CUSTOMER,
                                                     "lines": [{"sku": CABLE, "quantity": "90"}]})
    assert created.status_code == 201, created.text
    number = created.json()["number"]
    assert (await sam.post(f"/api/v1/quotes/{number}/submit")).status_code == 200
    await eventually(lambda: order_row(live.engine, number).status == "sent", "quote sent")
    accepted = await sam.post(f"/api/v1/quotes/{number}/accept")
    assert accepted.json() == {"number": number, "status": "credit_hold"}, accepted.text

    # 500.00 on account brings the exposure to 571.00: the imported line tells the process, which releases the hold.
    imported = await fiona.post(URL, files=csv_file(HEADER + f"BANK-L1,{TIGHT_CUSTOMER},500.00,{TODAY},\n"))
    assert imported.status_code == 200, imported.text
    assert imported.json()["lines"][0]["orders"] == [number]
    assert imported.json()["notified"] == [number] and imported.json()["not_notified"] == []
    await eventually(lambda: order_row(live.engine, number).status == "confirmed", "hold released")

    def shipment() -> str | None:
        with Session(live.engine) as s:
            return s.scalar(select(Shipment.number).join(SalesOrder, SalesOrder.id == Shipment.order_id)
                            .where(SalesOrder.number == number))

    shp = await eventually(shipment, "a shipment")
    steps = f"/api/v1/shipments/{shp}/steps"
    assert (await walter.post(steps, json={"step": "picked", "scanned": [CABLE]})).json()["status"] == "picked"
    assert (await walter.post(steps, json={"step": "packed"})).json()["status"] == "packed"
    shipped = await walter.post(steps, json={"step": "shipped", "tracking_ref": "TRK-9"})
    assert shipped.status_code == 200 and shipped.json()["status"] == "shipped", shipped.text

    # The Shipment workflow ends once shipped. A step repeated after that (a second click, a scanner's retry, a
    # client whose answer was lost) answers with the shipment as it stands, as the running workflow would.
    result = await live.app.state.temporal_client.get_workflow_handle(
        shipment_id(number, 1), result_type=ShipmentResult).result()
    assert result.status == "shipped"
    for repeat in ({"step": "shipped", "tracking_ref": "TRK-9"}, {"step": "picked", "scanned": [CABLE]}):
        again = await walter.post(steps, json=repeat)
        assert again.status_code == 200, again.text
        assert (again.json()["shipment_number"], again.json()["quote_number"], again.json()["status"]) == (
            shp, number, "shipped")
        assert [(x["sku"], D(str(x["quantity"]))) for x in again.json()["lines"]] == [(CABLE, D("90"))]
    # Still refused for what it is: a scan that does not match the shipment.
    stray = await walter.post(steps, json={"step": "picked", "scanned": ["NOPE-1"]})
    assert stray.status_code == 422

    def invoice() -> tuple[str, D] | None:
        with Session(live.engine) as s:
            row = s.execute(select(CustomerInvoice.number, CustomerInvoice.amount_residual)
                            .join(SalesOrder, SalesOrder.id == CustomerInvoice.order_id)
                            .where(SalesOrder.number == number)).first()
            return tuple(row) if row else None

    invoice_number, residual = await eventually(invoice, "the invoice")
    assert residual == D("1071.00")

    # Finance uploads the statement that pays the invoice on the payment page; the order is done.
    page = await live.browser("fiona.finance")
    token = csrf_of((await page.get("/payments/new")).text)
    statement = HEADER + f"BANK-L1,{TIGHT_CUSTOMER},500.00,{TODAY},\nBANK-L2,{TIGHT_CUSTOMER},1071.00,{TODAY}," \
                         f"{invoice_number}\n"
    shown = await page.post("/payments/import", data={"csrf_token": token}, files=csv_file(statement))
    assert shown.status_code == 200, shown.text
    table = shown.text.split('id="import-lines"')[1].split("</table>")[0]
    rows = {line: html for line, html in re.findall(r'<tr data-line="(\d+)"(.*?)</tr>', table)}
    assert 'data-status="skipped"' in rows["2"] and 'data-status="created"' in rows["3"]
    assert invoice_number in rows["3"] and f'href="/orders/{number}"' in rows["3"] and "told" in rows["3"]
    assert "data-not-told" not in shown.text
    await eventually(lambda: order_row(live.engine, number).status == "done", "order done")
    with Session(live.engine) as s:
        assert s.scalar(select(SalesOrder.amount_paid).where(SalesOrder.number == number)) == D("1071.00")


# ------------------------------------------------------------------------------------------- engine not ready


@workflow.defn(name="TestTaskFailsAfterSignal", sandboxed=False)
class TaskFailsAfterSignal:
    """Runs until `crash`, then every workflow task fails: what a workflow looks like to the server while a task of
    it keeps failing (a bug, or a worker that dies mid-task) until a worker runs it through."""

    def __init__(self) -> None:
        self._crashed = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._crashed)
        raise RuntimeError("a workflow task failure, retried by the server (not a workflow failure)")

    @workflow.signal
    def crash(self) -> None:
        self._crashed = True

    @workflow.update
    async def step(self, value: str) -> str:
        return value


async def test_a_workflow_whose_task_failed_is_a_503_to_try_again_never_a_500(temporal_env, monkeypatch):
    client = temporal_env.client
    task_queue = f"test-{uuid.uuid4()}"
    workflow_id = f"broken-{uuid.uuid4()}"
    # The dev server holds an Update for such a workflow until a task succeeds: the API's own deadline answers.
    monkeypatch.setattr(quotes, "UPDATE_TIMEOUT_SECONDS", 2.0)
    async with Worker(client, task_queue=task_queue, workflows=[TaskFailsAfterSignal],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        handle = await client.start_workflow(TaskFailsAfterSignal.run, id=workflow_id, task_queue=task_queue)
        await handle.execute_update(TaskFailsAfterSignal.step, "before")  # its first task has completed
        await handle.signal(TaskFailsAfterSignal.crash)

        async def failed_once() -> bool:
            described = await handle.describe()
            return (described.raw_description.HasField("pending_workflow_task")
                    and described.raw_description.pending_workflow_task.attempt >= 4)

        for _ in range(300):
            if await failed_once():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the workflow task never failed")

        # What the server answers a query now ("... Workflow Task in failed state") is recognised as not ready.
        with pytest.raises(RPCError) as query_error:
            await handle.query("anything")
        assert quotes.workflow_not_ready(query_error.value), query_error.value.message
        refusal = quotes.engine_refusal(query_error.value, "the test process")
        assert (refusal.status_code, refusal.reason) == (503, "WorkflowNotReady") and "try again" in refusal.message

        with pytest.raises(Refusal) as refused:
            await quotes.execute_update(client, workflow_id, "step", "x", str, "the test process")
        assert refused.value.status_code == 503 and "try again" in refused.value.message.lower(), refused.value.message

        # The order page's timeline query meets the same state: the page shows itself without it.
        async def source():
            return client

        view, note = await quotes.order_view(source, workflow_id)
        assert view is None and note.startswith("timeline unavailable")
        await handle.terminate("test over")
    with pytest.raises(WorkflowFailureError):
        await handle.result()
