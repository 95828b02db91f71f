"""JSON Schema of every event type, generated from the msgspec Structs (never by hand).

A producer in any language validates what it sends against ``schemas/jsonschema/<type>.json``
(or ``events.json``, the union of all). Regenerate after changing an event type::

    python -m memstream.schemas.generate          # writes the files
    python -m memstream.schemas.generate --check  # exits 1 when the files are stale

A test runs the check, so committed schemas cannot drift from the code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal

import msgspec

from .events import ENVELOPE_FIELDS, Event, Registry, default_registry

SCHEMA_DIR = Path(__file__).parent / "jsonschema"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _event_struct(name: str, version: int, payload: type) -> type:
    """A Struct for one event type: the envelope with ``type`` and ``schema_version`` pinned."""
    hints = msgspec.structs.fields(Event)
    fields: list[Any] = []
    for f in hints:
        if f.name not in ENVELOPE_FIELDS:
            continue
        if f.name == "type":
            fields.append(("type", Literal[name]))  # type: ignore[valid-type]
        elif f.name == "schema_version":
            fields.append(("schema_version", Literal[version]))  # type: ignore[valid-type]
        elif f.required:
            fields.append((f.name, f.type))
        else:
            fields.append((f.name, f.type, f.default))
    fields.append(("payload", payload))
    title = "".join(p.capitalize() for p in name.split("_")) + "Event"
    return msgspec.defstruct(title, fields, kw_only=True, forbid_unknown_fields=True)


def generate(registry: Registry | None = None) -> dict[str, dict[str, Any]]:
    """File name → schema document, for every registered type plus their union."""
    registry = registry or default_registry()
    docs: dict[str, dict[str, Any]] = {}
    structs = []
    for name in registry.names():
        t = registry.types[name]
        s = _event_struct(name, t.version, t.payload)
        structs.append(s)
        schema = msgspec.json.schema(s)
        schema["$schema"] = _DIALECT
        schema["$id"] = f"memstream/events/{name}.json"
        schema["description"] = (t.payload.__doc__ or "").strip().split("\n\n")[0]
        docs[f"{name}.json"] = schema
    (defs, refs) = msgspec.json.schema_components(structs, ref_template="#/$defs/{name}")
    docs["events.json"] = {
        "$schema": _DIALECT,
        "$id": "memstream/events/events.json",
        "description": "Any memstream event: one object, or a JSON array of them (a batch).",
        "oneOf": [
            {"oneOf": list(defs)},
            {"type": "array", "minItems": 1, "items": {"oneOf": list(defs)}},
        ],
        "$defs": refs,
    }
    return docs


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def stale(directory: Path = SCHEMA_DIR, registry: Registry | None = None) -> list[str]:
    """Files that are missing, different, or no longer generated."""
    docs = generate(registry)
    out = []
    for name, doc in docs.items():
        p = directory / name
        if not p.exists() or p.read_text() != render(doc):
            out.append(name)
    if directory.exists():
        out += [p.name for p in directory.glob("*.json") if p.name not in docs]
    return sorted(out)


def write(directory: Path = SCHEMA_DIR, registry: Registry | None = None) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    docs = generate(registry)
    for p in directory.glob("*.json"):
        if p.name not in docs:
            p.unlink()
    for name, doc in docs.items():
        (directory / name).write_text(render(doc))
    return sorted(docs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate the JSON Schema of memstream's events.")
    ap.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    ap.add_argument("--dir", type=Path, default=SCHEMA_DIR)
    args = ap.parse_args(argv)
    if args.check:
        bad = stale(args.dir)
        if bad:
            print(f"stale JSON Schema files in {args.dir}: {', '.join(bad)}", file=sys.stderr)
            print("regenerate: python -m memstream.schemas.generate", file=sys.stderr)
            return 1
        print("JSON Schema files are up to date")
        return 0
    for name in write(args.dir):
        print(args.dir / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
