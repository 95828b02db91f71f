"""docker-compose.yml agrees with the code: its commands and settings are real ones.

No Docker engine runs here; CI validates the file's syntax with ``docker-compose config``
(see .ci/run). These tests check what that cannot: every command the services run is a
``memstream`` command, every ``MEMSTREAM_*`` variable they set is one the code reads, and
each worker keeps its shards on its own volume.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from memstream.cli import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _services() -> dict[str, dict]:
    return COMPOSE["services"]


def _read_env_names() -> set[str]:
    """Every MEMSTREAM_* name the package reads: the declared settings' variables, and
    the names its code spells out (test hooks such as the worker's fault injection)."""
    import memstream.streams.kafka.settings  # noqa: F401
    from memstream.streams.settings import Settings, env_var

    import memstream.settings  # noqa: F401 (declares the faces' settings)

    names: set[str] = set()
    models = [Settings]
    while models:
        model = models.pop()
        models.extend(model.__subclasses__())
        names |= {env_var(model, field) for field in model.model_fields}
    for folder in ("memstream", "streams", "projections", "schemas"):
        for p in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"MEMSTREAM_[A-Z_]+", p.read_text()))
    return names


def test_every_service_runs_a_real_memstream_command() -> None:
    runner = CliRunner()
    for name, svc in _services().items():
        if "command" not in svc or name == "kafka":
            continue
        res = runner.invoke(app, [*svc["command"], "--help"])
        assert res.exit_code == 0, (
            f"service {name}: `memstream {' '.join(svc['command'])}`: {res.output}"
        )


def test_every_memstream_variable_is_read_by_the_code() -> None:
    known = _read_env_names()
    for name, svc in _services().items():
        for var in svc.get("environment", {}) or {}:
            if var.startswith("MEMSTREAM_"):
                assert var in known, f"service {name} sets {var}, which nothing reads"


def test_workers_keep_their_shards_on_their_own_volumes_and_publish_the_api() -> None:
    workers = {n: s for n, s in _services().items() if n.startswith("worker")}
    assert len(workers) >= 2
    volumes = [v for s in workers.values() for v in s["volumes"]]
    assert len(set(volumes)) == len(volumes), "two workers share a data volume"
    assert all(s["environment"]["MEMSTREAM_KAFKA_DATA_DIR"] == "/data" for s in workers.values())
    assert all(s["environment"]["MEMSTREAM_WEB_ADVERTISE"] == n for n, s in workers.items())
    assert all(
        s["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        for s in workers.values()
    )
    assert all("healthcheck" in s for s in workers.values())


def test_the_broker_is_kraft_and_creates_no_topic_by_itself() -> None:
    env = _services()["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "healthcheck" in _services()["kafka"]


def test_kafka_settings_come_from_the_environment_then_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from memstream.streams.kafka.settings import KafkaSettings

    monkeypatch.setenv("MEMSTREAM_KAFKA_PARTITIONS", "3")
    monkeypatch.setenv("MEMSTREAM_KAFKA_SEND_TIMEOUT", "2.5")
    monkeypatch.setenv("MEMSTREAM_KAFKA_DATA_DIR", "/srv/shards")
    s = KafkaSettings.from_env(bootstrap="broker:9092", group=None)
    assert s.partitions == 3 and s.send_timeout == 2.5 and str(s.data_dir) == "/srv/shards"
    assert s.bootstrap == "broker:9092" and s.group == KafkaSettings().group
    monkeypatch.setenv("MEMSTREAM_KAFKA_PARTITIONS", "many")
    with pytest.raises(ValueError, match="MEMSTREAM_KAFKA_PARTITIONS='many' is not a valid int"):
        KafkaSettings.from_env()
