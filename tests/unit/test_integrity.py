"""Integrity on open: a store verifies its log's hash chain from the position verified at
its previous open to the head, and refuses a broken log with an error naming the first bad
offset, unless it is opened read-only for inspection. Replays and rebuilds name the offset
of a record they cannot open.

The log is tampered with as an intruder (or a failing disk) would: with ``sqlite3`` on the
closed file, or beside the process that holds it open."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest
from memstream.streams.log import chain_hash
from memstream.streams.sealing import RecordCorrupt

from memstream import MemoryStore, errors


def fill(path: Path, n: int, **kw) -> list[str]:
    with MemoryStore.open(path, actor="tester", durability="os", **kw) as s:
        return [s.create("user/alice", f"memory {i}").memory_id for i in range(n)]


def sql(path: Path, statement: str, *args) -> None:
    db = sqlite3.connect(path / "log.sqlite")
    db.execute(statement, args)
    db.commit()
    db.close()


def flip(path: Path, offset: int, at: int | None = None) -> None:
    """Flip one bit of one byte of record ``offset``'s stored bytes (the middle one, or
    ``at``)."""
    db = sqlite3.connect(path / "log.sqlite")
    (data,) = db.execute('SELECT data FROM records WHERE "offset" = ?', (offset,)).fetchone()
    data = bytearray(data)
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    db.execute('UPDATE records SET data = ? WHERE "offset" = ?', (bytes(data), offset))
    db.commit()
    db.close()


def rechain(path: Path, start: int) -> None:
    """Recompute every chain hash from ``start`` on, as an intruder who knows the scheme
    would after rewriting a record."""
    db = sqlite3.connect(path / "log.sqlite")
    prev = (
        b"\x00" * 32
        if start == 0
        else db.execute('SELECT hash FROM records WHERE "offset" = ?', (start - 1,)).fetchone()[0]
    )
    rows = db.execute(
        'SELECT "offset", recorded_at, data FROM records WHERE "offset" >= ? ORDER BY "offset"',
        (start,),
    ).fetchall()
    for offset, recorded_at, data in rows:
        prev = chain_hash(prev, offset, recorded_at, data)
        db.execute('UPDATE records SET hash = ? WHERE "offset" = ?', (prev, offset))
    db.commit()
    db.close()


def open_store(path: Path, **kw) -> MemoryStore:
    return MemoryStore.open(path, actor="tester", durability="os", **kw)


def refused(path: Path, offset: int) -> errors.LogTampered:
    with pytest.raises(errors.LogTampered) as info:
        open_store(path)
    e = info.value
    assert e.offset == offset, str(e)
    message = str(e)
    assert f"offset {offset}" in message
    assert "memstream audit verify --store" in message and "read-only" in message
    # refused before anything was served: the lock is released, a read-only open works
    with open_store(path, read_only=True) as s:
        assert s.runtime.broken is not None and s.runtime.broken.offset == offset
    return e


# -- what open catches ---------------------------------------------------------------------------


def test_a_flipped_byte_refuses_the_open_naming_the_offset(tmp_path):
    fill(tmp_path / "s", 10)
    flip(tmp_path / "s", 4)
    refused(tmp_path / "s", 4)


@pytest.mark.parametrize(
    ("statement", "offset"),
    [
        ('UPDATE records SET hash = zeroblob(32) WHERE "offset" = ?', 6),
        ('UPDATE records SET recorded_at = recorded_at + 1 WHERE "offset" = ?', 6),
        ('DELETE FROM records WHERE "offset" = ?', 6),
    ],
    ids=["chain-column", "recorded-at", "deleted-row"],
)
def test_a_changed_hash_time_or_deleted_row_refuses_the_open(tmp_path, statement, offset):
    fill(tmp_path / "s", 10)
    sql(tmp_path / "s", statement, offset)
    refused(tmp_path / "s", offset)


def test_a_truncated_log_refuses_the_open(tmp_path):
    """Records the store held (verified, projected) are gone from the end of the log."""
    fill(tmp_path / "s", 10)
    with open_store(tmp_path / "s"):
        pass  # verified up to offset 9
    sql(tmp_path / "s", 'DELETE FROM records WHERE "offset" >= ?', 7)
    e = refused(tmp_path / "s", 7)
    assert "missing" in str(e)


def test_the_checkpointed_record_is_checked_again(tmp_path):
    """The last record verified at the previous open (the checkpoint) is checked at the
    next one: its bytes and its hash."""
    fill(tmp_path / "s", 10)
    with open_store(tmp_path / "s") as s:
        assert s.runtime.open_check.records == 10
    flip(tmp_path / "s", 9)
    refused(tmp_path / "s", 9)


def test_a_rewritten_and_rechained_record_is_found_by_the_projection(tmp_path):
    """An intruder rewrites record 3 and recomputes every hash after it: the chain is
    consistent again, but the projection holds the chain hash of every record it projected,
    and open names the first record whose hash changed."""
    fill(tmp_path / "s", 10)
    flip(tmp_path / "s", 3)
    rechain(tmp_path / "s", 3)
    refused(tmp_path / "s", 3)
    # also below a checkpoint
    fill(tmp_path / "t", 10)
    with open_store(tmp_path / "t"):
        pass
    flip(tmp_path / "t", 2)
    rechain(tmp_path / "t", 2)
    refused(tmp_path / "t", 2)


def test_a_flip_before_the_checkpoint_is_left_to_audit_verify(tmp_path):
    """Open verifies what is new since the previous open, and the checkpointed record; an
    older record is `audit verify`'s (documented in README and docs/events.md)."""
    fill(tmp_path / "s", 10)
    with open_store(tmp_path / "s"):
        pass  # verified up to offset 9
    flip(tmp_path / "s", 4)
    with open_store(tmp_path / "s") as s:
        assert s.runtime.open_check.records == 0
        brk = s.verify()
        assert brk is not None and brk.offset == 4


def test_a_reopen_verifies_only_what_was_appended_since(tmp_path):
    seen: dict[str, int] = {}

    def progress(what: str, total: int):
        seen[what] = total
        return lambda n: None

    fill(tmp_path / "s", 30)
    with open_store(tmp_path / "s", progress=progress) as s:
        check = s.runtime.open_check
        assert (check.start, check.records, check.broken) == (0, 30, None)
        for i in range(7):
            s.create("user/alice", f"later {i}")
    assert seen.get("verifying the log") == 30
    seen.clear()
    with open_store(tmp_path / "s", progress=progress) as s:
        check = s.runtime.open_check
        assert (check.start, check.records) == (30, 7)
    assert seen.get("verifying the log") == 7
    with open_store(tmp_path / "s") as s:
        assert s.runtime.open_check.records == 0


def test_records_not_yet_projected_are_verified_as_they_are_caught_up(tmp_path):
    """A rebuild (the projection is gone) verifies every record as it projects it, and
    projects nothing from the break on."""
    fill(tmp_path / "s", 12)
    shutil.rmtree(tmp_path / "s" / "state")
    flip(tmp_path / "s", 8)
    refused(tmp_path / "s", 8)
    with open_store(tmp_path / "s", read_only=True) as s:
        assert s.runtime.projected_offset == 7
        assert len(s.audit(limit=100).entries) == 8


# -- read-only, for inspection -------------------------------------------------------------------


def test_a_broken_store_opens_read_only_serves_reads_and_refuses_writes(tmp_path, caplog):
    ids = fill(tmp_path / "s", 10)
    flip(tmp_path / "s", 4)
    with caplog.at_level(logging.WARNING), open_store(tmp_path / "s", read_only=True) as s:
        assert any("offset 4" in r.getMessage() for r in caplog.records), caplog.text
        assert s.runtime.read_only
        assert s.get(ids[0]).text == "memory 0"
        assert len(s.audit(limit=100).entries) == 10  # projected before the tampering
        brk = s.verify()
        assert brk is not None and brk.offset == 4
        with pytest.raises(errors.StoreReadOnly, match="read-only"):
            s.create("user/alice", "not now")
        with pytest.raises(errors.StoreReadOnly):
            s.revise(ids[1], "nor this")
        s.flush()  # returns: nothing beyond the break is waited for
        with s.replay(tmp_path / "before", to=3) as before:  # what precedes the break
            assert before.head == 3 and before.get(ids[3]).text == "memory 3"
        with pytest.raises(errors.LogTampered, match="offset 4"):
            s.replay(tmp_path / "all")
    assert sqlite3.connect(tmp_path / "s" / "log.sqlite").execute(
        "SELECT count(*) FROM records"
    ).fetchone() == (10,)


def test_read_only_does_not_create_a_store(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_store(tmp_path / "nothing", read_only=True)
    assert not (tmp_path / "nothing").exists()


def test_a_sound_store_opened_read_only_refuses_writes_and_keeps_its_checkpoint(tmp_path):
    fill(tmp_path / "s", 5)
    with open_store(tmp_path / "s", read_only=True) as s:
        assert s.runtime.broken is None and s.runtime.open_check.records == 5
        with pytest.raises(errors.StoreReadOnly):
            s.create("user/alice", "no")
    with open_store(tmp_path / "s") as s:  # read-only advanced nothing
        assert s.runtime.open_check.records == 5


def test_the_error_is_exported():
    import memstream

    assert memstream.LogTampered is errors.LogTampered
    assert issubclass(errors.LogTampered, RuntimeError)


# -- replay and rebuild name the offset ------------------------------------------------------------


def test_a_rebuild_names_the_offset_of_a_record_it_cannot_decode(tmp_path):
    """The bytes of record 5 are no longer JSON and the chain was recomputed: the rebuild
    (the projection is gone) names the record, not only 'JSON is malformed'."""
    fill(tmp_path / "s", 10)
    flip(tmp_path / "s", 5, at=0)
    rechain(tmp_path / "s", 5)
    shutil.rmtree(tmp_path / "s" / "state")
    with pytest.raises(RecordCorrupt) as info:
        open_store(tmp_path / "s")
    message = str(info.value)
    assert "offset 5" in message and "malformed" in message and "audit verify" in message


def test_a_replay_names_the_offset_of_a_broken_record(tmp_path):
    """Records tampered with while the store is open: a replay projects from the log, checks
    the chain as it goes, and names the first bad record."""
    with open_store(tmp_path / "s") as s:
        for i in range(20):
            s.create("user/alice", f"memory {i}")
        flip(tmp_path / "s", 12)
        with pytest.raises(errors.LogTampered) as info:
            s.replay(tmp_path / "r1")
        assert info.value.offset == 12 and "offset 12" in str(info.value)
        assert list((tmp_path / "r1").iterdir()) == []
        flip(tmp_path / "s", 12)  # as it was; now the chain is consistent, but not JSON:
        flip(tmp_path / "s", 14, at=0)
        rechain(tmp_path / "s", 14)
        with pytest.raises(RecordCorrupt) as corrupt:
            s.replay(tmp_path / "r2")
        message = str(corrupt.value)
        assert "offset 14" in message and "audit verify" in message


def test_the_feed_names_the_offset_of_a_record_it_cannot_open(tmp_path):
    """A reader of past decided events (the feed) opens records from the log again; one
    damaged before the verified position (open does not read it) is named by offset."""
    fill(tmp_path / "s", 6)
    with open_store(tmp_path / "s"):
        pass  # verified up to offset 5
    flip(tmp_path / "s", 2, at=0)
    with open_store(tmp_path / "s") as s:
        with pytest.raises(RecordCorrupt, match="offset 2"):
            next(iter(s.follow(0, idle=0.1)))
