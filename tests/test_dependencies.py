"""Every runtime dependency pyproject.toml declares is used: imported by the package or a stage, or
named below with what needs it without an import. A declared, unused dependency costs every user an
install and changes the pinned set (and so the `packages` corpus) for nothing."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Distributions used without an import statement of ours, and what uses them.
INDIRECT = {
    "dvc": "the pipeline runner: dvc.yaml, and the CLI that `humpback ablations` drives",
    "gguf": "transformers' GGUF loader reads the embedded model through it",
    "pyarrow": "polars' Parquet and Arrow interchange (Dataset exports, to_arrow)",
}


def _imported_top_levels() -> set[str]:
    names: set[str] = set()
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "stages").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def _declared() -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps]


def _modules_of(dist: str) -> set[str]:
    """The top-level import names an installed distribution provides."""
    return {mod for mod, dists in md.packages_distributions().items()
            if dist in {d.lower().replace("_", "-") for d in dists}}


def test_every_declared_dependency_is_used():
    imported = _imported_top_levels()
    unused = [d for d in _declared() if d not in INDIRECT and not (_modules_of(d) & imported)]
    assert not unused, f"declared in pyproject.toml but never imported: {unused}"


def test_indirect_entries_are_still_declared():
    # A stale entry here would hide a dependency that became unused.
    assert set(INDIRECT) <= set(_declared())


def test_the_check_sees_an_unused_declaration():
    # The check itself: a distribution that is installed but not imported by us is flagged.
    assert _modules_of("hypothesis") and not (_modules_of("hypothesis") & _imported_top_levels())
