"""Subscription cursors copied to a mirror (on Kafka: the partition-state topic), and adopted
from it by the next owner of a partition: the newest cursor wins, parked deliveries come
along, deletions and unparks travel as deletions."""

from __future__ import annotations

import time
from pathlib import Path

from memstream.pubsub.cursors import CursorStore, Parked, Position


class DictMirror:
    """What the partition-state topic holds for one partition, as a reader sees it."""

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}
        self.puts = 0

    def items(self) -> dict[str, bytes]:
        return dict(self.records)

    def put(self, key: str, value: bytes | None) -> None:
        self.puts += 1
        if value is None:
            self.records.pop(key, None)
        else:
            self.records[key] = value


def _parked(offset: int, reason: str = "bad data") -> Parked:
    return Parked("s", offset, f"ev-{offset}", f"m-{offset}", 2, reason, time.time())


def test_a_new_owner_adopts_the_cursor_and_parked_deliveries_the_last_one_left(tmp_path: Path):
    mirror = DictMirror()
    old = CursorStore(tmp_path / "w1" / "cursors.sqlite", mirror)
    old.save("s", Position(7, 41, frozenset({44, 46})))
    old.park(_parked(43), 7)
    old.park(_parked(45, "unreadable"), 7)
    old.save("other", Position(3, 9, frozenset()))
    old.close()

    new = CursorStore(tmp_path / "w2" / "cursors.sqlite", mirror)
    assert new.adopted == 4
    assert new.position("s", 7) == Position(7, 41, frozenset({44, 46}))
    assert new.position("other", 3) == Position(3, 9, frozenset())
    assert [(p.offset, p.reason) for p in new.parked("s", 7)] == [
        (43, "bad data"), (45, "unreadable"),
    ]  # fmt: skip
    new.close()


def test_a_fresher_cursor_of_its_own_is_kept_and_an_older_one_replaced(tmp_path: Path):
    mirror = DictMirror()
    w1 = CursorStore(tmp_path / "w1" / "cursors.sqlite", mirror)
    w1.save("s", Position(1, 10, frozenset()))
    stale = CursorStore(tmp_path / "w2" / "cursors.sqlite")  # kept no mirror meanwhile
    stale.save("s", Position(1, 5, frozenset()))
    stale.close()
    w1.save("s", Position(1, 20, frozenset()))  # the partition moved on at w1
    w1.close()
    back = CursorStore(tmp_path / "w2" / "cursors.sqlite", mirror)
    assert back.position("s", 1) == Position(1, 20, frozenset())
    back.save("s", Position(1, 30, frozenset()))
    back.close()

    w1 = CursorStore(tmp_path / "w1" / "cursors.sqlite", mirror)
    assert w1.position("s", 1) == Position(1, 30, frozenset())  # adopted, newer
    w1.close()
    stamp = CursorStore(tmp_path / "w3" / "cursors.sqlite")
    stamp.save("s", Position(1, 99, frozenset()))  # saved, not sent (a killed worker's)
    stamp.close()
    own = CursorStore(tmp_path / "w3" / "cursors.sqlite", mirror)
    assert own.position("s", 1) == Position(1, 99, frozenset())  # its own is newer: kept
    own.close()


def test_deleting_and_unparking_reach_the_mirror(tmp_path: Path):
    mirror = DictMirror()
    store = CursorStore(tmp_path / "cursors.sqlite", mirror)
    store.save("s", Position(7, 41, frozenset()))
    for offset in (43, 45, 47):
        store.park(_parked(offset), 7)
    assert len(mirror.records) == 4
    assert store.unpark("s", 7, [45, 99]) == 1
    assert len(mirror.records) == 3
    store.forget("s")
    assert mirror.records == {}
    store.close()
    fresh = CursorStore(tmp_path / "again.sqlite", mirror)
    assert fresh.adopted == 0 and fresh.position("s", 7) is None


def test_records_of_another_shape_are_left_alone(tmp_path: Path):
    mirror = DictMirror()
    mirror.records = {"not json": b"x", '["cursor", "s"]': b"{}", '["other", 1]': b"{}"}
    store = CursorStore(tmp_path / "cursors.sqlite", mirror)
    assert store.adopted == 0 and store.position("s", 1) is None
    store.close()
