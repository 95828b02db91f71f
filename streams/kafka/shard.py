"""One partition of the events topic, projected: the same decide and project as embedded.

A :class:`Shard` owns one DuckDB file (the core projection of its partition) and the
decision state of the memories in it. :meth:`Shard.apply` takes records in offset order and,
in one DuckDB transaction, writes their rows together with the offset they reach, so the
shard's offset is the authority on what it holds: a record at or below it is skipped
(duplicate delivery by offset); a record beyond ``offset + 1`` means a gap the driver must
fill from the log first (:class:`Gap`). A record whose event id the shard already holds is a
duplicate delivery by ``event_id`` (a sequencer re-ran after a crash): it is audited as
``duplicate`` and changes nothing.

Every record of the partition gets exactly one audit row, chained like the embedded log
(``sha256(prev | offset | recorded_at | record bytes)``), so ``audit`` over the shard is a
complete, tamper-evident account of the partition. Records that are not events (incidents
from the sequencer, garbage or misrouted records written to the events topic by someone
else) are audited as ``malformed``/``misrouted`` and change no state.

The shard does no Kafka I/O: drivers (the Faust worker, the raw aiokafka benchmark
consumer, the gap filler) hand it :class:`~.records.KRecord` lists.
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from memstream.projections.core import project
from memstream.projections.decide import DecisionState, decide
from memstream.projections.decided import read_outcomes
from memstream.projections.duck import DuckStore
from memstream.projections.policy import PolicyState
from memstream.projections.processor import Decided
from memstream.schemas.events import Event
from memstream.schemas.memcube import KeyDestruction, Logged, Outcome
from memstream.streams.feed import DecidedFeed
from memstream.streams.keystore import KeyStore
from memstream.streams.log import GENESIS, chain_hash
from memstream.streams.sealing import RecordCorrupt, Sealer

from .partitioning import partition_of
from .records import (
    H_KIND,
    H_RECORDED_AT,
    KIND_INCIDENT,
    Incident,
    KRecord,
    decode_incident,
    incident,
)

CORE_FILE = "core.duckdb"
OUTBOX = "outbox"
DUPLICATE = "duplicate"
#: Event ids remembered for dedupe by ``event_id`` (the most recent ones of the shard).
DEDUPE_WINDOW = 200_000
#: One DuckDB thread per shard. A worker writes its shards from parallel threads already,
#: and each shard's database would otherwise keep a pool of its own (one thread per core)
#: to schedule statements of a few hundred rows: measured on the benchmark, a worker fed one
#: request record per event projected 1,122-1,262 ev/s with one thread per shard against
#: 867-998 with DuckDB's default, using about a quarter less CPU.
SHARD_DUCKDB_CONFIG = {"threads": "1"}
SYSTEM_ACTOR = "memstream"
#: The codes of the audit rows a shard writes for records that are not events.
INCIDENTS = ("malformed", "misrouted")


class Gap(RuntimeError):
    """Records are missing between the shard's offset and the batch: fill them first."""

    def __init__(self, partition: int, expected: int, got: int):
        self.partition, self.expected, self.got = partition, expected, got
        super().__init__(
            f"partition {partition}: the shard holds up to offset {expected - 1} but was "
            f"handed offset {got}; read {expected}..{got - 1} from the log first"
        )


class MissingKey(RuntimeError):
    """A record is sealed under a key this worker has not read from the keys topic yet."""

    def __init__(self, kid: str):
        self.kid = kid
        super().__init__(f"key {kid} is not known here yet; catch up with the keys topic")


@dataclass
class Applied:
    """What one :meth:`Shard.apply` did."""

    outcomes: list[Outcome] = field(default_factory=list)  # to publish (no duplicates)
    skipped: int = 0  # at or below the shard's offset
    #: the keys accepted erases destroyed, in log order: they must be destroyed on the keys
    #: topic too (a memory's data keys; a subject's keys up to a generation)
    erased: list[KeyDestruction] = field(default_factory=list)
    #: whether the batch erased memories: their bytes are still in the shard's file
    #: until :meth:`DuckStore.scrub` rewrites it
    scrub: bool = False


class Shard:
    def __init__(
        self,
        root: str | Path,
        topic: str,
        partition: int,
        partitions: int,
        log_id: str,
        sealer: Sealer,
        keys: KeyStore,
        dedupe_window: int = DEDUPE_WINDOW,
    ):
        self.topic, self.partition, self.partitions = topic, partition, partitions
        self.log_id = log_id
        self.sealer, self.keys = sealer, keys
        self.dir = Path(root) / f"{topic}-{partition}"
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / CORE_FILE
        self.duck = DuckStore(path, config=SHARD_DUCKDB_CONFIG)
        ok, why = self.duck.stamp_matches(log_id)
        self.rebuild_reason = None if ok else why
        if not ok:  # built from another log or by another projector version: rebuild
            self.duck.close()
            shutil.rmtree(self.dir)
            self.dir.mkdir(parents=True)
            self.duck = DuckStore(path, config=SHARD_DUCKDB_CONFIG)
        self.duck.stamp(log_id, partition=str(partition))
        self.duck.scrub()  # an erase whose rewrite a crash interrupted
        self.state = DecisionState()
        self.state.load(*self.duck.load_states())
        self.state.policy = PolicyState.fold(self.duck.governance_rows())
        self.offset = self.duck.offset()
        self.outbox = self.duck.offset(OUTBOX)
        self._outbox_unsaved = False
        rows = self.duck.query(
            'SELECT epoch_us(recorded_at) AS r, chain_hash FROM audit WHERE "offset" = ?',
            [self.offset],
        )
        self.recorded = int(rows[0]["r"]) if rows else 0
        self.chain = bytes.fromhex(rows[0]["chain_hash"]) if rows else GENESIS
        self._window = dedupe_window
        recent = self.duck.query(
            'SELECT event_id FROM audit WHERE code IS DISTINCT FROM ? ORDER BY "offset" DESC '
            "LIMIT ?",
            [DUPLICATE, dedupe_window],
        )
        self._recent_order: deque[str] = deque(r["event_id"] for r in reversed(recent))
        self._recent = set(self._recent_order)
        self.closed = False
        #: The decided events this shard commits, for its processors and other readers.
        self.feed = DecidedFeed(self.read_decided, self.offset)
        #: ``fetch(start, stop)``: the events partition's records ``start <= offset < stop``
        #: (set by the worker, which holds the broker connection), for readers of the past.
        self.fetch: Callable[[int, int], list[KRecord]] | None = None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.feed.close()
            self._save_outbox()
            self.duck.close()

    # -- applying ----------------------------------------------------------------------------

    def apply(self, records: list[KRecord]) -> Applied:
        """Decide and project ``records`` (one partition, ascending offsets) in one commit.

        On an exception nothing is committed and the shard must be reopened (its in-memory
        decision state may be ahead of its file).
        """
        if self.closed:
            raise RuntimeError(f"shard {self.topic}-{self.partition} is closed")
        res = Applied()
        pairs: list[tuple[Logged, Outcome]] = []
        last, prev, recorded = self.offset, self.chain, self.recorded
        seen_now: dict[str, None] = {}  # event ids of this batch, in order (a set that keeps it)
        for r in records:
            if r.offset <= last:
                res.skipped += 1
                continue
            if r.offset != last + 1:
                raise Gap(self.partition, last + 1, r.offset)
            stamped = _int(r.headers.get(H_RECORDED_AT)) or r.timestamp_ms * 1000
            recorded = max(recorded, stamped)
            prev = chain_hash(prev, r.offset, recorded, r.value or b"")
            logged, out = self._decide(r, recorded, prev, seen_now)
            pairs.append((logged, out))
            last = r.offset
            if out.code != DUPLICATE:
                res.outcomes.append(out)
                seen_now[logged.event.event_id] = None
            if out.destroy_key is not None:
                res.erased.append(out.destroy_key)
        if last == self.offset:
            return res
        batch = project(pairs)
        # the outbox cursor rides along with the next commit (one commit per batch, not two)
        self.duck.write(batch, {OUTBOX: self.outbox} if self._outbox_unsaved else None)
        self._outbox_unsaved = False
        self.offset, self.chain, self.recorded = last, prev, recorded
        self._remember(seen_now)
        self.feed.publish(pairs)
        res.scrub = bool(batch.erased_memories)
        return res

    def read_decided(self, after: int, upto: int) -> list[Decided]:
        """The decided events ``after < offset <= upto`` (committed here) read back: the
        outcomes, chain and times from this shard's audit, the events from the log's
        records (opened again; an incident is rebuilt from its audit row)."""
        if self.fetch is None:
            raise RuntimeError(
                f"shard {self.topic}-{self.partition} cannot read offsets {after + 1}..{upto} "
                "back: it has no connection to the log"
            )
        outcomes = [_placed(o, self.partition) for o in read_outcomes(self.duck, after, upto)]
        rows = [tuple(r.values()) for r in self.duck.query(
            'SELECT "offset", epoch_us(recorded_at), chain_hash, why, key_id FROM audit '
            'WHERE "offset" > ? AND "offset" <= ? ORDER BY "offset"',
            [after, upto],
        )]  # fmt: skip
        records = {r.offset: r for r in self.fetch(after + 1, upto + 1)}
        out: list[Decided] = []
        for (offset, recorded, chain, why, kid), o in zip(rows, outcomes, strict=True):
            r = records.get(offset)
            if r is None:
                raise Gap(self.partition, offset, -1)
            if o.code in INCIDENTS:
                event = self._incident_event(o.event_id, o.type, o.namespace, recorded, why)
                logged = Logged(offset, recorded, bytes.fromhex(chain), event, None, None)
            else:
                event, stored = self.sealer.open(r.value or b"")
                h = bytes.fromhex(chain)
                logged = Logged(offset, recorded, h, event, kid, stored.content_hash)
            out.append((logged, o))
        return out

    def _decide(
        self, r: KRecord, recorded: int, chain: bytes, seen_now: dict[str, None]
    ) -> tuple[Logged, Outcome]:
        if r.headers.get(H_KIND) == KIND_INCIDENT:
            try:
                return self._incident(decode_incident(r.value or b""), r, recorded, chain)
            except Exception as e:  # a record that claims to be an incident and is not
                return self._incident(
                    self._own("malformed", r, f"bad incident: {e}"), r, recorded, chain
                )
        if r.key is None or partition_of(r.key, self.partitions) != self.partition:
            why = (
                "an events record without a key"
                if r.key is None
                else f"an events record keyed {r.key.decode('utf-8', 'replace')!r} belongs to "
                f"partition {partition_of(r.key, self.partitions)}"
            )
            return self._incident(self._own("misrouted", r, why), r, recorded, chain)
        try:
            event, stored = self.sealer.open(r.value or b"")
        except RecordCorrupt as e:
            return self._incident(self._own("malformed", r, str(e)), r, recorded, chain)
        if stored.sealed is not None and not self.keys.known(stored.sealed.kid):
            raise MissingKey(stored.sealed.kid)
        if event.namespace.encode() != r.key:
            why = f"an events record keyed {r.key!r} holds an event of namespace {event.namespace}"
            return self._incident(self._own("misrouted", r, why), r, recorded, chain)
        kid = stored.sealed.kid if stored.sealed is not None else None
        logged = Logged(r.offset, recorded, chain, event, kid, stored.content_hash)
        if event.event_id in self._recent or event.event_id in seen_now:
            return logged, Outcome(
                offset=r.offset,
                recorded_at=recorded,
                event_id=event.event_id,
                type=event.type,
                namespace=event.namespace,
                memory_id=event.memory_id,
                status="rejected",
                code=DUPLICATE,
                reason=f"event {event.event_id} is already in the log; this copy changes nothing",
                partition=self.partition,
            )
        out = decide(self.state, logged)
        self.state.commit(logged, out)
        if out.destroy_key is not None:
            self.sealer.forget(self.keys.shred(out.destroy_key))
        return logged, _placed(out, self.partition)

    def _own(self, kind, r: KRecord, error: str) -> Incident:
        return incident(kind, self.topic, self.partition, r, error)

    def _incident(
        self, i: Incident, r: KRecord, recorded: int, chain: bytes
    ) -> tuple[Logged, Outcome]:
        namespace = i.namespace or i.key or "-"
        where = (
            f"{i.source_topic}[{i.source_partition}]@{i.source_offset}, raw sha256 {i.raw_sha256}"
        )
        event = self._incident_event(i.incident_id, i.incident, namespace, recorded, where)
        logged = Logged(r.offset, recorded, chain, event, None, None)
        out = Outcome(
            offset=r.offset,
            recorded_at=recorded,
            event_id=i.incident_id,
            type=i.incident,
            namespace=namespace,
            memory_id="-",
            status="rejected",
            code=i.incident,
            reason=i.error,
            partition=self.partition,
        )
        return logged, out

    @staticmethod
    def _incident_event(
        incident_id: str, kind: str, namespace: str, recorded: int, where: str
    ) -> Event:
        """The event an incident stands as in the audit (no payload: nothing to decide)."""
        return Event(
            event_id=incident_id,
            type=kind,
            schema_version=1,
            namespace=namespace,
            memory_id="-",
            occurred_at=datetime.fromtimestamp(recorded / 1e6, UTC),
            actor=SYSTEM_ACTOR,
            payload=None,
            clear={"reason": where},
        )

    def _remember(self, ids: Iterable[str]) -> None:
        for i in ids:
            if i not in self._recent:
                self._recent.add(i)
                self._recent_order.append(i)
        while len(self._recent_order) > self._window:
            self._recent.discard(self._recent_order.popleft())

    # -- the outbox ----------------------------------------------------------------------------

    def pending_outcomes(self) -> list[Outcome]:
        """Outcomes committed but not yet marked published (after a crash: publish again)."""
        if self.outbox >= self.offset:
            return []
        rows = self.duck.query(
            'SELECT "offset", epoch_us(recorded_at) AS recorded_at, event_id, type, namespace, '
            "memory_id, status, code, reason, version, revision, state FROM audit "
            'WHERE "offset" > ? AND code IS DISTINCT FROM ? ORDER BY "offset"',
            [self.outbox, DUPLICATE],
        )
        return [Outcome(**r, partition=self.partition) for r in rows]

    def pending_erasures(self) -> list[KeyDestruction]:
        """Accepted erases committed but not yet marked published: their keys must be
        destroyed on the keys topic (again; destroying is idempotent)."""
        if self.outbox >= self.offset:
            return []
        rows = self.duck.query(
            "SELECT DISTINCT a.subject, s.erased_generation FROM audit a JOIN subjects s "
            "ON s.subject = a.subject WHERE a.\"offset\" > ? AND a.type = 'erase' "
            "AND a.status = 'accepted' AND a.scope = 'subject'",
            [self.outbox],
        )
        out = [
            KeyDestruction(scope="subject", subject=r["subject"], generation=r["erased_generation"])
            for r in rows
        ]
        # a memory erase: the memory's data keys up to the highest number used before it
        rows = self.duck.query(
            "SELECT a.memory_id, a.subject, (SELECT coalesce(max(TRY_CAST(split_part(k.key_id, "
            "'#', 3) AS INTEGER)), 1) FROM audit k WHERE k.memory_id = a.memory_id AND "
            'k.subject = a.subject AND k."offset" < a."offset" AND '
            "contains(split_part(k.key_id, '#', 2), '/')) AS n FROM audit a "
            "WHERE a.\"offset\" > ? AND a.type = 'erase' AND a.status = 'accepted' "
            "AND a.scope = 'memory' ORDER BY a.\"offset\"",
            [self.outbox],
        )
        out += [
            KeyDestruction(
                scope="memory", subject=r["subject"], memory_id=r["memory_id"], generation=r["n"]
            )
            for r in rows
        ]
        return out

    def published(self, upto: int) -> None:
        """Mark outcomes up to ``upto`` as published.

        The mark is written with the next batch's commit (or on close), so after a crash the
        outcomes of the last batch may be published again: at least once, never lost."""
        if upto > self.outbox:
            self.outbox = upto
            self._outbox_unsaved = True

    def _save_outbox(self) -> None:
        if self._outbox_unsaved:
            self.duck.set_offsets({OUTBOX: self.outbox})
            self._outbox_unsaved = False


def _placed(out: Outcome, partition: int) -> Outcome:
    return msgspec.structs.replace(out, partition=partition)


def _int(b: bytes | None) -> int:
    try:
        return int(b) if b else 0
    except ValueError:
        return 0
