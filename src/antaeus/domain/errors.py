"""What a use case refuses, in the domain's words (the API maps each to its error)."""

from __future__ import annotations

from antaeus.domain.invoice import InvoiceStatus


class DomainError(Exception):
    """A use case refused: nothing was changed."""


class InvoiceNotFoundError(DomainError):
    def __init__(self, invoice_id: int) -> None:
        super().__init__(f"invoice {invoice_id} does not exist")
        self.invoice_id = invoice_id


class ActionRefusedError(DomainError):
    """The invoice's status does not allow the action (`status`: what it is now), or the
    action named an attempt that is not the invoice's open one (`attempt`: the invoice's
    current attempt number, given when the action named one)."""

    def __init__(
        self,
        invoice_id: int,
        status: InvoiceStatus,
        reason: str | None = None,
        *,
        attempt: int | None = None,
    ) -> None:
        super().__init__(reason or f"invoice {invoice_id} is {status.value}")
        self.invoice_id = invoice_id
        self.status = status
        self.attempt = attempt
