"""Governance (the MemOS paper's MemGovernance): who may do what, and what is kept of it.

- :mod:`.tokens`: API tokens (argon2id hashes on the log) and bearer authentication.
- :mod:`.access`: the access check the service runs on every call (grants, scopes).
- :mod:`.methods`: the SDK's governance methods (principals, tokens, grants, policies,
  reveal, the permission report, audit exports).
- :mod:`.sensitive` and :mod:`.recognizers`: sensitive-content detection and redaction;
  :mod:`.screening`: a namespace's policy (tag, redact, reject) applied on ingest.
- :mod:`.retention`: the scheduler that emits ``expire``/``erase`` when TTLs and
  retention policies fall due.
- :mod:`.access_log`: the log of every read (separate from the event log, bounded).
- :mod:`.export`: JSON Lines and CSV exports (audit, permissions, access log).

The rules themselves (principals, tokens, grants, namespace policies) are events on the
log, folded by :mod:`memstream.projections.policy`; this package is how the faces apply
them.
"""
