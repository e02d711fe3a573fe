"""Which project files a stage's command imports, and whether dvc.yaml's deps cover exactly those.

DVC re-runs a stage when one of its deps changes, so a stage's code deps must be the import
closure of its script: every project module it imports, at the top or inside a function, plus the
package `__init__.py` files Python runs on the way, transitively. The closure is found statically
(ast), so a backend imported only on a GPU still counts. Two dynamic imports are followed too:
`importlib.import_module("humpback...")` and `load_section("<name>")`, which imports the module
of that params section (config.SECTIONS); a stage script's `validate_all(...)` imports every section's module. A `load_section("<name>", ..., iteration=...)` reads the
section as one iteration sees it (iterations.<it>.<name> on top): it counts, together with
`iterations`, only for a stage whose command passes `--iteration` (select@, train@) or whose code
loads `iterations` itself (export), so a script shared with stages of no iteration (train_backward,
train_m0) does not make them read it.

`humpback stage-deps` prints, per stage, what its deps miss and what they hold beyond the closure,
and any params section the code reads without a key of it under `params:` (or the other way round).
"""

from __future__ import annotations

import ast
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML

PACKAGE = "humpback"


@dataclass
class StageDeps:
    name: str
    script: Path
    closure: set[Path]  # project files the command imports (relative to the repository root)
    missing: list[Path] = field(default_factory=list)  # imported, not covered by any dep
    extra: list[str] = field(default_factory=list)  # code deps that cover files the command never imports
    sections_read: set[str] = field(default_factory=set)  # params sections the stage loads by name
    sections_declared: set[str] = field(default_factory=set)  # sections with a key under `params:`


def _module_file(module: str, src: Path) -> Path | None:
    """src/humpback/a/b.py or src/humpback/a/b/__init__.py for 'humpback.a.b'."""
    base = src.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _with_parents(module: str, src: Path) -> list[Path]:
    """The module's file and every package __init__.py that importing it runs."""
    parts = module.split(".")
    out = []
    for i in range(1, len(parts) + 1):
        f = _module_file(".".join(parts[:i]), src)
        if f is not None:
            out.append(f)
    return out


def _sections(src: Path) -> dict[str, str]:
    """config.SECTIONS (section name -> "module:Class"), read from the source, not imported."""
    tree = ast.parse((src / PACKAGE / "config.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "SECTIONS" for t in targets):
                return ast.literal_eval(node.value)
    raise RuntimeError("humpback/config.py defines no SECTIONS")


def _current_package(path: Path, src: Path) -> list[str]:
    """The package a file belongs to: humpback.a for src/humpback/a/b.py and src/humpback/a/__init__.py."""
    return list(path.relative_to(src).parts[:-1])


def imported_modules(path: Path, src: Path,
                     sections: dict[str, str]) -> tuple[set[str], set[str], set[str], bool]:
    """Names of project modules `path` imports (absolute, relative and the two dynamic forms), the
    params sections it loads by name, those it loads per iteration (an `iteration=` keyword), and
    whether it loads a section as the backward model sees it (a `backward=` keyword)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    loaded: set[str] = set()
    per_iteration: set[str] = set()
    for_backward = False
    in_src = src in path.resolve().parents
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not in_src:
                    continue
                pkg = _current_package(path.resolve(), src)
                base = pkg[: len(pkg) - (node.level - 1)]
                mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import submodule`
        elif isinstance(node, ast.Call):
            fn = node.func
            fname = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            arg = node.args[0] if node.args else None
            literal = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
            if fname == "import_module" and literal:
                found.add(literal)
            elif fname == "load_section" and literal is not None:
                (per_iteration if any(k.arg == "iteration" for k in node.keywords) else loaded).add(literal)
                for_backward |= any(k.arg == "backward" for k in node.keywords)
                if literal in sections:
                    found.add(sections[literal].partition(":")[0])
            elif fname == "validate_all" and not in_src:  # a stage validating the whole file: every section's rules count
                found.update(spec.partition(":")[0] for spec in sections.values())
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}, loaded, per_iteration, for_backward


def _walk(script: Path, root: Path) -> tuple[set[Path], set[str], set[str], bool]:
    """The import closure of `script` (relative to `root`, script included), the params sections
    that closure loads by name, those it loads per iteration, and whether it loads one for the
    backward model; each file is parsed once."""
    src = (root / "src").resolve()
    sections = _sections(src)
    todo, seen, loaded, per_iteration, for_backward = [script.resolve()], set(), set(), set(), False
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        modules, names, iterative, backward = imported_modules(f, src, sections)
        loaded |= names
        per_iteration |= iterative
        for_backward |= backward
        for mod in modules:
            todo.extend(p.resolve() for p in _with_parents(mod, src) if p.resolve() not in seen)
    return {p.relative_to(root.resolve()) for p in seen}, loaded, per_iteration, for_backward


def import_closure(script: Path, root: Path) -> set[Path]:
    """Every project file that running `script` may import, relative to `root` (script included)."""
    return _walk(script, root)[0]


def _script(cmd: str) -> Path | None:
    words = shlex.split(cmd.split("#", 1)[0])
    for w in words:
        if w.endswith(".py"):
            return Path(w)
    return None


def _covers(dep: Path, f: Path) -> bool:
    return f == dep or dep in f.parents


def code_dep(dep: str) -> bool:
    """A dep on project code (scripts and the library), as opposed to data, models or configs."""
    return dep.startswith(("src/", "stages/")) or dep.endswith(".py")


def check_stages(root: Path = Path(".")) -> list[StageDeps]:
    """Compare each stage's code deps in root/dvc.yaml with its command's import closure."""
    doc = YAML(typ="safe").load((root / "dvc.yaml").read_text(encoding="utf-8"))
    out = []
    for name, stage in (doc.get("stages") or {}).items():
        body = stage.get("do", stage)
        script = _script(body["cmd"])
        if script is None:
            continue
        closure, read, per_iteration, for_backward = _walk(root / script, root)
        words = shlex.split(body["cmd"].split("#", 1)[0])
        # per-iteration reads count where the command names an iteration, or where the code reads the
        # iterations section itself and so goes through them (export: every model's train section)
        if per_iteration and ("--iteration" in words or "iterations" in read):
            read = read | per_iteration | {"iterations"}
        # the backward section counts where the command's --kind is backward (train_backward, not
        # train_m0: the same script), or where it has no --kind and so reads it whatever it runs
        kind = next((words[i + 1] for i, w in enumerate(words[:-1]) if w == "--kind"), None)
        if for_backward and kind in (None, "backward"):
            read = read | {"backward"}
        declared = {str(p).split(".")[0] for p in body.get("params") or [] if isinstance(p, str)}
        deps = [str(d) for d in body.get("deps") or []]
        code = [Path(d.rstrip("/")) for d in deps if code_dep(d)]
        missing = sorted(f for f in closure if not any(_covers(d, f) for d in code))
        extra = []
        for d in code:
            files = [p.relative_to(root) for p in (root / d).rglob("*.py")] if (root / d).is_dir() else [d]
            if any(f not in closure for f in files):
                extra.append(str(d))
        out.append(StageDeps(name, script, closure, missing, extra, read, declared))
    return out


def report(root: Path = Path(".")) -> int:
    """Print each stage's missing and needless code deps; the exit status is 1 when any differ."""
    bad = 0
    stages = check_stages(root)
    for s in stages:
        if not s.missing and not s.extra:
            continue
        bad = 1
        print(f"{s.name}:")
        for f in s.missing:
            print(f"  missing dep  {f}")
        for d in s.extra:
            print(f"  needless dep {d}")
    for name, problems in _params_problems(stages).items():
        bad = 1
        print(f"{name}:")
        for problem in problems:
            print(f"  params: {problem}")
    if not bad:
        print("dvc.yaml: every stage's code deps are its command's import closure; its params cover what it reads")
    return bad


def suggested_deps(closure: set[Path], root: Path = Path(".")) -> list[str]:
    """The closure as dvc.yaml deps: a package directory when all its modules are imported, else files."""
    out: list[str] = []
    files = sorted(closure)
    dirs = sorted({f.parent for f in files}, key=lambda d: len(d.parts))
    whole: list[Path] = []
    for d in dirs:
        if any(w in d.parents or w == d for w in whole) or d in (Path("stages"), Path("src"), Path("src") / PACKAGE):
            continue
        if all(p.relative_to(root) in closure for p in (root / d).rglob("*.py")):
            whole.append(d)
    for w in whole:
        out.append(f"{w}")
    out += [str(f) for f in files if not any(w in f.parents for w in whole)]
    return out


def fix(root: Path = Path(".")) -> list[str]:
    """Rewrite the code deps of every stage in root/dvc.yaml to its import closure, keeping the rest
    of the file (other deps, comments, order) as it is. Returns the names of the stages changed."""
    path = root / "dvc.yaml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    changed = []
    for s in check_stages(root):
        if not s.missing and not s.extra:
            continue
        start = next(i for i, line in enumerate(lines) if line.rstrip() == f"  {s.name}:")
        deps_at = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "deps:")
        items = deps_at + 1
        indent = lines[items][: len(lines[items]) - len(lines[items].lstrip())]
        end = items
        while end < len(lines) and lines[end].startswith(indent + "- "):
            end += 1
        block = lines[items:end]
        keep = [line for line in block if not code_dep(line.strip()[2:].split("#")[0].strip())]
        code = [f"{indent}- {d}\n" for d in [str(s.script), *suggested_deps(s.closure - {s.script}, root)]]
        lines[items:end] = code + keep
        changed.append(s.name)
    if changed:
        from humpback.io import write_text

        write_text("".join(lines), path)
    return changed


def _params_problems(stages: list[StageDeps]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in stages:
        problems = [f"reads `{sec}` but declares none of its keys" for sec in sorted(s.sections_read - s.sections_declared)]
        problems += [f"declares `{sec}` keys but never reads the section"
                     for sec in sorted(s.sections_declared - s.sections_read)]
        if problems:
            out[s.name] = problems
    return out


def params_problems(root: Path = Path(".")) -> dict[str, list[str]]:
    """Per stage: a section its code reads with no key declared under `params:`, or a declared key
    whose section its code never reads."""
    return _params_problems(check_stages(root))
