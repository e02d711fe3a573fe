"""Hostile and careless input, part 2: bad scores, model directories that point at themselves,
malformed model metadata, a full disk or a read-only output directory, two runs at once, credentials
in endpoint URLs, and the permissions of what the stages write.

Each fault ends the stage with exit status 2 and exactly one `error:` line naming the file (and the
row, or the chain), the outputs of an earlier good run byte-identical and no temporary file left.
Stages run in this process (`dvc_stage.run`), where monkeypatches reach them: same exit status and
stderr contract as `python stages/<x>.py`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
import reliability_plugin as ledger
from stub_server import StubServer

from humpback import io as hio
from humpback.errors import InputError, OutputError, redact_text, redact_url
from humpback.stage import stage

pytest_plugins = ["reliability_plugin"]

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers

def run_in_process(cwd: Path, name: str, key: str | None, *extra: str, monkeypatch, capsys) -> tuple[int, str]:
    """The dvc.yaml command of `name` (`key`: the foreach item) run in this process: (exit status, stderr)."""
    done = dvc_stage.run_in_process(cwd, name, key, *extra, monkeypatch=monkeypatch, capsys=capsys)
    return done.returncode, done.stderr


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root but the params and inputs at its top, with a digest of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if (p.is_file() or p.is_symlink()) and p.parent != root}


def one_error_line(code: int, err: str, *needles: str) -> str:
    """Exit status 2 and exactly one `error:` line, the last on stderr, holding every needle."""
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err[-3000:]
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def fails_cleanly(ws: Path, kind: str, case: str, name: str, key: str | None, extra: tuple[str, ...],
                  needles: tuple[str, ...], before: dict[str, str], *, monkeypatch, capsys) -> str:
    """The stage fails with one named line; every earlier file is byte-identical and nothing new is
    left but a resumable stage's finished parts (`<out>.parts/`, kept on purpose for the re-run)."""
    code, err = run_in_process(ws, name, key, *extra, monkeypatch=monkeypatch, capsys=capsys)
    line = one_error_line(code, err, *needles)
    after = {k: v for k, v in snapshot(ws).items() if ".parts/" not in k}
    before = {k: v for k, v in before.items() if ".parts/" not in k}
    lost = ledger.outputs(f"{name}: {case}", before, after)
    assert not lost and after == before, f"outputs changed ({lost}) or were left behind by a failed stage"
    assert not [p for p in after if p.endswith(".tmp")]
    ledger.hostile(kind, case, f"exit 2, {line}")
    return line


def _scores(path: Path, scores, **more) -> None:
    n = len(scores)
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"segment_id": [f"s{i}" for i in range(n)], "instruction": [f"i{i}" for i in range(n)],
                  "output": [f"o{i}" for i in range(n)], "score": scores, "mode": ["generate"] * n, **more}
                 ).write_parquet(path)


@pytest.fixture
def selected(tmp_path, monkeypatch, capsys) -> tuple[Path, dict[str, str]]:
    """A scratch project after a good select@it1, and the digests of its files."""
    _scores(tmp_path / "data/scores/it1.parquet", [3.0, 4.0, None])
    (tmp_path / "params.yaml").write_text("select:\n  threshold: 3\n")
    code, err = run_in_process(tmp_path, "select", "it1", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    good = snapshot(tmp_path)
    assert {"data/curated/it1.parquet", "metrics/curation/it1.json"} <= set(good)
    return tmp_path, good


# --------------------------------------------------------------------------- errors (a): bad scores

SCORE_CASES = [
    ("string scores", pl.Series(["4", "oops", "5"]), ("row 0", "String", "'4'")),
    ("list scores", pl.Series([[4.0], [5.0], [1.0]]), ("row 0", "List", "[4.0]")),
    ("bool scores", pl.Series([True, False, True]), ("row 0", "Boolean", "True")),
    ("a NaN score", pl.Series([4.0, float("nan"), None]), ("row 1", "got nan")),
    ("an infinite score", pl.Series([4.0, None, float("inf")]), ("row 2", "got inf")),
    ("a -infinite score", pl.Series([-float("inf"), 4.0, 5.0]), ("row 0", "got -inf")),
    ("a score below 1", pl.Series([2.0, 0.5, 3.0]), ("row 1", "0.5 is out of the rubric's range [1, 5]")),
    ("a score above 5 (integers)", pl.Series([1, 6, 3]), ("row 1", "6 is out of the rubric's range")),
]


def test_bad_scores_are_one_line_errors_naming_file_and_row(selected, monkeypatch, capsys):
    ws, good = selected
    bad = ws / "data/scores/bad.parquet"
    for case, scores, needles in SCORE_CASES:
        _scores(bad, scores)
        fails_cleanly(ws, "errors", f"scores file: {case}", "select", "it1", ("--scores", str(bad)),
                      ("bad.parquet", "record", *needles), snapshot(ws), monkeypatch=monkeypatch, capsys=capsys)
    # JSONL scores (the stage takes any table): a number as a string on line 3
    jl = ws / "data/scores/bad.jsonl"
    jl.write_text("".join(json.dumps({"segment_id": f"s{i}", "instruction": "i", "output": "o", "score": s}) + "\n"
                          for i, s in enumerate([4, None, "4.5"])))
    fails_cleanly(ws, "errors", "scores file: JSONL score as a string", "select", "it1", ("--scores", str(jl)),
                  ("bad.jsonl", "record line 3", "got str: '4.5'"), snapshot(ws), monkeypatch=monkeypatch,
                  capsys=capsys)
    # null scores are unparsed ratings, not faults: a file of nothing but nulls keeps nothing
    _scores(bad, pl.Series([None, None, None], dtype=pl.Null))
    fails_cleanly(ws, "errors", "scores file: every score null", "select", "it1", ("--scores", str(bad)),
                  ("bad.parquet", "keeps no pair out of 3", "no row has a parsed score"), snapshot(ws),
                  monkeypatch=monkeypatch, capsys=capsys)
    # a null instruction would only fail in training, much later
    _scores(bad, [4.0, 5.0], instruction=None)
    fails_cleanly(ws, "errors", "scores file: null instruction", "select", "it1", ("--scores", str(bad)),
                  ("bad.parquet", "'instruction'"), snapshot(ws), monkeypatch=monkeypatch, capsys=capsys)
    bad.unlink()
    jl.unlink()
    assert snapshot(ws) == good


def test_nan_log_probabilities_never_become_a_nan_score():
    import math

    from humpback.curation.scoring import expected_score

    assert expected_score({"1": math.nan, "2": math.nan}).expected is None
    assert expected_score({"3": math.nan, "4": 0.0}).expected == 4.0
    assert expected_score({"5": math.inf, "2": -1.0}).expected == 2.0  # a positive log-prob is no evidence
    ledger.hostile("errors", "score stage: NaN/positive digit log-probabilities", "counted as unseen digits, never a NaN score")


# --------------------------------------------------------------------------- errors (b, c): model directories

def _meta(d: Path, meta) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    f = d / "humpback_model.json"
    f.write_bytes(meta if isinstance(meta, bytes) else json.dumps(meta).encode())
    return d


def _model_cases(ws: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """(case, the --model directory, needles); the directories are made here."""
    m = ws / "models"
    _meta(m / "self", {"kind": "pointer", "base": str(m / "self")})
    _meta(m / "a", {"kind": "pointer", "base": str(m / "b")})
    _meta(m / "b", {"kind": "pointer", "base": str(m / "a")})
    ad = _meta(m / "ad_self", {"kind": "adapter", "base": "models/ad_self"})
    (ad / "adapter_config.json").write_text("{}")
    for i in range(40):
        _meta(m / f"chain{i}", {"kind": "pointer", "base": str(m / f"chain{i + 1}")})
    _meta(m / "chain40", {"kind": "pointer", "base": "org/model"})
    for name, meta in [("invalid_json", b'{"kind": "pointer", "base": '), ("json_list", [1, 2]),
                       ("binary", bytes(range(128, 256)) * 4), ("base_not_string", {"kind": "pointer", "base": 7}),
                       ("no_base", {"kind": "pointer"}), ("bad_kind", {"kind": ["x"], "base": "org/m"}),
                       ("bad_format", {"kind": "pointer", "base": "org/m", "prompt_format": "fancy"})]:
        _meta(m / name, meta)
    return [
        ("pointer to itself", "models/self", ("cycle", "models/self -> ")),
        ("cycle of two pointers", "models/a", ("cycle", "models/a ->", "models/b")),
        ("adapter whose base is itself", "models/ad_self", ("ad_self/humpback_model.json", "cycle")),
        ("chain of 41 pointers", "models/chain0", ("chain0/humpback_model.json", "more than 32")),
        ("metadata not valid JSON", "models/invalid_json", ("invalid_json/humpback_model.json", "malformed JSON")),
        ("metadata a JSON list", "models/json_list", ("json_list/humpback_model.json", "expected a JSON object, got list")),
        ("metadata binary junk", "models/binary", ("binary/humpback_model.json", "not valid UTF-8")),
        ("metadata base a number", "models/base_not_string", ("humpback_model.json", "'base' must be a string, got int")),
        ("metadata pointer without base", "models/no_base", ("no_base/humpback_model.json", "without 'base'")),
        ("metadata kind a list", "models/bad_kind", ("bad_kind/humpback_model.json", "'kind' must be one of")),
        ("metadata unknown prompt_format", "models/bad_format", ("humpback_model.json", "'prompt_format'", "'fancy'")),
    ]


def test_model_directory_faults_are_one_line_errors(tmp_path, monkeypatch, capsys):
    """Through the score stage (the endpoint backend, so no model is loaded and nothing is sent:
    the model's identity is read before any request) and through `resolve`, which every local
    engine and the training stage use."""
    from humpback.models import resolve

    ws = tmp_path
    (ws / "params.yaml").write_text("engine:\n  backend: openai\n  openai:\n    base_url: http://127.0.0.1:9/v1\n"
                                    "    max_retries: 0\nscore:\n  mode: generate\n")
    cand = ws / "data/augmented/candidates.parquet"
    cand.parent.mkdir(parents=True)
    pl.DataFrame({"segment_id": ["a"], "instruction": ["i"], "output": ["o"]}).write_parquet(cand)
    cases = _model_cases(ws)
    before = snapshot(ws)
    for case, model, needles in cases:
        fails_cleanly(ws, "errors", f"model directory: {case}", "score", "it1", ("--model", model), needles, before,
                      monkeypatch=monkeypatch, capsys=capsys)
        with pytest.raises(InputError) as info:
            resolve(model)
        assert "\n" not in str(info.value) and needles[0] in str(info.value)
    # a long chain that ends is not runaway below the limit, and an adapter over an adapter is refused
    m = ws / "models"
    _meta(m / "short0", {"kind": "pointer", "base": str(m / "short1")})
    _meta(m / "short1", {"kind": "pointer", "base": "org/model", "prompt_format": "plain"})
    assert resolve(m / "short0").base == "org/model" and resolve(m / "short0").prompt_format == "plain"
    ck = m / "ck"
    ck.mkdir()
    (ck / "config.json").write_text("{}")
    for name, base in [("ad1", ck), ("ad2", m / "ad1")]:
        (_meta(m / name, {"kind": "adapter", "base": str(base)}) / "adapter_config.json").write_text("{}")
    with pytest.raises(InputError, match="is itself a LoRA adapter"):
        resolve(m / "ad2")
    ledger.hostile("errors", "model directory: adapter over an adapter", "InputError: ... is itself a LoRA adapter")


# --------------------------------------------------------------------------- errors (d): full disk, read-only

def _full_disk(monkeypatch, target: str) -> None:
    """Writes to temporary files of outputs named `target` hit a real ENOSPC: the temp file is a
    symlink to /dev/full, so the writer (polars, pyarrow, plain Python) gets the kernel's error."""
    real = hio._open_temp

    def full(path: Path):
        fd, tmp = real(path)
        if path.name == target:
            tmp.unlink()
            tmp.symlink_to("/dev/full")
        return fd, tmp

    monkeypatch.setattr(hio, "_open_temp", full)


has_dev_full = Path("/dev/full").exists() and stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.skipif(not has_dev_full, reason="needs /dev/full")
@pytest.mark.parametrize("target,writer", [("it1.parquet", "polars"), ("it1.json", "json")])
def test_full_disk_is_one_line_naming_the_output(selected, monkeypatch, capsys, target, writer):
    ws, good = selected
    (ws / "params.yaml").write_text("select:\n  threshold: 4\n")  # would change both outputs
    _full_disk(monkeypatch, target)
    line = fails_cleanly(ws, "errors", f"disk full writing {target} ({writer})", "select", "it1", (),
                         (target, "No space left on device (ENOSPC)", "previous output is kept"), good,
                         monkeypatch=monkeypatch, capsys=capsys)
    assert "/dev/full" not in line
    assert not [p for p in ws.rglob(".*.tmp")]


def test_read_only_output_directory_is_one_line(selected, monkeypatch, capsys):
    """A real read-only directory where permissions bind (not root); as root, whom mode bits do not
    stop, the refusal the kernel would give (EACCES, then EROFS) is injected at os.open."""
    ws, good = selected
    (ws / "params.yaml").write_text("select:\n  threshold: 4\n")
    out_dir = ws / "data/curated"
    cases = [("EACCES", errno.EACCES, "Permission denied (EACCES)"), ("EROFS", errno.EROFS, "Read-only file system")]
    real_open = os.open
    for name, code, reason in cases:
        if os.geteuid() != 0 and code == errno.EACCES:
            out_dir.chmod(0o555)
            how = "chmod 555"
        else:
            def refuse(path, flags, mode=0o777, *, dir_fd=None, _code=code):
                if os.path.abspath(path).startswith(str(out_dir)) and flags & os.O_CREAT:
                    raise OSError(_code, os.strerror(_code), str(path))
                return real_open(path, flags, mode, dir_fd=dir_fd)

            monkeypatch.setattr(os, "open", refuse)
            how = "injected"
        try:
            fails_cleanly(ws, "errors", f"read-only output directory ({name}, {how})", "select", "it1", (),
                          ("data/curated/it1.parquet", reason, "previous output is kept"), good,
                          monkeypatch=monkeypatch, capsys=capsys)
        finally:
            out_dir.chmod(0o755)
            monkeypatch.setattr(os, "open", real_open)


def test_stage_wrapper_gives_environment_oserrors_one_line_and_bugs_their_traceback(capsys):
    """An OSError outside atomic_path (a library's own write): the environment's (disk full anywhere,
    a permission on a named path) is one line; one that looks like a bug keeps its traceback."""
    def raising(exc):
        @stage
        def main():
            raise exc
        return main

    env = [("ENOSPC from a library write, no path", OSError(errno.ENOSPC, "No space left on device"),
            "No space left on device (ENOSPC)"),
           ("EDQUOT on a named path", OSError(errno.EDQUOT, "Disk quota exceeded", "models/m0.tmp/model.safetensors"),
            "models/m0.tmp/model.safetensors: Disk quota exceeded (EDQUOT)"),
           ("EACCES on a named path", PermissionError(errno.EACCES, "Permission denied", "models/m0.tmp"),
            "models/m0.tmp: Permission denied (EACCES)"),
           ("polars ComputeError of a full disk", pl.exceptions.ComputeError(
               "parquet: File out of specification: underlying IO error: No space left on device (os error 28)"),
            "No space left on device (ENOSPC) (ComputeError: parquet"),
           ("safetensors-style error of a read-only filesystem", RuntimeError(
               'Error while serializing: IoError(Os { code: 30, kind: ReadOnlyFilesystem, message: "Read-only" })'),
            "Read-only file system (EROFS) (RuntimeError")]
    for case, exc, needle in env:
        with pytest.raises(SystemExit) as info:
            raising(exc)()
        err = capsys.readouterr().err
        line = one_error_line(info.value.code, err, needle)
        ledger.hostile("errors", f"stage wrapper: {case}", f"exit 2, {line}")
    for case, exc in [("a missing file the code named", FileNotFoundError(errno.ENOENT, "No such file", "x/y")),
                      ("EACCES without a path", PermissionError(errno.EACCES, "Permission denied")),
                      ("a library error naming EACCES in its text", RuntimeError("[Errno 13] Permission denied")),
                      ("a TypeError", TypeError("bug"))]:
        with pytest.raises(type(exc)):
            raising(exc)()
        ledger.hostile("errors", f"stage wrapper: {case}", f"{type(exc).__name__} propagates with its traceback (a bug)")


# --------------------------------------------------------------------------- errors (e): two writers at once

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from humpback.io import atomic_path
    out, me, other, content = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    first = sys.argv[5] == "first"
    if not first:
        while not other.with_suffix(".ready").exists():  # the other writer's temp file exists now
            time.sleep(0.01)
    with atomic_path(out) as tmp:
        tmp.write_text(content * 1000)
        me.with_suffix(".ready").touch()
        end = time.monotonic() + 30
        while not other.with_suffix(".ready").exists() and time.monotonic() < end:  # both temps exist
            time.sleep(0.01)
        if not first:
            time.sleep(0.2)  # the first writer renames, then this one
    print(len(list(out.parent.glob("." + out.name + ".*.tmp"))))
""")


def test_two_writers_at_once_keep_their_temp_files(tmp_path):
    out = tmp_path / "data/out.json"
    out.parent.mkdir()
    out.write_text("previous")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(tmp_path / me), str(tmp_path / other),
                               content, order], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me, other, content, order in [("a", "b", "A", "first"), ("b", "a", "B", "second")]]
    results = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-2000:]
    assert out.read_text() == "B" * 1000  # whole, the last rename's
    assert not list(out.parent.glob(".*.tmp"))
    ledger.hostile("errors", "two processes writing one output at once",
                   "both succeed; the second's start leaves the first's temp file alone; no temp file left")

    # threads of one process: the same pid in both names, told apart by each temp file's lock
    go = threading.Event()
    errors: list[BaseException] = []

    def write(content: str) -> None:
        try:
            with hio.atomic_path(out) as tmp:
                tmp.write_text(content)
                go.wait(20)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(c,)) for c in ("x", "y")]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(list(out.parent.glob(".*.tmp"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    hio.write_text("z", out)  # a third writer starts (and cleans stale temps) while both are writing
    assert len(list(out.parent.glob(".*.tmp"))) == 2
    go.set()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert out.read_text() in ("x", "y") and not list(out.parent.glob(".*.tmp"))
    ledger.hostile("errors", "three threads writing one output at once", "all succeed; no temp file deleted under a writer")


def test_stale_temp_files_are_still_cleaned(tmp_path):
    out = tmp_path / "out.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / f".out.json.{pid}.abcd1234.tmp").write_text("half")  # a SIGKILLed writer's
    (tmp_path / ".out.json.k2j3h4.tmp").write_text("half")  # an older version's name (no pid)
    (tmp_path / f".other.json.{pid}.abcd1234.tmp").write_text("not ours")
    hio.write_json({"v": 1}, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.json.{pid}.abcd1234.tmp", "out.json"]
    ledger.hostile("errors", "temp files of a killed writer", "removed by the next write (pid gone, lock free)")


# --------------------------------------------------------------------------- secrets

KEY, QKEY, ENVKEY = "sk-userinfo-SECRET-7f3a", "qparam-SECRET-91bd", "sk-env-SECRET-c0de"


def _no_secret(where: str, text: str) -> None:
    for s in (KEY, QKEY, ENVKEY, "SECRET"):
        assert s not in text, f"{s} in {where}: {text[:400]}"


def _all_files(ws: Path) -> None:
    """Every file the stages wrote (params.yaml is the user's own: DVC copies its values into dvc.lock)."""
    for p in ws.rglob("*"):
        if p.is_file() and p != ws / "params.yaml":
            _no_secret(str(p.relative_to(ws)), p.read_bytes().decode("utf-8", "replace"))


def _eval_outputs(ws: Path) -> None:
    d = ws / "data/eval/outputs"
    d.mkdir(parents=True, exist_ok=True)
    base = dict(prompt_id=["a", "b"], category=["x", "x"], instruction=["i1", "i2"])
    pl.DataFrame(base | {"output": ["GOOD one", "weak"], "generator": ["it1"] * 2}).write_parquet(d / "it1.parquet")
    pl.DataFrame(base | {"output": ["meh", "GOOD ref"], "generator": ["base"] * 2}).write_parquet(d / "base.parquet")


def _judge_reply(body, n):
    user = body["messages"][-1]["content"] if body["messages"][-1]["role"] == "user" else body["messages"][-2]["content"]
    first = user.split("Answer 2")[0]
    return 200, {"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "1" if "GOOD" in first else "2"}}]}, {}


def test_credentials_in_urls_and_env_never_reach_output_stderr_or_logs(tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HB_JUDGE_KEY", ENVKEY)
    ws = tmp_path
    _eval_outputs(ws)
    (ws / "models/base").mkdir(parents=True)
    (ws / "prompts.jsonl").write_text('{"id": "a", "instruction": "i1"}\n{"id": "b", "instruction": "i2"}\n')
    ok = StubServer(_judge_reply)
    # a server that echoes the credentials it got, as some do in a 401 body
    echo = StubServer(lambda body, n: (401, {"error": "bad credentials"}, {}))
    host = ok.url.split("//")[1].split("/")[0]
    try:
        def params(url: str, *, engine_url: str | None = None) -> None:
            eng = f"  backend: openai\n  openai:\n    base_url: '{engine_url}'\n    max_retries: 0\n" if engine_url \
                else "  openai:\n    max_retries: 0\n"
            (ws / "params.yaml").write_text(f"engine:\n{eng}judge:\n  base_url: '{url}'\n  api_key_env: HB_JUDGE_KEY\n"
                                            "eval:\n  prompts: prompts.jsonl\n  max_prompts: 0\n")

        # 1. the judge against a live endpoint, key in the userinfo and in the query
        params(f"http://judge:{KEY}@{host}/v1?api_key={QKEY}&api-version=1")
        code, err = run_in_process(ws, "judge", "it1", monkeypatch=monkeypatch, capsys=capsys)
        assert code == 0, err
        m = json.loads((ws / "metrics/eval/it1.json").read_text())
        assert m["judge"] == f"base@http://***@{host}/v1?api_key=***&api-version=1"
        assert ok.paths[0] == f"/v1/chat/completions?api_key={QKEY}&api-version=1"  # sent, never shown
        assert ok.headers[0]["Authorization"].startswith("Basic ")  # the HTTP client sends the userinfo as basic auth
        ledger.hostile("secrets", "judge.base_url with user:KEY@ and ?api_key= (a good run)",
                       f"metrics judge = {m['judge'].replace(host, 'HOST')}; key in no file, log or stderr")

        # 2. an unreachable host: the error names the endpoint without its credentials
        params(f"http://judge:{KEY}@127.0.0.1:9/v1?key={QKEY}")
        (ws / "metrics/eval/it1.json").unlink()
        snap = snapshot(ws)
        line = fails_cleanly(ws, "secrets", "judge endpoint unreachable, key in userinfo and ?key=", "judge", "it1", (),
                             ("http://***@127.0.0.1:9/v1/chat/completions?key=***", "connection failed"), snap,
                             monkeypatch=monkeypatch, capsys=capsys)
        _no_secret("error line", line)

        # 3. a 401 whose body quotes the key read from the environment
        echo.respond = lambda body, n: (401, {"error": f"invalid key Bearer {ENVKEY} for token={QKEY}"}, {})
        params(f"{echo.url}?token={QKEY}")  # no userinfo: the env key goes out as a bearer token
        line = fails_cleanly(ws, "secrets", "endpoint error body quoting the env key and ?token=", "judge", "it1", (),
                             ("HTTP 401", "invalid key Bearer ***"), snapshot(ws), monkeypatch=monkeypatch,
                             capsys=capsys)
        _no_secret("error line", line)

        # 4. generate through engine.openai.base_url with a key: answers written, no key anywhere
        gen_url = f"http://gen:{KEY}@{host}/v1?token={QKEY}"
        params(f"{echo.url}", engine_url=gen_url)
        code, err = run_in_process(ws, "generate", "base", monkeypatch=monkeypatch, capsys=capsys)
        assert code == 0, err
        assert pl.read_parquet(ws / "data/eval/outputs/base.parquet").height == 2
        ledger.hostile("secrets", "engine.openai.base_url with user:KEY@ and ?token= (generate)",
                       "answers and AlpacaEval export written; key in no file, log or stderr")
        # 5. and unreachable
        params(f"{echo.url}", engine_url=f"http://gen:{KEY}@127.0.0.1:9/v1?token={QKEY}")
        line = fails_cleanly(ws, "secrets", "generate endpoint unreachable, key in userinfo and ?token=", "generate",
                             "base", (), ("http://***@127.0.0.1:9/v1/chat/completions?token=***",), snapshot(ws),
                             monkeypatch=monkeypatch, capsys=capsys)
        _no_secret("error line", line)
    finally:
        ok.close()
        echo.close()
    _all_files(ws)
    _no_secret("stderr", capsys.readouterr().err)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request: POST http://***@" in logged  # the HTTP client's own request log, redacted
    _no_secret("logs", logged)
    ledger.hostile("secrets", "httpx request log of a URL with a key", "logged as http://***@host/...?token=***")


def test_stored_endpoint_identity_hides_the_key_but_follows_the_host():
    import dataclasses

    from humpback.chunks import fingerprint, model_identity
    from humpback.engines.config import EngineConfig, OpenAIConfig

    def ident(url: str) -> dict:
        return model_identity(None, dataclasses.replace(EngineConfig(backend="openai"), openai=OpenAIConfig(
            base_url=url, model="m")))

    a, b = ident(f"http://u:{KEY}@h1/v1?key={QKEY}"), ident("http://u:other-key-123@h1/v1?key=zzz")
    c = ident(f"http://u:{KEY}@h2/v1?key={QKEY}")
    _no_secret("model identity", json.dumps(a))
    assert a == b and a != c  # another key: the same endpoint; another host: another one
    df = pl.DataFrame({"x": [1]})
    assert fingerprint(df, {"model": a}, chunk_size=1) != fingerprint(df, {"model": c}, chunk_size=1)
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert redact_text(f"see http://{KEY}@h/v1#access_token={QKEY}") == "see http://***@h/v1#access_token=***"
    ledger.hostile("secrets", "resume fingerprint of an endpoint with a key", "identity holds http://***@h1/v1?key=***; "
                   "the same for another key, different for another host")


# --------------------------------------------------------------------------- permissions

@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask 022", "umask 027"])
def test_written_files_and_directories_have_the_usual_modes(tmp_path, monkeypatch, capsys, mask):
    with umask(mask):
        ref = tmp_path / "ref.txt"
        with open(ref, "w") as f:
            f.write("x")
        (tmp_path / "refdir").mkdir()
        file_mode, dir_mode = stat.S_IMODE(ref.stat().st_mode), stat.S_IMODE((tmp_path / "refdir").stat().st_mode)
        assert file_mode == 0o666 & ~mask and dir_mode == 0o777 & ~mask
        out = tmp_path / "new/deeper/m.json"
        hio.write_json({"a": 1}, out)
        hio.write_parquet(pl.DataFrame({"a": [1]}), tmp_path / "new/t.parquet")
        hio.write_text("x", tmp_path / "new/t.txt")
        with hio.atomic_path(tmp_path / "new/raw.bin") as tmp:
            tmp.write_bytes(b"\0")
        # a whole stage: select writes a Parquet table and a JSON file into new directories
        _scores(tmp_path / "data/scores/it1.parquet", [3.0, 4.0, None])
        (tmp_path / "params.yaml").write_text("select:\n  threshold: 3\n")
        code, err = run_in_process(tmp_path, "select", "it1", monkeypatch=monkeypatch, capsys=capsys)
        assert code == 0, err
    files = [out, tmp_path / "new/t.parquet", tmp_path / "new/t.txt", tmp_path / "new/raw.bin",
             tmp_path / "data/curated/it1.parquet", tmp_path / "metrics/curation/it1.json"]
    dirs = [tmp_path / "new", tmp_path / "new/deeper", tmp_path / "data/curated", tmp_path / "metrics/curation"]
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == file_mode, (p, oct(p.stat().st_mode))
    for d in dirs:
        assert stat.S_IMODE(d.stat().st_mode) == dir_mode, (d, oct(d.stat().st_mode))
    ledger.hostile("permissions", f"outputs under umask {mask:03o}",
                   f"files {file_mode:o}, directories {dir_mode:o}, as open() and mkdir() give ({len(files)} files)")


def test_output_error_is_a_humpback_error_naming_the_path(tmp_path):
    err = OutputError(tmp_path / "x.json", "cannot write:\n disk full")
    assert "\n" not in str(err) and str(err).endswith("x.json: cannot write: disk full")
