"""The compute ledger: each stage's metrics/cost/<stage>.json (humpback.ledger, written by the stage
wrapper under DVC) with the real token counts of its engine, and the `cost` stage merging them into
metrics/cost.json (humpback.cost). dvc.yaml gives every stage its entry as an out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
from ruamel.yaml import YAML

from humpback import ledger
from humpback.config import load_section
from humpback.cost import merge
from humpback.engines.base import Sampling
from humpback.engines.config import EngineConfig
from humpback.engines.prompting import choice_plan
from humpback.errors import InputError
from humpback.prompts import chat, forward_messages
from humpback.rendering import encode
from humpback.stage import stage

ROOT = Path(__file__).resolve().parents[1]
CPU = EngineConfig(backend="transformers", device="cpu", dtype="float32", cpu_threads=1, batch_size=4)


def _entry(root: Path, name: str) -> dict:
    return json.loads((root / "metrics/cost" / f"{name}.json").read_text())


# -- the wrapper ---------------------------------------------------------------------------------


@stage
def _counting(fail: bool = False) -> None:
    ledger.add_tokens(7, 3)
    ledger.add_tokens(5, 0)
    ledger.add_examples(2)
    time.sleep(0.02)
    if fail:
        raise InputError("x.json", "broken")


@stage(cost=False)
def _merging() -> None:
    ledger.add_examples(1)


def test_a_stage_under_dvc_writes_its_entry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_STAGE", "score@it1")
    monkeypatch.delenv("RANK", raising=False)
    ledger.add_tokens(1000, 1000)  # left over from earlier work in this process: not this stage's
    _counting()
    e = _entry(tmp_path, "score@it1")
    assert (e["stage"], e["tokens_in"], e["tokens_out"], e["examples"]) == ("score@it1", 12, 3, 2)
    assert 0.02 <= e["seconds"] < 5 and e["backend"] is None
    assert e["device"]["type"] == "cpu" and e["device"]["count"] >= 1
    monkeypatch.setenv("DVC_STAGE", "sub/dvc.yaml:judge@m0")  # a dvc.yaml in a subdirectory
    _counting()
    assert _entry(tmp_path, "judge@m0")["tokens_in"] == 12


@pytest.mark.parametrize("case", ["outside dvc", "failed", "not the main process", "the merging stage"])
def test_no_entry(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_STAGE", "seed")
    monkeypatch.delenv("RANK", raising=False)
    if case == "outside dvc":
        monkeypatch.delenv("DVC_STAGE")
        _counting()
    elif case == "failed":
        with pytest.raises(SystemExit) as e:
            _counting(fail=True)
        assert e.value.code == 2
    elif case == "not the main process":  # a distributed run: rank 0 speaks for all
        monkeypatch.setenv("RANK", "1")
        _counting()
    else:
        _merging()
    assert not (tmp_path / "metrics/cost").exists()


# -- the engines' counts, on the tiny model --------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tiny_model_dir, tmp_path_factory):
    """The tiny model with its own random output layer, whose greedy replies vary (with tied embeddings
    a random model repeats the template's last token)."""
    import torch
    from transformers import AutoModelForCausalLM

    from humpback.engines.loader import load_engine

    untied = tmp_path_factory.mktemp("models") / "untied"
    shutil.copytree(tiny_model_dir, untied)
    model = AutoModelForCausalLM.from_pretrained(untied, dtype=torch.float32)
    model.config.tie_word_embeddings = False
    torch.manual_seed(0)
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight) * 0.5)
    model.save_pretrained(untied)
    with load_engine(untied, CPU) as e:
        yield e


def _prompt_tokens(tok, messages) -> int:
    """The tokenizer's count of a chat prompt (its template, ready for the reply)."""
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def _requests() -> list:
    return [chat(f"Question {i}: " + "tell me more " * (i * 3 % 7)) for i in range(6)]


def _spy_generate(monkeypatch) -> list[list[int]]:
    """Every row of new ids the model's generate returns (padding included), as it happens."""
    import transformers

    rows: list[list[int]] = []
    original = transformers.GenerationMixin.generate

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        rows.extend(out[:, kwargs["input_ids"].shape[1]:].tolist())
        return out

    monkeypatch.setattr(transformers.GenerationMixin, "generate", spy)
    return rows


def test_generation_counts_prompt_tokens_and_each_reply_up_to_its_end(engine, monkeypatch):
    """A reply that ends before the others of its batch is padded after its end-of-turn token: that
    padding was never generated. A token some replies produce at their third step is made the end of
    turn, so in one batch some replies end early and others run to max_new_tokens."""
    reqs, n = _requests(), 10
    greedy = Sampling(temperature=0.0, max_new_tokens=n, seed=0)
    rows = _spy_generate(monkeypatch)
    engine.generate(reqs, greedy)
    stop = max((r[2] for r in rows), key=[r[2] for r in rows].count)
    monkeypatch.setattr(engine, "eos_ids", [stop])
    rows.clear()
    before = ledger.snapshot()
    engine.generate(reqs, greedy)
    got = ledger.snapshot().minus(before)
    lengths = [r.index(stop) + 1 if stop in r else len(r) for r in rows]
    assert len(rows) == len(reqs) and min(lengths) < n == max(lengths), lengths  # early ends beside full ones
    prompts = sum(_prompt_tokens(engine.tok, r) for r in reqs)
    assert got == ledger.Counts(tokens_in=prompts, tokens_out=sum(lengths), examples=len(reqs))
    assert ledger.noted_device() == {"type": "cpu", "name": ledger.noted_device()["name"], "count": 1}


def test_scoring_by_logprobs_counts_the_prompts_and_nothing_out(engine):
    reqs = _requests()
    prefix, _ = choice_plan(engine.tok, "Score: ", ["1", "2", "3"])
    before = ledger.snapshot()
    engine.choice_logprobs(reqs, ["1", "2", "3"], assistant_prefix="Score: ")
    got = ledger.snapshot().minus(before)
    assert got == ledger.Counts(sum(len(encode(engine.tok, r, prefix)) for r in reqs), 0, len(reqs))


# -- stages on the tiny model --------------------------------------------------------------------


@pytest.fixture
def eval_project(tmp_path, monkeypatch, tiny_model_dir, tiny_lora_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RANK", raising=False)
    (tmp_path / "data/eval").mkdir(parents=True)
    shutil.copy(ROOT / "data/eval/prompts.jsonl", tmp_path / "data/eval/prompts.jsonl")
    shutil.copytree(tiny_model_dir, tmp_path / "models/base")
    shutil.copytree(tiny_lora_dir, tmp_path / "models/it1")
    (tmp_path / "params.yaml").write_text(
        "engine: {backend: transformers, device: cpu, dtype: float32, cpu_threads: 1}\n"
        "eval:\n  max_prompts: 6\n  chunk_size: 4\n  sampling: {max_new_tokens: 12}\n"
    )
    return tmp_path


def test_generate_stage_entry_has_the_real_counts(eval_project, monkeypatch):
    from humpback.models import load_tokenizer, resolve

    rows = _spy_generate(monkeypatch)  # the ids the model really generated, to count independently
    monkeypatch.setenv("DVC_STAGE", "generate@it1")
    dvc_stage.run("generate", "it1")
    e = _entry(eval_project, "generate@it1")
    tok = load_tokenizer(resolve("models/it1"))
    system = load_section("prompts", "params.yaml").inference_system
    asked = pl.read_parquet("data/eval/outputs/it1.parquet")["instruction"].to_list()
    eos = {tok.eos_token_id}
    assert len(rows) == len(asked) == 6 and not any(eos & set(r) for r in rows)  # every reply ran to its limit
    assert e["tokens_in"] == sum(_prompt_tokens(tok, forward_messages(system, i)) for i in asked)
    assert e["tokens_out"] == sum(map(len, rows)) == 6 * 12
    assert e["examples"] == 6 and e["backend"] == "transformers" and e["seconds"] > 0
    assert e["device"]["type"] == "cpu" and e["device"]["count"] == 1  # cpu_threads: 1


def test_heldout_stage_entry_counts_every_token_it_read(tmp_path, monkeypatch, tiny_lora_dir):
    from humpback.io import write_parquet
    from humpback.models import load_tokenizer, resolve
    from humpback.training.data import TokenizeStats, tokenize_example

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_STAGE", "heldout@lora")
    monkeypatch.delenv("RANK", raising=False)
    (tmp_path / "params.yaml").write_text("engine: {dtype: float32, device: cpu, cpu_threads: 1}\n")
    pairs = pl.DataFrame({"instruction": ["Name a colour.", "Count to three, slowly please."],
                          "output": ["Blue.", "One, two, three."]})
    write_parquet(pairs, tmp_path / "data/prepared/heldout.parquet")
    (tmp_path / "models").mkdir()
    (tmp_path / "models/lora").symlink_to(tiny_lora_dir)
    dvc_stage.run("heldout", "lora")
    e = _entry(tmp_path, "heldout@lora")
    tok = load_tokenizer(resolve(tiny_lora_dir))
    system, max_len = load_section("prompts", "params.yaml").inference_system, load_section("train", "params.yaml").max_seq_len
    want = sum(len(tokenize_example(tok, forward_messages(system, i, o), max_len, TokenizeStats()).input_ids)
               for i, o in zip(pairs["instruction"], pairs["output"], strict=True))
    assert (e["tokens_in"], e["tokens_out"], e["examples"], e["backend"]) == (want, 0, 2, "transformers")


def test_train_stage_entry_counts_the_training_tokens_of_the_epochs_run(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_STAGE", "train_m0")
    monkeypatch.delenv("RANK", raising=False)
    shutil.copytree(tiny_model_dir, tmp_path / "models/base")
    (tmp_path / "data/prepared").mkdir(parents=True)
    pl.DataFrame({"instruction": [f"Tell me fact number {i} about rivers." for i in range(12)],
                  "output": [f"River fact {i}: water flows downhill." for i in range(12)]}
                 ).write_parquet(tmp_path / "data/prepared/seed.parquet")
    (tmp_path / "params.yaml").write_text(  # one step of 4 of the 12 pairs: a third of an epoch
        "train:\n  max_steps: 1\n  batch_size: 4\n  small_data_batch_size: 4\n  per_device_batch_size: 4\n"
        "  max_seq_len: 64\n  bf16: false\n  cpu_threads: 1\n")
    dvc_stage.run("train_m0")
    m = json.loads((tmp_path / "metrics/train/m0.json").read_text())
    e = _entry(tmp_path, "train_m0")
    assert m["steps"] == 1 and m["epochs"] == pytest.approx(1 / 3, abs=1e-3) and m["tokens"] > 0
    assert (e["tokens_in"], e["tokens_out"], e["examples"]) == (round(m["tokens"] * m["epochs"]), 0, 4)
    assert e["backend"] == "transformers" and e["device"]["type"] == "cpu" and e["seconds"] > 0


# -- the merge -----------------------------------------------------------------------------------


def _write(root: Path, name: str, **over) -> dict:
    e = {"stage": name, "seconds": 1.5, "tokens_in": 10, "tokens_out": 2, "examples": 1, "backend": None,
         "device": {"type": "cpu", "name": "EPYC", "count": 2}, **over}
    (root / "metrics/cost").mkdir(parents=True, exist_ok=True)
    (root / "metrics/cost" / f"{name}.json").write_text(json.dumps(e))
    return e


def test_merge_sums_per_device_and_in_total(tmp_path, monkeypatch, capsys):
    gpu = {"type": "cuda", "name": "NVIDIA H100", "count": 1}
    _write(tmp_path, "corpus", seconds=2.25, tokens_in=0, tokens_out=0, examples=200)
    _write(tmp_path, "augment", seconds=10.5, tokens_in=5000, tokens_out=700, examples=124, backend="vllm", device=gpu)
    _write(tmp_path, "score@it1", seconds=4.0, tokens_in=9000, tokens_out=0, examples=124, backend="vllm", device=gpu)
    r = dvc_stage.run_in_process(tmp_path, "cost", monkeypatch=monkeypatch, capsys=capsys)
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "metrics/cost.json").read_text())
    assert got["totals"] == {"stages": 3, "seconds": 16.75, "tokens_in": 14000, "tokens_out": 700, "examples": 448}
    assert got["by_device"] == {
        "cpu": {"stages": 1, "seconds": 2.25, "tokens_in": 0, "tokens_out": 0, "examples": 200},
        "cuda": {"stages": 2, "seconds": 14.5, "tokens_in": 14000, "tokens_out": 700, "examples": 248},
    }
    assert list(got["stages"]) == ["augment", "corpus", "score@it1"]
    assert got["stages"]["augment"] == {"seconds": 10.5, "tokens_in": 5000, "tokens_out": 700, "examples": 124,
                                        "backend": "vllm", "device": gpu}
    assert not (tmp_path / "metrics/cost/cost.json").exists()  # the merge writes no entry into its own dep


@pytest.mark.parametrize(("over", "says"), [
    ({"tokens_in": -1}, "'tokens_in' must be an integer >= 0"),
    ({"tokens_out": 2.5}, "'tokens_out' must be an integer >= 0"),
    ({"examples": True}, "'examples' must be an integer >= 0"),
    ({"seconds": "slow"}, "'seconds' must be a number >= 0"),
    ({"stage": "judge@m0"}, "'stage' is 'judge@m0', but the file is named for 'seed'"),
    ({"device": "cpu"}, "'device' must be an object with a 'type'"),
    ({"device": {"type": "cpu", "name": None, "count": -2}}, "'device.count' must be an integer >= 0"),
    ({"backend": 3}, "'backend' must be a string or null"),
    ({"tokens_in": None, "drop": "tokens_out"}, "missing 'tokens_out'"),
])
def test_a_malformed_entry_is_an_error_naming_its_file(over, says, tmp_path, monkeypatch, capsys):
    _write(tmp_path, "corpus")
    drop = over.pop("drop", None)
    e = _write(tmp_path, "seed", **over)
    if drop:
        e.pop(drop)
        (tmp_path / "metrics/cost/seed.json").write_text(json.dumps(e))
    r = dvc_stage.run_in_process(tmp_path, "cost", monkeypatch=monkeypatch, capsys=capsys)
    assert r.returncode == 2
    assert r.stderr.startswith(f"error: metrics/cost/seed.json: {says}"), r.stderr
    assert not (tmp_path / "metrics/cost.json").exists()


def test_broken_json_and_no_entries_are_errors_naming_the_path(tmp_path, monkeypatch, capsys):
    r = dvc_stage.run_in_process(tmp_path, "cost", monkeypatch=monkeypatch, capsys=capsys)
    assert r.returncode == 2 and r.stderr.startswith("error: metrics/cost: no stage cost entries"), r.stderr
    (tmp_path / "metrics/cost").mkdir(parents=True)
    (tmp_path / "metrics/cost/seed.json").write_text('{"stage": "seed", ')
    r = dvc_stage.run_in_process(tmp_path, "cost", monkeypatch=monkeypatch, capsys=capsys)
    assert r.returncode == 2 and r.stderr.startswith("error: metrics/cost/seed.json: malformed JSON"), r.stderr


def test_merge_of_nothing_is_zero():
    assert merge([]) == {"totals": {"stages": 0, "seconds": 0, "tokens_in": 0, "tokens_out": 0, "examples": 0},
                         "by_device": {}, "stages": {}}


# -- dvc.yaml ------------------------------------------------------------------------------------


def cost_problems(dvc_yaml: Path) -> list[str]:
    """Every stage but `cost` must have the out metrics/cost/<its DVC name>.json, uncached (cache: false
    keeps it out of the cache yet DVC's run cache restores it with the stage); `cost` must read the
    entries' directory and write metrics/cost.json as an uncached out (not a DVC metrics file, which
    would add every stage's fields to `dvc metrics show`)."""
    stages = YAML(typ="safe").load(dvc_yaml.read_text())["stages"]
    problems = []
    for name, body in stages.items():
        if name == "cost":
            continue
        if "foreach" in body:
            over = body["foreach"]
            name, body = f"{name}@${{{'key' if over == '${iterations}' else 'item'}}}", body["do"]
        want = f"metrics/cost/{name}.json"
        outs = dict(next(iter(o.items())) if isinstance(o, dict) else (o, None) for o in body.get("outs", []))
        if want not in outs:
            problems.append(f"{name}: no out {want}")
        elif outs[want] != {"cache": False}:
            problems.append(f"{name}: {want} must be `cache: false`")
    cost = stages.get("cost", {})
    if "metrics/cost" not in cost.get("deps", []):
        problems.append("cost: does not depend on metrics/cost")
    if {"metrics/cost.json": {"cache": False}} not in cost.get("outs", []) or cost.get("metrics"):
        problems.append("cost: metrics/cost.json is not its uncached out (and no DVC metrics file)")
    return problems


def test_every_compute_stage_has_its_cost_entry_out():
    assert cost_problems(ROOT / "dvc.yaml") == []


def test_a_new_stage_without_a_cost_entry_is_caught(tmp_path):
    text = (ROOT / "dvc.yaml").read_text()
    planted = text.replace("\nstages:\n", "\nstages:\n  publish:\n    cmd: python stages/publish.py\n"
                           "    outs:\n      - data/publish\n", 1)
    planted = planted.replace("        - metrics/cost/judge@${item}.json:\n            cache: false\n", "", 1)
    planted = planted.replace("      - metrics/cost/corpus.json:\n          cache: false\n",
                              "      - metrics/cost/corpus.json\n", 1)
    (tmp_path / "dvc.yaml").write_text(planted)
    assert cost_problems(tmp_path / "dvc.yaml") == [
        "publish: no out metrics/cost/publish.json", "corpus: metrics/cost/corpus.json must be `cache: false`",
        "judge@${item}: no out metrics/cost/judge@${item}.json"]


# -- under DVC itself ----------------------------------------------------------------------------

HELLO = '''
import sys
import time
from pathlib import Path
from humpback import ledger
from humpback.stage import stage


@stage
def main():
    text = Path(sys.argv[1]).read_text()
    ledger.add_tokens(len(text.split()), 0)
    ledger.add_examples(1)
    time.sleep(0.01)
    Path(sys.argv[2]).parent.mkdir(exist_ok=True)
    Path(sys.argv[2]).write_text(text.upper())


main()
'''

PIPELINE = '''
stages:
  hello:
    foreach: [a, b]
    do:
      cmd: python hello.py in/${item}.txt out/${item}.txt
      deps:
        - hello.py
        - in/${item}.txt
      outs:
        - out/${item}.txt
        - metrics/cost/hello@${item}.json:
            cache: false
  cost:
    cmd: python stages/cost.py --entries metrics/cost --out metrics/cost.json
    deps:
      - stages/cost.py
      - metrics/cost
    metrics:
      - metrics/cost.json:
          cache: false
'''


@pytest.mark.slow
def test_dvc_repro_writes_the_entries_and_its_run_cache_restores_them(tmp_path):
    """DVC names the stage (DVC_STAGE); a stage restored from the run cache gets back the entry of the
    run that made it, not a new one."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.txt").write_text("one two three")
    (tmp_path / "in/b.txt").write_text("four five")
    (tmp_path / "hello.py").write_text(HELLO)
    (tmp_path / "stages").mkdir()
    shutil.copy(ROOT / "stages/cost.py", tmp_path / "stages/cost.py")
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("DVC_STAGE", None)
    dvc = [sys.executable, "-m", "dvc"]

    def run(*args: str) -> str:
        r = subprocess.run([*dvc, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return r.stdout

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    run("init", "-q")
    run("repro")
    first = json.loads((tmp_path / "metrics/cost.json").read_text())
    assert list(first["stages"]) == ["hello@a", "hello@b"]
    assert [first["stages"][s]["tokens_in"] for s in ("hello@a", "hello@b")] == [3, 2]
    assert first["totals"]["examples"] == 2 and first["totals"]["seconds"] > 0
    entry = (tmp_path / "metrics/cost/hello@a.json").read_bytes()
    for f in ("out/a.txt", "metrics/cost/hello@a.json", "metrics/cost.json"):
        (tmp_path / f).unlink()
    out = run("repro")
    assert "hello@a" in out and "skipping run" in out  # restored from the run cache, not run again
    assert (tmp_path / "metrics/cost/hello@a.json").read_bytes() == entry
    assert json.loads((tmp_path / "metrics/cost.json").read_text()) == first

