"""The runnable examples of the docs run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import subprocess_env

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _first_python_block(path: Path) -> str:
    match = re.search(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    assert match, f"no python example in {path}"
    return match.group(1)


def test_the_mem0_mapping_example_runs(tmp_path: Path) -> None:
    code = _first_python_block(DOCS / "mem0.md")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=subprocess_env(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:4] == [
        "['Alice drinks jasmine tea']",
        "[(1, 'agent:planner', 'Alice drinks green tea'), "
        "(2, 'agent:planner', 'Alice drinks jasmine tea')]",
        "run-42",
        "True",
    ], proc.stdout


def test_the_pubsub_sdk_example_runs(tmp_path: Path) -> None:
    text = (DOCS / "pubsub.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", text[text.index("\n## SDK\n") :], re.S)
    assert match, "no python example under ## SDK in docs/pubsub.md"
    proc = subprocess.run(
        [sys.executable, "-c", match.group(1)], cwd=tmp_path, env=subprocess_env(),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["1 create Alice is vegetarian"], proc.stdout
