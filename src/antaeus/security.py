"""API tokens: generated at random, stored only as SHA-256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

TOKEN_PREFIX = "ant_"
TOKEN_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")
ENV_TOKEN_NAME = "env"


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def find_token(presented_hash: str, known: dict[str, str]) -> str | None:
    """The name of the token hashed to `presented_hash` (constant-time comparisons)."""
    found: str | None = None
    for candidate, name in known.items():
        if hmac.compare_digest(candidate, presented_hash):
            found = name
    return found


def valid_token_name(name: str) -> bool:
    return bool(TOKEN_NAME_PATTERN.fullmatch(name)) and name != ENV_TOKEN_NAME
