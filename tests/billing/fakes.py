"""A scriptable payment provider for tests: answers per invoice, records every call."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from antaeus.payments.provider import (
    CannotTell,
    Charged,
    ChargeLookup,
    ChargeRequest,
    Declined,
    LookupResult,
    ProviderError,
    Refusal,
)

Answer = Charged | Declined | ProviderError | Callable[[ChargeRequest], Charged | Declined]


@dataclass
class ScriptedProvider:
    """Answers each invoice's calls from its script, in order; then `default`."""

    scripts: dict[int, list[Answer]] = field(default_factory=dict)
    default: Answer = field(default_factory=lambda: Charged("ch_default"))
    deduplicates_keys: bool = True
    key_retention: timedelta = timedelta(hours=24)
    calls: list[ChargeRequest] = field(default_factory=list)
    by_invoice: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    #: what it refuses before any call (None: charges any customer by Antaeus' own id)
    refuse: Callable[[ChargeRequest], Refusal | None] | None = None
    refused: list[ChargeRequest] = field(default_factory=list)

    def refusal(self, request: ChargeRequest) -> Refusal | None:
        found = self.refuse(request) if self.refuse is not None else None
        if found is not None:
            self.refused.append(request)
        return found

    async def find_charge(self, lookup: ChargeLookup) -> LookupResult:
        return CannotTell("this provider cannot look up a key yet")

    async def charge(self, request: ChargeRequest) -> Charged | Declined:
        self.calls.append(request)
        self.by_invoice[request.invoice_id].append(request.idempotency_key)
        script = self.scripts.get(request.invoice_id)
        answer = script.pop(0) if script else self.default
        if isinstance(answer, ProviderError):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    async def aclose(self) -> None:
        return None


def needs_payment_method(request: ChargeRequest) -> Refusal | None:
    """Refuses, as the Stripe adapter does, a customer without both provider references."""
    if request.provider_customer_id is None or request.provider_payment_method_id is None:
        missing = [
            name
            for name, value in (
                ("providerCustomerId", request.provider_customer_id),
                ("providerPaymentMethodId", request.provider_payment_method_id),
            )
            if value is None
        ]
        return Refusal("payment_method_missing", f"customer lacks {' and '.join(missing)}")
    return None


def refuses_amounts_over(limit_minor: int) -> Callable[[ChargeRequest], Refusal | None]:
    """Refuses amounts above `limit_minor` minor units (as a provider's maximum would)."""

    def rule(request: ChargeRequest) -> Refusal | None:
        if request.amount.minor > limit_minor:
            return Refusal("amount_not_chargeable", f"above {limit_minor} minor units")
        return None

    return rule
