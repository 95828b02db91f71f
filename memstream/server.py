"""``memstream serve``: the store and its HTTP API in one process.

The process opens the store (taking its lock: DuckDB allows one writer), binds the socket,
serves the API with uvicorn, and writes ``<store>/server.json`` (url, pid, started_at) once
it listens, so the CLI and other tools find it. On SIGTERM or SIGINT (Ctrl-C) it stops
accepting connections, lets the requests in flight finish (their answers go out), removes
``server.json`` and closes the store, which drains the projector. Every event a client got
a 200 for was durably appended before that answer was sent, so nothing acknowledged is
lost; the process then exits 0.

Why not ``uvicorn.run``: uvicorn re-raises a captured SIGTERM after its own shutdown, which
would kill the process before the store is closed (exit status -15, projector not
drained). This module keeps its own handlers installed for the whole life of the process,
including the store's close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from memstream.governance.tokens import Authenticator, new_owner_token
from memstream.sdk import MemoryStore
from memstream.streams.embedded import SERVER_FILE

__all__ = ["ServerInfo", "ServeError", "read_server_info", "run"]

log = logging.getLogger("memstream.server")

#: Seconds the server waits for requests in flight before it cancels them on shutdown.
GRACEFUL_TIMEOUT = 30


class ServeError(RuntimeError):
    """The server could not start (the port is taken, the address is invalid)."""


@dataclass(frozen=True)
class ServerInfo:
    """What ``server.json`` says about a running server."""

    url: str
    pid: int
    started_at: str
    store: str
    host: str
    port: int
    #: the owner token of this run (None: authentication off); see Authenticator
    token: str | None = None
    #: the token of the admin principal created by this run (a fresh store), for the demo;
    #: never written to server.json
    admin_token: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "admin_token"}


def read_server_info(store: str | Path) -> ServerInfo | None:
    """The ``server.json`` of a store directory, or None when there is none (or it is torn)."""
    path = Path(store) / SERVER_FILE
    try:
        data = json.loads(path.read_text())
        return ServerInfo(
            **{
                k: data[k]
                for k in ServerInfo.__dataclass_fields__
                if k not in ("token", "admin_token")
            },  # fmt: skip
            token=data.get("token"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_info(store: Path, info: ServerInfo) -> None:
    tmp = store / (SERVER_FILE + f".{os.getpid()}.tmp")
    # Only the account that owns the store reads it: it holds the owner token.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(info.to_dict(), indent=2))
    os.replace(tmp, store / SERVER_FILE)


def _remove_info(store: Path) -> None:
    """Remove ``server.json`` if it is this process's (never another server's)."""
    info = read_server_info(store)
    if info is not None and info.pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            (store / SERVER_FILE).unlink()


def _authentication(
    store: MemoryStore, auth: bool, read_only: bool
) -> tuple[Authenticator | None, str | None]:
    """The authenticator of this run (None: off, with a warning) and, for a store that has
    no principal yet, the token of the ``admin`` principal created now (printed once)."""
    if not auth:
        log.warning(
            "authentication is OFF (--no-auth / MEMSTREAM_AUTH=0): every caller is unchecked "
            "and acts as whoever it claims to be; use this for local development only"
        )
        return None, None
    authenticator = Authenticator(store.backend.policy, new_owner_token())
    if read_only or store.backend.policy().principals:
        return authenticator, None
    return authenticator, bootstrap_admin(store)


def _print_admin_token(token: str) -> None:
    print(
        "memstream: created the admin principal of this store; its token (shown once, keep "
        f"it; `memstream token issue` makes more):\n  {token}",
        flush=True,
    )


def _preload_scanner(store: MemoryStore) -> None:
    """Load the sensitive-content scanner in the background when a namespace policy will
    need it, so the first screened write does not wait for its models (a few seconds)."""
    if any(r.sensitive != "allow" for r in store.backend.policy().policies.values()):
        from memstream.governance.sensitive import default_scanner

        threading.Thread(
            target=default_scanner().load, name="memstream-scanner", daemon=True
        ).start()


def bootstrap_admin(store: MemoryStore, name: str = "admin") -> str:
    """Create principal ``name`` with admin on everything, and a token for it (returned)."""
    service, caller = store.service, store.caller
    service.set_principal(caller, name, reason="the store's first admin")
    service.grant(caller, name, ["admin"], "*", reason="the store's first admin")
    return service.issue_token(caller, name, reason="the store's first admin")[1]


def _url(host: str, port: int) -> str:
    """The URL clients use: a wildcard bind is reached over loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so ``port=0`` yields a known free port."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as e:
        raise ServeError(f"cannot resolve --host {host!r}: {e}") from None
    family, kind, proto, _, addr = infos[0]
    # The protocol matters: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
    # proto is IPPROTO_TCP; with proto 0 every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port} ({e.strerror}); choose another --port "
            "(--port 0 picks a free one) or stop the process using it"
        ) from None
    sock.set_inheritable(True)
    return sock


class SignalFreeServer(uvicorn.Server):
    """uvicorn's server without its signal handling (see the module docstring)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def on_signal(self, sig: int, _frame: Any) -> None:
        """SIGTERM/SIGINT ask uvicorn to stop; a second SIGINT during shutdown forces it.

        A bound method of the server on purpose: sse-starlette finds the server through
        the SIGTERM handler and ends the open event streams (subscriptions) once
        ``should_exit`` is set, so a shutdown does not wait for them to time out."""
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            log.info("received %s: stopping", signal.Signals(sig).name)
            self.should_exit = True


@contextlib.contextmanager
def _signals(server: SignalFreeServer) -> Iterator[None]:
    """Install :meth:`SignalFreeServer.on_signal` for SIGTERM and SIGINT.

    Installed only in the main thread (the only one that may handle signals).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handle = server.on_signal
    originals = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in originals.items():
            signal.signal(s, h)


def _setup_logging(level: str) -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)-9s %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level.upper())


def run(
    store_path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    max_event_bytes: int | None = None,
    max_body_bytes: int | None = None,
    log_level: str = "info",
    access_log: bool = False,
    read_only: bool = False,
    auth: bool = True,
    on_admin_token: Callable[[str], None] | None = None,
    on_listening: Callable[[ServerInfo], None] | None = None,
    on_ready: Callable[[ServerInfo], None] | None = None,
    stop_after_ready: bool = False,
) -> int:
    """Serve the store at ``store_path`` until SIGTERM/SIGINT; the process's exit code.

    ``on_listening`` runs in the event loop's thread right after ``server.json`` is
    written (keep it short: it announces). ``on_ready`` runs in a worker thread once the
    server listens (the demo uses it to talk to this very server over HTTP); with
    ``stop_after_ready`` the server stops when it returns, and the exit code is 1 if it
    raised. ``read_only`` serves the store for inspection (see ``MemoryStore.open``).
    ``auth`` (default on) requires a bearer token on every request but ``/health``; a store
    with no principal yet gets an ``admin`` principal, whose token goes to
    ``on_admin_token`` (default: printed on stdout) this once, and to ``on_ready`` as
    ``info.admin_token``. Off is logged as a warning.
    Raises :class:`memstream.errors.StoreLocked` when another process holds the store,
    :class:`memstream.errors.LogTampered` when its log is broken (unless ``read_only``),
    and :class:`ServeError` when the socket cannot be bound.
    """
    from memstream.http import create_app

    _setup_logging(log_level)
    root = Path(store_path).absolute()
    options: dict[str, Any] = {}
    if max_event_bytes is not None:
        options["max_event_bytes"] = max_event_bytes
    store = MemoryStore.open(root, actor="http", read_only=read_only, **options)
    outcome = {"code": 0}
    try:
        sock = bind_socket(host, port)
        bound_port = sock.getsockname()[1]
        authenticator, admin_token = _authentication(store, auth, read_only)
        _preload_scanner(store)
        if admin_token is not None:
            (on_admin_token or _print_admin_token)(admin_token)
        app = create_app(store, max_body_bytes=max_body_bytes, auth=authenticator)
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=access_log,
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_TIMEOUT,
            server_header=False,
        )
        server = SignalFreeServer(config)
        info = ServerInfo(
            url=_url(host, bound_port),
            pid=os.getpid(),
            started_at=datetime.now(UTC).isoformat(),
            store=str(root),
            host=host,
            port=bound_port,
            token=authenticator.owner_token if authenticator is not None else None,
            admin_token=admin_token,
        )

        def ready_thread() -> None:
            assert on_ready is not None
            try:
                on_ready(info)
            except Exception:
                log.exception("the startup task failed")
                outcome["code"] = 1
            finally:
                if stop_after_ready:
                    server.should_exit = True

        async def serve() -> None:
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            if server.started:
                _write_info(root, info)
                log.info(
                    "memstream serving %s at %s (pid %d); API docs at %s/docs; "
                    "Ctrl-C or SIGTERM stops it",
                    root,
                    info.url,
                    info.pid,
                    info.url,
                )
                if on_listening is not None:
                    on_listening(info)
                if on_ready is not None:
                    threading.Thread(
                        target=ready_thread, name="memstream-ready", daemon=True
                    ).start()
            await task

        with _signals(server):
            try:
                asyncio.run(serve())
            finally:
                _remove_info(root)
                log.info("server stopped; closing the store (draining the projector)")
                head = store.head
                store.close()
                log.info("store closed: %s (head offset %d)", root, head)
        if server.started is False and outcome["code"] == 0:
            outcome["code"] = 1
        return outcome["code"]
    finally:
        store.close()  # idempotent; covers failures before serving started
