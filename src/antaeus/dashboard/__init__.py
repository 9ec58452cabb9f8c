"""The dashboard: server-rendered pages for people, in the API's app at `/`.

`install(app)` adds its routes (none in the OpenAPI schema), its static files
(`/static`, from the package) and the handlers that turn its refusals into pages.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from antaeus.dashboard import sessions
from antaeus.dashboard.rendering import DashboardError, error_page
from antaeus.dashboard.routes import router
from antaeus.dashboard.subscription_pages import router as subscription_router


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(subscription_router)
    app.mount(
        "/static",
        StaticFiles(packages=[("antaeus.dashboard", "static")]),
        name="dashboard-static",
    )

    @app.exception_handler(DashboardError)
    async def _refused(request: Request, exc: DashboardError) -> Response:
        return error_page(request, exc, await _session_of(request))

    @app.exception_handler(sessions.SignInRequiredError)
    async def _sign_in(request: Request, exc: sessions.SignInRequiredError) -> Response:
        target = "/signin" if exc.next_path == "/" else f"/signin?{_next(exc.next_path)}"
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(sessions.ScopeRefusedError)
    async def _read_only(request: Request, exc: sessions.ScopeRefusedError) -> Response:
        return error_page(
            request,
            DashboardError(
                403,
                "Refused: your token may only read",
                f"You signed in with the token {exc.session.token_name!r}, of scope "
                f"{exc.session.scope!r}: it shows every page but cannot act. Nothing was "
                "changed. Sign in with a token of scope 'write' to act.",
            ),
            exc.session,
        )

    @app.exception_handler(sessions.CsrfRefusedError)
    async def _csrf(request: Request, _exc: sessions.CsrfRefusedError) -> Response:
        return error_page(
            request,
            DashboardError(
                403,
                "Refused: the form's security token is missing or wrong",
                "This form did not carry the token of your session (it may be an old page, "
                "or another site sent it). Nothing was changed. Reload the page and try again.",
            ),
            await _session_of(request),
        )


async def _session_of(request: Request) -> sessions.Session | None:
    """The session, to show the navigation on an error page (None when there is none)."""
    try:
        return await sessions.current(request)
    except Exception:  # an error page must render whatever else is wrong
        return None


def _next(path: str) -> str:
    return urlencode({"next": path})


__all__ = ["install"]
