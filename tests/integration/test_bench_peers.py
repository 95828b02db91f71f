"""The ``peers`` suite: the same workload through memstream and through a peer.

The peer here is the harness's own in-memory ``fake`` (run as a script, by the same path
Mem0 takes in its own environment); Mem0 itself is not a dependency of memstream.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from memstream.bench import OPTIONAL_SUITES, SUITES, peers, run
from memstream.bench import __main__ as bench_main
from memstream.bench.peer_harness import FakePeer, measure
from memstream.bench.report import table


def test_the_harness_runs_a_peer_through_every_phase() -> None:
    data = {
        "texts": [f"user {i % 3} likes item {i}" for i in range(40)],
        "users": [f"u{i % 3}" for i in range(40)],
        "questions": [{"text": "likes item 7", "answer": 7}],
        "single": 10, "batch": 4, "reads": 8, "k": 5,
    }  # fmt: skip
    made: list[str] = []

    def make(phase: str) -> FakePeer:
        made.append(phase)
        return FakePeer()

    r = measure(make, data)
    assert made == ["single", "batch"]
    assert r["single"]["texts"] == 10 and r["batch"]["texts"] == 40
    assert r["search"]["n"] == 1 and r["search"]["hit_rate"] == 1.0
    assert r["get"]["wrong"] == 0 and r["deleted_gone"] is True
    assert r["history"]["entries"] == 1 and r["history"]["entries_after_update"] == 2
    assert [r[op]["n"] for op in ("get", "history", "update", "delete")] == [8, 8, 4, 4]


def test_the_peers_suite_runs_memstream_and_a_peer_side_by_side(tmp_path: Path) -> None:
    assert "peers" not in SUITES and "peers" in OPTIONAL_SUITES  # not in the default run
    from memstream.bench.common import Reporter, Scratch

    scratch = Scratch(tmp_path, "peers")
    try:
        r = peers.run(scratch, Reporter(enabled=False), 0.01, 1, 7, peer="fake")
    finally:
        scratch.close()
    p = r["parameters"]
    assert p["texts"] == 200 and p["single"] == 50 and p["peer"] == "fake"
    ours = r["memstream"]
    assert ours["single"]["acks_per_s"] > 0 and ours["batch"]["searchable_seconds"] > 0
    assert ours["search"]["hit_rate"] > 0.8  # the same model finds the paraphrased memory
    assert ours["history"]["entries_after_update"] == 2 and ours["deleted_gone"]
    assert r["peer"]["get"]["wrong"] == 0 and r["floor"]["texts"] == 200
    rows = table({"peers": {**r, "suite": "peers", "timestamp": "t", "scale": 0.01,
                            "machine": {"cpu_usable": 2, "cpu_model": "x", "python": "3.11",
                                        "libraries": {}}}})  # fmt: skip
    assert "peers, batched until searchable" in rows and "raw embedding floor" in rows


def test_without_mem0_it_says_how_to_install_it_and_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(peers.PEER_ENV, raising=False)
    missing = str(tmp_path / "no-such-python")
    with pytest.raises(peers.PeerMissing, match="pip install mem0ai"):
        run(["peers"], tmp_path / "out", peer_python=missing)
    assert not (tmp_path / "out" / "peers.json").exists()
    # the command line: the instructions, exit 0, nothing run (mem0ai is no dependency)
    code = bench_main.main(["--suite", "peers", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 0
    assert "ops/bench-peers" in capsys.readouterr().err
