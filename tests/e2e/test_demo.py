"""The demo, as the README's first command and as ``memstream demo`` run it."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time

from .conftest import MEMSTREAM, subprocess_env


def test_memstream_demo_prints_the_version_chain_and_the_audit_trail(cli, tmp_path):
    store = tmp_path / "store"
    r = cli("demo", "--store", str(store))
    assert r.code == 0, r.stderr
    out = r.stdout
    for expected in (
        "version chain of demo-alice-drinks",
        "audit trail",
        "InvalidTransition",
        "MemoryFrozen",
        "merge",
        "OK",
        "memstream get demo-alice-drinks",
    ):
        assert expected in out, expected
    assert not (store / "server.json").exists()  # the demo's own server stopped cleanly


def test_memstream_demo_json(cli, tmp_path):
    r = cli("demo", "--store", str(tmp_path / "store"), "--json")
    assert r.code == 0, r.stderr
    result = r.json()
    assert result["verify"]["ok"] is True
    assert [x["error"] for x in result["rejections"]] == ["InvalidTransition", "MemoryFrozen"]
    merged = result["memories"]["drinks"]
    chain = [(v["memory_id"], v["op"]) for v in result["history"]]
    assert chain[-1] == (merged, "merge") and len({m for m, _ in chain}) == 3
    ops = [(e["type"], e["status"]) for e in result["audit"]]
    assert ("revise", "rejected") in ops and ("expire", "rejected") in ops
    # its subscription to the drink preferences received exactly their accepted events
    drinks = {result["memories"][n] for n in ("tea", "coffee", "drinks")}
    wanted = [o["offset"] for o in result["outcomes"] if o["memory_id"] in drinks]
    assert result["subscription"]["positions"] == wanted and len(wanted) == 4


def test_the_demo_writes_once_into_its_own_namespace(cli, tmp_path):
    """Run twice on one store (``./ops/run`` after a restart): one copy of the demo."""
    store = tmp_path / "store"
    first = cli("demo", "--store", str(store), "--json")
    assert first.code == 0, first.stderr
    again = cli("demo", "--store", str(store), "--json")
    assert again.code == 0, again.stderr
    a, b = first.json(), again.json()
    assert (a["already_ran"], b["already_ran"]) == (False, True)
    assert a["namespace"] == b["namespace"] == "demo/alice"
    assert b["outcomes"] == [] and b["verify"]["ok"] is True
    assert b["verify"]["head"] == a["verify"]["head"]  # the second run appended nothing
    assert b["memories"] == a["memories"]
    assert [e["offset"] for e in b["audit"]] == [e["offset"] for e in a["audit"]]
    assert [x["error"] for x in b["rejections"]] == ["invalid_transition", "frozen"]
    shown = cli("demo", "--store", str(store))
    assert shown.code == 0 and "already ran" in shown.stdout


def test_serve_demo_keeps_serving_until_sigterm(tmp_path):
    """The README's first command, with the defaults (search indexes included)."""
    store = tmp_path / "store"
    log = tmp_path / "serve.log"
    env = {k: v for k, v in subprocess_env().items() if k != "MEMSTREAM_SEMANTIC"}
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [*MEMSTREAM, "serve", "--demo", "--store", str(store), "--port", "0", "--json"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    lines: queue.Queue[dict] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        events: dict[str, dict] = {}
        deadline = time.monotonic() + 120
        while "demo" not in events:
            e = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            events[e["event"]] = e
        assert events["listening"]["url"].startswith("http://127.0.0.1:")
        assert events["demo"]["verify"]["ok"] is True
        assert (store / "server.json").exists() and proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(120)
    reader.join(10)
    assert proc.returncode == 0, log.read_text()
    assert lines.get(timeout=5)["event"] == "stopped"
    assert not (store / "server.json").exists()
    assert "store closed" in log.read_text()
