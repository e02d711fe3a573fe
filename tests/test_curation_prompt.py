"""The self-curation prompt: the paper's Table 19 layout (task, rubric, reply format, then the pair),
a reply format that fits the scoring mode, and templates checked when params are read."""

import polars as pl
import pytest

from humpback.config import load_section
from humpback.curation.config import ScoreConfig
from humpback.curation.scoring import run_score
from humpback.engines.config import EngineConfig
from humpback.errors import ConfigError
from humpback.prompts import CURATION_ASK_REASONING, CURATION_ASK_SCORE, SCORE_PREFIX, PromptsConfig, curation_messages

INSTRUCTION = "How long should I boil an egg?"
OUTPUT = "Nine minutes for a firm yolk."


def _prompt(mode: str, cfg: PromptsConfig | None = None) -> str:
    (msg,) = curation_messages(cfg or PromptsConfig(), INSTRUCTION, OUTPUT, mode)
    assert msg["role"] == "user"
    return msg["content"]


@pytest.mark.parametrize("mode, ask", [("generate", CURATION_ASK_REASONING), ("logprob", CURATION_ASK_SCORE)])
def test_task_rubric_reply_format_then_the_pair(mode, ask):
    text = _prompt(mode)
    task = text.index("good example of how an AI assistant")
    rubric = [text.index(f"\n{k}: ") for k in range(1, 6)]
    positions = [task, *rubric, text.index(ask), text.index("Instruction:\n" + INSTRUCTION),
                 text.index("Answer:\n" + OUTPUT)]
    assert positions == sorted(positions)
    assert text.endswith(OUTPUT)  # the pair closes the prompt, as in the paper


def test_logprob_prompt_asks_for_the_rating_alone():
    text = _prompt("logprob").lower()
    assert CURATION_ASK_REASONING.lower() not in text
    for word in ("reason", "explain", "last line"):
        assert word not in text, word
    # the reply is forced to start with SCORE_PREFIX: the prompt asks for exactly that form
    assert f'"{SCORE_PREFIX}<rating>"'.lower() in text


def test_generate_prompt_asks_for_a_brief_reasoning_then_the_score_line():
    text = _prompt("generate")
    assert CURATION_ASK_SCORE not in text
    assert "explain your rating briefly" in text and f'on the last line in the form "{SCORE_PREFIX}<rating>"' in text


def test_the_pair_is_inserted_as_is():
    cfg = PromptsConfig(curation_template="{ask}|{instruction}|{output}", curation_ask_score="ask {output} {{x}}")
    (msg,) = curation_messages(cfg, "use {braces}", "a {ask} b", "logprob")
    assert msg["content"] == "ask {output} {{x}}|use {braces}|a {ask} b"  # nothing is formatted twice
    with pytest.raises(ValueError, match="generate, logprob"):
        curation_messages(cfg, "i", "o", "sampled")


def _load(tmp_path, body: str):
    p = tmp_path / "params.yaml"
    p.write_text("prompts:\n" + body)
    return load_section("prompts", p)


@pytest.mark.parametrize("body, message", [
    ("  curation_template: 'Rate it.\\n{instruction}\\n{output}'\n",
     "prompts.curation_template: missing field(s) {ask}"),
    ("  curation_template: '{ask} {instruction}'\n", "prompts.curation_template: missing field(s) {output}"),
    ("  curation_template: '{ask} {instruction} {output} {rubric}'\n",
     "prompts.curation_template: unknown field(s) {rubric}; known: {ask}, {instruction}, {output}"),
    ("  curation_template: '{ask} {instruction} {output} {}'\n", "prompts.curation_template: unknown field(s) {}"),
    ("  curation_template: '{ask} {instruction} {output} {'\n", "prompts.curation_template: not a valid template"),
    ("  curation_template: '{ask} {instruction} {output} }'\n", "prompts.curation_template: not a valid template"),
    ("  curation_ask_score: '  '\n", "prompts.curation_ask_score: empty"),
    ("  curation_ask_reasoning: ''\n", "prompts.curation_ask_reasoning: empty"),
])
def test_bad_templates_are_params_errors_naming_the_key(tmp_path, body, message):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, body)
    assert message in str(e.value) and "params.yaml" in str(e.value)


def test_a_good_custom_template_loads(tmp_path):
    cfg = _load(tmp_path, '  curation_template: "Rate it. {{literal}} {ask}\\nQ: {instruction}\\nA: {output}"\n'
                          "  curation_ask_score: 'Just the score.'\n")
    (msg,) = curation_messages(cfg, "q", "a", "logprob")
    assert msg["content"] == "Rate it. {literal} Just the score.\nQ: q\nA: a"


def test_run_score_rejects_a_bad_template_built_in_code(tmp_path):
    cand = tmp_path / "c.parquet"
    pl.DataFrame({"segment_id": ["a"], "instruction": ["x"], "output": ["y"]}).write_parquet(cand)
    with pytest.raises(ConfigError, match=r"prompts.curation_template: missing field\(s\) \{ask\}"):
        run_score(cand, None, ScoreConfig(), PromptsConfig(curation_template="{instruction} {output}"),
                  scores_path=tmp_path / "s.parquet", metrics_path=tmp_path / "s.json", engine_cfg=EngineConfig(),
                  model_dir=tmp_path)
