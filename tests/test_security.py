"""mask_url: a URL shown anywhere (logs, errors, CLI output) never shows its password."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antaeus.security import mask_url, scrub


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:s3cret@pay.example.com/v1", "https://user:***@pay.example.com/v1"),
        ("http://:s3cret@pay.example.com", "http://:***@pay.example.com"),
        ("http://user:@pay.example.com", "http://user:***@pay.example.com"),
        ("https://user@pay.example.com", "https://user@pay.example.com"),
        ("https://pay.example.com/a@b", "https://pay.example.com/a@b"),
        # ambiguous with a password holding a raw '/': masked rather than risk showing it
        ("https://pay.example.com:8443/a@b", "https://pay.example.com:***@b"),
        ("https://pay.example.com", "https://pay.example.com"),
        (
            "postgresql://antaeus:p%40ss%2Fw0rd@db.internal:5432/antaeus",
            "postgresql://antaeus:***@db.internal:5432/antaeus",
        ),
        ("postgresql+asyncpg://u:p@ss@db/x", "postgresql+asyncpg://u:***@db/x"),
        ("postgresql://u:pa/ss@db/x", "postgresql://u:***@db/x"),
        ("postgresql://u:pa?ss@db/x", "postgresql://u:***@db/x"),
        ("postgresql://u:pa#ss@db/x", "postgresql://u:***@db/x"),
        ("user:s3cret@db.internal/antaeus", "user:***@db.internal/antaeus"),
        (
            "postgresql://db/x?user=u&password=s3cret&sslmode=require",
            "postgresql://db/x?user=u&password=***&sslmode=require",
        ),
        ("sqlite:///antaeus.db", "sqlite:///antaeus.db"),
        ("sqlite:////var/lib/me@home.db", "sqlite:////var/lib/me@home.db"),
        ("", ""),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1)
_host = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){0,2}", fullmatch=True)
_scheme = st.sampled_from(["http", "https", "postgresql", "postgresql+asyncpg", "sqlite"])
_path = st.from_regex(r"(/[A-Za-z0-9._~-]{0,10}){0,3}", fullmatch=True)


@given(_scheme, _text, _text, _host, _path, st.booleans())
def test_a_password_never_shows_whatever_it_holds(
    scheme: str, user: str, password: str, host: str, path: str, encoded: bool
) -> None:
    shown_user = quote(user, safe="")
    written = quote(password, safe="") if encoded else password
    url = f"{scheme}://{shown_user}:{written}@{host}{path}"
    masked = mask_url(url)
    assert masked == f"{scheme}://{shown_user}:***@{host}{path}"
    assert mask_url(masked) == masked


@given(_scheme, _host, _path)
def test_a_url_without_a_password_is_shown_as_it_is(scheme: str, host: str, path: str) -> None:
    url = f"{scheme}://{host}{path}"
    assert mask_url(url) == url


def test_scrub_masks_the_url_and_its_password_in_a_message() -> None:
    url = "https://user:s3cr%40t@pay.example.com"
    text = f"GET {url}/v1/health failed; auth s3cr@t refused; s3cr%40t"
    scrubbed = scrub(text, url)
    assert "s3cr" not in scrubbed
    assert "https://user:***@pay.example.com/v1/health" in scrubbed
    assert scrub("nothing to hide", "https://pay.example.com") == "nothing to hide"
