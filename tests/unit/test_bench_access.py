"""The ``access`` benchmark suite at its smallest: it runs end to end (the fast hash
embedder stands in for the model; tests/integration/test_bench_search.py runs the real
one), checks the access log holds exactly the searches made with it on, and writes its JSON
and summary rows. Only timing-free facts are asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memstream import bench
from memstream.bench import access
from memstream.bench.common import BenchError


@pytest.fixture
def fast_model(monkeypatch: pytest.MonkeyPatch, hash_embedder):
    monkeypatch.setattr(access, "LazyEmbedder", lambda: hash_embedder)
    monkeypatch.setattr(access, "HOOK_CALLS", 500)
    monkeypatch.setattr(access, "ROUND", 250)


def test_the_suite_compares_search_with_the_log_on_and_off(fast_model, tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()
    result = bench.run(
        ["access"], out, scale=0.001, repeats=2, workdir=work, progress=False,
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    d = json.loads((out / "access.json").read_text())
    assert d == json.loads(json.dumps(result["suites"]["access"]))
    p, r = d["parameters"], d["results"]
    assert (p["memories"], p["calls_per_arm"], p["repeats"]) == (500, 200, 2)
    # every search made with the log on is in it, none made with it off
    assert r["searches_recorded"] == 2 * 2 * p["calls_per_arm"]
    for run in r["runs"]:
        assert {k: v["n"] for k, v in run.items()} == {
            "text:on": 200, "text:off": 200, "vector:on": 200, "vector:off": 200,
        }  # fmt: skip
    for kind in ("text", "vector"):
        ratio = r[f"{kind}_p95_ratio"]["median"]
        on, off = r[f"{kind}_on_p95"]["median"], r[f"{kind}_off_p95"]["median"]
        assert ratio > 0 and on > 0 and off > 0
        assert r["meets"][f"{kind}_p95_ratio"] == (ratio <= access.GOAL_P95_RATIO)
    assert r["hook_us"] > 0 and r["writer_us_per_record"] > 0
    summary = (out / "summary.md").read_text()
    assert "| access log, search with the query text" in summary
    assert "| access log, recording" in summary
    assert not list(work.iterdir()), "the suite leaves no scratch store behind"


def test_a_log_missing_searches_fails_the_suite(
    fast_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = access._logged_searches
    monkeypatch.setattr(access, "_logged_searches", lambda path: (real(path)[0] - 1, []))
    with pytest.raises(BenchError, match="searches"):
        bench.run(
            ["access"], tmp_path / "out", scale=0.001, repeats=1, workdir=tmp_path,
            progress=False, cache_dir=tmp_path / "cache",
        )  # fmt: skip
