"""The SDK on the Kafka runtime: the same operations, published through Kafka.

``KafkaMemoryStore.connect(bootstrap, api=...)`` produces events to the requests topic
and returns the same :class:`Outcome` objects as the embedded store (or raises the same
typed :class:`Rejected` errors), once a worker has decided them. Two more errors tell a
broker failure apart from a slow worker: :class:`NotWritten` (nothing was written: retry
unchanged) and :class:`OutcomePending` (written; the outcome did not arrive in time).

Reads go to a worker's HTTP API (``api=``, any worker: it forwards to the partition's
owner) with the HTTP client's reads (:class:`~memstream.client.HttpReads`), and need the
namespace, which names the partition.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import httpx
import msgspec

from memstream.client.reads import HttpReads
from memstream.client.store import TOKEN_ENV
from memstream.errors import MalformedEvent
from memstream.operations import Operations, raise_rejections
from memstream.projections.policy import PolicyState
from memstream.queries import AuditQuery, Point
from memstream.schemas import events as ev
from memstream.schemas.codec import EventCodec
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditPage, Memory, Version
from memstream.streams.kafka.producer import KafkaPublisher, NotWritten, OutcomePending
from memstream.streams.kafka.settings import KafkaSettings

T = TypeVar("T")

__all__ = ["KafkaMemoryStore", "NotWritten", "OutcomePending", "issue_admin_token"]

#: The actor of the events :func:`issue_admin_token` appends.
BOOTSTRAP_ACTOR = "memstream.bootstrap"


class KafkaMemoryStore(Operations, HttpReads):
    """Synchronous SDK over Kafka (an asyncio loop runs the clients in a thread)."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        actor: str = "sdk",
        api: str | None = None,
        read_timeout: float = 30.0,
        token: str | None = None,
    ):
        """``token``: the bearer token of the reads (a principal's; default
        ``$MEMSTREAM_TOKEN``). Writes go through the requests topic and carry none: whoever
        may produce there is trusted."""
        self.settings = settings
        self.actor = actor
        self.registry = ev.default_registry()
        self.codec = EventCodec(self.registry)
        self._placements: dict[str, tuple[str, str | None]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="memstream-kafka-sdk", daemon=True
        )
        self._thread.start()
        self._publisher = KafkaPublisher(settings, self.codec)
        try:
            self._run(self._publisher.start())
        except BaseException:
            self._stop_loop()
            raise
        self.url = api or ""
        self.timeout = self.retry_unavailable = read_timeout
        token = token or os.environ.get(TOKEN_ENV) or None
        auth = {"authorization": f"Bearer {token}"} if token else {}
        self._http = (  # type: ignore[assignment]
            httpx.Client(base_url=api, timeout=read_timeout, headers=auth) if api else None
        )

    @classmethod
    def connect(
        cls,
        bootstrap: str,
        *,
        api: str | None = None,
        actor: str = "sdk",
        token: str | None = None,
        **settings: Any,
    ) -> KafkaMemoryStore:
        """Connect to the brokers at ``bootstrap`` (``host:port[,host:port]``); ``token``
        authenticates the reads at ``api`` (default ``$MEMSTREAM_TOKEN``)."""
        return cls(
            KafkaSettings.from_env(bootstrap=bootstrap, **settings),
            actor=actor,
            api=api,
            token=token,
        )

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._publisher.stop())
        self._stop_loop()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> KafkaMemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes -------------------------------------------------------------------------------

    def append(
        self,
        events: Sequence[ev.Event | dict[str, Any] | bytes],
        *,
        raise_on_reject: bool = False,
        timeout: float | None = None,
    ) -> list[Outcome]:
        """Publish a batch; one outcome per event, in order (each event is decided on its
        own in Kafka mode: a batch is not atomic across partitions)."""
        built = [e for e in events if isinstance(e, ev.Event)]
        raw = [e for e in events if not isinstance(e, ev.Event)]
        if built and raw:
            raise MalformedEvent("a batch mixes Event objects with dicts/bytes; use one kind")
        if raw:
            parts = [
                r
                if isinstance(r, bytes)
                else r.encode()
                if isinstance(r, str)
                else msgspec.json.encode(r)
                for r in raw
            ]
            built = self.codec.decode(b"[" + b",".join(parts) + b"]")
        outcomes = self._run(self._publisher.publish(built, timeout))
        for e, o in zip(built, outcomes, strict=True):
            if o.accepted and e.type in ("create", "merge"):
                self._placements[e.memory_id] = (e.namespace, e.subject or e.namespace)
        return raise_rejections(outcomes, raise_on_reject)

    def publish_json(self, data: bytes | str, *, raise_on_reject: bool = False) -> list[Outcome]:
        return self.append(self.codec.decode(data), raise_on_reject=raise_on_reject)

    def _placement(self, memory_id: str) -> tuple[str, str | None] | None:
        return self._placements.get(memory_id)

    # -- reads (through a worker's HTTP API: memstream.client.HttpReads) ------------------------

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One read; a 503 (a partition catching up, or moving) is retried until the read
        timeout."""
        if self._http is None:
            raise RuntimeError(
                "reads need a worker's HTTP API: connect(..., api='http://host:6066')"
            )
        return super()._request(method, path, **kw)

    def _get(
        self,
        memory_id: str,
        namespace: str | None,
        version: int | None,
        as_of: Point | None,
        min_offset: int | None,
    ) -> Memory | None:
        ns = namespace or self._namespace(memory_id)
        return super()._get(memory_id, ns, version, as_of, min_offset)

    def _history(
        self,
        memory_id: str,
        namespace: str | None,
        include_parents: bool,
        as_of: Point | None,
        min_offset: int | None,
    ) -> list[Version]:
        ns = namespace or self._namespace(memory_id)
        return super()._history(memory_id, ns, include_parents, as_of, min_offset)

    def _audit(self, q: AuditQuery, partition: int | None, min_offset: int | None) -> AuditPage:
        """A namespace's audit, or a whole partition's (``partition=``: incidents included)."""
        if q.namespace is None and partition is None:
            raise ValueError(
                "pass namespace= or partition= (the Kafka runtime reads one partition)"
            )
        return super()._audit(q, partition, min_offset)

    def _namespace(self, memory_id: str) -> str:
        placed = self._placements.get(memory_id)
        if placed is None:
            raise ValueError(
                f"pass namespace= to read memory {memory_id}: in the Kafka runtime the "
                "namespace names the partition that holds it"
            )
        return placed[0]


def issue_admin_token(
    settings: KafkaSettings, name: str = "admin", *, timeout: float = 60.0
) -> tuple[str, str, list[str]]:
    """Make ``name`` an admin of the whole deployment and issue it a token, through the
    requests topic (whoever may produce there is trusted like a store's owner).

    Reads the rules from the governance partition first, then appends what is missing: the
    principal (if absent), a grant of admin on ``*`` (if it holds none), and a new token.
    Returns ``(token id, token, what was appended)``; the token is shown this once."""
    from memstream.governance.tokens import hash_secret, new_token
    from memstream.operations import new_id
    from memstream.streams.kafka.policy import PolicyFollower

    reason = "the deployment's admin (memstream admin-token)"
    with KafkaMemoryStore(settings, actor=BOOTSTRAP_ACTOR, read_timeout=timeout) as store:
        follower = PolicyFollower(settings)

        async def rules() -> PolicyState:
            await follower.start()
            try:
                await follower.caught_up(timeout)
            finally:
                await follower.stop()
            return follower.state

        state = store._run(rules())
        found = state.principals.get(name)
        if found is not None and found.disabled:
            raise ValueError(
                f"principal {name} is disabled; enable it (memstream principal add {name}) "
                "or bootstrap another name with --name"
            )
        made, events = [], []
        gov = ev.GOVERNANCE_NAMESPACE
        if found is None:
            events.append(store.event("principal", gov, name, {"kind": "user", "reason": reason}))
            made.append(f"principal {name}")
        if found is None or not state.allows(name, "admin"):
            grant_id = "grant-" + new_id()
            events.append(
                store.event(
                    "grant",
                    gov,
                    grant_id,
                    {"to": name, "object": "*", "modes": ["admin"], "reason": reason},
                )  # fmt: skip
            )
            made.append(f"grant {grant_id}: admin on * to {name}")
        token_id, token = new_token()
        events.append(
            store.event(
                "token_issue",
                gov,
                token_id,
                {"principal": name, "hash": hash_secret(token), "reason": reason},
            )  # fmt: skip
        )
        made.append(f"token {token_id} of {name}")
        store.append(events, raise_on_reject=True, timeout=timeout)
    return token_id, token, made
