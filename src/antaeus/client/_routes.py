"""Every route of the API and the client method that calls it (`Client` and
`AsyncClient` alike): a test reads the app's routes and fails on one missing here."""

from __future__ import annotations

from typing import Final

#: (method, path as the app declares it) -> attribute path on the client
ROUTES: Final[dict[tuple[str, str], str]] = {
    ("GET", "/rest/health"): "health",
    ("GET", "/metrics"): "metrics",
    ("GET", "/rest/v1/status"): "billing.status",
    # customers
    ("GET", "/rest/v1/customers"): "customers.list",
    ("POST", "/rest/v1/customers"): "customers.create",
    ("GET", "/rest/v1/customers/{id}"): "customers.get",
    ("PATCH", "/rest/v1/customers/{id}"): "customers.update",
    ("GET", "/rest/v1/customers/{id}/upcoming-invoice"): "customers.upcoming_invoice",
    ("GET", "/rest/v1/customers/{id}/credit-entries"): "customers.credit_entries",
    ("POST", "/rest/v1/customers/{id}/credit-entries"): "customers.add_credit_entry",
    # invoices
    ("GET", "/rest/v1/invoices"): "invoices.list",
    ("POST", "/rest/v1/invoices"): "invoices.create",
    ("GET", "/rest/v1/invoices/{id}"): "invoices.get",
    ("POST", "/rest/v1/invoices/{id}/retry"): "invoices.retry",
    ("POST", "/rest/v1/invoices/{id}/resolve"): "invoices.resolve",
    ("POST", "/rest/v1/invoices/{id}/void"): "invoices.void",
    ("POST", "/rest/v1/invoices/retry"): "invoices.retry_matching",
    ("POST", "/rest/v1/invoices/void"): "invoices.void_matching",
    ("GET", "/rest/v1/invoices/{id}/attempts"): "invoices.attempts",
    ("GET", "/rest/v1/invoices/{id}/actions"): "invoices.actions",
    # plans
    ("GET", "/rest/v1/plans"): "plans.list",
    ("POST", "/rest/v1/plans"): "plans.create",
    ("GET", "/rest/v1/plans/{id}"): "plans.get",
    ("POST", "/rest/v1/plans/{id}/archive"): "plans.archive",
    # subscriptions
    ("GET", "/rest/v1/subscriptions"): "subscriptions.list",
    ("POST", "/rest/v1/subscriptions"): "subscriptions.create",
    ("GET", "/rest/v1/subscriptions/{id}"): "subscriptions.get",
    ("POST", "/rest/v1/subscriptions/{id}/change"): "subscriptions.change",
    ("POST", "/rest/v1/subscriptions/{id}/cancel"): "subscriptions.cancel",
    ("POST", "/rest/v1/subscriptions/{id}/reactivate"): "subscriptions.reactivate",
    # billing and runs
    ("POST", "/rest/v1/billing"): "billing.trigger",
    ("POST", "/rest/v1/billing/retry"): "billing.retry_failed",
    ("GET", "/rest/v1/billing/runs"): "runs.list",
    ("GET", "/rest/v1/billing/runs/{id}"): "runs.get",
    # events and webhooks
    ("GET", "/rest/v1/events"): "events.list",
    ("GET", "/rest/v1/events/{id}"): "events.get",
    ("GET", "/rest/v1/webhooks"): "webhooks.list",
    ("POST", "/rest/v1/webhooks"): "webhooks.create",
    ("GET", "/rest/v1/webhooks/{id}"): "webhooks.get",
    ("DELETE", "/rest/v1/webhooks/{id}"): "webhooks.delete",
    ("POST", "/rest/v1/webhooks/{id}/enable"): "webhooks.enable",
    ("GET", "/rest/v1/webhooks/{id}/deliveries"): "webhooks.deliveries",
}
