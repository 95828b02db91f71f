"""A Faust app whose agent does nothing: Faust's own ceiling on this broker and machine.

``python -m memstream.bench.kafka_noop --bootstrap B --topic T --expect N --out FILE``
consumes ``T`` from the beginning in batches (as the worker's agents do, with
``take_events``), and when ``N`` records have arrived writes the seconds between the first
and the N-th (and the records that arrived in between) to ``FILE`` and exits. The ``kafka`` suite of ``memstream bench`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import faust


def main(argv: list[str] | None = None) -> None:
    a = argparse.ArgumentParser()
    a.add_argument("--bootstrap", required=True)
    a.add_argument("--topic", required=True)
    a.add_argument("--expect", type=int, required=True)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--batch", type=int, default=2_000)
    a.add_argument("--datadir", type=Path, required=True)
    args = a.parse_args(argv)
    app = faust.App(
        f"noop-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{args.bootstrap}",
        key_serializer="raw",
        value_serializer="raw",
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        datadir=str(args.datadir),
    )
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "first": 0.0, "first_batch": 0}

    @app.agent(topic, concurrency=1)
    async def noop(stream: Any) -> None:
        async for batch in stream.take_events(args.batch, within=0.05):
            if seen["n"] == 0:  # the clock starts when the first batch is in hand
                seen["first"], seen["first_batch"] = time.perf_counter(), len(batch)
            seen["n"] += len(batch)
            if seen["n"] >= args.expect:
                elapsed = time.perf_counter() - seen["first"]
                result = {"records": seen["n"] - seen["first_batch"], "seconds": elapsed}
                args.out.write_text(json.dumps(result))
                os._exit(0)

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
