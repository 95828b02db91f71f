"""The default search mode on a slice of the dialogue set (the claim in docs/search.md).

Two dev conversations (about 600 turns, 130 questions) stored through the SDK, plainly
and with their context, embedded with the real model (no cache: about a minute on 2
cores). The full table comes from ``python -m memstream.bench.dialogue_recall``.

What so few questions can resolve: one question moves recall by 1/134 (0.0075; a
multi-hop question by half that). On the whole dev split the default leads semantic only
by +0.021 +- 0.007 at recall@1 and +0.010 +- 0.004 at recall@10 (docs/search.md): the
first is about four questions here and shows (0.287 against 0.257 when written), the
second is about one and does not (0.858 against 0.862: half a multi-hop question less).
So the test asks the default to beat semantic only at recall@1, to stay within one
question of it at recall@10, and to beat keyword only clearly on both; it cannot show
the recall@10 margin, which the full splits do.
"""

from __future__ import annotations

import pytest
from memstream.projections.models import LazyEmbedder
from memstream.projections.search import DEFAULT_ALPHA

from memstream.bench.dialogue_recall import mode_name, run
from memstream.bench.dialogues import load_dialogues

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results():
    data = load_dialogues()
    modes = [(DEFAULT_ALPHA, True), (DEFAULT_ALPHA, False), (1.0, True), (0.5, True), (0.0, True)]
    return run(
        "dev",
        ["plain", "speaker+date+previous"],
        modes,
        data=data,
        conversations=[0, 2],
        embedder=LazyEmbedder(),
    )


def test_the_default_is_the_best_mode_on_the_slice(results) -> None:
    table = results["speaker+date+previous"]
    assert DEFAULT_ALPHA is None  # the default is the own-words bonus, not an alpha
    default = table[mode_name(DEFAULT_ALPHA, True)]["all"]
    semantic, mixed, keyword = (table[m]["all"] for m in ("1", "0.5", "0"))  # hints on
    one = 1 / results["questions"]
    for k in (1, 10):
        assert default[k] > keyword[k] + 0.05, (k, default, keyword)
        assert default[k] >= mixed[k], (k, default, mixed)
    assert default[1] > semantic[1], (default, semantic)
    assert default[10] >= semantic[10] - one, (default, semantic)
    assert default[10] > mixed[10]
    assert results["questions"] >= 80


def test_context_and_hints_are_what_lift_it(results) -> None:
    name = mode_name(DEFAULT_ALPHA, True)
    plain = results["plain"][name]["all"]
    context = results["speaker+date+previous"][name]["all"]
    no_hints = results["speaker+date+previous"][mode_name(DEFAULT_ALPHA, False)]
    # The context finds far more turns (recall@10); at the first rank the hints, which
    # read the speaker and the date from the metadata, already carry plain turns a long way.
    assert context[10] > plain[10] + 0.05
    for k in (1, 10):
        assert context[k] > no_hints["all"][k], k
    temporal = results["speaker+date+previous"][name]["temporal"]
    assert temporal[10] > no_hints["temporal"][10] + 0.2
