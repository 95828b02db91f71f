"""Pub/sub over HTTP against a real ``memstream serve``: subscriptions set over the API,
deliveries read as Server-Sent Events (raw, and through the client's HttpSubscriber),
acknowledgements, redelivery, the parked list, Last-Event-ID, a server killed mid-delivery
and restarted, read grants, tombstones, publications' terms, and the errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from memstream import Delivery, Heartbeat
from memstream.client import HttpMemoryStore
from memstream.errors import (
    BadRequest,
    Forbidden,
    SubscriptionClosed,
    TermsViolated,
    UnknownSubscription,
)

TOKEN = re.compile(r"mst_tok-[0-9a-f]+_[A-Za-z0-9_-]+")


class Stream:
    """One SSE connection, read event by event (each: name, decoded data, id)."""

    def __init__(self, source: Any):
        self.response = source.response
        self._events = source.iter_sse()

    def next(self) -> tuple[str, dict[str, Any], str]:
        sse = next(self._events)
        return sse.event, json.loads(sse.data), sse.id

    def deliveries(self, n: int, *, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The next ``n`` deliveries (heartbeats skipped)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            assert time.monotonic() < deadline, f"only {len(out)} of {n} deliveries came"
            kind, data, sse_id = self.next()
            if kind == "delivery":
                assert sse_id == str(data["position"])
                out.append(data)
            else:
                assert kind == "heartbeat", (kind, data)
        return out

    def heartbeat(
        self, *, beyond: int, settled: bool = False, timeout: float = 20.0
    ) -> dict[str, Any]:
        """The first heartbeat with a position at or beyond ``beyond`` (and, ``settled``,
        nothing in flight), with no delivery before it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kind, data, _ = self.next()
            assert kind == "heartbeat", f"unexpected {kind}: {data}"
            if data["position"] >= beyond and not (settled and data["in_flight"]):
                return data
        raise AssertionError(f"no heartbeat at or beyond {beyond}")


@contextlib.contextmanager
def stream(
    server: Any,
    name: str,
    *,
    token: str | None = None,
    heartbeat: float = 0.3,
    last_event_id: int | None = None,
) -> Iterator[Stream]:
    headers = _auth(server, token)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    with (
        httpx.Client(base_url=server.url, timeout=httpx.Timeout(30.0)) as client,
        connect_sse(
            client, "GET", f"/v1/subscriptions/{name}/events", headers=headers,
            params={"heartbeat": heartbeat},
        ) as source,
    ):  # fmt: skip
        assert source.response.status_code == 200, source.response.read()
        yield Stream(source)


def _auth(server: Any, token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else dict(server.headers)


def _write(c: httpx.Client, namespace: str, text: str) -> dict[str, Any]:
    r = c.post("/v1/memories", json={"namespace": namespace, "text": text})
    assert r.status_code == 201, r.text
    return r.json()


def _subscribe(c: httpx.Client, name: str, **body: Any) -> dict[str, Any]:
    r = c.put(f"/v1/subscriptions/{name}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _wait(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)


def _admin(server: Any) -> HttpMemoryStore:
    return HttpMemoryStore.connect(server.url, token=server.token)


def test_deliveries_arrive_in_order_are_acknowledged_and_heartbeats_tell_the_position(api):
    with api.client() as c:
        view = _subscribe(c, "orders", filter={"namespaces": ["orders/*"]}, start="now")
        assert view["name"] == "orders" and view["filter"]["namespaces"] == ["orders/*"]
        written = [_write(c, "orders/eu", f"order {i}") for i in range(5)]
        other = _write(c, "billing/eu", "not for this subscription")
        with stream(api, "orders") as s:
            assert s.response.headers["content-type"].startswith("text/event-stream")
            assert s.response.headers["x-accel-buffering"] == "no"
            got = s.deliveries(5)
            assert [d["position"] for d in got] == [o["offset"] for o in written]
            assert [d["event"]["payload"]["text"] for d in got] == [f"order {i}" for i in range(5)]
            assert {(d["attempt"], d["kind"], d["subscription"]) for d in got} == {
                (1, "event", "orders")
            }
            positions = [d["position"] for d in got]
            r = c.post("/v1/subscriptions/orders/ack", json={"positions": positions[:3]})
            assert r.json() == {"acked": 3}
            r = c.post("/v1/subscriptions/orders/ack", json={"upto": positions[4]})
            assert r.json() == {"acked": 2}
            # nothing else matches: heartbeats, with how far the subscription has looked
            beat = s.heartbeat(beyond=other["offset"], settled=True)
            assert beat["subscription"] == "orders" and beat["head"] >= other["offset"]
            assert beat["cursor"] >= positions[4]
        after = c.get("/v1/subscriptions/orders").json()
        assert after["cursor"] >= positions[4] and after["stats"]["in_flight"] == 0
        listed = c.get("/v1/subscriptions").json()["subscriptions"]
        assert "orders" in [v["name"] for v in listed]


def test_last_event_id_sends_again_at_once_what_the_client_did_not_see(api):
    with api.client() as c:
        _subscribe(c, "resume", filter={"namespaces": ["resume/*"]}, ack_timeout=4.0)
        offsets = [_write(c, "resume/a", f"note {i}")["offset"] for i in range(8)]
        with stream(api, "resume") as s:
            first = [d["position"] for d in s.deliveries(4)]
            # the server has sent all eight (in flight); the client read four of them
            _wait(lambda: c.get("/v1/subscriptions/resume").json()["stats"]["in_flight"] == 8)
        assert first == offsets[:4]
        # two acknowledged; two seen but not acknowledged; the connection dropped
        assert c.post("/v1/subscriptions/resume/ack", json={"positions": first[:2]}).json() == {
            "acked": 2
        }
        with stream(api, "resume", last_event_id=first[-1]) as s:
            # what was never seen comes at once, before anything's ack_timeout runs out
            unseen = s.deliveries(4)
            assert [d["position"] for d in unseen] == offsets[4:]
            r = c.post("/v1/subscriptions/resume/ack", json={"positions": offsets[4:]})
            assert r.json() == {"acked": 4}
            # and the two seen, not acknowledged, come again after their ack_timeout
            again = s.deliveries(2)
            assert [d["position"] for d in again] == offsets[2:4]
            assert all(d["attempt"] >= 2 for d in again)
            c.post("/v1/subscriptions/resume/ack", json={"positions": offsets[2:4]})
            s.heartbeat(beyond=offsets[-1])  # and nothing else: the acknowledged never again
        assert c.get("/v1/subscriptions/resume").json()["cursor"] >= offsets[-1]


def test_redelivery_after_the_ack_timeout_and_the_parked_list(api):
    with api.client() as c:
        _subscribe(c, "retry", filter={"namespaces": ["retry/*"]}, ack_timeout=1.5)
        a, b = (_write(c, "retry/a", t)["offset"] for t in ("first", "second"))
        with stream(api, "retry", heartbeat=0.2) as s:
            got = s.deliveries(4)
            # not acknowledged: each comes again, attempt 2
            assert [(d["position"], d["attempt"]) for d in got] == [(a, 1), (b, 1), (a, 2), (b, 2)]
            r = c.post("/v1/subscriptions/retry/nack", json={"position": a, "reason": "bad data"})
            assert r.json() == {"nacked": True}
            r = c.post("/v1/subscriptions/retry/nack", json={"position": b, "park": False})
            assert r.json() == {"nacked": True}
            (redo,) = s.deliveries(1)
            assert (redo["position"], redo["attempt"]) == (b, 3)
            assert c.post("/v1/subscriptions/retry/ack", json={"positions": [b]}).json() == {
                "acked": 1
            }
            s.heartbeat(beyond=b)
        r = c.post("/v1/subscriptions/retry/nack", json={"position": b})
        assert r.json() == {"nacked": False}  # no longer in flight
        parked = c.get("/v1/subscriptions/retry/parked").json()["parked"]
        assert [(p["position"], p["reason"], p["attempts"]) for p in parked] == [(a, "bad data", 2)]
        assert c.get("/v1/subscriptions/retry").json()["parked"] == 1
        r = c.post("/v1/subscriptions/retry/unpark", json={"positions": [a]})
        assert r.json() == {"unparked": 1}
        assert c.get("/v1/subscriptions/retry/parked").json() == {"parked": []}


def test_a_principal_receives_only_what_it_may_read_and_erasures_as_tombstones(api):
    with _admin(api) as admin:
        admin.add_principal("bob")
        admin.grant("bob", "read", "people/bob")
        _, bob_token = admin.issue_token("bob")
    bob = {"Authorization": f"Bearer {bob_token}"}
    with api.client() as c, httpx.Client(base_url=api.url, headers=bob, timeout=30) as b:
        r = b.put("/v1/subscriptions/bob-feed", json={"filter": {"namespaces": ["people/*"]}})
        assert r.status_code == 200, r.text
        assert r.json()["owner"] == "bob"
        hidden = _write(c, "people/alice", "Alice's private diary")
        note = _write(c, "people/bob", "Bob's flat is at 12 Elm Street")
        with stream(api, "bob-feed", token=bob_token) as s:
            (d,) = s.deliveries(1)
            assert d["position"] == note["offset"] and d["kind"] == "event"
            assert d["event"]["payload"]["text"] == "Bob's flat is at 12 Elm Street"
            b.post("/v1/subscriptions/bob-feed/ack", json={"positions": [d["position"]]})
            r = c.post(f"/v1/memories/{note['memory_id']}/erase", json={"reason": "moved out"})
            assert r.status_code == 200, r.text
            erased = r.json()
            later = _write(c, "people/bob", "Bob drinks coffee")
            kind, tomb, _ = s.next()
            while kind == "heartbeat":
                kind, tomb, _ = s.next()
            assert kind == "delivery" and tomb["position"] == erased["offset"]
            assert tomb["kind"] == "tombstone" and tomb["event"]["type"] == "erase"
            assert tomb["event"]["memory_id"] == note["memory_id"]
            assert tomb["event"]["payload"] is None and "Elm Street" not in json.dumps(tomb)
            (last,) = s.deliveries(1)
            assert last["position"] == later["offset"]
            b.post("/v1/subscriptions/bob-feed/ack", json={"upto": later["offset"]})
            s.heartbeat(beyond=later["offset"])
        # the memory bob may not read was looked at (it is behind the position) and resolved
        assert hidden["offset"] < later["offset"]
        assert b.get("/v1/subscriptions/bob-feed").json()["cursor"] >= later["offset"]


def test_the_http_subscriber_sync_and_async(api):
    with _admin(api) as ms:
        ms.create_subscription("sync-feed", namespaces=["client/sync"], ack_timeout=30)
        offsets = [ms.create("client/sync", f"sync {i}").offset for i in range(3)]
        got: list[int] = []
        with ms.subscribe("sync-feed", heartbeat=0.3) as sub:
            for d in sub:
                if isinstance(d, Delivery):
                    assert d.event["payload"]["text"] == f"sync {len(got)}"
                    got.append(d.position)
                    assert sub.ack(d.position) == 1
                elif len(got) == 3:
                    assert isinstance(d, Heartbeat) and d.position >= offsets[-1]
                    break
            assert got == offsets
            assert ms.get_subscription("sync-feed").cursor >= offsets[-1]
            # a timeout shorter than the server's heartbeat: a heartbeat made here
            slow = ms.subscribe("sync-feed", heartbeat=60)
            t = time.monotonic()
            beat = slow.next(timeout=0.2)
            assert isinstance(beat, Heartbeat) and time.monotonic() - t < 5
            assert beat.cursor >= offsets[-1]
            slow.close()
            # deleting the subscription ends the iteration (the stream's `closed` event)
            ms.delete_subscription("sync-feed", reason="done")
            assert [x for x in sub if isinstance(x, Delivery)] == []
            with pytest.raises(SubscriptionClosed):
                sub.next()

        ms.create_subscription("async-feed", namespaces=["client/async"], ack_timeout=30)
        positions = [ms.create("client/async", f"async {i}").offset for i in range(3)]

        async def consume() -> list[tuple[int, int]]:
            out: list[tuple[int, int]] = []
            async with ms.subscribe("async-feed", heartbeat=0.3) as sub:
                async for d in sub:
                    if isinstance(d, Delivery):
                        out.append((d.position, d.attempt))
                        if d.position == positions[1] and d.attempt == 1:
                            assert await sub.nack_async(d.position, park=False) is True
                        else:
                            assert await sub.ack_async(d.position) == 1
                    elif len({p for p, _ in out}) == 3:
                        break
            return out

        got_async = asyncio.run(consume())
        # the one rejected with park=False came again at once, attempt 2
        assert got_async == [
            (positions[0], 1), (positions[1], 1), (positions[1], 2), (positions[2], 1)
        ] or got_async == [
            (positions[0], 1), (positions[1], 1), (positions[2], 1), (positions[1], 2)
        ]  # fmt: skip
        assert ms.get_subscription("async-feed").cursor >= positions[-1]


def test_publication_terms_over_http(api):
    with _admin(api) as admin:
        admin.add_principal("carol")
        _, carol_token = admin.issue_token("carol")
        pub = admin.publish("menu", "kitchen/menu", ["carol"], max_deliveries=1,
                            period_seconds=3600, description="today's menu")  # fmt: skip
        assert pub.to == ["carol"] and pub.max_deliveries == 1
        assert [p.name for p in admin.publications()] == ["menu"]
        with HttpMemoryStore.connect(api.url, token=carol_token) as carol:
            assert carol.get_publication("menu").namespace == "kitchen/menu"
            carol.create_subscription("menu-feed", publication="menu")
            first = admin.create("kitchen/menu", "soup").offset
            admin.create("kitchen/menu", "stew")
            sub = carol.subscribe("menu-feed", heartbeat=0.3)
            d = sub.next(timeout=20)
            while not isinstance(d, Delivery):
                d = sub.next(timeout=20)
            assert d.position == first and d.provenance is not None
            assert d.provenance.publication == "menu"
            sub.ack(d.position)
            # one delivery per hour: the stream's `error` event, raised with the term
            with pytest.raises(TermsViolated) as e:
                while True:
                    sub.next(timeout=20)
            assert e.value.term == "max_deliveries" and e.value.retry_after > 0
            sub.close()
            admin.withdraw("menu", reason="kitchen closed")
            assert admin.get_publication("menu").withdrawn is True
            with pytest.raises(TermsViolated) as e:
                carol.create_subscription("menu-again", publication="menu")
            assert e.value.term == "withdrawn"


def test_errors_name_the_subscription_the_owner_and_the_field(api):
    with api.client() as c:
        r = c.get("/v1/subscriptions/nope")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        assert r.json()["name"] == "nope"
        assert c.get("/v1/subscriptions/nope/events").status_code == 404
        r = c.put("/v1/subscriptions/bad", json={"filter": {"namespaces": "team/a"}})
        assert r.status_code == 400 and r.json()["field"] == "body.filter.namespaces"
        r = c.put("/v1/subscriptions/bad", json={"filter": {"namespace": ["team/a"]}})
        assert r.status_code == 400 and "namespace" in r.json()["message"]
        r = c.put("/v1/subscriptions/bad", json={"start": "yesterday"})
        assert r.status_code == 400 and r.json()["field"] == "start"
        _subscribe(c, "admins-only", filter={"namespaces": ["secret/*"]})
        r = c.post("/v1/subscriptions/admins-only/ack", json={})
        assert r.status_code == 400 and r.json()["field"] == "body.positions"
        r = c.get("/v1/subscriptions/admins-only/events", headers={"Last-Event-ID": "x"})
        assert r.status_code == 400 and "Last-Event-ID" in r.json()["field"]
    with _admin(api) as admin:
        admin.add_principal("dave")
        _, dave_token = admin.issue_token("dave")
        with pytest.raises(UnknownSubscription) as missing:
            admin.subscribe("nope")
        assert missing.value.name == "nope"
        with pytest.raises(BadRequest) as bad:
            admin.create_subscription("bad", filter={"kinds": ["poem"]})
        assert bad.value.field == "body.filter.kinds[0]"
        with pytest.raises(BadRequest) as both:
            admin.create_subscription("bad", namespaces=["a"], filter={"types": ["create"]})
        assert both.value.field == "filter"
    dave = {"Authorization": f"Bearer {dave_token}"}
    with httpx.Client(base_url=api.url, headers=dave, timeout=30) as d:
        r = d.get("/v1/subscriptions/admins-only")
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        assert d.get("/v1/subscriptions/admins-only/events").status_code == 403
        assert d.post("/v1/subscriptions/admins-only/ack", json={"upto": 5}).status_code == 403
        assert d.get("/v1/subscriptions").json() == {"subscriptions": []}
    with HttpMemoryStore.connect(api.url, token=dave_token) as dave_sdk:
        with pytest.raises(Forbidden):
            dave_sdk.subscribe("admins-only")


def test_a_server_killed_mid_delivery_resumes_from_the_cursor(server_factory, tmp_path):
    """SIGKILL with a stream open and deliveries unacknowledged; a new server on the same
    store and port: the subscriber reconnects by itself and receives every delivery not
    acknowledged, none acknowledged; a stopping server ends the open streams at once."""
    store = tmp_path / "store"
    first = server_factory(store)
    (admin_token,) = TOKEN.findall(first.stdout())  # survives restarts, unlike the owner's
    port = httpx.URL(first.url).port
    with HttpMemoryStore.connect(first.url, token=admin_token) as ms:
        ms.create_subscription("durable", namespaces=["jobs/*"], ack_timeout=120)
        offsets = [ms.create("jobs/a", f"job {i}").offset for i in range(10)]
        sub = ms.subscribe("durable", heartbeat=0.5)
        sub.retries = 40  # the restart below takes a few seconds
        seen: list[int] = []
        while len(seen) < 10:
            d = sub.next(timeout=20)
            if isinstance(d, Delivery):
                seen.append(d.position)
                if len(seen) <= 4:
                    assert sub.ack(d.position) == 1
        assert seen == offsets
        first.kill()  # SIGKILL: 6 deliveries in flight, the stream open
        again = server_factory(store, "--port", str(port))
        assert again.url == first.url
        more = [ms.create("jobs/a", f"job {i}").offset for i in (10, 11)]
        resumed: list[int] = []
        deadline = time.monotonic() + 60
        while len(resumed) < 8:
            assert time.monotonic() < deadline, resumed
            d = sub.next(timeout=20)
            if isinstance(d, Delivery):
                resumed.append(d.position)
                sub.ack(d.position)
        assert resumed == offsets[4:] + more  # every unacknowledged one, none acknowledged
        assert sub.connections >= 2
        assert isinstance(sub.next(timeout=20), Heartbeat)
        # SIGTERM with the stream open: the server ends it and stops at once (not after
        # its 30 s grace period for requests in flight)
        t = time.monotonic()
        assert again.stop(timeout=25) == 0, again.log()
        assert time.monotonic() - t < 10
        sub.close()
