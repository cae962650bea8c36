"""Every Markdown file that the code, configs or docs name exists in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"(?<![\w/.{-])((?:docs/)?[A-Za-z][\w-]*\.md)\b")
GENERATED = re.compile(r"table_\w+\.md|tables\.md")
"""Report outputs (``tables.md``, formerly ``table_<metric>.md``) are named in code but written at run time."""
PARALLEL = {"docs/methods.md"}
"""Written on another branch of the same change; the check treats it as present once it lands."""


def tracked_texts() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    names += subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return [REPO / n for n in names if n.endswith((".py", ".md", ".yaml", ".toml", ".yml")) and (REPO / n).is_file()]


def references() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in tracked_texts():
        for name in REFERENCE.findall(path.read_text(errors="replace")):
            if not GENERATED.fullmatch(name):
                found.setdefault(name, []).append(str(path.relative_to(REPO)))
    return found


def test_named_markdown_files_exist() -> None:
    missing = {
        name: where
        for name, where in references().items()
        if not (REPO / name).is_file() and not (REPO / "docs" / name).is_file()
    }
    pending = set(missing) & PARALLEL
    assert {name: where for name, where in missing.items() if name not in PARALLEL} == {}
    if pending:
        pytest.skip(f"{', '.join(sorted(pending))} not merged yet (named in {sum(len(missing[n]) for n in pending)} places)")
