"""JSON in and out, exactly.

Incoming numbers are parsed as `Decimal` (never through float), so an amount
sent as a JSON number keeps every digit; NaN and Infinity are not JSON and are
refused. Text must be Unicode: a body that is not UTF-8, or a string holding
a lone surrogate (`"\\ud800"`, which no database or log can store), is malformed
JSON too. Outgoing `Decimal`s are written as JSON numbers with their exact
digits (`123.40` stays `123.40`), as the original Antaeus contract requires.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

import simplejson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException


def _refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a valid JSON value", name, 0)


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate(parsed: Any) -> bool:
    """Whether a string (or an object's key) holds a surrogate that is not half of a pair."""
    pending = [parsed]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def loads(data: bytes | str) -> Any:
    try:
        if isinstance(data, bytes):
            text = data.decode(json.detect_encoding(data))  # strict: no surrogates either
        elif _SURROGATE.search(data):
            raise ValueError("the text holds a lone surrogate")
        else:
            text = data
        parsed = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(f"not UTF-8 text: {exc.reason}", "", exc.start) from None
    except (ValueError, RecursionError) as exc:  # a 5,000-digit integer, very deep nesting
        raise json.JSONDecodeError(f"unusable JSON: {exc}", "", 0) from None
    # A paired escape ("\\ud83d\\ude42") is one character; a lone one is not text.
    if _SURROGATE_ESCAPE.search(text) and _lone_surrogate(parsed):
        raise json.JSONDecodeError("a string holds a lone surrogate (\\ud800-\\udfff)", "", 0)
    return parsed


def dumps(obj: Any) -> str:
    return simplejson.dumps(obj, use_decimal=True, separators=(",", ":"), ensure_ascii=False)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")

    @classmethod
    def from_text(cls, text: str, status_code: int) -> Response:
        """A response whose body is JSON text stored earlier (an idempotent replay)."""
        return Response(
            content=text.encode("utf-8"),
            status_code=status_code,
            media_type=cls.media_type,
            headers={"Idempotent-Replayed": "true"},
        )


class ExactJSONRequest(Request):
    async def body(self) -> bytes:
        """The body, refused (413, answered as our 400 JSON) past the configured limit.

        Bodies announced too large are refused earlier by `ContentLengthLimit`;
        this guards bodies streamed without a Content-Length.
        """
        if not hasattr(self, "_body"):
            limit: int = self.app.state.ctx.settings.MAX_BODY_BYTES
            chunks: list[bytes] = []
            size = 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, "the request body is larger than the limit")
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class ExactJSONRoute(APIRoute):
    """An APIRoute whose request bodies are parsed by `loads` (decimals kept exact)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact_handler(request: Request) -> Response:
            return await handler(ExactJSONRequest(request.scope, request.receive))

        return exact_handler
