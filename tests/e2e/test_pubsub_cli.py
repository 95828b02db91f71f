"""The pub/sub commands, run as a user runs them (``python -m memstream`` subprocesses on a
real store directory): ``subscription ...``, ``publication ...`` and ``memstream
subscribe``, which prints each delivery and acknowledges it once printed. A consumer
interrupted (Ctrl-C) or killed (SIGKILL) mid-stream resumes from its durable cursor: every
event is delivered at least once, and nothing acknowledged is delivered again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

from memstream.sdk import new_id

from .conftest import MEMSTREAM, open_store, subprocess_env

NS = "user/alice"


def _store(tmp_path: Path) -> tuple[Path, list[str]]:
    store = tmp_path / "store"
    return store, ["--store", str(store)]


def _fill(store: Path, n: int, namespace: str = NS) -> list[int]:
    """``n`` memories created in ``namespace`` (and as many elsewhere); their offsets."""
    offsets: list[int] = []
    with open_store(store) as s:
        for start in range(0, n, 500):
            batch = []
            for i in range(start, min(n, start + 500)):
                batch.append(s.event("create", namespace, new_id(), {"text": f"note {i}"}))
                batch.append(s.event("create", "user/bob", new_id(), {"text": f"other {i}"}))
            offsets += [o.offset for o in s.append(batch) if o.namespace == namespace]
    return offsets


def _positions(lines: list[Any]) -> list[int]:
    return [d["position"] for d in lines]


class Lines:
    """A subprocess's stdout, read line by line only when asked (so a process that prints
    more than the pipe holds waits for the test); a watchdog kills the process if the test
    waits too long, so a test never hangs."""

    def __init__(self, proc: subprocess.Popen[bytes], timeout: float = 120.0):
        self.proc = proc
        self.watchdog = threading.Timer(timeout, proc.kill)
        self.watchdog.daemon = True
        self.watchdog.start()

    def take(self, n: int) -> list[bytes]:
        assert self.proc.stdout is not None
        got = [self.proc.stdout.readline() for _ in range(n)]
        assert got[-1].endswith(b"\n"), f"the process ended after {len(got)} of {n} lines"
        return got

    def rest(self) -> list[bytes]:
        """Every line until the process closes its stdout."""
        assert self.proc.stdout is not None
        got = self.proc.stdout.readlines()
        self.watchdog.cancel()
        return got


def _popen(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*MEMSTREAM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=subprocess_env(),
    )  # fmt: skip


def test_subscribe_prints_deliveries_acknowledges_them_and_replays_on_request(cli, tmp_path):
    store, at = _store(tmp_path)
    r = cli("subscription", "create", "notes", "--namespace", NS, "--json", *at)
    assert r.code == 0, r.stderr
    assert r.json()["name"] == "notes" and r.json()["filter"]["namespaces"] == [NS]
    offsets = []
    for i in range(4):
        added = cli("add", NS, f"Alice note {i}", "--json", *at)
        assert added.code == 0, added.stderr
        offsets.append(added.json()["offset"])
    assert cli("add", "user/bob", "not for this subscription", *at).code == 0
    first = cli("subscribe", "notes", "--json", "--max", "3", *at)
    assert first.code == 0, first.stderr
    lines = first.lines()
    assert _positions(lines) == offsets[:3]
    assert all(d["subscription"] == "notes" and d["kind"] == "event" for d in lines)
    assert [d["event"]["payload"]["text"] for d in lines] == [f"Alice note {i}" for i in range(3)]
    # what was printed was acknowledged: only the fourth comes now, then nothing
    second = cli("subscribe", "notes", "--json", "--idle", "1", *at)
    assert second.code == 0, second.stderr
    assert _positions(second.lines()) == offsets[3:]
    assert cli("subscribe", "notes", "--json", "--idle", "0.5", *at).lines() == []
    # --from beginning replays everything; for people, one line each
    replay = cli("subscribe", "notes", "--from", "beginning", "--idle", "1", *at)
    assert replay.code == 0, replay.stderr
    shown = replay.stdout.splitlines()
    assert len(shown) == 4
    for offset, line, i in zip(offsets, shown, range(4), strict=True):
        assert line.split()[:3] == [str(offset), "create", NS] and f"Alice note {i}" in line
    # --heartbeats: a JSON heartbeat when nothing comes
    beats = cli("subscribe", "notes", "--json", "--heartbeats", "--idle", "0.4", *at)
    assert beats.code == 0 and beats.lines() and "head" in beats.lines()[0]


def test_subscription_commands_list_show_seek_park_and_delete(cli, tmp_path):
    store, at = _store(tmp_path)
    made = cli(
        "subscription", "create", "diet", "--namespace", "user/*", "--tag-any", "diet",
        "--type", "create", "--from", "beginning", "--max-in-flight", "10",
        "--ack-timeout", "0.5", "--description", "what people eat", "--json", *at,
    )  # fmt: skip
    assert made.code == 0, made.stderr
    body = made.json()
    assert body["filter"]["tags_any"] == ["diet"] and body["filter"]["types"] == ["create"]
    assert (body["start"], body["max_in_flight"], body["ack_timeout"]) == ("beginning", 10, 0.5)
    with open_store(store) as s:
        kale = s.create(NS, "Alice eats kale", tags=["diet"]).offset
        soup = s.create("user/bob", "Bob eats soup", tags=["diet"]).offset
        s.create(NS, "Alice's bank", tags=["money"])
        sub = s.subscribe("diet", heartbeat=0.2)
        first = sub.next(timeout=5)
        assert first.position == kale
        sub.nack(first.position, reason="cannot parse it")
    listed = cli("subscription", "list", "--json", *at)
    assert [v["name"] for v in listed.json()["subscriptions"]] == ["diet"]
    table = cli("subscription", "list", *at)
    assert "diet" in table.stdout and "tags_any=diet" in table.stdout, table.stdout
    shown = cli("subscription", "show", "diet", "--json", *at).json()
    assert shown["parked"] == 1 and shown["description"] == "what people eat"
    parked = cli("subscription", "parked", "diet", "--json", *at).json()["parked"]
    assert [(p["position"], p["reason"]) for p in parked] == [(kale, "cannot parse it")]
    human = cli("subscription", "parked", "diet", *at)
    assert "cannot parse it" in human.stdout
    assert cli("subscription", "unpark", "diet", str(kale), "--json", *at).json() == {"unparked": 1}
    # the parked one is resolved: the next delivery is bob's
    got = cli("subscribe", "diet", "--json", "--idle", "1", *at).lines()
    assert _positions(got) == [soup]
    moved = cli("subscription", "seek", "diet", "--from", str(kale), "--json", *at)
    assert moved.code == 0 and moved.json()["cursor"] == kale - 1
    assert _positions(cli("subscribe", "diet", "--json", "--idle", "1", *at).lines()) == [
        kale, soup,
    ]  # fmt: skip
    # mistakes: a clear message and the exit code
    missing = cli("subscription", "show", "ghost", "--json", *at)
    assert missing.code == 1 and missing.json()["error"] == "not_found"
    assert "ghost" in missing.stderr
    bad = cli("subscription", "seek", "diet", "--from", "yesterday", *at)
    assert bad.code == 2 and "--from" in bad.stderr and "Traceback" not in bad.stderr
    both = cli("subscription", "create", "x", "--threshold", "0.9", *at)
    assert both.code == 2 and "threshold" in both.stderr
    gone = cli("subscription", "delete", "diet", "--reason", "done", *at)
    assert gone.code == 0 and "deleted" in gone.stdout
    assert cli("subscription", "list", "--json", *at).json() == {"subscriptions": []}
    assert cli("subscribe", "diet", "--idle", "0.2", *at).code == 1


def test_publication_commands(cli, tmp_path):
    store, at = _store(tmp_path)
    assert cli("principal", "add", "bob", "--kind", "agent", *at).code == 0
    made = cli(
        "publication", "publish", "alice-diet", "--namespace", NS, "--to", "bob",
        "--to", "group:friends", "--tag", "diet", "--expires", "2999-01-01T00:00:00Z",
        "--max-deliveries", "5", "--period", "3600", "--redact", "--description", "meals",
        "--json", *at,
    )  # fmt: skip
    assert made.code == 0, made.stderr
    body = made.json()
    assert body["to"] == ["bob", "group:friends"] and body["tag"] == "diet"
    assert (body["max_deliveries"], body["period_seconds"], body["redact"]) == (5, 3600, True)
    assert body["expires_at"].startswith("2999-01-01")
    assert [p["name"] for p in cli("publication", "list", "--json", *at).json()["publications"]] \
        == ["alice-diet"]  # fmt: skip
    human = cli("publication", "show", "alice-diet", *at)
    assert "tagged diet" in human.stdout and "5 per 3600 s" in human.stdout
    offset = cli("publication", "publish", "x", "--namespace", NS, "--to", "bob",
                 "--expires", "12", *at)  # fmt: skip
    assert offset.code == 2 and "--expires" in offset.stderr
    withdrawn = cli("publication", "withdraw", "alice-diet", "--reason", "over", *at)
    assert withdrawn.code == 0 and withdrawn.stdout.strip() == "publication alice-diet withdrawn"
    assert cli("publication", "show", "alice-diet", "--json", *at).json()["withdrawn"] is True
    with open_store(store) as s:
        types = [e.type for e in s.audit(namespace="memstream.governance").entries]
    assert types[-2:] == ["publication", "publication_withdraw"]


def test_ctrl_c_mid_stream_exits_0_and_what_was_printed_was_acknowledged(cli, tmp_path):
    store, at = _store(tmp_path)
    assert cli("subscription", "create", "s", "--namespace", NS, "--from", "beginning",
               *at).code == 0  # fmt: skip
    offsets = _fill(store, 1_500)
    proc = _popen("subscribe", "s", "--json", *at)
    lines = Lines(proc)
    seen = lines.take(200)  # the pipe is full: it is blocked printing a batch
    proc.send_signal(signal.SIGINT)
    seen += lines.rest()  # it finishes that batch, acknowledges it, and stops
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    first = _positions([json.loads(x) for x in seen])
    assert 200 <= len(first) < len(offsets) and first == offsets[: len(first)]
    rest = _positions(cli("subscribe", "s", "--json", "--idle", "1", *at).lines())
    assert rest == offsets[len(first) :]  # nothing printed came again, nothing was lost


def test_a_killed_subscribe_resumes_from_its_cursor(cli, tmp_path):
    store, at = _store(tmp_path)
    assert cli("subscription", "create", "s", "--namespace", NS, "--from", "beginning",
               *at).code == 0  # fmt: skip
    offsets = _fill(store, 3_000)
    proc = _popen("subscribe", "s", "--json", *at)
    lines = Lines(proc)
    printed = lines.take(800)  # the first batch is acknowledged, the second is printing
    proc.kill()
    proc.wait(30)
    printed += lines.rest()  # what it printed before it died (lines cut short left out)
    first = _positions([json.loads(x) for x in printed if x.endswith(b"\n")])
    with open_store(store) as s:
        cursor = s.get_subscription("s").cursor
        position = s.hub.cursors.position("s", s.get_subscription("s").generation)
    acked = {o for o in offsets if o <= cursor} | set(position.acked)
    assert acked and acked <= set(first)  # only what it printed was acknowledged
    assert len(acked) < len(offsets)  # killed mid-stream
    second = _positions(cli("subscribe", "s", "--json", "--idle", "1", *at).lines())
    assert not acked & set(second)  # nothing acknowledged comes again
    assert set(first) | set(second) == set(offsets)  # nothing lost
    assert second == sorted(second)


CONSUMER = textwrap.dedent(
    """
    import sys, threading, time
    from memstream import Delivery, MemoryStore, new_id

    path, write = sys.argv[1], int(sys.argv[2])
    store = MemoryStore.open(path, semantic=False, durability="os")

    def writer():
        for i in range(write):
            store.append([store.event("create", "user/alice", new_id(), {"text": f"n {i}"}),
                          store.event("create", "user/bob", new_id(), {"text": f"o {i}"})])
            time.sleep(0.002)

    if write:
        threading.Thread(target=writer, daemon=True).start()
    sub = store.subscribe("s", heartbeat=0.5)
    idle = time.monotonic()
    while time.monotonic() - idle < 1.5:
        d = sub.next(timeout=0.5)
        if isinstance(d, Delivery):
            print("D", d.position, flush=True)
            sub.ack(d.position)
            print("A", d.position, flush=True)
            idle = time.monotonic()
    store.close()
    """
)


def test_a_consumer_killed_while_the_store_is_written_loses_nothing(tmp_path):
    """One process writes and consumes (an embedded store is one process's); SIGKILLed
    mid-stream, the next one resumes from the durable cursor."""
    store = tmp_path / "store"
    with open_store(store) as s:
        s.create_subscription("s", namespaces=[NS])
    script = tmp_path / "consumer.py"
    script.write_text(CONSUMER)
    run = [sys.executable, str(script), str(store)]
    proc = subprocess.Popen([*run, "1000"], stdout=subprocess.PIPE, env=subprocess_env())
    lines = Lines(proc)
    head = lines.take(600)  # writes and deliveries under way
    proc.kill()
    proc.wait(30)
    first = [line.split() for line in head + lines.rest() if line.endswith(b"\n")]
    delivered1 = {int(p) for k, p in first if k == b"D"}
    reported = {int(p) for k, p in first if k == b"A"}
    with open_store(store) as s:
        rule = s.get_subscription("s")
        saved = s.hub.cursors.position("s", rule.generation)
        entries = s.audit(namespace=NS, limit=10_000).entries
    written = {e.offset for e in entries if e.type == "create"}
    assert len(written) < 1000  # killed while it was writing
    acked = {o for o in written if o <= saved.cursor} | set(saved.acked)
    assert reported <= acked  # every acknowledgement it reported is durable
    again = subprocess.run([*run, "0"], capture_output=True, env=subprocess_env(), timeout=60)
    assert again.returncode == 0, again.stderr.decode()
    delivered2 = {int(p) for k, p in (x.split() for x in again.stdout.splitlines()) if k == b"D"}
    assert not delivered2 & acked  # nothing acknowledged is delivered again
    assert delivered1 | delivered2 == written  # every event delivered at least once


def test_subscribe_through_a_running_server_resumes_after_a_kill(cli, server_factory, tmp_path):
    """The same commands on a store a server holds: they go through it, and a consumer
    killed while the server is written resumes from the subscription's cursor."""
    server = server_factory(tmp_path / "served")
    at = ["--store", str(server.store)]
    # what the killed consumer had in flight comes again after a second, not thirty
    made = cli("subscription", "create", "s", "--namespace", NS, "--ack-timeout", "1", *at)
    assert made.code == 0, made.stderr
    with server.client() as http:

        def add(text: str) -> int:
            r = http.post("/v1/memories", json={"namespace": NS, "text": text})
            assert r.status_code in (200, 201), r.text
            return int(r.json()["offset"])

        offsets = [add(f"served {i}") for i in range(3)]
        got = cli("subscribe", "s", "--json", "--max", "3", *at)
        assert got.code == 0, got.stderr
        assert _positions(got.lines()) == offsets
        assert cli("subscribe", "s", "--json", "--idle", "1", *at).lines() == []
        # killed while another client writes: every event at least once, none acked again
        proc = _popen("subscribe", "s", "--json", *at)
        lines = Lines(proc)
        done = threading.Event()
        written: list[int] = []

        def writer() -> None:
            with server.client() as other:
                for i in range(300):
                    r = other.post("/v1/memories", json={"namespace": NS, "text": f"live {i}"})
                    written.append(int(r.json()["offset"]))
            done.set()

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        head = lines.take(50)
        proc.kill()
        proc.wait(30)
        first = _positions([json.loads(x) for x in head + lines.rest() if x.endswith(b"\n")])
        assert done.wait(120)
        t.join()
        view = cli("subscription", "show", "s", "--json", *at).json()
        acked_upto = view["cursor"]
        second = _positions(cli("subscribe", "s", "--json", "--idle", "3", *at).lines())
        assert not {o for o in second if o <= acked_upto}  # acknowledged: never again
        assert set(first) | set(second) == set(written)  # nothing lost
