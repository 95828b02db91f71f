"""The default ranking's score: a semantic score plus a bounded keyword bonus."""

from __future__ import annotations

import pytest
from memstream.projections.fusion import BM25_HALF, KEYWORD_WEIGHT, blend, keyword_bonus


def test_the_bonus_is_bounded_and_grows_with_bm25() -> None:
    assert keyword_bonus(None) == keyword_bonus(0.0) == 0.0
    assert keyword_bonus(BM25_HALF) == pytest.approx(KEYWORD_WEIGHT / 2)
    values = [keyword_bonus(b) for b in (0.5, 2.0, 10.0, 50.0, 1e6)]
    assert values == sorted(values) and values[-1] <= KEYWORD_WEIGHT
    # Steep: a weak match earns little, a strong one nearly all of the weight.
    assert (
        keyword_bonus(BM25_HALF / 2)
        < 0.1 * KEYWORD_WEIGHT
        < 0.9 * KEYWORD_WEIGHT
        < (keyword_bonus(BM25_HALF * 2))
    )


def test_keywords_reorder_near_ties_but_never_lift_a_weak_match() -> None:
    cosines = {"strong": 0.80, "near": 0.78, "weak": 0.60, "common": 0.79}
    fused = blend(cosines, {"near": 30.0, "weak": 1e6, "common": 2.0}, 10)
    assert [m for m, *_ in fused] == ["near", "strong", "common", "weak"]
    near = fused[0]
    assert near[1] == pytest.approx((1 + 0.78) / 2 + keyword_bonus(30.0))
    assert near[2:] == (0.78, 30.0)


def test_a_score_does_not_depend_on_the_other_candidates() -> None:
    # What lets partitions (or filtered searches) be merged by score.
    alone = blend({"a": 0.5}, {"a": 7.0}, 1)[0][1]
    crowd = blend({"a": 0.5, "b": 0.9, "c": None}, {"a": 7.0, "b": 70.0, "c": 3.0}, 3)
    assert dict((m, s) for m, s, *_ in crowd)["a"] == alone
    # Without a vector a memory scores its bonus only; ties go by cosine, then id.
    assert crowd[-1][0] == "c" and crowd[-1][1] == keyword_bonus(3.0)
    assert [m for m, *_ in blend({"y": 0.1, "x": 0.1}, {}, 2)] == ["x", "y"]
