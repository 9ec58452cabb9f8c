"""What names a Stripe account to talk to: the API base and the key (checked, and masked).

Apart from `stripe_rules` (the currency table) so that the fake Stripe and its
command can check and show keys without importing the adapter's table.
"""

from __future__ import annotations

import re
from typing import Final

DEFAULT_API_BASE: Final = "https://api.stripe.com"
_KEY_PREFIX: Final = re.compile(r"(?:sk|rk)_[A-Za-z0-9]+_|(?:sk|rk)_")


def mask_key(key: str) -> str:
    """`sk_test_****wxyz`: the kind and mode of a Stripe key, and its last four characters
    when the key is long enough for them to give nothing away."""
    match = _KEY_PREFIX.match(key)
    prefix = match.group(0) if match else ""
    rest = key[len(prefix) :]
    tail = rest[-4:] if len(rest) >= 20 else ""
    return f"{prefix}****{tail}"


def stripe_key_problem(key: str) -> str | None:
    """Why `key` cannot charge through Stripe, or None (it looks like a secret key)."""
    if key.startswith(("sk_", "rk_")) and len(key) > 3 and key.isascii() and key.isprintable():
        if any(c.isspace() for c in key):
            return "a Stripe API key has no spaces"
        return None
    if key.startswith("pk_"):
        return (
            "a publishable key (pk_…) cannot charge: use a secret key (sk_…) "
            "or a restricted key (rk_…)"
        )
    return "must be a Stripe secret key (sk_…) or restricted key (rk_…)"
