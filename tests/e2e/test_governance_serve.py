"""``memstream serve`` and governance: the first admin's token printed once, tokens over
real HTTP, the CLI as the store's owner and as a principal, and authentication off only on
request (and logged)."""

from __future__ import annotations

import re

import httpx

from memstream.client import HttpMemoryStore
from memstream.errors import Forbidden

TOKEN = re.compile(r"mst_tok-[0-9a-f]+_[A-Za-z0-9_-]+")


def test_a_fresh_store_prints_its_admin_token_once(server_factory, tmp_path, cli) -> None:
    server = server_factory(tmp_path / "s")
    printed = TOKEN.findall(server.stdout())
    assert len(printed) == 1, server.stdout()
    admin = printed[0]
    assert admin not in (tmp_path / "s" / "server.json").read_text()
    with HttpMemoryStore.connect(server.url, token=admin) as ms:
        assert [p.name for p in ms.rules().principals] == ["admin"]
        ms.add_principal("alice")
        ms.grant("alice", "shared", "user/alice")
        _, alice_token = ms.issue_token("alice")
    with HttpMemoryStore.connect(server.url, token=alice_token, actor="mallory") as alice:
        o = alice.create("user/alice", "Alice likes tea")
        assert alice.get(o.memory_id, min_offset=o.offset).created_by == "alice"
        try:
            alice.create("user/bob", "x")
            raise AssertionError("alice wrote to user/bob")
        except Forbidden as e:
            assert e.missing == "write on user/bob"
    # the CLI reaches the server as the store's owner (its token is in server.json)
    r = cli("who-can", "write", "--namespace", "user/alice", "--store", str(tmp_path / "s"),
            "--json")  # fmt: skip
    assert r.code == 0, r.stderr
    assert r.json() == ["admin", "alice"]
    # and through --url as the principal whose token it is given
    r = cli("grant", "alice", "admin", "*", "--url", server.url, MEMSTREAM_TOKEN=alice_token)
    assert r.code != 0 and "admin on *" in r.stderr
    assert server.stop() == 0
    again = server_factory(tmp_path / "s")
    assert TOKEN.findall(again.stdout()) == []  # not a second time
    assert httpx.get(again.url + "/v1/rules", timeout=30).status_code == 401
    assert httpx.get(again.url + "/health", timeout=30).status_code == 200


def test_authentication_off_is_explicit_and_logged(server_factory, tmp_path) -> None:
    server = server_factory(tmp_path / "s", "--no-auth")
    assert "authentication is OFF" in server.log()
    assert TOKEN.findall(server.stdout()) == []
    r = httpx.post(server.url + "/v1/memories", json={"namespace": "user/a", "text": "x"},
                   headers={"X-Memstream-Principal": "anyone"}, timeout=30)  # fmt: skip
    assert r.status_code == 201
