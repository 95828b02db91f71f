"""Deterministic distractor texts for retrieval evaluation, built without any download.

A retrieval benchmark with only a few hundred memories says little about a store that
holds tens of thousands: nearly any method finds the right fact among 200. The labelled
set in ``tests/data/retrieval`` is therefore padded with distractors produced here from
two sources:

* prose harvested from the docstrings of the Python standard library and of the
  installed packages (technical notes of realistic length and vocabulary), read with
  :mod:`ast` from the source files, so no module is imported and nothing is executed;
* templated personal, project and schedule facts about fictional people, which look like
  what an agent stores and so are hard negatives for the labelled questions.

Determinism: for the same ``n``, ``seed``, Python version and set of installed packages
(same versions), :func:`distractor_corpus` returns the same list in the same order. A
different installed set changes the harvested part; the templated part depends on the
seed only.
"""

from __future__ import annotations

import ast
import json
import os
import random
import re
import sysconfig
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LabelledQuestion",
    "distractor_corpus",
    "evaluate_recall",
    "harvest_docstrings",
    "load_labelled_set",
    "templated_facts",
]

MIN_CHARS = 60
MAX_CHARS = 400

# Folders whose docstrings are test fixtures, generated tables or vendored copies: noisy
# text that no agent would store.
_SKIP_DIRS = frozenset(
    {
        "__pycache__",
        "test",
        "tests",
        "testing",
        "idlelib",
        "lib2to3",
        "site-packages",
        "dist-packages",
        "_vendor",
        "vendor",
        "vendored",
        "memstream",
        "benchmarks",
        "examples",
    }
)

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_MARKUP = re.compile(r">>>|\.\.\.\s|::|:param|:return|:raises|:type|\$ |\bhttps?://|\{|\}|\|")
# Section headers and argument specs of Google/NumPy style docstrings ("Args: x (int): ...").
_ARGSPEC = re.compile(r"^[A-Z][A-Za-z ]{0,20}:\s|\(\w+(, \w+)*\):|\*optional\*")
_ROLE = re.compile(r":[a-z]+:`([^`]*)`")
_BACKTICKS = re.compile(r"`+")


def _clean_paragraph(paragraph: str) -> str | None:
    """Return a paragraph as one line of prose, or None when it is not prose.

    Docstrings mix prose with parameter tables, doctest sessions, reST directives and
    ASCII art; only paragraphs that read as sentences make plausible memories.
    """
    text = " ".join(paragraph.split())
    if not (MIN_CHARS <= len(text) <= MAX_CHARS):
        return None
    if _MARKUP.search(text) or _ARGSPEC.search(text):
        return None
    text = _ROLE.sub(r"\1", text)
    text = _BACKTICKS.sub("", text)
    if not text[0].isupper() or text[-1] not in ".!?":
        return None
    words = _WORD.findall(text)
    if len(words) < 8:
        return None
    letters = sum(ch.isalpha() or ch.isspace() for ch in text)
    if letters / len(text) < 0.88:
        return None
    return text


def _source_roots() -> list[Path]:
    """The standard library first, then each installed top-level package, sorted by name."""
    paths = sysconfig.get_paths()
    roots: list[Path] = []
    stdlib = Path(paths["stdlib"])
    if stdlib.is_dir():
        roots.append(stdlib)
    seen: set[Path] = set()
    for key in ("purelib", "platlib"):
        site = Path(paths[key])
        if site in seen or not site.is_dir():
            continue
        seen.add(site)
        for entry in sorted(site.iterdir(), key=lambda p: p.name):
            if entry.is_dir() and entry.name not in _SKIP_DIRS and "." not in entry.name:
                roots.append(entry)
    return roots


def _python_files(root: Path) -> Iterator[Path]:
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(directory) / name


def _docstring_paragraphs(path: Path) -> Iterator[str]:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    if len(source) > 2_000_000:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError, RecursionError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                for paragraph in doc.split("\n\n"):
                    cleaned = _clean_paragraph(paragraph)
                    if cleaned is not None:
                        yield cleaned


def _paragraph_stream() -> Iterator[str]:
    for root in _source_roots():
        for path in _python_files(root):
            yield from _docstring_paragraphs(path)


class _Harvest:
    """The paragraphs found so far, in the fixed visiting order, shared by all callers.

    Parsing sources is the slow part; keeping the stream and what it
    produced lets later, larger requests continue where an earlier one stopped instead of
    parsing the same files again.
    """

    def __init__(self) -> None:
        self.found: dict[str, None] = {}
        self.stream: Iterator[str] | None = None
        self.exhausted = False

    def take(self, limit: int) -> list[str]:
        if self.stream is None:
            self.stream = _paragraph_stream()
        while len(self.found) < limit and not self.exhausted:
            paragraph = next(self.stream, None)
            if paragraph is None:
                self.exhausted = True
            else:
                self.found.setdefault(paragraph, None)
        return list(self.found)[:limit]


_HARVEST = _Harvest()
_HARVEST_LOCK = threading.Lock()


def harvest_docstrings(limit: int) -> list[str]:
    """Collect up to ``limit`` distinct prose paragraphs from installed Python sources.

    Sources are visited in a fixed order (standard library, then site-packages sorted by
    name; files sorted within each folder) and harvesting stops as soon as ``limit``
    paragraphs are collected, so a small request parses only a few hundred files. A
    request for fewer paragraphs returns a prefix of a request for more.
    """
    if limit <= 0:
        return []
    with _HARVEST_LOCK:
        return _HARVEST.take(limit)


_PEOPLE = (
    "Amara", "Bilal", "Chen", "Dagny", "Emeka", "Farah", "Goran", "Hana", "Ines", "Jonas",
    "Kenji", "Leila", "Mateo", "Nadia", "Olu", "Priya", "Quentin", "Rosa", "Soren", "Tamar",
    "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zofia",
)  # fmt: skip
_RELATIONS = (
    "sister",
    "brother",
    "manager",
    "landlord",
    "neighbour",
    "cousin",
    "mentor",
    "dentist",
)
_FOODS = (
    "oat milk", "peanuts", "shellfish", "gluten", "dark chocolate", "sparkling water",
    "espresso", "miso soup", "pickled ginger", "blue cheese", "rye bread", "mango lassi",
)  # fmt: skip
_CITIES = (
    "Lisbon", "Nairobi", "Osaka", "Tallinn", "Montreal", "Valparaiso", "Ghent", "Hanoi",
    "Tbilisi", "Perth", "Bergen", "Cusco",
)  # fmt: skip
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_PROJECTS = (
    "Heron", "Basalt", "Juniper", "Quartz", "Lantern", "Marigold", "Orbit", "Pebble",
    "Saffron", "Tundra", "Willow", "Zephyr",
)  # fmt: skip
_TOOLS = (
    "Postgres 16", "Redis", "Terraform", "a Raspberry Pi", "Grafana", "the staging cluster",
    "the billing service", "an S3 bucket", "the nightly cron job", "the VPN gateway",
)  # fmt: skip
_THINGS = (
    "spare keys", "passport", "warranty card", "bike lock", "tax folder", "laptop charger",
    "vaccination record", "guitar tuner", "camping stove", "winter tyres",
)  # fmt: skip
_PLACES = (
    "the hallway drawer", "the blue backpack", "the garage shelf", "the office locker",
    "the kitchen cabinet", "the car glovebox", "the top desk drawer", "the attic box",
)  # fmt: skip
_HOBBIES = (
    "bouldering", "sourdough baking", "chess", "trail running", "watercolour painting",
    "birdwatching", "salsa dancing", "woodworking", "kayaking", "pottery",
)  # fmt: skip

_TEMPLATES = (
    "{p}'s {rel} {q} cannot eat {food}, so order something else when {q} visits.",
    "{p} moved to {city} in {month} and now works remotely for the {proj} team.",
    "The {proj} standup moved to {day} at {hour}:{minute:02d}; {p} runs it this quarter.",
    "{p} keeps the {thing} in {place}.",
    "{p} takes up {hobby} on {day} evenings at a club near the station.",
    "Project {proj} depends on {tool}; {p} is the contact when it breaks.",
    "{p} asked to be reminded about the {proj} review on {month} {date}.",
    "{p} prefers {food} over coffee and avoids meetings before {hour} am.",
    "The {proj} release was postponed to {month} because {tool} failed its load test.",
    "{p} and {q} share a car on {day}s; {p} drives on the way back.",
    "{p}'s flight to {city} leaves on {month} {date} at {hour}:{minute:02d}.",
    "Renew {p}'s {thing} insurance before the end of {month}.",
    "{p} wants weekly summaries of the {proj} metrics sent every {day} morning.",
    "{p} is learning {hobby} and practises for {n} minutes each day.",
    "The {proj} on-call rota starts with {p}, then {q}, rotating every {day}.",
    "{p} lent the {thing} to {q} in {month} and has not got it back yet.",
)


def templated_facts(n: int, seed: int) -> list[str]:
    """Return ``n`` distinct templated facts about fictional people and projects.

    They read like memories an agent keeps (preferences, schedules, project facts) and
    share vocabulary with real ones, which makes them hard negatives for retrieval.
    """
    rng = random.Random(f"templated:{seed}")
    out: dict[str, None] = {}
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > n * 50 + 1000:
            raise ValueError(f"cannot produce {n} distinct templated facts; ask for fewer")
        p, q = rng.sample(_PEOPLE, 2)
        text = rng.choice(_TEMPLATES).format(
            p=p,
            q=q,
            rel=rng.choice(_RELATIONS),
            food=rng.choice(_FOODS),
            city=rng.choice(_CITIES),
            day=rng.choice(_DAYS),
            month=rng.choice(_MONTHS),
            date=rng.randint(4, 28),
            hour=rng.randint(7, 11),
            minute=rng.choice((0, 15, 30, 45)),
            proj=rng.choice(_PROJECTS),
            tool=rng.choice(_TOOLS),
            thing=rng.choice(_THINGS),
            place=rng.choice(_PLACES),
            hobby=rng.choice(_HOBBIES),
            n=rng.choice((10, 15, 20, 30, 45)),
        )
        out.setdefault(text, None)
    return list(out)


def distractor_corpus(n: int, seed: int = 0, *, templated_fraction: float = 0.25) -> list[str]:
    """Return ``n`` distinct distractor texts, deterministic for ``(n, seed)``.

    Args:
        n: how many texts (1 to 100,000; the labelled evaluation uses 5,000 to 20,000).
        seed: selects and orders the texts.
        templated_fraction: share of templated facts; the rest is harvested docstring
            prose. When the installed sources yield too little prose the templated part
            grows to make up the difference.

    The result is shuffled with ``seed`` so that any prefix is a fair sample of both
    sources. See the module docstring for what determinism covers.
    """
    if not 1 <= n <= 100_000:
        raise ValueError(f"n must be between 1 and 100000, got {n}")
    if not 0.0 <= templated_fraction <= 1.0:
        raise ValueError(f"templated_fraction must be within [0, 1], got {templated_fraction}")
    n_templated = round(n * templated_fraction)
    harvested = harvest_docstrings(n - n_templated)
    templated = templated_facts(n - len(harvested), seed)
    texts = list(dict.fromkeys(harvested + templated))
    if len(texts) < n:
        # A harvested paragraph happened to equal a templated one: top up with more facts.
        extra = templated_facts(n - len(harvested) + (n - len(texts)), seed)
        texts = list(dict.fromkeys(harvested + extra))[:n]
    random.Random(f"shuffle:{seed}").shuffle(texts)
    return texts


@dataclass(frozen=True, slots=True)
class LabelledQuestion:
    """A question that paraphrases one stored memory, and that memory's id."""

    question: str
    answer_id: str


def load_labelled_set(
    directory: str | os.PathLike[str],
) -> tuple[dict[str, str], list[LabelledQuestion]]:
    """Read ``memories.jsonl`` (id, text) and ``questions.jsonl`` (question, answer_id).

    Every answer must name a memory of the set, so a typo in the data fails loudly here
    instead of silently lowering measured recall.
    """
    root = Path(directory)
    memories: dict[str, str] = {}
    with (root / "memories.jsonl").open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                record = json.loads(line)
                if record["id"] in memories:
                    raise ValueError(f"memories.jsonl line {number}: duplicate id {record['id']!r}")
                memories[record["id"]] = record["text"]
    questions: list[LabelledQuestion] = []
    with (root / "questions.jsonl").open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                record = json.loads(line)
                if record["answer_id"] not in memories:
                    raise ValueError(
                        f"questions.jsonl line {number}: answer_id {record['answer_id']!r} "
                        "is not a memory id"
                    )
                questions.append(LabelledQuestion(record["question"], record["answer_id"]))
    return memories, questions


def evaluate_recall(
    search: Callable[[str], Iterable[str]],
    questions: Sequence[LabelledQuestion],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[int, float]:
    """Recall@k of a ranking function over labelled questions.

    ``search(question)`` returns memory ids, best first (any retrieval method: semantic,
    keyword or fused). Recall@k is the share of questions whose answer is among the
    first ``k`` ids.
    """
    if not questions:
        raise ValueError("no questions to evaluate")
    hits = dict.fromkeys(ks, 0)
    depth = max(ks)
    for labelled in questions:
        ranked = []
        for memory_id in search(labelled.question):
            ranked.append(memory_id)
            if len(ranked) >= depth:
                break
        for k in ks:
            if labelled.answer_id in ranked[:k]:
                hits[k] += 1
    return {k: hits[k] / len(questions) for k in ks}
