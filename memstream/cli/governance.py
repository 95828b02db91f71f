"""Governance commands: ``principal``, ``token``, ``grant``, ``revoke``, ``policy``,
``rules`` and ``who-can``. Each works on the store directly or through its server (as the
store's owner), or on a server at ``--url`` with the token in ``$MEMSTREAM_TOKEN`` (checked
like any caller: changing the rules takes admin over what they are about)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from memstream.wire import not_found_body, outcome_body

from .common import (
    DEFAULT_STORE,
    EXIT_REJECTED,
    CliError,
    JsonOpt,
    StoreOpt,
    UrlOpt,
    app,
    out,
    point_option,
    print_json,
    reported,
    show,
)
from .connect import open_store
from .render import memory_table

principal_app = typer.Typer(help="Principals: the users, agents and services that call.")
token_app = typer.Typer(help="API tokens (shown once; kept only as salted hashes).")
policy_app = typer.Typer(help="Namespace policies: sensitive content, retention.")
app.add_typer(principal_app, name="principal")
app.add_typer(token_app, name="token")
app.add_typer(policy_app, name="policy")

ReasonOpt = Annotated[str | None, typer.Option(help="Why (kept in the audit; no personal data).")]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="A past moment: RFC 3339 time, or a log offset.")
]


def _done(outcome, json_out: bool, said: str) -> None:
    if json_out:
        print_json(outcome_body(outcome))
    else:
        out.print(f"{said} (offset {outcome.offset})")


@principal_app.command("add")
def principal_add(
    name: Annotated[str, typer.Argument(help="The principal, e.g. alice or agent:planner.")],
    kind: Annotated[str, typer.Option(help="user, agent or service.")] = "user",
    group: Annotated[list[str] | None, typer.Option(help="A group (repeat for more).")] = None,
    disable: Annotated[bool, typer.Option(help="Disable it: its tokens stop working.")] = False,
    reason: ReasonOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a principal, or change its kind, groups (replaced) or whether it is disabled."""
    with reported(json_out), open_store(store, url, create=True) as s:
        o = s.add_principal(name, kind=kind, groups=group or [], disabled=disable, reason=reason)
        _done(o, json_out, f"principal {name}: {kind}, groups {group or []}"
              + (", disabled" if disable else ""))  # fmt: skip


@token_app.command("issue")
def token_issue(
    principal: Annotated[str, typer.Argument(help="Whose token.")],
    expires: AsOfOpt = None,
    reason: ReasonOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Issue an API token; it is printed this once."""
    with reported(json_out), open_store(store, url) as s:
        when = point_option(expires, "--expires")
        token_id, token = s.issue_token(principal, expires_at=when, reason=reason)
        if json_out:
            print_json({"token_id": token_id, "principal": principal, "token": token})
        else:
            out.print(f"token {token_id} for {principal} (shown once, keep it):")
            out.print(token, soft_wrap=True)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (tok-...).")],
    reason: ReasonOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke a token."""
    with reported(json_out), open_store(store, url) as s:
        _done(s.revoke_token(token_id, reason=reason), json_out, f"token {token_id} revoked")


@app.command("grant")
def grant(
    to: Annotated[str, typer.Argument(help="A principal, group:<name>, or * (everyone).")],
    modes: Annotated[
        str,
        typer.Argument(
            help="read, write, audit, reveal, admin (comma-separated), or a preset: "
            "read-only, shared, private."
        ),  # fmt: skip
    ],
    object: Annotated[
        str, typer.Argument(help="user/alice, team/* (team and below), *, or memory:<id>.")
    ],
    app_: Annotated[str | None, typer.Option("--app", help="Only in calls from this app.")] = None,
    purpose: Annotated[str | None, typer.Option(help="Only for this purpose.")] = None,
    session: Annotated[str | None, typer.Option(help="Only in this session.")] = None,
    expires: AsOfOpt = None,
    reason: ReasonOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Grant a principal, a group or everyone modes on a namespace pattern or a memory."""
    with reported(json_out), open_store(store, url) as s:
        grant_id = s.grant(
            to, [m.strip() for m in modes.split(",") if m.strip()], object, app=app_,
            purpose=purpose, session=session, expires_at=point_option(expires, "--expires"),
            reason=reason,
        )  # fmt: skip
        if json_out:
            print_json({"grant_id": grant_id})
        else:
            out.print(f"grant {grant_id}: {modes} on {object} to {to}")


@app.command("revoke")
def revoke(
    grant_id: Annotated[str, typer.Argument(help="The grant's id (see `memstream rules`).")],
    reason: ReasonOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Withdraw a grant."""
    with reported(json_out), open_store(store, url) as s:
        _done(s.revoke(grant_id, reason=reason), json_out, f"grant {grant_id} revoked")


@policy_app.command("set")
def policy_set(
    object: Annotated[str, typer.Argument(help="user/alice, team/*, or *.")],
    sensitive: Annotated[
        str, typer.Option(help="Sensitive content found on ingest: allow, tag, redact, reject.")
    ] = "allow",
    expire_after_idle_days: Annotated[
        int | None, typer.Option(help="Expire memories not read for this many days.")
    ] = None,
    erase_after_expired_days: Annotated[
        int | None, typer.Option(help="Erase memories this many days after they expired.")
    ] = None,
    reason: ReasonOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Set the policy of the namespaces a pattern selects (the most specific one applies)."""
    with reported(json_out), open_store(store, url) as s:
        o = s.set_policy(
            object, sensitive=sensitive, expire_after_idle_days=expire_after_idle_days,
            erase_after_expired_days=erase_after_expired_days, reason=reason,
        )  # fmt: skip
        _done(o, json_out, f"policy of {object} set")


@app.command("rules")
def rules(
    as_of: AsOfOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Principals, grants, tokens (never their secrets) and policies, now or then."""
    with reported(json_out), open_store(store, url) as s:
        got = s.rules(as_of=point_option(as_of, "--as-of"))
        if json_out:
            print_json(got)
            return
        principals = Table(title="principals")
        for column in ("name", "kind", "groups", "disabled", "since"):
            principals.add_column(column)
        for p in got.principals:
            principals.add_row(p.name, p.kind, ", ".join(p.groups), "yes" if p.disabled else "",
                               p.created_at.isoformat() if p.created_at else "")  # fmt: skip
        grants = Table(title="grants")
        for column in ("grant", "to", "modes", "object", "when", "expires", "by", "why"):
            grants.add_column(column)
        for g in got.grants:
            cond = ", ".join(f"{k}={v}" for k in ("app", "purpose", "session")
                             if (v := getattr(g, k)))  # fmt: skip
            grants.add_row(g.grant_id, g.to, "+".join(g.modes), g.object, cond,
                           g.expires_at.isoformat() if g.expires_at else "", g.granted_by,
                           g.reason or "")  # fmt: skip
        tokens = Table(title="tokens")
        for column in ("token", "principal", "expires", "revoked", "issued by"):
            tokens.add_column(column)
        for t in got.tokens:
            tokens.add_row(t.token_id, t.principal, t.expires_at.isoformat() if t.expires_at
                           else "", "yes" if t.revoked else "", t.issued_by)  # fmt: skip
        show(principals)
        show(grants)
        show(tokens)
        if got.policies:
            policies = Table(title="policies")
            for column in ("object", "sensitive", "expire after idle (days)",
                           "erase after expiry (days)"):  # fmt: skip
                policies.add_column(column)
            for r in got.policies:
                policies.add_row(r.object, r.sensitive, str(r.expire_after_idle_days or ""),
                                 str(r.erase_after_expired_days or ""))  # fmt: skip
            show(policies)


@app.command("who-can")
def who_can(
    mode: Annotated[str, typer.Argument(help="read, write, audit, reveal or admin.")],
    namespace: Annotated[str | None, typer.Option(help="The namespace.")] = None,
    memory: Annotated[str | None, typer.Option(help="A memory id.")] = None,
    as_of: AsOfOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The principals that may read (write, ...) a namespace or a memory, now or then."""
    with reported(json_out), open_store(store, url) as s:
        got = s.who_can(mode, namespace=namespace, memory_id=memory,
                        as_of=point_option(as_of, "--as-of"))  # fmt: skip
        if json_out:
            print_json(got)
        else:
            for name in got:
                out.print(name)


@app.command("reveal")
def reveal(
    memory_id: Annotated[str, typer.Argument(help="The memory.")],
    version: Annotated[int | None, typer.Option(help="A past version.")] = None,
    store: StoreOpt = DEFAULT_STORE,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A memory as it was written, before its namespace's policy redacted it (reveal)."""
    with reported(json_out):
        with open_store(store, url) as s:
            got = s.reveal(memory_id, version=version)
        if got is None:
            body = not_found_body(memory_id, version)
            raise CliError(body["message"], EXIT_REJECTED, body)
        if json_out:
            print_json(got)
        else:
            show(memory_table(got))
