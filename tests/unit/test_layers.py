"""The layer rules hold: the import contracts of pyproject.toml ([tool.importlinter]).

import-linter reads a package's modules from its folder, but ``memstream``'s subpackages
live in top-level folders (``schemas/``, ``streams/``, ``projections/``) that install
under it. The test therefore copies the sources into the layout they install as (from
``package-dir``) and runs the contracts there, in a separate interpreter so that the
copy, not the installed package, is what import-linter finds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


def _only_sources(folder: str, names: list[str]) -> set[str]:
    """Ignore everything but Python files and the folders that may hold some."""
    return {
        n
        for n in names
        if n == "__pycache__" or (not n.endswith(".py") and not (Path(folder) / n).is_dir())
    }


def lay_out(dest: Path) -> Path:
    """The sources as installed: each package-dir folder copied to its package's place."""
    package_dir = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(package_dir.items()):  # a parent before its children
        shutil.copytree(
            ROOT / folder,
            dest.joinpath(*package.split(".")),
            ignore=_only_sources,
            dirs_exist_ok=True,
        )
    return dest


def lint(layout: Path) -> subprocess.CompletedProcess[str]:
    """Run every contract on ``layout``; the report is on stdout."""
    code = (
        "import sys\n"
        "from importlinter.cli import lint_imports\n"
        f"sys.exit(lint_imports(config_filename={str(PYPROJECT)!r}, no_cache=True, no_logo=True))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(layout)}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=layout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold(tmp_path: Path) -> None:
    result = lint(lay_out(tmp_path / "layout"))
    assert result.returncode == 0, f"broken import contract:\n{result.stdout}{result.stderr}"


def test_a_forbidden_import_breaks_the_contract(tmp_path: Path) -> None:
    layout = lay_out(tmp_path / "layout")
    rows = layout / "memstream" / "projections" / "views.py"
    rows.write_text(rows.read_text() + "\nfrom memstream.streams import log  # noqa\n")
    result = lint(layout)
    assert result.returncode != 0
    assert "memstream.projections.views -> memstream.streams.log" in result.stdout, result.stdout
