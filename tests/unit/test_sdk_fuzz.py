"""Property: no argument to any public method of the SDK crashes it or changes the log.

Hypothesis calls every public method of :class:`MemoryStore` and of
:class:`AsyncMemoryStore` (found by introspection: a new method must get its argument
strategies in :data:`ARGS`, or be listed in :data:`NOT_FUZZED` with the reason) with
arguments that are valid, well-typed but wrong (unknown ids, negative offsets, huge
integers, naive times, vectors of the wrong dimension, lone surrogates, very long strings)
or wrongly typed (None, bytes, floats, NaN, nested garbage). Every call must either
succeed or raise one of the errors the README documents (:mod:`memstream.errors`), and a
call that fails must append nothing (a rejected event is appended and audited: one
record). At least :data:`MIN_CALLS` calls are made; the test reports every undocumented
exception it met (method, face, exception type), not only the first.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memstream import AsyncMemoryStore, MemoryStore, errors
from memstream.governance.retention import RetentionScheduler

pytestmark = pytest.mark.slow

#: calls the test must make in all (sync and async together)
MIN_CALLS = 10_000
EXAMPLES = 1_400
DIM = 16  # the hash_embedder's (tests/conftest.py)

#: What a malformed call may raise: the errors the README documents (memstream.errors),
#: and FileExistsError for a backup or replay into a directory that is not empty.
DOCUMENTED: tuple[type[BaseException], ...] = (
    *(c for n in errors.__all__ if isinstance(c := getattr(errors, n), type)),
    FileExistsError,
)


# -- values ---------------------------------------------------------------------------------

surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
with_surrogate = st.builds(
    lambda a, s, b: a + s + b, st.text(max_size=5), surrogate, st.text(max_size=5)
)
long_text = st.sampled_from(["x" * 300, "y" * 5_000, "z" * 200_000, "\x00" * 10])
huge_ints = st.sampled_from(
    [2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**40, 10**400]
)
ints = st.integers(min_value=-5, max_value=50) | huge_ints | st.integers()
floats = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0])
naive = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
aware = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
) | st.sampled_from([datetime.now(UTC), datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=14)))])
time_strings = st.sampled_from(
    ["2026-01-01T12:00:00Z", "2026-01-01T12:00:00+02:00", "2026-01-01T12:00:00",
     "yesterday", "", "0", "-1", "1" * 40, "9999-12-31T23:59:59+00:00", "2026-13-01T00:00Z"]
)  # fmt: skip
leaves = (
    st.none() | st.booleans() | ints | floats | st.text(max_size=20) | with_surrogate
    | st.binary(max_size=8) | naive | aware
    | st.sampled_from([object(), {1, 2}, frozenset(), 1j, b"\xff", bytearray(b"x")])
)  # fmt: skip
nested = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | with_surrogate | ints, inner, max_size=4)
        | st.tuples(inner, inner)
    ),
    max_leaves=12,
)
#: anything: the wrongly typed value for any argument
garbage = leaves | nested


def arg(*valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid values (some), else the wrong ones of every kind."""
    return st.one_of(*valid, garbage) if valid else garbage


ids = st.sampled_from(["m-live", "m-frozen", "m-archived", "m-other", "ghost"])
memory_id = arg(ids, st.sampled_from(["has/slash", " ", "", "a" * 300]), with_surrogate)
namespace = arg(
    st.sampled_from(["user/alice", "team/ops"]),
    st.sampled_from(["not a namespace", "user/alice ", "", "/"]),
    with_surrogate,
)
text = arg(st.text(max_size=30), with_surrogate, long_text)
short = arg(st.none(), st.text(max_size=12), with_surrogate, long_text)
offset = arg(st.none(), ints)
version = arg(st.none(), ints)
point = arg(st.none(), ints, aware, naive, time_strings)
when = arg(st.none(), aware, naive, time_strings)
strings = arg(
    st.none(),
    st.lists(st.text(min_size=1, max_size=10), max_size=4),
    st.lists(with_surrogate | st.text(), max_size=3),
    st.text(max_size=5),
    st.lists(st.just("t"), min_size=65, max_size=70),
)
vector = arg(
    st.none(),
    st.lists(st.floats(-1, 1), min_size=DIM, max_size=DIM),
    st.lists(floats, min_size=1, max_size=DIM + 1),
    st.lists(st.just(0.0), min_size=DIM, max_size=DIM),
    st.just([]),
)
metadata = arg(st.none(), st.dictionaries(st.text(max_size=8), leaves, max_size=4), nested)
flag = arg(st.booleans())
positive = arg(ints)
payload = arg(st.fixed_dictionaries({"text": text}), st.dictionaries(st.text(max_size=8), nested))
event_type = arg(st.sampled_from(["create", "revise", "archive", "remember"]), with_surrogate)
envelope_kw = {
    "actor": short,
    "context": arg(st.none(), st.fixed_dictionaries({"app": short}), nested),
    "expected_version": version,
    "correlation_id": short,
    "causation_id": short,
    "subject": short,
    "occurred_at": arg(st.none(), aware, naive, time_strings),
    "event_id": arg(st.none(), st.uuids().map(str), with_surrogate),
}
reason = {"reason": short}
on_memory = {**reason, "namespace": arg(st.none(), namespace)}


def wire_event() -> st.SearchStrategy[Any]:
    good = {
        "event_id": st.uuids().map(str), "type": st.just("create"),
        "schema_version": st.just(1), "namespace": st.just("user/alice"),
        "memory_id": ids, "occurred_at": st.just(datetime.now(UTC).isoformat()),
        "actor": st.just("fuzz"), "payload": st.fixed_dictionaries({"text": text}),
    }  # fmt: skip
    return st.fixed_dictionaries({k: arg(v) for k, v in good.items()})


sub_name = arg(st.sampled_from(["sub-a", "sub-b", "ghost"]), with_surrogate, long_text)
pub_name = arg(st.sampled_from(["pub-a", "ghost"]), with_surrogate)
start = arg(st.sampled_from(["now", "beginning", "later"]), point)
sub_filter = arg(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "namespaces": arg(st.lists(namespace, max_size=2)),
            "types": strings,
            "semantic": arg(
                st.fixed_dictionaries({"query": short}, optional={"threshold": floats})
            ),
            "nope": leaves,
        },
    ),
)

events = arg(
    st.lists(wire_event(), max_size=3),
    st.lists(wire_event().map(lambda e: str(e).encode()), max_size=2),
    st.lists(st.binary(max_size=30), max_size=2),
)

#: Each public method: its arguments, by name (required ones always drawn, optional ones
#: sometimes). Adding a method to the SDK means adding it here.
ARGS: dict[str, tuple[dict[str, st.SearchStrategy[Any]], dict[str, st.SearchStrategy[Any]]]] = {
    "event": (
        {"type": event_type, "namespace": namespace, "memory_id": memory_id, "payload": payload},
        envelope_kw,
    ),  # fmt: skip
    "append": ({"events": events}, {"raise_on_reject": flag}),
    "publish_json": (
        {
            "data": arg(
                st.binary(max_size=40),
                st.text(max_size=40),
                with_surrogate,
                wire_event().map(lambda e: str(e)),
            )
        },
        {"raise_on_reject": flag},
    ),  # fmt: skip
    "create": (
        {"namespace": namespace, "text": text},
        {
            "memory_id": arg(st.none(), memory_id),
            "kind": short,
            "tags": strings,
            "metadata": metadata,
            "source": short,
            "owner": short,
            "visibility": short,
            "priority": positive,
            "ttl_seconds": offset,
            "retention_days": offset,
            "expires_at": when,
            "vector": vector,
            **envelope_kw,
        },
    ),  # fmt: skip
    "revise": (
        {"memory_id": memory_id, "text": text},
        {
            "tags": strings,
            "metadata": metadata,
            **reason,
            "vector": vector,
            "namespace": arg(st.none(), namespace),
            **envelope_kw,
        },
    ),  # fmt: skip
    "merge": (
        {
            "namespace": namespace,
            "sources": strings | st.lists(ids, min_size=2, max_size=3),
            "text": text,
        },
        {
            "memory_id": arg(st.none(), memory_id),
            "kind": short,
            "tags": strings,
            "metadata": metadata,
            **reason,
            "vector": vector,
            **envelope_kw,
        },
    ),  # fmt: skip
    "rollback": ({"memory_id": memory_id, "to_version": version}, {**on_memory, **envelope_kw}),
    "erase_subject": (
        {"subject": namespace},
        {**on_memory, **{k: v for k, v in envelope_kw.items() if k != "subject"}},
    ),
    **{
        op: ({"memory_id": memory_id}, {**on_memory, **envelope_kw})
        for op in ("activate", "archive", "restore", "expire", "freeze", "unfreeze", "erase")
    },
    "artifact_built": (
        {
            "memory_id": memory_id,
            "artifact_id": short,
            "artifact_kind": short,
            "model": short,
            "path": short,
            "checksum": short,
        },
        {
            "size_bytes": positive,
            "status": short,
            "source_version": version,
            "detail": short,
            "namespace": arg(st.none(), namespace),
            **envelope_kw,
        },
    ),  # fmt: skip
    "get": (
        {"memory_id": memory_id},
        {
            "namespace": arg(st.none(), namespace),
            "version": version,
            "as_of": point,
            "min_offset": offset,
        },
    ),  # fmt: skip
    "history": (
        {"memory_id": memory_id},
        {
            "namespace": arg(st.none(), namespace),
            "include_parents": flag,
            "as_of": point,
            "min_offset": offset,
        },
    ),  # fmt: skip
    "list_memories": (
        {},
        {
            "namespace": arg(st.none(), namespace),
            "states": strings,
            "tags": strings,
            "after": offset,
            "limit": positive,
            "min_offset": offset,
        },
    ),  # fmt: skip
    "audit": (
        {},
        {
            "namespace": arg(st.none(), namespace),
            "memory_id": arg(st.none(), memory_id),
            "actor": short,
            "type": short,
            "status": arg(st.sampled_from(["accepted", "rejected"])),
            "since": when,
            "until": when,
            "after": offset,
            "as_of": point,
            "limit": positive,
            "partition": offset,
            "min_offset": offset,
        },
    ),  # fmt: skip
    "search": (
        {},
        {
            "query": short,
            "vector": vector,
            "namespaces": arg(st.none(), namespace, strings),
            "k": positive,
            "tags_any": strings,
            "tags_all": strings,
            "states": arg(st.lists(st.sampled_from(["active", "archived", "nope"]))),
            "kinds": strings,
            "created_after": when,
            "created_before": when,
            "updated_after": when,
            "updated_before": when,
            "metadata": metadata,
            "include_archived": flag,
            "as_of": point,
            "exact": flag,
            "alpha": arg(st.none(), floats),
            "query_hints": flag,
            "min_offset": offset,
        },
    ),  # fmt: skip
    "access_log": (
        {},
        {
            "principal": short,
            "namespace": arg(st.none(), namespace),
            "memory_id": arg(st.none(), memory_id),
            "action": arg(st.none(), st.sampled_from(["get", "search", "nope"])),
            "since": when,
            "until": when,
            "after": offset,
            "limit": positive,
        },
    ),  # fmt: skip
    # the file exists (overwritten), is the store's directory, or cannot be written
    "export_access_log": (
        {"out": arg(st.sampled_from(["<file>", "<store>", "\x00", "/proc/nope", "out.csv"]))},
        {
            "format": arg(st.sampled_from(["jsonl", "csv", "xml"])),
            "principal": short,
            "namespace": arg(st.none(), namespace),
            "memory_id": arg(st.none(), memory_id),
            "action": arg(st.none(), st.sampled_from(["get", "search", "nope"])),
            "since": when,
            "until": when,
        },
    ),  # fmt: skip
    # governance: the fuzzed store's owner may change every rule, so these reach the log
    "add_principal": (
        {"name": arg(st.sampled_from(["alice", "agent:7"]), with_surrogate, long_text)},
        {
            "kind": arg(st.sampled_from(["user", "agent", "robot"])),
            "groups": strings,
            "disabled": flag,
            **reason,
        },
    ),
    "issue_token": (
        {"principal": arg(st.sampled_from(["alice", "ghost"]))},
        {"expires_at": when, **reason},
    ),
    "revoke_token": ({"token_id": arg(st.sampled_from(["tok-1", "has/slash"]))}, reason),
    "grant": (
        {
            "to": arg(st.sampled_from(["alice", "group:g", "*", "ghost", "a b"])),
            "modes": arg(st.sampled_from(["read", "shared", ["read", "write"], ["nope"], []])),
            "object": arg(st.sampled_from(["user/alice", "team/*", "*", "memory:m-live", "a//b"])),
        },
        {
            "app": short,
            "purpose": short,
            "session": short,
            "expires_at": when,
            "grant_id": arg(st.none(), st.sampled_from(["grant-1", "has/slash"])),
            **reason,
        },
    ),
    "revoke": ({"grant_id": arg(st.sampled_from(["grant-1", "ghost"]))}, reason),
    "set_policy": (
        {"object": arg(st.sampled_from(["user/*", "*", "a//b"]))},
        {
            "sensitive": arg(st.sampled_from(["allow", "redact", "shred"])),
            "expire_after_idle_days": arg(st.none(), ints),
            "erase_after_expired_days": arg(st.none(), ints),
            **reason,
        },
    ),
    "rules": ({}, {"as_of": point}),
    "reveal": ({"memory_id": memory_id}, {"version": version}),
    "permission_changes": (
        {},
        {"since": when, "until": when, "principal": short, "namespace": arg(st.none(), namespace)},
    ),
    "export_audit": (
        {"out": arg(st.sampled_from(["<store>", "<file>", "\x00", "/proc/nope", "<new>"]))},
        {
            "format": arg(st.sampled_from(["jsonl", "csv", "xml"])),
            "permissions": flag,
            "namespace": arg(st.none(), namespace),
            "actor": short,
            "since": when,
            "until": when,
        },
    ),
    "who_can": (
        {"mode": arg(st.sampled_from(["read", "admin", "fly"]))},
        {
            "namespace": arg(st.none(), namespace),
            "memory_id": arg(st.none(), memory_id),
            "as_of": point,
        },
    ),
    "follow": ({}, {"start": offset, "batch": positive, "idle": arg(st.none(), floats)}),
    "verify": ({}, {"progress": arg(st.none())}),
    "flush": ({}, {"timeout": arg(st.none(), floats)}),
    "checkpoint": ({}, {}),
    "run_retention": ({}, {"now": when, "dry_run": flag}),
    # the destination exists and is not empty (the store's own directory), is a file, or is
    # not a path at all; a valid new directory is not drawn (every call would copy the log)
    "backup": ({"dest": arg(st.sampled_from(["<store>", "<file>", "\x00", "/proc/nope"]))}, {}),
    "replay": (
        {"into": arg(st.sampled_from(["<store>", "<file>", "\x00", "/proc/nope"]))},
        {"to": point, "progress": arg(st.none())},
    ),
    # pub/sub: subscriptions and publications are governance events the owner may append
    "create_subscription": (
        {"name": sub_name},
        {
            **{k: strings for k in ("types", "memory_ids", "tags_any", "tags_all", "actors")},
            "namespaces": arg(st.none(), st.lists(namespace, max_size=3), strings),
            "outcomes": arg(st.none(), st.lists(st.sampled_from(["accepted", "rejected", "x"]))),
            "states": arg(st.none(), st.lists(st.sampled_from(["active", "archived", "nope"]))),
            "kinds": arg(st.none(), st.lists(st.sampled_from(["plaintext", "nope"]))),
            "query": short,
            "vector": vector,
            "threshold": arg(st.floats(-1, 1), floats),
            "filter": sub_filter,
            "start": start,
            "view": flag,
            "max_in_flight": positive,
            "ack_timeout": arg(st.floats(0.01, 60), floats),
            "publication": arg(st.none(), pub_name),
            "description": short,
            "owner": arg(st.none(), st.sampled_from(["fuzz", "alice", "ghost"]), with_surrogate),
        },
    ),
    "subscriptions": ({}, {}),
    "get_subscription": ({"name": sub_name}, {}),
    "delete_subscription": ({"name": sub_name}, reason),
    "subscribe": (
        {"name": sub_name},
        {"heartbeat": arg(st.floats(0.01, 60), floats), "last_seen": offset},
    ),
    "seek": ({"name": sub_name, "start": start}, {}),
    "parked": ({"name": sub_name}, {"limit": positive}),
    "unpark": ({"name": sub_name, "positions": arg(st.lists(ints, max_size=4))}, {}),
    "publish": (
        {"name": pub_name, "namespace": namespace, "to": strings},
        {
            "tag": short,
            "memory_id": arg(st.none(), memory_id),
            "expires_at": when,
            "max_deliveries": offset,
            "period_seconds": positive,
            "redact": flag,
            "description": short,
        },
    ),
    "withdraw": ({"name": pub_name}, reason),
    "publications": ({}, {}),
    "get_publication": ({"name": pub_name}, {}),
}

#: Public names that are not fuzzed, and why.
NOT_FUZZED = {
    "open": "opens a store (tests/unit/test_settings.py checks its options)",
    "connect": "returns an HTTP client (the OpenAPI fuzz covers the server)",
    "close": "takes no arguments",
    "path": "a property",
    "head": "a property",
    "caller": "a property",
}

WRITES = {
    "append", "publish_json", "create", "revise", "merge", "rollback", "activate", "archive",
    "restore", "expire", "freeze", "unfreeze", "erase", "erase_subject", "artifact_built",
    "add_principal", "issue_token", "revoke_token", "grant", "revoke", "set_policy",
    "create_subscription", "delete_subscription", "publish", "withdraw",
}  # fmt: skip


def public_methods(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def test_every_public_method_is_fuzzed_or_listed() -> None:
    names = public_methods(MemoryStore) | public_methods(AsyncMemoryStore)
    assert names == set(ARGS) | set(NOT_FUZZED), (
        "a public SDK method has no argument strategies in ARGS (nor a reason in NOT_FUZZED)"
    )
    for name, (required, optional) in ARGS.items():
        params = inspect.signature(getattr(MemoryStore, name)).parameters.values()
        named = {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        assert named - {"self"} <= set(required) | set(optional), (name, named)
        needed = {p.name for p in params if p.default is p.empty and p.name in named}
        assert needed - {"self"} <= set(required), (name, needed)


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(ARGS)))
    required, optional = ARGS[name]
    kwargs = draw(st.fixed_dictionaries(required, optional=optional))
    face = draw(st.sampled_from(["sync", "async"]))
    return name, face, kwargs


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, hash_embedder):
    root = tmp_path_factory.mktemp("fuzz")
    store = MemoryStore.open(
        root / "store", actor="fuzz", durability="os", read_wait=1.0, semantic=True,
        embedder=hash_embedder, retention=RetentionScheduler(interval=0),  # passes on call only
    )  # fmt: skip
    store.create("user/alice", "Alice drinks green tea", memory_id="m-live", tags=["a"])
    store.create("user/alice", "frozen fact", memory_id="m-frozen")
    store.freeze("m-frozen", reason="hold")
    store.create("user/alice", "old fact", memory_id="m-archived")
    store.archive("m-archived")
    store.create("team/ops", "deploys on Fridays", memory_id="m-other")
    store.create_subscription("sub-a", namespaces=["user/*"], start="beginning")
    store.publish("pub-a", "user/alice", ["alice"])
    (root / "file").write_text("not a directory")
    loop = asyncio.new_event_loop()
    try:
        yield store, AsyncMemoryStore(store), loop, root
    finally:
        loop.close()
        store.close()


def _resolve(kwargs: dict[str, Any], root: Path) -> dict[str, Any]:
    out = dict(kwargs)
    for key in ("dest", "into", "out"):
        if out.get(key) == "<store>":
            out[key] = root / "store"
        elif out.get(key) == "<file>":
            out[key] = root / "file"
        elif out.get(key) == "<new>":
            out[key] = root / "export.out"
    return out


def _call(store: MemoryStore, astore: AsyncMemoryStore, loop, name: str, face: str,
          kwargs: dict[str, Any]) -> Any:  # fmt: skip
    if face == "sync":
        result = getattr(store, name)(**kwargs)
        if name == "follow":
            it = iter(result)
            if kwargs.get("idle") is not None and 0 <= kwargs["idle"] < 0.05:
                next(it, None)
            result.close()
        elif name == "replay":
            result.close()
        return result

    async def run() -> Any:
        got = getattr(astore, name)(**kwargs)
        if name == "follow":
            await got.aclose() if hasattr(got, "aclose") else None
            return got
        if inspect.isawaitable(got):
            got = await got
        if name == "replay":
            got.close()
        return got

    return loop.run_until_complete(run())


def test_no_argument_crashes_the_sdk_or_changes_the_log(stores, monkeypatch) -> None:
    store, astore, loop, root = stores
    # a backup or replay to a relative path that happens to be valid lands here
    (root / "cwd").mkdir()
    monkeypatch.chdir(root / "cwd")
    made: Counter[str] = Counter()
    crashes: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], str] = {}
    appended_by_failure: list[str] = []

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(st.lists(calls(), min_size=6, max_size=10))
    def run(batch: list[tuple[str, str, dict[str, Any]]]) -> None:
        for name, face, kwargs in batch:
            kwargs = _resolve(kwargs, root)
            made[name] += 1
            head = store.head
            try:
                _call(store, astore, loop, name, face, kwargs)
            except DOCUMENTED as e:
                grew = store.head - head
                # a rejected event is appended and audited; nothing else is appended by a
                # call that fails
                allowed = 1 if isinstance(e, errors.Rejected) and name in WRITES else 0
                if grew > allowed:
                    appended_by_failure.append(f"{name}({kwargs!r:.200}) -> {e!r:.200}")
            except Exception as e:
                key = (name, face, type(e).__name__)
                crashes[key] += 1
                examples.setdefault(key, f"{name}({kwargs!r:.300}): {e!s:.300}")

    run()
    total = sum(made.values())
    by_type: Counter[str] = Counter()
    for (_, _, kind), n in crashes.items():
        by_type[kind] += n
    report = "\n".join(
        f"{name} ({face}) {kind} x{n}: {examples[name, face, kind]}"
        for (name, face, kind), n in crashes.most_common()
    )
    assert not crashes, (
        f"{sum(crashes.values())} undocumented exceptions in {total} calls, "
        f"{len(crashes)} kinds (method, face, type); by type {dict(by_type)}:\n{report}"
    )
    assert not appended_by_failure, appended_by_failure[:5]
    assert total >= MIN_CALLS, (total, made)
    assert set(made) == set(ARGS), set(ARGS) - set(made)
    assert store.verify() is None
