"""The data of the ``pubsub`` suite: a planned event stream, a thousand mixed filters, the
matches each filter must receive (worked out here, apart from the store), and an embedder
that answers from the bench's vector cache.

The events are planned as plain values before anything is timed: creates, revisions and
archives of memories spread over user and team namespaces (a few much busier than the
rest), written by twenty agents, tagged with a couple of common tags and one topic of
two hundred. Their texts are the ``search`` suite's corpus (the labelled memories, then
distractors), whose all-MiniLM-L6-v2 vectors are in the bench's cache; the semantic
filters' queries are the labelled questions about them.

Because each event's namespace, type, actor and resulting tags and state are known here,
the suite can say which events each filter must deliver without asking the code under
measurement (:func:`expected_matches`): a delivery missing or extra fails the run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from memstream.sdk import new_id

from .workload import _TAGS

#: Namespaces: users and teams (teams are a tenth; ``team/*`` filters select them).
USERS = 180
TEAMS = 20
ACTORS = 20
TOPICS = 200
#: Shares of the planned events (the rest are creates).
REVISE_SHARE = 0.15
ARCHIVE_SHARE = 0.07
#: Cosine similarity a semantic filter asks for: low enough that most of the labelled
#: questions match a few texts of the corpus (measured: at 30,000 texts, 84 of 100 match,
#: two texts each at the median).
SEMANTIC_THRESHOLD = 0.4
#: A computed similarity this close to a threshold may round either way: the check of
#: the semantic deliveries leaves such events out.
SIMILARITY_TOLERANCE = 1e-5
#: Share of each kind of filter in the mix (per 1,000 subscriptions); semantic last.
MIX = (
    ("namespace", 300),
    ("team-pattern", 100),
    ("tags-any", 100),
    ("tags-all", 100),
    ("type", 100),
    ("actor", 100),
    ("state", 100),
    ("semantic", 100),
)


@dataclass(frozen=True, slots=True)
class Planned:
    """One planned event, and the memory as it leaves it (what a filter looks at)."""

    type: str
    namespace: str
    memory_id: str
    actor: str
    #: index of its text in the corpus (creates and revisions), else None
    text: int | None
    #: tags the payload sets (a create's, a revision that retags), else None
    tags: tuple[str, ...] | None
    tags_after: frozenset[str]
    state_after: str


@dataclass
class Plan:
    events: list[Planned]
    namespaces: list[str]
    actors: list[str]
    topics: list[str]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.events:
            out[e.type] = out.get(e.type, 0) + 1
        return out


def plan_events(n: int, texts: int, seed: int) -> Plan:
    """``n`` events (creates, revisions, archives) using at most ``texts`` corpus texts, in
    order; deterministic for ``(n, texts, seed)`` (memory ids are fresh)."""
    rng = random.Random(f"pubsub:{seed}")
    users = [f"user/u{i:03d}" for i in range(USERS)]
    teams = [f"team/t{i:02d}" for i in range(TEAMS)]
    spaces = users + teams
    ranked = spaces[:]
    rng.shuffle(ranked)  # teams among the busy ones too
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(ranked))]
    actors = [f"agent-{i:02d}" for i in range(ACTORS)]
    topics = [f"topic-{i:03d}" for i in range(TOPICS)]
    active: list[int] = []  # indexes into memories of the active ones
    memories: list[list[Any]] = []  # [namespace, memory id, tags, state]
    out: list[Planned] = []
    used = 0
    for _ in range(n):
        r = rng.random()
        if active and r < ARCHIVE_SHARE:
            k = active.pop(rng.randrange(len(active)))
            m = memories[k]
            m[3] = "archived"
            out.append(
                Planned("archive", m[0], m[1], rng.choice(actors), None, None, m[2], "archived")
            )
            continue
        if used >= texts:
            raise ValueError(f"the plan needs more than {texts} texts for {n} events")
        if active and r < ARCHIVE_SHARE + REVISE_SHARE:
            m = memories[active[rng.randrange(len(active))]]
            tags = None
            if rng.random() < 0.3:
                tags = (*rng.sample(_TAGS, rng.randint(1, 2)), rng.choice(topics))
                m[2] = frozenset(tags)
            out.append(
                Planned("revise", m[0], m[1], rng.choice(actors), used, tags, m[2], "active")
            )
        else:
            ns = rng.choices(ranked, weights=weights)[0]
            tags = (*rng.sample(_TAGS, rng.randint(1, 2)), rng.choice(topics))
            memories.append([ns, new_id(), frozenset(tags), "active"])
            active.append(len(memories) - 1)
            m = memories[-1]
            out.append(Planned("create", ns, m[1], rng.choice(actors), used, tags, m[2], "active"))
        used += 1
    return Plan(out, spaces, actors, topics)


def event_args(e: Planned, texts: Sequence[str]) -> tuple[str, str, str, dict[str, Any]]:
    """``(type, namespace, memory id, payload)``: the arguments of ``MemoryStore.event``."""
    if e.type == "create":
        payload: dict[str, Any] = {"text": texts[e.text or 0], "tags": list(e.tags or ())}
    elif e.type == "revise":
        payload = {"text": texts[e.text or 0]}
        if e.tags is not None:
            payload["tags"] = list(e.tags)
    else:
        payload = {"reason": "done"}
    return e.type, e.namespace, e.memory_id, payload


# -- the filters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedFilter:
    name: str
    kind: str
    filter: dict[str, Any]
    #: the labelled question of a semantic filter (its ``query``), else None
    question: int | None = None


def mix(count: int) -> list[tuple[str, int]]:
    """How many filters of each kind make ``count`` (the :data:`MIX` shares, at least one
    of each)."""
    total = sum(n for _, n in MIX)
    sizes = [(kind, max(1, round(count * n / total))) for kind, n in MIX]
    drift = count - sum(n for _, n in sizes)
    kind, n = sizes[0]
    sizes[0] = (kind, max(1, n + drift))
    return sizes


def plan_filters(count: int, plan: Plan, questions: int, seed: int) -> list[PlannedFilter]:
    """``count`` subscription filters of the :data:`MIX`; the semantic ones query the
    labelled questions ``0 .. questions - 1`` in turn."""
    rng = random.Random(f"pubsub-filters:{seed}")
    users = [s for s in plan.namespaces if s.startswith("user/")]
    spaces, actors, topics = plan.namespaces, plan.actors, plan.topics
    out: list[PlannedFilter] = []
    for kind, n in mix(count):
        for i in range(n):
            q = None
            if kind == "namespace":  # one namespace; some of them narrowed further
                f: dict[str, Any] = {"namespaces": [spaces[i % len(spaces)]]}
                if i % 3 == 1:
                    f["types"] = ["create", "revise"]
                if i % 5 == 2:
                    f["tags_any"] = [rng.choice(_TAGS)]
            elif kind == "team-pattern":
                f = {"namespaces": ["team/*"]}
                extra = i % 4
                if extra == 0:
                    f["tags_any"] = [rng.choice(topics)]
                elif extra == 1:
                    f["actors"] = [rng.choice(actors)]
                elif extra == 2:
                    f["types"] = ["archive"]
                else:
                    f["tags_all"] = [rng.choice(_TAGS)]
            elif kind == "tags-any":
                f = {"tags_any": rng.sample(topics, 2)}
            elif kind == "tags-all":
                f = {"tags_all": [rng.choice(_TAGS), rng.choice(topics)]}
            elif kind == "type":
                f = {"types": [("create", "revise", "archive")[i % 3]], "actors": [actors[i % 20]]}
            elif kind == "actor":  # no key to file it under: compared with every event
                f = {"actors": [actors[i % len(actors)]], "states": ["archived"]}
            elif kind == "state":
                if i % 2 == 0:
                    f = {"namespaces": [rng.choice(users)], "states": ["archived"]}
                else:
                    f = {"states": ["active"], "tags_any": [rng.choice(topics)]}
            else:
                q = i % max(1, questions)
                f = {"semantic": {"threshold": SEMANTIC_THRESHOLD}}
                if i % 2 == 1:
                    f["namespaces"] = ["user/*"]
            out.append(PlannedFilter(f"{kind}-{i:03d}", kind, f, q))
    return out


def _namespace_ok(patterns: Sequence[str], namespace: str) -> bool:
    if not patterns or "*" in patterns:
        return True
    for p in patterns:
        if p.endswith("/*"):
            root = p[:-2]
            if namespace == root or namespace.startswith(root + "/"):
                return True
        elif p == namespace:
            return True
    return False


def _plain_ok(f: dict[str, Any], e: Planned) -> bool:
    """Whether event ``e`` meets filter ``f`` (every condition but meaning), decided from
    the plan alone. Every planned event is accepted."""
    if f.get("types") and e.type not in f["types"]:
        return False
    if f.get("actors") and e.actor not in f["actors"]:
        return False
    if not _namespace_ok(f.get("namespaces") or (), e.namespace):
        return False
    if f.get("tags_any") and not set(f["tags_any"]) & e.tags_after:
        return False
    if f.get("tags_all") and not set(f["tags_all"]) <= e.tags_after:
        return False
    return not (f.get("states") and e.state_after not in f["states"])


def expected_matches(
    filters: Sequence[PlannedFilter],
    plan: Plan,
    offsets: Sequence[int],
    text_vectors: npt.NDArray[np.float32],
    query_vectors: npt.NDArray[np.float32],
) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """For each filter: the offsets it must deliver, and the offsets too close to its
    semantic threshold to call (either way is right). ``offsets[i]`` is where planned event
    ``i`` landed; ``text_vectors[j]`` is corpus text ``j``'s vector, ``query_vectors[q]``
    labelled question ``q``'s."""
    events = plan.events
    sims: npt.NDArray[np.float32] | None = None
    semantic = [f for f in filters if f.question is not None]
    if semantic:
        rows = [e.text if e.text is not None else 0 for e in events]
        texts = text_vectors[rows]
        queries = query_vectors[[f.question for f in semantic]]
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        sims = texts @ queries.T
    column = {f.name: j for j, f in enumerate(semantic)}
    want: dict[str, set[int]] = {}
    unsure: dict[str, set[int]] = {}
    for f in filters:
        got: set[int] = set()
        edge: set[int] = set()
        j = column.get(f.name)
        threshold = f.filter.get("semantic", {}).get("threshold", 0.0)
        for i, e in enumerate(events):
            if not _plain_ok(f.filter, e):
                continue
            if j is not None:
                if e.text is None:
                    continue  # an archive carries no text: it passes only if types names it
                assert sims is not None
                s = float(sims[i, j])
                if abs(s - threshold) <= SIMILARITY_TOLERANCE:
                    edge.add(offsets[i])
                    continue
                if s < threshold:
                    continue
            got.add(offsets[i])
        want[f.name] = got
        unsure[f.name] = edge
    return want, unsure


# -- vectors without the model -------------------------------------------------------------------


class CorpusEmbedder:
    """The embedding model's vectors of known texts (read from the bench's cache), and the
    model itself for any other text (counted: the suite expects none).

    Both arms of the ingest comparison open their store with it, so neither spends minutes
    of the two cores running the model; everything else the vector index does (its cache,
    hnswlib, the keyword index) runs as in use. It has the model's id and dimension, so the
    vectors are the ones the model gives.
    """

    def __init__(
        self,
        model: Any,
        texts: Sequence[str],
        vectors: npt.NDArray[np.float32],
    ) -> None:
        self.model = model
        self.model_id: str = model.model_id
        self.dim: int = int(model.dim)
        self._rows = {t: i for i, t in enumerate(texts)}
        self._vectors = vectors
        #: texts not in the table, embedded by the model
        self.misses = 0

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing = []
        rows = self._rows
        for i, t in enumerate(texts):
            r = rows.get(t)
            if r is None:
                missing.append(i)
            else:
                out[i] = self._vectors[r]
        if missing:
            self.misses += len(missing)
            out[missing] = self.model.embed([texts[i] for i in missing])
        return out

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return self.embed([text])[0]
