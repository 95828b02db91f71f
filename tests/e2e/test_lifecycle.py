"""The server's life: restart, shutdown under load, backup under load.

- What HTTP serves equals what the SDK reads from the same directory after the server is
  gone (one store, two ways in).
- SIGTERM while a client publishes: the server exits 0, removes server.json, and every
  event the client got a 200 for is in the log when the store is reopened.
- ``memstream backup`` while the server is under write load: the backup, opened as a
  store, answers get/history/audit exactly as a replay of the source up to the backup's
  head does.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import msgspec

from .conftest import Server, make_event, open_store


def _all_audit(read: Any, **kw: Any) -> list[Any]:
    entries, after = [], None
    while True:
        page = read(after=after, limit=1000, **kw)
        entries.extend(page.entries)
        after = page.next_after
        if after is None:
            return entries


def _same(a: Any, b: Any) -> bool:
    return msgspec.json.encode(a) == msgspec.json.encode(b)


def test_http_reads_equal_the_sdk_after_restart(server_factory, post, tmp_path):
    server = server_factory(tmp_path / "store")
    ids = [f"r-{i}" for i in range(6)]
    with server.client() as c:
        assert post(
            c, [make_event(memory_id=i, payload={"text": f"t {i}"}) for i in ids]
        ).is_success
        post(c, make_event("revise", memory_id=ids[0], payload={"text": "t 0 again"}))
        post(c, make_event("archive", memory_id=ids[1], payload={"reason": "old"}))
        post(c, make_event("archive", memory_id=ids[1]))  # rejected: already archived
        merge = make_event(
            "merge", memory_id="r-merged", payload={"sources": ids[2:4], "text": "fused"}
        )
        post(c, merge)
        post(c, make_event("rollback", memory_id=ids[0], payload={"to_version": 1}))
        head = server.head
        ids.append("r-merged")

        def memory(i: str, **params: Any) -> bytes:
            r = c.get(f"/v1/memories/{i}", params=params)
            return b"null" if r.status_code == 404 else r.content  # the SDK's None

        over_http = {
            i: (
                memory(i, min_offset=head),
                c.get(f"/v1/memories/{i}/history").content,
                memory(i, as_of=head - 3),
            )
            for i in ids
        }
        audit_http = c.get("/v1/audit", params={"limit": 1000}).content
    assert server.stop() == 0
    assert not (server.store / "server.json").exists()
    with open_store(server.store) as sdk:
        assert sdk.head == head
        for i, (memory, history, past) in over_http.items():
            assert memory == msgspec.json.encode(sdk.get(i)), i
            assert history == msgspec.json.encode(sdk.history(i)), i
            assert past == msgspec.json.encode(sdk.get(i, as_of=head - 3)), i
        assert audit_http == msgspec.json.encode(sdk.audit(limit=1000))
        assert sdk.verify() is None


class Publisher(threading.Thread):
    """Publishes one event per request until told to stop or the server goes away;
    remembers the event ids the server acknowledged with a 200."""

    def __init__(self, server: Server, batch: int = 1):
        super().__init__(daemon=True)
        self.url, self.headers, self.batch = server.url, server.headers, batch
        self.acked: list[str] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10, headers=self.headers) as c:
            while not self.stop.is_set():
                events = [make_event(payload={"text": "under load"}) for _ in range(self.batch)]
                body = events[0] if self.batch == 1 else events
                try:
                    r = c.post("/v1/events", content=json.dumps(body).encode())
                except httpx.HTTPError:
                    self.failures += 1
                    if self.failures > 3:
                        return
                    time.sleep(0.05)
                    continue
                if r.status_code == 200:
                    self.acked.extend(e["event_id"] for e in events)

    def wait_for(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n:
            assert time.monotonic() < deadline, f"only {len(self.acked)} events acknowledged"
            assert self.is_alive(), "the publisher stopped early"
            time.sleep(0.02)


def test_sigterm_while_publishing_loses_nothing_acknowledged(server_factory, tmp_path):
    server = server_factory(tmp_path / "store")
    publishers = [Publisher(server), Publisher(server, batch=20)]
    for p in publishers:
        p.start()
    for p in publishers:
        p.wait_for(40)
    assert server.stop() == 0, server.log()  # SIGTERM mid-stream; a clean exit
    for p in publishers:
        p.stop.set()
        p.join(30)
    assert not (server.store / "server.json").exists()
    assert "store closed" in server.log()
    acked = {e for p in publishers for e in p.acked}
    with open_store(server.store) as store:
        logged = {e.event_id for e in _all_audit(store.audit)}
        assert acked <= logged, f"{len(acked - logged)} acknowledged events are missing"
        assert store.head + 1 == len(logged)
        assert store.verify() is None


def test_backup_under_write_load_restores_to_the_same_state(server_factory, cli, tmp_path):
    server = server_factory(tmp_path / "store")
    with server.client() as c:  # memories the load below revises, archives and restores
        seed = [make_event(memory_id=f"b-{i}") for i in range(20)]
        assert c.post("/v1/events", content=json.dumps(seed).encode()).status_code == 200
    writer = Reviser(server, [e["memory_id"] for e in seed])
    writer.start()
    writer.wait_for(30)
    backup = tmp_path / "backup"
    r = cli("backup", str(backup), "--store", str(server.store), "--json")
    assert r.code == 0, r.stderr
    writer.wait_for(len(writer.done) + 30)  # the load went on while the copy was taken
    writer.stop.set()
    writer.join(30)
    backup_head = r.json()["head"]
    assert server.head > backup_head
    replayed = tmp_path / "replayed"
    r = cli(
        "replay", "--to", str(backup_head), "--into", str(replayed), "--store",
        str(server.store), "--json",
    )  # fmt: skip
    assert r.code == 0 and r.json()["head"] == backup_head, r.stderr
    with open_store(backup) as restored, open_store(replayed) as replay:
        assert restored.head == replay.head == backup_head
        assert restored.verify() is None
        entries = _all_audit(restored.audit)
        assert _same(entries, _all_audit(replay.audit))
        with server.client() as c:
            source = c.get("/v1/audit", params={"as_of": backup_head, "limit": 10_000}).json()
        assert msgspec.json.encode(entries) == msgspec.json.encode(source["entries"])
        for memory_id in {e.memory_id for e in entries}:
            assert _same(restored.get(memory_id), replay.get(memory_id)), memory_id
            assert _same(restored.history(memory_id), replay.history(memory_id)), memory_id
    assert server.stop() == 0


class Reviser(threading.Thread):
    """Revises, archives and restores existing memories over HTTP, in a loop."""

    def __init__(self, server: Server, ids: list[str]):
        super().__init__(daemon=True)
        self.url, self.headers, self.ids = server.url, server.headers, ids
        self.done: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        ops = ("revise", "archive", "restore")
        with httpx.Client(base_url=self.url, timeout=30, headers=self.headers) as c:
            n = 0
            while not self.stop.is_set():
                memory_id = self.ids[n % len(self.ids)]
                op = ops[(n // len(self.ids)) % 3]
                payload = {"text": f"revision {n}"} if op == "revise" else {"reason": f"step {n}"}
                r = c.post(
                    "/v1/events",
                    content=json.dumps(
                        make_event(op, memory_id=memory_id, payload=payload)
                    ).encode(),
                )
                assert r.status_code in (200, 409), r.text
                self.done.append(r.json()["outcomes"][0]["offset"])
                n += 1

    def wait_for(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.done) < n:
            assert time.monotonic() < deadline and self.is_alive(), "the writer stalled"
            time.sleep(0.02)
