"""Faults through the real stage scripts (`python stages/<x>.py` in a scratch project with a params.yaml).

A fault that makes a run meaningless (bad record, no seed pairs, empty corpus after filtering, a
threshold that keeps nothing, an unknown param) must end the stage with exit status 2 and one line
`error: ...` on stderr naming the file, the record or the key: no traceback, no output left behind,
and the outputs of an earlier good run untouched.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
import reliability_plugin as ledger

pytest_plugins = ["reliability_plugin"]

ROOT = Path(__file__).resolve().parents[1]
PAIR = {"instruction": "How do I boil an egg?", "output": "Put it in boiling water for nine minutes, then cool it."}
DOC = "# Eggs\n\n## Boiling eggs\n\n" + "Put the eggs in boiling water for nine minutes, then cool them. " * 8


def run_stage(cwd: Path, stage: str, key: str | None = None, *extra: str) -> subprocess.CompletedProcess:
    """The dvc.yaml command of `stage` (`key` names a foreach item) run as DVC runs it."""
    return dvc_stage.run_subprocess(stage, key, *extra, cwd=cwd, timeout=300)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (params and inputs aside) with a digest of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.parent != root}


def assert_clean_failure(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 2 and exactly one `error:` line, the last on stderr, holding every needle."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def fails_cleanly(tmp_path: Path, kind: str, case: str, stage: str, args: tuple[str, ...], needles: tuple[str, ...],
                  before: dict[str, str], runner=None) -> None:
    proc = (runner or run_stage)(tmp_path, stage, *args)
    line = assert_clean_failure(proc, *needles)
    after = snapshot(tmp_path)
    lost = ledger.outputs(f"{stage}: {case}", before, after)
    assert not lost and after == before, f"outputs changed ({lost}) or were left behind by a failed stage"
    assert not [p for p in after if p.endswith(".tmp")]
    ledger.fault(kind, case, f"exit 2, {line}")


def params(tmp_path: Path, text: str, name: str = "params.yaml") -> None:
    (tmp_path / name).write_text(text)


# --------------------------------------------------------------------------- seed

def test_seed_stage_faults_keep_the_previous_outputs(tmp_path):
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(PAIR | {"output": f"{PAIR['output']} {i}"}) + "\n"
                                                  for i in range(5)))
    params(tmp_path, "seed:\n  sources:\n    - {path: pairs.jsonl}\n  heldout: 2\n")
    assert run_stage(tmp_path, "seed").returncode == 0
    good = snapshot(tmp_path)
    assert set(good) == {"data/prepared/seed.parquet", "data/prepared/heldout.parquet",
                         "data/prepared/seed_rejected.parquet", "metrics/seed.json"}

    k = "stage seed"
    (tmp_path / "bad.jsonl").write_text(json.dumps(PAIR) + "\n" + '{"instruction": "x", "output": 3}\n')
    params(tmp_path, "seed:\n  sources:\n    - {path: bad.jsonl}\n")
    fails_cleanly(tmp_path, k, "record with a number as output", "seed", (), ("bad.jsonl", "record line 2", "'output'"), good)

    (tmp_path / "empty.jsonl").write_text(json.dumps({"instruction": "x", "output": ""}) + "\n")
    params(tmp_path, "seed:\n  sources:\n    - {path: empty.jsonl, name: mine}\n")
    fails_cleanly(tmp_path, k, "no seed pairs after filtering", "seed", (), ("no seed pairs", "mine", "empty_output 1"), good)

    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress((json.dumps(PAIR) + "\n").encode() * 500)[:-30])
    params(tmp_path, "seed:\n  sources:\n    - {path: cut.jsonl.gz}\n")
    fails_cleanly(tmp_path, k, "truncated gzip", "seed", (), ("cut.jsonl.gz", "cannot read"), good)

    params(tmp_path, "seed:\n  sources:\n    - {path: pairs.jsonl}\n  max_exampels: 3\n")
    fails_cleanly(tmp_path, k, "misspelt param key", "seed", (), ("params.yaml", "max_exampels"), good)

    params(tmp_path, "seed:\n  sources: [\n")
    fails_cleanly(tmp_path, k, "params.yaml not valid YAML", "seed", (), ("params.yaml", "not valid YAML", "line"), good)

    params(tmp_path, "seed:\n  sources:\n    - {path: pairs.jsonl}\n")
    fails_cleanly(tmp_path, k, "missing params file", "seed", (None, "--params", "nope.yaml"), ("nope.yaml", "not found"), good)


# --------------------------------------------------------------------------- corpus

def test_corpus_stage_faults_keep_the_previous_outputs(tmp_path):
    with open(tmp_path / "dump.jsonl", "w") as f:
        for i in range(20):
            f.write(json.dumps({"id": f"d{i}", "text": DOC.replace("nine", f"{i} nine").replace("Boiling", f"Boiling {i}")}) + "\n")
    params(tmp_path, "corpus:\n  sources:\n    - {kind: table, path: dump.jsonl}\n  min_chars: 100\n  near_dedup: false\n")
    done = run_stage(tmp_path, "corpus")
    assert done.returncode == 0, done.stderr
    good = snapshot(tmp_path)
    assert set(good) == {"data/prepared/segments.parquet", "data/prepared/rejected.parquet", "metrics/corpus.json"}

    k = "stage corpus"
    params(tmp_path, "corpus:\n  sources:\n    - {kind: table, path: dump.jsonl}\n  min_chars: 100000\n  max_chars: 200000\n")
    fails_cleanly(tmp_path, k, "empty corpus after filtering", "corpus", (), ("no segment survived", "too_short"), good)

    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress((tmp_path / "dump.jsonl").read_bytes())[:-40])
    params(tmp_path, "corpus:\n  sources:\n    - {kind: table, path: cut.jsonl.gz}\n  min_chars: 100\n")
    fails_cleanly(tmp_path, k, "truncated gzip dump", "corpus", (), ("cut.jsonl.gz", "record line", "cannot read"), good)

    (tmp_path / "crawl.warc.gz").write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    params(tmp_path, "corpus:\n  sources:\n    - {kind: warc, path: crawl.warc.gz}\n")
    fails_cleanly(tmp_path, k, "WARC of binary junk", "corpus", (), ("crawl.warc.gz", "cannot read WARC"), good)

    params(tmp_path, "corpus:\n  sources:\n    - {kind: html}\n")
    fails_cleanly(tmp_path, k, "html source without a path", "corpus", (), ("params.yaml", "needs a `path`"), good)

    params(tmp_path, "corpus:\n  min_chars: many\n")
    fails_cleanly(tmp_path, k, "wrong param type", "corpus", (), ("params.yaml", "corpus.min_chars", "expected an integer"), good)


# --------------------------------------------------------------------------- select

def _scores(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"segment_id": ["a", "b", "c"], "instruction": ["i1", "i2", "i3"], "output": ["o1", "o2", "o3"],
                  "score": [3.0, 4.0, None], "mode": ["generate"] * 3}).write_parquet(path)


def test_select_stage_faults_keep_the_previous_outputs(tmp_path):
    _scores(tmp_path / "data/scores/it1.parquet")
    params(tmp_path, "select:\n  threshold: 3\n")
    assert run_stage(tmp_path, "select", "it1").returncode == 0
    good = snapshot(tmp_path)
    assert "data/curated/it1.parquet" in good and "metrics/curation/it1.json" in good

    k = "stage select"
    params(tmp_path, "select:\n  threshold: 5\n")
    fails_cleanly(tmp_path, k, "threshold that keeps nothing", "select", ("it1",),
                  ("it1.parquet", "threshold 5 keeps no pair out of 3", "select.threshold"), good)
    params(tmp_path, "select:\n  treshold: 3\n")
    fails_cleanly(tmp_path, k, "unknown param key", "select", ("it1",),
                  ("params.yaml", "select: unknown key(s) treshold"), good)
    params(tmp_path, "select:\n  top_share: 2\n")
    fails_cleanly(tmp_path, k, "share above 1", "select", ("it1",), ("select.top_share",), good)
    params(tmp_path, "select:\n  threshold: 3\n")
    fails_cleanly(tmp_path, k, "an iteration params.yaml does not have", "select", ("it9",),
                  ("params.yaml", "iterations.it9: no such iteration"), good)
    params(tmp_path, "select:\n  threshold: 3\niterations:\n  it1: {prev: m0}\n  it2: {prev: it1}\n  it9: {prev: it1}\n")
    fails_cleanly(tmp_path, k, "scores of an iteration not scored yet", "select", ("it9",),
                  ("it9.parquet", "file not found"), good)
    pl.DataFrame({"segment_id": ["a"], "instruction": ["i"], "output": ["o"]}).write_parquet(tmp_path / "data/scores/it2.parquet")
    good = snapshot(tmp_path)
    fails_cleanly(tmp_path, k, "scores without a score column", "select", ("it2",),
                  ("it2.parquet", "missing column(s) score"), good)


# --------------------------------------------------------------------------- generate and judge (inputs read before any model)

def _outputs(path: Path, instructions: list[str], answers: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(instructions)
    pl.DataFrame({"prompt_id": [f"p{i}" for i in range(n)], "category": ["x"] * n, "instruction": instructions,
                  "output": answers, "generator": ["m"] * n}).write_parquet(path)


def test_eval_stages_bad_prompts_and_references(tmp_path, monkeypatch, capsys):
    k = "stage generate/judge"

    def inproc(cwd, name, *args):
        return dvc_stage.run_in_process(cwd, name, *args, monkeypatch=monkeypatch, capsys=capsys)

    (tmp_path / "prompts.jsonl").write_text('{"id": "a", "instruction": "Hi"}\n{"id": "a", "instruction": "Ho"}\n')
    params(tmp_path, "eval:\n  prompts: prompts.jsonl\n")
    fails_cleanly(tmp_path, k, "eval prompts with a duplicate id", "generate", ("base",),
                  ("prompts.jsonl", "record line 2", "duplicate id 'a'"), snapshot(tmp_path), runner=inproc)
    (tmp_path / "prompts.jsonl").write_bytes(b'{"id": "a", "instruction": "caf\xe9"}\n')
    fails_cleanly(tmp_path, k, "eval prompts in latin-1", "generate", ("base",),
                  ("prompts.jsonl", "not valid UTF-8"), snapshot(tmp_path), runner=inproc)

    _outputs(tmp_path / "data/eval/outputs/it1.parquet", ["a", "b"], ["x", "y"])
    (tmp_path / "ref.json").write_text(json.dumps([{"instruction": "a", "output": "x"}, {"instruction": "b", "output": 7}]))
    params(tmp_path, "judge:\n  reference: ref.json\n")
    fails_cleanly(tmp_path, k, "reference with a number as output", "judge", ("it1",),
                  ("ref.json", "record 1", "'output' must be a string"), snapshot(tmp_path), runner=inproc)
    (tmp_path / "ref.json").write_text(json.dumps([{"instruction": "zzz", "output": "x"}]))
    fails_cleanly(tmp_path, k, "reference matching no instruction", "judge", ("it1",),
                  ("ref.json", "no reference answer matches"), snapshot(tmp_path), runner=inproc)
    params(tmp_path, "judge:\n  reference: ref.json\n  mode: sometimes\n")
    fails_cleanly(tmp_path, k, "judge mode not in the choices", "judge", ("it1",),
                  ("params.yaml", "judge.mode", "'sometimes'"), snapshot(tmp_path), runner=inproc)


# --------------------------------------------------------------------------- augment and score on the tiny model

def test_model_stages_bad_input(tmp_path, tiny_model_dir, monkeypatch, capsys):
    k = "stage augment/score"

    def inproc(cwd, name, *args):
        return dvc_stage.run_in_process(cwd, name, *args, monkeypatch=monkeypatch, capsys=capsys)

    model = str(tiny_model_dir)
    params(tmp_path, "engine:\n  backend: transformers\n  device: cpu\n  dtype: float32\n  cpu_threads: 1\n")
    seg = tmp_path / "data/prepared/segments.parquet"
    seg.parent.mkdir(parents=True)
    pl.DataFrame({"segment_id": ["a", "a"], "text": ["one", "two"]}).write_parquet(seg)
    fails_cleanly(tmp_path, k, "segments with a duplicate id", "augment", (None, "--model", model),
                  ("segments.parquet", "record a", "duplicate segment_id"), snapshot(tmp_path), runner=inproc)
    cand = tmp_path / "data/augmented/candidates.parquet"
    cand.parent.mkdir(parents=True)
    pl.DataFrame({"segment_id": ["a"], "instruction": ["i"]}).write_parquet(cand)
    fails_cleanly(tmp_path, k, "candidates without an output column", "score", ("it1", "--model", model),
                  ("candidates.parquet", "missing column(s) output"), snapshot(tmp_path), runner=inproc)
    fails_cleanly(tmp_path, k, "scoring model missing", "score", ("it1", "--model", "models/m0"),
                  ("models/m0", "scoring model not found"), snapshot(tmp_path), runner=inproc)


@pytest.mark.parametrize("stage,args", [("seed", ()), ("corpus", ()), ("select", ("it1",)),
                                        ("score", ("it1", "--model", "m")), ("augment", ())])
def test_unknown_section_stops_every_stage(tmp_path, stage, args):
    params(tmp_path, "seed: {}\nbogus_section: {a: 1}\n")
    (tmp_path / "m").mkdir()
    (tmp_path / "models/backward").mkdir(parents=True)
    proc = run_stage(tmp_path, stage, *args)
    line = assert_clean_failure(proc, "params.yaml", "unknown section(s) bogus_section")
    assert snapshot(tmp_path) == {}
    ledger.fault("stage params", f"unknown section ({stage})", f"exit 2, {line}")


def test_augment_that_rejects_everything_keeps_the_previous_candidates(tmp_path):
    """The backward model wrote only degenerate instructions: the error names the reasons, the rejects
    are written for diagnosis, and the candidates of the previous run are not replaced by an empty file."""
    from humpback.augment import AugmentConfig, run_augment
    from humpback.engines.base import Engine
    from humpback.engines.config import EngineConfig
    from humpback.errors import EmptyResultError
    from humpback.prompts import PromptsConfig

    class Echo(Engine):
        def generate(self, requests, sampling, *, desc="generate"):
            return ["Write an instruction for this text."] * len(requests)

        def choice_logprobs(self, requests, choices, *, assistant_prefix="", desc="score"):
            raise NotImplementedError

    seg = tmp_path / "segments.parquet"
    pl.DataFrame({"segment_id": ["a", "b"], "text": [DOC, DOC + " More."]}).write_parquet(seg)
    cand = tmp_path / "candidates.parquet"
    pl.DataFrame({"segment_id": ["old"], "instruction": ["i"], "output": ["o"]}).write_parquet(cand)
    before = cand.read_bytes()
    backward = tmp_path / "backward"  # the fake engine's model: only its identity is read
    backward.mkdir()
    with pytest.raises(EmptyResultError, match="meta_instruction 2") as info:
        run_augment(seg, Echo(), AugmentConfig(), PromptsConfig(), candidates_path=cand,
                    rejected_path=tmp_path / "rejected.parquet", metrics_path=tmp_path / "augment.json",
                    engine_cfg=EngineConfig(), model_dir=backward)
    assert not ledger.outputs("augment: previous candidates after an all-rejected run",
                              {"candidates": before}, {"candidates": cand.read_bytes()})
    assert pl.read_parquet(tmp_path / "rejected.parquet").height == 2
    ledger.fault("stage augment/score", "every generated instruction degenerate",
                 f"{type(info.value).__name__}: {str(info.value).split(':', 1)[1].strip()[:120]}; previous candidates kept")
