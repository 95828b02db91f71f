"""The process and copies: ``/health``, ``/ready``, ``/v1/status``, ``/v1/backup``,
``/v1/replay``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from memstream.errors import BadRequest
from memstream.wire import BackupRequest, ReplayRequest, decode_request, point

from ..deps import BodyDep, CallerDep, OpenCallerDep, ServiceDep
from ..openapi import error_content, json_content, ref, request_body
from ..responses import MsgspecResponse

router = APIRouter()
_OBJECT = {"type": "object"}


@router.get(
    "/health",
    tags=["service"],
    summary="The process is up",
    responses={200: json_content(_OBJECT, "pid, version, and the store or worker served")},
)
async def health(caller: OpenCallerDep, service: ServiceDep) -> Response:
    return MsgspecResponse(service.health(caller))


@router.get(
    "/ready",
    tags=["service"],
    summary="Reads and writes are served",
    description="An embedded store reports the head offset of the log, the offset the "
    "projection reached, and the lag between them; a Kafka worker its partitions, none "
    "catching up. 503 when the store is closed, its projector stopped, or a partition is "
    "catching up.",
    responses={
        200: json_content(_OBJECT, "the offsets and lag"),
        503: error_content("the store cannot serve reads or writes"),
    },
)
def ready(caller: CallerDep, service: ServiceDep) -> Response:
    ok, body = service.ready(caller)
    return MsgspecResponse(body, 200 if ok else 503)


@router.get(
    "/v1/status",
    tags=["service"],
    summary="Partitions served, their offsets and lag",
    description="With `cluster`, every worker of the deployment (`workers`: one entry "
    "each); an embedded store is one worker with one partition.",
    responses={200: json_content(_OBJECT, "offsets and lag per partition")},
)
def status(caller: CallerDep, service: ServiceDep, cluster: bool = False) -> Response:
    return MsgspecResponse(service.status(caller, cluster=cluster))


def _absolute(path: str, field: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute():
        raise BadRequest(
            f"{field} must be an absolute path on the server's filesystem, not {path!r} "
            "(a relative path would depend on where the server was started)",
            field=f"body.{field}",
        )
    return p


def _copy(what: str, field: str, path: Path, copy: Any) -> dict[str, Any]:
    try:
        return copy()
    except FileExistsError:
        raise
    except OSError as e:
        raise BadRequest(f"cannot write the {what} to {path}: {e}", f"body.{field}") from None


@router.post(
    "/v1/checkpoint",
    tags=["service"],
    summary="Persist every projection now; nothing of an erased memory left on disk",
    description="The projections and search indexes catch up and persist, and the files "
    "that held the content of memories erased so far are rewritten without it. An erase "
    "triggers this by itself about a second later; call it to be sure.",
    responses={
        200: json_content(_OBJECT, "the offset covered and the seconds it took"),
        501: error_content("a Kafka worker checkpoints its shards by itself"),
    },
)
async def checkpoint(caller: CallerDep, service: ServiceDep) -> Response:
    return MsgspecResponse(await run_in_threadpool(service.checkpoint, caller))


@router.post(
    "/v1/backup",
    tags=["copies"],
    summary="A consistent copy of the log and keys, while serving",
    description="Open the copy as a store (`MemoryStore.open`, or `memstream --store`) "
    "to restore: its projections are rebuilt from the log.",
    openapi_extra=request_body(ref("BackupRequest")),
    responses={
        200: json_content(_OBJECT, "dest and the number of records copied"),
        400: error_content("dest is not absolute or not writable"),
        409: error_content("dest exists and is not empty"),
        501: error_content("this backend keeps no log of its own (a Kafka worker)"),
    },
)
async def backup(body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: BackupRequest = decode_request(body, BackupRequest)
    dest = _absolute(req.dest, "dest")
    copied = await run_in_threadpool(
        _copy, "backup", "dest", dest, lambda: service.backup(caller, dest)
    )
    return MsgspecResponse(copied)


@router.post(
    "/v1/replay",
    tags=["copies"],
    summary="Copy the log up to a point into a new read-only store",
    description="The server copies the log prefix (consistently, while serving); open "
    "the directory as a store to rebuild its projections (the CLI's `replay` does, with "
    "a progress bar). `to` is an offset (inclusive) or an RFC 3339 time.",
    openapi_extra=request_body(ref("ReplayRequest")),
    responses={
        200: json_content(_OBJECT, "into, to_offset and records copied"),
        400: error_content("into or to is invalid"),
        409: error_content("into exists and is not empty"),
        501: error_content("this backend keeps no log of its own (a Kafka worker)"),
    },
)
async def replay(body: BodyDep, caller: CallerDep, service: ServiceDep) -> Response:
    req: ReplayRequest = decode_request(body, ReplayRequest)
    into = _absolute(req.into, "into")
    to = point(req.to, "to")
    copied = await run_in_threadpool(
        _copy, "replay", "into", into, lambda: service.replay_copy(caller, into, to)
    )
    return MsgspecResponse(copied)
