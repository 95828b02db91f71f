"""The Kafka runtime end to end: real broker, real worker processes, real clients."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from memstream.streams.kafka.partitioning import partition_of

from memstream.errors import InvalidTransition, UnknownMemory
from memstream.kafka import KafkaMemoryStore


def test_sdk_publishes_a_worker_decides_and_any_worker_reads(deployment, tmp_path) -> None:
    w = deployment.start_worker("w1")
    deployment.serving()
    # the worker serves the API of `memstream serve`: the same routes, the same document
    from memstream import MemoryStore
    from memstream.http import create_app

    with MemoryStore.open(tmp_path / "embedded", semantic=False) as embedded:
        serve_paths = create_app(embedded).openapi()["paths"]
    worker_paths = httpx.get(f"{w.url}/openapi.json", timeout=30).json()["paths"]
    assert {p: sorted(v) for p, v in worker_paths.items()} == {
        p: sorted(v) for p, v in serve_paths.items()
    }
    with KafkaMemoryStore(deployment.settings, actor="agent-7", api=w.url) as store:
        tea = store.create("user/alice", "Alice drinks green tea", tags=["preference"])
        assert tea.accepted and tea.version == 1
        assert tea.partition == partition_of(b"user/alice", deployment.partitions)
        rev = store.revise(tea.memory_id, "Alice drinks jasmine tea", reason="she said so")
        assert (rev.version, rev.offset) == (2, tea.offset + 1)
        store.archive(tea.memory_id)
        with pytest.raises(InvalidTransition):
            store.revise(tea.memory_id, "archived memories take no revision")
        with pytest.raises(UnknownMemory):
            store.revise("nobody", "x", namespace="user/alice")
        m = store.get(tea.memory_id, min_offset=rev.offset)
        assert (m.text, m.state, m.version) == ("Alice drinks jasmine tea", "archived", 2)
        assert [v.text for v in store.history(tea.memory_id)] == [
            "Alice drinks green tea",
            "Alice drinks jasmine tea",
        ]
        # HTTP publishing on any worker: one event, a rejection, a malformed body
        doc = _wire("create", "user/alice", "http-1", {"text": "published over HTTP"})
        r = httpx.post(f"{w.url}/v1/events", content=json.dumps(doc), timeout=60)
        assert r.status_code == 200 and r.json()["outcomes"][0]["status"] == "accepted"
        r = httpx.post(
            f"{w.url}/v1/events", content=json.dumps(doc | {"event_id": str(uuid.uuid4())})
        )
        assert r.status_code == 409 and r.json()["code"] == "already_exists"
        r = httpx.post(f"{w.url}/v1/events", content=b'{"type": "create"}')
        assert r.status_code == 422 and r.json()["field"]
        assert store.get("http-1", namespace="user/alice").text == "published over HTTP"
        # the CLI publishes JSON Lines to the Kafka runtime and prints the outcomes
        lines = "\n".join(
            json.dumps(_wire("create", "user/cli", f"cli-{i}", {"text": f"from the CLI {i}"}))
            for i in range(3)
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "memstream",
                "publish",
                "--kafka",
                deployment.settings.bootstrap,
                "--json",
            ],
            input=lines.encode(),
            capture_output=True,
            env=deployment.env(),
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()
        assert json.loads(done.stdout)["accepted"] == 3
        assert store.get("cli-2", namespace="user/cli").text == "from the CLI 2"
        page = store.audit("user/alice", type="revise")
        assert [(e.type, e.status) for e in page.entries] == [
            ("revise", "accepted"),
            ("revise", "rejected"),
            ("revise", "rejected"),
        ]
        assert {e.actor for e in page.entries} == {"agent-7"}


def _wire(t: str, ns: str, mid: str, payload: dict) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": t,
        "schema_version": 1,
        "namespace": ns,
        "memory_id": mid,
        "occurred_at": datetime.now(UTC).isoformat(),
        "actor": "librdkafka",
        "payload": payload,
    }


def _crc32_misplaced(partitions: int) -> str:
    """A namespace that librdkafka's default partitioner puts on another partition."""
    import zlib

    for i in range(1000):
        ns = f"team/t{i}"
        if zlib.crc32(ns.encode()) % partitions != partition_of(ns.encode(), partitions):
            return ns
    raise AssertionError("no namespace found")


def test_raw_json_from_librdkafka_is_projected_like_the_sdk_and_bad_records_are_audited(
    deployment,
) -> None:
    from confluent_kafka import Producer

    w = deployment.start_worker("w1")
    deployment.serving()
    s = deployment.settings
    ops = [
        ("create", "1", {"text": "Bob prefers window seats", "tags": ["travel"]}),
        ("revise", "1", {"text": "Bob prefers aisle seats"}),
        ("create", "2", {"text": "Bob is vegetarian"}),
        ("merge", "3", {"sources": ["1", "2"], "text": "Bob: aisle seat, vegetarian meal"}),
        ("archive", "1", {}),  # merged away: rejected
    ]

    def ids(prefix: str, op: tuple) -> tuple:
        t, mid, p = op
        if "sources" in p:
            p = {**p, "sources": [prefix + x for x in p["sources"]]}
        return t, prefix + mid, p

    with KafkaMemoryStore(s, api=w.url) as store:
        # the operations through the SDK, in namespace user/sdk (memory ids s1, s2, s3)
        sdk = store.append(
            [store.event(t, "user/sdk", m, p) for t, m, p in (ids("s", o) for o in ops)]
        )
        # the same as plain JSON from librdkafka with the Java-compatible partitioner
        good = Producer({"bootstrap.servers": s.bootstrap, "partitioner": "murmur2_random"})
        for t, m, p in (ids("r", o) for o in ops):
            good.produce(
                s.requests, json.dumps(_wire(t, "user/raw", m, p)).encode(), key=b"user/raw"
            )
        # then garbage, and a record librdkafka's default (CRC32) puts on the wrong partition
        good.produce(s.requests, b"{not json", key=b"user/raw")
        good.produce(s.requests, json.dumps({"type": "create"}).encode(), key=b"user/raw")
        assert good.flush(30) == 0
        ns = _crc32_misplaced(deployment.partitions)
        crc = Producer({"bootstrap.servers": s.bootstrap})
        crc.produce(
            s.requests,
            json.dumps(_wire("create", ns, "x1", {"text": "lost?"})).encode(),
            key=ns.encode(),
        )
        assert crc.flush(30) == 0
        # the worker goes on: a later SDK event in the same partition is decided
        assert store.create("user/raw", "after the garbage", memory_id="r9").accepted

        def state(namespace: str, prefix: str) -> list[tuple]:
            return [
                (m.memory_id[1:], m.state, m.version, m.revision, m.text)
                for i in ("1", "2", "3")
                if (m := store.get(prefix + i, namespace=namespace)) is not None
            ]

        assert [o.status for o in sdk] == ["accepted"] * 4 + ["rejected"]
        assert len(state("user/raw", "r")) == 3
        assert state("user/raw", "r") == state("user/sdk", "s")
        raw_audit = store.audit("user/raw").entries
        assert [(e.type, e.code) for e in raw_audit if e.status == "rejected"] == [
            ("archive", "invalid_transition"),
            ("malformed", "malformed"),
            ("malformed", "malformed"),
        ]
        assert {e.actor for e in raw_audit if e.type == "create"} == {"librdkafka", "sdk"}
        # the misrouted record is audited (in the partition it was written to), not projected
        assert store.get("x1", namespace=ns) is None
        deadline = time.monotonic() + 30
        while True:
            found = [
                e
                for p in range(deployment.partitions)
                for e in store.audit(partition=p, type="misrouted").entries
            ]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(found) == 1 and ns in found[0].reason and "murmur2" in found[0].reason


# -- failure: workers killed, restarted, failing mid-batch; the broker gone ------------------------


def _script(n_namespaces: int, rounds: int) -> list[list[tuple]]:
    """Per namespace, a deterministic sequence of operations (some rejected on purpose)."""
    out = []
    for i in range(n_namespaces):
        ns, ops = f"tenant/n{i}", []
        for r in range(rounds):
            a, b = f"n{i}a{r}", f"n{i}b{r}"
            ops += [
                ("create", ns, a, {"text": f"fact {r} of tenant {i}"}),
                ("create", ns, b, {"text": f"other fact {r} of tenant {i}"}),
                ("revise", ns, a, {"text": f"fact {r} of tenant {i}, revised"}),
                ("archive", ns, b, {}),
                ("revise", ns, b, {"text": "archived: rejected"}),
                ("restore", ns, b, {}),
                ("merge", ns, f"n{i}m{r}", {"sources": [a, b], "text": f"merged {r} of {i}"}),
                ("revise", ns, a, {"text": "merged away: rejected"}),
            ]
        out.append(ops)
    return out


def _interleaved(script: list[list[tuple]]) -> list[tuple]:
    rows, longest = [], max(len(s) for s in script)
    for k in range(longest):
        rows += [s[k] for s in script if k < len(s)]
    return rows


def _reference(tmp_path, events) -> dict[str, tuple]:
    """The same events through the embedded store (the same projectors, one process)."""
    from memstream import MemoryStore

    with MemoryStore.open(tmp_path / "reference", durability="os") as ref:
        ref.append(events)
        ref.flush()
        rows = ref.runtime.duck.query(
            "SELECT memory_id, namespace, state, version, revision FROM memories"
        )
        texts = {
            r["memory_id"]: r["text"]
            for r in ref.runtime.duck.query(
                "SELECT v.memory_id, v.text FROM versions v JOIN memories m "
                "ON m.memory_id = v.memory_id AND m.version = v.version"
            )
        }
    return {
        r["memory_id"]: (
            r["namespace"],
            r["state"],
            r["version"],
            r["revision"],
            texts[r["memory_id"]],
        )
        for r in rows
    }


def _state(store: KafkaMemoryStore, expected: dict[str, tuple]) -> dict[str, tuple]:
    got = {}
    for mid, (ns, *_rest) in expected.items():
        m = store.get(mid, namespace=ns)
        if m is not None:
            got[mid] = (m.namespace, m.state, m.version, m.revision, m.text)
    return got


def _audited(store: KafkaMemoryStore, partitions: int) -> list:
    entries = []
    for p in range(partitions):
        after = None
        while True:
            page = store.audit(partition=p, after=after, limit=10_000)
            entries += page.entries
            if page.next_after is None:
                break
            after = page.next_after
    return entries


def _check_exactly_once(store, partitions: int, events, outcomes) -> None:
    """Every published event is in the log's audit exactly once (no duplicate application),
    with the verdict its producer was told."""
    audited = [e for e in _audited(store, partitions) if e.code != "duplicate"]
    ids = [e.event_id for e in audited]
    assert len(ids) == len(set(ids)), "an event was applied twice"
    by_id = {e.event_id: e for e in audited}
    for ev, out in zip(events, outcomes, strict=True):
        assert ev.event_id in by_id, f"event {ev.event_id} was lost"
        assert (by_id[ev.event_id].status, by_id[ev.event_id].offset) == (out.status, out.offset)


def _publish_all(store: KafkaMemoryStore, events, batch: int = 40, on_batch=None) -> list:
    outcomes = []
    for i in range(0, len(events), batch):
        outcomes += store.append(events[i : i + batch])
        if on_batch is not None:
            on_batch(i // batch)
    return outcomes


def test_a_killed_worker_s_partitions_move_and_the_result_equals_one_uninterrupted_run(
    deployment, tmp_path
) -> None:
    w1 = deployment.start_worker("w1")
    w2 = deployment.start_worker("w2")
    owners = deployment.serving([w1, w2])
    assert {w.name for w in owners.values()} == {"w1", "w2"}, "both workers share the partitions"
    killed: list[float] = []

    def kill_w1(i: int) -> None:
        if i == 4:  # mid-stream: w1 holds unpublished outcomes and unprojected records
            w1.process.kill()
            killed.append(time.monotonic())

    with KafkaMemoryStore(deployment.settings, api=w2.url) as store:
        # reads go to any worker: w2 forwards a read of w1's partition to w1
        w1_part = next(p for p, w in owners.items() if w.name == "w1")
        ns = next(
            f"route/{i}" for i in range(1000) if partition_of(f"route/{i}".encode(), 4) == w1_part
        )
        placed = store.create(ns, "read me through the other worker", memory_id="routed")
        assert (
            store.get("routed", min_offset=placed.offset).text == "read me through the other worker"
        )
        status = subprocess.run(
            [sys.executable, "-m", "memstream", "status", "--api", w2.url, "--json"],
            capture_output=True,
            check=True,
        )
        workers = json.loads(status.stdout)["workers"]
        assert sorted(int(p) for w in workers for p in w["partitions"]) == list(range(4))
        assert all(v["lag"] == 0 for w in workers for v in w["partitions"].values())

        events = [store.event(t, ns, m, p) for t, ns, m, p in _interleaved(_script(10, 3))]
        outcomes = _publish_all(store, events, on_batch=kill_w1)
        assert killed and w1.process.wait(10) == -9
        owners = deployment.serving([w2])
        assert set(owners) == set(range(deployment.partitions))
        expected = _reference(tmp_path, events)
        assert _state(store, expected) == expected
        _check_exactly_once(store, deployment.partitions, events, outcomes)


def test_a_restarted_worker_resumes_from_its_shards_without_reprocessing(
    deployment, tmp_path
) -> None:
    w = deployment.start_worker("w1")
    deployment.serving()
    with KafkaMemoryStore(deployment.settings, api=w.url) as store:
        events = [store.event(t, ns, m, p) for t, ns, m, p in _interleaved(_script(6, 2))]
        first = _publish_all(store, events[:60])
        assert w.status()["applied_events"] >= 60
        assert deployment.stop(w) == 0  # SIGTERM: a clean stop
        w = deployment.start_worker("w1")  # same data directory
        deployment.serving()
        assert w.status()["applied_events"] == 0, "records the shards held were applied again"
        store._http.base_url = w.url  # the new worker's API
        rest = _publish_all(store, events[60:])
        assert w.status()["applied_events"] >= len(events) - 60
        expected = _reference(tmp_path, events)
        assert _state(store, expected) == expected
        _check_exactly_once(store, deployment.partitions, events, first + rest)


def test_a_projector_failing_mid_batch_loses_nothing(deployment, tmp_path) -> None:
    fault = tmp_path / "fail-once"
    fault.touch()
    w = deployment.start_worker("w1", MEMSTREAM_FAULT_ONCE=str(fault))
    deployment.serving()
    settings = deployment.settings
    with KafkaMemoryStore(settings, api=w.url) as store:
        events = [store.event(t, ns, m, p) for t, ns, m, p in _interleaved(_script(4, 3))]
        # one big batch: the projector sees several records of a partition at once
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(store.append, events)
            assert w.process.wait(60) == 70, w.log.read_text()[-2000:]
            assert not fault.exists()
            assert "injected fault" in w.log.read_text()
            w = deployment.start_worker("w1")  # same data directory, no fault
            outcomes = pending.result(timeout=120)
        deployment.serving()
        store._http.base_url = w.url
        expected = _reference(tmp_path, events)
        assert _state(store, expected) == expected
        _check_exactly_once(store, deployment.partitions, events, outcomes)


def test_an_unreachable_broker_fails_loudly_and_reports_nothing_written(tmp_path) -> None:
    import asyncio

    from memstream.streams.kafka.broker import free_port, start_broker
    from memstream.streams.kafka.producer import KafkaPublisher, NotWritten
    from memstream.streams.kafka.settings import KafkaSettings

    nobody = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}", send_timeout=3.0)
    started = time.monotonic()
    with pytest.raises(NotWritten, match="nothing was written"):
        KafkaMemoryStore(nobody)
    assert time.monotonic() - started < 30

    async def gone() -> None:
        broker = start_broker()
        s = KafkaSettings(bootstrap=broker.bootstrap, send_timeout=3.0, prefix="gone")
        from memstream.streams.kafka.topics import ensure_topics

        await ensure_topics(s)
        async with KafkaPublisher(s) as pub:
            broker.stop()
            ev = KafkaMemoryStore.__new__(KafkaMemoryStore)
            ev.registry, ev.codec, ev.actor = pub.codec.registry, pub.codec, "t"
            e = ev.event("create", "user/a", "m1", {"text": "x"})
            t0 = time.monotonic()
            with pytest.raises(NotWritten) as err:
                await pub.publish([e])
            assert err.value.event_ids == [e.event_id]
            assert time.monotonic() - t0 < 30

    asyncio.run(gone())


def test_topics_are_created_with_their_configs_and_a_compacted_log_is_refused(kafka_broker) -> None:
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from memstream.streams.kafka.settings import KafkaSettings
    from memstream.streams.kafka.topics import TopicMisconfigured, ensure_topics

    async def run() -> None:
        good = KafkaSettings(bootstrap=kafka_broker.bootstrap, prefix=f"ok{uuid.uuid4().hex[:6]}")
        await ensure_topics(good)
        await ensure_topics(good, create=False)  # idempotent, and checks pass
        bad = KafkaSettings(bootstrap=kafka_broker.bootstrap, prefix=f"bad{uuid.uuid4().hex[:6]}")
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
        await admin.start()
        await admin.create_topics(
            [NewTopic(bad.events, bad.partitions, 1, topic_configs={"cleanup.policy": "compact"})]
        )
        await admin.close()
        with pytest.raises(TopicMisconfigured, match="cleanup.policy=compact"):
            await ensure_topics(bad)
        other = KafkaSettings(bootstrap=kafka_broker.bootstrap, prefix=good.prefix, partitions=3)
        with pytest.raises(TopicMisconfigured, match="partitions"):
            await ensure_topics(other)

    asyncio.run(run())
