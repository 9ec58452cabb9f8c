"""Events as people read them: one line each (what happened, amount, outcome, links).

Works from the event's envelope (`{"id", "type", "createdAt", "data"}`, the
object the API, webhooks and the broker carry; docs/events.md), so what the
dashboard says is what a consumer receives. The JSON itself stays one click
away on the page. A type or a field this module does not know still gets a line
(its type), never an error.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import simplejson

from antaeus.dashboard.rendering import _when

#: what each reason in `lastFailure` means, in words
REASONS: Final[dict[str, str]] = {
    "insufficient_funds": "insufficient funds",
    "customer_not_found": "the provider does not know the customer",
    "currency_mismatch": "the customer's account is in another currency",
    "unknown_outcome": "the outcome is unknown",
    "provider_rejected": "the provider rejected the request as malformed",
    "idempotency_key_reused": "the provider says the key was used with another request",
    "card_declined": "the card was declined",
    "authentication_required": "the customer must authenticate the payment",
    "payment_method_missing": "the customer has no payment method",
    "amount_not_chargeable": "the amount cannot be charged by the provider",
}

#: the badge of each type (a status class of the stylesheet)
OUTCOMES: Final[dict[str, str]] = {
    "invoice.paid": "paid",
    "invoice.payment_declined": "declined",
    "invoice.failed": "failed",
    "invoice.review": "review",
    "invoice.payment_unknown": "unknown",
    "invoice.rescheduled": "rescheduled",
    "invoice.retried": "retried",
    "invoice.resolved": "resolved",
    "invoice.voided": "void",
    "run.opened": "opened",
    "run.completed": "completed",
    "charging.paused": "paused",
    "charging.resumed": "resumed",
    "invoice.created": "created",
    "subscription.created": "created",
    "subscription.updated": "updated",
    "subscription.canceled": "void",
    "subscription.trial_will_end": "trialing",
}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _reason(code: Any) -> str:
    return REASONS.get(str(code), str(code)) if code else "no reason given"


def _amount(invoice: dict[str, Any]) -> str | None:
    amount = _dict(invoice.get("amount"))
    value, currency = amount.get("value"), amount.get("currency")
    if value is None or currency is None:
        return None
    if isinstance(value, Decimal | int):
        return f"{value:,} {currency}"
    return f"{value} {currency}"


def _when_text(value: Any) -> str:
    try:
        return _when(value)
    except (TypeError, ValueError):
        return str(value)


def _sentence(kind: str, data: dict[str, Any]) -> str:
    invoice = _dict(data.get("invoice"))
    attempt = _dict(data.get("attempt"))
    action = _dict(data.get("action"))
    number = attempt.get("number")
    try_words = f"attempt {number}" if number is not None else "no attempt used"
    if kind == "invoice.paid":
        return f"Charged ({try_words}, charge {attempt.get('chargeId') or '?'})"
    if kind == "invoice.payment_declined":
        nxt = invoice.get("nextAttemptAt")
        later = f"; dunning retries at {_when_text(nxt)}" if nxt else ""
        return f"Declined: {_reason(invoice.get('lastFailure'))} ({try_words}){later}"
    if kind == "invoice.failed":
        refusal = _dict(data.get("refusal"))
        why = _reason(invoice.get("lastFailure"))
        if attempt.get("declineCode"):
            why += f" ({attempt['declineCode']})"
        if refusal:
            why += f": {refusal.get('detail') or refusal.get('reason')}"
        return f"Failed, a person must act: {why} ({try_words})"
    if kind == "invoice.review":
        why = _reason(invoice.get("lastFailure"))
        return f"Needs a person to check with the provider: {why} ({try_words})"
    if kind == "invoice.payment_unknown":
        return f"No answer from the provider ({try_words}); repeated with the same key"
    if kind == "invoice.rescheduled":
        nxt = invoice.get("nextAttemptAt")
        return "Taken out of its run, charged later" + (f" (at {_when_text(nxt)})" if nxt else "")
    if kind in ("invoice.retried", "invoice.resolved", "invoice.voided"):
        verbs = {
            "retried": "retried it",
            "resolved_charged": f"resolved it as charged (charge {action.get('chargeId')})",
            "resolved_not_charged": "resolved it as not charged",
            "voided": "voided it",
        }
        verb = verbs.get(str(action.get("action")), str(action.get("action")))
        change = f"{action.get('fromStatus')} → {action.get('toStatus')}"
        note = f': "{action["note"]}"' if action.get("note") else ""
        return f"{action.get('actor') or 'someone'} {verb}, {change}{note}"
    if kind == "run.opened":
        return f"Run opened ({data.get('trigger')}) with {data.get('invoices')} due invoices"
    if kind == "run.completed":
        return "Run completed: every invoice has an outcome"
    if kind == "charging.paused":
        return f"Charging paused: {data.get('reason')} ({data.get('detail')})"
    if kind == "charging.resumed":
        return "Charging resumed"
    if kind == "invoice.created":
        lines = [line for line in data_lines(invoice) if isinstance(line, dict)]
        kinds = sorted({str(line.get("kind")) for line in lines})
        made = "by hand" if kinds == ["manual"] else "from " + ", ".join(kinds) + " lines"
        return f"Invoice created {made}, due {_when_text(invoice.get('dueAt'))}"
    if kind.startswith("subscription."):
        return _subscription_sentence(kind, _dict(data.get("subscription")))
    return kind


def data_lines(invoice: dict[str, Any]) -> list[Any]:
    lines = invoice.get("lines")
    return lines if isinstance(lines, list) else []


def _subscription_sentence(kind: str, sub: dict[str, Any]) -> str:
    plan = f"plan {sub.get('planId')} × {sub.get('quantity')}"
    if kind == "subscription.created":
        trial = f", trial until {sub['trialEndDate']}" if sub.get("trialEndDate") else ""
        return f"Subscription created: {plan}, from {sub.get('startDate')}{trial}"
    if kind == "subscription.canceled":
        return f"Subscription canceled (ends {sub.get('cancelAt')})"
    if kind == "subscription.trial_will_end":
        return f"Trial ends on {sub.get('trialEndDate')}: billing starts then"
    pending = _dict(sub.get("pendingChange"))
    if sub.get("cancelAt"):
        return f"Subscription changed: cancel pending, ends {sub['cancelAt']}"
    if pending:
        return (
            f"Subscription changed: plan {pending.get('planId')} × {pending.get('quantity')} "
            f"from {pending.get('effectiveDate')}"
        )
    return f"Subscription changed: now {plan}"


def describe(envelope: dict[str, Any]) -> dict[str, Any]:
    """An event's line: `what`, `amount`, `outcome`, links, and its JSON for the click."""
    kind = str(envelope.get("type"))
    data = _dict(envelope.get("data"))
    invoice = _dict(data.get("invoice"))
    run_id = data.get("runId")
    links: list[tuple[str, str]] = []
    if isinstance(invoice.get("id"), int):
        links.append((f"invoice {invoice['id']}", f"/invoices/{invoice['id']}"))
    if isinstance(run_id, int):
        links.append((f"run {run_id}", f"/runs/{run_id}"))
    subscription = _dict(data.get("subscription"))
    if isinstance(subscription.get("id"), int):
        sid = subscription["id"]
        links.append((f"subscription {sid}", f"/subscriptions/{sid}"))
    if isinstance(invoice.get("customerId"), int):
        cid = invoice["customerId"]
        links.append((f"customer {cid}", f"/customers/{cid}"))
    return {
        "id": envelope.get("id"),
        "type": kind,
        "createdAt": envelope.get("createdAt"),
        "what": _sentence(kind, data),
        "amount": _amount(invoice),
        "status": invoice.get("status"),
        "outcome": OUTCOMES.get(kind, kind.rsplit(".", 1)[-1]),
        "links": links,
        "json": simplejson.dumps(
            envelope.get("data"), use_decimal=True, sort_keys=True, indent=2, ensure_ascii=False
        ),
    }
