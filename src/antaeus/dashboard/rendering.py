"""Templates (Jinja2, autoescaped), the pages' security headers, and error pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

#: no inline script or style anywhere: only this site's own files
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(value: object) -> str:
    """A time as people read it, in UTC (accepts a datetime or RFC 3339 text)."""
    if value is None or value == "":
        return "—"
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


environment = Environment(
    loader=PackageLoader("antaeus.dashboard", "templates"),
    autoescape=True,  # every value shown is escaped, whatever the template
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["when"] = _when
environment.filters["query"] = lambda params: urlencode(params)


class DashboardError(Exception):
    """A request the dashboard refuses: shown as a page with its status and why."""

    def __init__(self, status: int, title: str, message: str, *, back: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.back = back


def render(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    values: dict[str, Any] = {"path": request.url.path, "session": None, **context}
    # Every action block of every template checks `can_write`: a read session sees none.
    values.setdefault("can_write", bool(getattr(values["session"], "can_write", False)))
    page = environment.get_template(template).render(values)
    return HTMLResponse(page, status_code=status_code, headers=SECURITY_HEADERS)


def error_page(request: Request, exc: DashboardError, session: Any = None) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {
            "status": exc.status,
            "title": exc.title,
            "message": exc.message,
            "back": exc.back,
            "session": session,
        },
        status_code=exc.status,
    )
