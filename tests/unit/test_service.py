"""The service layer: every entry point passes the authorize hook; HTTP callers are the
actors of what they write; a worker serves the routes of ``memstream serve``."""

from __future__ import annotations

import asyncio
import inspect
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from fastapi.testclient import TestClient
from memstream.projections.policy import PolicyState
from memstream.projections.subscriptions import PublicationRule, SubscriptionRule
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import Context, SubscriptionFilter, default_registry

from memstream import MemoryStore, new_id
from memstream.governance.access_log import AccessQuery
from memstream.http import create_app
from memstream.queries import AuditQuery, ListQuery, SearchQuery
from memstream.service import ACTIONS, Caller, MemoryService


def _wire(actor: str = "producer", **envelope) -> dict:
    return {
        "event_id": new_id(),
        "type": "create",
        "schema_version": 1,
        "namespace": "user/alice",
        "memory_id": f"m-{new_id()}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "actor": actor,
        "payload": {"text": "Alice drinks green tea"},
        **envelope,
    }


#: how to call each entry point of the service (a new one must be added here)
CALLS = {
    "append": lambda s, c, e: s.append(c, e),
    "publish_json": lambda s, c, e: s.publish_json(c, json.dumps(_wire())),
    "get": lambda s, c, e: s.get(c, "m1", namespace="user/alice"),
    "history": lambda s, c, e: s.history(c, "m1"),
    "audit": lambda s, c, e: s.audit(c, AuditQuery(namespace="user/alice")),
    "search": lambda s, c, e: s.search(c, SearchQuery(query="tea", namespaces=["a", "b"])),
    "verify": lambda s, c, e: s.verify(c),
    "flush": lambda s, c, e: s.flush(c),
    "checkpoint": lambda s, c, e: s.checkpoint(c),
    "head": lambda s, c, e: s.head(c),
    "health": lambda s, c, e: s.health(c),
    "ready": lambda s, c, e: s.ready(c),
    "status": lambda s, c, e: s.status(c, cluster=True),
    "backup": lambda s, c, e: s.backup(c, Path("/nowhere")),
    "replay_copy": lambda s, c, e: s.replay_copy(c, Path("/nowhere"), 3),
    "follow": lambda s, c, e: s.follow(c, 0),
    "follow_async": lambda s, c, e: s.follow_async(c, 0),
    "list_memories": lambda s, c, e: s.list_memories(c, ListQuery(namespace="user/alice")),
    "access_log": lambda s, c, e: s.access_log(c, AccessQuery(principal="agent:7")),
    "export_access_log": lambda s, c, e: s.export_access_log(c, AccessQuery(), "csv"),
    "set_principal": lambda s, c, e: _ignoring(TypeError, s.set_principal, c, "bob"),
    "issue_token": lambda s, c, e: _ignoring(TypeError, s.issue_token, c, "bob"),
    "revoke_token": lambda s, c, e: _ignoring(TypeError, s.revoke_token, c, "tok-1"),
    "grant": lambda s, c, e: _ignoring(TypeError, s.grant, c, "bob", ["read"], "user/bob"),
    "revoke": lambda s, c, e: _ignoring(TypeError, s.revoke, c, "grant-1"),
    "set_policy": lambda s, c, e: _ignoring(TypeError, s.set_policy, c, "user/*"),
    "audit_records": lambda s, c, e: _ignoring(
        AttributeError, lambda: list(s.audit_records(c, AuditQuery(namespace="user/a")))
    ),
    "reveal": lambda s, c, e: _ignoring(AttributeError, s.reveal, c, "m1"),
    "permission_changes": lambda s, c, e: _ignoring(TypeError, s.permission_changes, c),
    "rules": lambda s, c, e: _ignoring(AttributeError, s.rules, c),
    "who_can": lambda s, c, e: _ignoring(
        AttributeError, s.who_can, c, "read", namespace="user/bob"
    ),
    "run_retention": lambda s, c, e: s.run_retention(c, now="2031-01-01T00:00:00Z", dry_run=True),
    # pub/sub: the rules hold subscription s1 (and publication p1) where a call needs them
    "set_subscription": lambda s, c, e: _ignoring(
        TypeError, s.set_subscription, c, "s1", filter={"namespaces": ["user/a"]}
    ),
    "delete_subscription": lambda s, c, e: _ignoring(
        TypeError, _subscribed(s).delete_subscription, c, "s1"
    ),
    "subscriptions": lambda s, c, e: _subscribed(s).subscriptions(c),
    "subscription": lambda s, c, e: _subscribed(s).subscription(c, "s1"),
    "consume": lambda s, c, e: _subscribed(s).consume(c, "s1"),
    "seek": lambda s, c, e: _ignoring(TypeError, _subscribed(s).seek, c, "s1", "beginning"),
    "ack": lambda s, c, e: _subscribed(s).ack(c, "s1", [3]),
    "ack_upto": lambda s, c, e: _subscribed(s).ack_upto(c, "s1", 3),
    "nack": lambda s, c, e: _subscribed(s).nack(c, "s1", 3),
    "parked": lambda s, c, e: _subscribed(s).parked(c, "s1"),
    "unpark": lambda s, c, e: _subscribed(s).unpark(c, "s1", [3]),
    "subscription_partitions": lambda s, c, e: _subscribed(s).subscription_partitions(
        c, "s1", {"op": "ack", "partitions": [0], "positions": [1024]}
    ),
    "publish": lambda s, c, e: _ignoring(TypeError, s.publish, c, "p1", "user/a", ["bob"]),
    "withdraw": lambda s, c, e: _ignoring(TypeError, _subscribed(s).withdraw, c, "p1"),
    "publications": lambda s, c, e: s.publications(c),
    "publication": lambda s, c, e: _subscribed(s).publication(c, "p1"),
    # the operations build their events server-side and append them through the service
    "operations": lambda s, c, e: _ignoring(TypeError, s.operations(c).create, "user/a", "tea"),
}


_AT = datetime(2026, 1, 1, tzinfo=UTC)
_SUBSCRIPTION = SubscriptionRule(
    name="s1", owner="agent:7", filter=SubscriptionFilter(), generation=0, offset=0,
    created_at=_AT, created_by="agent:7", updated_at=_AT, updated_by="agent:7",
)  # fmt: skip
_PUBLICATION = PublicationRule(
    name="p1", namespace="user/a", to=("agent:7",), offset=1, published_at=_AT,
    published_by="admin", updated_at=_AT, updated_by="admin",
)  # fmt: skip


def _subscribed(s: MemoryService) -> MemoryService:
    """``s`` whose rules (the mock backend's) hold subscription s1 and publication p1."""
    inner = s.backend.policy.side_effect

    def policy() -> PolicyState:
        p = inner()
        p.subscriptions, p.publications = {"s1": _SUBSCRIPTION}, {"p1": _PUBLICATION}
        return p

    s.backend.policy.side_effect = policy
    return s


def _ignoring(error: type[Exception], fn, *args, **kw):
    """``fn(*args)``; the mock backend's None outcome list raises ``error`` after the call."""
    try:
        fn(*args, **kw)
    except error:
        pass


def test_every_service_entry_point_passes_authorize_before_the_backend() -> None:
    entry_points = {
        name
        for name, fn in inspect.getmembers(MemoryService, inspect.isfunction)
        if not name.startswith("_") and name != "authorize"
    }
    assert entry_points == set(CALLS), "a new entry point needs a line in CALLS"
    codec = EventCodec(default_registry())
    events = codec.decode(json.dumps([_wire(), _wire()]))
    caller = Caller(principal="agent:7", context=Context(app="planner"))
    for name, call in CALLS.items():
        order: list[str] = []
        backend = mock.MagicMock(codec=codec)
        backend.vector_dim.return_value = None
        # the access log is read like a backend (and records each read after it)
        accesses = mock.MagicMock()
        for method in ("query", "export"):
            getattr(accesses, method).side_effect = lambda *a, _o=order, **k: _o.append("backend")
        service = MemoryService(backend, accesses)

        def authorize(who, action, *, namespace=None, memory_id=None, order=order):
            assert who is caller and action in ACTIONS
            order.append(f"authorize:{action}")

        service.authorize = authorize  # type: ignore[method-assign]
        # reads limited to a caller's scope ask the access control for it, first
        service.access = mock.MagicMock()
        service.access.scope.side_effect = lambda *a, _o=order: _o.append("authorize:scope")
        service.access.allowed.side_effect = lambda *a, _o=order, **k: _o.append(
            "authorize:allowed"
        )
        service.access.check_admin_over.side_effect = lambda *a, _o=order, **k: _o.append(
            "authorize:admin"
        )
        # the rules in force are read by the checks themselves (and are what ``rules`` reads)
        backend.policy.side_effect = lambda _o=order: _o.append("rules") or PolicyState()
        for method in ("append", "policy_at", "governance_log", "original", "get", "history", "list_memories", "audit", "search", "verify", "flush", "checkpoint",
                       "head", "health", "ready", "status", "backup", "replay_copy",
                       "feed", "run_retention", "hub"):  # fmt: skip
            getattr(backend, method).side_effect = lambda *a, _o=order, **k: _o.append("backend")
        backend.feed.side_effect = lambda _o=order: _o.append("backend") or mock.MagicMock()
        backend.hub.side_effect = lambda _o=order: _o.append("backend") or mock.MagicMock()
        call(service, caller, events)
        assert order and order[0].startswith("authorize:"), name
        # the rules are what they read
        reads_rules = name in ("rules", "who_can", "publications", "publication")
        read = order if reads_rules else [o for o in order if o != "rules"]
        assert read[-1] in ("backend", "rules") and "backend" not in read[:-1], (name, order)
    # a write is authorized per event
    seen: list[tuple] = []
    service = MemoryService(
        mock.MagicMock(
            codec=codec, **{"vector_dim.return_value": None, "policy.return_value": PolicyState()}
        )
    )
    service.authorize = lambda who, action, **kw: seen.append((action, kw))  # type: ignore[method-assign]
    service.append(caller, events)
    assert [a for a, _ in seen] == ["write", "write"]


def test_the_embedded_sdk_reaches_everything_through_the_service(tmp_path: Path) -> None:
    with MemoryStore.open(tmp_path / "s", semantic=False, actor="agent:9") as store:
        actions: list[str] = []
        real = store.service.authorize

        def spy(caller, action, **kw):
            assert caller.principal == "agent:9" and not caller.remote
            actions.append(action)
            return real(caller, action, **kw)

        store.service.authorize = spy  # type: ignore[method-assign]
        o = store.create("user/alice", "Alice drinks green tea")
        store.get(o.memory_id, min_offset=o.offset)
        store.history(o.memory_id)
        store.audit(namespace="user/alice")
        store.publish_json(json.dumps(_wire()))
        store.verify()
        store.flush()
        assert store.head >= 1
        store.backup(tmp_path / "copy")
        with pytest.raises(RuntimeError, match="search is disabled"):
            store.search("tea")
        store.replay(tmp_path / "replayed").close()
        assert len([d for batch in store.follow(0, idle=0.1) for d in batch]) == 2
        # (a search asks the access control for the caller's scope instead:
        # tests/unit/test_governance.py)
        assert actions == ["write", "read", "read", "audit", "write", "verify", "status",
                           "status", "backup", "replay", "audit"]  # fmt: skip


def test_an_http_caller_is_the_actor_of_what_it_writes(tmp_path: Path) -> None:
    with MemoryStore.open(tmp_path / "s", semantic=False) as store:
        client = TestClient(create_app(store))
        named = _wire(actor="claimed")
        headers = {"X-Memstream-Principal": "agent:planner", "X-Memstream-App": "planner"}
        r = client.post("/v1/events", content=json.dumps(named), headers=headers)
        assert r.status_code == 200, r.text
        anonymous = _wire(actor="producer")  # no principal: the event's own actor stands
        offset = client.post("/v1/events", content=json.dumps(anonymous)).json()["outcomes"]
        page = client.get("/v1/audit", params={"min_offset": offset[0]["offset"]}).json()
        by_id = {e["event_id"]: e for e in page["entries"]}
        assert by_id[named["event_id"]]["actor"] == "agent:planner"
        assert by_id[named["event_id"]]["context"]["app"] == "planner"
        assert by_id[anonymous["event_id"]]["actor"] == "producer"
        bad = client.get("/v1/audit", headers={"X-Memstream-App": "x" * 10_000})
        assert bad.status_code == 400 and bad.json()["field"] == "header"


def test_a_worker_serves_the_routes_and_document_of_serve(tmp_path: Path) -> None:
    from memstream.http.worker import worker_api
    from memstream.settings import SettingsError

    codec = EventCodec(default_registry())
    node = SimpleNamespace(codec=codec, settings=SimpleNamespace(partitions=4, requests="r"))
    app = SimpleNamespace(
        memstream=node,
        conf=SimpleNamespace(canonical_url="http://127.0.0.1:6066"),
        router=SimpleNamespace(external_topics_metadata=lambda: {}),
    )
    loop = asyncio.new_event_loop()
    try:
        # authentication on needs the deployment's cluster token: never made up here
        with pytest.raises(SettingsError, match="MEMSTREAM_CLUSTER_TOKEN"):
            worker_api(app, loop)  # type: ignore[arg-type]
        with pytest.raises(SettingsError, match="at least 32"):
            worker_api(app, loop, cluster_token="short")  # type: ignore[arg-type]
        worker = worker_api(app, loop, auth=False)  # type: ignore[arg-type]
        with MemoryStore.open(tmp_path / "s", semantic=False) as store:
            serve = create_app(store)
            assert worker.openapi()["paths"] == serve.openapi()["paths"]
            assert worker.openapi()["components"] == serve.openapi()["components"]
        client = TestClient(worker)
        # a worker's reads name their partition; one no worker owns answers 503
        r = client.get("/v1/memories/m1")
        assert r.status_code == 400 and "namespace is required" in r.json()["message"]
        node.owned = set()
        r = client.get("/v1/memories/m1", params={"namespace": "user/alice"})
        assert r.status_code == 503 and r.json()["error"] == "unavailable"
        assert isinstance(r.json()["partition"], int)
        assert client.post("/v1/backup", json={"dest": "/tmp/x"}).status_code == 501
        worker.state.service.backend.close()
    finally:
        loop.close()
