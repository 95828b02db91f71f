"""Subscriptions on the Kafka runtime: served by the workers that own the partitions, merged
by the worker a consumer connects to.

Each shard (one partition of the log) runs the subscription lanes on its own processor
runner, with a :class:`~memstream.pubsub.hub.SubscriptionHub` of its own: the filters, the
cursors (in the shard's directory), the acknowledgements, redelivery and the parked list of
that partition (:class:`ShardHubs`). A consumer connects to any worker; that worker
(:class:`PartitionedHub`) serves it every partition: those it owns from their hubs, the
others through their owners' event streams (a forwarded SSE request naming the partitions,
carrying the consumer's principal, checked again by the owner). Positions name their
partition (:mod:`memstream.pubsub.positions`); heartbeats carry the position reached in
each partition. Acknowledgements, rejections and seeks go to each position's partition.

A shard's cursors and parked lists live in its directory and are copied, change by change,
to the partition-state topic (:mod:`memstream.streams.kafka.state`); a worker that gains a
partition adopts what the previous owner left there, so its consumers resume where they were
acknowledged (what a killed worker had not sent yet is delivered again: at least once).

What the embedded store does that this does not: a publication's delivery quota is not
counted across partitions, so consuming a publication with ``max_deliveries`` is refused
here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
from httpx_sse import aconnect_sse

from memstream.client.transport import error_from, error_of
from memstream.errors import (
    BadRequest,
    PartitionUnavailable,
    SubscriptionClosed,
    Unsupported,
)
from memstream.projections.policy import PolicyState
from memstream.projections.subscriptions import SubscriptionRule
from memstream.pubsub.cursors import CursorStore
from memstream.pubsub.hub import SubscriptionHub
from memstream.pubsub.positions import SPAN, decode
from memstream.schemas.views import Delivery, Heartbeat, ParkedDelivery

from .caller import Caller
from .pubsub import Subscriber, _start, parked_views

if TYPE_CHECKING:
    from memstream.projections.semantic import SemanticProjection
    from memstream.streams.kafka.shard import Shard
    from memstream.streams.kafka.state import PartitionState

    from .service import MemoryService
    from .worker import WorkerBackend

__all__ = ["MergedSubscriber", "PartitionedHub", "ShardHubs"]

log = logging.getLogger("memstream.pubsub")

#: Deliveries waiting in a merged subscriber for its consumer, at most.
MERGE_BUFFER = 1_000
#: The heartbeat interval of each partition's stream, as a share of the merged one's: a
#: merged heartbeat comes after a whole interval with nothing delivered, by which time every
#: partition has reported its position at least once.
PART_BEAT = 0.5


def _part_beat(heartbeat: float) -> float:
    """A partition stream's heartbeat interval (no shorter than the HTTP route accepts)."""
    return max(0.01, heartbeat * PART_BEAT)


#: The route of a worker's own calls to another worker about its partitions.
PARTITIONS_ROUTE = "/v1/internal/subscriptions/{name}/partitions"
_STATUS = {"not_found": 404, "closed": 410, "forbidden": 403, "unsupported": 501,
           "bad_request": 400, "unauthenticated": 401}  # fmt: skip


class ShardHubs:
    """The subscription hub of every shard a worker runs (processors it adds to each)."""

    def __init__(self) -> None:
        self.hubs: dict[int, SubscriptionHub] = {}
        #: the rules in force (the worker's follower of the governance partition), set
        #: once the worker's node exists
        self.policy: Callable[[], PolicyState] = PolicyState

    def processors(
        self, shard: Shard, semantic: SemanticProjection | None, state: PartitionState
    ) -> list[Any]:
        if shard.partition >= SPAN:
            raise ValueError(f"subscriptions serve partitions below {SPAN}, not {shard.partition}")
        cursors = CursorStore(shard.dir / "subscriptions" / "cursors.sqlite", mirror=state)
        if cursors.adopted:
            log.info("partition %s: %d subscription records adopted from its last owner",
                     shard.partition, cursors.adopted)  # fmt: skip
        hub = SubscriptionHub(
            cursors,
            lambda: self.policy(),
            embed=semantic.cached_vectors if semantic is not None else None,
            partition=shard.partition,
        )
        duck = shard.duck
        hub.bind(shard.feed, lambda t: duck.offset_at_time(t - timedelta(microseconds=1)))
        self.hubs[shard.partition] = hub
        return list(hub.lanes)

    def stopped(self, partition: int) -> None:
        hub = self.hubs.pop(partition, None)
        if hub is not None:
            hub.close(f"partition {partition} moved to another worker")


class PartitionedHub:
    """What the service's pub/sub methods use on a worker (see the module docstring)."""

    partitioned = True

    def __init__(self, backend: WorkerBackend, shards: ShardHubs):
        self.backend = backend
        self.shards = shards

    # -- where a partition is served ------------------------------------------------------------

    def _local(self, p: int) -> SubscriptionHub | None:
        if p not in self.backend.node.owned:
            return None
        return self.shards.hubs.get(p)

    def _split(
        self, caller: Caller, partitions: list[int] | None
    ) -> tuple[dict[int, SubscriptionHub], dict[str, list[int]]]:
        """The hubs here, and the owners of the other partitions (by URL)."""
        every = range(self.backend.partitions)
        wanted = sorted(set(every if partitions is None else partitions))
        for p in wanted:
            if not 0 <= p < self.backend.partitions:
                raise BadRequest(
                    f"partition must be 0..{self.backend.partitions - 1}, not {p}",
                    field="partitions",
                )
        local: dict[int, SubscriptionHub] = {}
        remote: dict[str, list[int]] = {}
        for p in wanted:
            hub = self._local(p)
            if hub is not None:
                local[p] = hub
                continue
            url = self.backend._owner(p)
            if url is None or url == self.backend.me or caller.forwarded:
                raise PartitionUnavailable(
                    f"partition {p} has no owner right now (a rebalance?); retry", partition=p
                )
            remote.setdefault(url, []).append(p)
        return local, remote

    def _forward(
        self, caller: Caller, url: str, rule: SubscriptionRule, body: dict[str, Any]
    ) -> Any:
        """One call to the owner at ``url`` about its partitions of ``rule``."""
        peer = self.backend._peer(url, caller)
        path = PARTITIONS_ROUTE.format(name=rule.name)
        resp = peer._request("POST", path, content=msgspec.json.encode(body))
        if resp.status_code >= 400:
            raise error_of(resp)
        return resp.json()["result"]

    def headers(self, caller: Caller, url: str) -> dict[str, str]:
        peer = self.backend._peer(url, caller)
        return {**peer._headers, "X-Memstream-Principal": caller.principal}

    # -- the service's calls ----------------------------------------------------------------------

    def subscriber(
        self,
        service: MemoryService,
        caller: Caller,
        rule: SubscriptionRule,
        heartbeat: float,
        last_seen: int | None,
        partitions: list[int] | None,
    ) -> MergedSubscriber:
        local, remote = self._split(caller, partitions)
        subs = {}
        for p, hub in local.items():
            try:
                consumer = hub.consumer(rule)
            except ValueError as e:
                raise BadRequest(str(e), field="filter.semantic") from None
            subs[p] = Subscriber(
                service, caller, consumer, _part_beat(heartbeat), hub=hub, partition=p
            )
            if last_seen is not None:
                subs[p].resend_after(last_seen)
        return MergedSubscriber(self, caller, rule, heartbeat, subs, remote, last_seen)

    def routed(self, caller: Caller, rule: SubscriptionRule) -> RoutedConsumer:
        return RoutedConsumer(self, caller, rule)

    def local_op(
        self, rule: SubscriptionRule, op: str, partitions: list[int], args: dict[str, Any]
    ) -> Any:
        """``op`` on the partitions of ``rule`` this worker owns (a peer's forwarded call)."""
        hubs = {p: h for p in partitions if (h := self._local(p)) is not None}
        missing = sorted(set(partitions) - set(hubs))
        if missing:
            raise PartitionUnavailable(
                f"partitions {missing} are not served here (ownership moving); retry",
                partition=missing[0],
            )
        if op == "ack":
            return sum(
                hubs[p].consumer(rule).ack([o for q, o in map(decode, args["positions"]) if q == p])
                for p in hubs
            )
        if op == "ack_upto":
            p, offset = decode(args["position"])
            return hubs[p].consumer(rule).ack_upto(offset) if p in hubs else 0
        if op == "nack":
            p, offset = decode(args["position"])
            return hubs[p].consumer(rule).nack(offset, reason=args.get("reason"),
                                               park=bool(args.get("park", True)))  # fmt: skip
        if op == "seek":
            for hub in hubs.values():
                c = hub.consumer(rule)
                c.seek(_after(args["start"], c.feed.committed, hub))
            return len(hubs)
        if op == "parked":
            out = []
            for p, hub in hubs.items():
                out += parked_views(hub.cursors.parked(rule.name, rule.generation,
                                                       args["limit"]), p)  # fmt: skip
            return [msgspec.to_builtins(v) for v in out]
        if op == "unpark":
            n = 0
            for p, hub in hubs.items():
                offsets = [o for q, o in map(decode, args["positions"]) if q == p]
                n += hub.cursors.unpark(rule.name, rule.generation, offsets) if offsets else 0
            return n
        raise BadRequest(f"unknown operation {op!r}", field="op")

    def _everywhere(
        self, caller: Caller, rule: SubscriptionRule, op: str, **args: Any
    ) -> list[Any]:
        """``op`` on every partition: here for those owned here, at their owners for the rest."""
        local, remote = self._split(caller, None)
        out = [self.local_op(rule, op, list(local), args)] if local else []
        for url, parts in remote.items():
            out.append(self._forward(caller, url, rule, {"op": op, "partitions": parts, **args}))
        return out

    def seek(self, caller: Caller, rule: SubscriptionRule, start: Any) -> None:
        kind, _, at = _start(start)
        if kind == "offset":
            raise BadRequest(
                "on the Kafka runtime an offset names a position in one partition: seek to "
                "now, the beginning or a time",
                field="start",
            )
        self._everywhere(caller, rule, "seek", start=at.isoformat() if at else kind)

    def parked(self, caller: Caller, rule: SubscriptionRule, limit: int) -> list[ParkedDelivery]:
        views = [
            msgspec.convert(v, ParkedDelivery)
            for part in self._everywhere(caller, rule, "parked", limit=limit)
            for v in part
        ]
        return sorted(views, key=lambda v: v.parked_at)[:limit]

    def unpark(self, caller: Caller, rule: SubscriptionRule, positions: list[int]) -> int:
        return sum(self._everywhere(caller, rule, "unpark", positions=positions))


def _after(start: str, head: int, hub: SubscriptionHub) -> int:
    """The offset a seek of one partition starts after."""
    if start == "now":
        return head
    if start == "beginning":
        return -1
    assert hub.before is not None
    return hub.before(datetime.fromisoformat(start).astimezone(UTC))


class RoutedConsumer:
    """Acknowledgements and rejections, each sent to its position's partition."""

    def __init__(self, hub: PartitionedHub, caller: Caller, rule: SubscriptionRule):
        self.hub, self.caller, self.rule = hub, caller, rule

    def _by_owner(self, positions: list[int]) -> tuple[list[int], dict[str, list[int]]]:
        local: list[int] = []
        remote: dict[str, list[int]] = {}
        for position in positions:
            p, _ = decode(position)
            if self.hub._local(p) is not None:
                local.append(position)
                continue
            url = self.hub.backend._owner(p)
            if url is None or url == self.hub.backend.me or self.caller.forwarded:
                raise PartitionUnavailable(f"partition {p} has no owner right now", partition=p)
            remote.setdefault(url, []).append(position)
        return local, remote

    def _call(self, op: str, positions: list[int], **args: Any) -> Any:
        local, remote = self._by_owner(positions)
        out = []
        if local:
            parts = sorted({decode(q)[0] for q in local})
            out.append(self.hub.local_op(self.rule, op, parts, {"positions": local, **args}))
        for url, mine in remote.items():
            parts = sorted({decode(q)[0] for q in mine})
            body = {"op": op, "partitions": parts, "positions": mine, **args}
            out.append(self.hub._forward(self.caller, url, self.rule, body))
        return out

    def ack(self, positions: list[int]) -> int:
        return sum(self._call("ack", list(positions)))

    def ack_upto(self, position: int) -> int:
        return sum(self._call("ack_upto", [position], position=position))

    def nack(self, position: int, *, reason: str | None, park: bool) -> bool:
        return any(self._call("nack", [position], position=position, reason=reason, park=park))


class MergedSubscriber:
    """The deliveries of every partition of a subscription, merged (coroutines only: the
    Kafka runtime is consumed over HTTP). Each partition keeps its own order; heartbeats
    carry the position reached in each partition."""

    def __init__(
        self,
        hub: PartitionedHub,
        caller: Caller,
        rule: SubscriptionRule,
        heartbeat: float,
        local: dict[int, Subscriber],
        remote: dict[str, list[int]],
        last_seen: int | None,
    ):
        self.hub, self.caller, self.rule = hub, caller, rule
        self.name = rule.name
        self.heartbeat = heartbeat
        self.local, self.remote = local, remote
        self.last_seen = last_seen
        self.positions: dict[int, int] = {}
        self._queue: asyncio.Queue[Delivery | BaseException] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._routed = RoutedConsumer(hub, caller, rule)

    # -- receiving ----------------------------------------------------------------------------

    def _start(self) -> asyncio.Queue[Delivery | BaseException]:
        if self._queue is None:
            self._queue = asyncio.Queue(MERGE_BUFFER)
            for p, sub in self.local.items():
                self.positions[p] = sub.consumer.position()[0]
                self._tasks.append(asyncio.create_task(self._follow_local(p, sub)))
            for url, parts in self.remote.items():
                self._tasks.append(asyncio.create_task(self._follow_remote(url, parts)))
        return self._queue

    async def next_async(self, timeout: float | None = None) -> Delivery | Heartbeat:
        queue = self._start()
        try:
            item = await asyncio.wait_for(
                queue.get(), self.heartbeat if timeout is None else timeout
            )
        except TimeoutError:
            return Heartbeat(
                subscription=self.name, position=-1, cursor=-1, head=-1, in_flight=0,
                at=datetime.now(UTC), partitions=dict(sorted(self.positions.items())),
            )  # fmt: skip
        if isinstance(item, BaseException):
            await self.aclose()
            raise item
        return item

    def next(self, timeout: float | None = None) -> Delivery | Heartbeat:
        raise Unsupported(
            "a Kafka deployment's subscriptions are consumed over HTTP (Server-Sent Events, "
            "the HTTP client's subscribe): a worker merges their partitions as it streams"
        )

    async def __aiter__(self) -> AsyncIterator[Delivery | Heartbeat]:
        while True:
            try:
                yield await self.next_async()
            except SubscriptionClosed:
                return

    async def _put(self, item: Delivery | BaseException) -> None:
        assert self._queue is not None
        if isinstance(item, Delivery) and item.partition is not None:
            # the partition has looked at least this far (its heartbeats say exactly)
            offset = decode(item.position)[1]
            if offset > self.positions.get(item.partition, -1):
                self.positions[item.partition] = offset
        await self._queue.put(item)

    def _ended(self, why: str) -> BaseException:
        """A partition's stream ended: the subscription was deleted, or the partition moved
        (the consumer connects again and resumes from the cursors)."""
        if self.rule.name not in self.hub.backend.policy().subscriptions:
            return SubscriptionClosed(f"subscription {self.name} was deleted")
        return PartitionUnavailable(f"{why}; connect again to resume", error="unavailable")

    async def _follow_local(self, p: int, sub: Subscriber) -> None:
        try:
            while True:
                d = await sub.next_async()
                if isinstance(d, Heartbeat):
                    self.positions.update(d.partitions or {})
                else:
                    await self._put(d)
        except SubscriptionClosed:
            await self._put(self._ended(f"partition {p} stopped being served here"))
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            await self._put(e)

    async def _follow_remote(self, url: str, parts: list[int]) -> None:
        headers = self.hub.headers(self.caller, url)
        if self.last_seen is not None and decode(self.last_seen)[0] in parts:
            headers["Last-Event-ID"] = str(self.last_seen)
        params = {
            "partitions": ",".join(map(str, parts)),
            "heartbeat": str(_part_beat(self.heartbeat)),
        }
        path = f"{url}/v1/subscriptions/{self.name}/events"
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as client:
                async with aconnect_sse(client, "GET", path, params=params, headers=headers) as es:
                    if es.response.status_code != 200:
                        await es.response.aread()
                        await self._put(error_of(es.response))
                        return
                    async for sse in es.aiter_sse():
                        if sse.event == "delivery":
                            await self._put(msgspec.json.decode(sse.data, type=Delivery))
                        elif sse.event == "heartbeat":
                            hb = msgspec.json.decode(sse.data, type=Heartbeat)
                            self.positions.update(hb.partitions or {})
                        elif sse.event == "closed":
                            await self._put(SubscriptionClosed(sse.data or "closed"))
                            return
                        elif sse.event == "error":
                            await self._put(_exception(msgspec.json.decode(sse.data)))
                            return
            await self._put(self._ended(f"the stream of partitions {parts} at {url} ended"))
        except asyncio.CancelledError:
            raise
        except httpx.HTTPError as e:
            await self._put(self._ended(f"the owner of partitions {parts} is unreachable ({e})"))

    # -- acknowledging ------------------------------------------------------------------------

    def ack(self, *positions: int) -> int:
        return self._routed.ack(list(positions))

    def ack_upto(self, position: int) -> int:
        return self._routed.ack_upto(position)

    def nack(self, position: int, *, reason: str | None = None, park: bool = True) -> bool:
        return self._routed.nack(position, reason=reason, park=park)

    def resend_after(self, position: int) -> None:
        for sub in self.local.values():
            sub.resend_after(position)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()


def _exception(body: Any) -> Exception:
    """The typed exception of an SSE ``error`` event's body (the API's error shape)."""
    body = body if isinstance(body, dict) else {"message": str(body)}
    status = body.get("status")
    if not isinstance(status, int):
        status = _STATUS.get(str(body.get("error")), 403)
    return error_from(status, body)
