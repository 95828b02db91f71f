"""Subscriptions on the Kafka runtime: each worker serves the partitions it owns, and the
worker a consumer connects to merges every partition, with per-partition positions; acks
reach each partition's owner, so a consumer that reconnects elsewhere gets nothing acked
again and nothing lost."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import connect_sse
from memstream.streams.kafka.local import LocalDeployment, WorkerProcess
from memstream.streams.kafka.partitioning import partition_of

from memstream.pubsub.positions import decode

pytestmark = pytest.mark.slow  # two workers on a real broker

PARTITIONS = 4


@pytest.fixture
def deployment(kafka_broker, tmp_path) -> Iterator[LocalDeployment]:
    d = LocalDeployment(kafka_broker.bootstrap, tmp_path, partitions=PARTITIONS)
    try:
        yield d
    finally:
        d.close()


def _namespaces(owners: dict[int, WorkerProcess]) -> dict[str, list[str]]:
    """Two namespaces on partitions of each worker."""
    found: dict[str, list[str]] = {}
    for i in range(400):
        ns = f"team/n{i}"
        mine = found.setdefault(owners[partition_of(ns.encode(), PARTITIONS)].name, [])
        if len(mine) < 2:
            mine.append(ns)
    return found


def _receive(url: str, name: str, n: int, *, last: int | None = None, ack: bool = True):
    """``n`` deliveries of ``name`` over SSE from ``url`` (acknowledged as they come), and
    the heartbeats seen."""
    got, beats = [], []
    headers = {"Last-Event-ID": str(last)} if last is not None else {}
    with httpx.Client(base_url=url, timeout=httpx.Timeout(60, read=60)) as client:
        with connect_sse(
            client, "GET", f"/v1/subscriptions/{name}/events", params={"heartbeat": "0.5"},
            headers=headers,
        ) as es:  # fmt: skip
            assert es.response.status_code == 200, es.response.read()
            deadline = time.monotonic() + 90
            for sse in es.iter_sse():
                if sse.event == "delivery":
                    d = json.loads(sse.data)
                    got.append(d)
                    if ack:
                        r = client.post(f"/v1/subscriptions/{name}/ack",
                                        json={"positions": [d["position"]]})  # fmt: skip
                        assert r.status_code == 200 and r.json()["acked"] == 1, r.text
                elif sse.event == "heartbeat":
                    beats.append(json.loads(sse.data))
                if (len(got) >= n and beats) or time.monotonic() > deadline:
                    break
    return got, beats


def test_a_subscription_merges_every_partition_across_workers(deployment) -> None:
    d = deployment
    w1 = d.start_worker("w1", MEMSTREAM_SEMANTIC="0")
    w2 = d.start_worker("w2", MEMSTREAM_SEMANTIC="0")
    owners = d.serving([w1, w2])
    spaces = _namespaces(owners)
    h1 = httpx.Client(base_url=w1.url, timeout=60)
    r = h1.put("/v1/subscriptions/teams", json={"filter": {"namespaces": ["team/*"]},
                                                "start": "beginning"})  # fmt: skip
    assert r.status_code == 200, r.text
    written = []
    for ns in spaces["w1"] + spaces["w2"]:
        for i in range(3):
            r = h1.post("/v1/memories", json={"namespace": ns, "text": f"{ns} note {i}"})
            assert r.status_code == 201, r.text
            written.append((ns, r.json()["memory_id"]))
    h1.post("/v1/memories", json={"namespace": "other/x", "text": "not a team"})

    # through w1: every partition's matches, each partition in its own order
    got, beats = _receive(w1.url, "teams", len(written))
    assert sorted((x["event"]["namespace"], x["event"]["memory_id"]) for x in got) == sorted(
        written
    )
    by_partition: dict[int, list[int]] = {}
    for x in got:
        p, offset = decode(x["position"])
        assert p == x["partition"] == partition_of(x["event"]["namespace"].encode(), PARTITIONS)
        by_partition.setdefault(p, []).append(offset)
    assert all(offsets == sorted(offsets) for offsets in by_partition.values())
    assert {owners[p].name for p in by_partition} == {"w1", "w2"}  # merged across workers
    assert {int(p) for p in beats[-1]["partitions"]} == set(range(PARTITIONS))  # each its own

    # acked through w1 (w2's partitions acked at w2): through w2, only what is new
    later = []
    for ns in (spaces["w2"][0], spaces["w1"][0]):
        r = h1.post("/v1/memories", json={"namespace": ns, "text": f"{ns} later"})
        later.append(r.json()["memory_id"])
    again, _ = _receive(w2.url, "teams", len(later))
    assert sorted(x["event"]["memory_id"] for x in again) == sorted(later)

    # unacknowledged deliveries come again (ack timeout), from whichever worker
    r = h1.put("/v1/subscriptions/teams", json={"filter": {"namespaces": ["team/*"]},
                                                "ack_timeout": 1})  # fmt: skip
    assert r.status_code == 200
    r = h1.post("/v1/memories", json={"namespace": spaces["w2"][1], "text": "unacked"})
    first, _ = _receive(w1.url, "teams", 1, ack=False)
    second, _ = _receive(w2.url, "teams", 1)
    assert first[0]["position"] == second[0]["position"] and second[0]["attempt"] >= 2


def test_a_partition_moved_to_a_worker_that_never_owned_it_resumes_from_its_cursor(
    deployment,
) -> None:
    """w1 serves every partition; its consumer acknowledges all but one delivery, which it
    parks. w1 leaves; w2, with a data directory of its own that never held a partition,
    takes them all: it delivers only what came after (the cursors reached it through the
    partition-state topic), and lists the parked delivery."""
    d = deployment
    w1 = d.start_worker("w1", MEMSTREAM_SEMANTIC="0")
    d.serving([w1])
    h1 = httpx.Client(base_url=w1.url, timeout=60)
    r = h1.put("/v1/subscriptions/teams", json={"filter": {"namespaces": ["team/*"]},
                                                "start": "beginning"})  # fmt: skip
    assert r.status_code == 200, r.text
    spaces = [f"team/n{i}" for i in range(8)]
    assert len({partition_of(ns.encode(), PARTITIONS) for ns in spaces}) > 1
    for ns in spaces:
        r = h1.post("/v1/memories", json={"namespace": ns, "text": f"{ns} note"})
        assert r.status_code == 201, r.text
    got, _ = _receive(w1.url, "teams", len(spaces), ack=False)
    assert len(got) == len(spaces)
    rejected, *rest = got
    r = h1.post("/v1/subscriptions/teams/ack", json={"positions": [x["position"] for x in rest]})
    assert r.json()["acked"] == len(rest), r.text
    r = h1.post("/v1/subscriptions/teams/nack",
                json={"position": rejected["position"], "reason": "cannot parse"})  # fmt: skip
    assert r.json()["nacked"] is True, r.text

    w2 = d.start_worker("w2", MEMSTREAM_SEMANTIC="0")
    assert d.stop(w1) == 0
    d.serving([w2])
    h2 = httpx.Client(base_url=w2.url, timeout=60)
    later = []
    for ns in spaces[:3]:
        r = h2.post("/v1/memories", json={"namespace": ns, "text": f"{ns} later"})
        assert r.status_code == 201, r.text
        later.append(r.json()["memory_id"])
    again, _ = _receive(w2.url, "teams", len(later))
    assert sorted(x["event"]["memory_id"] for x in again) == sorted(later)
    parked = h2.get("/v1/subscriptions/teams/parked").json()["parked"]
    assert [(p["position"], p["reason"]) for p in parked] == [
        (rejected["position"], "cannot parse")
    ]
