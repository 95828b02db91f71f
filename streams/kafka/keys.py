"""The keys (subjects' keys and memories' data keys), shared by every worker through a
compacted topic.

Why a topic and not a database: the workers already share the broker and nothing else;
a compacted topic with one partition gives every worker the same keys in the same order,
survives any worker, and needs no second stateful service. Each worker keeps what it read
in its local :class:`memstream.streams.keystore.KeyStore` (SQLite with ``secure_delete``).

A key is *proposed* by the sequencer that first needs it: a record keyed
``<key id>|<proposal id>`` holding the key, produced with ``acks=all`` and read back before
anything is sealed under it. Two sequencers may propose the same key id at once (a subject
named by events of two partitions); the first proposal in the topic wins everywhere, the
other is never used. Proposal ids keep both records apart under compaction, so a fresh
reader sees the same first one.

A memory's data key is proposed the same way, after its subject's key: the record holds
the data key *wrapped* by the subject key (a data key id is ``subject#g/memory#n``, see
:mod:`memstream.schemas.keyid`), never the raw key, and is read back before anything is
sealed under it.

Erasing a memory destroys every proposal record of each of its data keys, and every
worker's copy. Erasing a subject has to destroy, for every key id of the subject up to the
erased generation (each worker then also drops the data keys those keys wrapped):
every proposal record in the topic (each is replaced by a "destroyed" record under the same
record key, and compaction then drops the key bytes from the topic's segments; until the
log cleaner runs, and in any copy or mirror of the topic, they remain: see ops/kafka.md),
and every worker's local copy (each worker applies the destroyed record as it reads it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable, Iterable

import msgspec
from aiokafka import TopicPartition
from memstream.schemas.keyid import KeyId
from memstream.streams.keystore import KeyStore

from . import clients
from .settings import KafkaSettings

log = logging.getLogger("memstream.kafka.keys")


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kid: str
    subject: str
    #: the subject key's generation (of a data key: that of the subject key wrapping it)
    generation: int
    #: the 256-bit subject key, or for a data key id the data key wrapped by its subject
    #: key (base64 in JSON); ``None``: destroyed
    key: bytes | None = None


#: The record key of the deployment's log identity (a UUID, the first one recorded wins):
#: shards are stamped with it, so a shard built from another log (a recreated topic) is
#: rebuilt rather than trusted.
LOG_ID_KEY = b"memstream-log-id"

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(KeyRecord)


class SharedKeys(clients.TopicFollower):
    """A worker's view of the keys topic, applied into its local key store."""

    def __init__(
        self,
        settings: KafkaSettings,
        store: KeyStore,
        on_destroyed: Callable[[list[str]], None] | None = None,
    ):
        self.settings = settings
        self.store = store
        self.on_destroyed = on_destroyed
        self._tp = TopicPartition(settings.keys, 0)
        self._proposals: dict[str, set[bytes]] = {}
        self._applied = -1
        self._advanced = asyncio.Condition()
        self._failure: BaseException | None = None
        self.log_id: str | None = None

    async def start(self) -> None:
        s = self.settings
        self._producer = clients.producer(s)
        self._consumer = clients.reader(s)
        await self._p.start()
        await self._c.start()
        self._c.assign([self._tp])
        await self._c.seek_to_beginning(self._tp)
        end = (await self._c.end_offsets([self._tp]))[self._tp]
        while self._applied < end - 1:  # every key known now, before anything is sealed
            await self._poll(1.0)
        self._task = asyncio.create_task(self._follow(), name="memstream-keys")

    async def _follow(self) -> None:
        try:
            while True:
                await self._poll(1.0)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # readers see it on their next call
            log.exception("the keys topic reader stopped")
            self._failure = e
            async with self._advanced:
                self._advanced.notify_all()

    async def _poll(self, timeout: float) -> None:
        got = await self._c.getmany(self._tp, timeout_ms=int(timeout * 1000))
        recs = got.get(self._tp, [])
        if not recs:
            return
        destroyed: list[str] = []
        for r in recs:
            if r.key == LOG_ID_KEY:
                if self.log_id is None and r.value:
                    self.log_id = r.value.decode()
                continue
            try:
                k = _dec.decode(r.value) if r.value is not None else None
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.error("keys topic offset %s: not a key record; ignored", r.offset)
                continue
            if k is None:  # a plain tombstone (compaction marker): nothing to learn
                continue
            self._proposals.setdefault(k.kid, set()).add(r.key or b"")
            if self.store.adopt(k.kid, k.subject, k.generation, k.key) and k.key is None:
                destroyed.append(k.kid)
        self._applied = recs[-1].offset
        if destroyed and self.on_destroyed is not None:
            self.on_destroyed(destroyed)
        async with self._advanced:
            self._advanced.notify_all()

    async def _reached(self, offset: int, timeout: float) -> None:
        async def wait() -> None:
            async with self._advanced:
                while self._applied < offset and self._failure is None:
                    await self._advanced.wait()

        await asyncio.wait_for(wait(), timeout)
        if self._failure is not None:
            raise RuntimeError(f"the keys topic reader stopped: {self._failure!r}")

    async def identity(self) -> str:
        """The log identity, recording one if the deployment has none yet."""
        if self.log_id is None:
            md = await self._p.send_and_wait(
                self.settings.keys, uuid.uuid4().hex.encode(), key=LOG_ID_KEY, partition=0
            )
            await self._reached(md.offset, self.settings.send_timeout)
        assert self.log_id is not None
        return self.log_id

    async def catch_up(self) -> None:
        """Wait until every key record in the topic now has been applied here."""
        end = (await self._c.end_offsets([self._tp]))[self._tp]
        if end > 0:
            await self._reached(end - 1, self.settings.send_timeout)

    async def ensure(self, subjects: Iterable[str]) -> None:
        """Make sure every subject has a live key here (proposing one where needed)."""
        missing = sorted({s for s in subjects if self.store.live(s) is None})
        if not missing:
            return
        sends = []
        for subject in missing:  # proposed together, read back once
            gen = self.store.generation(subject) + 1
            kid = f"{subject}#{gen}"
            rec = KeyRecord(kid=kid, subject=subject, generation=gen, key=os.urandom(32))
            sends.append(
                await self._p.send(
                    self.settings.keys,
                    _enc.encode(rec),
                    key=f"{kid}|{uuid.uuid4().hex}".encode(),
                    partition=0,
                )
            )
        placed = await asyncio.wait_for(asyncio.gather(*sends), self.settings.send_timeout)
        last = max(md.offset for md in placed)
        await self._reached(last, self.settings.send_timeout)
        still = [s for s in missing if self.store.live(s) is None]
        if still:  # destroyed again in between: the next call proposes the next generation
            raise RuntimeError(f"no live key for {still} after proposing one; retry")

    async def ensure_data_keys(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Make sure every (subject, memory id) has a live data key here, proposing (wrapped)
        ones where needed; the subjects' keys must be live already (:meth:`ensure`)."""
        missing = sorted({p for p in pairs if self.store.live_data_key(*p) is None})
        if not missing:
            return
        sends = []
        for subject, memory_id in missing:  # proposed together, read back once
            skid = self.store.live(subject)
            if skid is None:
                raise RuntimeError(f"no live key for subject {subject!r}; retry")
            gen = KeyId.parse(skid).generation
            n = self.store.data_key_number(subject, memory_id) + 1
            kid = str(KeyId.data_key(subject, gen, memory_id, n))
            rec = KeyRecord(
                kid=kid, subject=subject, generation=gen, key=self.store.wrap(kid, os.urandom(32))
            )
            sends.append(
                await self._p.send(
                    self.settings.keys,
                    _enc.encode(rec),
                    key=f"{kid}|{uuid.uuid4().hex}".encode(),
                    partition=0,
                )
            )
        placed = await asyncio.wait_for(asyncio.gather(*sends), self.settings.send_timeout)
        last = max(md.offset for md in placed)
        await self._reached(last, self.settings.send_timeout)
        still = [p for p in missing if self.store.live_data_key(*p) is None]
        if still:  # destroyed again in between: the next call proposes the next one
            raise RuntimeError(f"no live data key for {still} after proposing one; retry")

    async def destroy(self, subject: str, kids: Iterable[str]) -> None:
        """Publish the destruction of ``kids`` (every proposal record of each)."""
        last = -1
        for kid in kids:
            gen = KeyId.parse(kid).generation
            rec = KeyRecord(kid=kid, subject=subject, generation=gen, key=None)
            for pkey in sorted(self._proposals.get(kid, {f"{kid}|".encode()})):
                md = await asyncio.wait_for(
                    self._p.send_and_wait(
                        self.settings.keys, _enc.encode(rec), key=pkey, partition=0
                    ),
                    self.settings.send_timeout,
                )
                last = max(last, md.offset)
        if last >= 0:
            await self._reached(last, self.settings.send_timeout)
