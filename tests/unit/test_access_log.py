"""The access log: every read the service answers is recorded (who, in which call context,
of which memories, when), apart from the event log, bounded, queryable and exportable.

Real stores in temporary directories (search with the fast hash embedder), the real HTTP
app in process, and the access log's own SQLite file read back."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from fastapi.testclient import TestClient
from memstream.projections.search import SearchQuery
from memstream.schemas.events import Context
from memstream.schemas.views import Delivery
from memstream.streams.embedded import ACCESS_DIR, LOG_FILE

from memstream import BadRequest, MemoryStore, SearchDisabled, Unsupported
from memstream.errors import Forbidden
from memstream.governance import access_log as al
from memstream.governance.access_log import AccessLog, AccessQuery, AccessRecord
from memstream.http import create_app
from memstream.queries import ListQuery
from memstream.service import Caller
from memstream.settings import AccessLogSettings

QUIET = AccessLogSettings(flush_interval=3600.0)  # written on a query, a flush or close only


def _open(path: Path, embedder=None, **kw) -> MemoryStore:
    return MemoryStore.open(
        path, actor="agent:planner", durability="os", semantic=embedder is not None,
        embedder=embedder, **kw,
    )  # fmt: skip


def _seed(store: MemoryStore) -> dict[str, str]:
    ids = {}
    for name, ns, text in [
        ("tea", "user/alice", "Alice drinks green tea every morning"),
        ("job", "user/alice", "Alice works at ACME on the billing team"),
        ("bob", "user/bob", "Bob drinks black coffee"),
        ("ops", "team/ops", "Deploys happen on Fridays"),
    ]:
        ids[name] = store.create(ns, text, memory_id=f"m-{name}").memory_id
    merged = store.merge("user/alice", [ids["tea"], ids["job"]], "Alice: green tea; ACME billing")
    ids["merged"] = merged.memory_id
    store.flush()
    return ids


@pytest.fixture
def searchable(tmp_path: Path, hash_embedder):
    store = _open(tmp_path / "s", hash_embedder, access_log=QUIET)
    ids = _seed(store)
    try:
        yield store, ids
    finally:
        store.close()


def test_each_read_is_recorded_with_its_principal_objects_and_detail(searchable) -> None:
    store, ids = searchable
    store.get(ids["tea"])
    store.get("m-nowhere")
    store.history(ids["merged"])
    page = store.list_memories("user/alice", states=["active", "merged"])
    hits = store.search("what does alice drink", k=3, tags_any=["x"], metadata={"k": "v"})
    hits = store.search("what does alice drink", k=3)
    store.audit(namespace="user/bob")
    store.follow(0, idle=0.0).close()
    records = store.access_log().records
    assert [r.action for r in records] == [
        "get", "get", "history", "list", "search", "search", "audit", "follow",
    ]  # fmt: skip
    assert {r.principal for r in records} == {"agent:planner"}
    get, missing, history, listed, filtered, search, audit, follow = records
    assert (get.objects, get.namespaces, get.detail) == ([ids["tea"]], ["user/alice"], {})
    assert (missing.objects, missing.namespaces) == (["m-nowhere"], [])
    assert missing.detail == {"found": False}
    # history reads the merge parents' chains too: every memory whose versions it returned
    assert history.objects[0] == ids["merged"]
    assert set(history.objects) == {ids["merged"], ids["tea"], ids["job"]}
    assert history.detail["versions"] == len(store.history(ids["merged"]))
    assert listed.objects == [m.memory_id for m in page.memories]
    assert listed.namespaces == ["user/alice"] and listed.detail["states"] == ["active", "merged"]
    # a search records exactly the ids it returned, in their order, and never its text
    assert len(hits) == 3 and search.objects == [h.memory.memory_id for h in hits]
    assert search.namespaces == list(dict.fromkeys(h.memory.namespace for h in hits))
    assert search.detail["k"] == 3 and "what" not in json.dumps(search.detail)
    assert search.detail["query_hash"] == filtered.detail["query_hash"]
    assert filtered.objects == [] and filtered.detail["tags_any"] == ["x"]
    assert filtered.detail["metadata_keys"] == ["k"] and "v" not in filtered.detail.values()
    assert audit.namespaces == ["user/bob"] and audit.detail["entries"] == 1
    assert follow.detail == {"start": 0}
    assert all(r.at.tzinfo is not None for r in records)
    assert [r.at for r in records] == sorted(r.at for r in records)


def test_a_read_that_fails_is_not_recorded(searchable, tmp_path: Path) -> None:
    store, ids = searchable
    with pytest.raises(BadRequest):
        store.get(ids["tea"], min_offset=10**6)
    with pytest.raises(BadRequest):
        store.search("tea", k=0)
    store.get(ids["tea"])
    assert [r.action for r in store.access_log().records] == ["get"]
    with _open(tmp_path / "plain") as plain:  # no search indexes
        with pytest.raises(SearchDisabled):
            plain.search("tea")
        assert plain.access_log().records == []


def test_the_call_context_and_principal_come_from_the_caller(searchable) -> None:
    store, ids = searchable
    client = TestClient(create_app(store))
    headers = {
        "X-Memstream-Principal": "agent:support", "X-Memstream-App": "helpdesk",
        "X-Memstream-Session": "s-42", "X-Memstream-Purpose": "ticket 7",
    }  # fmt: skip
    assert client.get(f"/v1/memories/{ids['bob']}", headers=headers).status_code == 200
    r = client.post("/v1/search", json={"query": "coffee", "k": 2}, headers=headers)
    assert r.status_code == 200
    returned = [h["memory"]["memory_id"] for h in r.json()["hits"]]
    # a read one worker forwarded to another is recorded by the first only
    forwarded = Caller(principal="agent:support", remote=True, forwarded=True)
    store.service.get(forwarded, ids["bob"])
    page = store.access_log(principal="agent:support")
    assert [r.action for r in page.records] == ["get", "search"]
    context = {"app": "helpdesk", "session": "s-42", "purpose": "ticket 7"}
    assert all(rec.context == context for rec in page.records)
    assert page.records[1].objects == returned


def test_query_filters_combine_and_page(searchable) -> None:
    store, ids = searchable
    as_ops = Caller(principal="agent:ops", context=Context(app="cron"))
    store.get(ids["tea"])
    before = datetime.now(UTC)
    time.sleep(0.002)
    store.service.get(as_ops, ids["ops"])
    store.service.list_memories(as_ops, ListQuery(namespace="team/ops"))
    for _ in range(3):
        store.get(ids["bob"])
    time.sleep(0.002)
    after = datetime.now(UTC)
    store.history(ids["bob"])

    def actions(**kw) -> list[tuple[str, str]]:
        return [(r.principal, r.action) for r in store.access_log(**kw).records]

    assert actions(principal="agent:ops") == [("agent:ops", "get"), ("agent:ops", "list")]
    assert actions(namespace="team/ops") == [("agent:ops", "get"), ("agent:ops", "list")]
    assert actions(memory_id=ids["bob"], action="history") == [("agent:planner", "history")]
    assert len(actions(memory_id=ids["bob"])) == 4
    assert len(actions(since=before, until=after)) == 5
    since = actions(since=after.isoformat())  # the queries above are reads of the log too
    assert since[0] == ("agent:planner", "history")
    assert {action for _, action in since[1:]} == {"access_log"}
    assert actions(namespace="user/nobody") == []
    first = store.access_log(limit=2)
    second = store.access_log(limit=2, after=first.next_after)
    assert [r.id for r in first.records] == [1, 2] and first.next_after == 2
    assert [r.id for r in second.records] == [3, 4] and second.next_after == 4
    last = store.access_log(after=second.next_after, action="get")
    assert last.next_after is None and [r.id for r in last.records] == [5, 6]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"after": -1}, "after"),
        ({"since": datetime(2026, 1, 1)}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"principal": 7}, "principal"),
        ({"memory_id": "m-\udcff"}, "memory_id"),
    ],
)
def test_a_bad_filter_names_its_field(searchable, kwargs, field) -> None:
    store, _ = searchable
    with pytest.raises(BadRequest) as e:
        store.access_log(**kwargs)
    assert e.value.field == field


def test_export_jsonl_and_csv_parse_back(searchable, tmp_path: Path) -> None:
    store, ids = searchable
    awkward = Caller(principal='agent "x", line\nbreak', context=Context(app="a,b"))
    store.service.get(awkward, ids["tea"])
    store.search("green tea", k=2)
    store.get(ids["bob"])
    time.sleep(0.002)
    cut = datetime.now(UTC)  # the reads of the log below are recorded after it
    records = store.access_log(until=cut).records
    n_jsonl = store.export_access_log(tmp_path / "a.jsonl", until=cut)
    n_csv = store.export_access_log(tmp_path / "a.csv", format="csv", until=cut)
    assert n_jsonl == n_csv == len(records) == 3
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert [msgspec.json.decode(line, type=AccessRecord) for line in lines] == records
    with open(tmp_path / "a.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(AccessRecord.__struct_fields__)
    back = [
        msgspec.convert(
            {k: json.loads(v) if k in ("context", "namespaces", "objects", "detail") else v
             for k, v in row.items()},
            AccessRecord, strict=False,
        )
        for row in rows
    ]  # fmt: skip
    assert back == records
    # filtered, and to a stream
    out = io.StringIO()
    assert store.export_access_log(out, principal=awkward.principal) == 1
    assert msgspec.json.decode(out.getvalue(), type=AccessRecord).objects == [ids["tea"]]
    out = io.StringIO()
    assert store.export_access_log(out, format="csv", memory_id="m-none") == 0
    assert out.getvalue() == ",".join(AccessRecord.__struct_fields__) + "\n"
    # the exports were reads of the access log too
    assert [r.action for r in store.access_log(action="access_log_export").records] == [
        "access_log_export"
    ] * 4


def test_an_export_that_cannot_be_written_names_out_and_leaves_nothing(
    searchable, tmp_path: Path
) -> None:
    store, ids = searchable
    store.get(ids["tea"])
    for bad in (tmp_path, tmp_path / "missing" / "a.jsonl", "\x00", 42):
        with pytest.raises(BadRequest) as e:
            store.export_access_log(bad)
        assert e.value.field == "out"
    with pytest.raises(BadRequest) as e:
        store.export_access_log(tmp_path / "a.xml", format="xml")
    assert e.value.field == "format"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_records_survive_a_close_and_reopen(tmp_path: Path) -> None:
    settings = AccessLogSettings(flush_interval=3600.0)
    with _open(tmp_path / "s", access_log=settings) as store:
        ids = _seed(store)
        for _ in range(5):
            store.get(ids["tea"])
        assert store.accesses is not None and len(store.accesses._pending) == 5
    # nothing was written before the close: the close wrote all of it
    with _open(tmp_path / "s", access_log=settings) as store:
        page = store.access_log(action="get")
        assert [r.objects for r in page.records] == [[ids["tea"]]] * 5
        store.get(ids["bob"])
        # ids go on: 6 is the query above (a read of the access log), 7 this get
        assert store.access_log(action="get").records[-1].id == 7


def test_the_access_log_is_its_own_file_not_the_event_log(tmp_path: Path) -> None:
    with _open(tmp_path / "s") as store:
        ids = _seed(store)
        head = store.head
        for _ in range(50):
            store.get(ids["tea"])
            store.history(ids["merged"])
        store.audit()
        assert store.head == head, "reads appended nothing to the event log"
        assert store.verify() is None
        assert len(store.access_log(limit=1000).records) == 101
        store.backup(tmp_path / "copy")
    path = tmp_path / "s" / ACCESS_DIR / "access.sqlite"
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM access").fetchone() == (102,)
    finally:
        db.close()
    log = sqlite3.connect(tmp_path / "s" / LOG_FILE)
    try:
        tables = {r[0] for r in log.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert not any("access" in t for t in tables)
    finally:
        log.close()
    assert not (tmp_path / "copy" / ACCESS_DIR).exists(), "a backup copies the log and keys"


def test_the_query_text_is_stored_only_as_a_keyed_hash(tmp_path: Path, hash_embedder) -> None:
    secret = "does alice have an appointment with the oncologist"
    hashes = []
    for name in ("a", "b"):
        with _open(tmp_path / name, hash_embedder) as store:
            _seed(store)
            store.search(secret, k=2)
            store.search(secret, k=2)
            store.search("something else", k=2)
            d = [r.detail["query_hash"] for r in store.access_log(action="search").records]
            assert d[0] == d[1] != d[2]
            hashes.append(d[0])
        for f in (tmp_path / name / ACCESS_DIR).iterdir():
            assert b"oncologist" not in f.read_bytes()
    assert hashes[0] != hashes[1], "each store's access log has its own key"


def test_retention_keeps_the_newest_records(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "access", AccessLogSettings(max_records=5, max_age_days=0))
    try:
        who = Caller(principal="p")
        for i in range(12):
            log.record(who, "get", ["user/a"], [f"m-{i}"])
        assert log.prune() == 7
        page = log.query(AccessQuery(limit=100))
        assert [r.objects for r in page.records] == [[f"m-{i}"] for i in range(7, 12)]
        assert log.query(AccessQuery(memory_id="m-3")).records == []
        assert len(log.query(AccessQuery(namespace="user/a")).records) == 5
        db = sqlite3.connect(log.path)
        try:  # the lookup rows of the pruned records went with them
            assert db.execute("SELECT count(*) FROM access_object").fetchone() == (5,)
            assert db.execute("SELECT count(*) FROM access_namespace").fetchone() == (5,)
        finally:
            db.close()
    finally:
        log.close()


def test_retention_drops_records_past_their_age_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = AccessLogSettings(max_age_days=1, max_records=0, prune_interval=0.05)
    settings_quiet = settings.model_copy(update={"prune_interval": 3600.0})
    log = AccessLog(tmp_path / "access", settings_quiet)
    now = al._now_us()
    who = Caller(principal="p")
    try:
        monkeypatch.setattr(al, "_now_us", lambda: now - 3 * 86_400_000_000)
        for i in range(4):
            log.record(who, "get", (), [f"old-{i}"])
        monkeypatch.setattr(al, "_now_us", lambda: now - 3_600_000_000)
        log.record(who, "get", (), ["recent"])
        log.flush()
    finally:
        monkeypatch.undo()
        log.close()
    # reopened, pruning every 50 ms: the old records go by themselves
    log = AccessLog(tmp_path / "access", settings)
    try:
        deadline = time.monotonic() + 10
        while len(log.query(AccessQuery()).records) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        (kept,) = log.query(AccessQuery()).records
        assert kept.objects == ["recent"] and kept.id == 5
        assert kept.at < datetime.now(UTC) - timedelta(minutes=59)
        # two days later, every record is past its age
        monkeypatch.setattr(al, "_now_us", lambda: now + 2 * 86_400_000_000)
        log.prune()
        assert log.query(AccessQuery()).records == []
    finally:
        monkeypatch.undo()
        log.close()
    # the ids still go on from where they were: a cursor never sees an id twice
    log = AccessLog(tmp_path / "access", settings_quiet)
    try:
        log.record(who, "get", (), ["c"])
        assert [r.id for r in log.query(AccessQuery()).records] == [6]
    finally:
        log.close()


def test_a_principal_utf8_cannot_hold_is_recorded_escaped(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "access", QUIET)
    try:
        log.record(Caller(principal="agent:\udcff"), "get", ["ns"], ["m-1"])
        log.record(Caller(principal="agent:ok"), "get", ["ns"], ["m-2"])
        records = log.query(AccessQuery()).records
        assert [r.principal for r in records] == ["agent:\\udcff", "agent:ok"]
    finally:
        log.close()


def test_the_access_log_can_be_turned_off(tmp_path: Path, monkeypatch) -> None:
    with _open(tmp_path / "off", access_log=False) as store:
        ids = _seed(store)
        store.get(ids["tea"])
        with pytest.raises(Unsupported, match="access log"):
            store.access_log()
        assert TestClient(create_app(store)).get("/v1/access-log").status_code == 501
    monkeypatch.setenv("MEMSTREAM_ACCESS_LOG_ENABLED", "0")
    with _open(tmp_path / "env") as store:
        assert store.accesses is None
    assert not (tmp_path / "off" / ACCESS_DIR).exists()
    assert not (tmp_path / "env" / ACCESS_DIR).exists()
    monkeypatch.setenv("MEMSTREAM_ACCESS_LOG_MAX_RECORDS", "-1")
    with pytest.raises(ValueError, match="MEMSTREAM_ACCESS_LOG_MAX_RECORDS"):
        AccessLogSettings()


def test_http_query_and_streamed_export(searchable) -> None:
    store, ids = searchable
    client = TestClient(create_app(store))
    auditor = {"X-Memstream-Principal": "auditor"}
    client.get(f"/v1/memories/{ids['tea']}", headers={"X-Memstream-Principal": "agent:a"})
    client.get(f"/v1/memories/{ids['ops']}/history")
    r = client.get("/v1/access-log", params={"principal": "agent:a"}, headers=auditor)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["objects"] for x in body["records"]] == [[ids["tea"]]]
    assert body["next_after"] is None and body["records"][0]["at"].endswith("Z")
    r = client.get("/v1/access-log", params={"action": "history", "limit": 1})
    assert [x["principal"] for x in r.json()["records"]] == ["anonymous"]
    r = client.get("/v1/access-log/export", params={"format": "csv"}, headers=auditor)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["action"] for row in rows] == ["get", "history", "access_log", "access_log"]
    r = client.get("/v1/access-log/export", params={"memory_id": ids["ops"]})
    assert r.headers["content-type"] == "application/x-ndjson"
    (line,) = r.text.splitlines()
    assert msgspec.json.decode(line, type=AccessRecord).objects == [ids["ops"]]
    for params, field in (
        ({"format": "xml"}, "query.format"),
        ({"since": "yesterday"}, "query.since"),
        ({"after": -1}, "query.after"),
    ):
        r = client.get("/v1/access-log/export", params=params)
        assert r.status_code == 400 and r.json()["field"] == field, r.text
    who = [x.principal for x in store.access_log(action="access_log_export").records]
    assert who == ["auditor", "anonymous"]


def test_a_memory_is_found_by_its_id_even_when_lookup_keys_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(al, "_lookup_key", lambda text: 7)  # every id and namespace collides
    log = AccessLog(tmp_path / "access", QUIET)
    try:
        who = Caller(principal="p")
        log.record(who, "search", ["user/a"], ["m-1", "m-2"])
        log.record(who, "get", ["user/b"], ["m-3"])
        log.record(who, "search", ["user/b", "user/a"], ["m-3", "m-1"])
        found = log.query(AccessQuery(memory_id="m-1")).records
        assert [(r.id, r.objects) for r in found] == [(1, ["m-1", "m-2"]), (3, ["m-3", "m-1"])]
        assert [r.id for r in log.query(AccessQuery(namespace="user/b")).records] == [2, 3]
        assert log.query(AccessQuery(memory_id="m-4")).records == []
    finally:
        log.close()


def test_what_a_principal_may_not_read_is_not_recorded_as_read(searchable) -> None:
    store, ids = searchable
    store.add_principal("alice")
    store.grant("alice", "read", "user/alice")
    alice = Caller(principal="alice", enforced=True)
    page = store.service.list_memories(alice, ListQuery(states=("active", "merged")))
    hits = store.service.search(alice, SearchQuery(query="drinks", k=10))
    assert store.service.search(alice, SearchQuery(query="drinks", namespaces=["user/bob"])) == []
    with pytest.raises(Forbidden):  # the access log shows every namespace: audit on *
        store.service.access_log(alice, AccessQuery())
    with pytest.raises(Forbidden):
        store.service.get(alice, ids["bob"])
    records = store.access_log(principal="alice").records
    # the refusals are recorded as refusals, never as reads
    assert [r.detail["action"] for r in records if r.action == "denied"] == ["audit", "read"]
    listed, searched, nothing = [r for r in records if r.action != "denied"]
    assert listed.objects == [m.memory_id for m in page.memories]
    assert set(listed.objects) == {ids["tea"], ids["job"], ids["merged"]}
    assert searched.objects == [h.memory.memory_id for h in hits] and hits
    assert {h.memory.namespace for h in hits} == {"user/alice"}
    assert (nothing.objects, nothing.namespaces) == ([], ["user/bob"])


def test_consecutive_deliveries_of_a_subscription_share_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries queued together are written as one record per run (one subscription, one
    caller, nothing else between): it names every memory delivered and its position, and a
    query by memory id finds it."""
    monkeypatch.setattr(al, "DELIVERIES_PER_RECORD", 3)
    log = AccessLog(tmp_path / "access", QUIET)
    try:
        who, other = Caller(principal="p"), Caller(principal="q")
        for pos, (ns, mid) in enumerate([("user/a", "m-1"), ("user/b", "m-2"), ("user/a", "m-1")]):
            log.delivered(who, ns, mid, "s", pos)
        log.delivered(who, "user/a", "m-3", "s", 3)  # a fourth: past the most per record
        log.delivered(who, "user/a", "m-4", "t", 4, "pub")  # another subscription
        log.delivered(other, "user/a", "m-5", "t", 5, "pub")  # another caller
        log.record(who, "get", ["user/a"], ["m-6"])
        log.delivered(who, "user/a", "m-7", "s", 7)  # a read came between: a new run
        records = log.query(AccessQuery(action="delivery")).records
        assert [(r.principal, r.namespaces, r.objects, r.detail) for r in records] == [
            ("p", ["user/a", "user/b"], ["m-1", "m-2", "m-1"],
             {"subscription": "s", "positions": [0, 1, 2], "publication": None}),
            ("p", ["user/a"], ["m-3"], {"subscription": "s", "position": 3, "publication": None}),
            ("p", ["user/a"], ["m-4"], {"subscription": "t", "position": 4, "publication": "pub"}),
            ("q", ["user/a"], ["m-5"], {"subscription": "t", "position": 5, "publication": "pub"}),
            ("p", ["user/a"], ["m-7"], {"subscription": "s", "position": 7, "publication": None}),
        ]  # fmt: skip
        assert records[0].at <= records[1].at
        assert [
            r.detail.get("positions") for r in log.query(AccessQuery(memory_id="m-2")).records
        ] == [[0, 1, 2]]
        assert [r.objects for r in log.query(AccessQuery(namespace="user/b")).records] == [
            ["m-1", "m-2", "m-1"]
        ]
    finally:
        log.close()


def test_a_catch_up_records_every_delivered_memory(tmp_path: Path) -> None:
    """A subscription that catches up over many events: every delivery, by memory and
    position, is in the access log (however the writer grouped them)."""
    with _open(tmp_path / "s", access_log=QUIET) as store:
        made = [store.create(f"user/u{i % 4}", f"note {i}") for i in range(300)]
        store.create_subscription("all", start="beginning")
        sub = store.subscribe("all", heartbeat=0.1)
        got = []
        while len(got) < 300:
            d = sub.next(timeout=5)
            assert isinstance(d, Delivery)
            got.append((d.event["memory_id"], d.position))
        sub.ack_upto(got[-1][1])
        store.accesses.flush()
        records = store.accesses.query(AccessQuery(action="delivery", limit=1000)).records
        logged = []
        for r in records:
            positions = r.detail.get("positions", [r.detail.get("position")])
            assert r.detail["subscription"] == "all" and len(positions) == len(r.objects)
            logged += zip(r.objects, positions, strict=True)
        assert logged == got
        assert len(records) == 1  # queued together (written on the flush), one record
        assert [m.memory_id for m in made] == [m for m, _ in got]
        found = store.accesses.query(AccessQuery(memory_id=made[150].memory_id)).records
        assert len(found) == 1 and made[150].memory_id in found[0].objects
