"""`antaeus.client` against a real `antaeus serve`, on SQLite and on PostgreSQL."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import pytest

from antaeus.client import (
    ApiError,
    AsyncClient,
    AuthenticationError,
    BulkResult,
    Client,
    ClientError,
    ConflictError,
    CreatedWebhook,
    Customer,
    Event,
    Invoice,
    Money,
    NotFoundError,
    Plan,
    Run,
    Subscription,
    UnprocessableError,
    verify_webhook,
)
from tests.client.conftest import Served

T = TypeVar("T")
PAST = datetime(2026, 1, 1, tzinfo=UTC)
FUTURE = datetime(2099, 1, 1, tzinfo=UTC)


def eventually(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def settled(api: Client, invoice_id: int) -> Invoice:
    """The invoice once the embedded worker has charged it (or failed to)."""

    def done() -> Invoice | None:
        found = api.invoices.get(invoice_id)
        return None if found.status in ("PENDING", "PROCESSING") else found

    return eventually(done, f"invoice {invoice_id} charged")


def test_customers_create_get_update_and_list_every_page(api: Client) -> None:
    made = [api.customers.create(currency="EUR", timezone="Europe/Copenhagen") for _ in range(5)]
    assert all(isinstance(c, Customer) for c in made)
    assert made[0].currency == "EUR"
    assert made[0].timezone == "Europe/Copenhagen"
    assert api.customers.get(made[0].id) == made[0]
    listed = [c.id for c in api.customers.list(page_size=2)]  # three pages, by Link
    assert [c.id for c in made] == [i for i in listed if i in {c.id for c in made}]
    assert listed == sorted(set(listed))
    changed = api.customers.update(
        made[1].id, timezone="Europe/Paris", provider_customer_id="cus_1"
    )
    assert (changed.timezone, changed.provider_customer_id) == ("Europe/Paris", "cus_1")
    cleared = api.customers.update(made[1].id, provider_customer_id=None)
    assert (cleared.timezone, cleared.provider_customer_id) == ("Europe/Paris", None)


def test_a_list_is_lazy(api: Client, served: Served) -> None:
    pages = api.customers.list(page_size=1)
    # nothing is fetched until it is iterated: a list of a refused token fails only then
    with Client(base_url=served.base_url, token="ant_" + "x" * 43) as stranger:
        listing = stranger.customers.list()
        with pytest.raises(AuthenticationError) as refused:
            next(iter(listing))
    assert refused.value.status == 401
    assert refused.value.code == "unauthorized"
    api.customers.create(currency="EUR")
    assert isinstance(next(iter(pages)), Customer)


def test_invoices_exact_amounts_and_aware_times(api: Client) -> None:
    customer = api.customers.create(currency="KWD")
    invoice = api.invoices.create(
        customer_id=customer.id,
        amount=Decimal("12.345"),
        currency="KWD",
        due_at=datetime(2099, 1, 1, 1, tzinfo=UTC) + timedelta(hours=2),
    )
    assert invoice.amount == Money(Decimal("12.345"), "KWD")
    assert invoice.due_at == datetime(2099, 1, 1, 3, tzinfo=UTC)
    assert invoice.due_at.tzinfo is not None
    assert invoice.status == "PENDING"
    [line] = invoice.lines  # an invoice made by hand has its one manual line
    assert (line.kind, line.amount) == ("manual", Money(Decimal("12.345"), "KWD"))
    same = api.invoices.get(invoice.id)
    assert same == invoice
    mine = list(api.invoices.list(customer_id=customer.id))
    assert mine == [invoice]
    with pytest.raises(ValueError, match="naive"):
        api.invoices.create(
            customer_id=customer.id,
            amount=Decimal("1.000"),
            currency="KWD",
            due_at=datetime(2099, 1, 1),
        )


def test_errors_name_status_code_and_field(api: Client) -> None:
    with pytest.raises(NotFoundError) as missing:
        api.customers.get(10**15)
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    customer = api.customers.create(currency="EUR")
    with pytest.raises(UnprocessableError) as refused:
        api.invoices.create(customer_id=customer.id, amount=Decimal("1.234"), currency="EUR")
    error = refused.value
    assert isinstance(error, ClientError)
    assert isinstance(error, ApiError)
    assert (error.status, error.code, error.field) == (422, "validation_error", "amount.value")
    assert "amount" in error.message
    with pytest.raises(UnprocessableError) as mismatch:
        api.invoices.create(customer_id=customer.id, amount=Decimal("1"), currency="DKK")
    assert (mismatch.value.code, mismatch.value.field) == ("currency_mismatch", "amount.currency")


def test_an_idempotency_key_given_creates_once(api: Client) -> None:
    before = {c.id for c in api.customers.list()}
    first = api.customers.create(currency="SEK", idempotency_key="client-create-1")
    again = api.customers.create(currency="SEK", idempotency_key="client-create-1")
    assert again == first
    assert {c.id for c in api.customers.list()} - before == {first.id}
    with pytest.raises(UnprocessableError) as reused:
        api.customers.create(currency="NOK", idempotency_key="client-create-1")
    assert reused.value.code == "idempotency_key_reused"


def test_billing_actions_runs_attempts_and_events(api: Client, served: Served) -> None:
    customer = api.customers.create(currency="EUR")
    # its account at the embedded simulator is in another currency: every charge FAILS
    served.cli.ok(
        "provider", "account", "--customer", str(customer.id), "--currency", "DKK", "--balance", "0"
    )
    invoices = [
        api.invoices.create(
            customer_id=customer.id, amount=Decimal("89.52"), currency="EUR", due_at=PAST
        )
        for _ in range(4)
    ]
    run = api.billing.trigger()
    assert isinstance(run, Run)
    assert run.trigger == "api"
    failed = [settled(api, i.id) for i in invoices]
    assert {(i.status, i.last_failure) for i in failed} == {("FAILED", "currency_mismatch")}
    assert api.runs.get(run.id).id == run.id
    assert run.id in {r.id for r in api.runs.list()}
    attempts = api.invoices.attempts(invoices[0].id)
    assert [a.number for a in attempts] == [1]
    assert attempts[0].outcome is not None

    retried = api.invoices.retry(invoices[0].id, note="fixed the account")
    assert retried.status == "PENDING"
    [action] = list(api.invoices.actions(invoices[0].id))
    assert (action.action, action.note, action.actor) == ("retried", "fixed the account", "client")
    voided = api.invoices.void(invoices[1].id, note="duplicate")
    assert voided.status == "VOID"
    with pytest.raises(ConflictError) as refused:
        api.invoices.void(invoices[1].id)
    assert (refused.value.code, refused.value.body["status"]) == ("invalid_state", "VOID")

    matched = api.invoices.retry_matching(
        status="FAILED", last_failure="currency_mismatch", customer_id=customer.id
    )
    assert matched == BulkResult(matched=2, acted=2, skipped=0)
    for invoice in invoices[2:]:
        settled(api, invoice.id)
    gone = api.invoices.void_matching(status="FAILED", customer_id=customer.id)
    assert gone.acted >= 2

    # an event becomes visible to the events API a moment after its commit (PostgreSQL)
    events = eventually(
        lambda: (
            [e for e in api.events.list(invoice_id=invoices[1].id)]
            if any(e.type == "invoice.voided" for e in api.events.list(invoice_id=invoices[1].id))
            else None
        ),
        "the invoice.voided event listed",
    )
    voided_event = next(e for e in events if e.type == "invoice.voided")
    assert isinstance(voided_event, Event)
    assert voided_event.invoice is not None
    assert voided_event.invoice.status == "VOID"
    assert voided_event.invoice.amount == Money(Decimal("89.52"), "EUR")
    assert api.events.get(voided_event.id) == voided_event
    later = list(api.events.list(after=voided_event.id, page_size=1))
    assert all(int(e.id[4:]) > int(voided_event.id[4:]) for e in later)

    again = api.billing.retry_failed()
    assert again.trigger in ("api", "retry")
    assert isinstance(again.id, int)
    status = api.billing.status()
    assert status.charging in ("running", "paused")
    assert status.token_name == "client"


def test_resolve_is_there_and_refuses_what_is_not_in_review(api: Client) -> None:
    customer = api.customers.create(currency="EUR")
    invoice = api.invoices.create(
        customer_id=customer.id, amount=Decimal("1.00"), currency="EUR", due_at=FUTURE
    )
    with pytest.raises(ConflictError) as refused:
        api.invoices.resolve(invoice.id, charged=True, charge_id="ch_1")
    assert refused.value.body["status"] == "PENDING"


def test_plans_and_subscriptions(api: Client) -> None:
    customer = api.customers.create(currency="EUR", timezone="Europe/Copenhagen")
    plan = api.plans.create(
        code=f"pro-{time.monotonic_ns()}",
        name="Pro",
        amount=Decimal("30.00"),
        currency="EUR",
        interval="month",
        trial_days=14,
    )
    assert isinstance(plan, Plan)
    assert plan.amount == Money(Decimal("30.00"), "EUR")
    assert api.plans.get(plan.id) == plan
    assert plan.id in {p.id for p in api.plans.list(archived=False)}
    start = datetime.now(UTC).date() + timedelta(days=100)
    sub = api.subscriptions.create(
        customer_id=customer.id, plan_id=plan.id, quantity=2, start_date=start
    )
    assert isinstance(sub, Subscription)
    assert (sub.status, sub.start_date, sub.trial_end_date) == (
        "scheduled",
        start,
        start + timedelta(days=14),
    )
    assert sub.created_at.tzinfo is not None
    assert api.subscriptions.get(sub.id) == sub
    assert [s.id for s in api.subscriptions.list(customer_id=customer.id)] == [sub.id]
    assert sub.id in {s.id for s in api.subscriptions.list(status="scheduled", plan_id=plan.id)}
    changed = api.subscriptions.change(sub.id, quantity=3, effective="now")
    assert changed.quantity == 3
    canceled = api.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled"  # a scheduled subscription is canceled at once
    with pytest.raises(ConflictError):
        api.subscriptions.reactivate(sub.id)

    other = api.subscriptions.create(customer_id=customer.id, plan_id=plan.id)
    pending = api.subscriptions.cancel(other.id, at="period_end")
    assert pending.cancel_at is not None
    assert api.subscriptions.reactivate(other.id).cancel_at is None
    archived = api.plans.archive(plan.id)
    assert archived.archived_at is not None
    assert plan.id in {p.id for p in api.plans.list(archived=True)}


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]] = []  # noqa: RUF012 (one list, per server class)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.got.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    handler = type("Receiver", (_Receiver,), {"got": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", handler.got
    finally:
        server.shutdown()
        server.server_close()


def test_webhooks_and_a_delivery_verified(
    api: Client, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, got = receiver
    made = api.webhooks.create(url=url, events=["invoice.voided"])
    assert isinstance(made, CreatedWebhook)
    assert made.secret.startswith("whsec_")
    assert api.webhooks.get(made.id) == made.webhook
    assert made.id in {w.id for w in api.webhooks.list()}
    assert api.webhooks.enable(made.id).status == "enabled"

    customer = api.customers.create(currency="EUR")
    invoice = api.invoices.create(
        customer_id=customer.id, amount=Decimal("10.10"), currency="EUR", due_at=FUTURE
    )
    api.invoices.void(invoice.id, note="for the webhook")
    headers, body = eventually(lambda: got[0] if got else None, "a delivery")
    event = verify_webhook(made.secret, headers, body)
    assert event.type == "invoice.voided"
    assert event.invoice is not None
    assert event.invoice.id == invoice.id
    assert event.invoice.amount.value == Decimal("10.10")
    tries = eventually(lambda: list(api.webhooks.deliveries(made.id)) or None, "a try")
    assert tries[0].delivered
    assert tries[0].event_id == event.id

    api.webhooks.delete(made.id)
    with pytest.raises(NotFoundError):
        api.webhooks.get(made.id)


def test_health_and_metrics(api: Client) -> None:
    assert api.health() is True
    assert "antaeus_" in api.metrics()


async def test_the_async_client_has_the_same_surface(aapi: AsyncClient) -> None:
    customer = await aapi.customers.create(currency="EUR", idempotency_key="async-1")
    assert await aapi.customers.create(currency="EUR", idempotency_key="async-1") == customer
    invoices = [
        await aapi.invoices.create(
            customer_id=customer.id, amount=Decimal("5.00"), currency="EUR", due_at=FUTURE
        )
        for _ in range(3)
    ]
    seen = [i async for i in aapi.invoices.list(customer_id=customer.id, page_size=1)]
    assert seen == invoices
    voided = await aapi.invoices.void(invoices[0].id)
    assert voided.status == "VOID"
    result = await aapi.invoices.void_matching(customer_id=customer.id, status="PENDING")
    assert (result.matched, result.acted) == (2, 2)
    assert [a.action async for a in aapi.invoices.actions(invoices[1].id)] == ["voided"]
    with pytest.raises(NotFoundError):
        await aapi.invoices.get(10**15)
    assert await aapi.health()
