"""The embedded log: dense offsets, atomic batches, monotonic time, idempotent ids, the
hash chain, and sealing: no plaintext on disk, tombstones after a key is destroyed."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid

import pytest
from memstream.streams import log as logmod
from memstream.streams.log import EmbeddedLog

from memstream import MemoryStore


def rec(i: int, data: bytes | None = None) -> tuple[bytes, str, bytes]:
    return (uuid.UUID(int=i + 1).bytes, "ns", data if data is not None else b"record %d" % i)


def test_offsets_are_dense_and_survive_reopen(tmp_path):
    log = EmbeddedLog(tmp_path / "log.sqlite")
    a = log.append([rec(i) for i in range(3)])
    b = log.append([rec(i) for i in range(3, 5)])
    assert [x.offset for x in a + b] == [0, 1, 2, 3, 4]
    log_id = log.log_id
    log.close()
    log = EmbeddedLog(tmp_path / "log.sqlite")
    assert log.log_id == log_id and log.next_offset == 5
    assert [r.data for batch in log.read(0) for r in batch] == [b"record %d" % i for i in range(5)]
    assert [r.offset for batch in log.read(2, 4) for r in batch] == [2, 3]


@pytest.mark.parametrize(("size", "bad"), [(5, 3), (300, 3), (300, 299)])
def test_a_failed_batch_leaves_nothing(tmp_path, size, bad):
    """A row that fails (NOT NULL) fails the whole batch: in a batch of one statement, and
    in one of several (300 rows: 256 + 44), also when the failing row is in a later
    statement than rows already inserted."""
    log = EmbeddedLog(tmp_path / "log.sqlite")
    log.append([rec(0)])
    batch = [rec(i) for i in range(1, size + 1)]
    batch[bad] = (batch[bad][0], None, batch[bad][2])  # type: ignore[assignment]
    with pytest.raises(sqlite3.IntegrityError):
        log.append(batch)
    assert log.next_offset == 1
    assert [r.offset for b in log.read(0) for r in b] == [0]
    assert log.append([rec(9)])[0].offset == 1
    assert log.verify() is None
    log.close()
    assert EmbeddedLog(tmp_path / "log.sqlite").next_offset == 2


def test_recorded_at_never_goes_backwards(tmp_path, monkeypatch):
    log = EmbeddedLog(tmp_path / "log.sqlite")
    log.append([rec(0)])
    t0 = next(log.read(0))[0].recorded_at
    monkeypatch.setattr(logmod.time, "time_ns", lambda: (t0 - 3_600_000_000) * 1000)
    log.append([rec(1)])
    times = [r.recorded_at for b in log.read(0) for r in b]
    assert times[1] >= times[0]


def test_a_repeated_event_id_is_not_appended_twice(tmp_path):
    log = EmbeddedLog(tmp_path / "log.sqlite")
    first = log.append([rec(0), rec(1)])
    again = log.append([rec(1), rec(2), rec(2)])
    assert again[0].duplicate and again[0].offset == first[1].offset
    assert not again[1].duplicate and again[1].offset == 2
    assert again[2].duplicate and again[2].offset == 2
    assert log.next_offset == 3


def tamper(path, offset: int, sql: str) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, (offset,))
    db.commit()
    db.close()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE records SET data = CAST(replace(CAST(data AS TEXT), 'record', 'RECORD') AS BLOB) "
        'WHERE "offset" = ?',
        'UPDATE records SET recorded_at = recorded_at + 1 WHERE "offset" = ?',
        'DELETE FROM records WHERE "offset" = ?',
    ],
    ids=["bytes", "time", "deleted"],
)
def test_verify_names_the_first_broken_record(tmp_path, sql):
    path = tmp_path / "log.sqlite"
    log = EmbeddedLog(path)
    for i in range(0, 20, 5):
        log.append([rec(j) for j in range(i, i + 5)])
    assert log.verify() is None
    tamper(path, 7, sql)
    brk = EmbeddedLog(path).verify()
    assert brk is not None and brk.offset == 7, brk


def test_store_verify_catches_an_edited_payload(store: MemoryStore):
    for i in range(5):
        store.create("user/alice", f"memory {i}")
    assert store.verify() is None
    db = sqlite3.connect(store.path / "log.sqlite")
    data = db.execute('SELECT data FROM records WHERE "offset" = 3').fetchone()[0]
    db.execute('UPDATE records SET data = ? WHERE "offset" = 3', (data.replace(b"user", b"USER"),))
    db.commit()
    db.close()
    brk = store.verify()
    assert brk is not None and brk.offset == 3


def test_no_plaintext_reaches_the_log_file(tmp_path):
    secret = "Alice's passport number is X1234567 and she fears spiders"
    with MemoryStore.open(tmp_path / "s") as s:
        mid = s.create("user/alice", secret, tags=["very-private-tag"]).memory_id
        s.revise(mid, secret + " (revised)", metadata={"nickname": "spider-fearer"})
        s.archive(mid, reason="a reason that names Alice's fear of spiders")
        s.flush()
        assert s.get(mid).text.startswith(secret)
    raw = b"".join(p.read_bytes() for p in (tmp_path / "s").glob("log.sqlite*"))
    for needle in ("passport", "X1234567", "spiders", "very-private-tag", "spider-fearer"):
        assert needle.encode() not in raw, needle
    # The envelope stays readable for audits without keys.
    assert b"user/alice" in raw and mid.encode() in raw


def test_a_ciphertext_cannot_be_moved_to_another_record(store: MemoryStore):
    a = store.create("user/alice", "first secret")
    b = store.create("user/alice", "second secret")
    recs = [r for batch in store.runtime.log.read(0) for r in batch]
    import msgspec
    from memstream.schemas.record import StoredEvent
    from memstream.streams.sealing import RecordCorrupt

    sa = msgspec.json.decode(recs[a.offset].data, type=StoredEvent)
    sb = msgspec.json.decode(recs[b.offset].data, type=StoredEvent)
    forged = msgspec.json.encode(msgspec.structs.replace(sb, sealed=sa.sealed))
    with pytest.raises(RecordCorrupt, match="authentication"):
        store.runtime.sealer.open(forged)


def _wal_bytes(path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_the_wal_is_checkpointed_off_the_append_path_and_starts_over(tmp_path):
    """Appends never checkpoint inside their commit; a thread copies the WAL into the
    database file, the log finishes each pass, and the WAL starts over instead of growing."""
    path = tmp_path / "log.sqlite"
    log = EmbeddedLog(path, checkpoint_bytes=64 * 1024)
    blob = bytes(range(256)) * 16  # 4 KB per record, 400 KB per batch
    peak = 0
    for b in range(40):  # 16 MB in all
        log.append([rec(b * 100 + i, blob + b"%d" % i) for i in range(100)])
        peak = max(peak, _wal_bytes(path))
    assert any(t.name == "memstream-checkpoint" for t in threading.enumerate())
    # the database file holds most of what was appended, while the log is open
    assert path.stat().st_size > 8 * 1024 * 1024
    # SQLite would keep every page in the WAL with no checkpoint at all (16 MB and more)
    assert peak < 6 * 1024 * 1024, peak
    log.close()
    assert not any(t.name == "memstream-checkpoint" for t in threading.enumerate())
    log = EmbeddedLog(path)
    assert log.next_offset == 4000 and log.verify() is None
    log.close()


def test_a_failing_checkpoint_never_fails_an_append(tmp_path, caplog):
    path = tmp_path / "log.sqlite"
    log = EmbeddedLog(path, checkpoint_bytes=64 * 1024)
    connect = log._checkpointer._connect

    def broken():
        raise sqlite3.OperationalError("disk I/O error")

    log._checkpointer._connect = broken
    blob = b"x" * 4096
    for b in range(20):  # 8 MB; every pass fails
        assert len(log.append([rec(b * 100 + i, blob) for i in range(100)])) == 100
        time.sleep(0.01)
    assert "background checkpoint failed: disk I/O error" in caplog.text
    stuck = _wal_bytes(path)
    assert stuck > 6 * 1024 * 1024  # nothing was copied out of the WAL
    log._checkpointer._connect = connect  # the disk is back: checkpoints resume
    for b in range(20, 40):
        log.append([rec(b * 100 + i, blob) for i in range(100)])
        time.sleep(0.01)
    assert path.stat().st_size > 8 * 1024 * 1024
    log.close()
    log = EmbeddedLog(path)
    assert log.next_offset == 4000 and log.verify() is None
    log.close()


def test_a_log_that_only_reads_starts_no_checkpointer(tmp_path):
    path = tmp_path / "log.sqlite"
    log = EmbeddedLog(path)
    log.append([rec(0)])
    log.close()
    log = EmbeddedLog(path, create=False)
    assert [r.offset for b in log.read(0) for r in b] == [0]
    assert not any(t.name == "memstream-checkpoint" for t in threading.enumerate())
    log.close()


def test_appends_keep_their_pace_beside_a_busy_python_thread(tmp_path):
    """A batch goes in as one statement, not a step per record: Python releases the
    interpreter lock around each step, and beside a thread that keeps it busy every step
    waits up to the switch interval (5 ms) to take it back. 2,000 records, 100 a batch:
    about 0.1 s here when alone; a step per record took about 14 s beside the spinning
    thread, a statement per batch well under 3."""
    log = EmbeddedLog(tmp_path / "log.sqlite", durability="os")
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    busy = threading.Thread(target=spin)
    busy.start()
    try:
        t = time.perf_counter()
        for b in range(20):
            log.append([rec(b * 100 + i, b"x" * 1000) for i in range(100)])
        took = time.perf_counter() - t
    finally:
        stop.set()
        busy.join()
    assert log.next_offset == 2_000 and log.verify() is None
    log.close()
    assert took < 3.0, f"2,000 records beside a busy thread took {took:.1f} s"
