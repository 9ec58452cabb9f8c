"""structlog set up once: key/value lines on a console, JSON lines in production."""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.types import EventDict, WrappedLogger

#: events this process does not print (`drop_events`); empty unless a command asks
_DROPPED: set[str] = set()


def drop_events(*names: str) -> None:
    """Print no log line for these events from now on (in this process).

    `antaeus bill` in a terminal drops its per-invoice `invoice_needs_person`
    warnings and sums them up at the end instead (the metric still counts each).
    """
    _DROPPED.update(names)


def _drop_asked(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    if _DROPPED and event_dict.get("event") in _DROPPED:
        raise structlog.DropEvent
    return event_dict


def configure_logging(level: str = "info", fmt: str = "console") -> None:
    numeric = logging.getLevelName(level.upper())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            _drop_asked,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    if numeric > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # the stripe library logs two info lines per API call (request, response)
        logging.getLogger("stripe").setLevel(logging.WARNING)
