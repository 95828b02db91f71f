"""The benchmark workload: realistic create/revise events, and a fast way to write a log.

Events look like what an agent stores: a few sentences of text (150-700 bytes), a handful
of tags, small metadata, a source, a call context, spread over many namespaces (users and
teams, a few of them much busier than the rest). Revisions target recently created
memories more often than old ones, and a quarter of them carry ``expected_version`` (the
optimistic-concurrency check an SDK client uses). Every generated event is valid and is
accepted, so a suite can check that the store holds exactly what was sent.

:func:`write_log` lays down the log of a store directory without projecting it: validate,
seal and append, the same calls :meth:`EmbeddedRuntime.append` makes, minus deciding and
the projector. Opening that directory afterwards decides and projects every record (the
catch-up path, which is also the replay path).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from memstream.schemas import events as ev
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import default_registry
from memstream.sdk import new_id
from memstream.streams.embedded import KEYS_FILE, LOG_FILE
from memstream.streams.keystore import KeyStore
from memstream.streams.log import EmbeddedLog
from memstream.streams.sealing import Sealer

if TYPE_CHECKING:
    from memstream.sdk import Operations

_WORDS = """
about after again agent airport allergy always answer appointment april asked assistant
august avoid back bakery band before berlin best bike birthday book booked breakfast
brother budget call calendar cannot car cat chapter child class client coffee colleague
concert conference contract cook cost could course customer daily data day deadline
december dentist design diet dinner doctor dog draft during early email english evening
every exam family favourite february feedback file flight friday friend garden gift gluten
goal gym has hates hiking holiday home hotel hour invoice italian january job july june
keeps kitchen laptop late launch lawyer learning likes lisbon london lunch manager march
may meeting mentioned metric migration mobile monday month morning mother name needs never
new next night notes office often order paris partner password payment phone plan plans
prefers presentation priority project python quarter question quick reading recipe release
remember report review running salary saturday school season seat sister slack sleep
small soon spanish sprint standup story subscription summer sunday support table talk team
thursday ticket time today tokyo train travel tuesday usually vacation vegetarian wants
weather wednesday week weekend window wine work workshop writes year yoga
""".split()
_TAGS = """
preference fact plan contact health travel work family finance food schedule project
reminder goal constraint opinion location device language hobby
""".split()
_SOURCES = ("chat", "email", "calendar", "notes", "voice", "tool:search")
_PURPOSES = ("conversation", "planning", "support", "summarisation")
_REASONS = ("user corrected it", "newer information", "consolidated", "clarified", None)


def _sentence(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(8, 18))
    return words[0].capitalize() + " " + " ".join(words[1:]) + "."


def _text(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 6)))


@dataclass
class Workload:
    """A deterministic stream of create/revise events (ids and timestamps are fresh)."""

    seed: int = 20250717
    namespaces: int = 200
    revise_share: float = 0.4
    expected_version_share: float = 0.25
    #: counts of what was generated so far
    creates: int = 0
    revises: int = 0
    _rng: random.Random = field(init=False, repr=False)
    # What was created, as parallel lists of plain values: one object per memory would be
    # scanned by every full garbage collection of the process being measured.
    _ids: list[str] = field(init=False, repr=False, default_factory=list)
    _ns: list[str] = field(init=False, repr=False, default_factory=list)
    _revision: list[int] = field(init=False, repr=False, default_factory=list)
    _spaces: list[str] = field(init=False, repr=False, default_factory=list)
    _weights: list[float] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        users = [f"user/u{i:05d}" for i in range(self.namespaces - self.namespaces // 10)]
        teams = [f"team/t{i:03d}" for i in range(self.namespaces // 10)]
        self._spaces = users + teams
        # A few tenants are much busier than the rest (Zipf-like weights).
        self._weights = [1.0 / (i + 1) ** 0.8 for i in range(len(self._spaces))]

    @property
    def spaces(self) -> list[str]:
        """Every namespace the workload writes to (each is a subject with its own key)."""
        return list(self._spaces)

    def describe(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "namespaces": self.namespaces,
            "revise_share": self.revise_share,
            "expected_version_share": self.expected_version_share,
            "text_bytes": "150-700 (2-6 sentences)",
            "tags": "1-4",
        }

    def _context(self, rng: random.Random) -> ev.Context:
        return ev.Context(
            app="assistant",
            session=f"s-{rng.randrange(10_000):04d}",
            purpose=rng.choice(_PURPOSES),
            attributes={"channel": rng.choice(("web", "mobile", "api"))},
        )

    def _create(self, rng: random.Random, now: datetime) -> ev.Event:
        ns = rng.choices(self._spaces, weights=self._weights)[0]
        mid = new_id()
        self._ids.append(mid)
        self._ns.append(ns)
        self._revision.append(1)
        self.creates += 1
        payload = dict(
            text=_text(rng),
            tags=rng.sample(_TAGS, k=rng.randint(1, 4)),
            metadata={
                "lang": "en",
                "confidence": round(rng.random(), 3),
                "turn": rng.randrange(500),
            },
            source=rng.choice(_SOURCES),
            owner=ns.split("/", 1)[1],
            visibility=rng.choice(("private", "private", "shared")),
            priority=rng.randrange(3),
        )
        return self._spec("create", ns, mid, payload, None, rng, now)

    def _revise(self, rng: random.Random, now: datetime) -> ev.Event:
        n = len(self._ids)
        # Recent memories are revised more often than old ones.
        i = (
            n - 1 - min(n - 1, int(rng.expovariate(1 / 500)))
            if rng.random() < 0.7
            else rng.randrange(n)
        )
        expected = self._revision[i] if rng.random() < self.expected_version_share else None
        self._revision[i] += 1
        self.revises += 1
        retag = rng.random() < 0.3
        payload = dict(
            text=_text(rng),
            tags=rng.sample(_TAGS, k=rng.randint(1, 4)) if retag else None,
            metadata={"lang": "en", "confidence": round(rng.random(), 3)} if retag else None,
            reason=rng.choice(_REASONS),
        )
        return self._spec("revise", self._ns[i], self._ids[i], payload, expected, rng, now)

    def _spec(
        self,
        type_: str,
        ns: str,
        mid: str,
        payload: dict[str, Any],
        expected: int | None,
        rng: random.Random,
        now: datetime,
    ) -> Spec:
        return Spec(
            type_,
            ns,
            mid,
            payload,
            {
                "actor": f"agent-{rng.randrange(20):02d}",
                "context": self._context(rng),
                "expected_version": expected,
                "occurred_at": now,
            },
        )

    def specs(self, n: int) -> list[Spec]:
        """The next ``n`` events, as the arguments of ``MemoryStore.event``."""
        rng = self._rng
        now = datetime.now(UTC)
        out = []
        for _ in range(n):
            if self._ids and rng.random() < self.revise_share:
                out.append(self._revise(rng, now))
            else:
                out.append(self._create(rng, now))
        return out

    def batch(self, n: int) -> list[ev.Event]:
        """The next ``n`` events, built by hand (not validated: ``EventCodec.validate``)."""
        return [s.event() for s in self.specs(n)]

    def batches(self, total: int, size: int) -> Iterator[list[ev.Event]]:
        for n in _sizes(total, size):
            yield self.batch(n)

    def spec_batches(self, total: int, size: int) -> Iterator[list[Spec]]:
        for n in _sizes(total, size):
            yield self.specs(n)


_REGISTRY = default_registry()


def _sizes(total: int, size: int) -> Iterator[int]:
    done = 0
    while done < total:
        n = min(size, total - done)
        yield n
        done += n


class Spec(NamedTuple):
    """One event as the arguments of :meth:`memstream.sdk.Operations.event`."""

    type: str
    namespace: str
    memory_id: str
    payload: dict[str, Any]
    kw: dict[str, Any]

    def event(self) -> ev.Event:
        """The event built by hand, the way a producer without the SDK would."""
        kw = self.kw
        payload_type = _REGISTRY.types[self.type].payload
        return ev.Event(
            event_id=new_id(),
            type=self.type,
            schema_version=payload_type.VERSION,
            namespace=self.namespace,
            memory_id=self.memory_id,
            occurred_at=kw["occurred_at"],
            actor=kw["actor"],
            context=kw["context"],
            expected_version=kw["expected_version"],
            payload=payload_type(**self.payload),
        )

    def build(self, store: Operations) -> ev.Event:
        """The event built (and validated) by the SDK."""
        return store.event(self.type, self.namespace, self.memory_id, self.payload, **self.kw)


@dataclass(frozen=True)
class LogWritten:
    records: int
    creates: int
    revises: int
    seconds: float


def write_log(
    root: Path,
    workload: Workload,
    total: int,
    batch: int = 5_000,
    advance: Callable[[int], None] | None = None,
) -> LogWritten:
    """Write ``total`` workload events to the log of a new store directory, unprojected.

    The records are exactly what the SDK would store (validated, sealed under per-subject
    keys from the directory's own key store, chained by the same log code); only deciding
    and projecting are left for the store to do when it is opened. Durability ``os``.
    """
    root.mkdir(parents=True, exist_ok=False)
    codec = EventCodec(default_registry())
    keys = KeyStore(root / KEYS_FILE)
    log = EmbeddedLog(root / LOG_FILE, durability="os")
    sealer = Sealer(keys, codec)
    c0, r0 = workload.creates, workload.revises
    t = time.perf_counter()
    try:
        for events in workload.batches(total, batch):
            valid = codec.validate(events)
            sealed = sealer.seal_all(valid)
            log.append(
                [(e.id_bytes, e.namespace, s[0]) for e, s in zip(valid, sealed, strict=True)]
            )
            if advance is not None:
                advance(len(events))
        n = log.next_offset
    finally:
        log.close()
        keys.close()
    return LogWritten(
        records=n,
        creates=workload.creates - c0,
        revises=workload.revises - r0,
        seconds=time.perf_counter() - t,
    )
