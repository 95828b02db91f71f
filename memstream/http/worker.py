"""``memstream worker``: the Faust worker with the HTTP API in its own event loop.

The worker app (sequencer, projectors, partition callbacks) comes from
:mod:`memstream.streams.kafka.worker`, with Faust's web server off. The API is the one of
``memstream serve`` (:func:`memstream.http.create_app`, the same routers), over a
:class:`~memstream.service.worker.WorkerBackend`, served by uvicorn as a service the Faust
worker starts after the app and stops with it, in the same event loop.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import faust
import uvicorn
from fastapi import FastAPI
from mode import Service

from memstream.governance.tokens import Authenticator
from memstream.server import SignalFreeServer, bind_socket
from memstream.service import MemoryService
from memstream.service.merged import ShardHubs
from memstream.service.worker import WorkerBackend
from memstream.settings import SettingsError, WorkerSettings
from memstream.streams.kafka.producer import NotWritten, OutcomePending
from memstream.streams.kafka.settings import KafkaSettings
from memstream.streams.kafka.worker import create_app as create_worker
from memstream.streams.settings import env_var

from .app import create_app
from .responses import error

__all__ = ["CLUSTER_TOKEN_ENV", "WorkerApi", "check_auth", "run_worker", "worker_api"]

log = logging.getLogger("memstream.worker")

#: The environment variable of the cluster token.
CLUSTER_TOKEN_ENV = env_var(WorkerSettings, "cluster_token")

#: what the Kafka producer raises, as answers (a write the broker did not take is 503)
HANDLERS: dict[type[Exception], Any] = {
    NotWritten: lambda _, e: error(503, "not_written", str(e)),
    OutcomePending: lambda _, e: error(
        504, "outcome_pending", str(e), pending=e.pending, outcomes=[o.public() for o in e.done]
    ),
}


def _members(app: faust.App) -> dict[str, list[int]]:
    """Every member's URL and the partitions of the requests topic it owns."""
    requests = app.memstream.settings.requests  # type: ignore[attr-defined]
    return {
        url: sorted(topics.get(requests, ()))
        for url, topics in app.router.external_topics_metadata().items()
    }


#: the shortest cluster token a worker accepts
MIN_CLUSTER_TOKEN = 32


def check_auth(auth: bool, cluster_token: str | None) -> str | None:
    """The cluster token to use (None with authentication off), or :class:`SettingsError`
    naming the setting and the fix. Nothing is generated: every worker must be given the
    same secret."""
    if not auth:
        return cluster_token or None
    if not cluster_token:
        raise SettingsError(
            f"{CLUSTER_TOKEN_ENV} is not set: with authentication on, the workers of a "
            "deployment authenticate each other with a shared secret. Give every worker the "
            f"same one, e.g. `export {CLUSTER_TOKEN_ENV}=$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')`, or run with --no-auth for local development"
        )
    if len(cluster_token) < MIN_CLUSTER_TOKEN:
        raise SettingsError(
            f"{CLUSTER_TOKEN_ENV} has {len(cluster_token)} characters; use at least "
            f"{MIN_CLUSTER_TOKEN} random ones (python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )
    return cluster_token


def worker_api(
    app: faust.App,
    loop: asyncio.AbstractEventLoop,
    *,
    auth: bool = True,
    cluster_token: str | None = None,
) -> FastAPI:
    """The HTTP API over the worker ``app``'s node (its backend runs coroutines in ``loop``).

    ``auth`` (default on) requires a bearer token on every request but ``/health``: a
    principal's token, checked against the rules the node follows from the governance
    partition, or ``cluster_token``, which the workers forward calls with (the original
    caller in headers, checked by the receiving worker)."""
    cluster_token = check_auth(auth, cluster_token)
    backend = WorkerBackend(
        app.memstream,  # type: ignore[attr-defined]
        loop,
        me=str(app.conf.canonical_url),
        members=lambda: _members(app),
        cluster_token=cluster_token,
    )
    authenticator = None
    if auth:
        authenticator = Authenticator(backend.policy, cluster_token=cluster_token)
    else:
        log.warning(
            "authentication is OFF (--no-auth / MEMSTREAM_AUTH=0): every caller of this "
            "worker's HTTP API is unchecked and acts as the principal it names; use it for "
            "local development only"
        )
    return create_app(MemoryService(backend), handlers=HANDLERS, auth=authenticator)


class WorkerApi(Service):
    """uvicorn serving :func:`worker_api` on the worker's web host and port."""

    def __init__(
        self,
        app: faust.App,
        host: str,
        port: int,
        *,
        auth: bool = True,
        cluster_token: str | None = None,
        **kw: Any,
    ):
        super().__init__(**kw)
        self.app, self.host, self.port = app, host, port
        self.auth, self.cluster_token = auth, cluster_token
        self._server: SignalFreeServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        api = worker_api(
            self.app, asyncio.get_running_loop(), auth=self.auth, cluster_token=self.cluster_token
        )
        sock = bind_socket(self.host, self.port)
        config = uvicorn.Config(
            api, lifespan="off", access_log=False, server_header=False, log_level="warning",
            timeout_graceful_shutdown=10,
        )  # fmt: skip
        server = self._server = SignalFreeServer(config)
        self._task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError(f"the HTTP API did not start on {self.host}:{self.port}")
        log.info("HTTP API on %s", self.app.conf.canonical_url)

    async def on_stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            api = self._server.config.app
            api.state.service.backend.close()


def run_worker(
    settings: KafkaSettings,
    *,
    data_dir: Path | None = None,
    web_host: str = "127.0.0.1",
    web_port: int = 6066,
    advertise: str | None = None,
    loglevel: str = "info",
    semantic: bool = True,
    auth: bool = True,
    cluster_token: str | None = None,
) -> None:
    """Run a worker in this process until SIGTERM/SIGINT (Faust handles both cleanly).

    ``auth`` and ``cluster_token``: see :func:`worker_api` (checked before anything starts)."""
    cluster_token = check_auth(auth, cluster_token)
    hubs = ShardHubs()  # every shard serves its partition's subscriptions
    app = create_worker(
        settings,
        data_dir=data_dir,
        web_host=web_host,
        web_port=web_port,
        advertise=advertise,
        semantic=semantic,
        extras=hubs,
    )
    node = app.memstream  # type: ignore[attr-defined]
    hubs.policy = lambda: node.policy.state
    api = WorkerApi(app, web_host, web_port, auth=auth, cluster_token=cluster_token)
    worker = faust.Worker(app, api, loglevel=loglevel, quiet=True)
    # Faust keeps a terminal spinner at levels from WARNING up, and to feed it sets the root
    # logger to DEBUG: every library's debug call then builds a log record (aiokafka's, per
    # batch sent, showed in the worker's profile). A service has no terminal to spin on.
    worker.spinner = None
    worker.execute_from_commandline()
