"""Governance (the MemOS paper's MemGovernance): who may do what, and what is kept of it.

- :mod:`.tokens`: principals' API tokens, stored only as salted argon2 hashes.
- :mod:`.access`: the access check the service runs on every call.
- :mod:`.sensitive`: sensitive-content detection and redaction on ingest.
- :mod:`.retention`: the scheduler that emits ``expire``/``erase`` when TTLs and
  retention policies fall due.
- :mod:`.access_log`: the log of every read (separate from the event log, bounded).

The rules themselves (grants, principals, namespace policies) are events on the log,
folded by :mod:`memstream.projections.policy`; this package is how the faces apply them.
"""
