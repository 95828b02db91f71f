"""A deployment on one machine: workers as real processes against one broker.

The integration tests and the Kafka benchmark both drive the runtime this way, as an
operator would: ``memstream worker`` processes with their own data directories, observed
through their HTTP status. Each :class:`LocalDeployment` has its own topic prefix and
consumer group, so deployments on the same broker never see each other.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .broker import free_port
from .settings import KafkaSettings


@dataclass
class WorkerProcess:
    name: str
    url: str
    data: Path
    process: subprocess.Popen[bytes]
    log: Path
    #: the credential the deployment's own calls carry (its cluster token; None: no auth)
    token: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def status(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/v1/status", headers=self.headers, timeout=5).json()

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class LocalDeployment:
    bootstrap: str
    root: Path
    partitions: int = 4
    session_timeout: float = 6.0
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    workers: list[WorkerProcess] = field(default_factory=list)
    #: whether the workers require bearer tokens (they then share a fresh cluster token,
    #: given to each through its environment); off: started with authentication off
    auth: bool = False
    cluster_token: str | None = None

    def __post_init__(self) -> None:
        if self.auth and self.cluster_token is None:
            self.cluster_token = secrets.token_urlsafe(32)

    @property
    def settings(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap=self.bootstrap,
            prefix=self.prefix,
            partitions=self.partitions,
            group=f"{self.prefix}-workers",
            session_timeout=self.session_timeout,
            outcome_timeout=60.0,
        )

    def env(self, **extra: str) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "MEMSTREAM_KAFKA_BOOTSTRAP": s.bootstrap,
            "MEMSTREAM_KAFKA_PREFIX": s.prefix,
            "MEMSTREAM_KAFKA_PARTITIONS": str(s.partitions),
            "MEMSTREAM_KAFKA_GROUP": s.group,
            "MEMSTREAM_KAFKA_SESSION_TIMEOUT": str(s.session_timeout),
            "MEMSTREAM_AUTH": "1" if self.auth else "0",
            "MEMSTREAM_CLUSTER_TOKEN": self.cluster_token or "",
            **extra,
        }

    def start_worker(self, name: str, **env: str) -> WorkerProcess:
        """Start ``memstream worker`` with data in ``root/name`` (reused if it exists)."""
        port = free_port()
        data = self.root / name
        log = self.root / f"{name}.log"
        self.root.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "memstream", "worker", "--data", str(data)]
                + ["--web-port", str(port), "--loglevel", "warning"],
                env=self.env(**env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        token = self.cluster_token if self.auth else None
        w = WorkerProcess(name, f"http://127.0.0.1:{port}", data, proc, log, token)
        self.workers.append(w)
        return w

    def serving(
        self, workers: list[WorkerProcess] | None = None, timeout: float = 90.0
    ) -> dict[int, WorkerProcess]:
        """Wait until ``workers`` (default: the live ones) own every partition between them,
        none catching up; returns partition → owner."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            ws = workers or [w for w in self.workers if w.alive()]
            try:
                owners: dict[int, WorkerProcess] = {}
                ready = True
                for w in ws:
                    if not w.alive():
                        raise RuntimeError(f"worker {w.name} exited: {w.log.read_text()[-3000:]}")
                    st = w.status()
                    last = st
                    ready &= st["started"]
                    for p, v in st["partitions"].items():
                        ready &= not v["catching_up"]
                        owners[int(p)] = w
                if ready and sorted(owners) == list(range(self.partitions)):
                    return owners
            except httpx.HTTPError as e:
                last = e
            time.sleep(0.2)
        logs = "\n".join(f"--- {w.name}\n{w.log.read_text()[-2000:]}" for w in self.workers)
        raise TimeoutError(f"workers not serving every partition in {timeout}s: {last}\n{logs}")

    def stop(self, w: WorkerProcess, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        w.process.send_signal(sig)
        return w.process.wait(timeout)

    def close(self) -> None:
        for w in self.workers:
            if w.alive():
                w.process.kill()
                w.process.wait()
