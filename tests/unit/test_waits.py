"""Waits a user meets: a read while the embedding model loads, ``flush()``, the errors.

A read that waits for the search indexes while their model is still loading (a cold start
on a busy machine) waits for the load and says so; when a wait does run out, the error
names what lags, the offset it reached (never a runner's internal marker) and the fix;
``flush()`` waits until done unless given a timeout; every error a user can meet is
importable from ``memstream``.
"""

from __future__ import annotations

import builtins
import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from memstream.projections import models
from memstream.projections.processor import Decided, ProcessorContext
from memstream.streams.embedded import EmbeddedRuntime
from memstream.streams.embedded import runtime as runtime_module
from memstream.streams.settings import StoreSettings

import memstream
from memstream import MemoryStore, NotCaughtUp

ROOT = Path(__file__).resolve().parents[2]
LOAD_SECONDS = 3.0


class SlowModel:
    """Stands in for the transformers model: loading takes LOAD_SECONDS; vectors are
    deterministic per text."""

    def __init__(self, path: object = None, *, batch_size: int = 64, max_length: int = 256):
        time.sleep(LOAD_SECONDS)
        self.dim = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            rng = np.random.default_rng(abs(hash(text)) % (2**32))
            v = rng.standard_normal(self.dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out


@pytest.fixture
def slow_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "TransformersEmbedder", SlowModel)
    monkeypatch.setattr(models, "_models", {})  # nothing loaded yet in this process
    monkeypatch.setattr(runtime_module._Waiting, "SHOW_AFTER", 0.2)


class Progress:
    def __init__(self) -> None:
        self.labels: list[tuple[str, int]] = []

    def __call__(self, label: str, total: int):
        self.labels.append((label, total))
        return lambda n: None


def test_a_read_waits_for_the_model_to_load_and_says_so(
    tmp_path: Path, slow_model: None, caplog: pytest.LogCaptureFixture
) -> None:
    progress = Progress()
    caplog.set_level(logging.INFO)
    with MemoryStore.open(
        tmp_path / "s", semantic=True, read_wait=0.3, progress=progress,
        embedder=models.LazyEmbedder(),
    ) as store:  # fmt: skip
        tea = store.create("user/alice", "Alice drinks green tea")
        store.runtime.wait_for(tea.offset, timeout=60)  # the core projection (a busy machine)
        started = time.monotonic()
        hits = store.search("tea", namespaces=["user/alice"], min_offset=tea.offset)
        assert time.monotonic() - started > 0.3  # it waited past read_wait, for the load
        assert [h.memory.memory_id for h in hits] == [tea.memory_id]
    messages = [r.getMessage() for r in caplog.records]
    waiting = [m for m in messages if m.startswith("waiting for the search indexes")]
    assert waiting and re.search(
        r"loading the embedding model all-MiniLM-L6-v2 \(\d+ s so far\)", waiting[0]
    ), messages
    assert any(r.levelno == logging.WARNING for r in caplog.records if "waiting" in r.message)
    assert ("loading the embedding model all-MiniLM-L6-v2", 0) in progress.labels


def test_a_wait_that_runs_out_while_the_model_loads_names_it(
    tmp_path: Path, slow_model: None
) -> None:
    with MemoryStore.open(
        tmp_path / "s", semantic=True, read_wait=0.2, load_wait=0.3,
        embedder=models.LazyEmbedder(),
    ) as store:  # fmt: skip
        tea = store.create("user/alice", "Alice drinks green tea")
        store.runtime.wait_for(tea.offset, timeout=60)  # the core projection (a busy machine)
        with pytest.raises(NotCaughtUp) as caught:
            store.search("tea", min_offset=tea.offset)
        e = caught.value
        text = str(e)
        assert e.lagging.startswith("the search indexes (vector and keyword)")
        assert "processor 'semantic'" in text and f"reach offset {tea.offset}" in text
        assert "loading the embedding model all-MiniLM-L6-v2" in text
        assert "load_wait" in text and "read_wait" in text  # the fix
        assert e.reached >= -1 and "-2" not in text
        store.flush()  # no cap: it waits for the load
        assert store.search("tea", min_offset=tea.offset)


class Opening:
    """A processor whose start blocks until released, loading 'its model' meanwhile."""

    name = "slow"
    title = "the slow index"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.began = time.monotonic()

    def busy(self) -> str | None:
        if self.release.is_set():
            return None
        return f"loading the embedding model fake ({time.monotonic() - self.began:.0f} s so far)"

    def start(self, ctx: ProcessorContext) -> int:
        self.release.wait(30)
        return -1

    def process(self, batch: Sequence[Decided]) -> None:
        pass

    def tick(self) -> None:
        pass

    def close(self) -> None:
        self.release.set()


def _runtime(root: Path, processor: Opening, **options: float) -> MemoryStore:
    rt = EmbeddedRuntime(root, processors=[processor], options=StoreSettings(**options))
    return MemoryStore(rt, actor="tester")


def test_not_caught_up_says_not_started_never_minus_two(tmp_path: Path) -> None:
    slow = Opening()
    with _runtime(tmp_path / "s", slow, read_wait=0.1, load_wait=0.2) as store:
        out = store.create("user/a", "x")
        store.runtime.wait_for(out.offset, timeout=60)
        with pytest.raises(NotCaughtUp) as caught:
            store.runtime.wait_for_processors(out.offset)
        e = caught.value
        assert (e.wanted, e.reached, e.started) == (out.offset, -1, False)
        assert str(e).startswith(
            f"the slow index (processor 'slow') did not reach offset {out.offset} within "
        )
        assert "it has not started yet: loading the embedding model fake" in str(e)
        assert "-2" not in str(e)
        slow.release.set()
        store.runtime.wait_for_processors(out.offset, timeout=10)


def test_the_projection_names_itself_when_it_lags() -> None:
    e = NotCaughtUp(12, 7, 10.0)
    assert str(e).startswith("the projection did not reach offset 12 within 10.0 s: it reached")
    assert "offset 7 (lag 5)" in str(e) and "read_wait" in str(e)


def test_flush_waits_until_done_and_times_out_only_when_asked(tmp_path: Path) -> None:
    slow = Opening()
    with _runtime(tmp_path / "s", slow, read_wait=0.05) as store:
        store.create("user/a", "x")
        with pytest.raises(NotCaughtUp, match=r"flush\(\) without a timeout"):
            store.flush(timeout=0.3)
        threading.Timer(1.0, slow.release.set).start()  # beyond read_wait and the timeout
        started = time.monotonic()
        store.flush()
        assert time.monotonic() - started >= 0.5
        assert store.runtime.runner.checkpoint == store.head


def test_flush_shows_its_progress_on_long_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module._Waiting, "SHOW_AFTER", 0.1)
    slow = Opening()
    progress = Progress()
    rt = EmbeddedRuntime(tmp_path / "s", processors=[slow], progress=progress)
    with MemoryStore(rt, actor="tester") as store:
        store.create("user/a", "x")
        threading.Timer(1.5, slow.release.set).start()
        store.flush()
    labels = [label for label, _ in progress.labels]
    assert "loading the embedding model fake" in labels
    assert "the slow index (processor 'slow'): catching up" in labels


# -- every error a user can meet is importable from memstream ----------------------------------


def _exception_classes() -> set[str]:
    """Names of the exception classes the project defines (any depth of subclassing)."""
    defined: dict[str, list[str]] = {}
    for folder in ("memstream", "streams", "projections", "schemas"):
        for path in (ROOT / folder).rglob("*.py"):
            for name, bases in re.findall(r"^class (\w+)\(([^)]*)\)", path.read_text(), re.M):
                defined.setdefault(name, []).extend(
                    b.strip().split(".")[-1] for b in bases.split(",")
                )
    known = {
        n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)
    }
    errors: set[str] = set()
    while True:
        more = {
            n for n, bases in defined.items() if n not in errors and set(bases) & (known | errors)
        }
        if not more:
            return errors
        errors |= more


def test_every_error_the_docs_name_is_importable_from_memstream() -> None:
    errors = _exception_classes()
    docs = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "ops").glob("*.md")]
    named = {
        name
        for doc in docs
        for name in re.findall(r"`(?:memstream\.)?(?:\w+\.)*([A-Z]\w+)`", doc.read_text())
        if name in errors
    }
    assert {"NotCaughtUp", "InvalidTransition", "MemoryFrozen", "VersionConflict"} <= named
    for name in sorted(named):
        cls = getattr(memstream, name, None)
        assert isinstance(cls, type) and issubclass(cls, BaseException), name
        assert name in memstream.__all__, name
    for name in memstream.errors.__all__:  # and every error memstream.errors offers
        if name != "rejection":  # a function, not an error
            assert getattr(memstream, name) is getattr(memstream.errors, name), name
