"""Keyset pagination: `limit` and `after` (an id), the next page in a `Link` header."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Query, Request

from antaeus.api.schemas import MAX_ID, DigitsInt

MAX_LIMIT = 10_000


class HasId(Protocol):
    @property
    def id(self) -> int: ...


T = TypeVar("T", bound=HasId)


@dataclass(frozen=True)
class PageParams:
    limit: int
    after: int


def _page_params(
    limit: Annotated[
        DigitsInt, Query(ge=1, le=MAX_LIMIT, description="page size (1 to 10,000)")
    ] = 100,
    after: Annotated[
        DigitsInt, Query(ge=0, le=MAX_ID, description="return ids greater than this")
    ] = 0,
) -> PageParams:
    return PageParams(limit=limit, after=after)


Page = Annotated[PageParams, Depends(_page_params)]


def _own_id(row: HasId) -> object:
    return row.id


def paginate(
    request: Request,
    rows: Sequence[T],
    page: PageParams,
    cursor: Callable[[T], object] = _own_id,
) -> tuple[Sequence[T], dict[str, str]]:
    """Cut the `limit + 1` rows fetched to a page; link the next page when there is one
    (`after` = `cursor(the page's last row)`: its id unless said otherwise)."""
    if len(rows) <= page.limit:
        return rows, {}
    items = rows[: page.limit]
    next_url = request.url.include_query_params(after=cursor(items[-1]), limit=page.limit)
    return items, {"Link": f'<{next_url}>; rel="next"'}
