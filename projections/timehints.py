"""Time expressions in a query: "in May 2023", "on 9 May 2023", "2023-05-09", "in 2023".

Neither embeddings nor BM25 know that "May 2023" is a period: the semantic model
barely tells months apart, and the words match any memory that says "May". A search
therefore reads the first absolute time expression of its query text as a period and
ranks the memories dated within it first (see :func:`period_of` and the search's
``time_hints``). A memory's date is its metadata ``date`` (an ISO date or date-time:
when what it says happened, e.g. the day of a conversation), else the day it was
created.

Only absolute expressions are read: a day (``9 May 2023``, ``May 9, 2023``,
``2023-05-09``, with an optional weekday or ordinal), a month (``May 2023``), a year
after "in", "during" or "of" (``in 2023``). Relative ones ("last Tuesday") would need a
reference time the store does not have for the asker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = ["DATE_KEY", "Period", "date_of", "period_of"]

#: The metadata key naming when a memory's content happened.
DATE_KEY = "date"

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
            ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
            ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
            ("december", "dec"),
        ),
        1,
    )
    for name in names
}  # fmt: skip
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)\d\d)"
_PATTERNS = (
    ("day", re.compile(r"\b(?P<year>(?:19|20)\d\d)-(?P<month>[01]\d)-(?P<day>[0-3]\d)\b")),
    ("day", re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b", re.I)),
    ("day", re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.I)),
    ("month", re.compile(rf"\b{_MONTH},?\s+(?:of\s+)?{_YEAR}\b", re.I)),
    ("year", re.compile(rf"\b(?:in|during|of)\s+{_YEAR}\b", re.I)),
)

#: ``[start, end)`` days.
Period = tuple[date, date]


def period_of(query: str) -> Period | None:
    """The period the first absolute time expression of ``query`` names, if any."""
    found: list[tuple[int, Period]] = []
    for kind, pattern in _PATTERNS:
        match = pattern.search(query)
        if match is None:
            continue
        year = int(match["year"])
        try:
            if kind == "year":
                period = (date(year, 1, 1), date(year + 1, 1, 1))
            else:
                raw = match["month"].lower().rstrip(".")
                month = int(raw) if raw.isdigit() else _MONTHS[raw]
                if kind == "month":
                    end = date(year + month // 12, month % 12 + 1, 1)
                    period = (date(year, month, 1), end)
                else:
                    day = date(year, month, int(match["day"]))
                    period = (day, day + timedelta(days=1))
        except ValueError:  # 31 February and the like: not a date
            continue
        found.append((match.start(), period))
        if kind == "day":
            break  # the most precise reading of that spot
    if not found:
        return None
    # The earliest expression; at one spot, the most precise (days come first above).
    return min(found, key=lambda f: f[0])[1]


def date_of(metadata: Mapping[str, Any] | None, created_at: datetime | None) -> date | None:
    """A memory's date: metadata ``date`` (ISO date or date-time), else its creation day."""
    value = (metadata or {}).get(DATE_KEY)
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            pass
    if created_at is not None:
        return created_at.astimezone(UTC).date()
    return None
