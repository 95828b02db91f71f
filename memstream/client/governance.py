"""The governance methods over HTTP (see :mod:`memstream.governance.methods`)."""

from __future__ import annotations

from typing import Any

import msgspec

from memstream.governance.export import check_format, write_export
from memstream.governance.methods import Governance
from memstream.projections.policy import PermissionChange, Rules
from memstream.schemas.memcube import Outcome
from memstream.schemas.views import Memory

from .reads import _point, memory_path

__all__ = ["HttpGovernance"]

_encode = msgspec.json.Encoder().encode


def _body(**fields: Any) -> bytes:
    return _encode({k: v for k, v in fields.items() if v is not None})


class HttpGovernance(Governance):
    """:class:`Governance` sent to a server's ``/v1/principals``, ``/v1/tokens``,
    ``/v1/grants``, ``/v1/policies``, ``/v1/rules`` and ``/v1/who-can``."""

    _request: Any
    _ok: Any

    def _outcome(self, method: str, path: str, body: bytes | None) -> Outcome:
        resp = self._ok(self._request(method, path, content=body))
        return Outcome.from_public(resp.json())

    def add_principal(self, name, *, kind="user", groups=(), disabled=False, reason=None):
        return self._outcome(
            "POST", "/v1/principals",
            _body(name=name, kind=kind, groups=list(groups), disabled=disabled, reason=reason),
        )  # fmt: skip

    def issue_token(self, principal, *, expires_at=None, reason=None):
        resp = self._ok(
            self._request(
                "POST",
                "/v1/tokens",
                content=_body(principal=principal, expires_at=expires_at, reason=reason),
            )  # fmt: skip
        )
        got = resp.json()
        return got["token_id"], got["token"]

    def revoke_token(self, token_id, *, reason=None):
        return self._outcome("DELETE", f"/v1/tokens/{token_id}", _body(reason=reason))

    def grant(
        self, to, modes, object, *, app=None, purpose=None, session=None, expires_at=None,
        reason=None, grant_id=None,
    ):  # fmt: skip
        resp = self._ok(
            self._request(
                "POST",
                "/v1/grants",
                content=_body(
                    to=to,
                    modes=[modes] if isinstance(modes, str) else list(modes),
                    object=object,
                    app=app,
                    purpose=purpose,
                    session=session,
                    expires_at=expires_at,
                    reason=reason,
                    grant_id=grant_id,
                ),
            )  # fmt: skip
        )
        return resp.json()["grant_id"]

    def revoke(self, grant_id, *, reason=None):
        return self._outcome("DELETE", f"/v1/grants/{grant_id}", _body(reason=reason))

    def set_policy(
        self, object, *, sensitive="allow", expire_after_idle_days=None,
        erase_after_expired_days=None, reason=None,
    ):  # fmt: skip
        return self._outcome(
            "PUT", "/v1/policies",
            _body(object=object, sensitive=sensitive,
                  expire_after_idle_days=expire_after_idle_days,
                  erase_after_expired_days=erase_after_expired_days, reason=reason),
        )  # fmt: skip

    def rules(self, *, as_of=None):
        resp = self._ok(self._request("GET", "/v1/rules", params={"as_of": _point(as_of)}))
        return msgspec.json.decode(resp.content, type=Rules)

    def who_can(self, mode, *, namespace=None, memory_id=None, as_of=None):
        params = {"mode": mode, "namespace": namespace, "memory_id": memory_id,
                  "as_of": _point(as_of)}  # fmt: skip
        return list(self._ok(self._request("GET", "/v1/who-can", params=params)).json())

    def reveal(self, memory_id, *, version=None):
        resp = self._request(
            "GET", f"{memory_path(memory_id)}/original", params={"version": version}
        )
        if resp.status_code == 404:
            return None
        return msgspec.json.decode(self._ok(resp).content, type=Memory)

    def permission_changes(self, *, since=None, until=None, principal=None, namespace=None):
        params = {"since": _point(since), "until": _point(until), "principal": principal,
                  "namespace": namespace}  # fmt: skip
        resp = self._ok(self._request("GET", "/v1/permissions", params=params))
        return msgspec.json.decode(resp.content, type=list[PermissionChange])

    def export_audit(
        self, out, *, format="jsonl", permissions=False, namespace=None, actor=None,
        since=None, until=None,
    ):  # fmt: skip
        check_format(format)
        params = {"report": "permissions" if permissions else "events", "format": format,
                  "namespace": namespace, "actor": actor, "since": _point(since),
                  "until": _point(until)}  # fmt: skip
        with self._stream("GET", "/v1/audit/export", params=params) as resp:
            return write_export(resp.iter_text(), out, format)
