"""What every suite shares: machine facts, timing, medians, progress bars and JSON output.

A benchmark number means little without the machine, the library versions and the exact
parameters it was measured with, so every suite's JSON carries them. Timings use
``time.perf_counter``; each measurement is repeated and the median is the headline,
because a shared machine's noise only ever adds time.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Distributions whose versions shape the numbers.
LIBRARIES = ("memstream", "duckdb", "pyarrow", "msgspec", "cryptography", "uuid-utils", "rich")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _filesystem(path: Path) -> str | None:
    """The file system type holding ``path`` (fsync costs depend on it)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    best, fs = "", None
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and target.startswith(parts[1]) and len(parts[1]) > len(best):
            best, fs = parts[1], f"{parts[2]} ({parts[0]} on {parts[1]})"
    return fs


def _git_commit() -> dict[str, Any] | None:
    """The commit of the source tree this package runs from, when it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(workdir: Path) -> dict[str, Any]:
    """CPU, memory, disk, Python and library versions of this run."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["sqlite"] = sqlite3.sqlite_version
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "load_average": list(load) if load else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "libraries": versions,
        "workdir_filesystem": _filesystem(workdir),
        "source": _git_commit(),
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements (the noise is part of the result)."""
    return {"median": median(values), "min": float(min(values)), "max": float(max(values))}


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


@contextmanager
def clean_heap() -> Iterator[None]:
    """Start a timed phase with no garbage left over from the previous one.

    The collector stays on during the phase: its cost is part of what is measured.
    """
    gc.collect()
    yield


def scaled(base: int, scale: float, minimum: int) -> int:
    return max(minimum, round(base * scale))


# -- scratch space ----------------------------------------------------------------------------


class Scratch:
    """A temporary directory for one suite's stores, removed when the suite ends."""

    def __init__(self, parent: Path | None, suite: str):
        self.root = Path(tempfile.mkdtemp(prefix=f"memstream-bench-{suite}-", dir=parent))
        self._n = 0

    def new(self, name: str) -> Path:
        """A fresh, not yet existing path under the scratch root."""
        self._n += 1
        return self.root / f"{self._n:03d}-{name}"

    def remove(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- progress -------------------------------------------------------------------------------


class Reporter:
    """Progress bars for long phases (rich), or silence.

    ``task(description, total)`` returns an ``advance(n)`` callable; the bar ends when the
    phase's ``with`` block does. The same callable shape is what
    :class:`memstream.streams.embedded.EmbeddedRuntime` takes as its progress factory.
    """

    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None

    @contextmanager
    def running(self) -> Iterator[Reporter]:
        if not self.enabled:
            yield self
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        with self._progress:
            yield self
        self._progress = None

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        p = self._progress
        if p is None:
            yield lambda n: None
            return
        tid = p.add_task(description, total=total)
        try:
            yield lambda n: p.advance(tid, n)
        finally:
            p.update(tid, completed=p.tasks[tid].total)

    def factory(self, label: str) -> Callable[[str, int], Callable[[int], None]]:
        """A progress factory for ``MemoryStore.open``/``replay`` (bars for catch-up work)."""

        def make(what: str, total: int) -> Callable[[int], None]:
            p = self._progress
            if p is None:
                return lambda n: None
            tid = p.add_task(f"{label}: {what}", total=total)
            return lambda n: p.advance(tid, n)

        return make

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(text)


def thread_cpu_seconds() -> dict[int, float] | None:
    """CPU seconds (user and system) each thread of this process has used so far, by native
    thread id, from Linux's ``/proc`` (``None`` elsewhere). The kernel counts in clock ticks
    (10 ms here): meant for runs of seconds."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in tasks.iterdir():
        try:
            # the fields after the command name, which is in parentheses and may hold spaces
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


class Stopwatch:
    """Accumulates the time spent inside ``with sw:`` blocks (pauses in between)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t = 0.0

    def __enter__(self) -> Stopwatch:
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._t


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


# -- checking that the work was done ------------------------------------------------------------


class BenchError(RuntimeError):
    """A suite found that the store does not hold what it was sent: its numbers would lie."""


def store_counts(store: Any) -> dict[str, Any]:
    """What a store's log and projection hold, read back from the files (not from counters).

    ``digest`` fingerprints the current state of every memory, so two stores built from
    the same log can be compared without reading them whole.
    """
    store.flush()
    row = store.runtime.duck.query(
        "SELECT (SELECT count(*) FROM audit) AS audit_rows, "
        "(SELECT count(*) FROM audit WHERE status = 'accepted') AS accepted, "
        '(SELECT max("offset") FROM audit) AS last_offset, '
        "(SELECT count(*) FROM versions) AS versions, "
        "(SELECT count(*) FROM memories) AS memories, "
        "(SELECT coalesce(sum(hash(memory_id, version, revision, state, tags)), 0) "
        " FROM memories)::VARCHAR AS digest"
    )[0]
    return {"log_records": store.head + 1, **row}


def expect_counts(
    counts: dict[str, Any], *, events: int, creates: int, what: str
) -> dict[str, Any]:
    """Raise :class:`BenchError` unless every event is in the log, decided and accepted."""
    want = {
        "log_records": events,
        "audit_rows": events,
        "accepted": events,
        "last_offset": events - 1,
        "versions": events,
        "memories": creates,
    }
    wrong = {k: (counts.get(k), v) for k, v in want.items() if counts.get(k) != v}
    if wrong:
        raise BenchError(f"{what}: the store does not hold what was sent (got, expected): {wrong}")
    return counts
