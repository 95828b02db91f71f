"""The default ranking: the semantic score, plus a bonus for a strong match of the
memory's own words.

``score(d) = (1 + cos(q, d)) / 2 + KEYWORD_WEIGHT * r / (1 + r)``, with
``r = (b / BM25_HALF) ** STEEPNESS``

``cos`` is the cosine similarity of the query and what the vector index sees of the
memory (its text with its context, :mod:`~memstream.projections.context`), mapped to
[0, 1]; ``b`` is the BM25 score of the query over the memory's **own** text, without its
context (the keyword index's ``own`` field), through a steep saturating curve: a few
common words matched (BM25 well below :data:`BM25_HALF`) earn almost nothing, a strong
match (rare words: a name, a code) nearly all of :data:`KEYWORD_WEIGHT`, and nothing
earns more. The candidates are the union of the semantic list and the keyword list (both
as deep as a search's lists), each scored on both signals: a memory found by keywords
only is given its own cosine, and one found by meaning only its own BM25.

Why this shape (measured in docs/search.md):

* The keyword score is a bonus, not an equal partner: it reorders near-ties of the
  semantic ranking and brings forward a memory whose own words the query names (a name,
  a code), which the embedding of a text with its context dilutes, but it never lifts a
  weak semantic match above a strong one (the bonus is below 0.07, a cosine difference of
  0.14).
* The memory's own text, not its context: the context (speaker, date, the turn before)
  is already in the vector and, for speakers and dates, in the query hints; counting its
  words again (a speaker's name matches every turn of a conversation) costs more than it
  adds.
* A function of the BM25 score, not a rank or a score divided by the best one of the
  list: a memory's score depends on the query and the index's statistics only, not on
  which other memories are candidates. A filter does not change it, and the partitions
  of the Kafka runtime, which each rank their own memories, can be merged by score.

``alpha`` (weighted reciprocal-rank fusion, :func:`~memstream.projections.search.fuse`)
remains for callers who set it: 1 semantic only, 0 keyword only (over the memory's text
with its context).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "BM25_HALF",
    "KEYWORD_FIELD",
    "KEYWORD_WEIGHT",
    "STEEPNESS",
    "blend",
    "keyword_bonus",
]

#: Weight of the keyword bonus (the semantic part spans [0, 1]).
KEYWORD_WEIGHT = 0.07
#: The BM25 score that earns half the bonus: more than one rare word of the query (a word
#: found in one memory of 5,000 scores about 8 at most).
BM25_HALF = 10.0
#: The steepness of the curve (a Hill exponent): the bonus rises from 6% to 94% of its
#: weight between half and twice :data:`BM25_HALF`.
STEEPNESS = 4
#: The keyword index field the bonus is computed on: the memory's text without context.
KEYWORD_FIELD = "own"


def keyword_bonus(bm25: float | None) -> float:
    """The bonus of a BM25 score (0 for none)."""
    if not bm25 or bm25 <= 0.0:
        return 0.0
    ratio = (bm25 / BM25_HALF) ** STEEPNESS
    return KEYWORD_WEIGHT * ratio / (1.0 + ratio)


def blend(
    semantic: Mapping[str, float | None], keyword: Mapping[str, float], k: int
) -> list[tuple[str, float, float | None, float | None]]:
    """``(memory_id, score, cosine, bm25)`` of the ``k`` best of the candidates.

    ``semantic`` maps every candidate (the union of both lists) to its cosine (``None``
    when it has no vector: it scores 0 there); ``keyword`` maps candidates to their BM25
    (one absent gets no bonus). Ties are broken by the cosine, then the id, so results
    are deterministic.
    """
    rows = []
    for memory_id, cosine in semantic.items():
        bm25 = keyword.get(memory_id)
        score = (0.0 if cosine is None else (1.0 + cosine) / 2.0) + keyword_bonus(bm25)
        rows.append((-score, -(cosine if cosine is not None else -2.0), memory_id, cosine, bm25))
    rows.sort()
    return [(m, -neg, cosine, bm25) for neg, _, m, cosine, bm25 in rows[:k]]
