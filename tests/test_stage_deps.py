"""dvc.yaml's code deps are exactly the import closure of each stage's command."""

from __future__ import annotations

import shutil
from pathlib import Path

from humpback.stage_deps import check_stages, fix, import_closure, params_problems

ROOT = Path(__file__).resolve().parents[1]


def test_every_stage_depends_on_exactly_what_it_imports():
    problems = {s.name: ([str(f) for f in s.missing], s.extra) for s in check_stages(ROOT) if s.missing or s.extra}
    assert problems == {}, "run `humpback stage-deps --fix`"


def _project(tmp_path: Path) -> Path:
    """A copy of dvc.yaml, the stage scripts and the library, to plant faults in."""
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    return tmp_path


def test_a_missing_dep_and_a_needless_dep_are_found_and_fixed(tmp_path):
    root = _project(tmp_path)
    text = (root / "dvc.yaml").read_text()
    assert "      - src/humpback/curation/bins.py\n" in text
    text = text.replace("        - src/humpback/curation/bins.py\n", "", 1)  # score@* loses a dep it imports
    text = text.replace("      - stages/report.py\n", "      - stages/report.py\n      - src/humpback/training\n", 1)
    (root / "dvc.yaml").write_text(text)
    found = {s.name: s for s in check_stages(root)}
    assert [str(f) for f in found["score"].missing] == ["src/humpback/curation/bins.py"]
    assert found["report"].extra == ["src/humpback/training"]
    assert sorted(fix(root)) == ["report", "score"]
    assert all(not s.missing and not s.extra for s in check_stages(root))


def test_a_new_import_in_the_library_needs_a_new_dep(tmp_path):
    root = _project(tmp_path)
    (root / "src/humpback/extra_helper.py").write_text("X = 1\n")
    io = root / "src/humpback/readers.py"
    io.write_text(io.read_text() + "\n\ndef _late():\n    from humpback.extra_helper import X\n    return X\n")
    missing = {s.name for s in check_stages(root) if Path("src/humpback/extra_helper.py") in s.missing}
    assert {"seed", "corpus", "score", "judge", "report"} <= missing


def test_closure_follows_every_import_form(tmp_path):
    pkg = tmp_path / "src/humpback"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "config.py": 'SECTIONS = {"thing": "humpback.things:ThingConfig"}\n',
        "things.py": "class ThingConfig: ...\n",
        "lazy.py": "",
        "dynamic.py": "",
        "untouched.py": "",
        "sub/__init__.py": "",
        "sub/a.py": "from . import b\nfrom .c import VALUE\n",
        "sub/b.py": "",
        "sub/c.py": "VALUE = 1\n",
    }
    for name, body in files.items():
        (pkg / name).write_text(body)
    script = tmp_path / "stages/run.py"
    script.parent.mkdir()
    script.write_text(
        "import importlib\nfrom humpback.sub import a\nfrom humpback.config import load_section\n"
        "def main():\n    import humpback.lazy\n    importlib.import_module('humpback.dynamic')\n"
        "    load_section('thing', 'params.yaml')\n"
    )
    got = {str(p) for p in import_closure(script, tmp_path)}
    assert got == {
        "stages/run.py", "src/humpback/__init__.py", "src/humpback/config.py", "src/humpback/things.py",
        "src/humpback/lazy.py", "src/humpback/dynamic.py", "src/humpback/sub/__init__.py",
        "src/humpback/sub/a.py", "src/humpback/sub/b.py", "src/humpback/sub/c.py",
    }


def test_every_params_section_a_stage_reads_is_declared(tmp_path):
    assert params_problems(ROOT) == {}
    root = _project(tmp_path)
    text = (root / "dvc.yaml").read_text()
    gen = text.index("  generate:")
    text = text[:gen] + text[gen:].replace("        - engine\n", "", 1)  # generate loads engine: undeclared
    text = text.replace("      params:\n        - select\n", "      params:\n        - select\n        - train\n", 1)
    (root / "dvc.yaml").write_text(text)
    assert params_problems(root) == {
        "generate": ["reads `engine` but declares none of its keys"],
        "select": ["declares `train` keys but never reads the section"],
    }


def test_the_backward_section_counts_for_the_backward_training_only(tmp_path):
    root = _project(tmp_path)
    text = (root / "dvc.yaml").read_text()
    assert "      - train\n      - backward\n" in text
    # train_backward without it: undeclared; train_m0 (the same script, --kind m0) declaring it: needless
    text = text.replace("      - train\n      - backward\n", "      - train\n", 1)
    m0 = text.index("  train_m0:")
    text = text[:m0] + text[m0:].replace("      - train\n", "      - train\n      - backward\n", 1)
    # export has no --kind: it reads the section for the backward model's card whatever it runs
    text = text.replace("      - backward  # the backward model's card shows its training settings\n", "", 1)
    (root / "dvc.yaml").write_text(text)
    assert params_problems(root) == {
        "train_backward": ["reads `backward` but declares none of its keys"],
        "train_m0": ["declares `backward` keys but never reads the section"],
        "export": ["reads `backward` but declares none of its keys"],
    }
