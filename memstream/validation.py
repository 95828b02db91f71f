"""Arguments checked at the edge, once for every face: a :class:`BadRequest` naming the
parameter, before anything reaches the log, DuckDB or the indexes.

The service (:class:`~memstream.service.MemoryService`) checks every read's parameters
here; the SDK's operations check what they build an event from with
:func:`event_value` (a :class:`MalformedEvent` naming the field). Integers are range
checked (a log offset, a version, a limit fits a signed 64-bit integer), times must carry
a timezone (a ``datetime`` or an RFC 3339 string), and strings must be encodable as UTF-8
(a lone surrogate, U+D800..U+DFFF, is refused with the field's name).
"""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from memstream.errors import BadRequest, MalformedEvent
from memstream.schemas.codec import LONE_SURROGATE, lone_surrogate

__all__ = [
    "INT64_MAX",
    "boolean",
    "callback",
    "integer",
    "mapping",
    "number",
    "path",
    "point",
    "strings",
    "text",
    "time",
    "vector",
]

#: The largest log offset, version or count: DuckDB and SQLite store them as BIGINT.
INT64_MAX = 2**63 - 1
#: The longest text a read takes (a search query, a filter value).
MAX_TEXT = 100_000
#: The most values a list parameter takes (namespaces, tags, states).
MAX_ITEMS = 10_000


def _kind(value: Any) -> str:
    return type(value).__name__


def _no_surrogate(value: str, field: str) -> str:
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise BadRequest(f"field {field} {LONE_SURROGATE}", field=field) from None
    return value


def text(value: Any, field: str, *, optional: bool = True, max_length: int = MAX_TEXT) -> Any:
    """A string (None if ``optional``), UTF-8 encodable, at most ``max_length`` characters."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string, not {_kind(value)}", field=field)
    if len(value) > max_length:
        raise BadRequest(
            f"{field} is {len(value)} characters long, over the limit of {max_length}",
            field=field,
        )
    return _no_surrogate(value, field)


def strings(value: Any, field: str, *, max_items: int = MAX_ITEMS) -> list[str] | None:
    """None, or a list (or tuple) of strings; a lone string is refused (not split)."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
        raise BadRequest(f"{field} must be a list of strings, not {_kind(value)}", field=field)
    if len(value) > max_items:
        raise BadRequest(f"{field} has {len(value)} values, over the limit of {max_items}", field)
    return [text(v, f"{field}[{i}]", optional=False) for i, v in enumerate(value)]


def integer(
    value: Any,
    field: str,
    *,
    optional: bool = True,
    minimum: int = 0,
    maximum: int = INT64_MAX,
) -> Any:
    """An ``int`` (not a bool) from ``minimum`` to ``maximum`` (None if ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{field} must be an integer, not {_kind(value)}", field=field)
    if not minimum <= value <= maximum:
        shown = str(value) if abs(value) < 10**30 else f"an integer of {len(str(value))} digits"
        raise BadRequest(
            f"{field} must be an integer from {minimum} to {maximum}, not {shown}", field=field
        )
    return value


def number(value: Any, field: str, *, optional: bool = True, minimum: float, maximum: float) -> Any:
    """A finite real number (int or float, not a bool) within [minimum, maximum]."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{field} must be a number, not {_kind(value)}", field=field)
    # an int is compared as it is: one too large for a float would overflow ``isfinite``
    finite = isinstance(value, int) or math.isfinite(value)
    if not (finite and minimum <= value <= maximum):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise BadRequest(f"{field} must be within [{minimum}, {maximum}], not {shown}", field)
    return float(value)


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{field} must be True or False, not {_kind(value)}", field=field)
    return value


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise BadRequest(
            f"{field} has no timezone; pass an aware datetime (datetime(..., tzinfo=UTC)) "
            "or an RFC 3339 time such as 2026-01-01T12:00:00Z",
            field=field,
        )
    return value


def _parse_time(value: str, field: str) -> datetime:
    value = text(value, field, optional=False, max_length=100)
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest(
            f"{field}: {value!r} is not an RFC 3339 time such as 2026-01-01T12:00:00Z",
            field=field,
        ) from None
    return _aware(when, field)


def time(value: Any, field: str) -> datetime | None:
    """None, an aware ``datetime``, or an RFC 3339 string with its timezone."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return _aware(value, field)
    if isinstance(value, str):
        return _parse_time(value, field)
    raise BadRequest(
        f"{field} must be a datetime with a timezone or an RFC 3339 string, not {_kind(value)}",
        field=field,
    )


def point(value: Any, field: str) -> datetime | int | None:
    """A point in the log: None, an offset (an int >= 0), an aware datetime, or the text
    of either (an integer, or an RFC 3339 time)."""
    if value is None or isinstance(value, datetime):
        return time(value, field)
    if isinstance(value, int) and not isinstance(value, bool):
        return integer(value, field)
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.lstrip("-").isdigit() and len(stripped) <= 30:
            return integer(int(stripped), field)
        if stripped.lstrip("-").isdigit():
            return integer(10**30, field)  # the message names the range
        return _parse_time(value, field)
    raise BadRequest(
        f"{field} must be a log offset (an int) or a time (a datetime with a timezone, or an "
        f"RFC 3339 string), not {_kind(value)}",
        field=field,
    )


def vector(value: Any, field: str, *, max_length: int = 8192) -> list[float] | None:
    """None, or a sequence (or numpy array) of finite floats."""
    if value is None:
        return None
    if hasattr(value, "tolist") and not isinstance(value, list):
        value = value.tolist()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise BadRequest(f"{field} must be a list of floats, not {_kind(value)}", field=field)
    if not 1 <= len(value) <= max_length:
        raise BadRequest(f"{field} must have 1 to {max_length} floats, not {len(value)}", field)
    out = []
    for i, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
            raise BadRequest(f"{field}[{i}] must be a finite float, not {x!r:.40}", field=field)
        out.append(float(x))
    return out


def mapping(value: Any, field: str) -> dict[str, Any]:
    """None (an empty dict), or a dict with string keys and JSON values."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest(f"{field} must be a dict, not {_kind(value)}", field=field)
    bad = json_value(dict(value), field)
    if bad is not None:
        where, why = bad
        raise BadRequest(why if why.startswith(where) else f"{where}: {why}", field=where)
    return dict(value)


def json_value(value: Any, field: str, depth: int = 0) -> tuple[str, str] | None:
    """(field, why) of the first part of ``value`` that is not JSON (a non-string key, a
    lone surrogate, a float that is not finite, an integer outside 64 bits, another type),
    or None."""
    if depth > 32:
        return field, f"{field} is nested more than 32 levels deep"
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        where = lone_surrogate(value, field)
        return (field, f"the text {LONE_SURROGATE}") if where else None
    if isinstance(value, int):
        if -(2**63) <= value <= INT64_MAX:
            return None
        return field, f"{field} is an integer outside the signed 64-bit range"
    if isinstance(value, float):
        return None if math.isfinite(value) else (field, f"{field} must be finite, not {value}")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                return field, f"{field} has a key that is not a string: {k!r:.40}"
            if lone_surrogate(k, field):
                return field, f"a key of {field} {LONE_SURROGATE}"
            bad = json_value(v, f"{field}.{k}", depth + 1)
            if bad is not None:
                return bad
        return None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            bad = json_value(v, f"{field}[{i}]", depth + 1)
            if bad is not None:
                return bad
        return None
    return field, f"{field} must be JSON (a string, number, bool, null, list or dict), not " + (
        _kind(value)
    )


def event_value(value: Any, field: str) -> None:
    """Refuse a part of an event built in Python that is not JSON, with a
    :class:`MalformedEvent` naming its path (``$.payload.metadata.k``)."""
    bad = json_value(value, field)
    if bad is not None:
        why = bad[1].replace(f"{bad[0]} ", "", 1)
        raise MalformedEvent(why if why != bad[1] else bad[1], field=bad[0])


def path(value: Any, field: str) -> Path:
    """A filesystem path: a non-empty string or ``os.PathLike``, UTF-8 encodable, no NUL."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field} must be a non-empty path, not {_kind(value)}", field=field)
    _no_surrogate(value, field)
    if "\x00" in value:
        raise BadRequest(f"{field} contains a NUL character", field=field)
    if "\\" in value or any(unicodedata.category(ch) == "Cc" for ch in value):
        # DuckDB reads a backslash as a separator (so the store would land elsewhere), and
        # no store's path needs a control character.
        raise BadRequest(
            f"{field} contains a backslash or a control character; choose a plain path",
            field=field,
        )
    return Path(value).expanduser()


def callback(value: Any, field: str) -> Callable[..., Any] | None:
    if value is not None and not callable(value):
        raise BadRequest(f"{field} must be callable or None, not {_kind(value)}", field=field)
    return value
