# Made by `python -m antaeus.client._unasync` from _async_client.py: do not edit.
"""`Client`: the API with plain calls and `for` (`AsyncClient` made synchronous)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar

import httpx

from antaeus.client._core import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    USER_AGENT,
    NotGiven,
    Request,
    build,
    error,
    key_for,
    loads,
    next_path,
    query,
    retryable,
    wait_before,
)
from antaeus.client._errors import ApiConnectionError, ApiTimeoutError
from antaeus.client._models import (
    JSON,
    Attempt,
    BillingAnchor,
    BulkResult,
    CreatedWebhook,
    CreditEntry,
    Customer,
    DeliveryTry,
    Effective,
    Event,
    FailureReason,
    Interval,
    Invoice,
    InvoiceAction,
    InvoiceStatus,
    Plan,
    Run,
    RunStatus,
    Status,
    Subscription,
    SubscriptionStatus,
    UpcomingInvoice,
    Webhook,
)

T = TypeVar("T")

NOT_GIVEN = NotGiven()


class Transport:
    """Sends requests with retries: connection errors, 429, 5xx (and a 409
    `idempotency_conflict`), with backoff and jitter, honouring `Retry-After`.

    Every request it retries is safe to repeat: reads, and writes that carry an
    `Idempotency-Key` (the server answers a repeat with the first answer).
    """

    def __init__(
        self,
        http: httpx.Client,
        max_retries: int,
        backoff: float,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.http = http
        self.max_retries = max_retries
        self.backoff = backoff

    def send(self, request: Request) -> httpx.Response:
        retries = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self.http.send(build(self.http, request))
            except httpx.TimeoutException as exc:
                if retries >= self.max_retries:
                    raise ApiTimeoutError(
                        f"{request.method} {request.path}: no answer in time ({exc!r})"
                    ) from exc
            except httpx.UnsupportedProtocol as exc:
                raise ApiConnectionError(f"{request.method} {request.path}: {exc}") from exc
            except httpx.TransportError as exc:
                if retries >= self.max_retries:
                    raise ApiConnectionError(
                        f"{request.method} {request.path}: no answer ({exc!r})"
                    ) from exc
            else:
                if response.is_success:
                    return response
                if retries >= self.max_retries or not retryable(response):
                    raise error(response)
            retries += 1
            time.sleep(wait_before(retries, self.backoff, response))

    def call(self, request: Request) -> Any:
        return loads(self.send(request))

    def items(
        self, path: str, params: Mapping[str, str], parse: Callable[[JSON], T]
    ) -> Iterator[T]:
        """Every item of every page, fetched a page at a time as the caller iterates."""
        page: tuple[str, Mapping[str, str]] | None = (path, params)
        while page is not None:
            response = self.send(Request("GET", page[0], page[1]))
            for item in loads(response):
                yield parse(item)
            page = next_path(response)


class Resource:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self._t.call(Request("GET", path, params))

    def _act(self, method: str, path: str, body: Any, idempotency_key: str | None) -> Any:
        return self._t.call(Request(method, path, None, body, key_for(idempotency_key)))


def _given(**fields: Any) -> dict[str, Any]:
    """A JSON body of the fields given (None: left out, the server's default)."""
    return {name: value for name, value in fields.items() if value is not None}


def _page(page_size: int | None, **filters: Any) -> dict[str, str]:
    return query(limit=page_size, **filters)


class Customers(Resource):
    def create(
        self,
        *,
        currency: str,
        timezone: str | None = None,
        provider_customer_id: str | None = None,
        provider_payment_method_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Customer:
        body = _given(
            currency=currency,
            timezone=timezone,
            providerCustomerId=provider_customer_id,
            providerPaymentMethodId=provider_payment_method_id,
        )
        return Customer.from_json(self._act("POST", "/rest/v1/customers", body, idempotency_key))

    def get(self, customer_id: int) -> Customer:
        return Customer.from_json(self._get(f"/rest/v1/customers/{customer_id}"))

    def list(self, *, page_size: int | None = None) -> Iterator[Customer]:
        return self._t.items("/rest/v1/customers", _page(page_size), Customer.from_json)

    def update(
        self,
        customer_id: int,
        *,
        timezone: str | NotGiven = NOT_GIVEN,
        provider_customer_id: str | NotGiven | None = NOT_GIVEN,
        provider_payment_method_id: str | NotGiven | None = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> Customer:
        """Change what is given (None clears a provider reference)."""
        given = {
            "timezone": timezone,
            "providerCustomerId": provider_customer_id,
            "providerPaymentMethodId": provider_payment_method_id,
        }
        body = {k: v for k, v in given.items() if not isinstance(v, NotGiven)}
        return Customer.from_json(
            self._act("PATCH", f"/rest/v1/customers/{customer_id}", body, idempotency_key)
        )

    def upcoming_invoice(self, customer_id: int) -> UpcomingInvoice:
        """The customer's next generated invoice as it will be (404 `no_upcoming_invoice`)."""
        return UpcomingInvoice.from_json(
            self._get(f"/rest/v1/customers/{customer_id}/upcoming-invoice")
        )

    def credit_entries(
        self, customer_id: int, *, page_size: int | None = None
    ) -> Iterator[CreditEntry]:
        return self._t.items(
            f"/rest/v1/customers/{customer_id}/credit-entries",
            _page(page_size),
            CreditEntry.from_json,
        )

    def add_credit_entry(
        self,
        customer_id: int,
        *,
        amount: Decimal,
        currency: str,
        note: str,
        idempotency_key: str | None = None,
    ) -> CreditEntry:
        """Adjust the customer's credit by `amount` (negative takes credit away)."""
        body = {"amount": {"value": amount, "currency": currency}, "note": note}
        return CreditEntry.from_json(
            self._act(
                "POST", f"/rest/v1/customers/{customer_id}/credit-entries", body, idempotency_key
            )
        )


class Invoices(Resource):
    def create(
        self,
        *,
        customer_id: int,
        amount: Decimal,
        currency: str,
        due_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Invoice:
        body = _given(
            customerId=customer_id,
            amount={"value": amount, "currency": currency},
            dueAt=due_at,
        )
        return Invoice.from_json(self._act("POST", "/rest/v1/invoices", body, idempotency_key))

    def get(self, invoice_id: int) -> Invoice:
        return Invoice.from_json(self._get(f"/rest/v1/invoices/{invoice_id}"))

    def list(
        self,
        *,
        status: InvoiceStatus | None = None,
        customer_id: int | None = None,
        last_failure: FailureReason | None = None,
        subscription_id: int | None = None,
        page_size: int | None = None,
    ) -> Iterator[Invoice]:
        params = _page(
            page_size,
            status=status,
            customerId=customer_id,
            lastFailure=last_failure,
            subscriptionId=subscription_id,
        )
        return self._t.items("/rest/v1/invoices", params, Invoice.from_json)

    def retry(
        self, invoice_id: int, *, note: str | None = None, idempotency_key: str | None = None
    ) -> Invoice:
        """A FAILED invoice becomes PENDING and due now."""
        return Invoice.from_json(
            self._act(
                "POST", f"/rest/v1/invoices/{invoice_id}/retry", _given(note=note), idempotency_key
            )
        )

    def resolve(
        self,
        invoice_id: int,
        *,
        charged: bool,
        charge_id: str | None = None,
        note: str | None = None,
        attempt: int | None = None,
        idempotency_key: str | None = None,
    ) -> Invoice:
        """A REVIEW invoice: PAID (`charged`, with the provider's charge id) or PENDING."""
        body = _given(charged=charged, chargeId=charge_id, note=note, attempt=attempt)
        return Invoice.from_json(
            self._act("POST", f"/rest/v1/invoices/{invoice_id}/resolve", body, idempotency_key)
        )

    def void(
        self, invoice_id: int, *, note: str | None = None, idempotency_key: str | None = None
    ) -> Invoice:
        return Invoice.from_json(
            self._act(
                "POST", f"/rest/v1/invoices/{invoice_id}/void", _given(note=note), idempotency_key
            )
        )

    def _bulk(
        self,
        action: str,
        status: InvoiceStatus | None,
        last_failure: FailureReason | None,
        customer_id: int | None,
        note: str | None,
        idempotency_key: str | None,
    ) -> BulkResult:
        body = _given(status=status, lastFailure=last_failure, customerId=customer_id, note=note)
        return BulkResult.from_json(
            self._act("POST", f"/rest/v1/invoices/{action}", body, idempotency_key)
        )

    def retry_matching(
        self,
        *,
        status: InvoiceStatus | None = None,
        last_failure: FailureReason | None = None,
        customer_id: int | None = None,
        note: str | None = None,
        idempotency_key: str | None = None,
    ) -> BulkResult:
        """Retry every FAILED invoice matching the filter (at least one field)."""
        return self._bulk("retry", status, last_failure, customer_id, note, idempotency_key)

    def void_matching(
        self,
        *,
        status: InvoiceStatus | None = None,
        last_failure: FailureReason | None = None,
        customer_id: int | None = None,
        note: str | None = None,
        idempotency_key: str | None = None,
    ) -> BulkResult:
        """Void every invoice matching the filter (at least one field) that may be voided."""
        return self._bulk("void", status, last_failure, customer_id, note, idempotency_key)

    def attempts(self, invoice_id: int) -> tuple[Attempt, ...]:
        found = self._get(f"/rest/v1/invoices/{invoice_id}/attempts")
        return tuple(Attempt.from_json(a) for a in found)

    def actions(self, invoice_id: int, *, page_size: int | None = None) -> Iterator[InvoiceAction]:
        return self._t.items(
            f"/rest/v1/invoices/{invoice_id}/actions", _page(page_size), InvoiceAction.from_json
        )


class Plans(Resource):
    def create(
        self,
        *,
        code: str,
        name: str,
        amount: Decimal,
        currency: str,
        interval: Interval,
        interval_count: int | None = None,
        trial_days: int | None = None,
        idempotency_key: str | None = None,
    ) -> Plan:
        body = _given(
            code=code,
            name=name,
            amount={"value": amount, "currency": currency},
            interval=interval,
            intervalCount=interval_count,
            trialDays=trial_days,
        )
        return Plan.from_json(self._act("POST", "/rest/v1/plans", body, idempotency_key))

    def get(self, plan_id: int) -> Plan:
        return Plan.from_json(self._get(f"/rest/v1/plans/{plan_id}"))

    def list(self, *, archived: bool | None = None, page_size: int | None = None) -> Iterator[Plan]:
        return self._t.items("/rest/v1/plans", _page(page_size, archived=archived), Plan.from_json)

    def archive(self, plan_id: int, *, idempotency_key: str | None = None) -> Plan:
        return Plan.from_json(
            self._act("POST", f"/rest/v1/plans/{plan_id}/archive", None, idempotency_key)
        )


class Subscriptions(Resource):
    def create(
        self,
        *,
        customer_id: int,
        plan_id: int,
        quantity: int | None = None,
        start_date: date | None = None,
        billing_anchor: BillingAnchor | None = None,
        trial_days: int | None = None,
        idempotency_key: str | None = None,
    ) -> Subscription:
        body = _given(
            customerId=customer_id,
            planId=plan_id,
            quantity=quantity,
            startDate=start_date,
            billingAnchor=billing_anchor,
            trialDays=trial_days,
        )
        return Subscription.from_json(
            self._act("POST", "/rest/v1/subscriptions", body, idempotency_key)
        )

    def get(self, subscription_id: int) -> Subscription:
        return Subscription.from_json(self._get(f"/rest/v1/subscriptions/{subscription_id}"))

    def list(
        self,
        *,
        customer_id: int | None = None,
        plan_id: int | None = None,
        status: SubscriptionStatus | None = None,
        page_size: int | None = None,
    ) -> Iterator[Subscription]:
        params = _page(page_size, customerId=customer_id, planId=plan_id, status=status)
        return self._t.items("/rest/v1/subscriptions", params, Subscription.from_json)

    def change(
        self,
        subscription_id: int,
        *,
        plan_id: int | None = None,
        quantity: int | None = None,
        effective: Effective | None = None,
        idempotency_key: str | None = None,
    ) -> Subscription:
        body = _given(planId=plan_id, quantity=quantity, effective=effective)
        return Subscription.from_json(
            self._act(
                "POST", f"/rest/v1/subscriptions/{subscription_id}/change", body, idempotency_key
            )
        )

    def cancel(
        self,
        subscription_id: int,
        *,
        at: Effective | None = None,
        prorate: bool | None = None,
        idempotency_key: str | None = None,
    ) -> Subscription:
        body = _given(at=at, prorate=prorate)
        return Subscription.from_json(
            self._act(
                "POST", f"/rest/v1/subscriptions/{subscription_id}/cancel", body, idempotency_key
            )
        )

    def reactivate(
        self, subscription_id: int, *, idempotency_key: str | None = None
    ) -> Subscription:
        return Subscription.from_json(
            self._act(
                "POST",
                f"/rest/v1/subscriptions/{subscription_id}/reactivate",
                None,
                idempotency_key,
            )
        )


class Billing(Resource):
    def trigger(self, *, idempotency_key: str | None = None) -> Run:
        """Open a billing run now (`POST /rest/v1/billing`)."""
        return Run.from_json(self._act("POST", "/rest/v1/billing", None, idempotency_key))

    def retry_failed(self, *, idempotency_key: str | None = None) -> Run:
        """Every PENDING invoice that failed before becomes due now, in a new run."""
        return Run.from_json(self._act("POST", "/rest/v1/billing/retry", None, idempotency_key))

    def status(self) -> Status:
        return Status.from_json(self._get("/rest/v1/status"))


class Runs(Resource):
    def get(self, run_id: int) -> Run:
        return Run.from_json(self._get(f"/rest/v1/billing/runs/{run_id}"))

    def list(
        self, *, status: RunStatus | None = None, page_size: int | None = None
    ) -> Iterator[Run]:
        return self._t.items(
            "/rest/v1/billing/runs", _page(page_size, status=status), Run.from_json
        )


class Events(Resource):
    def get(self, event_id: str) -> Event:
        return Event.from_json(self._get(f"/rest/v1/events/{event_id}"))

    def list(
        self,
        *,
        type: str | None = None,
        invoice_id: int | None = None,
        after: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Event]:
        """Events in the order they became visible; `after`: only those after this id."""
        params = _page(page_size, type=type, invoiceId=invoice_id, after=after)
        return self._t.items("/rest/v1/events", params, Event.from_json)


class Webhooks(Resource):
    def create(
        self,
        *,
        url: str,
        events: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> CreatedWebhook:
        """Add an endpoint; its signing secret is in this answer only (and its replays)."""
        body = _given(url=url, events=events)
        return CreatedWebhook.from_json(
            self._act("POST", "/rest/v1/webhooks", body, idempotency_key)
        )

    def get(self, webhook_id: int) -> Webhook:
        return Webhook.from_json(self._get(f"/rest/v1/webhooks/{webhook_id}"))

    def list(self, *, page_size: int | None = None) -> Iterator[Webhook]:
        return self._t.items("/rest/v1/webhooks", _page(page_size), Webhook.from_json)

    def delete(self, webhook_id: int, *, idempotency_key: str | None = None) -> None:
        self._act("DELETE", f"/rest/v1/webhooks/{webhook_id}", None, idempotency_key)

    def enable(self, webhook_id: int, *, idempotency_key: str | None = None) -> Webhook:
        return Webhook.from_json(
            self._act("POST", f"/rest/v1/webhooks/{webhook_id}/enable", None, idempotency_key)
        )

    def deliveries(self, webhook_id: int, *, page_size: int | None = None) -> Iterator[DeliveryTry]:
        """Every try to deliver to this endpoint, newest first."""
        return self._t.items(
            f"/rest/v1/webhooks/{webhook_id}/deliveries", _page(page_size), DeliveryTry.from_json
        )


class Client:
    """The Antaeus API, synchronously::

        with Client(base_url="http://127.0.0.1:7000", token="ant_...") as api:
            customer = api.customers.create(currency="EUR")
            for invoice in api.invoices.list(status="FAILED"):
                api.invoices.retry(invoice.id)

    Every creating or acting call sends an `Idempotency-Key` (a new one unless
    `idempotency_key=` is given), so its automatic retries never create or act
    twice. `max_retries` (default 2) retries connection errors, 429 and 5xx.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:7000",
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_backoff: float = DEFAULT_BACKOFF,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=base_url, headers=sent, timeout=timeout, transport=transport
        )
        self._transport = Transport(self._http, max_retries, retry_backoff)
        self.customers = Customers(self._transport)
        self.invoices = Invoices(self._transport)
        self.plans = Plans(self._transport)
        self.subscriptions = Subscriptions(self._transport)
        self.billing = Billing(self._transport)
        self.runs = Runs(self._transport)
        self.events = Events(self._transport)
        self.webhooks = Webhooks(self._transport)

    @property
    def max_retries(self) -> int:
        return self._transport.max_retries

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        if value < 0:
            raise ValueError("max_retries must be 0 or more")
        self._transport.max_retries = value

    def health(self) -> bool:
        """True when the server answers its liveness check."""
        return bool(self._transport.call(Request("GET", "/rest/health")) == "ok")

    def metrics(self) -> str:
        """The server's Prometheus metrics, as text."""
        return (self._transport.send(Request("GET", "/metrics"))).text

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
