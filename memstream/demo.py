"""The demo that ``memstream serve --demo`` (the README's first command) runs.

It acts as an agent remembering a user's preferences, against a running server, through
the real HTTP client (:class:`memstream.client.HttpMemoryStore`): nothing is faked or
called in-process, so what it shows is what any client gets. It subscribes to the drink
preferences, creates memories, revises one, archives and restores one, merges two, attempts operations the lifecycle forbids
(and shows the typed rejections, which the audit keeps), then prints a memory's version
chain with its merge parents, the audit trail (who, what, when, why, outcome), and the
verdict of ``audit verify``.

It writes into a namespace of its own (``demo/alice`` by default), under fixed memory ids
derived from it, and checks before writing: when those memories are already there (the
demo ran on this store before: ``./ops/run`` again after a restart), it writes nothing and
shows what the first run left. A store holds one copy of the demo, however often it runs.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text
from rich.tree import Tree

from memstream.client import HttpMemoryStore
from memstream.errors import Rejected
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import AuditEntry, Delivery, Version
from memstream.sdk import new_id

__all__ = ["DEMO_NAMESPACE", "demo_ids", "run_demo"]

#: Where the demo's memories live, apart from a user's own.
DEMO_NAMESPACE = "demo/alice"
_NAMES = ("tea", "coffee", "theme", "city", "drinks")


def demo_ids(namespace: str = DEMO_NAMESPACE) -> dict[str, str]:
    """The demo's memory ids in ``namespace``: fixed, so a second run finds the first's."""
    slug = "-".join(part for part in namespace.replace("/", "-").split("-") if part)
    return {name: f"{slug}-{name}" for name in _NAMES}


class _Narrator:
    """Prints the demo's steps when a console is given; stays silent for --json."""

    def __init__(self, console: Console | None):
        self.console = console

    def section(self, title: str) -> None:
        if self.console:
            self.console.print()
            self.console.rule(Text(title, style="bold"), align="left")

    def done(self, what: str, o: Outcome) -> None:
        if self.console:
            line = Text("  ✓ ", style="green")
            line.append(what)
            line.append(
                f"  → {o.memory_id} v{o.version} ({o.state}) at offset {o.offset}", style="dim"
            )
            self.console.print(line)

    def refused(self, what: str, e: Rejected) -> None:
        if self.console:
            body = Text()
            body.append(f"{type(e).__name__}", style="bold red")
            body.append(f" (code {getattr(e.outcome, 'code', None)})\n")
            body.append(f"{e.reason}\n")
            body.append(
                f"The event was appended at offset {e.offset} and decided once: the audit "
                "keeps the attempt and its reason, and every replay reaches the same verdict.",
                style="dim",
            )
            self.console.print(Panel(body, title=f"forbidden: {what}", border_style="red"))

    def print(self, *things: Any) -> None:
        if self.console:
            self.console.print(*things)


def version_tree(memory_id: str, chain: Sequence[Version]) -> Tree:
    """The version chain as a tree: each version under the one it came from, merges with
    one branch per parent. Fits an 80-column terminal."""
    by_key = {(v.memory_id, v.version): v for v in chain}

    def label(v: Version) -> Text:
        t = Text()
        t.append(f"{v.memory_id} v{v.version}", style="bold")
        t.append(f"  {v.op}", style="cyan")
        t.append(f"  @{v.offset}  by {v.actor}\n", style="dim")
        t.append(repr(v.text) if v.text is not None else "(erased)")
        return t

    def grow(node: Tree, v: Version) -> None:
        for p in v.parents:
            parent = by_key.get((p.memory_id, p.version))
            if parent is not None:
                grow(node.add(label(parent)), parent)

    tops = [v for v in chain if v.memory_id == memory_id]
    top = max(tops, key=lambda v: v.version)
    tree = Tree(label(top), guide_style="dim")
    grow(tree, top)
    return tree


def audit_lines(entries: Sequence[AuditEntry]) -> Group:
    """The audit trail, one compact block per event: who, what, when, why, outcome."""
    lines = []
    for e in entries:
        head = Text()
        head.append(f"#{e.offset:<3}", style="dim")
        head.append(f"{e.recorded_at:%H:%M:%S.%f}"[:-3] + "  ", style="dim")
        head.append(f"{e.actor} ", style="magenta")
        head.append(f"{e.type} ", style="bold")
        head.append(f"{e.memory_id} ")
        if e.status == "accepted":
            head.append(f"→ {e.state} v{e.version}", style="green")
        else:
            head.append(f"✗ {e.code}", style="red")
        lines.append(head)
        if e.why:
            lines.append(Text(f"      why: {e.why}", style="italic"))
        if e.status != "accepted" and e.reason:
            lines.append(Text(f"      {e.reason}", style="red"))
    return Group(*lines)


def _agent_token(
    url: str, token: str | None, actor: str, namespace: str, say: _Narrator
) -> str | None:
    """With the admin's token (a fresh store): the agent becomes a principal of its own,
    allowed to read and write ``namespace`` only, and the demo acts with its token. Any
    other token (the owner token of a later run) is used as it is."""
    if token is None or not token.startswith("mst_"):
        return token
    with HttpMemoryStore.connect(url, token=token) as admin:
        if any(p.name == actor for p in admin.rules().principals):
            return token
        admin.add_principal(actor, kind="agent", reason="the demo's agent")
        admin.grant(actor, ["read", "write", "audit"], namespace,
                    reason="the demo's agent keeps Alice's notes")  # fmt: skip
        _, agent_token = admin.issue_token(actor, reason="the demo's agent")
    say.print(
        Text(
            f"The admin made {actor} an agent principal that may read, write and audit "
            f"{namespace} only (memstream rules shows it); the demo acts with its token.",
            style="dim",
        )
    )
    return agent_token


def run_demo(
    url: str,
    *,
    console: Console | None = None,
    store: Path | None = None,
    serving: bool = True,
    actor: str = "assistant",
    namespace: str = DEMO_NAMESPACE,
    token: str | None = None,
) -> dict[str, Any]:
    """Run the demo against the server at ``url``; a JSON-ready summary of what it did.

    ``console``: where to narrate (None: silent). ``store``: the store directory, for the
    CLI hints. ``serving``: whether the server keeps running afterwards (the hints differ).
    When the demo's memories are already in ``namespace`` it writes nothing and shows them
    (``already_ran`` in the summary). ``token``: the bearer token it calls with (the admin's
    token a fresh store prints, or the owner token of the server run).
    """

    say = _Narrator(console)
    tag = new_id().replace("-", "")[-6:]
    ids = demo_ids(namespace)
    ctx = {"app": "memstream-demo", "session": f"demo-{tag}", "purpose": "remember preferences"}
    outcomes: list[Outcome] = []
    rejections: list[dict[str, Any]] = []

    admin_token = token
    token = _agent_token(url, token, actor, namespace, say)
    with HttpMemoryStore.connect(url, actor=actor, token=token) as ms:
        say.print(
            Text.assemble(
                ("memstream demo", "bold"),
                f": an agent ({actor}) keeps a user's preferences in {namespace}, through the "
                f"HTTP API at {url}",
            )
        )
        present = [name for name, memory_id in ids.items() if ms.get(memory_id) is not None]
        if present:
            say.print(
                Text(
                    f"The demo already ran on this store: {len(present)} of its memories are "
                    f"in {namespace}. It writes nothing again; here is what it left.",
                    style="yellow",
                )
            )
            return _shown(ms, say, url, store, serving, ids, namespace)

        # a subscriber (here the agent itself) follows the drink preferences as they change
        watch = f"{ids['drinks']}-watch"
        ms.create_subscription(
            watch, namespaces=[namespace], tags_any=["drinks"],
            description="the demo's drink preferences",
        )  # fmt: skip
        say.section("1. create memories")
        for name, text, tags in (
            ("tea", "Alice takes her tea with milk.", ["drinks"]),
            ("coffee", "Alice drinks one espresso in the morning.", ["drinks"]),
            ("theme", "Alice prefers dark mode in every app.", ["ui"]),
            ("city", "Alice lives in Lisbon (Europe/Lisbon time zone).", ["profile"]),
        ):
            o = ms.create(
                namespace, text, memory_id=ids[name], tags=tags, source="chat", context=ctx
            )
            outcomes.append(o)
            say.done(f"create {text!r}", o)

        say.section("2. revise, archive, restore")
        o = ms.revise(
            ids["tea"],
            "Alice takes green tea, no milk, no sugar.",
            reason="Alice corrected it: green tea now, no milk",
            context=ctx,
        )
        outcomes.append(o)
        say.done("revise the tea preference", o)
        o = ms.archive(ids["theme"], reason="not mentioned in 90 days", context=ctx)
        outcomes.append(o)
        say.done("archive the display preference", o)
        o = ms.restore(ids["theme"], reason="Alice asked about display settings", context=ctx)
        outcomes.append(o)
        say.done("restore it", o)

        say.section("3. merge two memories into one")
        o = ms.merge(
            namespace,
            [ids["tea"], ids["coffee"]],
            "Alice: one espresso in the morning, then green tea (no milk, no sugar).",
            memory_id=ids["drinks"],
            tags=["drinks"],
            reason="consolidate drink preferences",
            context=ctx,
        )
        outcomes.append(o)
        say.done("merge tea + coffee", o)

        say.section("4. operations the lifecycle forbids")

        def forbidden(what: str, call: Callable[[], Outcome]) -> None:
            try:
                call()
            except Rejected as e:
                public = e.outcome.public() if isinstance(e.outcome, Outcome) else e.outcome
                rejections.append({"attempt": what, "error": type(e).__name__, **public})
                say.refused(what, e)
            else:
                raise RuntimeError(f"the demo expected {what!r} to be rejected, and it was not")

        forbidden(
            "revise a memory that was merged away",
            lambda: ms.revise(ids["tea"], "Alice takes black tea.", context=ctx),
        )
        o = ms.freeze(ids["city"], reason="legal hold: support ticket 4411", context=ctx)
        outcomes.append(o)
        say.done("freeze the city memory (legal hold)", o)
        forbidden(
            "expire a memory under legal hold",
            lambda: ms.expire(ids["city"], reason="retention cleanup", context=ctx),
        )

        last = max([o.offset for o in outcomes] + [r["offset"] for r in rejections])
        first = min(o.offset for o in outcomes)

        say.section(f"5. what a subscriber to the drink preferences received ({watch})")
        received = []
        sub = ms.subscribe(watch, heartbeat=1.0)
        try:
            for d in sub:
                if not isinstance(d, Delivery):
                    break  # a heartbeat: nothing more to deliver
                received.append(d)
                sub.ack(d.position)
                say.print(
                    Text.assemble(
                        ("  ", ""), (f"@{d.position:<4}", "dim"), (f" {d.event['type']:<8}", "cyan"),
                        f" {d.event['memory_id']}",
                    )
                )  # fmt: skip
                if len(received) >= 20:
                    break
        finally:
            sub.close()

        say.section(f"6. the version chain of {ids['drinks']} (with merge parents)")
        chain = ms.history(ids["drinks"], include_parents=True, min_offset=last)
        say.print(version_tree(ids["drinks"], chain))

        say.section("7. the audit trail: who, what, when, why, outcome")
        trail = ms.audit(namespace=namespace, after=first - 1, limit=1000, min_offset=last)
        entries = [e for e in trail.entries if e.memory_id in ids.values()]
        say.print(audit_lines(entries))

        say.section("8. audit verify")
        # Verifying the whole log is the store admin's (or its owner's) call, not the agent's.
        with HttpMemoryStore.connect(url, actor="admin", token=admin_token) as admin:
            brk = admin.verify()
            head = admin.head
        verdict = {
            "ok": brk is None,
            "offset": brk.offset if brk else None,
            "reason": brk.reason if brk else None,
            "head": head,
        }
        if brk is None:
            say.print(
                Text.assemble(
                    ("  OK", "bold green"),
                    f": the hash chain of {head + 1} records is intact (recomputed from the "
                    "stored bytes, ciphertext included)",
                )
            )
        else:
            say.print(Text(f"  BROKEN at offset {brk.offset}: {brk.reason}", style="bold red"))

    _hints(say, url, store, serving, ids["drinks"], namespace)
    return {
        "url": url,
        "namespace": namespace,
        "already_ran": False,
        "memories": ids,
        "outcomes": [o.public() for o in outcomes],
        "rejections": rejections,
        "history": msgspec.to_builtins(chain),
        "audit": msgspec.to_builtins(entries),
        "verify": verdict,
        "subscription": {"name": watch, "positions": [d.position for d in received]},
    }


def _shown(
    ms: HttpMemoryStore,
    say: _Narrator,
    url: str,
    store: Path | None,
    serving: bool,
    ids: dict[str, str],
    namespace: str,
) -> dict[str, Any]:
    """What an earlier run of the demo left (a second run writes nothing): the version
    chain, the audit trail of its memories, the verdict of ``audit verify``."""
    chain: list[Version] = []
    if ms.get(ids["drinks"]) is not None:
        say.section(f"the version chain of {ids['drinks']} (with merge parents)")
        chain = ms.history(ids["drinks"], include_parents=True)
        say.print(version_tree(ids["drinks"], chain))
    say.section("the audit trail: who, what, when, why, outcome")
    trail = ms.audit(namespace=namespace, limit=1000)
    entries = [e for e in trail.entries if e.memory_id in ids.values()]
    say.print(audit_lines(entries))
    brk = ms.verify()
    verdict = {
        "ok": brk is None,
        "offset": brk.offset if brk else None,
        "reason": brk.reason if brk else None,
        "head": ms.head,
    }
    say.section("audit verify")
    say.print(
        Text("  OK: the hash chain is intact", style="bold green")
        if brk is None
        else Text(f"  BROKEN at offset {brk.offset}: {brk.reason}", style="bold red")
    )
    _hints(say, url, store, serving, ids["drinks"], namespace)
    rejected = [e for e in entries if e.status != "accepted"]
    return {
        "url": url,
        "namespace": namespace,
        "already_ran": True,
        "memories": ids,
        "outcomes": [],
        "rejections": [{"attempt": e.type, "error": e.code, "offset": e.offset} for e in rejected],
        "history": msgspec.to_builtins(chain),
        "audit": msgspec.to_builtins(entries),
        "verify": verdict,
    }


def _hints(
    say: _Narrator, url: str, store: Path | None, serving: bool, memory_id: str, namespace: str
) -> None:
    """How to query what the demo wrote, with curl and with the CLI."""
    if say.console is None:
        return
    flag = f" --store {shlex.quote(str(store))}" if store is not None else f" --url {url}"
    lines = Text()
    if serving:
        lines.append(f"The server keeps running at {url} (Ctrl-C or SIGTERM stops it).\n\n")
        lines.append("With curl:\n", style="bold")
        for cmd in (
            f"curl -s {url}/v1/memories/{memory_id}",
            f"curl -s '{url}/v1/memories/{memory_id}/history'",
            f"curl -s '{url}/v1/audit?namespace={namespace}&limit=20'",
            f"curl -s -X POST {url}/v1/audit/verify",
            f"open {url}/docs   # the OpenAPI reference",
        ):
            lines.append(f"  {cmd}\n")
        lines.append(
            "\nWith the CLI (it goes through this server while it holds the store):\n", style="bold"
        )
    else:
        lines.append("The demo's server has stopped; the store keeps everything.\n\n")
        lines.append(
            "With the CLI (it opens the store directly when no server holds it):\n", style="bold"
        )
    for cmd in (
        f"memstream get {memory_id}{flag}",
        f"memstream history {memory_id}{flag}",
        f"memstream audit --namespace {namespace}{flag}",
        f"memstream audit verify{flag}",
    ):
        lines.append(f"  {cmd}\n")
    if not serving and store is not None:
        lines.append(f"\nServe it over HTTP: memstream serve --store {shlex.quote(str(store))}\n")
    say.print()
    say.print(Panel(lines, title="query it yourself", border_style="cyan"))
