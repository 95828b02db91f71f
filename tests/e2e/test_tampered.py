"""A tampered store as an operator meets it from the command line and over HTTP: a clear
error naming the offset and what to run (no traceback), ``audit verify`` naming the break,
and ``--read-only`` to inspect it."""

from __future__ import annotations

import sqlite3

from .conftest import make_event, open_store


def _tampered(tmp_path):
    store = tmp_path / "store"
    with open_store(store) as s:
        ids = [s.create("user/alice", f"memory {i}").memory_id for i in range(8)]
    db = sqlite3.connect(store / "log.sqlite")
    (data,) = db.execute('SELECT data FROM records WHERE "offset" = 5').fetchone()
    data = bytearray(data)
    data[len(data) // 2] ^= 0x01
    db.execute('UPDATE records SET data = ? WHERE "offset" = 5', (bytes(data),))
    db.commit()
    db.close()
    return store, ids


def test_the_cli_refuses_a_tampered_store_with_a_clear_error(cli, tmp_path):
    store, ids = _tampered(tmp_path)
    r = cli("get", ids[0], "--store", str(store))
    assert r.code == 1, r
    assert "Traceback" not in r.stderr
    assert "offset 5" in r.stderr and "memstream audit verify --store" in r.stderr
    assert "--read-only" in r.stderr
    r = cli("get", ids[0], "--store", str(store), "--json")
    assert r.code == 1 and r.json()["error"] == "log_tampered" and r.json()["offset"] == 5

    r = cli("audit", "verify", "--store", str(store), "--json")
    assert r.code == 1 and r.json()["offset"] == 5, r
    assert "Traceback" not in r.stderr

    r = cli("audit", "--store", str(store), "--read-only", "--json")
    assert r.code == 0, r
    assert len(r.json()["entries"]) == 8
    assert "offset 5" in r.stderr  # the warning
    r = cli("get", ids[0], "--store", str(store), "--read-only", "--json")
    assert r.code == 0 and r.json()["text"] == "memory 0", r

    r = cli("publish", "--store", str(store), input=__import__("json").dumps(make_event()))
    assert r.code == 1 and "offset 5" in r.stderr and "Traceback" not in r.stderr


def test_serve_refuses_a_tampered_store_and_serves_it_read_only(cli, tmp_path, server_factory):
    store, ids = _tampered(tmp_path)
    r = cli("serve", "--store", str(store), "--port", "0", timeout=60)
    assert r.code == 1 and "offset 5" in r.stderr and "Traceback" not in r.stderr, r
    server = server_factory(store, "--read-only")
    ready = server.ready()
    assert ready["read_only"] is True and ready["log_broken_at"] == 5
    with server.client() as c:
        assert c.get(f"/v1/memories/{ids[0]}").json()["text"] == "memory 0"
        refused = c.post("/v1/events", json=make_event())
        assert refused.status_code == 409 and refused.json()["error"] == "read_only"
    with server.client() as c:
        assert c.post("/v1/audit/verify").json()["offset"] == 5
