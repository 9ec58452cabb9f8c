"""JSON requests and responses of the API, parsed and written by `antaeus.exactjson`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from antaeus.exactjson import dumps, loads


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
