"""Every worker's copy of the governance rules, followed from the events topic.

Governance events (principals, tokens, grants, revocations, namespace policies) live in the
reserved namespace ``memstream.governance``, so they all land in one partition of the events
topic, which one shard decides. Every other worker still has to check its callers against
the same rules: :class:`PolicyFollower` reads that partition from its beginning with a plain
reader outside the group (assign + seek, like the gap filler), and decides each governance
record again with :func:`memstream.projections.policy.decide`, folding the accepted ones
into its own :class:`PolicyState`.

The verdicts are the owning shard's: the partition is totally ordered, the fold is
deterministic, and the follower reproduces what the shard does around the decision
(``recorded_at`` kept monotonic per partition, duplicates found by event id over the same
window, incidents and misrouted records left out). Governance payloads are all clear
fields, so no key is needed to read them.

Offsets here are those of the governance partition of the events topic.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any

from aiokafka import TopicPartition
from memstream.projections.policy import PolicyState, body_of, decide
from memstream.schemas.codec import EventCodec
from memstream.schemas.events import GOVERNANCE_NAMESPACE, GOVERNANCE_TYPES, default_registry
from memstream.schemas.memcube import Logged
from memstream.streams.sealing import RecordCorrupt, Sealer

from . import clients
from .partitioning import partition_of
from .records import H_EVENT_ID, H_KIND, H_RECORDED_AT, KIND_INCIDENT, KRecord
from .settings import KafkaSettings
from .shard import DEDUPE_WINDOW

__all__ = ["GovernanceRow", "PolicyFollower", "PolicyNotReady"]

log = logging.getLogger("memstream.kafka.policy")

#: (offset, type, name, actor, recorded_at µs, clear payload): what
#: ``DuckStore.governance_rows`` returns and :meth:`PolicyState.fold` takes.
GovernanceRow = tuple[int, str, str, str, int, dict[str, Any]]

#: the longest one fetch of the follower waits for new records
POLL_WAIT = 1.0

_KEY = GOVERNANCE_NAMESPACE.encode()


class PolicyNotReady(Exception):
    """The follower has not read the governance partition up to the offset asked for."""

    def __init__(self, message: str, *, offset: int, wanted: int):
        super().__init__(message)
        self.offset, self.wanted = offset, wanted


class _NoKeys:
    """The key store of a follower that holds no key (a sealed record is not a rule)."""

    def get(self, kid: str) -> bytes:
        raise LookupError(f"no key {kid} here: a governance record is never sealed")


def _int(b: bytes | None) -> int:
    try:
        return int(b) if b else 0
    except ValueError:
        return 0


class PolicyFollower:
    """Follows the governance partition of the events topic into a :class:`PolicyState`.

    Start it in the worker's event loop; read :attr:`state`, :meth:`rows`, :meth:`wait_for`
    and :attr:`ready` from any thread. ``ready`` is set once the follower has read the
    partition up to the end it had when it started.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        sealer: Sealer | None = None,
        dedupe_window: int = DEDUPE_WINDOW,
    ):
        self.settings = settings
        #: opens the records (governance payloads are clear: no key is ever asked for; a
        #: follower outside a worker has none)
        self.sealer = sealer or Sealer(_NoKeys(), EventCodec(default_registry()))  # type: ignore
        self.partition = partition_of(_KEY, settings.partitions)
        self._tp = TopicPartition(settings.events, self.partition)
        #: the rules in force: the accepted governance events read so far, folded
        self.state = PolicyState()
        #: the last offset of the governance partition read (-1: none)
        self.offset = -1
        #: the partition's end offset when the follower started (-1: not known yet)
        self.start_end = -1
        self.ready = threading.Event()
        self._rows: list[GovernanceRow] = []
        self._recorded = 0
        self._window = dedupe_window
        self._recent: set[str] = set()
        self._recent_order: deque[str] = deque()
        self._advanced = threading.Condition()
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None

    # -- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start reading from the partition's beginning (returns at once; see ``ready``)."""
        self._consumer = clients.reader(self.settings)
        await self._consumer.start()
        self._consumer.assign([self._tp])
        await self._consumer.seek_to_beginning(self._tp)
        self.start_end = (await self._consumer.end_offsets([self._tp]))[self._tp]
        if self.start_end == 0:
            self.ready.set()
        self._task = asyncio.create_task(self._follow(), name="memstream-policy")

    async def stop(self) -> None:
        await clients.stop(self._task, self._consumer)
        self._task = self._consumer = None

    async def _follow(self) -> None:
        try:
            while True:
                got = await self._consumer.getmany(self._tp, timeout_ms=int(POLL_WAIT * 1000))
                recs = got.get(self._tp, [])
                if recs:
                    self.apply([KRecord.of(r) for r in recs])
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # readers see it: the worker stops answering checked calls
            log.exception("the governance follower stopped")
            self.failure = e
            with self._advanced:
                self._advanced.notify_all()

    async def end_offset(self) -> int:
        """The governance partition's end offset now (the next offset to be written)."""
        return (await self._consumer.end_offsets([self._tp]))[self._tp]

    # -- folding (pure given the records) ------------------------------------------------------

    def apply(self, records: list[KRecord]) -> None:
        """Fold ``records`` (of the governance partition, ascending offsets)."""
        state = self.state
        for r in records:
            if r.offset <= self.offset:
                continue
            stamped = _int(r.headers.get(H_RECORDED_AT)) or r.timestamp_ms * 1000
            self._recorded = max(self._recorded, stamped)
            event_id = self._decide(r, state)
            if event_id is not None:
                self._remember(event_id)
            self.offset = r.offset
        if self.start_end >= 0 and self.offset >= self.start_end - 1:
            self.ready.set()
        with self._advanced:
            self._advanced.notify_all()

    def _decide(self, r: KRecord, state: PolicyState) -> str | None:
        """Decide one record as the owning shard does; the event id it remembers for
        dedupe (None: a duplicate, which it does not remember)."""
        header_id = r.headers.get(H_EVENT_ID, b"").decode("utf-8", "replace") or f"@{r.offset}"
        if r.headers.get(H_KIND) == KIND_INCIDENT or r.key != _KEY:
            return None if header_id in self._recent else header_id
        try:
            event, stored = self.sealer.open(r.value or b"")
        except (RecordCorrupt, LookupError):
            return header_id  # the shard audits it as malformed: no rule changes
        if event.namespace != GOVERNANCE_NAMESPACE:
            return header_id  # misrouted
        if event.event_id in self._recent:
            return None
        if event.type in GOVERNANCE_TYPES:
            kid = stored.sealed.kid if stored.sealed is not None else None
            logged = Logged(r.offset, self._recorded, b"", event, kid, stored.content_hash)
            out = decide(state, logged)
            if out.accepted:
                state.apply(logged, out)
                self._rows.append(
                    (r.offset, event.type, event.memory_id, event.actor, self._recorded,
                     body_of(event))
                )  # fmt: skip
        return event.event_id

    def _remember(self, event_id: str) -> None:
        if event_id not in self._recent:
            self._recent.add(event_id)
            self._recent_order.append(event_id)
        while len(self._recent_order) > self._window:
            self._recent.discard(self._recent_order.popleft())

    # -- asking (any thread) --------------------------------------------------------------------

    def rows(self, upto: int | None = None) -> list[GovernanceRow]:
        """Accepted governance events up to offset ``upto`` (None: all read), in order."""
        rows = list(self._rows)
        return rows if upto is None else [r for r in rows if r[0] <= upto]

    def rows_until(self, recorded_at: int) -> list[GovernanceRow]:
        """Accepted governance events recorded at or before ``recorded_at`` (µs)."""
        return [r for r in list(self._rows) if r[4] <= recorded_at]

    def wait_for(self, offset: int, timeout: float) -> None:
        """Return once the follower has read up to ``offset``; else :class:`PolicyNotReady`."""
        deadline = time.monotonic() + timeout
        with self._advanced:
            while self.offset < offset and self.failure is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._advanced.wait(left)
        if self.failure is not None:
            raise PolicyNotReady(
                f"the governance follower stopped ({self.failure!r}); restart the worker",
                offset=self.offset, wanted=offset,
            )  # fmt: skip
        if self.offset < offset:
            raise PolicyNotReady(
                f"the governance rules are read up to offset {self.offset} of partition "
                f"{self.partition}, not yet {offset}; retry",
                offset=self.offset, wanted=offset,
            )  # fmt: skip

    async def caught_up(self, timeout: float) -> None:
        """(asyncio) Wait until the follower has read the partition to its end now."""
        end = await self.end_offset()
        deadline = time.monotonic() + timeout
        while self.offset < end - 1 and self.failure is None:
            if time.monotonic() > deadline:
                raise PolicyNotReady(
                    f"the governance partition {self.partition} was read up to offset "
                    f"{self.offset} of {end - 1} in {timeout} s; retry",
                    offset=self.offset, wanted=end - 1,
                )  # fmt: skip
            await asyncio.sleep(0.02)

    def wait_ready(self, timeout: float) -> None:
        """Return once :attr:`ready`; else :class:`PolicyNotReady`."""
        if not self.ready.wait(timeout) or self.failure is not None:
            raise PolicyNotReady(
                f"the governance rules are still being read (offset {self.offset} of "
                f"{self.start_end - 1} in partition {self.partition}); retry",
                offset=self.offset, wanted=self.start_end - 1,
            )  # fmt: skip

    def status(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "start_end": self.start_end,
            "ready": self.ready.is_set(),
            "principals": len(self.state.principals),
            "grants": len(self.state.grants),
        }
