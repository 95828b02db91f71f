"""A processor registered once by an installed package runs under both drivers.

The package (written here into a folder on the path, with its distribution metadata and
an entry point in the ``memstream.processors`` group, as ``pip install`` would leave it)
keeps a file of every decided event it saw. The embedded store and a Kafka worker process
both run it, with no change in either driver.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from memstream.streams.processors import ENTRY_POINT_GROUP, ProcessorNotLoaded, registered

from memstream import MemoryStore
from memstream.kafka import KafkaMemoryStore

PLUGIN = '''
import json
from pathlib import Path


class Journal:
    """Appends one JSON line per decided event; the last line is its checkpoint."""

    name = "journal"

    def __init__(self, directory: Path):
        self.path = Path(directory) / "journal.jsonl"

    def start(self, ctx):
        if not self.path.exists():
            return -1
        lines = self.path.read_text().splitlines()
        return json.loads(lines[-1])["offset"] if lines else -1

    def process(self, batch):
        with self.path.open("a") as f:
            for logged, out in batch:
                f.write(json.dumps({"offset": logged.offset, "type": out.type,
                                    "status": out.status, "memory_id": out.memory_id}) + "\\n")

    def tick(self):
        pass

    def close(self):
        pass
'''


def install_plugin(site: Path, value: str = "memstream_journal:Journal") -> None:
    site.mkdir(parents=True, exist_ok=True)
    (site / "memstream_journal.py").write_text(PLUGIN)
    info = site / "memstream_journal-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: memstream-journal\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\njournal = {value}\n")


def journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_embedded_store_runs_a_registered_processor(tmp_path: Path, monkeypatch) -> None:
    install_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert "journal" in registered()
    root = tmp_path / "store"
    with MemoryStore.open(root, durability="os") as store:
        a = store.create("user/a", "one")
        store.archive(a.memory_id)
        store.flush()
    with MemoryStore.open(root, durability="os") as store:  # resumes from its checkpoint
        store.create("user/a", "two")
        store.flush()
    seen = journal(root / "state" / "processors" / "journal" / "journal.jsonl")
    assert [(e["offset"], e["type"]) for e in seen] == [
        (0, "create"),
        (1, "archive"),
        (2, "create"),
    ]


def test_a_broken_registration_names_the_package(tmp_path: Path, monkeypatch) -> None:
    install_plugin(tmp_path / "site", value="memstream_journal:Missing")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ProcessorNotLoaded, match="journal.*memstream_journal:Missing"):
        MemoryStore.open(tmp_path / "store", durability="os")


def test_a_kafka_worker_runs_the_same_registered_processor(deployment, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_plugin(site)
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    w = deployment.start_worker("w1", PYTHONPATH=path)
    deployment.serving()
    with KafkaMemoryStore(deployment.settings, api=w.url) as store:
        outs = [store.create(f"user/{i}", f"memory {i}") for i in range(8)]
        store.revise(outs[0].memory_id, "memory 0, revised")
    assert deployment.stop(w) == 0  # a clean stop: every processor catches up, then closes
    seen = {}
    for path in (w.data / "shards").glob("*/processors/journal/journal.jsonl"):
        partition = int(path.parent.parent.parent.name.rsplit("-", 1)[1])
        seen[partition] = journal(path)
    got = sorted((p, e["memory_id"], e["type"]) for p, es in seen.items() for e in es)
    want = sorted(
        [(o.partition, o.memory_id, "create") for o in outs]
        + [(outs[0].partition, outs[0].memory_id, "revise")]
    )
    assert got == want
    for entries in seen.values():  # each shard's journal: its offsets, once, in order
        assert [e["offset"] for e in entries] == list(range(len(entries)))
