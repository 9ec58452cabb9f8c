"""The one JSON encoder (API bodies, event payloads) writes what simplejson's dumps writes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import simplejson

from antaeus.exactjson import dumps

VALUES: list[Any] = [
    {"amount": {"value": Decimal("123.40"), "currency": "EUR"}, "n": None, "ok": True},
    [1, 2.5, -0.0, "ø", 'quote " and \\ and \n', "\u2028", "🙂"],
    "text",
    Decimal("0.10"),
    10**30,
    {"nested": [{"a": []}, {}]},
]


@pytest.mark.parametrize("value", VALUES)
def test_it_writes_what_simplejson_writes(value: Any) -> None:
    expected = simplejson.dumps(value, use_decimal=True, separators=(",", ":"), ensure_ascii=False)
    assert dumps(value) == expected


def test_an_error_leaves_nothing_behind() -> None:
    with pytest.raises(TypeError):
        dumps({"a": object()})
    shared = {"x": 1}
    assert dumps([shared, shared]) == '[{"x":1},{"x":1}]'  # the same object twice is fine
    assert dumps({"a": 1}) == '{"a":1}'
