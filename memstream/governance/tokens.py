"""API tokens: made here, recorded only as salted argon2 hashes, checked with a cache.

A token reads ``mst_<token id>_<secret>``. The id names the ``token_issue`` event on the log
(which holds the principal, the expiry and the argon2id hash of the secret, never the
secret); the secret is 256 random bits, shown once to whoever issued it. Checking a token
finds its record by id and verifies the secret against the hash. A verification costs
milliseconds by design, so a process remembers the tokens it verified (by a keyed digest
of the whole token, never the token itself) and only re-reads their record, which says
whether they have been revoked or have expired since, or their principal disabled.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from memstream.errors import Unauthenticated
from memstream.projections.policy import PolicyState, TokenInfo

__all__ = [
    "OWNER_PREFIX",
    "PREFIX",
    "Authenticator",
    "TokenRejected",
    "TokenVerifier",
    "hash_secret",
    "new_owner_token",
    "new_token",
]

PREFIX = "mst_"
#: argon2id with a small memory cost: the secrets are 256 random bits, so the hash needs no
#: work factor against guessing, only a salt and a well-kept algorithm (about 5 ms here).
_HASHER = PasswordHasher(time_cost=2, memory_cost=8 * 1024, parallelism=1)


class TokenRejected(Exception):
    """A bearer token that does not authenticate (the message says why, without the token)."""


def new_token() -> tuple[str, str]:
    """A fresh ``(token id, token)``: the id goes on the log, the token to its holder."""
    token_id = "tok-" + secrets.token_hex(8)
    return token_id, f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def split(token: str) -> tuple[str, str]:
    """``(token id, secret)`` of a token, or :class:`TokenRejected` for another shape."""
    if not token.startswith(PREFIX):
        raise TokenRejected("not a memstream token (they start with mst_)")
    token_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or not token_id or not secret:
        raise TokenRejected("malformed memstream token")
    return token_id, secret


def hash_secret(token: str) -> str:
    """The argon2id hash recorded for ``token``'s secret."""
    return _HASHER.hash(split(token)[1])


class TokenVerifier:
    """Checks bearer tokens against the rules in force (a :class:`PolicyState`)."""

    def __init__(self, cache_size: int = 10_000):
        self._key = secrets.token_bytes(32)  # per process: the cache never holds a token
        self._verified: OrderedDict[bytes, str] = OrderedDict()
        self._size = cache_size
        self._lock = threading.Lock()

    def principal(self, policy: PolicyState, token: str, now: datetime | None = None) -> str:
        """The principal ``token`` authenticates, or :class:`TokenRejected` saying why."""
        digest = hmac.new(self._key, token.encode("utf-8", "replace"), hashlib.sha256).digest()
        with self._lock:
            token_id = self._verified.get(digest)
            if token_id is not None:
                self._verified.move_to_end(digest)
        if token_id is None:
            token_id, secret = split(token)
            info = policy.tokens.get(token_id)
            if info is None:
                raise TokenRejected("unknown token (revoked tokens stay known; this one never was)")
            try:
                _HASHER.verify(info.hash, secret)
            except (VerificationError, InvalidHashError):
                raise TokenRejected("token does not match its record") from None
            with self._lock:
                self._verified[digest] = token_id
                if len(self._verified) > self._size:
                    self._verified.popitem(last=False)
        info = policy.tokens[token_id]
        _usable(policy, info, now or datetime.now(UTC))
        return info.principal


def _usable(policy: PolicyState, info: TokenInfo, now: datetime) -> None:
    if info.revoked:
        raise TokenRejected(f"token {info.token_id} was revoked")
    if info.expires_at is not None and now >= info.expires_at:
        raise TokenRejected(f"token {info.token_id} expired at {info.expires_at.isoformat()}")
    if not policy.active(info.principal):
        raise TokenRejected(f"principal {info.principal} is disabled")


#: The owner's token of one server run starts with this (see :class:`Authenticator`).
OWNER_PREFIX = "msl_"


def new_owner_token() -> str:
    """A fresh owner token for one server run."""
    return OWNER_PREFIX + secrets.token_urlsafe(32)


class Authenticator:
    """Who a request's ``Authorization: Bearer <token>`` header makes the caller.

    - a principal's API token (``mst_...``): that principal, checked on every call;
    - the owner token of this server run (``msl_...``, written only to the store's
      ``server.json``, readable by the account that owns the store's files, which could
      read the files themselves): the store's owner, not checked, as the CLI on the same
      machine calls it;
    - the cluster token of a Kafka deployment (``cluster_token``, a secret every worker is
      given): another worker, trusted like the owner, forwarding a call (it names the
      original caller in headers, to be checked here: :func:`memstream.http.deps.caller_of`);
    - anything else, or nothing: :class:`~memstream.errors.Unauthenticated`.
    """

    def __init__(
        self,
        policy: Callable[[], PolicyState],
        owner_token: str | None = None,
        cluster_token: str | None = None,
    ):
        self.policy = policy
        self.owner_token = owner_token
        self.cluster_token = cluster_token
        self.verifier = TokenVerifier()

    def caller(self, authorization: str | None) -> tuple[str | None, bool]:
        """``(principal, enforced)``: the principal (None for the owner) and whether the
        access check applies."""
        if not authorization:
            raise Unauthenticated(
                "this server requires a token: send `Authorization: Bearer <token>` (an admin "
                "issues one with `memstream token issue PRINCIPAL`)"
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the Authorization header must read `Bearer <token>`")
        cluster = self.cluster_token
        if cluster is not None and hmac.compare_digest(token.encode(), cluster.encode()):
            return None, False
        owner = self.owner_token
        if owner is not None and token.startswith(OWNER_PREFIX):
            if hmac.compare_digest(token.encode(), owner.encode()):
                return None, False
            raise Unauthenticated("not this server's owner token (it changes at each start)")
        try:
            return self.verifier.principal(self.policy(), token), True
        except TokenRejected as e:
            raise Unauthenticated(f"token refused: {e}") from None
