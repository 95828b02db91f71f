"""The labelled sets of the ``sensitive`` suite: sentences an agent might store, with the
sensitive values in them marked by exact character spans.

``python -m memstream.bench.sensitive_data [--out DIR] [--check]`` writes (or, with
``--check``, compares against) ``memstream/bench/data/sensitive/{test,dev}.jsonl``. Each
line is ``{"text": ..., "entities": [{"type": ..., "start": ..., "end": ...}]}`` with the
types of :mod:`memstream.governance.sensitive` (``email``, ``phone``, ``card``, ``iban``,
``national_id``, ``secret``, ``person``, ``ip``, ``crypto``).

The sentences are templates written by hand, separately for each split (no template is
shared between ``test`` and ``dev``); the values in them are generated here with a fixed
seed per split, so every number carries the checksum its kind has in real life (Luhn for
cards and Canadian SINs, mod 97 for IBANs and French NIRs, the Dutch 11-test, Verhoeff for
Aadhaar, ...), and the hard negatives carry near misses (16-digit numbers that fail Luhn,
IBANs with a wrong check, order numbers, ISBNs, versions, hashes). A template field is a
generator name, optionally with a format (``{phone:GB}``, ``{card:dashed}``); the same field
name twice is the same value, ``{email_2}`` is a second one. Fields of sensitive kinds are
labelled; the others (``order_id``, ``bad_card``, ...) are not.

Labelling rules: a person's name is labelled wherever it names a person (a given name
alone too), without a title (``Dr.``) or possessive ``'s``; a secret in an assignment is
labelled from the first character of the value to its last (not the key, not the quotes);
a PEM private key is labelled from ``-----BEGIN`` to the end of its ``-----END ...-----``
line; a phone number from its first digit or ``+``/``(`` to its last digit.

The ``test`` split was written before any recognizer was tuned and is never used to tune
one: tune on ``dev``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import string
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DATA_DIR", "SEEDS", "Generator", "build_split", "load_split", "main"]

DATA_DIR = Path(__file__).resolve().parent / "data" / "sensitive"
SEEDS = {"test": 20250901, "dev": 20250902}

# -- names ----------------------------------------------------------------------------------

FIRST_NAMES = (
    "Priya", "Jonas", "Aoife", "Mateo", "Yuki", "Chen", "Fatima", "Lars", "Amara", "Dmitri",
    "Sofia", "Kwame", "Ingrid", "Rafael", "Mei", "Olumide", "Hannah", "Tomasz", "Leila",
    "Diego", "Astrid", "Arjun", "Chiara", "Sipho", "Noemi", "Henrik", "Isabel", "Kenji",
    "Zainab", "Pierre", "Marta", "Oskar", "Ananya", "Luca", "Freya", "Emeka", "Clara",
    "Rohan", "Elif", "Sven", "Camille", "Tariq", "Bianca", "Mikael", "Greta", "Nikhil",
    "Lucia", "Femi", "Johanna", "Ravi", "Anneke", "Carlos", "Saoirse", "Hiroshi", "Nadia",
    "Wojciech", "Beatriz", "Kofi", "Linnea", "Julien", "Daniel", "Sarah", "Michael", "Emma",
    "David", "Laura", "Thomas", "Anna", "James", "Maria",
)  # fmt: skip
LAST_NAMES = (
    "Raman", "Müller", "O'Brien", "Fernández", "Tanaka", "Wei", "Haddad", "Johansson",
    "Okafor", "Volkov", "Rossi", "Mensah", "Lindqvist", "Costa", "Lin", "Adeyemi", "Schmidt",
    "Kowalski", "Nasser", "Herrera", "Nilsson", "Patel", "Bianchi", "Dlamini", "Ferrari",
    "Andersen", "Moreau", "Nakamura", "Bello", "Dubois", "Nowak", "Berg", "Iyer", "Romano",
    "MacLeod", "Eze", "Weber", "Kapoor", "Yilmaz", "Eriksson", "Lefèvre", "Rahman",
    "Marino", "Virtanen", "Hoffmann", "Sharma", "García", "Asante", "Van der Berg", "Gupta",
    "de Vries", "Santos", "Kelly", "Sato", "Petrova", "Wiśniewski", "Oliveira", "Boateng",
    "Holm", "Laurent", "Brown", "Smith", "Walsh", "Clarke",
)  # fmt: skip
EMAIL_DOMAINS = (
    "gmail.com", "protonmail.com", "outlook.de", "yahoo.co.uk", "posteo.net", "fastmail.fm",
    "icloud.com", "gmx.at", "web.de", "hotmail.fr", "libero.it", "acme-corp.io",
    "mail.uni-heidelberg.de", "tanaka-shoji.co.jp", "northwind.example.org", "startup.ai",
    "kliniken-sued.de", "law-firm.co.za", "cs.ox.ac.uk", "bigbank.com.br",
)  # fmt: skip

# -- checksums ------------------------------------------------------------------------------


def luhn_check_digit(digits: str) -> int:
    """The digit that makes ``digits`` + it pass the Luhn test."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def luhn_ok(number: str) -> bool:
    digits = [c for c in number if c.isdigit()]
    return bool(digits) and luhn_check_digit("".join(digits[:-1])) == int(digits[-1])


def iban_check_digits(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return f"{98 - int(numeric) % 97:02d}"


def iban_ok(iban: str) -> bool:
    compact = iban.replace(" ", "").upper()
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6), (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4), (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)  # fmt: skip
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2), (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)  # fmt: skip
_VERHOEFF_INV = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)


def verhoeff_check_digit(digits: str) -> int:
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[(i + 1) % 8][int(ch)]]
    return _VERHOEFF_INV[c]


def steuer_id_check_digit(digits: str) -> int:
    """ISO 7064 MOD 11,10 over the first 10 digits of a German tax identification number."""
    product = 10
    for ch in digits:
        total = (int(ch) + product) % 10 or 10
        product = (total * 2) % 11
    check = 11 - product
    return 0 if check == 10 else check


_CF_ODD = {
    **dict(zip("0123456789", (1, 0, 5, 7, 9, 13, 15, 17, 19, 21), strict=True)),
    **dict(
        zip(
            string.ascii_uppercase,
            (1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10,
             22, 25, 24, 23),
            strict=True,
        )
    ),
}  # fmt: skip


def codice_fiscale_check(first15: str) -> str:
    total = 0
    for i, ch in enumerate(first15):
        if i % 2 == 0:  # odd positions, counted from 1
            total += _CF_ODD[ch]
        else:
            total += int(ch) if ch.isdigit() else ord(ch) - ord("A")
    return chr(ord("A") + total % 26)


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58check(payload: bytes) -> str:
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    pad = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * pad + out


# -- value generators -----------------------------------------------------------------------

LABELS: dict[str, str] = {
    "email": "email",
    "phone": "phone",
    "card": "card",
    "iban": "iban",
    **{
        k: "national_id"
        for k in (
            "ssn",
            "nino",
            "nhs",
            "dni",
            "steuer_id",
            "nir",
            "bsn",
            "aadhaar",
            "personnummer",
            "sin",
            "codice_fiscale",
            "pesel",
        )
    },  # fmt: skip
    **{
        k: "secret"
        for k in (
            "aws_key_id",
            "aws_secret",
            "github_token",
            "slack_token",
            "slack_webhook",
            "stripe_key",
            "sk_key",
            "google_key",
            "pem",
            "password",
            "hex_secret",
            "jwt",
            "sendgrid_key",
            "npm_token",
        )
    },  # fmt: skip
    "person": "person",
    "first": "person",
    "last": "person",
    "ipv4": "ip",
    "ipv6": "ip",
    "btc": "crypto",
}

_PHONE_REGIONS = (
    "US", "GB", "DE", "FR", "IN", "JP", "AU", "BR", "ES", "IT", "NL", "CH", "SE", "ZA", "MX",
    "SG", "IE", "CA", "PL", "KR", "NG", "AE",
)  # fmt: skip

_IBAN_FORMATS = {  # country: BBAN as (kind, length) parts; n digits, a upper letters, c alnum
    "DE": (("n", 8), ("n", 10)),
    "GB": (("a", 4), ("n", 6), ("n", 8)),
    "FR": (("n", 5), ("n", 5), ("n", 11), ("n", 2)),
    "NL": (("a", 4), ("n", 10)),
    "ES": (("n", 20),),
    "IT": (("a", 1), ("n", 5), ("n", 5), ("n", 12)),
    "CH": (("n", 5), ("n", 12)),
    "BE": (("n", 12),),
    "PL": (("n", 24),),
    "IE": (("a", 4), ("n", 6), ("n", 8)),
    "AT": (("n", 16),),
    "PT": (("n", 21),),
    "SE": (("n", 20),),
    "NO": (("n", 11),),
    "DK": (("n", 14),),
}

_ALNUM = string.ascii_letters + string.digits


@dataclass
class Generator:
    """Values for one split, drawn from ``rng``."""

    rng: random.Random
    last_person: tuple[str, str] | None = field(default=None)

    # helpers
    def digits(self, n: int, first_nonzero: bool = False) -> str:
        s = "".join(self.rng.choice(string.digits) for _ in range(n))
        if first_nonzero and s[0] == "0":
            s = self.rng.choice("123456789") + s[1:]
        return s

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    @staticmethod
    def group(s: str, sizes: tuple[int, ...], sep: str) -> str:
        out, i = [], 0
        for size in sizes:
            out.append(s[i : i + size])
            i += size
        if i < len(s):
            out.append(s[i:])
        return sep.join(p for p in out if p)

    # people
    def person(self, spec: str = "") -> str:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        self.last_person = (first, last)
        return f"{first} {last}"

    def first(self, spec: str = "") -> str:
        name = self.rng.choice(FIRST_NAMES)
        self.last_person = (name, self.rng.choice(LAST_NAMES))
        return name

    def last(self, spec: str = "") -> str:
        name = self.rng.choice(LAST_NAMES)
        self.last_person = (self.rng.choice(FIRST_NAMES), name)
        return name

    def email(self, spec: str = "") -> str:
        if self.last_person and self.rng.random() < 0.6:
            first, last = self.last_person
        else:
            first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        first, last = _ascii(first), _ascii(last)
        local = self.rng.choice(
            (
                f"{first}.{last}",
                f"{first[0]}{last}",
                f"{first}_{last}{self.rng.randint(1, 99)}",
                f"{first}+{self.rng.choice(('notes', 'shop', 'travel', 'work'))}",
                f"{last}.{first[0]}",
                f"{first}{self.rng.randint(1970, 2005)}",
            )
        )
        domain = self.rng.choice(EMAIL_DOMAINS)
        if spec == "upper" or (not spec and self.rng.random() < 0.08):
            return f"{local.capitalize()}@{domain.upper()}"
        return f"{local}@{domain}"

    def phone(self, spec: str = "") -> str:
        import phonenumbers

        region, style = _spec(spec)
        region = region or self.rng.choice(_PHONE_REGIONS)
        kind = self.rng.choice(
            (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
        )
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            raise ValueError(f"{{phone:{spec}}}: phonenumbers has no example for {region}")
        national = str(example.national_number)
        for _ in range(200):
            keep = max(2, len(national) - 5)
            candidate = national[:keep] + self.digits(len(national) - keep)
            number = phonenumbers.parse(f"+{example.country_code}{candidate}")
            if phonenumbers.is_valid_number(number):
                break
        else:
            number = example
        style = style or self.rng.choice(("intl",) * 6 + ("e164", "national", "national"))
        if style == "e164":
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if style == "national":
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        if style == "dotted" or (style == "intl" and self.rng.random() < 0.15):
            text = text.replace("-", " ")
            head, _, rest = text.partition(" ")
            text = head + " " + rest.replace(" ", ".")
        return text

    def card(self, spec: str = "") -> str:
        brand = self.rng.choice(("visa", "visa", "mc", "mc", "amex", "discover", "jcb"))
        if brand == "amex":
            body = self.rng.choice(("34", "37")) + self.digits(12)
        elif brand == "visa":
            body = "4" + self.digits(14)
        elif brand == "mc":
            body = str(self.rng.randint(51, 55)) + self.digits(13)
        elif brand == "discover":
            body = "6011" + self.digits(11)
        else:
            body = str(self.rng.randint(3528, 3589)) + self.digits(11)
        number = body + str(luhn_check_digit(body))
        return self._card_format(number, spec)

    def _card_format(self, number: str, spec: str) -> str:
        style = spec or self.rng.choice(("spaced", "spaced", "dashed", "compact"))
        sizes = (4, 6, 5) if len(number) == 15 else (4, 4, 4, 4)
        if style == "compact":
            return number
        return self.group(number, sizes, "-" if style == "dashed" else " ")

    def iban(self, spec: str = "") -> str:
        country, style = _spec(spec)
        country = country or self.rng.choice(tuple(_IBAN_FORMATS))
        bban = ""
        for kind, n in _IBAN_FORMATS[country]:
            if kind == "n":
                bban += self.digits(n)
            elif kind == "a":
                bban += self.chars(string.ascii_uppercase, n)
            else:
                bban += self.chars(string.ascii_uppercase + string.digits, n)
        iban = country + iban_check_digits(country, bban) + bban
        style = style or self.rng.choice(("print", "print", "compact"))
        return iban if style == "compact" else self.group(iban, (4,) * 8, " ")

    # national identifiers
    def ssn(self, spec: str = "") -> str:
        while True:
            area = self.rng.randint(1, 899)
            if area != 666:
                break
        group, serial = self.rng.randint(1, 99), self.rng.randint(1, 9999)
        sep = " " if spec == "spaced" else "-"
        return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"

    def nino(self, spec: str = "") -> str:
        first_ok = [c for c in string.ascii_uppercase if c not in "DFIQUV"]
        second_ok = [c for c in string.ascii_uppercase if c not in "DFIOQUV"]
        while True:
            prefix = self.rng.choice(first_ok) + self.rng.choice(second_ok)
            if prefix not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
                break
        digits, suffix = self.digits(6), self.rng.choice("ABCD")
        if spec == "compact" or (not spec and self.rng.random() < 0.4):
            return f"{prefix}{digits}{suffix}"
        return f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"

    def nhs(self, spec: str = "") -> str:
        while True:
            body = self.digits(9, first_nonzero=True)
            check = 11 - sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True)) % 11
            check = 0 if check == 11 else check
            if check != 10:
                break
        number = body + str(check)
        return number if spec == "compact" else self.group(number, (3, 3, 4), " ")

    def dni(self, spec: str = "") -> str:
        n = self.rng.randint(10_000_000, 99_999_999)
        letter = "TRWAGMYFPDXBNJZSQVHLCKE"[n % 23]
        return f"{n}-{letter}" if spec == "dashed" else f"{n}{letter}"

    def steuer_id(self, spec: str = "") -> str:
        while True:
            pool = list(string.digits)
            self.rng.shuffle(pool)
            doubled = pool[0]
            ten = pool[:9] + [doubled]  # nine distinct digits, one of them twice
            self.rng.shuffle(ten)
            if ten[0] != "0":
                break
        body = "".join(ten)
        number = body + str(steuer_id_check_digit(body))
        return number if spec == "compact" else self.group(number, (2, 3, 3, 3), " ")

    def nir(self, spec: str = "") -> str:
        sex = self.rng.choice("12")
        yy, mm = f"{self.rng.randint(50, 99):02d}", f"{self.rng.randint(1, 12):02d}"
        dept = f"{self.rng.randint(1, 95):02d}"
        commune, order = f"{self.rng.randint(1, 999):03d}", f"{self.rng.randint(1, 999):03d}"
        body = sex + yy + mm + dept + commune + order
        key = 97 - int(body) % 97
        if spec == "compact":
            return f"{body}{key:02d}"
        return f"{sex} {yy} {mm} {dept} {commune} {order} {key:02d}"

    def bsn(self, spec: str = "") -> str:
        while True:
            body = self.digits(8, first_nonzero=True)
            total = sum(int(d) * w for d, w in zip(body, range(9, 1, -1), strict=True))
            last = total % 11
            if last < 10:
                break
        number = body + str(last)
        return self.group(number, (4, 2, 3), ".") if spec == "dotted" else number

    def aadhaar(self, spec: str = "") -> str:
        body = self.rng.choice("23456789") + self.digits(10)
        number = body + str(verhoeff_check_digit(body))
        return number if spec == "compact" else self.group(number, (4, 4, 4), " ")

    def personnummer(self, spec: str = "") -> str:
        yy, mm = self.rng.randint(40, 99), self.rng.randint(1, 12)
        dd = self.rng.randint(1, 28)
        body = f"{yy:02d}{mm:02d}{dd:02d}{self.digits(3)}"
        return f"{body[:6]}-{body[6:]}{luhn_check_digit(body)}"

    def sin(self, spec: str = "") -> str:
        body = self.rng.choice("1234567") + self.digits(7)
        number = body + str(luhn_check_digit(body))
        return self.group(number, (3, 3, 3), "-" if spec == "dashed" else " ")

    def codice_fiscale(self, spec: str = "") -> str:
        consonants = "BCDFGHJKLMNPQRSTVZ"
        surname = self.chars(consonants, 3)
        name = self.chars(consonants, 3)
        yy = f"{self.rng.randint(40, 99):02d}"
        month = self.rng.choice("ABCDEHLMPRST")
        day = self.rng.randint(1, 28) + self.rng.choice((0, 40))
        place = self.rng.choice("ABCDEFGHILM") + f"{self.rng.randint(1, 999):03d}"
        first15 = f"{surname}{name}{yy}{month}{day:02d}{place}"
        return first15 + codice_fiscale_check(first15)

    def pesel(self, spec: str = "") -> str:
        year = self.rng.randint(1950, 2009)
        month = self.rng.randint(1, 12) + (20 if year >= 2000 else 0)
        day = self.rng.randint(1, 28)
        body = f"{year % 100:02d}{month:02d}{day:02d}{self.digits(4)}"
        weights = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
        check = (10 - sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 10) % 10
        return body + str(check)

    # secrets
    def aws_key_id(self, spec: str = "") -> str:
        return self.rng.choice(("AKIA", "AKIA", "ASIA")) + self.chars(
            string.ascii_uppercase + "234567", 16
        )

    def aws_secret(self, spec: str = "") -> str:
        return self.chars(_ALNUM + "/+", 40)

    def github_token(self, spec: str = "") -> str:
        if spec == "fine" or (not spec and self.rng.random() < 0.3):
            return f"github_pat_{self.chars(_ALNUM, 22)}_{self.chars(_ALNUM, 59)}"
        return self.rng.choice(("ghp_", "ghp_", "gho_", "ghs_")) + self.chars(_ALNUM, 36)

    def slack_token(self, spec: str = "") -> str:
        kind = self.rng.choice(("xoxb", "xoxp"))
        return f"{kind}-{self.digits(12, True)}-{self.digits(13, True)}-{self.chars(_ALNUM, 24)}"

    def slack_webhook(self, spec: str = "") -> str:
        team = "T" + self.chars(string.ascii_uppercase + string.digits, 10)
        bot = "B" + self.chars(string.ascii_uppercase + string.digits, 10)
        return f"https://hooks.slack.com/services/{team}/{bot}/{self.chars(_ALNUM, 24)}"

    def stripe_key(self, spec: str = "") -> str:
        prefix = self.rng.choice(("sk_live_", "sk_live_", "rk_live_", "sk_test_"))
        return prefix + self.chars(_ALNUM, self.rng.choice((24, 34, 99)))

    def sk_key(self, spec: str = "") -> str:
        if self.rng.random() < 0.5:
            return "sk-" + self.chars(_ALNUM, 48)
        return "sk-proj-" + self.chars(_ALNUM + "-_", 64)

    def google_key(self, spec: str = "") -> str:
        return "AIza" + self.chars(_ALNUM + "-_", 35)

    def sendgrid_key(self, spec: str = "") -> str:
        return f"SG.{self.chars(_ALNUM + '-_', 22)}.{self.chars(_ALNUM + '-_', 43)}"

    def npm_token(self, spec: str = "") -> str:
        return "npm_" + self.chars(_ALNUM, 36)

    def pem(self, spec: str = "") -> str:
        kind = self.rng.choice(
            ("RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY")
        )
        body = base64.b64encode(self.rng.randbytes(96)).decode()
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"

    def password(self, spec: str = "") -> str:
        words = ("Blue", "Falcon", "river", "Maple", "orbit", "Tiger", "copper", "Nebula")
        style = self.rng.choice(("words", "mixed", "mixed"))
        if style == "words":
            return f"{self.rng.choice(words)}-{self.rng.choice(words)}-{self.rng.randint(10, 99)}!"
        return self.chars(_ALNUM + "!#%&*?@$", self.rng.randint(12, 20))

    def hex_secret(self, spec: str = "") -> str:
        return self.chars("0123456789abcdef", self.rng.choice((32, 40, 64)))

    def jwt(self, spec: str = "") -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).decode().rstrip("=")

        header = b64(b'{"alg":"HS256","typ":"JWT"}')
        sub = self.rng.randint(1000, 99999)
        payload = b64(
            f'{{"sub":"{sub}","iat":{self.rng.randint(1_600_000_000, 1_800_000_000)}}}'.encode()
        )
        return f"{header}.{payload}.{b64(self.rng.randbytes(32))}"

    # addresses
    def ipv4(self, spec: str = "") -> str:
        style = spec or self.rng.choice(("public", "public", "private"))
        if style == "private":
            return self.rng.choice(
                (
                    f"10.{self.rng.randint(0, 255)}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}",
                    f"192.168.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}",
                    f"172.{self.rng.randint(16, 31)}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}",
                )
            )
        first = self.rng.choice([n for n in range(11, 224) if n not in (100, 127, 169, 172, 192)])
        return f"{first}.{self.rng.randint(0, 255)}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"

    def ipv6(self, spec: str = "") -> str:
        groups = [f"{self.rng.randint(0, 0xFFFF):x}" for _ in range(8)]
        groups[0] = self.rng.choice(("2001", "2a02", "2606", "fd12"))
        if self.rng.random() < 0.5:
            return ":".join(groups[:3]) + "::" + ":".join(groups[6:])
        return ":".join(groups)

    def btc(self, spec: str = "") -> str:
        version = b"\x00" if self.rng.random() < 0.6 else b"\x05"
        return base58check(version + self.rng.randbytes(20))

    # -- hard negatives (never labelled) ------------------------------------------------------
    def order_id(self, spec: str = "") -> str:
        return self.rng.choice(
            (
                f"{self.digits(3, True)}-{self.digits(7)}-{self.digits(7)}",
                f"ORD-{self.rng.randint(2019, 2026)}-{self.digits(6)}",
                f"#{self.chars(string.ascii_uppercase, 1)}{self.digits(6)}",
                f"{self.digits(10, True)}",
            )
        )

    def bad_card(self, spec: str = "") -> str:
        body = self.rng.choice(("4", "5", "6")) + self.digits(14)
        check = (luhn_check_digit(body) + self.rng.randint(1, 9)) % 10
        return self._card_format(body + str(check), spec or self.rng.choice(("spaced", "compact")))

    def bad_iban(self, spec: str = "") -> str:
        while True:
            good = self.iban("compact").replace(" ", "")
            i = self.rng.randint(4, len(good) - 1)
            if not good[i].isdigit():
                continue
            bad = good[:i] + str((int(good[i]) + self.rng.randint(1, 9)) % 10) + good[i + 1 :]
            if not iban_ok(bad):
                return self.group(bad, (4,) * 8, " ") if self.rng.random() < 0.6 else bad

    def isbn(self, spec: str = "") -> str:
        body = "978" + self.digits(9)
        check = (10 - sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(body)) % 10) % 10
        number = body + str(check)
        return f"{number[:3]}-{number[3]}-{number[4:7]}-{number[7:12]}-{number[12]}"

    def version(self, spec: str = "") -> str:
        if spec == "four":
            return f"{self.rng.randint(1, 12)}.{self.rng.randint(0, 9)}.{self.rng.randint(0, 30)}.{self.rng.randint(0, 200)}"
        return f"{self.rng.randint(0, 9)}.{self.rng.randint(0, 30)}.{self.rng.randint(0, 20)}"

    def price(self, spec: str = "") -> str:
        amount = self.rng.randint(3, 4000) + self.rng.choice((0, 0.5, 0.99, 0.49))
        return self.rng.choice(("${:,.2f}", "€{:,.2f}", "£{:,.2f}", "CHF {:,.2f}")).format(amount)

    def amount(self, spec: str = "") -> str:
        return f"{self.rng.randint(1, 999)},{self.digits(3)},{self.digits(3)}"

    def date(self, spec: str = "") -> str:
        y, m, d = self.rng.randint(2019, 2027), self.rng.randint(1, 12), self.rng.randint(1, 28)
        return self.rng.choice(
            (f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{d:02d}.{m:02d}.{y}", f"{m}/{d}/{y}")
        )

    def sha(self, spec: str = "") -> str:
        return self.chars("0123456789abcdef", 7 if spec == "short" else 40)

    def digest(self, spec: str = "") -> str:
        return "sha256:" + self.chars("0123456789abcdef", 64)

    def uuid(self, spec: str = "") -> str:
        return str(uuid.UUID(bytes=self.rng.randbytes(16), version=4))

    def tracking(self, spec: str = "") -> str:
        if self.rng.random() < 0.5:
            return "1Z" + self.chars(string.ascii_uppercase + string.digits, 16)
        return self.group("94" + self.digits(20), (4, 4, 4, 4, 4, 2), " ")

    def flight(self, spec: str = "") -> str:
        return (
            self.rng.choice(("LH", "BA", "AF", "KL", "UA", "QF", "NH", "TK"))
            + " "
            + str(self.rng.randint(10, 9999))
        )

    def pnr(self, spec: str = "") -> str:
        return self.chars(string.ascii_uppercase + "23456789", 6)

    def invoice(self, spec: str = "") -> str:
        return f"INV-{self.rng.randint(2019, 2026)}-{self.digits(5)}"

    def ticket(self, spec: str = "") -> str:
        return f"{self.rng.choice(('JIRA', 'OPS', 'INFRA', 'SUP'))}-{self.rng.randint(10, 9999)}"

    def long_number(self, spec: str = "") -> str:
        n = int(spec) if spec.isdigit() else self.rng.randint(8, 12)
        return self.digits(n, first_nonzero=True)


def _spec(spec: str) -> tuple[str, str]:
    """``"GB/national"`` -> ``("GB", "national")``: a region in capitals, a style in lower case."""
    region = next((p for p in spec.split("/") if p.isupper()), "")
    style = next((p for p in spec.split("/") if p.islower()), "")
    return region, style


def _ascii(name: str) -> str:
    table = str.maketrans("üéèáíóñśłøåäöİÜ", "ueeaionsloaaoIU")
    return "".join(c for c in name.translate(table).lower() if c.isalnum())


def fill(template: str, gen: Generator) -> dict:
    """One labelled example from a template: the text and its entities' exact spans."""
    gen.last_person = None
    parts: list[str] = []
    entities: list[dict] = []
    values: dict[str, str] = {}
    pos = 0
    for literal, name, spec, _ in string.Formatter().parse(template):
        parts.append(literal)
        pos += len(literal)
        if name is None:
            continue
        kind = name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name
        make: Callable[[str], str] | None = getattr(gen, kind, None)
        if make is None or kind.startswith("_"):
            raise ValueError(f"template field {{{name}}} names no generator: {template!r}")
        if name not in values:
            values[name] = make(spec or "")
        value = values[name]
        if kind in LABELS:
            entities.append({"type": LABELS[kind], "start": pos, "end": pos + len(value)})
        parts.append(value)
        pos += len(value)
    return {"text": "".join(parts), "entities": entities}


def build_split(split: str) -> list[dict]:
    """The labelled examples of ``split`` (``test`` or ``dev``), deterministic."""
    from .sensitive_templates import TEMPLATES

    gen = Generator(random.Random(SEEDS[split]))
    positives, negatives, repeat = TEMPLATES[split]
    rows = [fill(t, gen) for t in positives] + [fill(t, gen) for t in negatives]
    # Templates with fields get a second set of values (a new sentence to the detector).
    again = [t for t in positives + negatives if "{" in t.replace("{{", "")]
    rows += [fill(t, gen) for t in gen.rng.sample(again, min(repeat, len(again)))]
    gen.rng.shuffle(rows)
    return rows


def load_split(split: str, data_dir: Path = DATA_DIR) -> list[dict]:
    """The shipped labelled examples of ``split``."""
    path = data_dir / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _dump(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m memstream.bench.sensitive_data",
        description="Write the labelled sets of the sensitive suite.",
    )
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--split", action="append", choices=sorted(SEEDS))
    parser.add_argument(
        "--check", action="store_true", help="compare with the files instead of writing them"
    )
    args = parser.parse_args(argv)
    status = 0
    for split in args.split or sorted(SEEDS):
        rows = build_split(split)
        path = args.out / f"{split}.jsonl"
        if args.check:
            same = path.exists() and path.read_text(encoding="utf-8") == _dump(rows)
            print(f"{path}: {'same' if same else 'DIFFERENT'}")
            status |= not same
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_dump(rows), encoding="utf-8")
        n_pos = sum(bool(r["entities"]) for r in rows)
        print(f"{path}: {len(rows)} texts, {n_pos} with sensitive values", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
