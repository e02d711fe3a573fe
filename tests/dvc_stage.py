"""Stage commands exactly as dvc.yaml writes them, for tests that run one stage in a scratch project.

`command("score", "it1")` renders the dvc.yaml cmd of score@it1 (its ${...} filled from the
params.yaml in the working directory, or the code defaults) into an argv whose script path points
into the repository; `run` calls that script's main() in this process; `run_subprocess` runs it as
DVC would; `bench_pipeline()` gives the scratch-project helpers of bench/pipeline.py. Extra arguments are appended: argparse keeps the last of a repeated option.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from humpback.config import default_section

REPO = Path(__file__).resolve().parents[1]
_VAR = re.compile(r"\$\{([^}]+)\}")


@functools.cache
def bench_pipeline():
    """bench/pipeline.py as a module: `copy_project(ws)` (the git-tracked project as a new repository),
    `make_workspace(ws)` (the same on the tiny preset), `repro`."""
    spec = importlib.util.spec_from_file_location("bench_pipeline", REPO / "bench" / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _raw(params: Path) -> dict:
    """The params file as plain YAML, unvalidated: a command is rendered even for a params file the
    stage itself will reject (that rejection is what such a test checks)."""
    try:
        data = YAML(typ="safe").load(params.read_text()) if params.is_file() else None
    except Exception:
        data = None
    return data if isinstance(data, dict) else {}


def _lookup(expr: str, key: str | None, item, params: Path):
    if expr == "key":
        return key
    if expr == "item":
        return item
    if expr.startswith("item."):
        return item[expr[len("item."):]]
    section, *path = expr.split(".")
    value = _raw(params).get(section)
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:  # not in the file: the code default, as the stage would read it
        value = default_section(section)
        for part in path:
            value = getattr(value, part)
    return value


def _iterations(params: Path) -> dict:
    raw = _raw(params).get("iterations")
    return raw if isinstance(raw, dict) and raw else default_section("iterations")


def command(stage: str, key: str | None = None, params: str | Path = "params.yaml") -> list[str]:
    params = Path(params)
    body = YAML(typ="safe").load((REPO / "dvc.yaml").read_text())["stages"][stage]
    item = None
    if "foreach" in body:
        if key is None:
            raise ValueError(f"stage {stage} is a foreach stage: name the key (e.g. it1)")
        over = body["foreach"]
        if over == "${iterations}":
            it = _iterations(params).get(key)  # an iteration the params lack: only ${key} is rendered
            item = {} if it is None else {"prev": it["prev"] if isinstance(it, dict) else it.prev}
        else:
            item = key
        body = body["do"]
    cmd = _VAR.sub(lambda m: str(_lookup(m.group(1), key, item, params)), body["cmd"].split("#", 1)[0])
    argv = shlex.split(cmd)
    assert argv[0] == "python" and argv[1].startswith("stages/"), argv
    return [sys.executable, str(REPO / argv[1]), *argv[2:]]


def run(stage: str, key: str | None = None, *extra: str, params: str | Path = "params.yaml") -> None:
    """The stage's main() in this process (monkeypatches reach it)."""
    argv = command(stage, key, params)
    module = importlib.import_module(f"stages.{Path(argv[1]).stem}")
    module.main([*argv[2:], *extra])


def run_subprocess(stage: str, key: str | None = None, *extra: str, cwd: str | Path,
                   **kwargs) -> subprocess.CompletedProcess:
    argv = command(stage, key, Path(cwd) / "params.yaml")
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run([*argv, *extra], cwd=cwd, **kwargs)


def run_in_process(cwd: Path, stage: str, key: str | None = None, *extra: str, monkeypatch,
                   capsys) -> subprocess.CompletedProcess:
    """`run` in the scratch project `cwd`, as a finished process (exit status, stderr): for stages whose
    imports (torch, scikit-learn) would cost seconds per subprocess. Same exit-status and stderr contract."""
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    code = 0
    try:
        run(stage, key, *extra)
    except SystemExit as e:
        code = e.code
    return subprocess.CompletedProcess([stage, *extra], code, "", capsys.readouterr().err)
