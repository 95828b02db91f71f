"""The Kafka runtime's shard and sequencer, driven with records directly (no broker).

The shard is what makes Kafka delivery exactly-once in effect: these tests hand it the
deliveries a broker can produce (in order, repeated, with gaps, from a re-run sequencer,
garbage, records on the wrong partition) and check what it holds afterwards.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import Create, Erase, Event, Revise, default_registry
from memstream.schemas.memcube import KeyDestruction
from memstream.streams.kafka.partitioning import partition_of
from memstream.streams.kafka.records import KRecord
from memstream.streams.kafka.sequencer import Sequencer
from memstream.streams.kafka.shard import DUPLICATE, Gap, MissingKey, Shard
from memstream.streams.keystore import KeyStore
from memstream.streams.log import GENESIS, chain_hash
from memstream.streams.sealing import Sealer

PARTS = 4
NS = "user/alice"
P = partition_of(NS.encode(), PARTS)
OTHER_NS = next(f"user/u{i}" for i in range(100) if partition_of(f"user/u{i}".encode(), PARTS) != P)


def ev(t: str, mid: str, payload, ns: str = NS) -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        type=t,
        schema_version=payload.VERSION,
        namespace=ns,
        memory_id=mid,
        occurred_at=datetime.now(UTC),
        actor="tester",
        payload=payload,
    )


class Rig:
    """A sequencer and a shard over one key store, as one worker holds them."""

    def __init__(self, root: Path):
        self.root = root
        self.codec = EventCodec(default_registry())
        self.keys = KeyStore(root / "keys.sqlite")  # creates keys (stands in for the topic)
        self.sealer = Sealer(self.keys, self.codec)
        self.seq = Sequencer(self.codec, self.sealer, "memstream.requests", PARTS)
        self.log: list[KRecord] = []  # the events partition P
        self.shard = self.open()

    def open(self) -> Shard:
        return Shard(
            self.root / "shards", "memstream.events", P, PARTS, "log-1", self.sealer, self.keys
        )

    def request(
        self, value: bytes, key: bytes | None = NS.encode(), partition: int = P
    ) -> list[KRecord]:
        """Sequence one request record and append its output to the events partition."""
        parsed = self.seq.parse(partition, KRecord(offset=len(self.log), key=key, value=value))
        out = []
        for s in self.seq.seal(parsed):
            rec = KRecord(offset=len(self.log), key=s.key, value=s.value, headers=dict(s.headers))
            self.log.append(rec)
            out.append(rec)
        return out

    def publish(self, *events: Event) -> list[KRecord]:
        return [r for e in events for r in self.request(self.codec.encode(e))]

    def memories(self) -> dict[str, tuple]:
        rows = self.shard.duck.query("SELECT memory_id, state, version, revision FROM memories")
        return {r["memory_id"]: (r["state"], r["version"], r["revision"]) for r in rows}

    def audit(self) -> list[dict]:
        return self.shard.duck.query('SELECT * FROM audit ORDER BY "offset"')


@pytest.fixture
def rig(tmp_path: Path):
    r = Rig(tmp_path)
    yield r
    r.shard.close()
    r.keys.close()


def test_applies_in_order_and_commits_the_offset_with_the_rows(rig: Rig) -> None:
    recs = rig.publish(
        ev("create", "m1", Create(text="tea")), ev("revise", "m1", Revise(text="green tea"))
    )
    res = rig.shard.apply(recs)
    assert [o.status for o in res.outcomes] == ["accepted", "accepted"]
    assert all(o.partition == P for o in res.outcomes)
    assert rig.memories() == {"m1": ("active", 2, 2)}
    rig.shard.close()
    rig.shard = rig.open()  # the offset is read back from the file
    assert rig.shard.offset == 1
    assert rig.memories() == {"m1": ("active", 2, 2)}


def test_a_redelivered_batch_changes_nothing(rig: Rig) -> None:
    recs = rig.publish(ev("create", "m1", Create(text="tea")), ev("revise", "m1", Revise(text="x")))
    rig.shard.apply(recs)
    before = rig.audit()
    res = rig.shard.apply(recs)  # the same offsets again (Faust redelivery after a rebalance)
    assert res.skipped == 2 and res.outcomes == []
    assert rig.audit() == before


def test_a_gap_is_refused_until_filled(rig: Rig) -> None:
    recs = rig.publish(*(ev("create", f"m{i}", Create(text=str(i))) for i in range(4)))
    rig.shard.apply(recs[:1])
    with pytest.raises(Gap) as e:
        rig.shard.apply(recs[2:])
    assert (e.value.expected, e.value.got) == (1, 2)
    rig.shard.close()
    rig.shard = rig.open()  # nothing of the refused batch was written
    rig.shard.apply(recs[1:])
    assert sorted(rig.memories()) == ["m0", "m1", "m2", "m3"]


def test_a_resequenced_request_is_audited_as_duplicate_and_changes_nothing(rig: Rig) -> None:
    e1 = ev("create", "m1", Create(text="tea"))
    e2 = ev("revise", "m1", Revise(text="green tea"))
    rig.shard.apply(rig.publish(e1, e2))
    # the sequencer crashed before its requests' offsets were committed: it runs them again,
    # sealing them anew (other ciphertext, same event ids) at new offsets
    res = rig.shard.apply(rig.publish(e2, e1))
    assert res.outcomes == []
    audit = rig.audit()
    assert [a["code"] for a in audit[2:]] == [DUPLICATE, DUPLICATE]
    assert rig.memories() == {"m1": ("active", 2, 2)}
    # the window of remembered ids survives a reopen
    rig.shard.close()
    rig.shard = rig.open()
    rig.shard.apply(rig.publish(e2))
    assert rig.audit()[-1]["code"] == DUPLICATE and rig.memories() == {"m1": ("active", 2, 2)}


def test_malformed_and_misrouted_requests_are_audited_and_change_nothing(rig: Rig) -> None:
    rig.shard.apply(rig.publish(ev("create", "m1", Create(text="tea"))))
    garbage = rig.request(b'{"type": "create", "namespace": 12')
    unknown = rig.request(
        rig.codec.encode(ev("create", "m2", Create(text="x"))).replace(b'"create"', b'"creat"', 1)
    )
    # a producer with the CRC32 partitioner: the request sits on the wrong partition
    wrong = rig.request(
        rig.codec.encode(ev("create", "m3", Create(text="x"))), partition=(P + 1) % PARTS
    )
    # a request keyed by one namespace that holds another's event
    other = rig.request(rig.codec.encode(ev("create", "m4", Create(text="x"), ns=OTHER_NS)))
    res = rig.shard.apply(garbage + unknown + wrong + other)
    assert [o.code for o in res.outcomes] == ["malformed", "malformed", "misrouted", "misrouted"]
    assert rig.memories() == {"m1": ("active", 1, 1)}
    rows = rig.audit()[1:]
    assert [r["type"] for r in rows] == ["malformed", "malformed", "misrouted", "misrouted"]
    assert all(r["status"] == "rejected" for r in rows)
    assert "raw sha256" in rows[0]["why"] and "$.namespace" in rows[0]["reason"]
    # the request's content never reaches the log: only its hash
    assert unknown and all(b"private diary" not in r.value for r in unknown)
    rig.shard.apply(rig.publish(ev("revise", "m1", Revise(text="still going"))))
    assert rig.memories() == {"m1": ("active", 2, 2)}


def test_garbage_and_foreign_records_on_the_events_topic_are_audited(rig: Rig) -> None:
    n = len(rig.log)
    junk = KRecord(offset=n, key=NS.encode(), value=b"\x00not json")
    foreign = KRecord(offset=n + 1, key=OTHER_NS.encode(), value=b"{}")
    nokey = KRecord(offset=n + 2, key=None, value=b"{}")
    res = rig.shard.apply([junk, foreign, nokey])
    assert [o.code for o in res.outcomes] == ["malformed", "misrouted", "misrouted"]
    assert rig.memories() == {}


def test_every_record_is_chained_like_the_embedded_log(rig: Rig) -> None:
    recs = rig.publish(ev("create", "m1", Create(text="a")), ev("create", "m1", Create(text="b")))
    recs += rig.request(b"nope")
    rig.shard.apply(recs)
    prev = GENESIS
    for r, row in zip(recs, rig.audit(), strict=True):
        recorded = int(row["recorded_at"].timestamp() * 1_000_000)
        prev = chain_hash(prev, r.offset, recorded, r.value)
        assert row["chain_hash"] == prev.hex()


def test_an_unknown_key_stops_the_batch_before_anything_is_written(
    rig: Rig, tmp_path: Path
) -> None:
    recs = rig.publish(ev("create", "m1", Create(text="tea")))
    empty = KeyStore(tmp_path / "other-keys.sqlite", create_keys=False)
    shard = Shard(
        tmp_path / "other", "memstream.events", P, PARTS, "log-1", Sealer(empty, rig.codec), empty
    )
    with pytest.raises(MissingKey):
        shard.apply(recs)
    assert shard.duck.offset() == -1
    shard.close()
    empty.close()


def test_an_erase_reports_the_keys_to_destroy_and_leaves_tombstones(rig: Rig) -> None:
    recs = rig.publish(
        ev("create", "m1", Create(text="secret")),
        ev("create", "m2", Create(text="neighbour")),
        ev("erase", "m1", Erase(scope="memory", reason="asked")),
    )
    res = rig.shard.apply(recs)
    assert res.erased == [KeyDestruction(scope="memory", subject=NS, memory_id="m1", generation=1)]
    assert rig.memories() == {"m1": ("erased", 1, 2), "m2": ("active", 1, 1)}
    assert rig.keys.is_destroyed(f"{NS}#1/m1#1")
    assert not rig.keys.is_destroyed(f"{NS}#1/m2#1") and not rig.keys.is_destroyed(f"{NS}#1")
    texts = rig.shard.duck.query("SELECT memory_id, text FROM versions ORDER BY memory_id")
    assert texts == [{"memory_id": "m1", "text": None}, {"memory_id": "m2", "text": "neighbour"}]
    assert rig.sealer.open(recs[0].value)[0].payload is None
    assert rig.sealer.open(recs[1].value)[0].payload is not None

    more = rig.publish(ev("erase", "x", Erase(scope="subject")))
    res = rig.shard.apply(more)
    assert res.erased == [KeyDestruction(scope="subject", subject=NS, generation=1)]
    assert rig.memories() == {"m1": ("erased", 1, 2), "m2": ("erased", 1, 2)}
    assert rig.keys.is_destroyed(f"{NS}#1") and rig.keys.is_destroyed(f"{NS}#1/m2#1")


def test_the_outbox_republishes_what_was_committed_but_not_published(rig: Rig) -> None:
    e1 = ev("create", "m1", Create(text="a"))
    e2 = ev("create", "m2", Create(text="b"))
    rig.shard.apply(
        rig.publish(
            e1,
            e2,
            ev("erase", "m1", Erase(scope="memory")),
            ev("erase", "e1", Erase(scope="subject")),
        )
    )
    # the worker died after the commit, before publishing: all of it is pending
    assert [o.event_id for o in rig.shard.pending_outcomes()][:1] == [e1.event_id]
    assert rig.shard.pending_erasures() == [
        KeyDestruction(scope="subject", subject=NS, generation=1),
        KeyDestruction(scope="memory", subject=NS, memory_id="m1", generation=1),
    ]
    rig.shard.published(rig.shard.offset)
    rig.shard.close()
    rig.shard = rig.open()
    assert rig.shard.pending_outcomes() == [] and rig.shard.pending_erasures() == []


def test_a_shard_of_another_log_is_rebuilt(rig: Rig) -> None:
    rig.shard.apply(rig.publish(ev("create", "m1", Create(text="a"))))
    rig.shard.close()
    other = Shard(rig.root / "shards", "memstream.events", P, PARTS, "log-2", rig.sealer, rig.keys)
    assert other.rebuild_reason and other.offset == -1
    other.close()
    rig.shard = rig.open()  # and back: built from log-2 now, so log-1's is rebuilt too
    assert rig.shard.offset == -1


def test_the_sdk_publisher_batches_a_namespace_s_events_into_records_in_order() -> None:
    from memstream.streams.kafka.producer import MAX_RECORD_EVENTS, _records

    codec = EventCodec(default_registry())
    evs = [ev("create", f"a{i}", Create(text=str(i))) for i in range(MAX_RECORD_EVENTS + 3)]
    evs.insert(5, ev("create", "b0", Create(text="other"), ns=OTHER_NS))
    items = [(e.namespace.encode(), codec.encode(e), e) for e in evs]
    recs = _records(items)
    by_key: dict[bytes, list[str]] = {}
    for key, value, _headers in recs:
        by_key.setdefault(key, []).extend(e.event_id for e in codec.decode(value))
    # every event once, each namespace in its original order, runs bounded in size
    assert by_key[NS.encode()] == [e.event_id for e in evs if e.namespace == NS]
    assert by_key[OTHER_NS.encode()] == [evs[5].event_id]
    assert [len(codec.decode(v)) for k, v, _ in recs if k == NS.encode()] == [MAX_RECORD_EVENTS, 3]
    # and the sequencer takes such a record as the events it holds
    seq = Sequencer(codec, None, "memstream.requests", PARTS)  # type: ignore[arg-type]
    first = next(v for k, v, _ in recs if k == NS.encode())
    parsed = seq.parse(P, KRecord(offset=0, key=NS.encode(), value=first))
    assert parsed.incident is None and len(parsed.events) == MAX_RECORD_EVENTS


def test_a_batch_s_outcomes_travel_in_few_records_without_their_changes(rig: Rig) -> None:
    from memstream.streams.kafka.records import (
        OUTCOMES_PER_RECORD,
        decode_outcomes,
        encode_outcomes,
    )

    events = [
        ev("create", f"m{i}", Create(text=f"fact {i}")) for i in range(OUTCOMES_PER_RECORD + 7)
    ]
    res = rig.shard.apply(rig.publish(*events))
    assert len(res.outcomes) == len(events) and res.outcomes[0].changes
    values = encode_outcomes(res.outcomes)
    assert len(values) == 2  # 500 in the first record, 7 in the second
    back = [o for v in values for o in decode_outcomes(v)]
    assert [o.event_id for o in back] == [e.event_id for e in events]
    assert all(o.changes == () and o.status == "accepted" for o in back)
    assert back[3].offset == res.outcomes[3].offset and back[3].partition == P
    one = decode_outcomes(values[0][1 : values[0].index(b"},{") + 1])  # a lone object
    assert [o.event_id for o in one] == [events[0].event_id]
    assert encode_outcomes([]) == []
