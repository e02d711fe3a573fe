"""Decontamination: corpus segments and candidate instructions that copy the eval set are rejected, with the eval id."""

from __future__ import annotations

import json
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
from ruamel.yaml import YAML

from humpback import decontamination
from humpback.augment import FilterConfig, filter_candidates
from humpback.config import load_section
from humpback.corpus import CorpusConfig, SourceConfig, prepare_corpus
from humpback.corpus.config import DecontaminationConfig
from humpback.decontamination import ContaminationIndex, EvalText, eval_texts, normalise_texts
from humpback.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PROMPT = ("Explain how a refrigerator keeps food cold by moving heat from the inside of the box to the air of "
          "the kitchen around it.")  # 24 words
FILLER = ("Gardeners in the valley plant beans after the last frost and water them every evening until the pods "
          "grow long and green. The soil there is rich and dark, and the summers are warm enough for tomatoes. ")


@pytest.fixture(autouse=True, params=["aho_corasick", "hashes"])
def search(request, monkeypatch):
    """Every test runs with both ways of searching a batch."""
    if request.param == "hashes":
        monkeypatch.setattr(decontamination, "AHO_CORASICK_MAX", -1)
    return request.param


def _prompts(tmp_path: Path, rows: list[dict], name: str = "prompts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _texts(*pairs: tuple[str, str]) -> list[EvalText]:
    return [EvalText(i, "instruction", t) for i, t in pairs]


def _corpus(tmp_path: Path, docs: list[tuple[str, str]], texts: list[EvalText], **cfg) -> tuple[dict, pl.DataFrame]:
    """Prepare a table corpus of (doc id, text) documents, each one `## Section` segment, and a clean
    document `keeper` (a corpus where nothing survives is an error)."""
    dump = tmp_path / "dump.jsonl"
    docs = [*docs, ("keeper", "Bread rises when the yeast in the dough turns sugar into gas. " * 3)]
    dump.write_text("".join(json.dumps({"id": d, "text": f"## Section {d}\n\n{t}"}) + "\n" for d, t in docs))
    config = CorpusConfig(sources=[SourceConfig(kind="table", path=str(dump))], min_chars=100, **cfg)
    m = prepare_corpus(config, tmp_path / "s.parquet", tmp_path / "r.parquet", eval_texts=texts)
    return m, pl.read_parquet(tmp_path / "r.parquet")


def _reasons(rejected: pl.DataFrame) -> dict[str, tuple[str, str]]:
    return {d: (r, detail) for d, r, detail in rejected.select("doc_id", "reason", "detail").iter_rows()}


def test_a_segment_quoting_an_eval_prompt_is_rejected_with_its_id(tmp_path):
    texts = _texts(("helpful-07", PROMPT), ("other-01", "Write a limerick about a cat who learns to fly a kite."))
    m, rej = _corpus(tmp_path, [("quotes", FILLER + PROMPT + " " + FILLER[:120]), ("clean", FILLER * 2)], texts)
    reason, detail = _reasons(rej)["quotes"]
    assert reason == "contaminated"
    assert detail.startswith("helpful-07 instruction 13-gram: explain how a refrigerator keeps food cold")
    assert "clean" not in _reasons(rej)
    assert m["rejected"] == {"contaminated": 1} and m["segments_kept"] == 2
    # 24 words: 12 13-grams; 12 words: the whole text
    assert m["decontamination"] == {"ngram": 13, "eval_texts": 2, "patterns": 12 + 1, "rejected": 1}


@pytest.mark.parametrize("shared, rejected", [(12, False), (13, True)])
def test_ngram_boundary(tmp_path, shared, rejected):
    words = PROMPT.split()
    segment = FILLER + " ".join(words[5 : 5 + shared]) + " " + FILLER
    _, rej = _corpus(tmp_path, [("doc", segment)], _texts(("p1", PROMPT)))
    assert ("doc" in _reasons(rej)) is rejected


def test_case_punctuation_and_spacing_do_not_hide_a_copy(tmp_path):
    copy = PROMPT.upper().replace(" ", "  \n ").replace("a refrigerator", "a -- refrigerator,").replace(".", "!!")
    _, rej = _corpus(tmp_path, [("shouted", FILLER + copy + " " + FILLER)], _texts(("p1", PROMPT)))
    assert _reasons(rej)["shouted"][0] == "contaminated"


def test_a_short_eval_text_counts_only_when_it_appears_whole(tmp_path):
    short = "Name three rivers of Europe."  # 5 words < 13
    docs = [("whole", FILLER + "Can you name three rivers of Europe, please? " + FILLER),
            ("part", FILLER + "We can name three rivers here. " + FILLER)]
    _, rej = _corpus(tmp_path, docs, _texts(("geo-2", short)))
    assert _reasons(rej) == {"whole": ("contaminated", "geo-2 instruction whole text: name three rivers of europe")}


def test_words_match_whole_not_inside_longer_words():
    index = ContaminationIndex(_texts(("p", "red fox jumps")), 3)
    assert [m and m[0].eval_id for m in index.check(pl.Series(normalise_texts(
        ["the red fox jumps high", "the bred fox jumps", "a red fox jumpsuit", "red fox jumps"])))] == ["p", None, None, "p"]


def test_reference_answers_from_the_eval_file_and_extra_files(tmp_path):
    answer = ("A refrigerator pumps a refrigerant through coils so that it absorbs heat inside the cabinet and "
              "releases it through the coils at the back.")
    alpaca = tmp_path / "eval.json"  # AlpacaEval's eval set: instruction and reference output
    alpaca.write_text(json.dumps([{"instruction": PROMPT, "output": answer, "dataset": "helpful"}]))
    texts = eval_texts(alpaca)
    assert [(t.eval_id, t.field) for t in texts] == [("p0000", "instruction"), ("p0000", "output")]
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"instruction": PROMPT, "output": "Another answer: " + FILLER}) + "\n"
                    + json.dumps({"instruction": "Unrelated?", "output": "Something else entirely, said here."}) + "\n")
    texts = eval_texts(alpaca, references=[str(refs)])
    assert [(t.eval_id, t.field) for t in texts][2:] == [("p0000", "output"), ("refs.jsonl:1", "output")]
    _, rej = _corpus(tmp_path, [("answer", FILLER + answer)], eval_texts(alpaca))
    assert _reasons(rej)["answer"][1].startswith("p0000 output 13-gram: a refrigerator pumps")


def test_no_eval_texts_or_ngram_0_checks_nothing(tmp_path):
    docs = [("quotes", FILLER + PROMPT)]
    m, rej = _corpus(tmp_path, docs, _texts(("p1", PROMPT)), decontamination=DecontaminationConfig(ngram=0))
    assert rej.height == 0 and m["decontamination"]["ngram"] == 0
    m, rej = _corpus(tmp_path, docs, None)
    assert rej.height == 0 and m["decontamination"] == {"ngram": 0, "eval_texts": 0, "patterns": 0, "rejected": 0}


def _generated(rows: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame({"segment_id": [f"s{i}" for i in range(len(rows))], "text": [s for _, s in rows],
                         "raw_instruction": [i for i, _ in rows], "header": ["h"] * len(rows),
                         "doc_id": ["d"] * len(rows)})


def test_augment_rejects_an_instruction_that_copies_an_eval_prompt():
    texts = _texts(("helpful-07", PROMPT), ("geo-2", "Name three rivers of Europe."))
    gen = _generated([("explain how a refrigerator keeps food COLD by moving heat from the inside of the box to the "
                       "air of the kitchen around it", FILLER),
                      ("Name three rivers of Europe!", FILLER),
                      ("Tell me why a fridge keeps food cold by moving heat outside.", FILLER),  # 6 shared words
                      ("How do I grow beans in a valley garden?", FILLER)])
    kept, rej = filter_candidates(gen, FilterConfig(), texts)
    assert rej.select("segment_id", "reason", "detail").rows() == [
        ("s0", "eval_prompt", "helpful-07 instruction equal"), ("s1", "eval_prompt", "geo-2 instruction equal")]
    assert kept["segment_id"].to_list() == ["s2", "s3"]
    # s2 shares 6 words ("keeps food cold by moving heat"): caught with eval_ngram 6, not 7
    _, rej = filter_candidates(gen, FilterConfig(eval_ngram=6), texts)
    assert rej.filter(segment_id="s2")["detail"][0] == "helpful-07 instruction 6-gram: keeps food cold by moving heat"
    assert "s2" not in filter_candidates(gen, FilterConfig(eval_ngram=7), texts)[1]["segment_id"].to_list()
    # eval_ngram 0: only an equal instruction
    kept, rej = filter_candidates(gen, FilterConfig(eval_ngram=0), texts)
    assert rej["segment_id"].to_list() == ["s0", "s1"]
    gen2 = _generated([("Please: name three rivers of Europe for my homework.", FILLER)])
    assert filter_candidates(gen2, FilterConfig(eval_ngram=0), texts)[0].height == 1  # holds it whole, not equal
    assert filter_candidates(gen2, FilterConfig(), texts)[1]["reason"].to_list() == ["eval_prompt"]


@pytest.mark.parametrize("key, value, needle", [
    ("ngram", -1, "corpus.decontamination.ngram: -1 is out of range (must be >= 0 and <= 64)"),
    ("ngram", 100, "corpus.decontamination.ngram: 100 is out of range (must be >= 0 and <= 64)"),
    ("ngram", "x", "corpus.decontamination.ngram: expected an integer"),
])
def test_bad_decontamination_params_are_one_line_errors(tmp_path, key, value, needle):
    params = tmp_path / "params.yaml"
    params.write_text(f"corpus:\n  decontamination:\n    {key}: {json.dumps(value)}\n")
    with pytest.raises(ConfigError) as e:
        load_section("corpus", params)
    assert needle in str(e.value) and "\n" not in str(e.value)
    params.write_text("augment:\n  filter:\n    eval_ngram: -3\n")
    with pytest.raises(ConfigError, match=r"augment.filter.eval_ngram: -3 is out of range"):
        load_section("augment", params)


def test_the_eval_prompts_file_is_a_dep_of_corpus_and_augment():
    stages = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("corpus", "augment"):
        st = stages[name]
        assert "${eval.prompts}" in st["deps"], name
        assert "--eval-prompts ${eval.prompts}" in st["cmd"], name
        assert {"eval.prompts", "eval.instruction_column", "eval.id_column"} <= set(st["params"]), name


def test_corpus_stage_end_to_end_against_the_eval_prompts(tmp_path):
    (tmp_path / "dump.jsonl").write_text(
        json.dumps({"id": "copy", "text": f"## A\n\n{FILLER}{PROMPT}"}) + "\n"
        + json.dumps({"id": "ok", "text": f"## B\n\n{FILLER}{FILLER}"}) + "\n")
    (tmp_path / "data/eval").mkdir(parents=True)
    _prompts(tmp_path / "data/eval", [{"id": "helpful-07", "category": "helpful", "instruction": PROMPT}])
    (tmp_path / "params.yaml").write_text("corpus:\n  sources:\n    - {kind: table, path: dump.jsonl}\n  min_chars: 100\n")
    done = dvc_stage.run_subprocess("corpus", None, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "metrics/corpus.json").read_text())
    assert metrics["rejected"] == {"contaminated": 1} and metrics["decontamination"]["eval_texts"] == 1
    rej = pl.read_parquet(tmp_path / "data/prepared/rejected.parquet")
    assert rej.select("doc_id", "reason").rows() == [("copy", "contaminated")]
    assert rej["detail"][0].startswith("helpful-07 instruction 13-gram")
