"""API tokens: generated at random, stored only as SHA-256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

TOKEN_PREFIX = "ant_"
TOKEN_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")
ENV_TOKEN_NAME = "env"
MASK = "***"
#: what a token may do: `read` every GET (the API, the dashboard's pages, /metrics);
#: `write` everything besides (today's power, the default, and the env token's)
READ: Final = "read"
WRITE: Final = "write"
SCOPES: Final = (READ, WRITE)
#: the methods that only read; any other one is a write, on every route
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_PASSWORD_PARAMETER = re.compile(r"([?&](?:password|passwd|pwd)=)[^&#]*", re.IGNORECASE)


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """An active token as requests see it: its name (the actor), scope and hash."""

    name: str
    scope: str
    token_hash: str

    @property
    def can_write(self) -> bool:
        # anything but an exact `write` (an unknown value too) only reads
        return self.scope == WRITE

    def allows(self, method: str) -> bool:
        return self.can_write or method.upper() in SAFE_METHODS


def find_token(presented_hash: str, known: dict[str, TokenGrant]) -> TokenGrant | None:
    """The token hashed to `presented_hash` (constant-time comparisons)."""
    found: TokenGrant | None = None
    for candidate, name in known.items():
        if hmac.compare_digest(candidate, presented_hash):
            found = name
    return found


def valid_token_name(name: str) -> bool:
    return bool(TOKEN_NAME_PATTERN.fullmatch(name)) and name != ENV_TOKEN_NAME


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the password of `url`'s user info is: it runs from the first `:` after the
    scheme to the last `@` (a password written with a raw `@`, `/`, `?` or `#` is whole)."""
    scheme_end = url.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    at = url.rfind("@", start)
    if at < 0:
        return None
    colon = url.find(":", start, at)
    if colon < 0 or any(c in url[start:colon] for c in "/?#"):
        return None
    return colon + 1, at


def mask_url(url: str) -> str:
    """`url` fit to show (logs, errors, CLI output): its password replaced by `***`.

    Use it wherever a URL is shown. A `password=` query parameter is masked too;
    a URL without a password comes back as it is.
    """
    if span := _password_span(url):
        url = f"{url[: span[0]]}{MASK}{url[span[1] :]}"
    return _PASSWORD_PARAMETER.sub(rf"\g<1>{MASK}", url)


def scrub(text: str, url: str) -> str:
    """`text` (an error message) with every copy of `url`, or of its password, masked."""
    text = text.replace(url, mask_url(url)) if url else text
    if span := _password_span(url):
        password = url[span[0] : span[1]]
        for secret in {password, unquote(password)}:
            if len(secret) >= 3:  # masking one or two characters would garble the message
                text = text.replace(secret, MASK)
    return text
