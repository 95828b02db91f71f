"""Benchmarks of the embedded store: ``ingest``, ``project``, ``replay``, ``open``,
``search`` and more (``reads``, ``kafka``, ``erasure``, ``access``, ``pubsub``); and of
sensitive-content detection: ``sensitive``.

Each suite measures a path of the real store and, in the same run and on the same data, the
raw operation underneath it (the log's own append, DuckDB's own insert), so its result is a
rate and a ratio that mean something on any machine. Every suite checks that the store
really holds what it was sent before it reports a number, repeats each measurement and
reports the median, and writes ``<out>/<suite>.json`` with the machine, the library
versions, the parameters and every raw number. :func:`run` also writes ``<out>/summary.md``.

``memstream bench`` and ``python -m memstream.bench`` call :func:`run`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import (
    access,
    erasure,
    ingest,
    kafka,
    opening,
    peers,
    project,
    pubsub,
    reads,
    replay,
    report,
    search,
    sensitive,
)
from .common import BenchError, Reporter, Scratch, machine_info, now_iso, write_json
from .peers import PeerMissing

SUITES: dict[str, Callable[..., dict[str, Any]]] = {
    "ingest": ingest.run,
    "project": project.run,
    "replay": replay.run,
    "open": opening.run,
    "search": search.run,
    "reads": reads.run,
    "kafka": kafka.run,
    "erasure": erasure.run,
    "access": access.run,
    "sensitive": sensitive.run,
    "pubsub": pubsub.run,
}
#: Suites run only when asked for by name: ``peers`` needs Mem0, installed apart
#: (``--peer-python``; see :mod:`memstream.bench.peers`).
OPTIONAL_SUITES: dict[str, Callable[..., dict[str, Any]]] = {"peers": peers.run}
#: Repeats per suite when none are asked for: medians of 3, but 2 replays (at scale 1.0 a
#: replay of 1M events takes minutes, and the source store's own opening is one more
#: projection of the same log, reported beside them).
DEFAULT_REPEATS = {
    "ingest": 3, "project": 3, "replay": 2, "open": 3, "search": 3, "reads": 3, "kafka": 3,
    "erasure": 3, "access": 3, "sensitive": 3, "pubsub": 3, "peers": 1,
}  # fmt: skip
SEED = 20250717

__all__ = ["OPTIONAL_SUITES", "SUITES", "BenchError", "PeerMissing", "run"]


def run(
    suites: Sequence[str],
    out: Path,
    scale: float = 1.0,
    *,
    repeats: int | None = None,
    workdir: Path | None = None,
    progress: bool = True,
    docs: Path | None = None,
    cache_dir: Path | None = None,
    peer_python: str | None = None,
    events: int | None = None,
) -> dict[str, Any]:
    """Run ``suites`` (all when empty) at ``scale`` and write their JSON into ``out``.

    ``scale`` multiplies every suite's event count (1.0: ingest 100,000 events per run,
    project 100,000, replay 1,000,000, open a log of 200,000 with 1,000 new). ``workdir`` holds the temporary stores (default:
    the system's temporary directory; its disk decides what ``fsync`` costs). ``docs``, a
    markdown file with the summary markers, gets the new table. ``cache_dir`` keeps the
    ``search`` suite's embeddings between runs (default ``$MEMSTREAM_BENCH_CACHE`` or
    ``~/.cache/memstream/bench``). ``peer_python``: the interpreter that runs Mem0 for
    the ``peers`` suite (which runs only when named; it raises :class:`PeerMissing`,
    saying how to install Mem0, before anything runs when none can). ``events``: the size of
    the ``pubsub`` suite's catch-up log (default 1,000,000 times ``scale``). Returns the
    suites' results by name, plus the paths written.
    """
    names = list(suites) or list(SUITES)
    every = {**SUITES, **OPTIONAL_SUITES}
    unknown = [s for s in names if s not in every]
    if unknown:
        raise ValueError(f"unknown suite(s) {unknown}; choose from {sorted(every)}")
    if "peers" in names:
        peer_python = peers.find_peer_python(peer_python)  # before anything runs
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    if repeats is not None and repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    if events is not None and events < 1:
        raise ValueError(f"events must be at least 1, not {events}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reporter = Reporter(enabled=progress)
    results: dict[str, Any] = {}
    files: dict[str, str] = {}
    with reporter.running():
        for name in names:
            scratch = Scratch(workdir, name)
            try:
                n = repeats if repeats is not None else DEFAULT_REPEATS[name]
                started = now_iso()
                extra: dict[str, Any] = (
                    {"cache_dir": cache_dir}
                    if name in ("search", "reads", "access", "pubsub")
                    else {}
                )
                if name == "pubsub":
                    extra["events"] = events
                if name == "peers":
                    extra = {"peer_python": peer_python}
                data = every[name](scratch, reporter, scale, n, SEED, **extra)
                result = {
                    "suite": name,
                    "timestamp": started,
                    "finished": now_iso(),
                    "scale": scale,
                    "machine": machine_info(scratch.root),
                    **data,
                }
            finally:
                scratch.close()
            path = out / f"{name}.json"
            write_json(path, result)
            results[name] = result
            files[name] = str(path)
    summary = report.write_summary(out)
    if docs is not None:
        report.update_docs(Path(docs), out)
    return {"suites": results, "files": files, "summary": str(summary)}
