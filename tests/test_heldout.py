"""Held-out NLL: the number a hand computation gives, on the tokens training labels, batch-invariant,
lower for a model trained on the answers; the heldout stage (a LoRA model, none held out) and the
judge stage merging its keys."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
import torch
from test_eval_fakes import LongerJudge

from humpback import rendering
from humpback.evaluation import loading
from humpback.evaluation.heldout import backward, forward, heldout_nll
from humpback.io import write_parquet
from humpback.models import load_model, load_tokenizer, resolve
from humpback.prompts import PromptsConfig, forward_messages
from humpback.training.data import tokenize_example

SYSTEM = "Answer in the style of an AI Assistant."
PAIRS = pl.DataFrame({
    "instruction": ["Name a colour.", "What is two plus two?", "Describe the sea in one sentence.", "Say hi."],
    "output": ["Blue.", "Two plus two is four.", "The sea is a vast body of salt water that covers most of the earth.",
               "Hi there! How can I help you today?"],
    "source": ["t"] * 4, "source_id": ["a", "b", "c", "d"],
})


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    ref = resolve(tiny_model_dir)
    return load_model(ref, dtype="float32"), load_tokenizer(ref)


def hand_nll(model, tok, pairs: pl.DataFrame, system: str, conversation=None) -> tuple[float, int]:
    """One pair at a time, no padding: the reply's tokens up to and including the first EOS after the
    prompt, each scored by log_softmax of the logits one position earlier."""
    total, count = 0.0, 0
    for ins, out in zip(pairs["instruction"], pairs["output"], strict=True):
        msgs = conversation(ins, out) if conversation else forward_messages(system, ins, out)
        prompt = rendering.token_ids(tok, msgs[:-1], generation_prompt=True)
        full = rendering.token_ids(tok, msgs, generation_prompt=False)
        assert full[: len(prompt)] == prompt
        reply = full[len(prompt):]
        reply = reply[: reply.index(tok.eos_token_id) + 1]
        ids = prompt + reply
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
        total -= sum(float(logp[t - 1, ids[t]]) for t in range(len(prompt), len(ids)))
        count += len(reply)
    return total / count, count


def test_equals_the_hand_computed_mean_over_answer_tokens(tiny):
    model, tok = tiny
    got = heldout_nll(model, tok, PAIRS, forward(SYSTEM), max_seq_len=512, batch_size=4)
    want, tokens = hand_nll(model, tok, PAIRS, SYSTEM)
    assert got["heldout_n"] == 4 and got["heldout_tokens"] == tokens and got["heldout_dropped"] == 0
    assert got["heldout_nll"] == pytest.approx(want, rel=1e-5)
    # the system prompt is part of the prompt: another one scores differently
    assert heldout_nll(model, tok, PAIRS, forward(""), max_seq_len=512)["heldout_nll"] != pytest.approx(want, rel=1e-6)


def test_backward_scores_the_instructions_given_their_answers(tiny):
    model, tok = tiny
    prompts = PromptsConfig()
    conversation = lambda ins, out: [  # noqa: E731  the backward template, written out here
        {"role": "user", "content": prompts.backward_template.format(output=out)},
        {"role": "assistant", "content": ins}]
    got = heldout_nll(model, tok, PAIRS, backward(prompts), max_seq_len=512, batch_size=4)
    want, tokens = hand_nll(model, tok, PAIRS, "", conversation)
    assert got["heldout_n"] == 4 and got["heldout_tokens"] == tokens
    assert got["heldout_nll"] == pytest.approx(want, rel=1e-5)
    # the instructions are what is scored, not the answers: fewer tokens than the forward reading
    assert tokens < heldout_nll(model, tok, PAIRS, forward(""), max_seq_len=512)["heldout_tokens"]


def test_scores_what_training_labels_including_the_end_token(tiny):
    model, tok = tiny
    got = heldout_nll(model, tok, PAIRS, forward(SYSTEM), max_seq_len=512)
    labelled = [tokenize_example(tok, forward_messages(SYSTEM, i, o), 512) for i, o in
                zip(PAIRS["instruction"], PAIRS["output"], strict=True)]
    replies = [[y for y in t.labels if y != -100] for t in labelled]
    assert got["heldout_tokens"] == sum(map(len, replies)) and all(r[-1] == tok.eos_token_id for r in replies)
    # a max_seq_len that cuts replies scores fewer tokens, as training would
    assert heldout_nll(model, tok, PAIRS, forward(SYSTEM), max_seq_len=40)["heldout_tokens"] < got["heldout_tokens"]


def test_batching_and_padding_do_not_change_it(tiny):
    model, tok = tiny
    one = heldout_nll(model, tok, PAIRS, forward(SYSTEM), max_seq_len=512, batch_size=1)
    four = heldout_nll(model, tok, PAIRS, forward(SYSTEM), max_seq_len=512, batch_size=4)
    assert four["heldout_nll"] == pytest.approx(one["heldout_nll"], rel=1e-5)
    assert four["heldout_tokens"] == one["heldout_tokens"]


def test_a_model_trained_on_the_answers_gets_a_lower_nll(tiny):
    model, tok = tiny
    before = heldout_nll(model, tok, PAIRS, forward(SYSTEM), max_seq_len=512)["heldout_nll"]
    trained = copy.deepcopy(model).train()
    items = [tokenize_example(tok, forward_messages(SYSTEM, i, o), 512) for i, o in
             zip(PAIRS["instruction"], PAIRS["output"], strict=True)]
    opt = torch.optim.Adam(trained.parameters(), lr=1e-3)
    torch.manual_seed(0)
    for _ in range(5):
        for t in items:
            loss = trained(input_ids=torch.tensor([t.input_ids]), labels=torch.tensor([t.labels])).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    after = heldout_nll(trained.eval(), tok, PAIRS, forward(SYSTEM), max_seq_len=512)["heldout_nll"]
    assert after < before - 1.0


def test_no_pairs_gives_nulls(tiny):
    model, tok = tiny
    got = heldout_nll(model, tok, PAIRS.clear(), forward(SYSTEM), max_seq_len=512)
    assert got["heldout_nll"] is None and got["heldout_n"] == got["heldout_tokens"] == 0


# --- the stages ---------------------------------------------------------------------------------

PARAMS = "engine: {dtype: float32, device: cpu, cpu_threads: 1}\nprompts:\n  inference_system: SYS\n"


def workspace(tmp_path: Path, monkeypatch, pairs: pl.DataFrame) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(PARAMS)
    write_parquet(pairs, tmp_path / "data/prepared/heldout.parquet")
    return tmp_path


def run_on_lora(tmp_path: Path, monkeypatch, lora_dir: Path, stage: str, out: str):
    """`stage`@lora on a workspace whose models/lora is the tiny LoRA model: the workspace, the JSON
    written to `out`, and the model and tokenizer to check it against."""
    ws = workspace(tmp_path, monkeypatch, PAIRS)
    (ws / "models").mkdir()
    (ws / "models/lora").symlink_to(lora_dir)
    dvc_stage.run(stage, "lora")
    ref = resolve(lora_dir)
    return ws, json.loads((ws / out).read_text()), load_model(ref, dtype="float32"), load_tokenizer(ref)


def test_stage_on_a_lora_model(tmp_path, monkeypatch, tiny_lora_dir):
    _, got, model, tok = run_on_lora(tmp_path, monkeypatch, tiny_lora_dir, "heldout", "data/eval/heldout/lora.json")
    want, tokens = hand_nll(model, tok, PAIRS, "SYS")
    assert got["heldout_n"] == 4 and got["heldout_tokens"] == tokens and got["model"] == "lora"
    assert got["heldout_nll"] == pytest.approx(want, rel=1e-4)


def test_backward_stage_scores_the_instructions_cut_where_the_backward_training_cuts(tmp_path, monkeypatch,
                                                                                    tiny_lora_dir):
    ws, got, model, tok = run_on_lora(tmp_path, monkeypatch, tiny_lora_dir, "heldout_backward",
                                      "metrics/eval/backward/lora.json")
    want, tokens = hand_nll(model, tok, PAIRS, "", backward(PromptsConfig()))
    assert (got["kind"], got["model"], got["heldout_n"], got["heldout_tokens"]) == ("backward", "lora", 4, tokens)
    assert got["heldout_nll"] == pytest.approx(want, rel=1e-4)
    # the backward model's own max_seq_len (backward.train) applies, not the forward models'
    (ws / "params.yaml").write_text(PARAMS + "train: {max_seq_len: 512}\nbackward: {train: {max_seq_len: 40}}\n")
    dvc_stage.run("heldout_backward", "lora")
    cut = json.loads((ws / "metrics/eval/backward/lora.json").read_text())
    assert cut["heldout_dropped"] + cut["heldout_n"] == 4 and cut["heldout_tokens"] < tokens


def test_stage_with_nothing_held_out_loads_no_model(tmp_path, monkeypatch):
    ws = workspace(tmp_path, monkeypatch, PAIRS.clear())
    dvc_stage.run("heldout", "m0")  # models/m0 does not even exist
    got = json.loads((ws / "data/eval/heldout/m0.json").read_text())
    assert got["heldout_nll"] is None and got["heldout_n"] == 0 and got["heldout_tokens"] == 0


def test_stage_bad_row_names_the_file(tmp_path, monkeypatch, capsys):
    workspace(tmp_path, monkeypatch, PAIRS.with_columns(pl.lit("").alias("output")))
    with pytest.raises(SystemExit):
        dvc_stage.run("heldout", "m0")
    assert "data/prepared/heldout.parquet, record 0: instruction and output must be non-empty" in capsys.readouterr().err


def judged(tmp_path: Path, monkeypatch, heldout: str | None) -> dict:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("judge:\n  chunk_size: 4\n")
    (tmp_path / "models/base").mkdir(parents=True)
    rows = {"prompt_id": ["p1", "p2"], "category": ["c", "c"], "instruction": ["Q1?", "Q2?"]}
    write_parquet(pl.DataFrame({**rows, "output": ["short", "tiny"], "generator": ["base"] * 2}),
                  tmp_path / "data/eval/outputs/base.parquet")
    write_parquet(pl.DataFrame({**rows, "output": ["a much longer answer", "longer again"], "generator": ["it1"] * 2}),
                  tmp_path / "data/eval/outputs/it1.parquet")
    if heldout is not None:
        (tmp_path / "data/eval/heldout").mkdir(parents=True)
        (tmp_path / "data/eval/heldout/it1.json").write_text(heldout)
    monkeypatch.setattr(loading, "load_judge_engine", lambda cfg, judge_dir, engine_cfg: LongerJudge(scale=1.0))
    dvc_stage.run("judge", "it1")
    return json.loads((tmp_path / "metrics/eval/it1.json").read_text())


def test_judge_merges_the_heldout_keys_and_drops_the_per_model_lc(tmp_path, monkeypatch):
    m = judged(tmp_path, monkeypatch, json.dumps({"heldout_nll": 2.5, "heldout_tokens": 70, "heldout_n": 4,
                                                  "heldout_ppl": 12.2, "model": "it1"}))
    assert (m["heldout_nll"], m["heldout_tokens"], m["heldout_n"]) == (2.5, 70, 4)
    assert "lc_win_rate" not in m and m["win_rate"] > 99


def test_judge_with_a_malformed_heldout_file_names_it(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        judged(tmp_path, monkeypatch, json.dumps({"heldout_nll": "low", "heldout_tokens": 1, "heldout_n": 1}))
    assert "data/eval/heldout/it1.json: 'heldout_nll' must be a number or null" in capsys.readouterr().err
