"""configs/paper.yaml end to end: `humpback preset configs/paper.yaml`, the paper's data in
data/raw/, `dvc repro` — with only its scale turned down (tests/paper_scale.yaml: a tiny
pretrained-style model, a few steps) and a scripted OpenAI-compatible endpoint serving every model
(completions api: prompts rendered here in our plain format) and the judge.

The endpoint rates in generate mode with fractional scores, so the preset's selection (5.0 at
iteration 1, 4.5 at iteration 2 through the per-iteration override) is checked on real numbers.
A whole second DAG (about 2.5 minutes on 2 cores): `slow`, run with `python -m pytest -m slow`;
tests/test_pipeline.py keeps the default DAG shape on a pretrained-style model in the default run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
from stub_server import StubServer
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCORES = ["5", "4.5", "4", "5", "3.5", "4.5"]  # the scripted curator's ratings, cycled by prompt digest
TOPICS = ["rivers", "volcanoes", "bread", "bicycles", "glaciers", "honeybees", "lighthouses", "tea", "comets",
          "coral reefs", "windmills", "owls"]


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def respond(body: dict, n: int):
    """Every model of the run: backward (an instruction), curator ("Score: x"), answers, judge."""
    if "prompt" in body:  # /completions: our models, rendered in the plain format
        prompt = body["prompt"]
        assert "### User:" in prompt and prompt.rstrip().endswith("### Assistant:"), prompt[-200:]
        user = prompt.rsplit("### User:\n", 1)[1]
        if "Write the request a user sent" in user:
            topic = next((t for t in TOPICS if t in user), "this subject")
            text = f"Explain how {topic} work and why people care about them."
        elif "5-point scale" in user:
            text = f"The answer is focused and complete.\nScore: {SCORES[_digest(user) % len(SCORES)]}"
        else:
            text = "Here is a careful answer with the facts a reader needs."
        return 200, {"choices": [{"index": 0, "text": " " + text, "finish_reason": "stop"}]}, {}
    # /chat/completions: the judge, verdict read from next-token log-probabilities
    user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    first = _digest(user) % 2 == 0
    top = [{"token": "1", "logprob": math.log(0.7 if first else 0.3)},
           {"token": "2", "logprob": math.log(0.3 if first else 0.7)}]
    choice = {"index": 0, "message": {"role": "assistant", "content": "1" if first else "2"}, "finish_reason": "stop",
              "logprobs": {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"], "top_logprobs": top}]}}
    return 200, {"choices": [choice]}, {}


def oasst_trees(n: int) -> list[dict]:
    trees = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        reply = {"message_id": f"a{i}", "parent_id": f"p{i}", "role": "assistant", "lang": "en", "rank": 0,
                 "text": f"{topic.capitalize()} are a fine subject. Here are three facts about {topic}.",
                 "deleted": False, "replies": []}
        prompt = {"message_id": f"p{i}", "parent_id": None, "role": "prompter", "lang": "en", "deleted": False,
                  "text": f"Tell me about {topic}, please ({i}).", "replies": [reply]}
        trees.append({"message_tree_id": f"t{i}", "tree_state": "ready_for_export", "prompt": prompt})
    return trees


def warc(path: Path) -> None:
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for i, topic in enumerate(TOPICS):
            body = " ".join(f"{topic.capitalize()} matter to people in many places for reason number {k}, and "
                            f"the history of {topic} in region {i} shows it." for k in range(12))
            html = f"<html><body><h2>All about {topic}</h2><p>{body}</p></body></html>".encode()
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(f"http://{i}.example/", "response", payload=BytesIO(html),
                                                http_headers=http))


def alpaca_eval(n: int) -> list[dict]:
    return [{"instruction": f"What should I know about {t}?", "output": f"{t.capitalize()} are interesting.",
             "generator": "text_davinci_003", "dataset": "helpful_base" if i % 2 else "koala"}
            for i, t in enumerate(TOPICS[:n])]


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-5000:]}"
    return out


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    ws = dvc_stage.bench_pipeline().copy_project(tmp_path_factory.mktemp("paper"))
    server = StubServer(respond)
    try:
        # the README recipe: the preset, the data in data/raw/, the endpoint, then dvc repro
        _run([sys.executable, "-m", "humpback.cli", "preset", "configs/paper.yaml"], ws)
        scale = (ROOT / "tests/paper_scale.yaml").read_text().replace("ENDPOINT", server.url)
        (ws / "scale.yaml").write_text(scale)
        _run([sys.executable, "-m", "humpback.cli", "preset", "scale.yaml"], ws)
        (ws / "data/raw/seed").mkdir(parents=True, exist_ok=True)
        with gzip.open(ws / "data/raw/seed/2023-04-12_oasst_ready.trees.jsonl.gz", "wt") as f:
            f.writelines(json.dumps(t) + "\n" for t in oasst_trees(12))
        (ws / "data/raw/corpus/cc").mkdir(parents=True, exist_ok=True)
        warc(ws / "data/raw/corpus/cc/crawl-00000.warc.gz")
        (ws / "data/raw/eval").mkdir(parents=True, exist_ok=True)
        (ws / "data/raw/eval/alpaca_eval.json").write_text(json.dumps(alpaca_eval(6)))
        out = _run(["dvc", "repro"], ws)
        yield ws, set(re.findall(r"Running stage '([^']+)'", out)), server
    finally:
        server.close()


def test_paper_preset_runs_every_stage_to_the_report(paper_run):
    ws, ran, server = paper_run
    expected = {"base_model", "seed", "corpus", "train_backward", "train_m0", "augment", "report",
                *(f"{s}@{it}" for s in ("score", "select", "train") for it in ("it1", "it2")),
                *(f"{s}@{m}" for s in ("generate", "judge", "heldout") for m in ("m0", "it1", "it2")),
                "heldout_backward@base", "heldout_backward@backward",
                "judge_check", "paired", "length_controlled", "export", "params", "cost"}
    assert ran == expected
    # a pretrained-style base: no chat template, no pad token -> our plain format, saved with each model
    assert json.loads((ws / "models/base/humpback_model.json").read_text())["source"] == "tiny"
    for model in ("backward", "m0", "it1", "it2"):
        assert "### Assistant:" in (ws / f"models/{model}/chat_template.jinja").read_text()
        assert (ws / f"models/{model}/model.safetensors").is_file()  # train.mode full: whole checkpoints
    seed = json.loads((ws / "metrics/seed.json").read_text())
    assert (seed["kept"], seed["heldout"]) == (10, 2)
    assert json.loads((ws / "metrics/eval/it2.json").read_text())["heldout_n"] == 2
    # every completions request was a plain-format prompt (respond asserts it), every judge call a chat one
    assert set(server.paths) == {"/v1/completions", "/v1/chat/completions"}


def test_paper_selection_reads_fractional_generate_scores_per_iteration(paper_run):
    ws, _, _ = paper_run
    for it, threshold in (("it1", 5.0), ("it2", 4.5)):
        scores = pl.read_parquet(ws / f"data/scores/{it}.parquet")
        assert set(scores["mode"]) == {"generate"} and scores["score"].null_count() == 0
        assert set(scores["score"].to_list()) <= {float(s) for s in SCORES}
        curation = json.loads((ws / f"metrics/curation/{it}.json").read_text())
        kept = pl.read_parquet(ws / f"data/curated/{it}.parquet")
        assert curation["threshold"] == threshold and kept.height == curation["kept"]
        assert kept.height == (scores["score"] >= threshold).sum() > 0


def test_paper_evaluation_is_against_davinci_by_the_endpoint_judge(paper_run):
    ws, _, server = paper_run
    for model in ("m0", "it1", "it2"):
        m = json.loads((ws / f"metrics/eval/{model}.json").read_text())
        assert m["reference"] == "alpaca_eval" and m["judge"] == f"gpt-4-0613@{server.url}"
        assert m["n_total"] == 6 and m["unparsed_verdicts"] == 0 and m["n_missing_reference"] == 0
    assert (ws / "metrics/report/report.png").is_file()
    assert not (ws / "data/eval/outputs/base.parquet").exists()  # the base is not compared
