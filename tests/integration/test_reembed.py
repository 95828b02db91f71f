"""Re-embedding a store with another model: real MiniLM first, then a tiny random BERT.

The second model is a randomly initialised BERT built from a transformers config (no
download), with MiniLM's tokenizer and 32 dimensions instead of 384, so its vectors cannot
be mistaken for the old ones: after the switch, the store's index must hold exactly what
that model computes, searches must take 32-dimensional vectors, and a second re-embed (and
every later open) must not run the model at all.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from memstream.projections import embedding as embedding_mod
from memstream.projections.embedding import TransformersEmbedder, default_model_path
from memstream.projections.models import MODEL_FILE, LazyEmbedder
from typer.testing import CliRunner

from memstream import MemoryStore
from memstream.bench.corpus import load_labelled_set
from memstream.cli import app
from memstream.reembed import StoreBusy, reembed

RETRIEVAL = Path(__file__).resolve().parents[1] / "data" / "retrieval"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("models") / "tiny-bert"
    torch.manual_seed(7)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512,
    )  # fmt: skip
    BertModel(config).eval().save_pretrained(path, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (default_model_path() / name).is_file():
            shutil.copy(default_model_path() / name, path / name)
    return path


@pytest.fixture(scope="module")
def texts() -> list[str]:
    memories, _ = load_labelled_set(RETRIEVAL)
    return list(memories.values())[:12]


class Calls:
    """Counts the texts every TransformersEmbedder of the process embeds (batches and
    queries)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[tuple[str, int]] = []
        self.fail_after: int | None = None
        original = TransformersEmbedder.embed
        calls = self

        def counted(model: TransformersEmbedder, batch):  # type: ignore[no-untyped-def]
            if calls.fail_after is not None and len(calls.batches) >= calls.fail_after:
                raise RuntimeError("interrupted")
            calls.batches.append((model.model_id, len(batch)))
            return original(model, batch)

        original_query = TransformersEmbedder.embed_query

        def counted_query(model: TransformersEmbedder, text):  # type: ignore[no-untyped-def]
            counted(model, [])  # a query: one text, on the single-text path
            calls.batches[-1] = (model.model_id, 1)
            return original_query(model, text)

        monkeypatch.setattr(embedding_mod.TransformersEmbedder, "embed", counted)
        monkeypatch.setattr(embedding_mod.TransformersEmbedder, "embed_query", counted_query)

    def texts(self, model_id: str | None = None) -> int:
        return sum(n for m, n in self.batches if model_id is None or m == model_id)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return Calls(monkeypatch)


@pytest.fixture
def filled(tmp_path: Path, texts: list[str]) -> tuple[Path, list[str]]:
    """A store searched with the default MiniLM: 12 memories, one of them archived."""
    root = tmp_path / "store"
    with MemoryStore.open(root, durability="os", semantic=True) as store:
        ids = [store.create("user/alice", t).memory_id for t in texts]
        store.archive(ids[-1])
        store.flush()
        assert store.semantic is not None and store.semantic.embedder.dim == 384
        assert len(store.semantic.vectors) == 11
    return root, ids


def test_reembed_switches_searches_to_the_new_model(
    filled: tuple[Path, list[str]], tiny_model: Path, texts: list[str], calls: Calls
) -> None:
    root, ids = filled
    tiny = TransformersEmbedder(tiny_model)
    old_id = LazyEmbedder().model_id
    ticks: list[tuple[str, int]] = []

    def progress(label: str, total: int):  # type: ignore[no-untyped-def]
        ticks.append((label, total))
        return lambda n: None

    result = reembed(root, tiny_model, batch_size=4, progress=progress)
    assert result.model_id == tiny.model_id and result.dim == 32
    assert result.previous_model_id == old_id
    assert result.memories == result.texts == 11  # the archived memory is not live
    assert result.embedded == 11 and result.already_cached == 0
    assert result.model_calls == 3  # batches of 4
    assert calls.texts(tiny.model_id) == 11 and calls.texts(old_id) == 0
    assert ("re-embedding memories", 11) in ticks
    assert result.rebuild["model_id"] == tiny.model_id
    assert "model_id" in result.rebuild["reason"] and result.rebuild["indexed"] == 11
    assert result.rebuild["model_calls"] == 0
    config = json.loads((root / MODEL_FILE).read_text())
    assert config["model_id"] == tiny.model_id and config["previous_model_id"] == old_id

    calls.batches.clear()
    with MemoryStore.open(root, durability="os", semantic=True) as store:
        store.flush()
        proj = store.semantic
        assert proj is not None and proj.vectors is not None
        assert proj.embedder.model_id == tiny.model_id and proj.rebuild_reason is None
        expected = tiny.embed(texts[:11])
        for memory_id, want in zip(ids[:11], expected, strict=True):
            assert float(proj.vectors.vector(memory_id) @ want) == pytest.approx(1.0, abs=1e-5)
        hits = store.search(vector=expected[3].tolist(), k=1)
        assert hits[0].memory.memory_id == ids[3]
        assert hits[0].semantic_score == pytest.approx(1.0, abs=1e-5)
        by_text = store.search(texts[5], k=1)  # the query is embedded with the new model
        assert by_text[0].memory.memory_id == ids[5]
        assert by_text[0].semantic_score == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(ValueError, match="dimension 384.*32"):
            store.search(vector=[0.1] * 384)
    # Opening and searching embedded only the two queries: memories came from the cache.
    assert [n for _, n in calls.batches] == [11, 1]  # the test's own embed, then one query
    assert calls.texts(old_id) == 0


def test_a_second_reembed_computes_nothing(
    filled: tuple[Path, list[str]], tiny_model: Path, calls: Calls
) -> None:
    root, _ = filled
    first = reembed(root, tiny_model, batch_size=4)
    assert first.embedded == 11
    calls.batches.clear()
    again = reembed(root, tiny_model, batch_size=4)
    assert again.embedded == 0 and again.model_calls == 0 and again.already_cached == 11
    assert again.previous_model_id == first.model_id
    assert again.rebuild["reason"] is None and again.rebuild["indexed"] == 11
    assert calls.batches == []


def test_an_interrupted_reembed_keeps_the_old_model_and_resumes(
    filled: tuple[Path, list[str]], tiny_model: Path, calls: Calls
) -> None:
    root, ids = filled
    calls.fail_after = 1  # the model dies on its second batch
    with pytest.raises(RuntimeError, match="interrupted"):
        reembed(root, tiny_model, batch_size=4)
    assert not (root / MODEL_FILE).exists()
    with MemoryStore.open(root, durability="os", semantic=True) as store:
        store.flush()
        assert store.semantic is not None and store.semantic.embedder.dim == 384
        assert len(store.search(vector=[0.05] * 384, k=3)) == 3
    calls.fail_after = None
    calls.batches.clear()
    resumed = reembed(root, tiny_model, batch_size=4)
    assert resumed.already_cached == 4 and resumed.embedded == 7
    assert calls.texts() == 7
    assert resumed.rebuild["indexed"] == 11


def test_switching_back_to_the_default_model_needs_no_embedding(
    filled: tuple[Path, list[str]], tiny_model: Path, calls: Calls
) -> None:
    root, _ = filled
    reembed(root, tiny_model, batch_size=4)
    calls.batches.clear()
    back = reembed(root, None)  # MiniLM's vectors are still in the cache
    assert back.model_id == LazyEmbedder().model_id and back.dim == 384
    assert back.embedded == 0 and calls.batches == []
    assert back.rebuild["indexed"] == 11 and back.rebuild["model_calls"] == 0


def test_missing_model_folder_is_named(filled: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, _ = filled
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        reembed(root, missing)
    result = CliRunner().invoke(app, ["reembed", str(root), "--model", str(missing), "--json"])
    assert result.exit_code == 2
    body = json.loads(result.stdout.strip().splitlines()[-1])
    assert "no-such-model" in body["message"]
    assert not (root / MODEL_FILE).exists()


def test_a_store_held_by_a_server_is_refused(
    filled: tuple[Path, list[str]], tiny_model: Path
) -> None:
    root, _ = filled
    with MemoryStore.open(root, durability="os"):
        (root / "server.json").write_text(
            json.dumps({"pid": 4242, "url": "http://127.0.0.1:9", "store": str(root)})
        )
        with pytest.raises(StoreBusy, match="server"):
            reembed(root, tiny_model)
        result = CliRunner().invoke(app, ["reembed", str(root), "--model", str(tiny_model)])
        assert result.exit_code == 3
        assert "held by a memstream server (pid 4242)" in result.stderr
        assert "stop the server" in result.stderr
    assert not (root / MODEL_FILE).exists()


def test_cli_reembeds_and_reports_json(
    filled: tuple[Path, list[str]], tiny_model: Path, calls: Calls
) -> None:
    root, _ = filled
    result = CliRunner().invoke(
        app, ["reembed", str(root), "--model", str(tiny_model), "--batch-size", "8", "--json"]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout.strip().splitlines()[-1])
    assert body["dim"] == 32 and body["embedded"] == 11 and body["model_calls"] == 2
    assert body["rebuild"]["indexed"] == 11
    assert np.isclose(calls.texts(), 11)


def test_a_backup_keeps_the_model_and_its_vectors(
    filled: tuple[Path, list[str]], tiny_model: Path, calls: Calls, tmp_path: Path
) -> None:
    root, ids = filled
    reembed(root, tiny_model, batch_size=4)
    calls.batches.clear()
    with MemoryStore.open(root, durability="os", semantic=True) as store:
        store.flush()
        dest = store.backup(tmp_path / "copy")
    assert (dest / MODEL_FILE).read_bytes() == (root / MODEL_FILE).read_bytes()
    with MemoryStore.open(dest, durability="os", semantic=True) as restored:
        restored.flush()
        assert restored.semantic is not None
        assert restored.semantic.embedder.model_id == TransformersEmbedder(tiny_model).model_id
        assert len(restored.semantic.vectors) == 11
    # the restored store rebuilt its index from the copied cache: no memory embedded again
    assert calls.texts() == 0
