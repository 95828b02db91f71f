"""Context for memories taken from a conversation: who said it, when, and to what.

A turn of a dialogue is often unintelligible alone. The search indexes embed and
keyword-index a memory's ``metadata["context"]`` with its text (see
:mod:`memstream.projections.context`); :func:`turn_context` writes that context for a
turn the same way every time::

    store.create("chat", "Guilty. Biscuit's a two-year-old beagle.", metadata={
        "speaker": "Maya", "date": "2023-05-09",
        "context": turn_context("Maya", date(2023, 5, 9),
                                previous=[("Tobias", "How is the new family member?")]),
    })
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

__all__ = ["turn_context"]

_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def spoken_date(day: date | datetime) -> str:
    """``Tuesday 9 May 2023``: the words a question about that day uses."""
    return f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


def turn_context(
    speaker: str | None,
    when: date | datetime | str | None = None,
    previous: Sequence[tuple[str, str]] = (),
) -> str:
    """``"Maya, Tuesday 9 May 2023, answering Tobias: How is the new family member?"``.

    ``when`` is a date (an ISO string is parsed) written out with its weekday and month
    name, so "in May 2023" or "on Tuesday" find it by keyword and by meaning; ``previous``
    are the turns just before, oldest first, as ``(speaker, text)``.
    """
    parts = []
    if speaker:
        parts.append(speaker)
    if isinstance(when, str):
        when = date.fromisoformat(when[:10])
    if when is not None:
        parts.append(spoken_date(when))
    head = ", ".join(parts)
    if previous:
        said = " ".join(f"{who}: {text}" for who, text in previous)
        head = f"{head}, answering {said}" if head else said
    return head
