"""KeywordIndex against real tantivy: BM25 search, filters, safety of user text, recovery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import tantivy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memstream.projections.errors import IndexUnusable
from memstream.projections.keyword import MANIFEST_NAME, KeywordIndex

from memstream.bench.corpus import evaluate_recall, load_labelled_set

RETRIEVAL_DATA = Path(__file__).resolve().parents[1] / "data" / "retrieval"

DOCS = [
    ("m1", "user/alice", "Alice prefers green tea in the morning and coffee after lunch."),
    ("m2", "user/alice", "The quarterly planning meeting moved to Thursday at 10:30."),
    ("m3", "user/bob", "Bob prefers green tea too, but only jasmine tea."),
    ("m4", "user/bob", "Deploys to the staging cluster run every Friday at 17:00."),
    ("m5", "team/infra", "Error E1234 means the VPN gateway certificate expired."),
]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[KeywordIndex]:
    kw = KeywordIndex(tmp_path / "kw")
    kw.upsert(DOCS)
    kw.commit(offset=5)
    yield kw
    kw.close()


def ids(hits: list[tuple[str, float]]) -> list[str]:
    return [memory_id for memory_id, _ in hits]


def test_bm25_ranks_matching_documents(index: KeywordIndex) -> None:
    hits = index.search("jasmine tea", 10)
    assert ids(hits)[0] == "m3"  # has the rare term and "tea" twice
    assert set(ids(hits)) == {"m1", "m3"}
    assert all(score > 0 for _, score in hits)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert ids(index.search("e1234", 3)) == ["m5"]  # exact tokens such as error codes
    assert index.search("kangaroo", 3) == []


def test_stemming_and_case_folding(index: KeywordIndex) -> None:
    assert ids(index.search("MEETINGS planned", 3)) == ["m2"]
    assert ids(index.search("deploying", 3)) == ["m4"]


def test_changes_are_visible_after_commit_only(index: KeywordIndex) -> None:
    index.upsert([("m6", "user/alice", "Alice's passport expires in November.")])
    assert index.search("passport", 3) == []
    index.commit(offset=6)
    assert ids(index.search("passport", 3)) == ["m6"]
    index.upsert([("m7", "user/alice", "Renew the passport photo.")])
    index.rollback()
    index.commit(offset=7)
    assert ids(index.search("passport", 3)) == ["m6"]


def test_upsert_replaces_by_memory_id(index: KeywordIndex) -> None:
    index.upsert([("m1", "user/alice", "Alice now drinks hot chocolate instead.")])
    index.commit(offset=6)
    assert len(index) == 5
    assert "m1" not in ids(index.search("green tea morning", 10))
    assert ids(index.search("chocolate", 10)) == ["m1"]


def test_last_document_of_an_id_wins_within_a_batch(tmp_path: Path) -> None:
    with KeywordIndex(tmp_path) as kw:
        kw.upsert([("a", "ns", "first words"), ("a", "ns", "second words")])
        kw.commit(offset=1)
        assert len(kw) == 1
        assert kw.search("first", 5) == []
        assert ids(kw.search("second", 5)) == ["a"]


def test_remove_is_idempotent(index: KeywordIndex) -> None:
    index.remove(["m3", "m3", "never-stored"])
    index.commit(offset=6)
    index.remove(["m3"])
    index.commit(offset=7)
    assert len(index) == 4
    assert ids(index.search("jasmine tea", 10)) == ["m1"]


def test_namespace_filter_restricts_without_changing_scores(index: KeywordIndex) -> None:
    everything = dict(index.search("green tea", 10))
    bob = index.search("green tea", 10, namespaces=["user/bob"])
    assert ids(bob) == ["m3"]
    assert bob[0][1] == pytest.approx(everything["m3"])
    both = index.search("green tea", 10, namespaces=["user/bob", "user/alice"])
    assert set(ids(both)) == {"m1", "m3"}
    assert index.search("green tea", 10, namespaces=[]) == []
    assert index.search("green tea", 10, namespaces=["user/carol"]) == []


def test_allowed_ids_filter(index: KeywordIndex) -> None:
    assert ids(index.search("tea", 10, allowed_ids={"m1", "m5"})) == ["m1"]
    assert ids(index.search("tea", 10, namespaces=["user/bob"], allowed_ids={"m1"})) == []
    assert index.search("tea", 10, allowed_ids=set()) == []


NASTY = [
    "",
    "   ",
    '"',
    "'unbalanced",
    "AND",
    "OR NOT",
    "text:tea",
    "memory_id:m1",
    "namespace:user/bob AND tea",
    "tea^10",
    "tea~2",
    "te*",
    "(tea OR",
    "[a TO z]",
    "{}",
    "+tea -coffee",
    "C++ & C# || !java",
    "a\\b\\",
    "/regex.*/",
    "what's the user's (new) schedule?!",
    "\x00\x01",
    "😀 emoji ☕ tea",
    "ünïcödé café",
    "x" * 10_000,
    " ".join(["tea"] * 2_000),
]


@pytest.mark.parametrize("query", NASTY)
def test_query_syntax_and_punctuation_never_raise(index: KeywordIndex, query: str) -> None:
    hits = index.search(query, 5)
    assert isinstance(hits, list)


def test_syntax_characters_are_treated_as_plain_words(index: KeywordIndex) -> None:
    # Parsed as a query, "text:tea" would search the field; here it is the words text, tea.
    assert set(ids(index.search("text:tea", 10))) == {"m1", "m3"}
    assert ids(index.search("memory_id:m5", 10)) == []
    assert ids(index.search("what's the user's (vpn) gateway?!", 10)) == ["m5"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=200))
def test_any_text_is_a_safe_query(index: KeywordIndex, query: str) -> None:
    index.search(query, 5, namespaces=["user/alice"], allowed_ids={"m1", "m2"})


def test_text_is_indexed_but_not_stored(tmp_path: Path) -> None:
    secret = "Zebulon keeps the vault combination under the blue ceramic teapot."
    with KeywordIndex(tmp_path / "kw") as kw:
        kw.upsert([("s1", "user/z", secret)])
        kw.commit(offset=1)
        assert ids(kw.search("ceramic teapot", 1)) == ["s1"]
    raw = tantivy.Index.open(str(tmp_path / "kw" / "tantivy"))
    searcher = raw.searcher()
    hit = searcher.search(tantivy.Query.all_query(), 1).hits[0][1]
    assert searcher.doc(hit).to_dict() == {"memory_id": ["s1"]}  # no text, no namespace
    for path in (tmp_path / "kw").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert b"vault combination" not in content, path
            assert secret.encode() not in content, path


def test_persistence_and_manifest_offset(tmp_path: Path) -> None:
    kw = KeywordIndex(tmp_path / "kw")
    assert kw.offset is None
    kw.upsert(DOCS)
    kw.commit(offset=41)
    kw.upsert([("m9", "user/alice", "uncommitted words vanish")])
    kw.close()

    reopened = KeywordIndex.open(tmp_path / "kw")
    assert reopened.offset == 41
    assert json.loads((tmp_path / "kw" / MANIFEST_NAME).read_text())["offset"] == 41
    assert len(reopened) == 5 and reopened.search("uncommitted", 3) == []
    assert ids(reopened.search("jasmine", 3)) == ["m3"]
    reopened.upsert([("m9", "user/alice", "written after reopening")])
    reopened.commit(offset=42)
    reopened.close()
    again = KeywordIndex.open(tmp_path / "kw")
    assert again.offset == 42 and ids(again.search("reopening", 3)) == ["m9"]
    again.close()


def test_create_refuses_an_existing_index_unless_overwriting(index: KeywordIndex) -> None:
    directory = index.directory
    index.close()
    with pytest.raises(FileExistsError, match="KeywordIndex.open"):
        KeywordIndex(directory)
    (directory / "unrelated.txt").write_text("not ours")
    with KeywordIndex(directory, overwrite=True) as fresh:
        assert len(fresh) == 0 and fresh.offset is None
    assert (directory / "unrelated.txt").read_text() == "not ours"


def test_one_writer_per_directory(index: KeywordIndex) -> None:
    index.upsert([("m8", "ns", "holding the writer")])
    other = KeywordIndex.open(index.directory)
    with pytest.raises(RuntimeError, match="another"):
        other.upsert([("m9", "ns", "second writer")])


def test_missing_index_is_unusable(tmp_path: Path) -> None:
    with pytest.raises(IndexUnusable, match="never committed"):
        KeywordIndex.open(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "unreadable"),
        ('{"format": "something-else", "version": 1, "offset": 1}', "not a memstream"),
        ('{"format": "memstream.keyword-index", "version": 1, "offset": "7"}', "analyzer"),
        ("\xff\xfe", "unreadable"),
    ],
)
def test_corrupt_manifest_is_unusable(index: KeywordIndex, content: str, match: str) -> None:
    index.close()
    (index.directory / MANIFEST_NAME).write_text(content, encoding="latin-1")
    with pytest.raises(IndexUnusable, match=match):
        KeywordIndex.open(index.directory)


def test_bad_offset_and_other_analyzer_are_unusable(index: KeywordIndex) -> None:
    index.close()
    path = index.directory / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "offset": "7"}))
    with pytest.raises(IndexUnusable, match="offset"):
        KeywordIndex.open(index.directory)
    path.write_text(json.dumps({**manifest, "analyzer": "whitespace"}))
    with pytest.raises(IndexUnusable, match="analyzer 'whitespace'"):
        KeywordIndex.open(index.directory)


def test_corrupt_tantivy_files_are_unusable(index: KeywordIndex) -> None:
    index.close()
    meta = index.directory / "tantivy" / "meta.json"
    meta.write_text("garbage")
    with pytest.raises(IndexUnusable, match="meta.json"):
        KeywordIndex.open(index.directory)
    meta.unlink()
    with pytest.raises(IndexUnusable, match="missing"):
        KeywordIndex.open(index.directory)


def test_deleted_segment_file_is_unusable(index: KeywordIndex) -> None:
    index.close()
    segment = next((index.directory / "tantivy").glob("*.term"))
    segment.unlink()
    with pytest.raises(IndexUnusable, match="tantivy cannot open"):
        KeywordIndex.open(index.directory)


def test_k_must_be_positive(index: KeywordIndex) -> None:
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search("tea", 0)


def test_keyword_recall_on_the_labelled_paraphrases(tmp_path: Path) -> None:
    """Keyword search finds a good share of paraphrased facts despite partial word overlap."""
    memories, questions = load_labelled_set(RETRIEVAL_DATA)
    assert len(memories) >= 200 and len(questions) == len(memories)
    with KeywordIndex(tmp_path / "kw") as kw:
        kw.upsert([(memory_id, "user/me", text) for memory_id, text in memories.items()])
        kw.commit(offset=len(memories))
        scores = evaluate_recall(lambda q: ids(kw.search(q, 10)), questions)
    assert scores[10] >= 0.4
    assert scores[1] <= scores[5] <= scores[10]


def test_outside_documents_score_with_the_index_statistics(index: KeywordIndex) -> None:
    """A document outside the index scores as tantivy scores the same text inside it
    (same N, document frequencies and average length): one scale for both."""
    query = "green tea prefers Friday"
    inside = dict(index.search(query, 10))
    outside = dict(index.score_outside(query, [(m, text) for m, _, text in DOCS]))
    assert inside.keys() == outside.keys() == {"m1", "m3", "m4"}
    for memory_id, score in inside.items():
        assert outside[memory_id] == pytest.approx(score, rel=1e-5)
    n_docs, avgdl, df = index.statistics(["tea", "absent"])
    assert n_docs == len(DOCS) and avgdl and df == {"tea": 2, "absent": 0}
    # A term the index never saw is as rare as can be; no query term, no score.
    assert index.score_outside("zeppelin", [("x", "a zeppelin")])[0][1] > 0
    assert index.score_outside("the", [("x", "the")]) == []


def test_own_field_holds_the_text_without_its_context(tmp_path: Path) -> None:
    with KeywordIndex(tmp_path / "own") as kw:
        kw.upsert(
            [
                ("t1", "chat", "Maya, answering Tobias: a dog?\nYes, a beagle.", "Yes, a beagle."),
                ("t2", "chat", "Maya has a cat named Tobias"),  # no own text: the text
            ]
        )
        kw.commit(offset=1)
        assert set(ids(kw.search("Maya", 5))) == {"t1", "t2"}
        assert ids(kw.search("Maya", 5, field="own")) == ["t2"]
        assert ids(kw.search("beagle", 5, field="own")) == ["t1"]
        # Outside documents are scored with the statistics of the field asked for.
        inside = kw.search("beagle tobias", 5, field="own", allowed_ids=["t1"])
        outside = kw.score_outside("beagle tobias", [("t1", "Yes, a beagle.")], field="own")
        assert outside[0][1] == pytest.approx(inside[0][1], rel=0.2)
        with pytest.raises(ValueError, match="field"):
            kw.search("Maya", 5, field="context")


def test_tag_filters_narrow_without_changing_scores(tmp_path: Path) -> None:
    kw = KeywordIndex(tmp_path / "tags")
    try:
        kw.upsert([
            ("a", "ns", "green tea in the morning", "green tea in the morning", ["drinks", "am"]),
            ("b", "ns", "green tea after lunch", "green tea after lunch", ["drinks"]),
            ("c", "ns", "green light for the deploy", "green light for the deploy", []),
        ])  # fmt: skip
        kw.commit(offset=1)
        scores = dict(kw.search("green tea", 10))
        assert set(ids(kw.search("green tea", 10, tags_any=["drinks"]))) == {"a", "b"}
        assert ids(kw.search("green tea", 10, tags_all=["drinks", "am"])) == ["a"]
        assert ids(kw.search("green", 10, tags_any=["drinks"], tags_all=["am"])) == ["a"]
        assert dict(kw.search("green tea", 10, tags_any=["drinks"])) == {
            m: s for m, s in scores.items() if m in {"a", "b"}
        }
        assert kw.search("green tea", 10, tags_any=[]) == []
        kw.upsert([("b", "ns", "green tea after lunch", "green tea after lunch", ["food"])])
        kw.commit(offset=2)
        assert ids(kw.search("green tea", 10, tags_any=["drinks"])) == ["a"]
        with pytest.raises(TypeError):
            kw.search("green", 10, tags_all="drinks")
    finally:
        kw.close()
