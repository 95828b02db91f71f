"""The Presidio recognizers behind :mod:`memstream.governance.sensitive`.

Imported only when a scanner loads (Presidio imports spaCy, which takes a second or two).
Presidio's own recognizers cover emails, phone numbers (through ``phonenumbers``), card
numbers (Luhn), IBANs (mod 97), IP addresses, Bitcoin addresses (base58check, bech32) and
the national identifiers that carry a checksum or a strict structure. Presidio has no
recognizer for secrets, nor for the Dutch BSN and the French NIR: they are defined here,
each a Presidio ``PatternRecognizer`` (or ``LocalRecognizer`` where only part of a match is
the value) whose entity name starts with ``SECRET_`` or ``NATIONAL_ID_``.

Nothing here touches the network: the email recognizer's domain check uses
``tldextract``'s bundled public-suffix snapshot, never a download.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import regex
import tldextract
from presidio_analyzer import (
    EntityRecognizer,
    LocalRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerResult,
)
from presidio_analyzer.predefined_recognizers import (
    CaSinRecognizer,
    CreditCardRecognizer,
    CryptoRecognizer,
    DeTaxIdRecognizer,
    EmailRecognizer,
    EsNieRecognizer,
    EsNifRecognizer,
    FiPersonalIdentityCodeRecognizer,
    IbanRecognizer,
    InAadhaarRecognizer,
    IpRecognizer,
    ItFiscalCodeRecognizer,
    NhsRecognizer,
    PhoneRecognizer,
    PlPeselRecognizer,
    SePersonnummerRecognizer,
    UkNinoRecognizer,
    UsSsnRecognizer,
)

#: Presidio entity name -> memstream type. Names not listed map by prefix (``SECRET_``,
#: ``NATIONAL_ID_``).
ENTITY_TYPES = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "card",
    "IBAN_CODE": "iban",
    "IP_ADDRESS": "ip",
    "CRYPTO": "crypto",
    "PERSON": "person",
    "US_SSN": "national_id",
    "UK_NINO": "national_id",
    "UK_NHS": "national_id",
    "ES_NIF": "national_id",
    "ES_NIE": "national_id",
    "IT_FISCAL_CODE": "national_id",
    "PL_PESEL": "national_id",
    "SE_PERSONNUMMER": "national_id",
    "FI_PERSONAL_IDENTITY_CODE": "national_id",
    "CA_SIN": "national_id",
    "IN_AADHAAR": "national_id",
    "DE_TAX_ID": "national_id",
}


def memstream_type(entity: str) -> str | None:
    """The memstream type of a Presidio entity name, or None for one we do not report."""
    if entity in ENTITY_TYPES:
        return ENTITY_TYPES[entity]
    if entity.startswith("SECRET_"):
        return "secret"
    if entity.startswith("NATIONAL_ID_"):
        return "national_id"
    return None


# -- offline email ----------------------------------------------------------------------------

#: The public-suffix list bundled with tldextract; no fetch, no cache directory.
_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer, checking the domain against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD(pattern_text).fqdn != ""


# -- national identifiers Presidio lacks ------------------------------------------------------


class NlBsnRecognizer(PatternRecognizer):
    """Dutch citizen service number (BSN): 9 digits passing the 11-test."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="NATIONAL_ID_NL_BSN",
            patterns=[
                Pattern("BSN", r"\b\d{9}\b", 0.3),
                Pattern("BSN (dotted)", r"\b\d{4}\.\d{2}\.\d{3}\b", 0.4),
            ],
            context=["bsn", "burgerservicenummer", "sofinummer", "citizen service number"],
            supported_language="en",
        )

    def validate_result(self, pattern_text: str) -> bool:
        digits = [int(c) for c in pattern_text if c.isdigit()]
        if len(digits) != 9 or digits[0] == 0:
            return False
        total = sum(d * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
        return (total - digits[8]) % 11 == 0


class FrNirRecognizer(PatternRecognizer):
    """French social security number (NIR): 13 digits and a two-digit key, 97 - n mod 97."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="NATIONAL_ID_FR_NIR",
            patterns=[
                Pattern(
                    "NIR",
                    r"\b[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}\b",
                    0.5,
                )
            ],
            context=["nir", "sécurité sociale", "securite sociale", "carte vitale", "insee"],
            supported_language="en",
        )

    def validate_result(self, pattern_text: str) -> bool:
        compact = pattern_text.replace(" ", "").upper()
        if len(compact) != 15:
            return False
        body, key = compact[:13], compact[13:]
        # Corsica: 2A and 2B count as 19 and 18
        body = body.replace("2A", "19", 1) if compact[5:7] == "2A" else body
        body = body.replace("2B", "18", 1) if compact[5:7] == "2B" else body
        if not body.isdigit() or not key.isdigit():
            return False
        return 97 - int(body) % 97 == int(key)


class SpacedDeTaxIdRecognizer(DeTaxIdRecognizer):
    """German tax identification number, compact or grouped ``12 345 678 901``."""

    def __init__(self) -> None:
        super().__init__(
            patterns=[
                Pattern("Steuer-ID", r"\b[1-9]\d{10}\b", 0.5),
                Pattern("Steuer-ID (grouped)", r"\b[1-9]\d ?\d{3} ?\d{3} ?\d{3}\b", 0.5),
            ],
            supported_language="en",
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        return super().validate_result(pattern_text.replace(" ", ""))


# -- secrets ----------------------------------------------------------------------------------

#: Token shapes that are secrets wherever they appear: (kind, regex, score). Case matters.
SECRET_PATTERNS: tuple[tuple[str, str, float], ...] = (
    (
        "aws_access_key_id",
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|APKA)[A-Z2-7]{16}\b",
        0.9,
    ),
    ("github_token", r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b", 0.95),
    ("github_token", r"\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b", 0.95),
    ("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}", 0.95),
    ("slack_token", r"\bxox[abposre]-(?:[0-9A-Za-z]+-){1,3}[0-9A-Za-z]{8,}\b", 0.95),
    (
        "slack_webhook",
        r"https://hooks\.slack\.com/(?:services|workflows)/T[A-Z0-9]+/[A-Z0-9]+/[A-Za-z0-9]+",
        0.95,
    ),
    ("stripe_key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b", 0.95),
    ("api_key", r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{32,}", 0.85),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])", 0.9),
    ("sendgrid_key", r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])", 0.95),
    ("npm_token", r"\bnpm_[A-Za-z0-9]{36}\b", 0.95),
    ("pypi_token", r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", 0.95),
    (
        "private_key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?",
        0.95,
    ),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", 0.9),
)


def secret_pattern_recognizers() -> list[PatternRecognizer]:
    by_kind: dict[str, list[Pattern]] = {}
    scores: dict[str, float] = {}
    for kind, rx, score in SECRET_PATTERNS:
        by_kind.setdefault(kind, []).append(Pattern(kind, rx, score))
        scores[kind] = score
    return [
        PatternRecognizer(
            supported_entity=f"SECRET_{kind.upper()}",
            patterns=patterns,
            supported_language="en",
            global_regex_flags=regex.DOTALL | regex.MULTILINE,
            name=f"secret:{kind}",
        )
        for kind, patterns in by_kind.items()
    ]


#: Words that make the value assigned to them a secret (``DB_PASSWORD=...``, ``token: ...``).
_SECRET_KEY_WORDS = (
    r"pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|"
    r"auth[_-]?key|private[_-]?key|client[_-]?secret|credentials?|signing[_-]?key"
)
#: ``key = value`` / ``key: value`` / ``"key": "value"`` with a secret-ish key.
_ASSIGNMENT = regex.compile(
    r"""(?ix)
    (?<![A-Za-z0-9])
    (?P<key>[A-Za-z0-9_.-]*(?:"""
    + _SECRET_KEY_WORDS
    + r""")[A-Za-z0-9_.-]*)
    ["']?\s*(?::|=|:=|=>)\s*
    (?P<quote>["']?)
    (?P<value>[^\s"',;]+)
    """
)
#: ``scheme://user:password@host``
_URL_CREDENTIALS = regex.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:(?P<value>[^\s@/]+)@", regex.I)
#: Words that, in prose, announce a secret a few words later: ``the wifi password is X``,
#: ``password was reset to X``, ``API token for the weather service: X``.
_PROSE_KEY = regex.compile(
    r"(?i)\b(?P<word>pass(?:word|phrase|code|wort)|pin|(?:api|access|auth|bearer)\s+(?:token|key)|"
    r"secret(?:\s+key)?|token)s?\b"
)
#: How many words after the announcing word the value may come.
_PROSE_REACH = 6
_PLACEHOLDER = regex.compile(
    r"""(?ix)^(?:
        \$\{?[A-Za-z_]+\}?      # $VAR, ${VAR}
      | <[^>]*>?                # <your-key>
      | \{\{?.*                 # {{ template }}
      | \*+ | x+ | \.+          # ****, xxxx
      | (?:changeme|replace_?me|redacted|none|null|true|false|example|placeholder|todo)
      | (?:os\.)?environ.* | env\(.* | getenv.* | process\.env.*
    )$"""
)


def _looks_secret(value: str, prose: bool) -> bool:
    """Whether an assigned value looks like a real secret rather than a word or reference."""
    if _PLACEHOLDER.match(value):
        return False
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() and c not in "-_." for c in value),
        )
    )
    if prose:  # a word in a sentence: only a value shaped like a password
        return len(value) >= 8 and classes >= 3 and any(c.isupper() for c in value)
    return len(value) >= 8 and (classes >= 2 or _entropy(value) >= 3.0)


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


_TRAILING = ".,;:)]}>\"'"
_WORD = regex.compile(r"\S+")


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without trailing punctuation (a sentence's full stop is not the password's)."""
    while end > start and text[end - 1] in _TRAILING:
        end -= 1
    return start, end


def _prose_value(text: str, pos: int, *, password: bool) -> tuple[int, int] | None:
    """The first secret-shaped word within :data:`_PROSE_REACH` words after ``pos``, in the
    same sentence. A password must mix three of lower case, upper case, digits and symbols;
    a token or key must also be long (16+) or a long hex string."""
    for i, m in enumerate(_WORD.finditer(text, pos)):
        if i >= _PROSE_REACH:
            break
        start, end = _trim(text, *m.span())
        start += text[start:end].startswith(('"', "'", "(", "<", "`"))
        value = text[start:end]
        if password and _looks_secret(value, prose=True):
            return start, end
        if not password and _looks_token(value):
            return start, end
        if m.group().endswith((".", "!", "?")) and not value.endswith(("!", "?")):
            break  # the sentence ended
    return None


def _looks_token(value: str) -> bool:
    if _PLACEHOLDER.match(value) or len(value) < 16:
        return False
    if regex.fullmatch(r"[0-9a-fA-F]{32,}", value):
        return True
    return _looks_secret(value, prose=True) and _entropy(value) >= 3.5


class AssignedSecretRecognizer(LocalRecognizer):
    """Values assigned to secret-ish keys, passwords in URLs, and passwords named in prose.

    Only the value is reported (not the key, the quotes or trailing punctuation), so a
    redaction keeps ``password: <SECRET_1>`` readable.
    """

    ENTITY = "SECRET_ASSIGNED"

    def __init__(self) -> None:
        super().__init__(
            supported_entities=[self.ENTITY], supported_language="en", name="secret:assigned"
        )

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        out: list[RecognizerResult] = []
        for rx, score in ((_ASSIGNMENT, 0.8), (_URL_CREDENTIALS, 0.9)):
            for m in rx.finditer(text):
                start, end = _trim(text, *m.span("value"))
                if rx is _URL_CREDENTIALS or _looks_secret(text[start:end], prose=False):
                    out.append(self._result(start, end, score))
        for m in _PROSE_KEY.finditer(text):
            found = _prose_value(text, m.end(), password=m.group("word").lower().startswith("pass"))
            if found is not None:
                out.append(self._result(*found, 0.7))
        return EntityRecognizer.remove_duplicates(out)

    def _result(self, start: int, end: int, score: float) -> RecognizerResult:
        return RecognizerResult(
            entity_type=self.ENTITY,
            start=start,
            end=end,
            score=score,
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: self.name,  # type: ignore[has-type]
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
            },
        )


# -- person names -----------------------------------------------------------------------------

#: Words spaCy's small model tags as names that name no one in particular.
_NOT_NAMES = frozenset(
    "mum mom mam dad mummy daddy mother father grandma grandpa granny gran nan nana papa "
    "auntie aunt uncle sis bro baby honey boss user".split()
)
#: Lower-case particles inside a name (``Anneke de Vries``, ``Ravi van der Berg``).
_PARTICLES = frozenset(
    "van von der den de da di del della la le du bin binti al el ter ten".split()
)
_NAME_WORD = r"[A-Z][a-zà-ÿß-ɏ]+(?:['’-][A-Za-zà-ÿß-ɏ]+)*"
#: A title, then a name: ``Dr. Okafor``, ``Mrs. van Dijk``, ``Coach Raman``. Case matters.
_TITLED = regex.compile(
    r"\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Professor|Sir|Dame|Coach|Judge|Rev|Fr|Sr|Sra)\.?[ \t]+"
    r"(?P<name>(?:(?:"
    + "|".join(sorted(_PARTICLES))
    + r")[ \t]+)*"
    + _NAME_WORD
    + r"(?:[ \t]+(?:(?:"
    + "|".join(sorted(_PARTICLES))
    + r")[ \t]+)*"
    + _NAME_WORD
    + r")*)"
)
#: ``"name": "Ada Lovelace"`` in a JSON or YAML snippet.
_NAME_FIELD = regex.compile(
    r"""(?i:["']?(?:full_?name|first_?name|last_?name|given_?name|family_?name|name|contact)["']?)"""
    r"""\s*[:=]\s*["']?(?P<name>""" + _NAME_WORD + r"(?:[ \t]+" + _NAME_WORD + r"){0,3})\b"
)


def _name_token(token) -> bool:
    """A token that can be part of a person's name: a capitalised proper noun, not an
    acronym, an identifier or a family word."""
    text = token.text
    return (
        token.pos_ == "PROPN"
        and text[:1].isupper()
        and not (len(text) > 1 and text.isupper())
        and all(c.isalpha() or c in "'’-" for c in text)
        and text.lower() not in _NOT_NAMES
    )


class NameRecognizer(LocalRecognizer):
    """Person names: spaCy's PERSON entities, kept only where they are made of proper
    nouns (the small model also tags sentence-initial nouns such as "Salary"), plus names
    after a title and values of ``name`` fields in JSON/YAML snippets.

    Needs the NLP artifacts of a pipeline with a tagger and NER (the name model).
    """

    ENTITY = "PERSON"

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.ENTITY], supported_language="en", name="person")

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        spans: list[tuple[int, int, float]] = []
        doc = getattr(nlp_artifacts, "tokens", None)
        if doc is not None:
            for ent in doc.ents:
                if ent.label_ != "PERSON":
                    continue
                toks = list(ent)
                while toks and not _name_token(toks[0]):
                    toks.pop(0)
                while toks and not _name_token(toks[-1]):
                    toks.pop()
                if toks and all(_name_token(t) or t.lower_ in _PARTICLES for t in toks):
                    spans.append((toks[0].idx, toks[-1].idx + len(toks[-1].text), 0.85))
        for rx in (_TITLED, _NAME_FIELD):
            for m in rx.finditer(text):
                spans.append((*m.span("name"), 0.8))
        out = [
            RecognizerResult(
                entity_type=self.ENTITY,
                start=start,
                end=end,
                score=score,
                recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: self.name,  # type: ignore[has-type]
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                },
            )
            for start, end, score in spans
        ]
        return EntityRecognizer.remove_duplicates(out)


# -- plausibility -------------------------------------------------------------------------------

_DATE = regex.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}")
_VERSION_CONTEXT = regex.compile(
    r"(?i)(?:\b(?:version|versions|firmware|build|release|rolled\s+back\s+to|upgraded?\s+to|"
    r"updated?\s+to|patch|tag)\W{0,3}(?:\w+\W+){0,2}|\bv)$"
)


#: Words near a bare run of digits that make it a phone number or a national id: without
#: them, 9 to 12 digits are as likely an order, serial or build number (most 10-digit runs
#: are valid North American numbers; one in 10 or 11 passes a one-digit checksum).
_CONTEXT = {
    "phone": regex.compile(
        r"(?i)\b(?:phone|mobile|cell|cellphone|call|calls|called|tel|telephone|landline|fax|"
        r"sms|text|texts|whatsapp|signal|ring|dial|hotline|helpline)\b"
    ),
    "national_id": regex.compile(
        r"(?i)\b(?:ssn|social\s+security|social\s+insurance|national\s+insurance|nino|nhs|"
        r"bsn|burgerservicenummer|citizen\s+service|aadhaar|aadhar|uid|pesel|personnummer|"
        r"personal\s+(?:identity\s+)?number|sin|tax\s+id|tax\s+identification|tin|steuer[\w-]*|"
        r"nir|vitale|s[ée]curit[ée]\s+sociale|codice\s+fiscale|fiscal\s+code|dni|nie|nif|hetu|"
        r"id\s+number|identity\s+number|national\s+id|identification\s+number)\b"
    ),
}


def _bare_digits(value: str) -> bool:
    return value.isdigit()


def plausible(type_: str, text: str, start: int, end: int) -> bool:
    """Whether a detection survives the checks Presidio does not make.

    - a card, national id or phone number that is part of a longer run of digit groups
      (``9478 4737 7060 9890 4364 89``: a tracking number), the tail of an identifier
      (``ORD-2024-009381``) or follows a ``+`` (a national id inside an international phone
      number) is not one;
    - a "phone number" shaped like a date (``03.10.2027``) is a date;
    - a phone number or national id written as bare digits (no ``+``, no grouping) needs a
      word that says what it is nearby (:data:`_CONTEXT`: 50 characters before, 25 after);
    - an IPv4 address right after "version", "firmware", "build", ... is a version.
    """
    if type_ in ("card", "national_id", "phone"):
        before, after = text[max(0, start - 2) : start], text[end : end + 2]
        if before[-1:].isdigit() or after[:1].isdigit():
            return False
        if len(before) == 2 and before[0].isdigit() and before[1] in " -.":
            return False
        if len(before) == 2 and before[0].isalpha() and before[1] in "-_/":
            return False  # the tail of an identifier: ORD-2024-009381
        if len(after) == 2 and after[1].isdigit() and after[0] in " -.":
            return False
        if type_ != "phone" and before[-1:] == "+":
            return False
    if type_ == "phone" and _DATE.fullmatch(text[start:end]):
        return False
    if type_ in _CONTEXT and _bare_digits(text[start:end]):
        window = text[max(0, start - 50) : start] + " " + text[end : end + 25]
        if not _CONTEXT[type_].search(window):
            return False
    if type_ == "ip" and _VERSION_CONTEXT.search(text[max(0, start - 40) : start]):
        return False
    return True


# -- the set ----------------------------------------------------------------------------------

#: Regions whose national number formats the phone recognizer also accepts (numbers in
#: international format, with ``+``, are recognized for every region).
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN", "CA", "AU", "ES", "IT", "NL", "BR", "IE")


def build(types: Iterable[str]) -> list[EntityRecognizer]:
    """Recognizers for the memstream ``types`` (``person`` needs the name model's NLP
    artifacts: add it only with that pipeline)."""
    wanted = set(types)
    recognizers: list[EntityRecognizer] = []
    if "email" in wanted:
        recognizers.append(OfflineEmailRecognizer())
    if "phone" in wanted:
        recognizers.append(PhoneRecognizer(supported_regions=PHONE_REGIONS))
    if "card" in wanted:
        recognizers.append(CreditCardRecognizer())
    if "iban" in wanted:
        recognizers.append(IbanRecognizer())
    if "ip" in wanted:
        recognizers.append(IpRecognizer())
    if "crypto" in wanted:
        recognizers.append(CryptoRecognizer())
    if "national_id" in wanted:
        recognizers += [
            UsSsnRecognizer(),
            UkNinoRecognizer(),
            NhsRecognizer(),
            EsNifRecognizer(supported_language="en"),
            EsNieRecognizer(supported_language="en"),
            ItFiscalCodeRecognizer(supported_language="en"),
            PlPeselRecognizer(supported_language="en"),
            SePersonnummerRecognizer(supported_language="en"),
            FiPersonalIdentityCodeRecognizer(supported_language="en"),
            CaSinRecognizer(),
            InAadhaarRecognizer(),
            SpacedDeTaxIdRecognizer(),
            NlBsnRecognizer(),
            FrNirRecognizer(),
        ]
    if "secret" in wanted:
        recognizers += secret_pattern_recognizers()
        recognizers.append(AssignedSecretRecognizer())
    if "person" in wanted:
        recognizers.append(NameRecognizer())
    return recognizers
