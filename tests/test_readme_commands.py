"""Every shell command of README.md starts: parsed by its own program in the default run, and run for
real on the tiny preset in a scratch copy (the cheap ones by default, all of them under `-m slow`)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import readme_commands as rc
from dvc_stage import bench_pipeline
from ruamel.yaml import YAML

README = (rc.REPO / "README.md").read_text(encoding="utf-8")
COMMANDS = rc.commands(README)
# Seconds on the tiny preset: these run in the default test run, the rest only under -m slow.
# commits in the scratch project (dvc exp needs one) under a fixed identity
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
CHEAP = re.compile(r"humpback (check-params|ablations list|preset)|python bench/run\.py --render|dvc exp show|git ")


def _ids(cmds):
    return [f"line{c.line}-{c.text.split()[0]}-{i}" for i, c in enumerate(cmds)]


def test_the_readme_has_its_commands():
    texts = [c.text for c in COMMANDS]
    assert "dvc repro" in texts and "python -m pytest" in texts  # the two set-up commands
    assert len(COMMANDS) > 25
    assert any(c.marks == {"gpu"} for c in COMMANDS) and any(c.marks == {"cloud"} for c in COMMANDS)


@pytest.mark.parametrize("cmd", COMMANDS, ids=_ids(COMMANDS))
def test_every_readme_command_parses(cmd):
    rc.check(cmd)


@pytest.mark.parametrize("bad", [
    "dvc exp show --only-metrics",                      # not an option of DVC
    "dvc exp run -S select.treshold=4.5",                # no such params key
    "dvc exp run -S select.threshold=high",              # a key of the wrong type
    "dvc exp run --queue -S select.threshold=3.5,high",  # one bad value of a sweep
    "dvc exp run -S iterations.it2.select.threshold=4.5",  # a new key without ++
    "humpback ablations run --scalng 100",
    "humpback nothing",
    "python bench/run.py --fast",
    "python stages/nothing.py",
    "python -m humpback.evaluation.scaling fits",
    "accelerate launch --config_file configs/accelerate/none.yaml stages/train.py",
    "accelerate launch --config_file configs/accelerate/ddp.yaml stages/train.py --kind sideways",
    "bash scripts/nothing.sh",
    "make nothing",
    "pip install 'dvc[s3'",
    "ray start --hed",                                    # not an option of ray start
    "ray strat --head",
    "rsync -a data/ elsewhere/",                         # a program no check knows
])
def test_a_bad_readme_command_fails_its_check(bad):
    with pytest.raises(AssertionError, match="README.md:7: "):
        rc.check(rc.Command(7, bad, frozenset()))


def test_marks_and_continuations_are_read():
    text = ("```bash\ndvc push   # (needs a cloud remote)\ndvc exp run \\\n  -S select.threshold=4 && dvc exp show\n```\n"
            "<!-- commands: needs a GPU -->\n```bash\npython bench/run.py  # every bench\n```\n")
    cmds = rc.commands(text)
    assert [(c.line, c.text, set(c.marks)) for c in cmds] == [
        (2, "dvc push", {"cloud"}), (3, "dvc exp run -S select.threshold=4", set()), (3, "dvc exp show", set()),
        (8, "python bench/run.py", {"gpu"})]


def _scratch(tmp_path: Path) -> Path:
    ws = bench_pipeline().make_workspace(tmp_path / "ws")
    subprocess.run("git add -A && git commit -qm project", shell=True, cwd=ws, check=True, env=GIT_ENV)
    return ws


def _runnable(cmd: rc.Command) -> bool:
    return not cmd.marks and not rc.installs(cmd) and not rc.is_test_run(cmd)


def _run(cmd: rc.Command, ws: Path, timeout: int) -> None:
    proc = subprocess.run(["bash", "-c", cmd.text], cwd=ws, capture_output=True, text=True, timeout=timeout,
                          env=GIT_ENV)
    assert proc.returncode == 0, f"{cmd} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}"
    if re.fullmatch(r"dvc queue start.*", cmd.text):  # queueing alone runs nothing: wait once a worker starts
        _wait_for_queue(ws, GIT_ENV, timeout)


def _wait_for_queue(ws: Path, env: dict, timeout: int) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = subprocess.run(["dvc", "queue", "status"], cwd=ws, capture_output=True, text=True, env=env).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            assert "Failed" not in status, status
            return
        time.sleep(5)
    raise AssertionError(f"the DVC queue did not empty in {timeout} s")


def test_the_cheap_readme_commands_run_on_the_tiny_preset(tmp_path):
    ws = _scratch(tmp_path)
    ran = [c for c in COMMANDS if _runnable(c) and CHEAP.match(c.text)]
    assert len(ran) >= 5
    for cmd in ran:
        _run(cmd, ws, timeout=120)


# The README's own commands at the size they are written for: `--scaling 10,20,40` draws up to 40 of
# the last iteration's kept pairs (the preset's 12 segments keep 6; 96 should keep about 40), and the threshold variants of the
# grid may keep nothing from a random model's ratings.
SLOW_SIZE = {"augment": {"max_segments": 96}, "select": {"allow_empty": True}}


FENCES = [i + 1 for i, line in enumerate(README.splitlines()) if line.strip() == "```bash"]


def _block(cmd: rc.Command) -> int:
    """The README line of the ```bash fence that holds `cmd`."""
    return max(f for f in FENCES if f < cmd.line)


SLOW_BLOCKS = sorted({_block(c) for c in COMMANDS if _runnable(c)})


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One DVC cache (and run-cache) for every block's scratch project: each block starts from a
    `dvc repro` that, after the first, restores its outputs instead of recomputing them."""
    return tmp_path_factory.mktemp("dvc-cache")


@pytest.mark.slow
@pytest.mark.parametrize("block", SLOW_BLOCKS, ids=[f"line{b}" for b in SLOW_BLOCKS])
def test_every_readme_command_runs_on_the_tiny_preset(block, tmp_path, shared_cache):
    """Each code block in its own scratch project (tiny preset, sized as SLOW_SIZE says, after one
    `dvc repro`), its commands in README order as a reader would type them (the presets last: the
    paper preset would turn the rest into a GPU run)."""
    ws = _scratch(tmp_path)
    sized = tmp_path / "sized.yaml"
    YAML().dump(SLOW_SIZE, sized)
    setup = f"dvc cache dir {shared_cache} && humpback preset {sized} && git commit -qam sized && dvc repro"
    proc = subprocess.run(["bash", "-c", setup], cwd=ws, capture_output=True, text=True, env=GIT_ENV)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    ran = [c for c in COMMANDS if _runnable(c) and _block(c) == block]
    for cmd in sorted(ran, key=lambda c: c.text.startswith("humpback preset")):
        start = time.monotonic()
        _run(cmd, ws, timeout=3600)
        print(f"{time.monotonic() - start:7.1f} s  {cmd}")
