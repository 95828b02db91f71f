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
    r = cli("publish", "--url", api.url, "--json", input=json.dumps(e), MEMSTREAM_TOKEN=api.token)
    assert r.code == 0
    offset = r.json()["outcomes"][0]["offset"]
    r = cli(
        "get",
        e["memory_id"],
        "--url",
        api.url,
        "--min-offset",
        str(offset),
        "--json",
        MEMSTREAM_TOKEN=api.token,
    )
    assert r.json()["memory_id"] == e["memory_id"]
    r = cli(
        "replay",
        "--into",
        str(tmp_path / "r"),
        "--url",
        api.url,
        "--json",
        MEMSTREAM_TOKEN=api.token,
    )
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
    body = r.json()  # the outcome, as POST /v1/memories/{id}/erase answers it
    assert body["type"] == "erase" and body["erased"] == [ids[0]]
    head = body["offset"]
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


# -- one-line writes, list, and --json as HTTP answers it ------------------------------------------


def test_add_list_revise_archive_restore_erase_in_one_line_each(mode, cli):
    store, server = mode
    s = str(store)
    r = cli("add", "user/hana", "Hana drinks green tea", "--tag", "drinks", "--meta",
            "source=chat", "--meta", "confidence=0.9", "--id", "hana-tea", "--store", s, "--json")  # fmt: skip
    assert r.code == 0, r.stderr
    o = r.json()
    assert (o["status"], o["type"], o["memory_id"], o["version"]) == (
        "accepted", "create", "hana-tea", 1,
    )  # fmt: skip
    assert o["recorded_at"].endswith("Z")  # RFC 3339, like every time
    r = cli("add", "user/hana", "Hana works at ACME", "--store", s)
    assert r.code == 0, r.stderr
    assert "added memory" in r.stdout and "user/hana" in r.stdout
    r = cli("revise", "hana-tea", "Hana drinks jasmine tea", "--reason", "corrected", "--store",
            s, "--json")  # fmt: skip
    assert r.code == 0 and r.json()["version"] == 2, r.stderr
    r = cli("get", "hana-tea", "--store", s, "--json", "--min-offset", str(r.json()["offset"]))
    got = r.json()
    assert (got["text"], got["tags"], got["metadata"]) == (
        "Hana drinks jasmine tea", ["drinks"], {"source": "chat", "confidence": 0.9},
    )  # fmt: skip
    r = cli("list", "user/hana", "--store", s, "--json")
    assert r.code == 0, r.stderr
    assert [m["text"] for m in r.json()["memories"]] == [
        "Hana drinks jasmine tea", "Hana works at ACME",
    ]  # fmt: skip
    r = cli("archive", "hana-tea", "--reason", "old", "--store", s, "--json")
    assert r.code == 0 and r.json()["state"] == "archived"
    r = cli("archive", "hana-tea", "--store", s, "--json")  # refused: HTTP's 409 body
    assert r.code == 1
    assert r.json()["error"] == "rejected" and r.json()["code"] == "invalid_transition"
    r = cli(
        "list",
        "user/hana",
        "--store",
        s,
        "--json",
        "--min-offset",
        str(r.json()["outcome"]["offset"]),
    )
    assert [m["memory_id"] for m in r.json()["memories"]] != ["hana-tea"]
    assert "hana-tea" not in [m["memory_id"] for m in r.json()["memories"]]
    r = cli("list", "user/hana", "--state", "archived", "--store", s)
    assert r.code == 0 and "hana-tea" in r.stdout and "archived" in r.stdout
    r = cli("restore", "hana-tea", "--store", s, "--json")
    assert r.code == 0 and r.json()["state"] == "active"
    r = cli("erase", "hana-tea", "--store", s, "--json")
    assert r.code == 0 and r.json()["erased"] == ["hana-tea"]
    for command in (["revise", "nobody", "x"], ["archive", "nobody"], ["history", "nobody"]):
        r = cli(*command, "--store", s, "--json")  # HTTP's 404 body; nothing appended
        assert r.code == 1 and r.json()["error"] == "not_found", (command, r.stderr)
    r = cli("add", "user/hana", "x", "--meta", "novalue", "--store", s)
    assert r.code == 2 and "KEY=VALUE" in r.stderr
    if server is not None:
        assert server.running and server.stop() == 0, server.log()


def test_json_prints_exactly_what_http_answers(api, cli):
    """`--json` of get, history, list, add and search is the HTTP body of the same call."""
    r = cli("add", "user/ines", "Ines reads crime novels", "--tag", "books", "--url", api.url,
            "--json", MEMSTREAM_TOKEN=api.token)  # fmt: skip
    assert r.code == 0, r.stderr
    added = r.json()
    mid, offset = added["memory_id"], added["offset"]
    with api.client() as c:
        direct = c.post("/v1/memories", json={"namespace": "user/ines", "text": "x"}).json()
        assert list(added) == list(direct)  # the same shape, field for field
        assert all(type(added[k]) is type(direct[k]) for k in added if added[k] is not None)
        at = {"min_offset": direct["offset"]}
        pairs = [
            (["get", mid], c.get(f"/v1/memories/{mid}", params=at)),
            (["get", mid, "--version", "1"], c.get(f"/v1/memories/{mid}", params={"version": 1})),
            (["history", mid], c.get(f"/v1/memories/{mid}/history")),
            (["list", "user/ines"], c.get("/v1/memories", params={"namespace": "user/ines"})),
            (["get", "nobody"], c.get("/v1/memories/nobody")),
            (["history", "nobody"], c.get("/v1/memories/nobody/history")),
        ]
        for args, http in pairs:
            r = cli(
                *args,
                "--url",
                api.url,
                "--json",
                "--min-offset",
                str(direct["offset"]),
                MEMSTREAM_TOKEN=api.token,
            )
            assert r.json() == http.json(), (args, r.stdout, http.text)
            assert r.stdout.strip() == http.text, args  # byte for byte
        # search: this server keeps no indexes, and says so the same way (the hits' body,
        # {"hits": [...]}, is compared in tests/integration/test_search.py)
        r = cli("search", "novels", "--url", api.url, "--json", MEMSTREAM_TOKEN=api.token)
        http = c.post("/v1/search", json={"query": "novels"})
        assert (r.code, http.status_code) == (3, 503)
        assert r.json() == http.json() and r.json()["error"] == "search_disabled"
    assert offset < direct["offset"]


def test_tables_keep_every_column_when_piped_to_a_narrow_width(tmp_path, cli):
    s = str(tmp_path / "store")
    r = cli("add", "user/jo", "Jo plays the cello on Sundays", "--tag", "music", "--id",
            "a-rather-long-memory-identifier-0001", "--store", s)  # fmt: skip
    assert r.code == 0, r.stderr
    cli("revise", "a-rather-long-memory-identifier-0001", "Jo plays the viola", "--store", s)
    for args, headers in (
        (["list", "user/jo"], ("memory", "namespace", "state", "tags", "updated", "text")),
        (["history", "a-rather-long-memory-identifier-0001"],
         ("memory", "op", "actor", "recorded at", "offset", "text")),
        (["audit"], ("offset", "recorded at", "actor", "operation", "memory", "outcome")),
    ):  # fmt: skip
        r = cli(*args, "--store", s, COLUMNS="40")  # stdout is a pipe, not a terminal
        assert r.code == 0, r.stderr
        lines = r.stdout.splitlines()
        header = next(line for line in lines if line.startswith("┃"))
        for name in headers:
            assert name in header, (args, name, r.stdout)
        # nothing wrapped: every value on one line, whole
        assert "a-rather-long-memory-identifier-0001" in r.stdout, r.stdout
        if args[0] != "audit":  # the audit shows no content
            assert any("Jo plays the viola" in line for line in lines), r.stdout


def test_a_narrow_terminal_shows_one_block_per_row() -> None:
    import io

    from memstream.schemas.views import Memory
    from rich.console import Console

    from memstream.cli import common
    from memstream.cli.render import memories_table

    now = "2026-01-01T00:00:00Z"
    m = msgspec_memory(Memory, now)
    buf = io.StringIO()
    narrow = Console(file=buf, width=30, force_terminal=True, color_system=None)
    saved = common.out
    common.out = narrow
    try:
        common.show(memories_table([m], "memories"))
    finally:
        common.out = saved
    text = buf.getvalue()
    for line in ("memory: m-1", "namespace: user/kim", "state: active", "text: Kim likes"):
        assert line in text, text


def msgspec_memory(cls, when: str):
    import msgspec

    return msgspec.convert(
        {
            "memory_id": "m-1", "namespace": "user/kim", "subject": "user/kim",
            "kind": "plaintext", "state": "active", "frozen": False, "version": 1,
            "revision": 1, "text": "Kim likes long walks by the river", "content_hash": None,
            "tags": ["walks"], "metadata": {}, "source": None, "owner": None,
            "visibility": "private", "priority": 0, "ttl_seconds": None,
            "retention_days": None, "parents": [], "created_at": when, "updated_at": when,
            "created_by": "t", "updated_by": "t", "offset": 0,
        },
        cls,
    )  # fmt: skip
