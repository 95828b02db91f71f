"""One HTTP exchange with a memstream server: the request, and its error mapped back onto
the exception the embedded store raises for the same mistake."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec

from memstream.errors import (
    BadRequest,
    EventTooLarge,
    Forbidden,
    MalformedEvent,
    NotCaughtUp,
    PartitionUnavailable,
    ProjectorFailed,
    SearchDisabled,
    SensitiveContent,
    StoreReadOnly,
    SubscriptionClosed,
    TermsViolated,
    Unauthenticated,
    UnknownSubscription,
    Unsupported,
    rejection,
)
from memstream.schemas.memcube import Outcome
from memstream.wire import PRINCIPAL_HEADER

__all__ = [
    "DEFAULT_TIMEOUT", "LONG_TIMEOUT", "ApiTransport", "ServerError", "ServerUnavailable",
    "error_from", "error_of",
]  # fmt: skip

#: Seconds a request may take (connect, read, write) before the client gives up.
DEFAULT_TIMEOUT = 30.0
#: Long operations (verify, backup, replay copies) get at least this much time.
LONG_TIMEOUT = 600.0

_json = msgspec.json.Decoder()


class ServerUnavailable(ConnectionError):
    """The server could not be reached, or did not answer in time."""


class ServerError(RuntimeError):
    """The server answered with an error this client has no typed exception for."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None):
        self.status = status
        self.body = body or {}
        super().__init__(f"HTTP {status}: {message}")


def body_of(resp: httpx.Response) -> dict[str, Any]:
    """A response's JSON object (an error's text wrapped as ``message`` otherwise)."""
    try:
        data = _json.decode(resp.content)
    except msgspec.DecodeError:
        return {"message": resp.text[:500] or resp.reason_phrase}
    return data if isinstance(data, dict) else {"message": str(data)}


def _malformed(body: dict[str, Any]) -> MalformedEvent:
    """Rebuild the server's MalformedEvent (its message already names the batch index)."""
    message = str(body.get("message") or "malformed event")
    index = body.get("index")
    prefix = f"event #{index}: "
    if index is not None and message.startswith(prefix):
        message = message[len(prefix) :]
    return MalformedEvent(message, field=body.get("field"), index=index)


def error_of(resp: httpx.Response) -> Exception:
    """The typed exception for an error response (the same ones as embedded)."""
    return error_from(resp.status_code, body_of(resp), resp.reason_phrase)


def error_from(status: int, body: dict[str, Any], reason: str = "") -> Exception:
    """The typed exception for an error body answered with HTTP ``status`` (an error
    response, or the ``error`` event of a subscription's stream)."""
    error = body.get("error")
    message = str(body.get("message") or reason or f"HTTP {status}")
    if error == "not_found" and isinstance(body.get("name"), str):
        return UnknownSubscription(message, name=body["name"])
    if error == "closed":
        return SubscriptionClosed(message)
    if error == "terms":
        retry = body.get("retry_after")
        return TermsViolated(
            message, publication=str(body.get("publication") or ""),
            term=str(body.get("term") or ""),
            retry_after=float(retry) if isinstance(retry, int | float) else None,
        )  # fmt: skip
    if status == 422 and error == "malformed":
        return _malformed(body)
    if error == "rejected" and isinstance(body.get("outcome"), dict):
        return rejection(Outcome.from_public(body["outcome"]))
    if status == 413:
        detail, field = _malformed(body).detail, body.get("field")
        detail = detail.removesuffix(f" (at {field})") if field else detail
        return EventTooLarge(
            detail, limit=body.get("limit") or 0, field=field, index=body.get("index")
        )
    if error == "not_caught_up":
        return NotCaughtUp(
            int(body["wanted"]), int(body["reached"]), float(body["wait"]),
            lagging=str(body.get("lagging") or "the projection"),
            started=bool(body.get("started", True)), message=message,
        )  # fmt: skip
    if error in ("unavailable", "catching_up") and "partition" in body:
        return PartitionUnavailable(
            message, partition=body["partition"], error=error, offset=body.get("offset"),
            lag=body.get("lag"),
        )  # fmt: skip
    if status == 422 and error == "sensitive":
        return SensitiveContent(message, findings=body.get("findings"), index=body.get("index"))
    if status == 403 and error == "forbidden":
        return Forbidden(message, missing=body.get("missing"))
    if status == 401:
        return Unauthenticated(message)
    if error == "search_disabled":
        return SearchDisabled(message)
    if error == "projector_failed":
        return ProjectorFailed(message)
    if error == "read_only":
        return StoreReadOnly(message)
    if error == "exists":
        return FileExistsError(message)
    if error == "unsupported":
        return Unsupported(message)
    if status == 400:
        return BadRequest(message, field=body.get("field"))
    return ServerError(status, message, body)


class ApiTransport:
    """Requests to one server over ``self._http`` (an :class:`httpx.Client` with the
    server's base URL), as principal :attr:`actor`.

    ``retry_unavailable`` (seconds) retries a 503 (a partition catching up, or moving
    between workers) until then; 0 raises it at once.
    """

    url: str
    actor: str
    _http: httpx.Client
    retry_unavailable: float = 0.0

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        sent = {PRINCIPAL_HEADER: self.actor, **(headers or {})}
        if content is not None:
            sent["content-type"] = "application/json"
        deadline = time.monotonic() + self.retry_unavailable
        while True:
            try:
                resp = self._http.request(
                    method,
                    path,
                    params=query or None,
                    content=content,
                    headers=sent,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TimeoutException as e:
                raise ServerUnavailable(
                    f"the memstream server at {self.url} did not answer {method} {path} in "
                    f"time ({e.__class__.__name__}); it may be overloaded: retry, or raise "
                    "timeout="
                ) from None
            except httpx.TransportError as e:
                raise ServerUnavailable(
                    f"cannot reach the memstream server at {self.url} ({e.__class__.__name__}: "
                    f"{e}); start it with `memstream serve`, or check the URL"
                ) from None
            if resp.status_code != 503 or time.monotonic() >= deadline:
                return resp
            time.sleep(0.2)

    @contextlib.contextmanager
    def _stream(
        self, method: str, path: str, *, params: dict[str, Any] | None = None
    ) -> Iterator[httpx.Response]:
        """A streamed answer (an export), its errors raised as :meth:`_ok` raises them."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            with self._http.stream(
                method, path, params=query or None, headers={PRINCIPAL_HEADER: self.actor}
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise error_of(resp)
                yield resp
        except httpx.TransportError as e:
            raise ServerUnavailable(
                f"cannot reach the memstream server at {self.url} ({e.__class__.__name__}: {e})"
            ) from None

    def _ok(self, resp: httpx.Response) -> httpx.Response:
        if resp.status_code >= 400:
            raise error_of(resp)
        return resp
