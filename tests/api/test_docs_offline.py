"""Issue 20, item 17: the API docs pages (`/docs`, `/redoc`) work offline.

FastAPI's pages load Swagger UI and ReDoc from a CDN (and a favicon from
fastapi.tiangolo.com), so they were blank without the internet. Every script,
stylesheet and icon a page references must be served by the app itself (200,
not empty) and none may point off-host.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from antaeus.api.app import create_app
from antaeus.config import Settings

BASE = "http://antaeus.test"


class _References(HTMLParser):
    """Every URL a page loads: script src, link href (stylesheets, icons), img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


@pytest.fixture
async def docs_client(tmp_path: object) -> AsyncIterator[httpx.AsyncClient]:
    # the docs need no database: the app is not started (no lifespan)
    app = create_app(Settings(DATABASE_URL="sqlite:///unused-docs.db"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


@pytest.mark.parametrize(("page", "least"), [("/docs", 3), ("/redoc", 2)])
async def test_docs_pages_load_everything_from_the_app(
    docs_client: httpx.AsyncClient, page: str, least: int
) -> None:
    response = await docs_client.get(page)
    assert response.status_code == 200, response.text
    parser = _References()
    parser.feed(response.text)
    # /docs: its script, its stylesheet and its icon; /redoc: its script and its icon
    assert len(parser.urls) >= least, parser.urls
    for url in parser.urls:
        absolute = urljoin(f"{BASE}{page}", url)
        assert urlsplit(absolute).netloc == urlsplit(BASE).netloc, f"{page} loads {url}"
        served = await docs_client.get(absolute)
        assert served.status_code == 200, (url, served.status_code)
        assert len(served.content) > 100, url
    # nothing else off-host in the page either (a URL in its inline script)
    assert not re.findall(r"https?://(?!antaeus\.test)[^\s\"'<>]+", response.text), response.text


async def test_the_docs_scripts_are_swagger_ui_and_redoc(docs_client: httpx.AsyncClient) -> None:
    parser = _References()
    parser.feed((await docs_client.get("/docs")).text)
    parser.feed((await docs_client.get("/redoc")).text)
    scripts = {url.rsplit("/", 1)[-1]: url for url in parser.urls if url.endswith(".js")}
    swagger = await docs_client.get(scripts["swagger-ui-bundle.js"])
    assert "SwaggerUIBundle" in swagger.text
    assert "javascript" in swagger.headers["content-type"]
    redoc = await docs_client.get(scripts["redoc.standalone.js"])
    assert "Redoc" in redoc.text
    css = [url for url in parser.urls if url.endswith(".css")]
    assert css, parser.urls
    assert "text/css" in (await docs_client.get(css[0])).headers["content-type"]
