"""A Python client for the Antaeus API: `from antaeus.client import Client`.

    from decimal import Decimal
    from antaeus.client import Client

    with Client(base_url="http://127.0.0.1:7000", token="ant_...") as api:
        customer = api.customers.create(currency="EUR", timezone="Europe/Copenhagen")
        api.invoices.create(customer_id=customer.id, amount=Decimal("89.52"), currency="EUR")
        for failed in api.invoices.list(status="FAILED"):  # every page, lazily
            api.invoices.retry(failed.id)

`AsyncClient` is the same with `await` and `async for`. This package imports
only the standard library, `httpx` and `standardwebhooks`: it runs where the
server's own dependencies are not installed.
"""

from antaeus.client._async_client import AsyncClient
from antaeus.client._core import NotGiven
from antaeus.client._errors import (
    AntaeusError,
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableError,
    WebhookVerificationError,
)
from antaeus.client._models import (
    Attempt,
    AttemptAnswer,
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
    InvoiceLine,
    InvoiceStatus,
    Money,
    PendingChange,
    Plan,
    Reconciliation,
    Run,
    RunCounts,
    RunStatus,
    Status,
    Subscription,
    SubscriptionStatus,
    UpcomingInvoice,
    Webhook,
)
from antaeus.client._sync_client import Client
from antaeus.client._webhooks import verify_webhook

__all__ = [
    "AntaeusError",
    "ApiConnectionError",
    "ApiError",
    "ApiTimeoutError",
    "AsyncClient",
    "Attempt",
    "AttemptAnswer",
    "AuthenticationError",
    "BadRequestError",
    "BillingAnchor",
    "BulkResult",
    "Client",
    "ClientError",
    "ConflictError",
    "CreatedWebhook",
    "CreditEntry",
    "Customer",
    "DeliveryTry",
    "Effective",
    "Event",
    "FailureReason",
    "Interval",
    "Invoice",
    "InvoiceAction",
    "InvoiceLine",
    "InvoiceStatus",
    "Money",
    "NotFoundError",
    "NotGiven",
    "PendingChange",
    "PermissionDeniedError",
    "Plan",
    "RateLimitError",
    "Reconciliation",
    "Run",
    "RunCounts",
    "RunStatus",
    "ServerError",
    "Status",
    "Subscription",
    "SubscriptionStatus",
    "UnprocessableError",
    "UpcomingInvoice",
    "Webhook",
    "WebhookVerificationError",
    "verify_webhook",
]
