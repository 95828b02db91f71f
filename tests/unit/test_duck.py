"""DuckStore.write: new memories inserted, changed ones replaced, artifacts
upserted, offsets and key generations written only when they move, and a batch that
contradicts the table refused whole."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
import pytest
from memstream.projections.core import (
    ARTIFACT_COLUMNS,
    AUDIT_COLUMNS,
    MEMORY_COLUMNS,
    TRANSITION_COLUMNS,
    VERSION_COLUMNS,
    CoreBatch,
)
from memstream.projections.duck import DuckStore, prepare
from memstream.schemas.memcube import MemState


def _state(mid: str, version: int, created: int, updated: int, **kw) -> MemState:
    return MemState(
        memory_id=mid, namespace="user/a", subject="user/a", kind="plaintext", state="active",
        version=version, revision=version, tags=kw.pop("tags", ()), created_at=created,
        updated_at=updated, created_by="t", updated_by="t", created_offset=created,
        updated_offset=updated, **kw,
    )  # fmt: skip


def _batch(first: int, last: int, *states: MemState, gens: dict[str, int] | None = None):
    b = CoreBatch(first_offset=first, last_offset=last)
    for off in range(first, last + 1):
        row = dict.fromkeys(AUDIT_COLUMNS)
        row.update(offset=off, event_id=f"e{off}", type="create", status="accepted")
        b.audit.add(*row.values())
    b.memories = {m.memory_id: m for m in states}
    b.key_generations = dict(gens or {})
    return b


def _memories(duck: DuckStore) -> dict[str, tuple]:
    rows = duck.query("SELECT memory_id, version, tags, updated_offset FROM memories")
    return {r["memory_id"]: (r["version"], r["tags"], r["updated_offset"]) for r in rows}


def test_new_memories_are_inserted_and_changed_ones_updated(tmp_path: Path) -> None:
    duck = DuckStore(tmp_path / "core.duckdb")
    try:
        duck.write(_batch(0, 1, _state("a", 1, 0, 0), _state("b", 1, 1, 1)))
        # "a" revised, "c" created: one UPDATE and one INSERT in the same transaction
        duck.write(
            _batch(2, 3, _state("a", 2, 0, 2, tags=("x", "y")), _state("c", 1, 3, 3)),
            offsets={"outbox": 1},
        )
        assert _memories(duck) == {
            "a": (2, ["x", "y"], 2),
            "b": (1, [], 1),
            "c": (1, [], 3),
        }
        assert duck.offset() == 3 and duck.offset("outbox") == 1
        duck.set_offsets({"outbox": 3})
        rows = duck.query('SELECT projector, "offset" FROM projection_offsets ORDER BY 1')
        assert rows == [{"projector": "core", "offset": 3}, {"projector": "outbox", "offset": 3}]
    finally:
        duck.close()


def test_a_batch_updating_a_memory_the_table_lacks_is_refused_whole(tmp_path: Path) -> None:
    duck = DuckStore(tmp_path / "core.duckdb")
    try:
        duck.write(_batch(0, 0, _state("a", 1, 0, 0)))
        # "ghost" claims to have been created before this batch, but the table never saw it
        bad = _batch(1, 2, _state("a", 2, 0, 1), _state("ghost", 2, 0, 2))
        with pytest.raises(
            RuntimeError, match="changes 2 memories created before it, of which only 1"
        ):
            duck.write(bad)
        assert duck.offset() == 0
        assert _memories(duck) == {"a": (1, [], 0)}
        assert duck.query("SELECT count(*) AS n FROM audit")[0]["n"] == 1
        # a memory inserted twice breaks the key: refused too, not silently replaced
        with pytest.raises(Exception, match="(?i)duplicate key|constraint"):
            duck.write(_batch(1, 1, _state("a", 1, 1, 1)))
        assert duck.offset() == 0
    finally:
        duck.close()


def test_key_generations_survive_a_rolled_back_batch(tmp_path: Path) -> None:
    path = tmp_path / "core.duckdb"
    duck = DuckStore(path)
    try:
        duck.write(_batch(0, 0, _state("a", 1, 0, 0), gens={"user/a": 1}))
        failing = _batch(1, 1, _state("ghost", 2, 0, 1), gens={"user/a": 2, "user/b": 1})
        with pytest.raises(RuntimeError):
            duck.write(failing)  # rolled back after the generations were computed
        # the same generations again: they must be written now, not taken as known
        duck.write(_batch(1, 1, _state("b", 1, 1, 1), gens={"user/a": 2, "user/b": 1}))
        # an older generation never lowers what is stored
        duck.write(_batch(2, 2, msgspec.structs.replace(_state("b", 2, 1, 2)), gens={"user/a": 1}))
    finally:
        duck.close()
    duck = DuckStore(path)
    try:
        rows = duck.query("SELECT subject, key_generation FROM subjects ORDER BY 1")
        assert rows == [
            {"subject": "user/a", "key_generation": 2},
            {"subject": "user/b", "key_generation": 1},
        ]
    finally:
        duck.close()


def test_row_columns_are_in_the_tables_own_order(tmp_path: Path) -> None:
    # Rows are appended by position (an Arrow relation inserted as it is): a column list
    # out of the table's order would put values in the wrong columns.
    duck = DuckStore(tmp_path / "core.duckdb")
    try:
        for table, names in (
            ("audit", AUDIT_COLUMNS),
            ("transitions", TRANSITION_COLUMNS),
            ("versions", VERSION_COLUMNS),
            ("memories", MEMORY_COLUMNS),
            ("artifacts", ARTIFACT_COLUMNS),
        ):
            info = duck.query(f"SELECT name FROM pragma_table_info('{table}') ORDER BY cid")
            assert tuple(r["name"] for r in info) == names, table
    finally:
        duck.close()


def test_artifacts_are_upserted_by_id(tmp_path: Path) -> None:
    def artifact(b: CoreBatch, status: str, size: int, offset: int) -> CoreBatch:
        b.artifacts.add(
            "art-1", "a", "user/a", "kv_cache", "tiny", "/x/kv.pt", "sha256:00", size,
            status, 1, None, f"e{offset}", offset, offset,
        )  # fmt: skip
        return b

    duck = DuckStore(tmp_path / "core.duckdb")
    try:
        duck.write(artifact(_batch(0, 0, _state("a", 1, 0, 0)), "building", 10, 0))
        duck.write(artifact(_batch(1, 1), "ready", 2048, 1))
        rows = duck.query('SELECT artifact_id, status, size_bytes, "offset" FROM artifacts')
        assert rows == [
            {"artifact_id": "art-1", "status": "ready", "size_bytes": 2048, "offset": 1}
        ]
    finally:
        duck.close()


def test_a_batch_prepared_on_one_thread_is_written_on_another(tmp_path: Path) -> None:
    """A catch-up builds a batch's Arrow tables on its deciding thread and writes them on
    its writer thread: the store ends as if each batch had been written directly."""
    batches = [
        _batch(0, 1, _state("a", 1, 0, 0), _state("b", 1, 1, 1), gens={"user/a": 1}),
        _batch(2, 3, _state("a", 2, 0, 2, tags=("x",)), _state("c", 1, 3, 3)),
        _batch(4, 4, _state("b", 3, 1, 4), gens={"user/a": 2}),
    ]
    assert prepare(CoreBatch()) is None
    direct, split = DuckStore(tmp_path / "direct.duckdb"), DuckStore(tmp_path / "split.duckdb")
    try:
        for b in batches:
            direct.write(b)
        prepared = [prepare(b) for b in batches]
        writer = threading.Thread(target=lambda: [split.write(p) for p in prepared])
        writer.start()
        writer.join()
        for duck in (direct, split):
            assert _memories(duck) == {"a": (2, ["x"], 2), "b": (3, [], 4), "c": (1, [], 3)}
            assert duck.offset() == 4
        for table in ("memories", "audit", "subjects"):
            q = f"SELECT * FROM {table} ORDER BY ALL"
            assert direct.query(q) == split.query(q), table
    finally:
        direct.close()
        split.close()


def test_64_bit_values_an_event_may_carry_are_projected(tmp_path: Path) -> None:
    """priority, retention_days and expected_version are 64-bit on the wire: the projection
    keeps them (a 32-bit column stopped the projector)."""
    from memstream import MemoryStore
    from memstream.errors import VersionConflict

    big = 2**62
    with MemoryStore.open(tmp_path / "s", semantic=False) as store:
        store.create("user/a", "x", memory_id="m", priority=big, retention_days=big)
        with pytest.raises(VersionConflict):
            store.revise("m", "y", expected_version=2**63 - 2)
        store.flush()
        m = store.get("m")
        assert m is not None and (m.priority, m.retention_days) == (big, big)
        assert store.audit(memory_id="m").entries[-1].expected_version == 2**63 - 2
