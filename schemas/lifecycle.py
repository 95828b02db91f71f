"""The memory lifecycle: every state × every operation, frozen included.

This table is the specification. ``docs/lifecycle.md`` prints the same matrix for people,
and a test checks every cell of that document against :func:`rule`, so the two cannot drift.

States (MemOS): ``active`` → ``activated`` (hot, has a KV cache) → ``archived`` (cold, out
of default search) → ``expired`` (out of every index, kept for audit). ``merged`` marks the
sources fused into a new memory. ``erased`` is terminal: the subject's key was destroyed.
``frozen`` is a flag (legal hold) over any state but ``erased``: while it is set, nothing
but ``unfreeze`` is accepted: no revision, no expiry, no erasure.

``merge_source`` is the operation as seen by each *source* of a merge; the merged memory
itself is created like ``create`` (it must not exist yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["active", "activated", "archived", "expired", "merged", "erased"]
STATES: tuple[str, ...] = ("active", "activated", "archived", "expired", "merged", "erased")
#: Row label of the matrix for a memory that does not exist (yet).
ABSENT = "absent"

OPERATIONS: tuple[str, ...] = (
    "create",
    "revise",
    "activate",
    "merge_source",
    "archive",
    "restore",
    "rollback",
    "expire",
    "freeze",
    "unfreeze",
    "erase",
    "artifact_built",
)

#: Operations that write a new version of the content.
CONTENT_OPERATIONS = frozenset({"create", "revise", "merge", "rollback"})


@dataclass(frozen=True)
class Rule:
    """One cell: allowed (with the next state) or forbidden (with a reason code)."""

    allowed: bool
    next_state: str | None = None
    code: str | None = None


def ok(state: str) -> Rule:
    return Rule(True, next_state=state)


def no(code: str) -> Rule:
    return Rule(False, code=code)


def _row(**cells: Rule) -> dict[str, Rule]:
    missing = set(OPERATIONS) - set(cells)
    extra = set(cells) - set(OPERATIONS)
    if missing or extra:
        raise ValueError(
            f"lifecycle row incomplete: missing {sorted(missing)}, extra {sorted(extra)}"
        )
    return cells


# Reason codes: every rejection carries one (and a sentence naming the memory and the fix).
UNKNOWN = "unknown_memory"
EXISTS = "already_exists"
INVALID = "invalid_transition"
FROZEN = "frozen"
ERASED = "erased"

#: (state, operation) → rule, for memories that are not frozen; ``absent`` is the row of a
#: memory that does not exist.
TABLE: dict[str, dict[str, Rule]] = {
    ABSENT: _row(
        create=ok("active"),
        revise=no(UNKNOWN), activate=no(UNKNOWN), merge_source=no(UNKNOWN),
        archive=no(UNKNOWN), restore=no(UNKNOWN), rollback=no(UNKNOWN),
        expire=no(UNKNOWN), freeze=no(UNKNOWN), unfreeze=no(UNKNOWN),
        erase=no(UNKNOWN), artifact_built=no(UNKNOWN),
    ),
    "active": _row(
        create=no(EXISTS), revise=ok("active"), activate=ok("activated"),
        merge_source=ok("merged"), archive=ok("archived"), restore=no(INVALID),
        rollback=ok("active"), expire=ok("expired"), freeze=ok("active"),
        unfreeze=no(INVALID), erase=ok("erased"), artifact_built=ok("active"),
    ),
    "activated": _row(
        create=no(EXISTS), revise=ok("activated"), activate=no(INVALID),
        merge_source=ok("merged"), archive=ok("archived"), restore=no(INVALID),
        rollback=ok("activated"), expire=ok("expired"), freeze=ok("activated"),
        unfreeze=no(INVALID), erase=ok("erased"), artifact_built=ok("activated"),
    ),
    "archived": _row(
        create=no(EXISTS), revise=no(INVALID), activate=no(INVALID),
        merge_source=ok("merged"), archive=no(INVALID), restore=ok("active"),
        rollback=no(INVALID), expire=ok("expired"), freeze=ok("archived"),
        unfreeze=no(INVALID), erase=ok("erased"), artifact_built=no(INVALID),
    ),
    "expired": _row(
        create=no(EXISTS), revise=no(INVALID), activate=no(INVALID),
        merge_source=no(INVALID), archive=no(INVALID), restore=no(INVALID),
        rollback=no(INVALID), expire=no(INVALID), freeze=ok("expired"),
        unfreeze=no(INVALID), erase=ok("erased"), artifact_built=no(INVALID),
    ),
    "merged": _row(
        create=no(EXISTS), revise=no(INVALID), activate=no(INVALID),
        merge_source=no(INVALID), archive=no(INVALID), restore=no(INVALID),
        rollback=no(INVALID), expire=ok("expired"), freeze=ok("merged"),
        unfreeze=no(INVALID), erase=ok("erased"), artifact_built=no(INVALID),
    ),
    "erased": _row(
        create=no(EXISTS), revise=no(ERASED), activate=no(ERASED),
        merge_source=no(ERASED), archive=no(ERASED), restore=no(ERASED),
        rollback=no(ERASED), expire=no(ERASED), freeze=no(ERASED),
        unfreeze=no(ERASED), erase=no(ERASED), artifact_built=no(ERASED),
    ),
}  # fmt: skip

#: The frozen row, for any state but ``erased``: only ``unfreeze`` is accepted and it keeps
#: the state. ``create`` still says the memory exists.
FROZEN_ROW: dict[str, Rule] = {
    op: (no(EXISTS) if op == "create" else no(FROZEN)) for op in OPERATIONS
} | {"unfreeze": Rule(True, next_state=None)}


def rule(state: str, frozen: bool, operation: str) -> Rule:
    """The rule for ``operation`` on a memory in ``state`` (``absent`` if it does not exist).

    For the frozen ``unfreeze`` rule ``next_state`` is ``None``: the state is kept.
    """
    if frozen and state not in (ABSENT, "erased"):
        return FROZEN_ROW[operation]
    return TABLE[state][operation]
