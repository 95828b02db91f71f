"""``python -m memstream.bench --suite ingest --scale 0.1 --out DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import OPTIONAL_SUITES, SUITES, PeerMissing, run
from .report import table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m memstream.bench",
        description="Benchmark the embedded store; results go to OUT/<suite>.json and "
        "OUT/summary.md.",
    )
    parser.add_argument(
        "--suite",
        action="append",
        choices=sorted({**SUITES, **OPTIONAL_SUITES}),
        help="a suite to run (repeatable; default: all but peers, which needs Mem0)",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies the event counts (default 1.0)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench-results"), help="directory for the results"
    )
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement")
    parser.add_argument("--workdir", type=Path, default=None, help="where the temporary stores go")
    parser.add_argument(
        "--update-docs",
        type=Path,
        default=None,
        metavar="MARKDOWN",
        help="replace the summary block of this file (e.g. docs/benchmarks.md)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the search suite keeps its embeddings between runs (default "
        "$MEMSTREAM_BENCH_CACHE or ~/.cache/memstream/bench)",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help="events in the pubsub suite's catch-up log (default 1,000,000 times --scale)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--peer-python",
        default=None,
        help="the interpreter of an environment with mem0ai installed (the peers suite; "
        "default $MEMSTREAM_PEER_PYTHON, or this one if it has mem0)",
    )
    args = parser.parse_args(argv)
    try:
        result = _run(args)
    except PeerMissing as e:  # nothing ran: say how to install Mem0, and stop cleanly
        sys.stderr.write(f"{e}\n")
        return 0
    sys.stdout.write(table(result["suites"]))
    return 0


def _run(args: argparse.Namespace) -> dict:
    return run(
        args.suite or [],
        args.out,
        args.scale,
        repeats=args.repeats,
        workdir=args.workdir,
        progress=not args.quiet,
        docs=args.update_docs,
        cache_dir=args.cache_dir,
        peer_python=args.peer_python,
        events=args.events,
    )


if __name__ == "__main__":
    raise SystemExit(main())
