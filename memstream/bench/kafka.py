"""``kafka``: events/s through the Kafka runtime, against Faust's and aiokafka's own rates.

Runs a private in-memory Kafka-protocol broker (the test broker) and real worker
processes (``memstream worker``), as an operator would. What is measured, each repeat on
fresh topics:

- **end to end, 1 worker and 2 workers**: the workload's events published through the
  SDK's publisher (validated, produced as JSON requests, one record per run of events of a
  namespace), sequenced, sealed, appended to the events topic (one record per event),
  decided and projected into the shards, their outcomes published; the clock runs from
  the publish call to the last outcome received. Every outcome must
  be ``accepted`` (the workload is valid), or the suite fails.
- **a record per event, 1 worker**: the same, with each event in a request record of its
  own, as a producer outside the SDK (kcat, any client) sends them: the sequencer agent
  then handles as many Faust messages as there are events.
- **Faust's ceiling**: a Faust app whose agent does nothing consumes the same events topic
  (the same records, batched with ``take_events`` as the worker's sequencer agent is):
  goal, the 1-worker end-to-end rate ≥ 0.7 of it.
- **raw aiokafka + the same projectors**: a plain consumer reads the same events topic and
  hands each partition's records to fresh shards (the worker's code, minus Faust and the
  sequencer): the cost of Faust and of sequencing is the gap to the end-to-end rate.
- **failover**: with two workers serving, one is SIGKILLed; the time until the survivor
  serves every partition (bounded below by the consumer session timeout, reported).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from memstream.schemas.codec import EventCodec
from memstream.schemas.events import Event, default_registry
from memstream.streams.kafka import clients
from memstream.streams.kafka.broker import start_broker
from memstream.streams.kafka.keys import SharedKeys
from memstream.streams.kafka.local import LocalDeployment
from memstream.streams.kafka.producer import MAX_RECORD_EVENTS, KafkaPublisher
from memstream.streams.kafka.records import KRecord
from memstream.streams.kafka.settings import KafkaSettings
from memstream.streams.kafka.shard import Shard
from memstream.streams.keystore import KeyStore
from memstream.streams.sealing import Sealer

from .common import BenchError, Reporter, Scratch, median, rate, scaled, spread
from .workload import Workload

BASE_EVENTS = 20_000
PARTITIONS = 4
SESSION_TIMEOUT = 6.0
GOAL_RATIO_TO_FAUST = 0.7
NOOP_BATCH = 2_000


def _events(events: int, seed: int) -> tuple[list[Event], int]:
    """``events`` valid events of the workload; and how many are creates."""
    wl = Workload(seed=seed)
    codec = EventCodec(default_registry())
    out: list[Event] = []
    for batch in wl.batches(events, 1_000):
        out += codec.validate(batch)
    return out, wl.creates


async def _publish_and_await(
    s: KafkaSettings, events: list[Event], timeout: float, per_record: int
) -> dict[str, Any]:
    """Publish every event through the SDK's publisher (at most ``per_record`` events per
    request record); wait for every outcome."""
    async with KafkaPublisher(s, max_record_events=per_record) as pub:
        t0 = time.perf_counter()
        outcomes = await pub.publish(events, timeout=timeout)
        seconds = time.perf_counter() - t0
    rejected = sum(not o.accepted for o in outcomes)
    if rejected or len(outcomes) != len(events):
        raise BenchError(f"kafka: {rejected} of {len(events)} events were rejected")
    return {"seconds": seconds, "events": len(events)}


def _end_to_end(
    broker: str,
    root: Path,
    events: list[Event],
    workers: int,
    reporter: Reporter,
    per_record: int = MAX_RECORD_EVENTS,
) -> tuple[dict[str, Any], LocalDeployment]:
    d = LocalDeployment(broker, root, partitions=PARTITIONS, session_timeout=SESSION_TIMEOUT)
    for i in range(workers):
        # the core projection only: search indexes follow it off the measured path
        d.start_worker(f"w{i + 1}", MEMSTREAM_SEMANTIC="0")
    owners = d.serving()
    if len({w.name for w in owners.values()}) != workers:
        raise BenchError(f"kafka: {workers} workers started, {len(set(owners.values()))} serve")
    what = f"kafka end to end, {workers} worker(s), up to {per_record} event(s) per record"
    with reporter.task(what, len(events)) as advance:
        res = asyncio.run(_publish_and_await(d.settings, events, 600, per_record))
        advance(len(events))
    res["events_per_s"] = rate(res["events"], res["seconds"])
    return res, d


def _faust_noop(broker: str, topic: str, records: int, root: Path) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    out = root / "noop.json"
    subprocess.run(
        [sys.executable, "-m", "memstream.bench.kafka_noop", "--bootstrap", broker]
        + ["--topic", topic, "--expect", str(records), "--out", str(out)]
        + ["--datadir", str(root / "noop-data")]
        # batches of a tenth of the records at most: the clock starts at the first batch,
        # so a first batch holding every record would leave nothing timed
        + ["--batch", str(max(1, min(NOOP_BATCH, records // 10)))],
        check=True,
        timeout=900,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    r = json.loads(out.read_text())
    if r["records"] <= 0 or r["seconds"] <= 0:
        raise BenchError(f"kafka (Faust no-op): nothing was timed ({r}); run at a larger scale")
    return {**r, "events_per_s": rate(r["records"], r["seconds"])}


async def _raw_projectors(s: KafkaSettings, root: Path, records: int) -> dict[str, Any]:
    """A plain consumer reading the events topic into fresh shards (the same code)."""
    codec = EventCodec(default_registry())
    keystore = KeyStore(root / "keys.sqlite", create_keys=False)
    keys = SharedKeys(s, keystore)
    await keys.start()  # every key the run created, read from the keys topic
    sealer = Sealer(keystore, codec)
    log_id = f"kafka:{await keys.identity()}:{s.events}"
    shards = {
        p: Shard(root / "shards", s.events, p, s.partitions, log_id, sealer, keystore)
        for p in range(s.partitions)
    }
    consumer = clients.reader(s)
    await consumer.start()
    applied = 0
    try:
        tps = [TopicPartition(s.events, p) for p in range(s.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        t0 = time.perf_counter()
        while applied < records:
            got = await consumer.getmany(timeout_ms=500, max_records=2_000)
            for tp, recs in got.items():
                res = shards[tp.partition].apply([KRecord.of(r) for r in recs])
                applied += len(recs) - res.skipped
        seconds = time.perf_counter() - t0
        accepted = sum(
            sh.duck.query("SELECT count(*) AS n FROM audit WHERE status = 'accepted'")[0]["n"]
            for sh in shards.values()
        )
    finally:
        await consumer.stop()
        await keys.stop()
        for sh in shards.values():
            sh.close()
        keystore.close()
    if accepted != records:
        raise BenchError(f"kafka (raw projectors): {accepted} of {records} accepted")
    return {"records": records, "seconds": seconds, "events_per_s": rate(records, seconds)}


def _failover(d: LocalDeployment) -> dict[str, Any]:
    live = [w for w in d.workers if w.alive()]
    victim, survivor = live[0], live[1]
    t0 = time.perf_counter()
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    d.serving([survivor], timeout=120)
    return {"seconds": time.perf_counter() - t0, "session_timeout_s": SESSION_TIMEOUT}


def run(
    scratch: Scratch, reporter: Reporter, scale: float, repeats: int, seed: int
) -> dict[str, Any]:
    events = scaled(BASE_EVENTS, scale, minimum=200)
    evs, creates = _events(events, seed)
    runs = []
    with start_broker(log=scratch.root / "broker.log") as broker:
        for i in range(repeats):
            one, d1 = _end_to_end(broker.bootstrap, scratch.new("one"), evs, 1, reporter)
            d1.close()
            s = d1.settings
            single, d1s = _end_to_end(
                broker.bootstrap, scratch.new("single"), evs, 1, reporter, per_record=1
            )
            d1s.close()
            with reporter.task("kafka: Faust no-op agent", events) as advance:
                noop = _faust_noop(broker.bootstrap, s.events, events, scratch.new("noop"))
                advance(events)
            with reporter.task("kafka: raw aiokafka + projectors", events) as advance:
                raw = asyncio.run(_raw_projectors(s, scratch.new("raw"), events))
                advance(events)
            two, d2 = _end_to_end(broker.bootstrap, scratch.new("two"), evs, 2, reporter)
            try:
                failover = _failover(d2)
            finally:
                d2.close()
            runs.append(
                {
                    "repeat": i,
                    "one_worker": one,
                    "one_worker_record_per_event": single,
                    "two_workers": two,
                    "faust_noop": noop,
                    "raw_aiokafka_projectors": raw,
                    "failover": failover,
                }
            )

    def med(key: str, field: str = "events_per_s") -> float:
        return median([r[key][field] for r in runs])

    one_eps, noop_eps = med("one_worker"), med("faust_noop")
    return {
        "parameters": {
            "events": events,
            "creates": creates,
            "partitions": PARTITIONS,
            "repeats": repeats,
            "broker": "Tansu (Kafka protocol, in memory), loopback",
            "session_timeout_s": SESSION_TIMEOUT,
            "semantic_indexes": False,
        },
        "goals": {"ratio_to_faust_noop": GOAL_RATIO_TO_FAUST},
        "results": {
            "one_worker_events_per_s": spread([r["one_worker"]["events_per_s"] for r in runs]),
            "one_worker_record_per_event_events_per_s": spread(
                [r["one_worker_record_per_event"]["events_per_s"] for r in runs]
            ),
            "ratio_record_per_event_to_faust_noop": med("one_worker_record_per_event") / noop_eps,
            "two_workers_events_per_s": spread([r["two_workers"]["events_per_s"] for r in runs]),
            "faust_noop_events_per_s": spread([r["faust_noop"]["events_per_s"] for r in runs]),
            "raw_aiokafka_projectors_events_per_s": spread(
                [r["raw_aiokafka_projectors"]["events_per_s"] for r in runs]
            ),
            "failover_s": spread([r["failover"]["seconds"] for r in runs]),
            "ratio_to_faust_noop": one_eps / noop_eps,
            "two_over_one_worker": med("two_workers") / one_eps,
            "meets_ratio_goal": one_eps / noop_eps >= GOAL_RATIO_TO_FAUST,
        },
        "runs": runs,
    }
