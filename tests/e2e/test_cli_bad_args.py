"""Malformed arguments to the CLI: a one-line error naming the option, exit 2, no traceback.

Each case is an invocation a user could type (or a script could build): integers beyond
64 bits, times without a timezone or not times at all, offsets beyond the log, values out
of range, a lone surrogate in an argument (bytes that are not UTF-8 on the command line),
a backup into a file. None may end in a traceback, and none may append anything.
"""

from __future__ import annotations

import pytest

from .conftest import open_store

pytestmark = pytest.mark.slow

HUGE = "1" * 40
SUB = ["subscription", "create", "s"]
PUBLISH = ["publication", "publish", "p", "--namespace", "user/alice", "--to", "bob"]

#: (arguments after the command, a phrase the error must contain)
CASES = {
    "get_huge_version": (["get", "m-1", "--version", HUGE], "version"),
    "get_huge_as_of": (["get", "m-1", "--as-of", HUGE], "as_of"),
    "get_naive_as_of": (["get", "m-1", "--as-of", "2026-01-01T12:00:00"], "timezone"),
    "get_bad_as_of": (["get", "m-1", "--as-of", "yesterday"], "RFC 3339"),
    "get_huge_min_offset": (["get", "m-1", "--min-offset", HUGE], "min_offset"),
    "get_min_offset_beyond_log": (["get", "m-1", "--min-offset", "1000"], "beyond the end"),
    "get_lone_surrogate": (["get", "m-\udcff"], "lone surrogate"),
    "history_huge_as_of": (["history", "m-1", "--as-of", HUGE], "as_of"),
    "audit_bad_since": (["audit", "--since", "not a time"], "--since"),
    "audit_huge_after": (["audit", "--after", HUGE], "after"),
    "audit_surrogate_actor": (["audit", "--actor", "\udcff"], "lone surrogate"),
    "audit_limit_zero": (["audit", "--limit", "0"], "--limit"),
    "search_k_zero": (["search", "tea", "-k", "0"], "-k"),
    "backup_into_a_file": (["backup", "{file}"], "backup"),
    "replay_bad_to": (["replay", "--into", "{new}", "--to", "tomorrow"], "--to"),
    "replay_huge_to": (["replay", "--into", "{new}", "--to", HUGE], "to"),
    "access_log_naive_since": (["access-log", "--since", "2026-01-01T12:00:00"], "timezone"),
    "access_log_huge_after": (["access-log", "--after", HUGE], "after"),
    "access_export_bad_format": (["access-log", "export", "--format", "xml"], "--format"),
    "subscribe_bad_from": (["subscribe", "s", "--from", "yesterday"], "--from"),
    "subscription_naive_from": ([*SUB, "--from", "2026-01-01T12:00:00"], "timezone"),
    "subscription_threshold_alone": ([*SUB, "--threshold", "0.9"], "threshold"),
    "publication_expires_offset": ([*PUBLISH, "--expires", "12"], "--expires"),
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cli-bad")
    with open_store(root / "store") as s:
        s.create("user/alice", "Alice drinks green tea", memory_id="m-1")
        s.flush()
    (root / "file").write_text("not a directory")
    return root


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_arguments_give_one_line_and_exit_2(cli, seeded, case):
    args, phrase = CASES[case]
    args = [a.format(file=seeded / "file", new=seeded / f"new-{case}") for a in args]
    r = cli(*args, "--store", str(seeded / "store"))
    assert r.code == 2, (r.code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert phrase in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip() and "─" not in line]
    assert any(line.startswith(("error:", "Error:", "Usage:")) or "Invalid value" in line
               for line in lines), r.stderr  # fmt: skip
    with open_store(seeded / "store") as s:
        assert s.head == 0
