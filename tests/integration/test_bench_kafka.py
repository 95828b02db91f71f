"""The ``kafka`` benchmark suite runs end to end at a tiny scale and reports what it says."""

from __future__ import annotations

import json
from pathlib import Path

from memstream.bench import run


def test_kafka_suite_measures_every_path_and_writes_its_row(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(["kafka"], out, scale=0.01, repeats=1, workdir=tmp_path, progress=False)
    data = json.loads((out / "kafka.json").read_text())
    assert data == json.loads(json.dumps(result["suites"]["kafka"]))
    r, p = data["results"], data["parameters"]
    assert p["events"] == 200
    for key in (
        "one_worker_events_per_s",
        "one_worker_record_per_event_events_per_s",
        "two_workers_events_per_s",
        "faust_noop_events_per_s",
        "raw_aiokafka_projectors_events_per_s",
    ):
        assert r[key]["median"] > 0, key
    run_ = data["runs"][0]
    assert run_["one_worker"]["events"] == 200 and run_["raw_aiokafka_projectors"]["records"] == 200
    assert run_["one_worker_record_per_event"]["events"] == 200
    assert r["failover_s"]["median"] > 0 and run_["failover"]["session_timeout_s"] > 0
    assert (
        r["ratio_to_faust_noop"]
        == r["one_worker_events_per_s"]["median"] / r["faust_noop_events_per_s"]["median"]
    )
    summary = (out / "summary.md").read_text()
    assert "kafka, end to end" in summary and "kafka, a record per event" in summary
