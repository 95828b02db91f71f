"""The reads of the HTTP API, client side: one implementation for every client.

:class:`HttpReads` is the read half of :class:`~memstream.client.HttpMemoryStore` (over
``memstream serve``) and of :class:`~memstream.kafka.KafkaMemoryStore` (over any worker),
and what a worker uses to forward a read to a partition's owner. Responses decode into
the msgspec types the embedded store returns.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

from memstream.projections.search import SearchQuery
from memstream.queries import AuditQuery, ListQuery, Point, Reads
from memstream.schemas.views import AuditPage, Memory, MemoryPage, SearchHit, Version
from memstream.streams.log import ChainBreak
from memstream.wire import SearchRequest, format_point

from .transport import LONG_TIMEOUT, ApiTransport, body_of

__all__ = ["HttpReads"]

_memory = msgspec.json.Decoder(Memory)
_versions = msgspec.json.Decoder(list[Version])
_audit_page = msgspec.json.Decoder(AuditPage)
_memory_page = msgspec.json.Decoder(MemoryPage)


class _Hits(msgspec.Struct):
    hits: list[SearchHit]


_hits = msgspec.json.Decoder(_Hits)


def _point(value: Point | None) -> str | None:
    return format_point(value) if value is not None else None


def memory_path(memory_id: str) -> str:
    return "/v1/memories/" + quote(memory_id, safe="/:@")


class HttpReads(ApiTransport, Reads):
    """``get``, ``history``, ``audit``, ``search`` (see :class:`~memstream.queries.Reads`),
    and the service endpoints, over the HTTP API."""

    timeout: float

    def _get(
        self,
        memory_id: str,
        namespace: str | None,
        version: int | None,
        as_of: Point | None,
        min_offset: int | None,
    ) -> Memory | None:
        params = {
            "namespace": namespace,
            "version": version,
            "as_of": _point(as_of),
            "min_offset": min_offset,
        }
        resp = self._request("GET", memory_path(memory_id), params=params)
        if resp.status_code == 404 and body_of(resp).get("error") == "not_found":
            return None
        return _memory.decode(self._ok(resp).content)

    def _history(
        self,
        memory_id: str,
        namespace: str | None,
        include_parents: bool,
        as_of: Point | None,
        min_offset: int | None,
    ) -> list[Version]:
        params = {
            "namespace": namespace,
            "include_parents": "true" if include_parents else "false",
            "as_of": _point(as_of),
            "min_offset": min_offset,
        }
        resp = self._request("GET", memory_path(memory_id) + "/history", params=params)
        if resp.status_code == 404 and body_of(resp).get("error") == "not_found":
            return []
        return _versions.decode(self._ok(resp).content)

    def _list(self, q: ListQuery, min_offset: int | None) -> MemoryPage:
        params = {
            "namespace": q.namespace,
            "state": list(q.states) if q.states is not None else None,
            "tag": list(q.tags) or None,
            "after": q.after,
            "limit": q.limit,
            "min_offset": min_offset,
        }
        resp = self._request("GET", "/v1/memories", params=params)
        return _memory_page.decode(self._ok(resp).content)

    def _audit(self, q: AuditQuery, partition: int | None, min_offset: int | None) -> AuditPage:
        params = {
            "namespace": q.namespace,
            "memory_id": q.memory_id,
            "actor": q.actor,
            "type": q.type,
            "status": q.status,
            "since": _point(q.since),
            "until": _point(q.until),
            "after": q.after,
            "as_of": _point(q.as_of),
            "limit": q.limit,
            "partition": partition,
            "min_offset": min_offset,
        }
        resp = self._request("GET", "/v1/audit", params=params)
        return _audit_page.decode(self._ok(resp).content)

    def _search(self, q: SearchQuery, min_offset: int | None) -> list[SearchHit]:
        return self.search_request(SearchRequest.of(q, min_offset=min_offset))

    def search_request(
        self, body: SearchRequest, headers: dict[str, str] | None = None
    ) -> list[SearchHit]:
        """``POST /v1/search`` with ``body``; the hits, best first."""
        content = msgspec.json.encode(body)
        resp = self._request("POST", "/v1/search", content=content, headers=headers)
        return _hits.decode(self._ok(resp).content).hits

    def verify(self, progress: Any = None) -> ChainBreak | None:
        """Have the server recompute its log's hash chain; the first break, or None.

        ``progress`` is accepted for signature compatibility with :class:`MemoryStore` and
        not called: the work happens on the server.
        """
        timeout = max(self.timeout, LONG_TIMEOUT)
        body = body_of(self._ok(self._request("POST", "/v1/audit/verify", timeout=timeout)))
        if body.get("ok"):
            return None
        return ChainBreak(int(body["offset"]), str(body["reason"]))

    # -- the service -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``/health``: the process is up (pid, store path, version)."""
        return body_of(self._ok(self._request("GET", "/health")))

    def ready(self) -> dict[str, Any]:
        """``/ready``: head offset, projected offset and lag; raises if the store is not ready."""
        return body_of(self._ok(self._request("GET", "/ready")))

    def status(self, cluster: bool = False) -> dict[str, Any]:
        """``/v1/status``: offsets and lag per partition (``cluster``: of every worker)."""
        params = {"cluster": "1" if cluster else None}
        return body_of(self._ok(self._request("GET", "/v1/status", params=params)))
