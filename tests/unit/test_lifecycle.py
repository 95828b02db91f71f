"""Every cell of the lifecycle matrix in docs/lifecycle.md, driven through a real store.

The test reads the matrix from the document, builds a memory in each state with real
operations, applies each operation, and compares the outcome with the cell: the document
and the code cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from memstream.schemas.lifecycle import OPERATIONS, STATES

from memstream import MemoryStore

DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"
NS = "user/alice"


def parse_matrix() -> dict[str, dict[str, str]]:
    lines = [ln for ln in DOC.read_text().splitlines() if ln.startswith("| state \\ operation")]
    assert len(lines) == 1, "docs/lifecycle.md must hold exactly one matrix"
    text = DOC.read_text().splitlines()
    start = text.index(lines[0])
    header = [c.strip() for c in text[start].strip("|").split("|")][1:]
    rows: dict[str, dict[str, str]] = {}
    for ln in text[start + 2 :]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells[1:], strict=True))
    return rows


MATRIX = parse_matrix()


def test_matrix_covers_every_state_and_operation():
    assert set(MATRIX) == {"absent", *STATES, "frozen"}
    for row in MATRIX.values():
        assert list(row) == list(OPERATIONS)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = MemoryStore.open(tmp_path_factory.mktemp("lifecycle"), actor="tester", durability="os")
    yield s
    s.close()


def bring_to(store: MemoryStore, state: str, frozen: bool, tag: str) -> str:
    """A memory in ``state`` (made with real operations), under its own subject."""
    mid = f"m-{state}-{int(frozen)}-{tag}"
    subject = f"subject/{mid}"
    store.create(NS, f"text of {mid}", memory_id=mid, subject=subject)
    if state == "activated":
        store.activate(mid)
    elif state == "archived":
        store.archive(mid)
    elif state == "expired":
        store.expire(mid)
    elif state == "merged":
        other = store.create(NS, "other source", subject=subject).memory_id
        store.merge(NS, [mid, other], "merged text", subject=subject)
    elif state == "erased":
        store.erase(mid)
    if frozen:
        store.freeze(mid)
    m = store.get(mid, min_offset=store.head)
    assert m is not None and m.state == state and m.frozen == frozen
    return mid


def apply(store: MemoryStore, op: str, mid: str, exists: bool):
    """Apply ``op`` to ``mid``; returns the outcome of the event that concerns ``mid``."""
    kw: dict = {}
    m = store.get(mid, min_offset=store.head) if exists else None
    if m is not None:
        kw["subject"] = m.subject
    if op == "create":
        return store.append([store.event("create", NS, mid, {"text": "again"}, **kw)])[0]
    if op == "merge_source":
        buddy = store.create(NS, "merge buddy", subject=kw.get("subject")).memory_id
        payload = {"sources": [mid, buddy], "text": "fused"}
        return store.append([store.event("merge", NS, f"merged-{op}-{mid}", payload, **kw)])[0]
    payload: dict = {}
    if op == "revise":
        payload = {"text": "new content"}
    elif op == "rollback":
        payload = {"to_version": 1}
    elif op == "erase":  # the matrix's erase is of one memory (a subject's: docs/lifecycle.md)
        payload = {"scope": "memory"}
    elif op == "artifact_built":
        payload = dict(
            artifact_id=f"a-{mid}", artifact_kind="kv_cache", model="tiny", path="/x", checksum="c"
        )
    return store.append([store.event(op, NS, mid, payload, **kw)])[0]


CASES = [(row, op) for row in MATRIX for op in OPERATIONS if row != "frozen"] + [
    ("frozen:" + s, op) for s in STATES if s != "erased" for op in OPERATIONS
]


@pytest.mark.parametrize(("row", "op"), CASES, ids=[f"{r}-{o}" for r, o in CASES])
def test_cell(store: MemoryStore, row: str, op: str):
    frozen = row.startswith("frozen:")
    state = row.split(":", 1)[1] if frozen else row
    cell = MATRIX["frozen" if frozen else row][op]
    exists = state != "absent"
    mid = bring_to(store, state, frozen, op) if exists else f"never-created-{op}"
    if op == "rollback" and state in ("active", "activated") and not frozen:
        store.revise(mid, "second version")  # so that version 1 is an older version
    before = store.get(mid, min_offset=store.head) if exists else None

    out = apply(store, op, mid, exists)
    after = store.get(mid, min_offset=out.offset)

    if cell.startswith("✗"):
        code = cell[1:].strip()
        assert out.status == "rejected", f"{row} × {op}: expected {cell}, got accepted"
        assert out.code == code, f"{row} × {op}: expected {code}, got {out.code}: {out.reason}"
        assert out.reason and mid in out.reason
        # Nothing changed, and the audit shows the verdict with its reason.
        if before is not None:
            assert after is not None and after.revision == before.revision
        entry = store.audit(memory_id=out.memory_id, after=out.offset - 1).entries[0]
        assert entry.offset == out.offset and entry.reason == out.reason
        return
    assert out.status == "accepted", f"{row} × {op}: expected {cell}, got {out.code}: {out.reason}"
    assert after is not None
    if op == "merge_source":
        after = store.get(mid, min_offset=out.offset)
    m = re.fullmatch(r"(→|=) (\w+)(?:, (frozen|unfrozen))?", cell)
    assert m, f"unparsable cell {cell!r}"
    expected_state = state if m.group(2) == "same" else m.group(2)
    assert after.state == expected_state, f"{row} × {op}"
    if m.group(3) == "frozen":
        assert after.frozen
    elif m.group(3) == "unfrozen":
        assert not after.frozen
    if before is not None:
        assert after.revision == before.revision + 1
