"""The ``pubsub`` benchmark suite at its smallest: ingest with active subscriptions against
the same ingest without (the fast hash embedder stands in for the model), and a
subscription's catch-up against ``follow(0)``, on real stores. The suite checks every
delivery against what the filters select, worked out from its plan; these tests check
that it does, and that it reports counts read back from the stores. Only timing-free facts
are asserted. The whole suite, with its ``memstream serve`` processes: the slow test at the
end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memstream import bench
from memstream.bench import pubsub, pubsub_data, pubsub_latency, report
from memstream.bench.common import BenchError, Reporter, Scratch, scaled


@pytest.fixture
def fast_model(monkeypatch: pytest.MonkeyPatch, hash_embedder):
    monkeypatch.setattr(pubsub, "LazyEmbedder", lambda: hash_embedder)


@pytest.fixture
def scratch(tmp_path: Path):
    s = Scratch(tmp_path, "pubsub")
    yield s
    s.close()


def _data(tmp_path: Path, n: int = 500, subscriptions: int = 16) -> pubsub.IngestData:
    return pubsub.ingest_data(n, subscriptions, 7, tmp_path / "cache", Reporter(enabled=False))


def test_the_plan_is_valid_and_the_filters_mix_every_kind(fast_model, tmp_path: Path) -> None:
    data = _data(tmp_path)
    counts = data.plan.counts
    assert sum(counts.values()) == 500 and counts["create"] > counts["revise"] > 0
    assert counts.get("archive", 0) > 0
    assert {f.kind for f in data.filters} == {k for k, _ in pubsub_data.MIX}
    assert len(data.filters) == 16 and len({f.name for f in data.filters}) == 16
    semantic = [f for f in data.filters if f.kind == "semantic"]
    assert semantic and all(f.question is not None for f in semantic)
    assert dict(pubsub_data.mix(1_000)) == dict(pubsub_data.MIX)
    # every revision and archive is of a memory created before it, still active
    state: dict[str, str] = {}
    for e in data.plan.events:
        if e.type == "create":
            state[e.memory_id] = "active"
        else:
            assert state[e.memory_id] == "active"
            state[e.memory_id] = e.state_after


def test_ingest_compares_subscribed_and_plain_stores(
    fast_model, tmp_path: Path, scratch: Scratch
) -> None:
    data = _data(tmp_path)
    out = pubsub.ingest(scratch, Reporter(enabled=False), data, repeats=2)
    p, r = out["parameters"], out["results"]
    assert (p["events"], p["subscriptions"], p["repeats"]) == (500, 16, 2)
    rounds = r["rounds"]
    assert [x["order"] for x in rounds] == [
        ["baseline", "subscribed"],
        ["subscribed", "baseline"],
    ]
    want, _ = pubsub_data.expected_matches(
        data.filters, data.plan, list(range(500)), data.vectors, data.queries
    )
    expected = sum(len(v) for v in want.values())
    for x in rounds:
        sub, base = x["subscribed"], x["baseline"]
        assert "deliveries" not in base and "drain_threads" not in base["cpu_us_per_event"]
        # the subscribed arm received exactly what the filters select (checked by the suite)
        assert sub["deliveries"]["total"] == expected > 0
        assert sub["deliveries"]["redelivered"] == 0
        assert sub["cpu_us_per_event"]["drain_threads"] is not None
        assert x["ratio"] == pytest.approx(sub["events_per_s"] / base["events_per_s"])
    assert r["deliveries_per_event"] == pytest.approx(expected / 500)
    assert set(r["deliveries"]["by_kind"]) == {k for k, _ in pubsub_data.MIX}
    assert {
        "match:subscriptions",
        "match:subscriptions-semantic",
        "deliver_per_delivery",
        "empty_poll",
    } <= set(r["stages_us"])
    assert r["meets_ratio"] == (r["ratio"]["median"] >= pubsub.GOAL_INGEST_RATIO)
    assert not list(scratch.root.iterdir()), "the runs leave no store behind"


def test_a_subscription_missing_a_delivery_fails_the_suite(
    fast_model, tmp_path: Path, scratch: Scratch, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pubsub_data.expected_matches

    def one_more(filters, plan, offsets, *a):
        want, unsure = real(filters, plan, offsets, *a)
        want[filters[0].name].add(offsets[-1] + 1)  # an offset nothing was appended at
        return want, unsure

    monkeypatch.setattr(pubsub_data, "expected_matches", one_more)
    with pytest.raises(BenchError, match="did not receive what their filter selects"):
        pubsub.ingest(scratch, Reporter(enabled=False), _data(tmp_path), repeats=1)


def test_catch_up_delivers_the_whole_log_and_a_tenth(scratch: Scratch) -> None:
    out = pubsub.catchup(scratch, Reporter(enabled=False), 1.0, 2, 7, events=2_000)
    p, r = out["parameters"], out["results"]
    assert p["events"] == 2_000 and 0 < p["tenth_matches"] < 2_000
    for x in r["rounds"]:
        assert x["all"]["deliveries"] == 2_000
        assert x["tenth"]["deliveries"] == p["tenth_matches"]
        assert x["follow"]["events"] >= 2_000
        assert x["all"]["ack_calls"] >= 2
    assert [x["order"][0] for x in r["rounds"]] == ["follow", "all"]
    assert set(r["stages_us_per_event"]) == {"read", "filter", "deliver", "rest", "events"}
    assert r["stages_us_per_event"]["events"] >= 2_000
    assert r["meets_goal"] == (r["all_deliveries_per_s"]["median"] >= 50_000)
    assert not list(scratch.root.iterdir())


def test_catch_up_counting_wrong_fails(scratch: Scratch, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pubsub, "TENTH_TAG", "no-such-tag")  # DuckDB counts 0: a filter
    real = pubsub._consume  # that matches nothing, told to expect one more

    def expect_one(store, name, flt, expected):
        return real(store, name, flt, expected + 1 if name.startswith("tenth") else expected)

    monkeypatch.setattr(pubsub, "_consume", expect_one)
    with pytest.raises(BenchError, match="delivered 0 events, the store holds 1"):
        pubsub.catchup(scratch, Reporter(enabled=False), 1.0, 1, 7, events=2_000)


@pytest.mark.slow
def test_the_whole_suite_writes_its_json_and_rows(fast_model, tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()
    result = bench.run(
        ["pubsub"], out, scale=0.001, repeats=1, workdir=work, progress=False,
        cache_dir=tmp_path / "cache", events=2_000,
    )  # fmt: skip
    d = json.loads((out / "pubsub.json").read_text())
    assert d == json.loads(json.dumps(result["suites"]["pubsub"]))
    assert set(d["results"]) == {"ingest", "latency", "catchup"}
    lat = d["results"]["latency"]
    (plain,) = lat["plain"]["rounds"]
    assert plain["appends"] == plain["timed"] + pubsub_latency.WARMUP
    assert lat["plain"]["delivered_share"] == 1.0
    (semantic,) = lat["semantic"]["rounds"]
    assert semantic["timed"] > 0
    (embedded,) = lat["embedded"]["rounds"]
    assert embedded["timed"] == embedded["appends"] - pubsub_latency.WARMUP > 0
    assert d["parameters"]["ingest"]["subscriptions"] == scaled(1_000, 0.001, 16)
    summary = (out / "summary.md").read_text()
    for row in ("| pubsub, ingest with", "| pubsub, delivery latency", "| pubsub, catch-up"):
        assert row in summary
    assert report.table({"pubsub": d}).count("| pubsub,") == 3
    assert not list(work.iterdir())
