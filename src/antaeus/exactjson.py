"""JSON in and out, exactly: the one encoder and decoder of the API and the outbox.

Incoming numbers are parsed as `Decimal` (never through float), so an amount
sent as a JSON number keeps every digit; NaN and Infinity are not JSON and are
refused. Text must be Unicode: a body that is not UTF-8, or a string holding
a lone surrogate (`"\\ud800"`, which no database or log can store), is malformed
JSON too. Outgoing `Decimal`s are written as JSON numbers with their exact
digits (`123.40` stays `123.40`), as the original Antaeus contract requires.

No web framework here: billing (the outbox events) and the API share it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import simplejson
import simplejson.encoder


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


#: the encoder `simplejson.dumps(obj, use_decimal=True, separators=(",", ":"),
#: ensure_ascii=False)` builds on every call, built once
_ENCODER = simplejson.JSONEncoder(use_decimal=True, separators=(",", ":"), ensure_ascii=False)


def _c_encoder() -> Callable[[Any], str] | None:
    """`_ENCODER`'s C encoder, made once (the worker writes an event per answer with it).

    `JSONEncoder.encode` makes a new one per call, which is half its time on a small
    object. Made from simplejson's own parts, checked against `_ENCODER` at import;
    None (and `_ENCODER.encode` is used) when simplejson has no C speedups or its
    parts are not as expected. No circular-reference check: nothing we write is.
    """
    make = getattr(simplejson.encoder, "c_make_encoder", None)
    if make is None:
        return None
    e = _ENCODER
    memo: dict[Any, Any] = {}
    try:
        encode = make(
            None,  # markers: no circular check, so no state left behind by an error
            e.default,
            simplejson.encoder.encode_basestring,  # ensure_ascii=False
            e.indent,
            e.key_separator,
            e.item_separator,
            e.sort_keys,
            e.skipkeys,
            e.allow_nan,
            memo,
            e.use_decimal,
            e.namedtuple_as_object,
            e.tuple_as_array,
            e.int_as_string_bitcount,
            e.item_sort_key,
            e.encoding,
            e.for_json,
            e.ignore_nan,
            Decimal,
            e.iterable_as_array,
        )
    except TypeError:
        return None

    def dumps(obj: Any) -> str:
        try:
            return "".join(encode(obj, 0))
        finally:
            memo.clear()

    sample = {"a": [1, Decimal("123.40"), None, True, 'ø\n"', 2.5], "b": {"c": "d"}}
    try:
        if dumps(sample) == e.encode(sample) and dumps("x") == e.encode("x"):
            return dumps
    except Exception:
        return None
    return None


_DUMPS: Final = _c_encoder() or _ENCODER.encode


def dumps(obj: Any) -> str:
    """Compact JSON text; `Decimal`s as exact JSON numbers, non-ASCII text as itself."""
    return _DUMPS(obj)


#: a str as `dumps` writes it (quoted, escaped, non-ASCII as itself): the same function
string: Final[Callable[[str], str]] = simplejson.encoder.encode_basestring


def rfc3339(moment: datetime) -> str:
    """A moment as the API and the events write it: RFC 3339 in UTC, with `Z`."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
