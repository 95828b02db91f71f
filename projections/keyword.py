"""A persistent BM25 keyword index of memories, over tantivy.

Semantic search misses exact tokens (names, error codes, ticket numbers) that keyword
search finds; the two are fused later. This store is a projection of the event log like
the vector index: it is fed upserts and removals in batches, committed with the log
offset it covers, and rebuilt from the log when it is missing or cannot be trusted.

Design choices:

* Memory text is indexed but never stored: the index keeps only what BM25 needs (terms,
  their frequencies and field lengths), so plaintext of (encrypted-at-rest) memories does
  not leak into a second copy. Only ``memory_id`` is stored, to name the hits.
* User queries never reach tantivy's query parser. Its syntax (``AND``, ``field:value``,
  quotes, brackets, ``^``, ``~``) would turn a question like "what's C++'s (new) syntax?"
  into a parse error or a different query. Instead the query text runs through the very
  analyzer used for indexing and the resulting terms are OR-ed as term queries, scored by
  BM25. Any string is safe.
* Writes are batched: one long-lived writer, documents buffered by :meth:`upsert` and
  :meth:`remove`, made durable and visible by :meth:`commit`, one commit per batch.
* :meth:`commit` writes ``manifest.json`` (offset covered, analyzer, format) atomically
  after tantivy's own commit. A crash between the two leaves the index ahead of the
  manifest; replaying the log from the manifest's offset is harmless because upserts
  (delete then add, by ``memory_id``) and removals are idempotent.
* A removal only marks a document deleted: its terms stay in the segment's term
  dictionary (readable with tantivy's API) until segments are merged, which tantivy's
  policy may never do. A removal because of an *erase* therefore leaves the index
  ``purge_pending`` (recorded in the manifest, so a crash does not forget it), and
  :meth:`purge` rewrites it from the live documents into fresh segments and deletes
  every old file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import tantivy
from memstream.projections.errors import IndexUnusable
from memstream.projections.snapshot import MANIFEST_NAME, read_manifest, write_manifest

__all__ = ["IndexUnusable", "KeywordIndex"]

FORMAT = "memstream.keyword-index"
FORMAT_VERSION = 1
TOKENIZER_NAME = "memstream_en_v1"
# Describes the analyzer chain; changing the chain must change this string (and the
# tokenizer name), which makes existing indexes unusable and so rebuilt.
ANALYZER = "simple|remove_long:40|lowercase|ascii_fold|stopword:english|stemmer:english"
MAX_QUERY_TERMS = 256
_SCHEMA_FIELDS = {
    "memory_id": ("raw", True),
    "namespace": ("raw", False),
    "text": (TOKENIZER_NAME, False),
    "own": (TOKENIZER_NAME, False),
    "tag": ("raw", False),
}
#: The fields a query can search: ``text`` is what the search indexes see of a memory (its
#: text with its context, projections/context.py), ``own`` its text alone.
FIELDS = ("text", "own")


def _analyzer() -> tantivy.TextAnalyzer:
    """English analyzer: stemming lets "meetings" match "meeting", folding "café" "cafe"."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.stopword("english"))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("memory_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("namespace", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("text", stored=False, tokenizer_name=TOKENIZER_NAME, index_option="freq")
    builder.add_text_field("own", stored=False, tokenizer_name=TOKENIZER_NAME, index_option="freq")
    builder.add_text_field("tag", stored=False, tokenizer_name="raw", index_option="basic")
    return builder.build()


#: A document: ``(memory_id, namespace, text[, own[, tags]])``.
Doc = tuple[str, str, str] | tuple[str, str, str, str] | tuple[str, str, str, str, Sequence[str]]


def _document(
    memory_id: str,
    namespace: str,
    text: str,
    own: str | None = None,
    tags: Sequence[str] = (),
) -> Any:
    own = text if own is None else own
    return tantivy.Document(
        memory_id=memory_id, namespace=namespace, text=text, own=own, tag=list(tags)
    )


def _explained(node: Any, found: dict[str, float]) -> None:
    """Collect N and avgdl from a tantivy BM25 explanation."""
    if isinstance(node, dict):
        description = str(node.get("description", ""))
        for name in ("N", "avgdl"):
            if description.startswith(name + ","):
                found[name] = float(node["value"])
        for child in node.get("details") or ():
            _explained(child, found)


def _check_field(field: str) -> None:
    if field not in FIELDS:
        raise ValueError(f"field must be one of {FIELDS}, not {field!r}")


def _reraise_fatal(exc: BaseException) -> None:
    # tantivy surfaces Rust panics as pyo3's PanicException, a BaseException; those are
    # index problems, but interpreter exits and interrupts must pass through.
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
        raise exc


class KeywordIndex:
    """BM25 search over memory texts, filtered by namespace and/or allowed ids.

    ``KeywordIndex(directory)`` creates a new empty index; use :meth:`open` for an
    existing one. One instance writes a directory at a time (tantivy holds a lock file).
    Not for concurrent writers; searches may run from several threads.

    Args:
        directory: folder holding ``manifest.json`` and the tantivy files (``tantivy/``).
        overwrite: delete an index already in the folder first (to rebuild after
            :class:`IndexUnusable`); otherwise an existing index there is an error.
        heap_size: tantivy writer memory budget in bytes (documents buffered before
            tantivy flushes a segment on its own).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        heap_size: int = 64_000_000,
    ) -> None:
        root = Path(directory)
        data = root / "tantivy"
        if overwrite:
            # Only what this class creates is deleted, so a wrong path cannot wipe a folder.
            shutil.rmtree(data, ignore_errors=True)
            (root / MANIFEST_NAME).unlink(missing_ok=True)
        if (root / MANIFEST_NAME).exists() or (data / "meta.json").exists():
            raise FileExistsError(
                f"{str(root)!r} already holds a keyword index; open it with "
                "KeywordIndex.open() or pass overwrite=True to rebuild it"
            )
        data.mkdir(parents=True, exist_ok=True)
        self._setup(root, tantivy.Index(_schema(), path=str(data), reuse=False), heap_size)

    def _setup(self, root: Path, index: tantivy.Index, heap_size: int) -> None:
        self.directory = root
        self.heap_size = heap_size
        self.offset: int | None = None
        """The log offset covered by the last commit (``None`` before the first one)."""
        self.purge_pending = False
        """Whether an erased memory's terms may still be in a segment (see :meth:`purge`)."""
        self._lock = threading.RLock()
        self._writer: tantivy.IndexWriter | None = None
        self._analyzer = _analyzer()
        self._schema = _schema()
        self._index = index
        # Tokenizers are not persisted by tantivy: register on every open, before any
        # document is added or query built.
        self._index.register_tokenizer(TOKENIZER_NAME, self._analyzer)

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], *, heap_size: int = 64_000_000
    ) -> KeywordIndex:
        """Open a committed index; its ``offset`` says where to resume the log.

        Raises :class:`IndexUnusable` when the manifest is missing or malformed, the
        index was built with another analyzer or schema, or tantivy cannot open it.
        """
        root = Path(directory)
        manifest = cls.read_manifest(root)
        data = root / "tantivy"
        meta_path = data / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            fields = {
                field["name"]: (
                    field["options"]["indexing"]["tokenizer"],
                    bool(field["options"]["stored"]),
                )
                for field in meta["schema"]
            }
        except FileNotFoundError:
            raise IndexUnusable("tantivy/meta.json is missing", root) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexUnusable(f"tantivy/meta.json is unreadable ({exc!r})", root) from None
        if fields != _SCHEMA_FIELDS:
            raise IndexUnusable(f"index schema {fields} differs from {_SCHEMA_FIELDS}", root)
        try:
            index = cls.__new__(cls)
            index._setup(root, tantivy.Index.open(str(data)), heap_size)
            index._index.reload()
            index._index.searcher().search(tantivy.Query.all_query(), 1)
        except BaseException as exc:
            _reraise_fatal(exc)
            raise IndexUnusable(f"tantivy cannot open the index ({exc})", root) from None
        index.offset = manifest["offset"]
        index.purge_pending = bool(manifest.get("purge_pending", False))
        return index

    @classmethod
    def transient(cls, docs: Sequence[tuple[str, str, str]]) -> KeywordIndex:
        """An in-memory index of ``docs`` (same analyzer and scoring), for one query.

        Used to rank memories that are not in the persistent index (archived ones, or
        versions as of a past offset) with the same BM25 as live ones. Nothing is written
        to disk: no manifest, no plaintext.
        """
        index = cls.__new__(cls)
        index._setup(Path("<memory>"), tantivy.Index(_schema()), 15_000_000)
        if docs:
            index.upsert(docs)
            with index._lock:
                writer = index._get_writer()
                writer.commit()
                writer.wait_merging_threads()
                index._writer = None
        index._index.reload()
        return index

    @staticmethod
    def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
        """The committed manifest, or :class:`IndexUnusable` if missing or malformed."""
        manifest = read_manifest(
            Path(directory),
            FORMAT,
            FORMAT_VERSION,
            "keyword index",
            saved="committed",
            built_with={"analyzer": ANALYZER},
        )
        return manifest

    # -- writes --------------------------------------------------------------------------

    def _get_writer(self) -> tantivy.IndexWriter:
        if self._writer is None:
            try:
                self._writer = self._index.writer(heap_size=self.heap_size, num_threads=1)
            except ValueError as exc:
                raise RuntimeError(
                    f"keyword index {str(self.directory)!r} is being written by another "
                    f"KeywordIndex (in this or another process): {exc}"
                ) from exc
        return self._writer

    def upsert(self, docs: Sequence[Doc]) -> None:
        """Buffer ``(memory_id, namespace, text[, own[, tags]])`` documents, replacing
        same-id ones.

        ``text`` is what the indexes see of the memory (its text with its context), ``own``
        its text alone (default: ``text``), ``tags`` what a search may filter on. Visible
        to :meth:`search` after the next :meth:`commit`. Within a batch the last document
        of an id wins.
        """
        latest: dict[str, tuple[str, str, str, Sequence[str]]] = {}
        for position, doc in enumerate(docs):
            if len(doc) not in (3, 4, 5):
                shape = "(memory_id, namespace, text[, own[, tags]])"
                raise ValueError(f"document at position {position} must be {shape}")
            memory_id, namespace, text = doc[:3]
            own = doc[3] if len(doc) >= 4 else text  # type: ignore[misc]
            tags: Sequence[str] = doc[4] if len(doc) == 5 else ()  # type: ignore[misc]
            if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
                raise ValueError(f"tags of document {position} must be a list of str")
            for name, value in (("memory_id", memory_id), ("namespace", namespace)):
                if not isinstance(value, str) or not value:
                    raise ValueError(f"{name} of document {position} must be a non-empty str")
            for value in (text, own):
                if not isinstance(value, str):
                    raise ValueError(
                        f"text of memory {memory_id!r} is {type(value).__name__}, not str"
                    )
            latest[memory_id] = (namespace, text, own, tags)
        if not latest:
            return
        with self._lock:
            writer = self._get_writer()
            for memory_id, (namespace, text, own, tags) in latest.items():
                writer.delete_documents_by_term("memory_id", memory_id)
                writer.add_document(_document(memory_id, namespace, text, own, tags))

    def remove(self, ids: Iterable[str], *, erased: bool = False) -> None:
        """Buffer removals by memory id; unknown ids are ignored (idempotent).

        ``erased``: the memories were erased, so their terms must leave the files too:
        the index is left :attr:`purge_pending` until :meth:`purge` runs."""
        with self._lock:
            writer = self._get_writer()
            for memory_id in dict.fromkeys(ids):
                writer.delete_documents_by_term("memory_id", memory_id)
                self.purge_pending = self.purge_pending or erased

    def purge(self, docs: Iterable[Doc], offset: int) -> int:
        """Rewrite the index from ``docs``, the live documents, as covering ``offset``.

        Every document goes into fresh segments, and the files of the old ones (with the
        terms of removed documents in their dictionaries) are deleted. Costs about what
        indexing the live documents costs; the caller coalesces erasures before it calls.
        Returns how many documents the index holds.
        """
        with self._lock:
            writer = self._get_writer()
            writer.delete_all_documents()
            for memory_id, namespace, text, *rest in docs:
                writer.add_document(_document(memory_id, namespace, text, *rest))
            writer.commit()
            writer.garbage_collect_files()
            writer.wait_merging_threads()  # consumes the writer; the next write makes one
            self._writer = None
            self.purge_pending = False
            self.commit(offset)
            return len(self)

    def commit(self, offset: int) -> None:
        """Make buffered changes durable and searchable, recording ``offset`` as covered.

        ``offset`` is stored as given and returned by :meth:`open` (e.g. the next log
        offset to apply).
        """
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise TypeError(f"offset must be an int log offset, got {offset!r}")
        with self._lock:
            if self._writer is not None:
                self._writer.commit()
            self._index.reload()
            manifest = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "offset": offset,
                "analyzer": ANALYZER,
                "documents": self._index.searcher().num_docs,
                "purge_pending": self.purge_pending,
            }
            write_manifest(self.directory, manifest)
            self.offset = offset

    def rollback(self) -> None:
        """Discard changes buffered since the last commit."""
        with self._lock:
            if self._writer is not None:
                self._writer.rollback()

    def close(self) -> None:
        """Release the writer lock; uncommitted changes are discarded."""
        with self._lock:
            if self._writer is not None:
                writer, self._writer = self._writer, None
                writer.rollback()
                writer.wait_merging_threads()

    def __enter__(self) -> KeywordIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reads ---------------------------------------------------------------------------

    def __len__(self) -> int:
        """Committed, live documents."""
        return int(self._index.searcher().num_docs)

    def analyze(self, text: str) -> list[str]:
        """The index terms of ``text`` (what a query for it will look up)."""
        return list(self._analyzer.analyze(text))

    def statistics(
        self, terms: Sequence[str], field: str = "text"
    ) -> tuple[int, float | None, dict[str, int]]:
        """The BM25 statistics of this index's ``field`` for ``terms``: documents (N),
        average field length (``None`` if no term matches), and each term's document
        frequency, as tantivy's own scoring counts them (deleted documents count until a
        merge)."""
        _check_field(field)
        searcher = self._index.searcher()
        df = {t: int(searcher.doc_freq(field, t)) for t in terms}
        for term in sorted(df, key=lambda t: (-df[t], t)):
            if not df[term]:
                break
            query = tantivy.Query.term_query(self._schema, field, term)
            hits = searcher.search(query, limit=1, count=False).hits
            if not hits:
                continue
            found: dict[str, float] = {}
            _explained(json.loads(query.explain(searcher, hits[0][1]).to_json()), found)
            if "N" in found and "avgdl" in found:
                return int(found["N"]), found["avgdl"], df
        return int(searcher.num_docs), None, df

    def score_outside(
        self, query: str, docs: Sequence[tuple[str, str]], field: str = "text"
    ) -> list[tuple[str, float]]:
        """BM25 of ``(memory_id, text)`` documents that are not in this index, with the
        statistics of this index's ``field`` (pass what the indexes see of each memory for
        ``text``, its text alone for ``own``): what each would score as one more document.

        The formula is tantivy's (``k1 = 1.2``, ``b = 0.75``, ``idf = ln(1 + (N - n +
        0.5) / (n + 0.5))``) with N, the average length and each term's n taken from this
        index. Two differences from a document indexed here: the document's length is
        exact where tantivy stores lengths above 40 terms rounded, and it does not count
        itself in N or n. With no statistics to borrow (an empty index, or no query term
        in it) the average length is the documents' own. Only documents with a query
        term are returned, best first (ties by id).
        """
        terms = list(dict.fromkeys(self._analyzer.analyze(query)))[:MAX_QUERY_TERMS]
        if not terms or not docs:
            return []
        analyzed = [(memory_id, self._analyzer.analyze(text)) for memory_id, text in docs]
        n_docs, avgdl, df = self.statistics(terms, field)
        if avgdl is None or avgdl <= 0:
            avgdl = max(1.0, sum(len(t) for _, t in analyzed) / len(analyzed))
        n_docs = max(n_docs, 1)
        idf = {t: math.log(1.0 + (n_docs - df[t] + 0.5) / (df[t] + 0.5)) for t in terms}
        k1, b = 1.2, 0.75
        out = []
        for memory_id, tokens in analyzed:
            counts: dict[str, int] = {}
            for token in tokens:
                if token in idf:
                    counts[token] = counts.get(token, 0) + 1
            if not counts:
                continue
            norm = k1 * (1.0 - b + b * len(tokens) / avgdl)
            score = sum(idf[t] * (k1 + 1.0) * f / (f + norm) for t, f in counts.items())
            out.append((memory_id, score))
        out.sort(key=lambda h: (-h[1], h[0]))
        return out

    def search(
        self,
        query: str,
        k: int,
        namespaces: Sequence[str] | None = None,
        allowed_ids: Iterable[str] | None = None,
        field: str = "text",
        tags_any: Sequence[str] | None = None,
        tags_all: Sequence[str] = (),
    ) -> list[tuple[str, float]]:
        """Return up to ``k`` ``(memory_id, BM25 score)`` pairs, best first, by the BM25 of
        ``field`` (:data:`FIELDS`: ``text``, what the indexes see of a memory, or ``own``,
        its text without its context).

        Any query text is accepted: it is analyzed into terms (at most
        ``MAX_QUERY_TERMS`` distinct ones), and a document matches if it has any of them.
        A query with no indexable term (only punctuation or stop words) matches nothing.
        ``namespaces``, ``allowed_ids`` and ``tags_any`` (a memory holding any of them)
        restrict the result without changing scores, an empty collection allowing
        nothing; so does each tag of ``tags_all``.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be str, got {type(query).__name__}")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        _check_field(field)
        terms = list(dict.fromkeys(self._analyzer.analyze(query)))[:MAX_QUERY_TERMS]
        if not terms:
            return []
        schema = self._schema
        text_query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Should, tantivy.Query.term_query(schema, field, term))
                for term in terms
            ]
        )
        clauses = [(tantivy.Occur.Must, text_query)]
        filters: list[tuple[str, Iterable[str] | None]] = [
            ("namespace", namespaces), ("memory_id", allowed_ids), ("tag", tags_any),
        ]  # fmt: skip
        if isinstance(tags_all, str):
            raise TypeError("tag filter must be a collection of str, not a str")
        filters.extend(("tag", [tag]) for tag in dict.fromkeys(tags_all))
        for field, values in filters:
            if values is None:
                continue
            if isinstance(values, str):
                raise TypeError(f"{field} filter must be a collection of str, not a str")
            wanted = list(dict.fromkeys(values))
            if not wanted:
                return []
            restriction = tantivy.Query.term_set_query(schema, field, wanted)
            # Score 0 so a filter narrows the result without shifting BM25 scores.
            clauses.append((tantivy.Occur.Must, tantivy.Query.const_score_query(restriction, 0.0)))
        final = clauses[0][1] if len(clauses) == 1 else tantivy.Query.boolean_query(clauses)
        searcher = self._index.searcher()
        result = searcher.search(final, limit=k, count=False)
        return [
            (searcher.doc(address)["memory_id"][0], float(score)) for score, address in result.hits
        ]
