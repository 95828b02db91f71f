"""End-to-end fixtures: real ``memstream`` processes, real HTTP on loopback, real files.

Nothing here is mocked. A :class:`Server` is ``python -m memstream serve`` in a subprocess
on a free port (``--port 0``; the URL comes from the ``server.json`` it writes once it
listens); the ``cli`` fixture runs ``python -m memstream ...`` and returns its exit code,
stdout and stderr. Subprocesses run in a scratch directory with every ``MEMSTREAM_*``
variable removed, so a developer's environment cannot leak into a test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from memstream.sdk import MemoryStore, new_id

MEMSTREAM = [sys.executable, "-m", "memstream"]
START_TIMEOUT = 60.0


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSTREAM_")}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb", PYTHONUNBUFFERED="1")
    # Servers here test the API, not search: no embedding model in their background
    # (tests/integration/test_search.py drives search through SDK, HTTP and CLI).
    # test_demo runs the README's first command with the defaults, search included.
    env.update(MEMSTREAM_SEMANTIC="0")
    env.update(extra)
    return env


def open_store(path: Path) -> MemoryStore:
    """Open a store in this process the way these tests read it: without search indexes."""
    return MemoryStore.open(path, semantic=False)


class Server:
    """``memstream serve`` on a free loopback port, for one store directory."""

    def __init__(self, store: Path, *extra: str, env: dict[str, str] | None = None):
        self.store = Path(store)
        self.extra = extra
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        #: the owner token of the run (server.json): the tests call as the store's owner
        self.token: str | None = None
        self.log_path = self.store.parent / f"{self.store.name}.server.log"
        self.out_path = self.store.parent / f"{self.store.name}.server.out"

    def start(self) -> Server:
        self.store.parent.mkdir(parents=True, exist_ok=True)
        info = self.store / "server.json"
        with contextlib.suppress(FileNotFoundError):
            info.unlink()
        self.proc = subprocess.Popen(
            [*MEMSTREAM, "serve", "--store", str(self.store), "--host", "127.0.0.1"]
            + ["--port", "0", "--json", *self.extra],
            stdout=self.out_path.open("wb"),
            stderr=self.log_path.open("wb"),
            env=subprocess_env(**self.env),
            cwd=self.store.parent,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"memstream serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                data = json.loads(info.read_text())
                if data.get("pid") == self.proc.pid:
                    self.url = data["url"]
                    self.token = data.get("token")
                    if httpx.get(self.url + "/ready", timeout=5,
                                 headers=self.headers).status_code == 200:  # fmt: skip
                        return self
            except (OSError, ValueError, httpx.HTTPError):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"memstream serve did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of the owner token (none with authentication off)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, headers=self.headers)

    def ready(self) -> dict[str, Any]:
        return httpx.get(self.url + "/ready", timeout=30, headers=self.headers).json()

    @property
    def head(self) -> int:
        return int(self.ready()["head"])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the server and wait for it; its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"server did not stop within {timeout}s:\n{self.log()}"
                ) from None
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as e:
            raise AssertionError(
                f"stdout is not JSON ({e}):\n{self.stdout}\n{self.stderr}"
            ) from None

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


CliRunner = Callable[..., Result]


@pytest.fixture(scope="session")
def cli(tmp_path_factory: pytest.TempPathFactory) -> CliRunner:
    """Run ``python -m memstream ARGS``; ``input`` goes to stdin."""
    cwd = tmp_path_factory.mktemp("cwd")

    def run(
        *args: str, input: bytes | str | None = None, timeout: float = 120.0, **env: str
    ) -> Result:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            [*MEMSTREAM, *args],
            input=data,
            capture_output=True,
            timeout=timeout,
            env=subprocess_env(**env),
            cwd=cwd,
        )
        return Result(
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    return run


def make_event(
    type: str = "create",
    namespace: str = "user/alice",
    memory_id: str | None = None,
    payload: dict[str, Any] | None = None,
    actor: str = "e2e",
    **envelope: Any,
) -> dict[str, Any]:
    """A wire event (what any producer sends), valid unless the caller breaks it."""
    if payload is None:
        payload = {"text": f"note {new_id()}"} if type == "create" else {}
    return {
        "event_id": new_id(),
        "type": type,
        "schema_version": 1,
        "namespace": namespace,
        "memory_id": memory_id or f"m-{new_id()}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "actor": actor,
        "payload": payload,
        **envelope,
    }


@pytest.fixture(scope="session")
def event() -> Callable[..., dict[str, Any]]:
    return make_event


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers for this test; every one still running at the end is killed."""
    started: list[Server] = []

    def start(store: Path | None = None, *extra: str, env: dict[str, str] | None = None) -> Server:
        s = Server(store or tmp_path / f"store{len(started)}", *extra, env=env)
        started.append(s)
        return s.start()

    yield start
    for s in started:
        s.kill()


def module_server(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Iterator[Server]:
    """A server shared by a module's tests; stopped cleanly (and checked) at the end."""
    s = Server(tmp_path_factory.mktemp("shared") / "store", *extra).start()
    try:
        yield s
        assert s.stop() == 0, s.log()
    finally:
        s.kill()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with default limits, shared by the module."""
    yield from module_server(tmp_path_factory)


@pytest.fixture(scope="module")
def strict_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with small limits: 2 KiB payloads, 64 KiB bodies."""
    yield from module_server(
        tmp_path_factory, "--max-event-bytes", "2048", "--max-body-bytes", "65536"
    )


def post_events(client: httpx.Client, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/events", content=content, headers={"content-type": "application/json"})


@pytest.fixture(scope="session")
def post() -> Callable[[httpx.Client, Any], httpx.Response]:
    return post_events
