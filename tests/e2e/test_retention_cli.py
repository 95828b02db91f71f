"""``memstream retention run`` against a store directory, and ``memstream serve`` expiring
memories by itself (its retention scheduler is on by default)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from .conftest import make_event, open_store

PAST = "2020-01-01T00:00:00Z"


def test_retention_run_on_a_store_directory(tmp_path, cli):
    store = tmp_path / "store"
    with open_store(store) as s:
        s.create("user/kim", "expired already", memory_id="old", expires_at=PAST, retention_days=1)
        s.create("user/kim", "for a year", memory_id="year", ttl_seconds=365 * 86_400)
    r = cli("retention", "run", "--store", str(store), "--dry-run", "--json")
    assert r.code == 0, r.stderr
    body = r.json()
    assert body["dry_run"] is True
    assert [(d["memory_id"], d["rule"], d["status"]) for d in body["due"]] == [
        ("old", "expiry time", None)
    ]
    r = cli("retention", "run", "--store", str(store), "--json")
    assert r.code == 0, r.stderr
    assert [(d["memory_id"], d["status"]) for d in r.json()["due"]] == [("old", "accepted")]
    # as if it were 400 days later: the erase of "old", the ttl of "year"
    later = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    r = cli("retention", "run", "--store", str(store), "--now", later)
    assert r.code == 0, r.stderr
    assert "retention 1 day after expiry" in r.stdout and "ttl" in r.stdout
    assert "2 accepted, 0 rejected" in r.stdout
    r = cli("audit", "--store", str(store), "--json")
    by_scheduler = [e for e in r.json()["entries"] if e["actor"] == "memstream:scheduler"]
    assert [(e["memory_id"], e["type"]) for e in by_scheduler] == [
        ("old", "expire"), ("old", "erase"), ("year", "expire"),
    ]  # fmt: skip
    r = cli("retention", "run", "--store", str(store), "--now", "2031-01-01T00:00:00")
    assert r.code == 2 and "--now" in r.stderr and "timezone" in r.stderr


def test_serve_expires_in_the_background_and_the_cli_goes_through_it(tmp_path, cli, server_factory):
    store = tmp_path / "store"
    server = server_factory(store, env={"MEMSTREAM_RETENTION_INTERVAL": "0.2"})
    event = make_event(
        namespace="user/kim", memory_id="gone",
        payload={"text": "a passing fact", "expires_at": PAST, "retention_days": 2},
    )  # fmt: skip
    with server.client() as http:
        r = http.post("/v1/events", json=event)
        assert r.status_code == 200, r.text
        created = r.json()["outcomes"][0]["offset"]  # after the first rules (its admin)
        deadline = time.monotonic() + 30
        while True:  # no request asks for it: the server's own pass expires it
            m = http.get("/v1/memories/gone", params={"min_offset": created}).json()
            if m["state"] == "expired":
                break
            assert time.monotonic() < deadline, m
            time.sleep(0.1)
        assert m["expires_at"] == "2020-01-01T00:00:00Z"
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    r = cli("retention", "run", "--store", str(store), "--now", later, "--json")
    assert r.code == 0, r.stderr
    (due,) = r.json()["due"]
    assert (due["operation"], due["rule"], due["status"]) == (
        "erase", "retention 2 days after expiry", "accepted",
    )  # fmt: skip
    with server.client() as http:
        m = http.get("/v1/memories/gone", params={"min_offset": due["offset"]}).json()
    assert m["state"] == "erased" and m["text"] is None
    assert server.stop() == 0, server.log()


def test_add_takes_a_ttl_an_expiry_time_and_retention(tmp_path, cli):
    store = str(tmp_path / "store")
    r = cli("add", "user/kim", "parking spot 12", "--ttl", "3600", "--expires",
            "2031-01-01T00:00:00Z", "--retention-days", "7", "--store", store, "--json")  # fmt: skip
    assert r.code == 0, r.stderr
    r = cli("get", r.json()["memory_id"], "--store", store, "--json")
    got = r.json()
    assert (got["ttl_seconds"], got["retention_days"], got["expires_at"]) == (
        3600, 7, "2031-01-01T00:00:00Z"
    )  # fmt: skip
    r = cli("add", "user/kim", "x", "--expires", "tomorrow", "--store", store)
    assert r.code == 2 and "--expires" in r.stderr
