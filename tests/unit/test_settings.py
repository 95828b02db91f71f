"""Settings are declared once, read from MEMSTREAM_* variables, and a bad value fails
with a message naming the variable and the type it expects."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from memstream.streams.embedded import Options
from memstream.streams.kafka.settings import KafkaSettings
from memstream.streams.settings import SettingsError, StoreSettings, env_var
from typer.testing import CliRunner

from memstream import MemoryStore, new_id
from memstream.cli import app
from memstream.settings import (
    BenchSettings,
    CliSettings,
    SearchSettings,
    ServeSettings,
    WorkerSettings,
    semantic_default,
)

#: The variables the code, the docs, docker-compose and the tests already used.
KNOWN = {
    "MEMSTREAM_STORE": (CliSettings, "store"),
    "MEMSTREAM_URL": (CliSettings, "url"),
    "MEMSTREAM_PORT": (ServeSettings, "port"),
    "MEMSTREAM_MAX_BODY_BYTES": (ServeSettings, "max_body_bytes"),
    "MEMSTREAM_MAX_EVENT_BYTES": (StoreSettings, "max_event_bytes"),
    "MEMSTREAM_SEMANTIC": (SearchSettings, "semantic"),
    "MEMSTREAM_WEB_HOST": (WorkerSettings, "web_host"),
    "MEMSTREAM_WEB_PORT": (WorkerSettings, "web_port"),
    "MEMSTREAM_WEB_ADVERTISE": (WorkerSettings, "web_advertise"),
    "MEMSTREAM_API": (WorkerSettings, "api"),
    "MEMSTREAM_BENCH_CACHE": (BenchSettings, "cache"),
    "MEMSTREAM_BENCH_LABELLED": (BenchSettings, "labelled"),
    "MEMSTREAM_KAFKA_BOOTSTRAP": (KafkaSettings, "bootstrap"),
    "MEMSTREAM_KAFKA_PREFIX": (KafkaSettings, "prefix"),
    "MEMSTREAM_KAFKA_PARTITIONS": (KafkaSettings, "partitions"),
    "MEMSTREAM_KAFKA_REPLICATION": (KafkaSettings, "replication"),
    "MEMSTREAM_KAFKA_GROUP": (KafkaSettings, "group"),
    "MEMSTREAM_KAFKA_SESSION_TIMEOUT": (KafkaSettings, "session_timeout"),
    "MEMSTREAM_KAFKA_SEND_TIMEOUT": (KafkaSettings, "send_timeout"),
    "MEMSTREAM_KAFKA_OUTCOME_TIMEOUT": (KafkaSettings, "outcome_timeout"),
    "MEMSTREAM_KAFKA_DATA_DIR": (KafkaSettings, "data_dir"),
}


def test_the_existing_variable_names_still_set_their_settings() -> None:
    for var, (model, field) in KNOWN.items():
        assert env_var(model, field) == var


def test_the_store_options_are_the_store_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Options is StoreSettings
    monkeypatch.setenv("MEMSTREAM_BATCH_SIZE", "500")
    monkeypatch.setenv("MEMSTREAM_READ_WAIT", "2.5")
    o = Options(max_event_bytes=4096)
    assert (o.batch_size, o.read_wait, o.max_event_bytes) == (500, 2.5, 4096)
    monkeypatch.setenv("MEMSTREAM_BATCH_SIZE", "")  # empty: unset
    assert Options().batch_size == StoreSettings.model_fields["batch_size"].default


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("MEMSTREAM_BATCH_SIZE", "abc", "MEMSTREAM_BATCH_SIZE='abc' is not a valid int"),
        ("MEMSTREAM_BATCH_SIZE", "-5", "MEMSTREAM_BATCH_SIZE='-5' is not a valid int"),
        ("MEMSTREAM_READ_WAIT", "soon", "MEMSTREAM_READ_WAIT='soon' is not a valid float"),
        ("MEMSTREAM_MAX_EVENT_BYTES", "0", "MEMSTREAM_MAX_EVENT_BYTES='0' is not a valid int"),
        (
            "MEMSTREAM_DURABILITY",
            "sometimes",
            r"MEMSTREAM_DURABILITY='sometimes' is not a valid choice \('fsync' or 'os'\)",
        ),
    ],
)
def test_an_invalid_store_setting_names_its_variable_and_type(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, var: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=expected):
        StoreSettings()
    with pytest.raises(ValueError, match=expected):
        MemoryStore.open(tmp_path / "store", semantic=False)


def test_an_invalid_argument_is_named_too() -> None:
    with pytest.raises(SettingsError, match="batch_size=0 is not a valid int"):
        Options(batch_size=0)


def test_the_other_layers_settings_fail_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSTREAM_SEMANTIC", "perhaps")
    with pytest.raises(SettingsError, match="MEMSTREAM_SEMANTIC='perhaps' is not a valid bool"):
        semantic_default()
    monkeypatch.setenv("MEMSTREAM_SEMANTIC", "off")
    assert semantic_default() is False
    monkeypatch.setenv("MEMSTREAM_KAFKA_SEND_TIMEOUT", "-1")
    with pytest.raises(
        SettingsError, match="MEMSTREAM_KAFKA_SEND_TIMEOUT='-1' is not a valid float"
    ):
        KafkaSettings.from_env()


def _flat(output: str) -> str:
    """Click's error box, as one line of text."""
    return re.sub(r"[\s│╭╮╰╯─]+", " ", output)


def test_the_cli_reports_a_bad_setting_as_bad_input(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("MEMSTREAM_BATCH_SIZE", "abc")
    event = json.dumps(
        {
            "event_id": new_id(),
            "type": "create",
            "schema_version": 1,
            "namespace": "user/alice",
            "memory_id": f"m-{new_id()}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "actor": "test",
            "payload": {"text": "Alice drinks green tea"},
        }
    )
    r = runner.invoke(app, ["publish", "--store", str(tmp_path / "s")], input=event)
    assert r.exit_code == 2, r.output
    assert "MEMSTREAM_BATCH_SIZE='abc' is not a valid int" in r.output
    monkeypatch.delenv("MEMSTREAM_BATCH_SIZE")
    # A variable behind an option: the option names it, and its type.
    monkeypatch.setenv("MEMSTREAM_PORT", "http")
    r = runner.invoke(app, ["serve", "--store", str(tmp_path / "s")])
    assert r.exit_code == 2
    assert "MEMSTREAM_PORT" in _flat(r.output) and "valid integer" in _flat(r.output)
    monkeypatch.setenv("MEMSTREAM_PORT", "70000")
    r = runner.invoke(app, ["serve", "--store", str(tmp_path / "s")])
    assert r.exit_code == 2 and "MEMSTREAM_PORT" in _flat(r.output) and "65535" in _flat(r.output)


def test_cli_options_take_their_defaults_from_the_declarations() -> None:
    import typer.main

    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    params = {p.name: p for p in serve.params}
    assert params["port"].default == ServeSettings.model_fields["port"].default
    assert params["port"].envvar == "MEMSTREAM_PORT"
    assert params["store"].default == CliSettings.model_fields["store"].default
    assert params["max_event_bytes"].envvar == "MEMSTREAM_MAX_EVENT_BYTES"
