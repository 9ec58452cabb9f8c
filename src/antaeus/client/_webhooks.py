"""`verify_webhook`: check a delivery's Standard Webhooks signature, answer the event."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import standardwebhooks.webhooks as standard

from antaeus.client._errors import WebhookVerificationError
from antaeus.client._models import Event

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def verify_webhook(secret: str, headers: Headers, body: bytes | str) -> Event:
    """The event a webhook delivery carries, once its signature checks out.

    `secret` is the endpoint's `whsec_...` (the answer to `webhooks.create`);
    `headers` the request's (any mapping, or pairs: names in any case); `body`
    the raw body exactly as received. Checked by the `standardwebhooks` library:
    `webhook-id`, `webhook-timestamp` (within its tolerance of now, five
    minutes either way: an old delivery replayed is refused) and
    `webhook-signature` (every signature in it is tried, so a secret being
    rotated still checks). Anything else raises `WebhookVerificationError`.
    Amounts in the event are exact `Decimal`s.
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    plain = {str(name).lower(): str(value) for name, value in pairs}
    try:
        verifier = standard.Webhook(secret)
    except Exception as exc:  # an empty or undecodable secret: the library's own errors
        raise WebhookVerificationError(f"unusable webhook secret: {exc}") from exc
    try:
        verifier.verify(body, plain, json_parse=False)
    except standard.WebhookVerificationError as exc:
        raise WebhookVerificationError(str(exc)) from exc
    payload = body.encode("utf-8") if isinstance(body, str) else body
    try:
        envelope: Any = json.loads(payload, parse_float=Decimal)
        return Event.from_json(envelope)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WebhookVerificationError(f"signed, but not an Antaeus event: {exc}") from exc
