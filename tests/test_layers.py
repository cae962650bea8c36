"""The layers of docs/architecture.md, checked on the source: a module imports only its own layer or the
ones below it. Every import counts, including those inside functions and under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "attacks",
        "fedsyn.errors",
        "fedsyn.seeding",
        "fedsyn.strict",
        "fedsyn.atomic",
        "fedsyn.paths",
        "fedsyn.biomod",
        "fedsyn.models",
        "fedsyn.data",
        "fedsyn.defenses",
    ),
    ("fedsyn.experiment",),
    ("fedsyn.task",),
    ("fedsyn.results",),
    ("fedsyn.evaluation",),
    ("fedsyn.federation",),
    ("fedsyn.report",),
    ("fedsyn.sweep",),
    ("fedsyn.cli",),
)
"""Bottom to top."""

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "attacks": ("fedsyn", "flwr"),
    "fedsyn.experiment": ("flwr",),
    "fedsyn.task": ("flwr",),
    "fedsyn.results": ("flwr",),
    "fedsyn.evaluation": ("flwr",),
    "fedsyn.report": ("fedsyn.task", "fedsyn.evaluation", "fedsyn.federation", "fedsyn.sweep", "flwr"),
}
"""Imports a package must not make even where the layer order would allow them: the attack tools and
the Flower-free packages never see Flower, and the report reads the results store only."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (module ``name``), at any depth of the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
                    continue
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return found


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    for rank, members in enumerate(LAYERS):
        if any(within(module, member) for member in members):
            return rank
    return None


def sources() -> list[Path]:
    return sorted([*(REPO / "fedsyn").rglob("*.py"), *(REPO / "attacks").rglob("*.py")])


def violations(path: Path, name: str) -> list[str]:
    own = layer_of(name)
    banned = next((bans for package, bans in FORBIDDEN.items() if within(name, package)), ())
    found = []
    for line, target in imports(path, name):
        rank = layer_of(target)
        if own is not None and rank is not None and rank > own:
            found.append(f"{name}:{line} imports {target} from a higher layer")
        if any(within(target, ban) for ban in banned):
            found.append(f"{name}:{line} imports {target}, which {name} must not")
    return found


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_follow_the_layers(path: Path) -> None:
    assert violations(path, module_name(path)) == []


def test_every_module_has_a_layer() -> None:
    unplaced = [module_name(p) for p in sources() if layer_of(module_name(p)) is None and p.name != "__init__.py"]
    assert unplaced == []


def test_the_check_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    """A function-level import and a ``TYPE_CHECKING`` import of a higher layer are both reported."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from fedsyn.sweep.runner import run_sweep\n"
        "def f():\n"
        "    from ..federation import protocol\n"
        "    import flwr\n"
    )
    found = violations(probe, "fedsyn.task.probe")
    assert len(found) == 3
    assert "fedsyn.sweep.runner" in found[0] and "fedsyn.federation" in found[1] and "flwr" in found[2]
