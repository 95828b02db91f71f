"""Search: symbolic filters, semantic (hnswlib) and keyword (tantivy) rankings, fused.

1. **Candidates.** The filters (namespaces, tags any/all, states, kinds, time ranges on
   ``created_at``/``updated_at``, metadata equality) select from the current-memory view
   (:mod:`~memstream.projections.views`: set intersections, then the time ranges and the
   metadata checked per candidate), or, for ``as_of`` and without a view, are one DuckDB
   query over the current state or the versions valid then. The candidate set is exact:
   ranking only ever happens *within* it, so a selective filter never loses recall (the
   vector index scores small candidate sets exactly, and falls back to exact scoring when
   a filtered graph search finds too few).
2. **Semantic ranking.** Live memories (``active``/``activated``) are in the vector
   index. Candidates outside it (archived ones with ``include_archived``, other states asked
   for explicitly, every candidate of an ``as_of`` search, and all of them with
   ``exact=True``) are scored by brute force with their vectors from the durable embedding
   cache (by content hash; a miss is embedded once and cached) or the producer's vector.
3. **Keyword ranking.** BM25 over the persistent keyword index restricted to the
   candidates (scores unchanged by the restriction); candidates outside the index
   (archived, as of an offset) are scored by the same formula with that index's
   statistics (:meth:`KeywordIndex.score_outside`), so one scale ranks them all and every
   path, ``exact=True`` included, ranks a memory the same way.
4. **Fusion.** By default (``alpha=None``) the semantic score plus a small bonus for the
   BM25 of the memory's own text (:mod:`~memstream.projections.fusion`). With an
   ``alpha``, weighted reciprocal-rank fusion::

       score(d) = alpha / (RRF_K + rank_sem(d)) + (1 - alpha) / (RRF_K + rank_kw(d))

   ranks start at 1, a list a memory is absent from adds 0, ``RRF_K = 60``. Ranks, not
   raw scores, are fused because cosine similarities and BM25 scores live on unrelated
   scales (BM25 grows with query length and corpus statistics). ``alpha = 1`` is semantic
   only, ``alpha = 0`` keyword only; memories with a fused score of 0 are dropped. The
   default comes from the measurement in ``docs/search.md``.
5. **Query hints.** A query naming a period ("in May 2023") ranks memories dated within
   it first, then memories whose metadata ``speaker`` it names (score bonuses; see
   :func:`_hinted`). The indexes see a memory's text with its metadata ``context``
   (:mod:`~memstream.projections.context`).

``exact=True`` scores every candidate by brute force (the reference that the approximate
path is tested against). ``as_of`` (an offset) answers over the versions valid then: per
memory the last transition at or before the offset gives its state and version, and its
text, tags and metadata come from that version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from memstream.schemas.lifecycle import STATES
from memstream.schemas.memcube import MemState
from memstream.schemas.views import Memory, SearchHit

from .context import indexed, stored_metadata
from .duck import DuckStore
from .embedding import unit_vector
from .facets import clauses as facet_clauses
from .fusion import KEYWORD_FIELD, blend
from .keyword import KeywordIndex
from .reads import CURRENT_EXPRESSIONS, CURRENT_SOURCE, view_from_row, view_select
from .semantic import LIVE_STATES, SemanticProjection
from .timehints import Period, date_of, period_of
from .usage import UsageTracker
from .views import MemoryViews

__all__ = ["DEFAULT_ALPHA", "RRF_K", "SearchQuery", "fuse", "search"]

#: Weight of the semantic ranking in the reciprocal-rank fusion; ``None`` (the default)
#: is the default ranking of projections/fusion.py (see docs/search.md for the measurement).
DEFAULT_ALPHA: float | None = None
#: The reciprocal-rank constant (the usual 60: damps the difference between top ranks).
RRF_K = 60
#: Added to the score of a memory dated within the period the query names (a fused
#: score is at most 1 / (RRF_K + 1), a default one below 1.07), and how much deeper the
#: lists are then.
TIME_HINT_BONUS = 4.0
TIME_HINT_DEPTH = 4
#: Added to the score of a memory whose metadata ``speaker`` is a word of the query.
SPEAKER_HINT_BONUS = 2.0
SPEAKER_KEY = "speaker"
_WORDS = re.compile(r"\w+")
KINDS = ("plaintext", "activation", "parameter")

#: Up to this many ids are fetched with a constant IN list, more with a list parameter.
_IN_LIST_MAX = 256

_dec = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()


@dataclass
class SearchQuery:
    """What to look for and where; see :meth:`memstream.MemoryStore.search`."""

    query: str | None = None
    vector: Sequence[float] | None = None
    namespaces: Sequence[str] | None = None
    k: int = 10
    tags_any: Sequence[str] | None = None
    tags_all: Sequence[str] | None = None
    states: Sequence[str] | None = None
    kinds: Sequence[str] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    include_archived: bool = False
    #: an offset; a caller may give a time, which the backend resolves to an offset (its
    #: log's last one recorded by then) before :func:`search` runs the query
    as_of: int | datetime | None = None
    exact: bool = False
    #: ``None``: the default ranking (projections/fusion.py); a number from 0 to 1:
    #: weighted reciprocal-rank fusion with that semantic weight (1 semantic only)
    alpha: float | None = DEFAULT_ALPHA
    #: rank memories dated within a period the query names first, then memories whose
    #: speaker it names (projections/timehints.py)
    query_hints: bool = True
    #: set by the service for a caller who may read only part of the store: a memory is
    #: searched only if its namespace is in the first set or its id in the second
    scope: tuple[frozenset[str], frozenset[str]] | None = None

    def check(self, dim: int) -> None:
        """Refuse invalid input with a message naming the parameter and the fix."""
        if self.query is None and self.vector is None:
            raise ValueError("search needs query= (text) or vector= (a query vector)")
        if self.query is not None and not isinstance(self.query, str):
            raise ValueError(f"query must be a string, not {type(self.query).__name__}")
        if not isinstance(self.k, int) or isinstance(self.k, bool) or not 1 <= self.k <= 1000:
            raise ValueError(f"k must be an integer from 1 to 1000, not {self.k!r}")
        if self.alpha is not None and not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(
                f"alpha must be within [0, 1] (1 = semantic only, 0 = keyword only), "
                f"not {self.alpha!r}"
            )
        if self.alpha == 0.0 and not self.query:
            raise ValueError("alpha=0 ranks by keywords only: pass query= text")
        if self.vector is not None and len(self.vector) != dim:
            raise ValueError(
                f"vector has dimension {len(self.vector)}, the store's embedding model has "
                f"{dim}; pass a query vector of {dim} floats, or query= text"
            )
        for name, values, allowed in (
            ("states", self.states, STATES),
            ("kinds", self.kinds, KINDS),
        ):
            if values is None:
                continue
            if isinstance(values, str):
                raise ValueError(f"{name} must be a list of strings, not a string")
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"{name}: unknown {bad}; choose from {list(allowed)}")
        for name in ("created_after", "created_before", "updated_after", "updated_before"):
            when = getattr(self, name)
            if when is not None and when.tzinfo is None:
                raise ValueError(f"{name} must carry a timezone, e.g. 2026-01-01T00:00:00+00:00")
        for key in self.metadata:
            if not isinstance(key, str) or not key:
                raise ValueError(f"metadata filter keys must be non-empty strings, not {key!r}")

    def keywords_wanted(self) -> bool:
        """Whether the ranking uses keywords (query text, and not semantic only)."""
        return bool(self.query) and (self.alpha is None or self.alpha < 1.0)

    def wanted_states(self) -> list[str]:
        if self.states is not None:
            return list(dict.fromkeys(self.states))
        return list(LIVE_STATES) + (["archived"] if self.include_archived else [])

    def facets_only(self) -> bool:
        """Whether its filters are namespaces and tags only (the indexes hold those)."""
        return not (
            self.scope is not None or self.kinds or self.created_after or self.created_before or self.updated_after
            or self.updated_before or self.metadata
        )  # fmt: skip

    def has_filters(self) -> bool:
        return bool(
            self.namespaces is not None or self.scope is not None or self.tags_any or self.tags_all or self.kinds
            or self.created_after or self.created_before or self.updated_after
            or self.updated_before or self.metadata
        )  # fmt: skip


def fuse(
    semantic: Sequence[tuple[str, float]],
    keyword: Sequence[tuple[str, float]],
    alpha: float,
    k: int,
    rrf_k: int = RRF_K,
) -> list[tuple[str, float, float | None, float | None]]:
    """Weighted reciprocal-rank fusion: ``(memory_id, fused, semantic, keyword)``, best first.

    Ties are broken by the semantic rank, then the keyword rank, then the id, so results
    are deterministic. Memories whose fused score is 0 (only in a list of weight 0) are
    dropped.
    """
    if not keyword:
        # One list: its order is the fused order (a search's common case, kept cheap).
        ids = [m for m, _ in semantic]
        if alpha > 0.0 and len(set(ids)) == len(ids):
            return [
                (m, alpha / (rrf_k + rank), s, None) for rank, (m, s) in enumerate(semantic[:k], 1)
            ]
    sem = {m: (rank, s) for rank, (m, s) in enumerate(semantic, 1)}
    kw = {m: (rank, s) for rank, (m, s) in enumerate(keyword, 1)}
    big = len(sem) + len(kw) + 1
    rows = []
    for memory_id in dict.fromkeys([*sem, *kw]):
        rs, ss = sem.get(memory_id, (None, None))
        rk, sk = kw.get(memory_id, (None, None))
        score = 0.0
        if rs is not None:
            score += alpha / (rrf_k + rs)
        if rk is not None:
            score += (1.0 - alpha) / (rrf_k + rk)
        if score > 0.0:
            rows.append((-score, rs or big, rk or big, memory_id, ss, sk))
    rows.sort()
    return [(m, -neg, ss, sk) for neg, _, _, m, ss, sk in rows[:k]]


# -- DuckDB ------------------------------------------------------------------------------------


def _source(as_of: int | None) -> tuple[str, dict[str, str], list[Any]]:
    """FROM clause, expressions of the time-varying columns, and its parameters."""
    if as_of is None:
        return (
            CURRENT_SOURCE,
            {
                "state": "m.state", "namespace": "m.namespace", "frozen": "m.frozen",
                "version": "m.version", "revision": "m.revision", "updated_at": "m.updated_at",
                "updated_by": "m.updated_by", **CURRENT_EXPRESSIONS,
            },
            [],
        )  # fmt: skip
    return (
        '(SELECT * FROM transitions WHERE "offset" <= ? QUALIFY row_number() OVER '
        '(PARTITION BY memory_id ORDER BY "offset" DESC) = 1) t '
        "JOIN memories m ON m.memory_id = t.memory_id "
        "LEFT JOIN versions v ON v.memory_id = t.memory_id AND v.version = t.version "
        'LEFT JOIN audit a ON a."offset" = t."offset"',
        {
            "state": "t.state", "namespace": "t.namespace", "frozen": "t.frozen",
            "version": "t.version", "revision": "t.revision", "updated_at": "t.recorded_at",
            "updated_by": "coalesce(a.actor, m.updated_by)", "offset": 't."offset"',
        },
        [as_of],
    )  # fmt: skip


def _where(q: SearchQuery, e: dict[str, str]) -> tuple[list[str], list[Any]]:
    where = [f"list_contains(?, {e['state']})"]
    params: list[Any] = [q.wanted_states()]
    if q.namespaces is not None:
        where.append(f"list_contains(?, {e['namespace']})")
        params.append(list(q.namespaces))
    if q.scope is not None:
        where.append(f"(list_contains(?, {e['namespace']}) OR list_contains(?, m.memory_id))")
        params.extend([sorted(q.scope[0]), sorted(q.scope[1])])
    if q.tags_any:
        where.append("list_has_any(coalesce(v.tags, []), ?)")
        params.append(list(q.tags_any))
    if q.tags_all:
        where.append("list_has_all(coalesce(v.tags, []), ?)")
        params.append(list(q.tags_all))
    if q.kinds:
        where.append("list_contains(?, m.kind)")
        params.append(list(q.kinds))
    for col, op, val in (
        ("m.created_at", ">=", q.created_after), ("m.created_at", "<=", q.created_before),
        (e["updated_at"], ">=", q.updated_after), (e["updated_at"], "<=", q.updated_before),
    ):  # fmt: skip
        if val is not None:
            where.append(f"{col} {op} ?")
            params.append(val)
    for key, value in q.metadata.items():
        path = '$."' + key.replace('"', '\\"') + '"'
        where.append("CAST(json_extract(v.metadata, ?) AS VARCHAR) = ?")
        params.extend([path, _enc.encode(value).decode()])
    return where, params


@dataclass
class _Candidate:
    memory_id: str
    namespace: str
    state: str
    text: str | None
    content_hash: str | None
    vector: list[float] | None
    metadata: Any = None

    def indexed(self) -> tuple[str, str | None]:
        """What the indexes see of it: (text with its context, embedding-cache key)."""
        assert self.text is not None
        return indexed(self.text, self.content_hash, stored_metadata(self.metadata))


def _candidates(duck: DuckStore, q: SearchQuery) -> list[_Candidate]:
    source, e, params = _source(q.as_of)
    where, more = _where(q, e)
    with duck.reading() as cur:
        rows = cur.execute(
            f"SELECT m.memory_id, {e['namespace']}, {e['state']}, v.text, v.content_hash, v.vector, "
            "v.metadata "
            f"FROM {source} WHERE {' AND '.join(where)}",
            params + more,
        ).fetchall()
    return [_Candidate(*r) for r in rows]


def _memories(duck: DuckStore, ids: list[str], as_of: int | None) -> dict[str, Memory]:
    if not ids:
        return {}
    source, e, params = _source(as_of)
    ids = list(dict.fromkeys(ids))
    if len(ids) <= _IN_LIST_MAX:
        # A constant IN list is a filter DuckDB's optimizer plans around (measured 4-5x
        # faster here than testing every joined row against a list parameter).
        where, more = f"m.memory_id IN ({', '.join('?' * len(ids))})", ids
    else:
        where, more = "list_contains(?, m.memory_id)", [ids]
    with duck.reading() as cur:
        rows = cur.execute(
            f"SELECT {view_select(e)} FROM {source} WHERE {where}", params + more
        ).fetchall()
    return {m.memory_id: m for m in map(view_from_row, rows)}


# -- scoring -----------------------------------------------------------------------------------


def _exact_semantic(
    proj: SemanticProjection, query: npt.NDArray[np.float32], cands: list[_Candidate], n: int
) -> list[tuple[str, float]]:
    """Brute-force cosine over candidates, vectors from the producer or the cache."""
    scored = [c for c in cands if c.text is not None and c.content_hash is not None]
    if not scored:
        return []
    dim = proj.embedder.dim
    matrix = np.zeros((len(scored), dim), dtype=np.float32)
    own = []
    for i, c in enumerate(scored):
        if c.vector is not None and len(c.vector) == dim:
            v = np.asarray(c.vector, dtype=np.float32)
            norm = float(np.linalg.norm(v))
            if norm > 0 and np.isfinite(norm):
                matrix[i] = v / norm
                continue
        own.append(i)
    if own:
        keyed = [scored[i].indexed()[::-1] for i in own]  # (cache key, indexed text)
        matrix[own] = proj.cached_vectors(keyed)  # type: ignore[arg-type]
        # Owned like indexed vectors, so an erase drops these too.
        proj.embedder.cache.link(
            [(scored[i].memory_id, h) for i, (h, _) in zip(own, keyed, strict=True)]
        )  # type: ignore[misc]
    scores = matrix @ query
    order = np.lexsort((np.arange(len(scored)), -scores))[:n]
    return [(scored[i].memory_id, float(scores[i])) for i in order]


def _keyword_ranking(
    keywords: KeywordIndex,
    query: str,
    live: set[str],
    rest: list[_Candidate],
    depth: int,
    field: str = "text",
) -> list[tuple[str, float]]:
    """BM25 of the candidates, always with the persistent index's statistics.

    ``live`` candidates (now, not ``as_of``) are in the persistent index: it ranks them,
    restricted to their ids, exactly as an unfiltered search would (``exact=True``
    included). The ``rest`` (archived or other states, versions as of an offset) are not:
    they are scored by the same BM25 formula with that index's statistics (see
    :meth:`KeywordIndex.score_outside`), so one scale ranks them all and a live memory
    scores the same whichever else is a candidate.
    """
    hits = keywords.search(query, depth, allowed_ids=live, field=field) if live else []
    outside = [(c.memory_id, c.indexed()[0] if field == "text" else c.text) for c in rest if c.text]
    if outside:
        scored = keywords.score_outside(query, outside, field)  # type: ignore[arg-type]
        hits = sorted(hits + scored, key=lambda h: (-h[1], h[0]))
    return hits[:depth]


def _views(
    duck: DuckStore, views: MemoryViews | None, ids: list[str], as_of: int | None
) -> dict[str, Memory]:
    """The views of ``ids`` now (from the in-memory view) or as of an offset (DuckDB)."""
    if views is not None and as_of is None:
        return views.memories(ids)
    return _memories(duck, ids, as_of)


def _both_signals(
    proj: SemanticProjection,
    q: SearchQuery,
    qvec: npt.NDArray[np.float32] | None,
    semantic: list[tuple[str, float]],
    keyword: list[tuple[str, float]],
    split: _Split | None,
    in_index: set[str],
) -> tuple[dict[str, float | None], dict[str, float]]:
    """The cosine and the own-text BM25 of every memory of either list, each computed as
    its list computes it, so a memory scores the same whichever other memories are
    candidates (a filter, a partition of the Kafka runtime) and on every path.

    ``split``: the candidates of a search that selected them (``None``: the indexes
    hold every candidate, unfiltered or filtered by facets)."""
    vectors, keywords = proj.vectors, proj.keywords
    assert vectors is not None and keywords is not None
    cosines: dict[str, float | None] = dict(semantic)
    bm25 = dict(keyword)
    extra = [m for m, _ in keyword if m not in cosines]
    cosines.update(dict.fromkeys(extra))
    if extra and qvec is not None:
        found = {m: float(vectors.vector(m) @ qvec) for m in extra if m in vectors}
        if split is not None:  # only what the index ranks comes from it; the rest by brute force
            found = {m: c for m, c in found.items() if m in in_index}
            others = set(extra) - set(found)
            live, rest, load = split
            outside = [c for c in rest if c.memory_id in others] + load(others & live)
            found.update(_exact_semantic(proj, qvec, outside, len(outside)) if outside else [])
        cosines.update(found)
    missing = [m for m in cosines if m not in bm25]
    if q.query and missing:
        if split is None:
            bm25.update(
                keywords.search(q.query, len(missing), allowed_ids=missing, field=KEYWORD_FIELD)
            )
        else:
            live, rest, _ = split
            wanted = set(missing)
            bm25.update(
                _keyword_ranking(
                    keywords,
                    q.query,
                    live & wanted,
                    [c for c in rest if c.memory_id in wanted],
                    len(missing),
                    KEYWORD_FIELD,
                )  # fmt: skip
            )
    return cosines, bm25


def _hinted(
    duck: DuckStore,
    views: MemoryViews | None,
    fused: list[tuple[str, float, float | None, float | None]],
    period: Period | None,
    words: set[str],
    as_of: int | None,
) -> list[tuple[str, float, float | None, float | None]]:
    """Memories dated within ``period`` first, then those whose speaker the query names:
    their score gains :data:`TIME_HINT_BONUS` / :data:`SPEAKER_HINT_BONUS` (more than any
    fused score), so the order also survives merging by score across the partitions of
    the Kafka runtime. Within each group the fused order stays."""
    found = _views(duck, views, [m for m, *_ in fused], as_of)
    out = []
    for memory_id, score, ss, ks in fused:
        view = found.get(memory_id)
        if view is not None:
            if period is not None:
                day = date_of(view.metadata, view.created_at)
                if day is not None and period[0] <= day < period[1]:
                    score += TIME_HINT_BONUS
            speaker = view.metadata.get(SPEAKER_KEY) if words else None
            if isinstance(speaker, str) and speaker.casefold() in words:
                score += SPEAKER_HINT_BONUS
        out.append((memory_id, score, ss, ks))
    out.sort(key=lambda h: -h[1])  # stable: ties keep the fused order
    return out


#: The candidates of a filtered search: the live ones now (ids: the indexes hold them), the
#: others (with their content: archived or other states, every version of an ``as_of``
#: search), and a loader of the live ones' content where a brute-force score needs it.
_Split = tuple[set[str], list[_Candidate], Callable[[set[str]], list[_Candidate]]]


def _split_views(duck: DuckStore, views: MemoryViews, q: SearchQuery) -> _Split:
    """The candidates the in-memory view selects (set operations, no query)."""
    ids = views.select(q)
    if set(q.wanted_states()) <= set(LIVE_STATES):
        live = ids
    else:
        live = {i for i in ids if (m := views.state(i)) is not None and m.state in LIVE_STATES}
    rest = _view_candidates(duck, views, [i for i in ids if i not in live])
    return live, rest, lambda wanted: _view_candidates(duck, views, list(wanted))


def _split_duck(duck: DuckStore, q: SearchQuery) -> _Split:
    """The candidates DuckDB's query selects (``as_of``: none of them is live)."""
    cands = _candidates(duck, q)
    current = q.as_of is None
    live = {c.memory_id for c in cands if current and c.state in LIVE_STATES}
    rest = [c for c in cands if c.memory_id not in live]
    return live, rest, lambda wanted: [c for c in cands if c.memory_id in wanted]


def _view_candidates(
    duck: DuckStore | None, views: MemoryViews, ids: list[str]
) -> list[_Candidate]:
    """Candidates from the view, in the order of their last change (the order DuckDB's
    table and the keyword index hold them in, so that ties rank as on the DuckDB path); a
    producer's vector (not held in memory) from DuckDB."""
    states = [(m.updated_offset, m) for i in ids if (m := views.state(i)) is not None]
    states.sort(key=lambda om: om[0])
    out = []
    wanted: list[tuple[str, int]] = []
    for _, m in states:
        memory_id = m.memory_id
        text, content_hash, supplied, metadata = views.content(memory_id)
        out.append(_Candidate(memory_id, m.namespace, m.state, text, content_hash, None, metadata))
        if supplied and duck is not None:
            wanted.append((memory_id, m.version))
    if wanted:
        with duck.reading() as cur:  # type: ignore[union-attr]
            rows = cur.execute(
                "SELECT v.memory_id, v.vector FROM versions v JOIN (SELECT "
                "unnest(?::VARCHAR[]) AS memory_id, unnest(?::INTEGER[]) AS version) k "
                "ON k.memory_id = v.memory_id AND k.version = v.version",
                [[w[0] for w in wanted], [w[1] for w in wanted]],
            ).fetchall()
        found = dict(rows)
        for c in out:
            c.vector = found.get(c.memory_id)
    return out


def _has_facets(m: Memory, q: SearchQuery) -> bool:
    """Whether ``m`` (a current view) passes ``q``'s namespace and tag filters."""
    if q.namespaces is not None and m.namespace not in q.namespaces:
        return False
    if q.tags_any and not any(t in m.tags for t in q.tags_any):
        return False
    return all(t in m.tags for t in q.tags_all or ())


def in_scope(m: Memory, scope: tuple[frozenset[str], frozenset[str]]) -> bool:
    """Whether ``m`` is within a caller's scope (see :attr:`SearchQuery.scope`)."""
    return m.namespace in scope[0] or m.memory_id in scope[1]


def _query_vector(proj: SemanticProjection, q: SearchQuery) -> npt.NDArray[np.float32] | None:
    if q.alpha == 0.0:  # keyword only
        return None
    if q.vector is not None:
        return unit_vector(q.vector)
    assert q.query is not None
    return proj.embed_query(q.query)


def search(
    duck: DuckStore,
    proj: SemanticProjection,
    q: SearchQuery,
    usage: UsageTracker | None = None,
    current: Mapping[str, MemState] | None = None,
    views: MemoryViews | None = None,
) -> list[SearchHit]:
    """Run ``q`` (see the module docstring for how); records the hits' usage if given.

    ``views`` (the current-memory view, :mod:`~memstream.projections.views`, at an offset
    the caller made sure of): a search that is not ``as_of`` takes its candidates and its
    hits' views from it, and makes no DuckDB query unless a candidate outside the vector
    index carries a producer's vector. Without it (an ``as_of`` search, or the view not
    loaded yet), both come from DuckDB. ``current`` (the core's decision state) is
    accepted for callers that pass it, and not used.
    """
    q.check(proj.embedder.dim)
    if isinstance(q.as_of, datetime):
        raise TypeError("search: resolve a time as_of to an offset of the log first")
    vectors, keywords = proj.vectors, proj.keywords
    assert vectors is not None and keywords is not None, "the semantic projection is not open"
    period = period_of(q.query) if q.query_hints and q.query else None
    # A period reorders the lists' union: deeper lists give it more to bring forward.
    # Every path ranks lists of the same length (a hit past the k-th may be dropped as no
    # longer live): a memory deep in both lists can outscore one atop a single list, so
    # lists of other lengths would fuse into another order.
    depth = max(5 * q.k, 50) * (TIME_HINT_DEPTH if period is not None else 1) + 10
    qvec = _query_vector(proj, q)
    wanted = set(q.wanted_states())
    in_indexes = q.as_of is None and not q.exact and wanted <= set(LIVE_STATES)
    fast = in_indexes and not q.has_filters()
    faceted = in_indexes and not fast and q.facets_only()
    semantic: list[tuple[str, float]] = []
    keyword: list[tuple[str, float]] = []
    # The default ranking scores keywords on the memory's own text (projections/fusion.py).
    field = KEYWORD_FIELD if q.alpha is None else "text"
    split: _Split | None = None  # the candidates, where a search selected them
    in_index: set[str] = set()
    if fast:
        # Everything wanted is in the indexes: no candidate query (the hot path).
        if qvec is not None:
            semantic = vectors.search(qvec, depth)
        if q.query and q.keywords_wanted():
            keyword = keywords.search(q.query, depth, field=field)
    elif faceted:
        # Filters on namespaces and tags: the indexes select their candidates themselves.
        if qvec is not None:
            where = facet_clauses(q.namespaces, q.tags_any or (), q.tags_all or ())
            semantic = vectors.search_facets(qvec, depth, where)
        if q.query and q.keywords_wanted():
            keyword = keywords.search(
                q.query, depth, namespaces=q.namespaces, field=field,
                tags_any=q.tags_any or None, tags_all=q.tags_all or (),
            )  # fmt: skip
    else:
        if views is not None and q.as_of is None:
            split = _split_views(duck, views, q)
        else:
            split = _split_duck(duck, q)
        live, rest, load = split
        if (
            not q.exact
        ):  # a live memory the vector index lacks (a producer's odd vector) is scored outside
            missing = vectors.missing(live)
            in_index = live.difference(missing) if missing else live
        if qvec is not None:
            outside = rest if len(in_index) == len(live) else load(live - in_index) + rest
            if in_index:
                semantic = vectors.search(qvec, depth, in_index)
            if outside:
                semantic = sorted(
                    semantic + _exact_semantic(proj, qvec, outside, depth),
                    key=lambda h: (-h[1], h[0]),
                )[:depth]
        if q.query and q.keywords_wanted() and (live or rest):
            keyword = _keyword_ranking(keywords, q.query, live, rest, depth, field)
    if q.alpha is None:
        # Every candidate of either list is scored on both signals (projections/fusion.py).
        cosines, bm25 = _both_signals(proj, q, qvec, semantic, keyword, split, in_index)
        fused = blend(cosines, bm25, depth)
    else:
        fused = fuse(semantic, keyword, q.alpha, depth)
    words = set(_WORDS.findall(q.query.casefold())) if q.query_hints and q.query else set()
    if (period is not None or (words and SPEAKER_HINT_BONUS)) and fused:
        fused = _hinted(duck, views, fused, period, words, q.as_of)
    hits: list[tuple[Memory, float, float | None, float | None]] = []
    # Rows are fetched for the best k first (every fetched row costs), and for the rest
    # only if some of those are no longer wanted.
    start, size = 0, q.k
    while len(hits) < q.k and start < len(fused):
        batch = fused[start : start + size]
        start += len(batch)
        size = len(fused)
        rows = _views(duck, views, [m for m, *_ in batch], q.as_of)
        for memory_id, score, ss, ks in batch:
            m = rows.get(memory_id)
            if m is None or m.state not in wanted:  # the index lags the state: never leak
                continue
            if faceted and not _has_facets(m, q):  # nor a namespace or tags of the past
                continue
            if q.scope is not None and not in_scope(m, q.scope):  # nor beyond the caller's
                continue
            hits.append((m, score, ss, ks))
            if len(hits) == q.k:
                break
    seen = usage.get([m.memory_id for m, *_ in hits]) if usage is not None else {}
    if usage is not None:
        usage.record(m.memory_id for m, *_ in hits)
    out = []
    for m, score, ss, ks in hits:
        count, last, heat = seen.get(m.memory_id, (0, None, 0.0))
        out.append(
            SearchHit(
                memory=m, score=score, semantic_score=ss, keyword_score=ks,
                access_count=count, last_access=last, heat=heat,
            )
        )  # fmt: skip
    return out
