"""CurrentRows: views of memories served from memory only while they are current."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from memstream.projections.rows import CurrentRows
from memstream.schemas.views import Memory, Parent

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def view(memory_id: str, offset: int, text: str = "a memory", **kw: object) -> Memory:
    fields: dict[str, object] = dict(
        memory_id=memory_id, namespace="user/a", subject="user/a", kind="fact",
        state="active", frozen=False, version=1, revision=0, text=text,
        content_hash="h-" + text, tags=["t"], metadata={"k": [1, 2]}, source=None,
        owner=None, visibility="private", priority=0, ttl_seconds=None,
        retention_days=None, parents=[Parent("p", 2)], created_at=NOW, updated_at=NOW,
        created_by="me", updated_by="me", offset=offset,
    )  # fmt: skip
    fields.update(kw)
    return Memory(**fields)  # type: ignore[arg-type]


def test_a_current_view_round_trips_and_each_caller_gets_its_own_copy() -> None:
    rows = CurrentRows()
    original = view("m1", 7)
    rows.put([original])
    found, missing = rows.get(["m1"], {"m1": 7}.get)
    assert missing == [] and found["m1"] == original
    assert msgspec.structs.asdict(found["m1"]) == msgspec.structs.asdict(original)
    assert found["m1"].updated_at.tzinfo is not None
    found["m1"].tags.append("changed by a caller")
    again, _ = rows.get(["m1"], {"m1": 7}.get)
    assert again["m1"].tags == ["t"]


def test_a_view_of_another_offset_is_dropped_and_reported_missing() -> None:
    rows = CurrentRows()
    rows.put([view("m1", 7), view("m2", 8)])
    # m1 changed since (offset 9 in the decision state); m3 was never cached; m2 is unknown
    # to the state (e.g. a replayed store without it): none of them is served.
    found, missing = rows.get(["m1", "m2", "m3"], {"m1": 9, "m3": 4}.get)
    assert found == {} and missing == ["m1", "m2", "m3"]
    assert len(rows) == 0  # stale views are gone, not kept for later
    rows.put([view("m1", 9, text="revised")])
    found, _ = rows.get(["m1"], {"m1": 9}.get)
    assert found["m1"].text == "revised"


def test_an_older_view_put_late_is_never_served() -> None:
    rows = CurrentRows()
    rows.put([view("m1", 9, text="new")])
    rows.put([view("m1", 7, text="old")])  # e.g. read from an older snapshot
    found, missing = rows.get(["m1"], {"m1": 9}.get)
    assert found == {} and missing == ["m1"]


def test_capacity_drops_the_oldest_puts_and_drop_forgets() -> None:
    rows = CurrentRows(capacity=3)
    rows.put([view(f"m{i}", i) for i in range(5)])
    state = {f"m{i}": i for i in range(5)}
    found, missing = rows.get([f"m{i}" for i in range(5)], state.get)
    assert sorted(found) == ["m2", "m3", "m4"] and missing == ["m0", "m1"]
    rows.put([view("m2", 2)])  # put again: now the newest
    rows.put([view("m5", 5)])
    state["m5"] = 5
    found, _ = rows.get(["m2", "m3", "m4", "m5"], state.get)
    assert sorted(found) == ["m2", "m4", "m5"]
    rows.drop(["m4"])
    assert "m4" not in rows.get(["m4"], state.get)[0]
    off = CurrentRows(capacity=0)
    off.put([view("m1", 1)])
    assert len(off) == 0
    with pytest.raises(ValueError, match="capacity"):
        CurrentRows(capacity=-1)
