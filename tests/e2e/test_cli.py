"""The CLI as a user drives it, against a store directory and against a running server.

When a server holds the store (its lock is taken), the CLI must go through it over HTTP;
opening the store itself would fail (DuckDB allows one writer). The same scenario runs
in both modes, and every command's ``--json`` output is parsed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import make_event, open_store


def _scenario_events(tag: str) -> tuple[list[dict], list[dict], dict]:
    """JSON Lines for a file, an array for stdin, one object: with a merge and a rejection."""
    a = make_event(memory_id=f"pref-a-{tag}", payload={"text": "likes tea"})
    b = make_event(memory_id=f"pref-b-{tag}", payload={"text": "likes coffee"})
    revise = make_event("revise", memory_id=a["memory_id"], payload={"text": "likes green tea"})
    merge = make_event(
        "merge",
        memory_id=f"pref-ab-{tag}",
        payload={"sources": [a["memory_id"], b["memory_id"]], "text": "tea and coffee"},
    )
    rejected = make_event("restore", memory_id=merge["memory_id"])  # it is active: invalid
    return [a, b], [revise, merge], rejected


@pytest.fixture(params=["directory", "server"])
def mode(request, tmp_path, server_factory):
    """(store directory, server or None): the same commands, either way."""
    store = tmp_path / "store"
    if request.param == "directory":
        yield store, None
    else:
        server = server_factory(store)
        yield store, server
        if server.running:
            assert server.stop() == 0, server.log()


def test_every_command_with_json(mode, cli, tmp_path):
    store, server = mode
    s = str(store)
    tag = tmp_path.name[-6:].replace("_", "")
    first, second, rejected = _scenario_events(tag)

    # publish: JSON Lines from a file, an array from stdin, one object from stdin
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("\n".join(json.dumps(e) for e in first) + "\n")
    r = cli("publish", str(jsonl), "--store", s, "--json")
    assert r.code == 0, r.stderr
    assert [o["status"] for o in r.json()["outcomes"]] == ["accepted", "accepted"]
    r = cli("publish", "-", "--store", s, "--json", input=json.dumps(second))
    assert r.code == 0, r.stderr
    merge_offset = r.json()["outcomes"][-1]["offset"]
    r = cli("publish", "--store", s, "--json", input=json.dumps(rejected))
    assert r.code == 1
    assert r.json()["outcomes"][0]["code"] == "invalid_transition"
    head = r.json()["outcomes"][0]["offset"]
    if server is not None:
        assert server.head == head  # the server appended them: the CLI went through it

    a, merged = first[0]["memory_id"], second[1]["memory_id"]
    r = cli("get", a, "--store", s, "--json", "--min-offset", str(head))
    assert r.code == 0, r.stderr
    got = r.json()
    assert (got["text"], got["version"], got["state"]) == ("likes green tea", 2, "merged")
    r = cli("get", a, "--as-of", str(head - 4), "--store", s, "--json")
    assert r.code == 0 and (r.json()["version"], r.json()["text"]) == (1, "likes tea")

    r = cli("history", merged, "--store", s, "--json")
    chain = [(v["memory_id"], v["version"], v["op"]) for v in r.json()]
    assert chain == [
        (a, 1, "create"),
        (first[1]["memory_id"], 1, "create"),
        (a, 2, "revise"),
        (merged, 1, "merge"),
    ]

    r = cli("audit", "--store", s, "--json", "--all", "--limit", "2")
    assert [e["offset"] for e in r.json()["entries"]] == list(range(head - 4, head + 1))
    r = cli("audit", "--store", s, "--json", "--status", "rejected")
    assert [(e["memory_id"], e["code"]) for e in r.json()["entries"]] == [
        (merged, "invalid_transition")
    ]

    if server is None:  # the human-readable forms (the same code paths in both modes)
        r = cli("get", a, "--version", "1", "--store", s, "--json")
        assert r.json()["text"] == "likes tea"
        r = cli("get", merged, "--store", s)
        assert r.code == 0 and "tea and coffee" in r.stdout and f"{a} v2" in r.stdout
        r = cli("history", merged, "--no-parents", "--store", s)
        assert "merge" in r.stdout and "revise" not in r.stdout
        r = cli("audit", "--store", s, "--limit", "2")
        assert "invalid_transition" not in r.stdout and f"--after {head - 3}" in r.stdout
        assert "OK" in cli("audit", "verify", "--store", s).stdout

    r = cli("audit", "verify", "--store", s, "--json")
    assert r.code == 0 and r.json() == {"ok": True, "offset": None, "reason": None, "head": head}

    backup = tmp_path / "backup"
    r = cli("backup", str(backup), "--store", s, "--json")
    assert r.code == 0, r.stderr
    assert r.json() == {"dest": str(backup), "records": head + 1, "head": head}

    replayed = tmp_path / "replay"
    r = cli(
        "replay", "--to", str(merge_offset - 1), "--into", str(replayed), "--store", s, "--json"
    )
    assert r.code == 0, r.stderr
    assert r.json()["head"] == merge_offset - 1
    r = cli("get", a, "--store", str(replayed), "--json")
    assert r.json()["version"] == 2 and r.json()["state"] == "active"  # the merge came later

    if server is not None:
        assert server.running, "the server must have served every command"
        assert server.stop() == 0, server.log()
    with open_store(backup) as restored:
        assert restored.head == head
        assert restored.get(merged).text == "tea and coffee"


def test_commands_against_an_explicit_url(api, cli, tmp_path):
    e = make_event()
    r = cli("publish", "--url", api.url, "--json", input=json.dumps(e))
    assert r.code == 0
    offset = r.json()["outcomes"][0]["offset"]
    r = cli("get", e["memory_id"], "--url", api.url, "--min-offset", str(offset), "--json")
    assert r.json()["memory_id"] == e["memory_id"]
    r = cli("replay", "--into", str(tmp_path / "r"), "--url", api.url, "--json")
    assert r.code == 0 and r.json()["head"] >= offset


def test_missing_store_unknown_memory_and_bad_options(cli, tmp_path):
    r = cli("get", "x", "--store", str(tmp_path / "nowhere"), "--json")
    assert r.code == 2 and r.json()["error"] == "no_store" and "no memstream store" in r.stderr
    store = tmp_path / "s"
    assert cli("publish", "--store", str(store), input=json.dumps(make_event())).code == 0
    r = cli("get", "ghost", "--store", str(store), "--json")
    assert r.code == 1 and r.json()["error"] == "not_found" and "ghost" in r.stderr
    r = cli("get", "ghost", "--as-of", "2026-01-01T00:00:00", "--store", str(store))
    assert r.code == 2 and "timezone" in r.stderr
    r = cli("publish", str(tmp_path / "missing.jsonl"), "--store", str(store))
    assert r.code == 2 and "no such file" in r.stderr
    r = cli("backup", str(tmp_path), "--store", str(store))
    assert r.code == 2 and "not empty" in r.stderr


def test_unreachable_url_is_a_clear_error(cli):
    r = cli("get", "x", "--url", "http://127.0.0.1:9", "--json")
    assert r.code == 3 and "cannot reach the memstream server at http://127.0.0.1:9" in r.stderr


def test_the_cli_does_not_import_torch():
    code = (
        "import sys, memstream.cli, memstream.client, memstream.demo\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


def test_version_and_help(cli):
    assert cli("--version").stdout.startswith("memstream ")
    r = cli("--help")
    assert r.code == 0
    for command in ("serve", "publish", "get", "history", "audit", "replay", "backup", "demo"):
        assert command in r.stdout


def test_bench_validates_its_suites_before_running(cli, tmp_path):
    # A real benchmark run takes minutes (ops/bench and the bench suites' own tests run
    # it); this checks the command is wired to memstream.bench and refuses bad input.
    r = cli("bench", "--suite", "warp", "--out", str(tmp_path / "b"), "--json")
    assert r.code == 2
    assert "unknown suite(s) warp" in r.stderr and "ingest" in r.stderr
    assert not (tmp_path / "b").exists()


def test_erase_a_memory_or_a_subject(mode, cli):
    store, server = mode
    s = str(store)
    ns = "user/gina"
    mems = [make_event(namespace=ns, payload={"text": f"Gina fact {i}"}) for i in range(3)]
    r = cli("publish", "--store", s, "--json", input=json.dumps(mems))
    assert r.code == 0, r.stderr
    ids = [m["memory_id"] for m in mems]

    r = cli("erase", ids[0], "--reason", "wrong", "--store", s, "--json")
    assert r.code == 0, r.stderr
    body = r.json()
    assert body["scope"] == "memory" and body["erased"] == [ids[0]]
    head = body["outcome"]["offset"]
    r = cli("get", ids[0], "--store", s, "--json", "--min-offset", str(head))
    assert r.json()["state"] == "erased" and r.json()["text"] is None
    r = cli("get", ids[1], "--store", s, "--json")
    assert r.json()["text"] == "Gina fact 1"
    r = cli("audit", "--store", s, "--json", "--type", "erase", "--min-offset", str(head))
    assert [(e["scope"], e["erased"]) for e in r.json()["entries"]] == [("memory", [ids[0]])]

    r = cli("erase", ids[0], "--store", s, "--json")  # erased already: refused
    assert r.code == 1 and r.json()["outcome"]["code"] == "erased"
    r = cli("erase", ids[0], "--subject", ns, "--store", s)  # both: bad input
    assert r.code == 2 and "not both" in r.stderr
    assert cli("erase", "--store", s).code == 2  # neither

    r = cli("erase", "--subject", ns, "--store", s)
    assert r.code == 0, r.stderr
    assert f"erased subject {ns} (scope subject): 2 memories" in " ".join(r.stdout.split())
    for mid in ids[1:]:
        r = cli("get", mid, "--store", s, "--json", "--min-offset", str(head + 1))
        assert r.json()["state"] == "erased" and r.json()["text"] is None
    r = cli("erase", "--subject", "user/nobody", "--store", s, "--json")
    assert r.code == 1 and r.json()["outcome"]["code"] == "unknown_subject"
    if server is not None:
        assert server.running and server.stop() == 0, server.log()
