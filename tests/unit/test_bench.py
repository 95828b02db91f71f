"""The benchmark suites at a tiny scale: each runs, writes its JSON in the documented shape,
and reports counts read back from the stores it measured (not from its own counters)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from memstream import bench
from memstream.bench import report
from memstream.bench.common import BenchError, expect_counts, thread_cpu_seconds
from memstream.bench.ingest import _cpu_split

#: ingest: 1 batch of 100 per run; project and replay: their minimum of 1,000 events;
#: open: a log of 1,000 records, 10 new; erasure: its minimum of 2,000 memories.
SCALE = 0.001


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("bench")
    out, work = root / "out", root / "work"
    work.mkdir()
    # The search suite embeds with the real model: tests/integration/test_bench_search.py.
    suites = ["ingest", "project", "replay", "open", "erasure"]
    result = bench.run(suites, out, scale=SCALE, repeats=1, workdir=work, progress=False)
    return out, work, result


def _machine_ok(m: dict) -> None:
    assert m["cpu_count"] >= 1 and m["python"].count(".") == 2
    for lib in ("duckdb", "pyarrow", "msgspec", "cryptography", "sqlite"):
        assert m["libraries"][lib], lib


def test_every_suite_writes_its_json_and_the_summary(results):
    out, work, result = results
    assert set(result["suites"]) == {"ingest", "project", "replay", "open", "erasure"}
    for name, data in result["suites"].items():
        on_disk = json.loads((out / f"{name}.json").read_text())
        assert on_disk["suite"] == name and on_disk["scale"] == SCALE
        assert on_disk["parameters"] == data["parameters"]
        assert on_disk["timestamp"] and on_disk["results"] and on_disk["goals"]
        _machine_ok(on_disk["machine"])
    summary = (out / "summary.md").read_text()
    for row in (
        "| ingest, durability `fsync`",
        "| ingest, durability `os`",
        "| project",
        "| replay",
        "| open, integrity",
        "| erasure, ingest",
        "| erasure, rewrite",
    ):
        assert row in summary
    assert not list(work.iterdir()), "the suites leave no scratch stores behind"


def test_ingest_measures_what_the_store_holds(results):
    d = results[2]["suites"]["ingest"]
    events = d["parameters"]["events"]
    assert events == 100 and d["parameters"]["batch_size"] == 100
    for durability in ("fsync", "os"):
        r = d["results"][durability]
        assert r["sdk_events_per_s"]["median"] > 0 and r["raw_log_events_per_s"]["median"] > 0
        assert r["ratio"] == pytest.approx(
            r["sdk_events_per_s"]["median"] / r["raw_log_events_per_s"]["median"]
        )
        assert r["flush_after_last_append_s"]["median"] >= 0
        cpu = r["cpu_us_per_event"]  # per thread from /proc: 10 ms ticks, coarse here
        assert cpu["process"] > 0
        assert min(cpu["append_thread"], cpu["projector_thread"], cpu["other_threads"]) >= 0
        (run,) = r["runs"]
        counts = run["sdk"]["counts"]
        assert counts["log_records"] == counts["audit_rows"] == counts["accepted"] == events
        assert counts["versions"] == events
        assert counts["memories"] == run["sdk"]["creates"] > 0
        assert run["sdk"]["creates"] + run["sdk"]["revises"] == events
    stages = d["stages_us_per_event"]
    for k in ("build", "seal", "log_os", "log_fsync", "decide"):
        assert stages[k] > 0


def test_project_measures_what_the_store_holds(results):
    d = results[2]["suites"]["project"]
    p, r = d["parameters"], d["results"]
    assert p["events"] == 1_000 and p["creates"] + p["revises"] == 1_000
    (run,) = r["runs"]
    counts = run["catch_up"]["counts"]
    assert counts["audit_rows"] == counts["accepted"] == counts["versions"] == 1_000
    assert counts["memories"] == p["creates"]
    assert run["raw"]["events_per_s"] > 0
    assert r["ratio"] == pytest.approx(
        r["catch_up_events_per_s"]["median"] / r["raw_duckdb_events_per_s"]["median"]
    )
    for k in ("read", "open", "decide", "project", "write"):
        assert d["stages_us_per_event"][k] > 0


def test_replay_reaches_the_source_state(results):
    d = results[2]["suites"]["replay"]
    p, r = d["parameters"], d["results"]
    assert p["events"] == 1_000
    (run,) = r["runs"]
    assert run["counts"]["audit_rows"] == run["counts"]["log_records"] == 1_000
    assert run["counts"]["memories"] == p["creates"]
    assert 0 < run["copy_seconds"] <= run["seconds"]
    assert 0 < run["project_seconds"] <= run["seconds"]
    assert r["seconds_per_million_events"] == pytest.approx(r["replay_seconds"]["median"] * 1_000)


def test_open_verifies_only_the_new_records_and_compares_with_a_full_verify(results):
    d = results[2]["suites"]["open"]
    p, r = d["parameters"], d["results"]
    assert (p["log_records"], p["new_records"]) == (1_000, 10)
    assert p["first_open_verified_records"] == 1_000  # the first open verified all of it
    (run,) = r["runs"]
    assert run["log_records"] == 1_010
    assert 0 < run["open_verify_seconds"] <= run["reopen_seconds"]
    assert run["full_verify_seconds"] > 0 and run["reopen_nothing_new_seconds"] > 0
    assert r["reopen_over_full_verify"] == pytest.approx(
        run["reopen_seconds"] / run["full_verify_seconds"]
    )


def test_a_store_missing_events_fails_the_suite():
    counts = {
        "log_records": 10, "audit_rows": 9, "accepted": 9, "last_offset": 8,
        "versions": 9, "memories": 5,
    }  # fmt: skip
    with pytest.raises(BenchError, match="audit_rows"):
        expect_counts(counts, events=10, creates=5, what="test")


def test_unknown_suite_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown suite"):
        bench.run(["nope"], tmp_path, scale=SCALE, progress=False)


def test_docs_table_is_replaced_between_markers(results, tmp_path):
    out = results[0]
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        f"# Benchmarks\n\nprose\n\n{report.START}\nold table\n{report.END}\n\nmore prose\n"
    )
    report.update_docs(doc, out)
    text = doc.read_text()
    assert "old table" not in text and "| replay |" in text
    assert text.startswith("# Benchmarks\n\nprose\n") and text.endswith("\nmore prose\n")


def test_thread_cpu_seconds_charges_each_thread_its_own_time():
    stop, ids = threading.Event(), {}

    def burn() -> None:
        ids["worker"] = threading.get_native_id()
        while not stop.is_set():
            pass

    main = threading.get_native_id()
    before = thread_cpu_seconds()
    worker = threading.Thread(target=burn)
    worker.start()
    time.sleep(0.5)  # the main thread sleeps: its CPU time hardly moves
    during = thread_cpu_seconds()  # the worker is alive, so /proc still lists it
    stop.set()
    worker.join()
    assert before is not None and during is not None
    assert during[ids["worker"]] >= 0.1
    assert during[main] - before[main] < 0.1


def test_cpu_split_attributes_threads_and_leaves_the_rest_to_others():
    main = threading.get_native_id()
    before = {main: 1.0, 7: 2.0, 8: 0.5}
    after = {main: 1.4, 7: 2.2, 8: 0.6, 9: 0.1}  # thread 9 started meanwhile
    split = _cpu_split(before, after, process=0.8, projector=7, events=1000)
    assert split["process"] == pytest.approx(800.0)
    assert split["append_thread"] == pytest.approx(400.0)
    assert split["projector_thread"] == pytest.approx(200.0)
    assert split["other_threads"] == pytest.approx(200.0)  # 8, 9 and any that ended
    assert _cpu_split(None, None, 0.5, 7, 1000)["append_thread"] is None


def test_erasure_erases_on_disk_and_measures_both_runs(results):
    d = results[2]["suites"]["erasure"]
    p, r = d["parameters"], d["results"]
    assert p["memories"] == 2_000 and p["erasures"] == 2
    run = r["runs"][0]
    assert run["erasing"]["erased"] == 2 and run["plain"]["erased"] == 0
    assert r["erased_texts_on_disk"] == 0
    assert run["rewrite"]["file_bytes"] > 0 and run["rewrite"]["copy_seconds"] > 0
    assert run["reads"]["reads"] > 0 and r["gated_read_p50_ms"]["median"] > 0
    assert run["purge"]["purge_seconds"] > 0
