"""The HTTP API as a client drives it: writes, reads, audit, verify, backup, OpenAPI, and
the Python client (HttpMemoryStore) over the same server."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import msgspec
import pytest
from memstream.schemas.views import AuditPage, Memory, Version

from memstream.client import HttpMemoryStore
from memstream.errors import (
    CrossNamespace,
    InvalidTransition,
    MalformedEvent,
    UnknownMemory,
    UnknownSubject,
)
from memstream.operations import new_id


def test_health_and_ready(api):
    with api.client() as c:
        health = c.get("/health").json()
        assert health["status"] == "ok" and Path(health["store"]) == api.store
        ready = c.get("/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "ready" and body["projector_alive"] is True
        assert body["lag"] == body["head"] - body["projected"] >= 0


def test_openapi_documents_every_endpoint_and_the_event_schema(api):
    with api.client() as c:
        spec = c.get("/openapi.json").json()
    for path in (
        "/v1/events",
        "/v1/memories/{memory_id}",
        "/v1/memories/{memory_id}/history",
        "/v1/memories",
        "/v1/memories/{memory_id}/revise",
        "/v1/memories/{memory_id}/erase",
        "/v1/subjects/{subject}/erase",
        "/v1/audit",
        "/v1/audit/verify",
        "/v1/backup",
        "/health",
        "/ready",
    ):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    for name in ("Event", "Memory", "Version", "AuditPage", "AuditEntry", "Outcome", "Create"):
        assert name in schemas, name
    event = schemas["Event"]
    assert "create" in event["properties"]["type"]["enum"]
    assert {"$ref": "#/components/schemas/Merge"} in event["properties"]["payload"]["oneOf"]
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"][0] == {"$ref": "#/components/schemas/Event"}


def test_publish_one_event_then_read_it(api, event, post):
    e = event(payload={"text": "Alice likes green tea", "tags": ["drinks"]})
    with api.client() as c:
        r = post(c, e)
        assert r.status_code == 200, r.text
        (outcome,) = r.json()["outcomes"]
        assert outcome["status"] == "accepted" and outcome["version"] == 1
        assert outcome["event_id"] == e["event_id"] and outcome["offset"] >= 0
        got = c.get(f"/v1/memories/{e['memory_id']}", params={"min_offset": outcome["offset"]})
        assert got.status_code == 200
        m = msgspec.json.decode(got.content, type=Memory)
        assert m.text == "Alice likes green tea" and m.tags == ["drinks"] and m.state == "active"
        assert datetime.fromisoformat(got.json()["created_at"]).tzinfo is not None


def test_publish_a_batch(api, event, post):
    creates = [event() for _ in range(5)]
    revise = event("revise", memory_id=creates[0]["memory_id"], payload={"text": "v2"})
    with api.client() as c:
        r = post(c, [*creates, revise])
        assert r.status_code == 200, r.text
        outcomes = r.json()["outcomes"]
        assert [o["status"] for o in outcomes] == ["accepted"] * 6
        offsets = [o["offset"] for o in outcomes]
        assert offsets == list(range(offsets[0], offsets[0] + 6))
        assert outcomes[-1]["version"] == 2
        history = c.get(
            f"/v1/memories/{creates[0]['memory_id']}/history", params={"min_offset": offsets[-1]}
        ).json()
        assert [v["text"] for v in history] == [creates[0]["payload"]["text"], "v2"]


def test_a_rejected_single_event_answers_409_with_its_outcome(api, event, post):
    e = event("revise", memory_id="never-created", payload={"text": "x"})
    with api.client() as c:
        head = api.head
        r = post(c, e)
        assert r.status_code == 409
        body = r.json()
        assert body["error"] == "rejected" and body["code"] == "unknown_memory"
        assert "never-created" in body["message"]
        (outcome,) = body["outcomes"]
        assert outcome["status"] == "rejected" and outcome["offset"] == head + 1
        audit = c.get(
            "/v1/audit", params={"memory_id": "never-created", "min_offset": outcome["offset"]}
        ).json()
        assert audit["entries"][-1]["status"] == "rejected"
        assert audit["entries"][-1]["code"] == "unknown_memory"


def test_rejections_in_a_batch_are_part_of_the_200_list(api, event, post):
    a = event()
    batch = [
        a,
        event("archive", memory_id="no-such-memory"),
        event("revise", memory_id=a["memory_id"], payload={"text": "revised"}),
    ]
    with api.client() as c:
        r = post(c, batch)
        assert r.status_code == 200
        statuses = [(o["status"], o["code"]) for o in r.json()["outcomes"]]
        assert statuses == [("accepted", None), ("rejected", "unknown_memory"), ("accepted", None)]


def test_get_a_version_or_as_of_an_offset_or_a_time(api, event, post):
    e = event(payload={"text": "first"})
    with api.client() as c:
        first = post(c, e).json()["outcomes"][0]
        second = post(c, event("revise", memory_id=e["memory_id"], payload={"text": "second"}))
        second = second.json()["outcomes"][0]
        path = f"/v1/memories/{e['memory_id']}"
        now = c.get(path, params={"min_offset": second["offset"]}).json()
        assert (now["text"], now["version"]) == ("second", 2)
        assert c.get(path, params={"version": 1}).json()["text"] == "first"
        as_of_offset = c.get(path, params={"as_of": first["offset"]}).json()
        assert (as_of_offset["text"], as_of_offset["version"]) == ("first", 1)
        # an outcome's time is RFC 3339, like every other time; it reads back as a point
        assert first["recorded_at"].endswith("Z")
        assert c.get(path, params={"as_of": first["recorded_at"]}).json()["text"] == "first"
        # a version's own offset, time and author, not the memory's last change
        v1 = c.get(path, params={"version": 1}).json()
        assert (v1["offset"], v1["updated_at"]) == (first["offset"], first["recorded_at"])
        assert c.get(path, params={"version": 9}).status_code == 404
        naive = c.get(path, params={"as_of": "2026-01-01T00:00:00"})
        assert naive.status_code == 400
        assert naive.json()["field"] == "query.as_of" and "timezone" in naive.json()["message"]
        bad = c.get(path, params={"version": "two"})
        assert bad.status_code == 400 and bad.json()["field"] == "query.version"


def test_unknown_memory_is_404_naming_it(api):
    with api.client() as c:
        r = c.get("/v1/memories/nobody-here")
        assert r.status_code == 404
        assert r.json()["error"] == "not_found" and "nobody-here" in r.json()["message"]
        # every per-memory read: its history too
        h = c.get("/v1/memories/nobody-here/history")
        assert h.status_code == 404 and h.json()["error"] == "not_found"
        assert "nobody-here" in h.json()["message"]


def test_min_offset_beyond_the_log_is_a_clear_400(api):
    with api.client() as c:
        r = c.get("/v1/memories/x", params={"min_offset": api.head + 1000})
        assert r.status_code == 400 and "beyond the end of the log" in r.json()["message"]


def test_audit_filters_and_pages(api, event, post):
    e = event(actor="auditor-test")
    with api.client() as c:
        post(c, e)
        post(c, event("archive", memory_id=e["memory_id"], actor="auditor-test"))
        last = post(c, event("archive", memory_id=e["memory_id"], actor="auditor-test"))
        assert last.status_code == 409  # archiving twice is an invalid transition
        head = last.json()["outcomes"][0]["offset"]
        page = c.get("/v1/audit", params={"actor": "auditor-test", "limit": 2, "min_offset": head})
        body = msgspec.json.decode(page.content, type=AuditPage)
        assert [x.type for x in body.entries] == ["create", "archive"]
        assert body.next_after == body.entries[-1].offset
        rest = c.get("/v1/audit", params={"actor": "auditor-test", "after": body.next_after}).json()
        assert [(x["type"], x["status"]) for x in rest["entries"]] == [("archive", "rejected")]
        assert rest["next_after"] is None
        assert "archived" in rest["entries"][0]["reason"]
        rejected = c.get("/v1/audit", params={"status": "rejected", "memory_id": e["memory_id"]})
        assert len(rejected.json()["entries"]) == 1
        assert c.get("/v1/audit", params={"status": "maybe"}).status_code == 400
        assert c.get("/v1/audit", params={"limit": 0}).json()["field"] == "query.limit"


def test_verify_answers_ok(api):
    with api.client() as c:
        body = c.post("/v1/audit/verify").json()
    assert body["ok"] is True and body["offset"] is None and body["head"] >= -1


def test_backup_endpoint_checks_its_destination(api, tmp_path):
    with api.client() as c:
        relative = c.post("/v1/backup", json={"dest": "relative/dir"})
        assert relative.status_code == 400 and relative.json()["field"] == "body.dest"
        missing = c.post("/v1/backup", json={})
        assert missing.status_code == 400 and "dest" in missing.json()["message"]
        ok = c.post("/v1/backup", json={"dest": str(tmp_path / "bk")})
        assert ok.status_code == 200, ok.text
        assert ok.json()["records"] == ok.json()["head"] + 1
        again = c.post("/v1/backup", json={"dest": str(tmp_path / "bk")})
        assert again.status_code == 409 and again.json()["error"] == "exists"


def test_unknown_routes_answer_in_the_api_error_shape(api):
    with api.client() as c:
        r = c.get("/v2/nothing")
        assert r.status_code == 404 and r.json()["error"] == "no_route"
        assert c.delete("/v1/events").status_code == 405


def test_the_python_client_speaks_the_sdk(api):
    with HttpMemoryStore.connect(api.url, actor="agent-7", token=api.token) as ms:
        a = ms.create("user/bob", "Bob is vegetarian", tags=["food"])
        b = ms.create("user/bob", "Bob avoids mushrooms", tags=["food"])
        assert ms.revise(a.memory_id, "Bob is vegan").version == 2
        ms.archive(b.memory_id, reason="stale")
        ms.restore(b.memory_id)
        merged = ms.merge("user/bob", [a.memory_id, b.memory_id], "Bob: vegan, no mushrooms")
        m = ms.get(merged.memory_id, min_offset=merged.offset)
        assert isinstance(m, Memory) and m.text == "Bob: vegan, no mushrooms"
        assert [(p.memory_id, p.version) for p in m.parents] == [(a.memory_id, 2), (b.memory_id, 1)]
        chain = ms.history(merged.memory_id)
        assert all(isinstance(v, Version) for v in chain)
        assert [(v.memory_id, v.version) for v in chain] == [
            (a.memory_id, 1),
            (b.memory_id, 1),
            (a.memory_id, 2),
            (merged.memory_id, 1),
        ]
        with pytest.raises(InvalidTransition) as rejected:
            ms.revise(a.memory_id, "Bob eats fish")
        assert rejected.value.memory_id == a.memory_id and "merged" in rejected.value.reason
        other = ms.create("team/kitchen", "menu")
        with pytest.raises(CrossNamespace):
            ms.merge("user/bob", [merged.memory_id, other.memory_id], "nope")
        with pytest.raises(UnknownMemory):
            ms.revise("not-a-memory", "x")
        with pytest.raises(MalformedEvent) as bad:
            ms.append([{"type": "create"}])
        assert "missing required field" in str(bad.value)
        page = ms.audit(actor="agent-7", limit=1000, min_offset=ms.head)
        assert isinstance(page, AuditPage)
        assert [e.status for e in page.entries].count("rejected") == 2, page.entries[-4:]
        assert ms.verify() is None
        assert ms.get("not-a-memory") is None


def test_memory_store_connect_is_the_http_client(api):
    from memstream.sdk import MemoryStore

    with MemoryStore.connect(api.url, actor="connector", token=api.token) as ms:
        assert isinstance(ms, HttpMemoryStore)
        o = ms.create("user/carol", "Carol reads at night")
        assert ms.get(o.memory_id, min_offset=o.offset).created_by == "connector"


def test_erase_a_memory_or_a_subject_over_http(api, event, post):
    ns = "user/erasable"
    a, b, c_ = (event(namespace=ns, payload={"text": f"fact {i} about Eve"}) for i in range(3))
    with api.client() as c:
        assert post(c, [a, b, c_]).status_code == 200
        # scope memory (schema version 2): this memory, no other
        one = event(
            "erase", namespace=ns, memory_id=b["memory_id"], schema_version=2,
            payload={"scope": "memory", "reason": "wrong fact"},
        )  # fmt: skip
        r = post(c, one)
        assert r.status_code == 200, r.text
        (out,) = r.json()["outcomes"]
        assert out["status"] == "accepted" and out["erased"] == [b["memory_id"]]
        head = out["offset"]
        got = c.get(f"/v1/memories/{b['memory_id']}", params={"min_offset": head}).json()
        assert got["state"] == "erased" and got["text"] is None
        for kept in (a, c_):
            m = c.get(f"/v1/memories/{kept['memory_id']}").json()
            assert m["state"] == "active" and m["text"] == kept["payload"]["text"]
        audit = {"type": "erase", "namespace": ns, "min_offset": head}
        (entry,) = c.get("/v1/audit", params=audit).json()["entries"]
        assert entry["scope"] == "memory" and entry["erased"] == [b["memory_id"]]

        # scope subject: everything of the subject; the memory id names no memory
        every = event(
            "erase", namespace=ns, schema_version=2, payload={"scope": "subject"},
        )  # fmt: skip
        every["memory_id"] = every["event_id"]
        (out,) = post(c, every).json()["outcomes"]
        assert out["status"] == "accepted"
        assert sorted(out["erased"]) == sorted([a["memory_id"], c_["memory_id"]])
        for gone in (a, c_):
            m = c.get(f"/v1/memories/{gone['memory_id']}", params={"min_offset": out["offset"]})
            assert m.json()["state"] == "erased" and m.json()["text"] is None
        audit["min_offset"] = out["offset"]
        entries = c.get("/v1/audit", params=audit).json()["entries"]
        assert [e["scope"] for e in entries] == ["memory", "subject"]

        # an erase as version 1 producers send it (no scope) still means the subject
        d = event(namespace="user/erasable-v1")
        post(c, d)
        (out,) = post(
            c, event("erase", namespace="user/erasable-v1", memory_id=d["memory_id"])
        ).json()["outcomes"]
        assert out["status"] == "accepted" and out["erased"] == [d["memory_id"]]
        (entry,) = c.get(
            "/v1/audit",
            params={"type": "erase", "namespace": "user/erasable-v1", "min_offset": out["offset"]},
        ).json()["entries"]
        assert entry["scope"] == "subject"


def test_the_python_client_erases_a_memory_or_a_subject(api):
    with HttpMemoryStore.connect(api.url, actor="agent-9", token=api.token) as ms:
        x = ms.create("user/frank", "Frank's old address")
        y = ms.create("user/frank", "Frank likes chess")
        out = ms.erase(x.memory_id, reason="moved")
        assert out.erased == (x.memory_id,)
        assert ms.get(y.memory_id, min_offset=out.offset).text == "Frank likes chess"
        assert ms.get(x.memory_id).text is None
        every = ms.erase_subject("user/frank")
        assert every.erased == (y.memory_id,)
        with pytest.raises(UnknownSubject):
            ms.erase_subject("user/nobody-here")


# -- one-line operations: the server builds the events ----------------------------------------


def test_one_line_create_needs_a_namespace_and_a_text(api):
    with api.client() as c:
        r = c.post(
            "/v1/memories",
            json={"namespace": "user/dana", "text": "Dana drinks oolong", "tags": ["drinks"],
                  "metadata": {"source": "chat"}, "context": {"session": "s-1"}},
            headers={"X-Memstream-Principal": "agent:planner"},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        o = r.json()
        assert (o["status"], o["type"], o["version"], o["state"]) == (
            "accepted", "create", 1, "active",
        )  # fmt: skip
        assert r.headers["location"] == f"/v1/memories/{o['memory_id']}"
        assert datetime.fromisoformat(o["recorded_at"]).tzinfo is not None  # RFC 3339
        m = c.get(r.headers["location"], params={"min_offset": o["offset"]}).json()
        assert (m["text"], m["tags"], m["metadata"]) == (
            "Dana drinks oolong", ["drinks"], {"source": "chat"},
        )  # fmt: skip
        assert m["created_by"] == "agent:planner" and m["subject"] == "user/dana"
        entry = c.get("/v1/audit", params={"memory_id": o["memory_id"]}).json()["entries"][0]
        assert entry["actor"] == "agent:planner" and entry["context"]["session"] == "s-1"
        # a chosen id, and the subject named
        r = c.post(
            "/v1/memories",
            json={"namespace": "agent/helper", "text": "Dana is allergic to nuts",
                  "memory_id": "dana-allergy", "subject": "user/dana"},
        )  # fmt: skip
        assert r.status_code == 201 and r.json()["memory_id"] == "dana-allergy"
        # the same id again is refused by the lifecycle: 409 with the outcome
        again = c.post("/v1/memories", json={"namespace": "agent/helper", "text": "x",
                                             "memory_id": "dana-allergy"})  # fmt: skip
        assert again.status_code == 409
        assert again.json()["error"] == "rejected" and again.json()["code"] == "already_exists"
        assert again.json()["outcome"]["memory_id"] == "dana-allergy"
        # what is missing or mistyped is a 400 naming the field; nothing is appended
        head = api.head
        bad = c.post("/v1/memories", json={"text": "no namespace"})
        assert bad.status_code == 400 and "namespace" in bad.json()["message"]
        bad = c.post("/v1/memories", json={"namespace": "user/dana", "text": 3})
        assert bad.status_code == 400 and bad.json()["field"] == "body.text"
        assert api.head == head


def test_one_line_revise_archive_restore_erase_and_list(api):
    with api.client() as c:
        ns = f"user/{new_id()}"
        created = [
            c.post(
                "/v1/memories",
                json={"namespace": ns, "text": f"note {i}", "tags": ["t"] if i else []},
            ).json()  # fmt: skip
            for i in range(3)
        ]
        first = created[0]["memory_id"]
        path = f"/v1/memories/{first}"
        r = c.post(path + "/revise", json={"text": "note 0, revised", "reason": "typo"})
        assert r.status_code == 200 and r.json()["version"] == 2
        r = c.post(path + "/revise", json={"text": "lost update", "expected_version": 1})
        assert r.status_code == 409 and r.json()["code"] == "version_conflict"
        assert c.post(path + "/archive", json={"reason": "old"}).json()["state"] == "archived"
        head = c.post(path + "/archive")  # an empty body is fine; twice is refused
        assert head.status_code == 409 and head.json()["code"] == "invalid_transition"
        # the list: in use by default, in creation order, paginated, filtered
        last = head.json()["outcome"]["offset"]
        page = c.get("/v1/memories", params={"namespace": ns, "min_offset": last}).json()
        assert [m["memory_id"] for m in page["memories"]] == [o["memory_id"] for o in created[1:]]
        assert page["next_after"] is None
        one = c.get("/v1/memories", params={"namespace": ns, "limit": 1}).json()
        assert len(one["memories"]) == 1 and one["next_after"] is not None
        rest = c.get("/v1/memories", params={"namespace": ns, "after": one["next_after"]}).json()
        assert [m["memory_id"] for m in one["memories"] + rest["memories"]] == [
            o["memory_id"] for o in created[1:]
        ]
        archived = c.get("/v1/memories", params={"namespace": ns, "state": "archived"}).json()
        assert [m["text"] for m in archived["memories"]] == ["note 0, revised"]
        both = c.get("/v1/memories", params={"namespace": ns, "state": ["archived", "active"]})
        assert len(both.json()["memories"]) == 3
        tagged = c.get("/v1/memories", params={"namespace": ns, "tag": "t"}).json()
        assert len(tagged["memories"]) == 2
        assert c.post(path + "/restore").json()["state"] == "active"
        erased = c.post(path + "/erase", json={"reason": "asked"}).json()
        assert erased["erased"] == [first] and erased["state"] == "erased"
        # an unknown memory is 404 and appends nothing
        head = api.head
        for op in ("revise", "archive", "restore", "erase"):
            r = c.post(
                f"/v1/memories/nobody-{op}/{op}", json={"text": "x"} if op == "revise" else {}
            )
            assert r.status_code == 404 and r.json()["error"] == "not_found", r.text
        assert api.head == head
        # every memory of a subject
        r = c.post(f"/v1/subjects/{ns}/erase", json={"reason": "GDPR art. 17"})
        assert r.status_code == 200 and sorted(r.json()["erased"]) == sorted(
            o["memory_id"] for o in created[1:]
        )


def test_the_python_client_writes_through_the_one_line_routes(api):
    with HttpMemoryStore.connect(api.url, actor="agent:client", token=api.token) as store:
        o = store.create("user/erin", "Erin cycles to work", tags=["commute"])
        assert o.accepted and isinstance(o.recorded_at, int)
        assert store.revise(o.memory_id, "Erin takes the train").version == 2
        assert store.archive(o.memory_id).state == "archived"
        with pytest.raises(InvalidTransition):
            store.archive(o.memory_id)
        with pytest.raises(UnknownMemory):
            store.archive("nobody-at-all")
        assert store.restore(o.memory_id).state == "active"
        page = store.list_memories("user/erin", min_offset=store.last_offset)
        assert [m.memory_id for m in page.memories] == [o.memory_id]
        assert store.erase(o.memory_id).erased == (o.memory_id,)
        assert store.history("nobody-at-all") == []  # 404 on the wire, [] in the SDK
        trail = store.audit(memory_id=o.memory_id, min_offset=store.last_offset).entries
        assert {e.actor for e in trail} == {"agent:client"}
