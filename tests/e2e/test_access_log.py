"""The access log as a user reaches it: ``memstream access-log`` (and ``export``) against a
store directory and through a running server, and the HTTP client's ``access_log`` and
``export_access_log``. Real processes, real files."""

from __future__ import annotations

import csv
import io
import json

import pytest

from memstream.client import HttpMemoryStore
from memstream.errors import Forbidden

from .conftest import open_store


def _seed(path) -> str:
    with open_store(path) as s:
        memory_id = s.create("user/alice", "Alice drinks green tea").memory_id
        s.flush()
    return memory_id


@pytest.mark.slow  # seven CLI processes
def test_the_cli_lists_and_exports_the_access_log_of_a_directory(cli, tmp_path) -> None:
    store = tmp_path / "store"
    memory_id = _seed(store)
    assert cli("get", memory_id, "--store", str(store), "--json").code == 0
    r = cli("access-log", "--store", str(store), "--json")
    assert r.code == 0, r.stderr
    (record,) = r.json()["records"]
    assert (record["principal"], record["action"]) == ("cli", "get")
    assert (record["objects"], record["namespaces"]) == ([memory_id], ["user/alice"])
    r = cli("access-log", "--store", str(store), "--memory", memory_id)
    assert r.code == 0 and memory_id in r.stdout and "get" in r.stdout, r.stdout
    out = tmp_path / "access.csv"
    r = cli("access-log", "export", "--format", "csv", "--out", str(out), "--store", str(store))
    assert r.code == 0, r.stderr
    assert "exported 3 access records" in r.stderr
    rows = list(csv.DictReader(out.open(newline="")))
    assert [row["action"] for row in rows] == ["get", "access_log", "access_log"]
    r = cli("access-log", "export", "--action", "get", "--store", str(store))  # to stdout
    assert r.code == 0 and [x["objects"] for x in r.lines()] == [[memory_id]]
    # bad input: exit 2, one line naming the option
    for args, phrase in (
        (["access-log", "--since", "yesterday"], "--since"),
        (["access-log", "export", "--format", "xml"], "--format"),
        (["access-log", "export", "--out", str(tmp_path)], "is a directory"),
    ):
        r = cli(*args, "--store", str(store))
        assert r.code == 2 and phrase in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_through_a_server_and_its_http_client(cli, server_factory, tmp_path) -> None:
    store = tmp_path / "store"
    memory_id = _seed(store)
    server = server_factory(store)
    with HttpMemoryStore.connect(server.url, token=server.token) as owner:
        owner.add_principal("reader")
        owner.grant("reader", ["read"], "user/alice")
        _, token = owner.issue_token("reader")
    with HttpMemoryStore.connect(server.url, token=token) as reader:
        assert reader.get(memory_id) is not None
        reader.list_memories("user/alice")
        with pytest.raises(Forbidden):  # reading the access log takes an audit grant
            reader.access_log()
        with pytest.raises(Forbidden):
            reader.export_access_log(tmp_path / "nope.jsonl")
    assert not (tmp_path / "nope.jsonl").exists()
    # the owner audits: the reader's reads, by the principal its token names
    with HttpMemoryStore.connect(server.url, token=server.token, actor="auditor") as owner:
        page = owner.access_log(principal="reader")
        assert [(r.action, r.objects) for r in page.records] == [
            ("get", [memory_id]), ("list", [memory_id]), ("denied", []), ("denied", []),
        ]  # fmt: skip
        assert {r.detail["missing"] for r in page.records[2:]} == {"audit on *"}
        out = tmp_path / "export.jsonl"
        assert owner.export_access_log(out, principal="reader") == 4
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [x["action"] for x in lines] == ["get", "list", "denied", "denied"]
        buf = io.StringIO()
        assert owner.export_access_log(buf, format="csv", action="list") == 1
        assert list(csv.DictReader(io.StringIO(buf.getvalue())))[0]["principal"] == "reader"
    # the CLI goes through the server that holds the store
    r = cli("access-log", "--store", str(store), "--principal", "reader", "--json")
    assert r.code == 0, r.stderr
    assert [x["action"] for x in r.json()["records"]] == ["get", "list", "denied", "denied"]
    assert server.stop() == 0, server.log()
    # what the server recorded was written when it stopped
    with open_store(store) as s:
        records = s.access_log(limit=1000).records
    assert [r.action for r in records if r.principal == "reader"] == [
        "get", "list", "denied", "denied"
    ]  # fmt: skip
    assert [r.action for r in records if r.principal == "auditor"] == [
        "access_log", "access_log_export", "access_log_export",
    ]  # fmt: skip
