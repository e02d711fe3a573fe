"""The shell commands of README.md's code blocks, and a check of each by its own program's parser.

A command is one line of a ```bash block (a trailing `\\` joins the next line), split at `&&`.
A line whose trailing comment holds `(needs a GPU)`, `(needs a cloud remote)`, `(needs an API key)`
is marked: the tests do not run it, and say so. An HTML comment
`<!-- commands: needs a GPU -->` right above a block marks every line of it.

`check(cmd)` parses a command the way its program would, without running it: DVC's own argument
parser for `dvc`, ours for `humpback`, each script's argparse for `python <script>` and
`python -m <module>`; `-S key=value` overrides are applied to params.yaml and validated; named
files must exist. A command of a program it does not know is an error, so a new kind of README
command needs a check here before it can land.
"""

from __future__ import annotations

import argparse
import io
import re
import runpy
import shlex
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
MARKS = {"needs a GPU": "gpu", "needs a cloud remote": "cloud", "needs an API key": "api-key"}
_MARK = re.compile(r"\((" + "|".join(re.escape(m) for m in MARKS) + r")\)")
_BLOCK_MARK = re.compile(r"<!--\s*commands:\s*(" + "|".join(re.escape(m) for m in MARKS) + r")\s*-->")


@dataclass(frozen=True)
class Command:
    line: int  # README line number of the command's first line
    text: str  # the command, without its comment
    marks: frozenset[str]  # what it needs that a test machine lacks

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.text}"


def _strip_comment(line: str) -> tuple[str, str]:
    """The command and its trailing comment: the first `#` outside quotes that starts a word."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:]
    return line.rstrip(), ""


def commands(text: str) -> list[Command]:
    out: list[Command] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```bash":
            i += 1
            continue
        block_marks = set()
        before = lines[i - 1] if i else ""
        if m := _BLOCK_MARK.search(before):
            block_marks.add(MARKS[m.group(1)])
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            start, parts, comments = i + 1, [], []
            while True:
                cmd, comment = _strip_comment(lines[i])
                comments.append(comment)
                if cmd.endswith("\\"):
                    parts.append(cmd[:-1].strip())
                    i += 1
                    continue
                parts.append(cmd.strip())
                break
            i += 1
            joined = " ".join(p for p in parts if p)
            if not joined:
                continue
            marks = block_marks | {MARKS[m] for c in comments for m in _MARK.findall(c)}
            for piece in joined.split("&&"):
                out.append(Command(start, piece.strip(), frozenset(marks)))
        i += 1
    return out


class _Parsed(BaseException):
    """Raised by argparse once the arguments parsed: the script never runs (BaseException: no
    `except Exception` in a stage wrapper turns it into an exit code)."""


def _parse_only(run, argv0: str, args: list[str]) -> None:
    original = argparse.ArgumentParser.parse_args

    def parse(self, argv=None, namespace=None):
        original(self, argv, namespace)
        raise _Parsed

    err = io.StringIO()
    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse), \
            mock.patch.object(sys, "argv", [argv0, *args]), redirect_stderr(err), redirect_stdout(io.StringIO()):
        try:
            run()
        except _Parsed:
            return
        except SystemExit as e:
            raise AssertionError(f"{argv0} {' '.join(args)}: its parser refused it (exit {e.code}): "
                                 f"{err.getvalue().strip()[-400:]}") from None
    raise AssertionError(f"{argv0}: ran without parsing any arguments")


def _params_override(params: dict, override: str) -> None:
    """Apply one `-S [++]key=value[,value...]` as DVC would (each sweep value in turn is checked by the caller)."""
    key, _, value = override.removeprefix("++").partition("=")
    node = params
    *path, last = key.split(".")
    for part in path:
        node = node.setdefault(part, {}) if override.startswith("++") else node[part]
    if not override.startswith("++") and last not in node:
        raise KeyError(f"-S {override}: params.yaml has no key {key} (DVC refuses it; `++` adds a key)")
    node[last] = YAML(typ="safe").load(value) if value else None


def _check_dvc(args: list[str], cwd: Path) -> None:
    from dvc.cli import DvcParserError, parse_args

    from humpback.config import validate_all

    try:
        parse_args(args)
    except DvcParserError:
        raise AssertionError(f"dvc {' '.join(args)}: DVC's parser refused it") from None
    overrides = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-S", "--set-param")]
    for override in overrides:
        key, _, values = override.partition("=")
        for value in values.split(",") if "," in values and not values.startswith(("'", '"')) else [values]:
            params = YAML(typ="safe").load((cwd / "params.yaml").read_text())
            _params_override(params, f"{key}={value}")
            path = cwd / ".readme_params.yaml"
            try:
                YAML().dump(params, path)
                validate_all(path)
            finally:
                path.unlink(missing_ok=True)


def _check_python(args: list[str], cwd: Path) -> None:
    if args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if module == "pytest":
            from _pytest.config import main as pytest_main  # noqa: F401 (pytest is there)
            return
        _parse_only(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True), module, rest)
        return
    script, rest = cwd / args[0], args[1:]
    assert script.is_file(), f"python {args[0]}: no such script"
    _parse_only(lambda: runpy.run_path(str(script), run_name="__main__"), args[0], rest)


def _check_accelerate(args: list[str], cwd: Path) -> None:
    assert args[0] == "launch", f"accelerate {args[0]}: only `accelerate launch` is checked"
    i = 1
    while args[i].startswith("--"):
        if args[i] == "--config_file":
            assert (cwd / args[i + 1]).is_file(), f"accelerate launch --config_file {args[i + 1]}: no such file"
        i += 2
    _check_python(args[i:], cwd)


def _check_ray(args: list[str]) -> None:
    """A `ray` CLI command, parsed by Ray's own click commands without running it."""
    import click
    from ray.scripts.scripts import cli

    assert args, "ray: no command"
    command = cli.get_command(click.Context(cli), args[0])
    assert command is not None, f"ray {args[0]}: no such command"
    try:
        command.make_context(args[0], list(args[1:]))
    except click.UsageError as e:
        raise AssertionError(f"ray {args[0]}: {e.format_message()}") from None


def _check_files(program: str, args: list[str], cwd: Path) -> None:
    if program == "bash":
        script = cwd / args[0]
        assert script.is_file(), f"bash {args[0]}: no such script"
        subprocess.run(["bash", "-n", str(script)], check=True)
    elif program == "make":
        proc = subprocess.run(["make", "-n", *args], cwd=cwd, capture_output=True, text=True)
        assert proc.returncode == 0, f"make {' '.join(args)}: {proc.stderr.strip()}"


def _check_pip(args: list[str], cwd: Path) -> None:
    from packaging.requirements import Requirement

    assert args[0] == "install", f"pip {args[0]}: only `pip install` is checked"
    for a in args[1:]:
        if not a.startswith("-"):
            Requirement(a)  # a malformed requirement raises


def installs(cmd: Command) -> bool:
    """Commands that change the Python environment: checked, never run inside a test."""
    return bool(re.match(r"(bash scripts/install\.sh|pip install|python -m pip install)\b", cmd.text))


def is_test_run(cmd: Command) -> bool:
    return bool(re.match(r"python -m pytest\b", cmd.text))


def check(cmd: Command, cwd: Path = REPO) -> None:
    """Raise AssertionError naming the README line when `cmd` would fail to start."""
    try:
        words = shlex.split(cmd.text)
    except ValueError as e:
        raise AssertionError(f"{cmd}: not a shell command ({e})") from None
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words = words[1:]  # VAR=value before the program
    program, args = words[0], words[1:]
    try:
        if program == "dvc":
            _check_dvc(args, cwd)
        elif program == "humpback":
            from humpback import cli

            _parse_only(cli.main, "humpback", args)
        elif program == "python":
            _check_python(args, cwd)
        elif program == "accelerate":
            _check_accelerate(args, cwd)
        elif program in ("bash", "make"):
            _check_files(program, args, cwd)
        elif program == "ray":
            _check_ray(args)
        elif program == "pip":
            _check_pip(args, cwd)
        elif program == "git":
            assert args and args[0] in ("checkout", "clone", "switch", "add", "commit"), f"git {args}"
        elif program == "export":
            assert all("=" in a for a in args), "export NAME=value"
        else:
            raise AssertionError(f"no check for the program {program!r}: add one to tests/readme_commands.py")
    except AssertionError as e:
        raise AssertionError(f"{cmd}: {e}") from None
    except Exception as e:  # a params error, a malformed requirement: the README line is what is wrong
        raise AssertionError(f"{cmd}: {type(e).__name__}: {e}") from None
