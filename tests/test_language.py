"""Language identification: the batched detector equals py3langid, the corpus drops pages in another
language, augment drops an instruction written in another language than its segment."""

from __future__ import annotations

import json

import polars as pl
import pytest

from humpback.augment import FilterConfig, filter_candidates
from humpback.config import load_section
from humpback.corpus import CorpusConfig, SourceConfig, prepare_corpus
from humpback.errors import ConfigError
from humpback.language import detect, identifier, known_languages

ENGLISH = ("The old lighthouse on the northern cliff was built in 1871 to guide fishing boats home through the "
           "fog. Its keeper climbed one hundred and twelve steps every evening to light the lamp, and in winter "
           "storms he stayed awake all night to keep the flame burning. Today the tower is a small museum where "
           "visitors can see the original lens and read the keepers' logbooks.")
GERMAN = ("Der alte Leuchtturm auf der nördlichen Klippe wurde im Jahr 1871 gebaut, um die Fischerboote durch den "
          "Nebel nach Hause zu führen. Sein Wärter stieg jeden Abend einhundertzwölf Stufen hinauf, um die Lampe "
          "anzuzünden, und bei Winterstürmen blieb er die ganze Nacht wach. Heute ist der Turm ein kleines Museum, "
          "in dem Besucher die originale Linse sehen und die Logbücher der Wärter lesen können.")
FRENCH = "Comment est-ce que je peux apprendre à faire du pain au levain à la maison sans machine ?"


def test_detect_equals_py3langid_classify():
    ident = identifier()
    texts = [ENGLISH, GERMAN, FRENCH, "", "   ", "12345", "ABC DEF GHI", "Это русский текст о программировании.",
             "日本語のテキストです。", "é" * 600, ENGLISH * 5, "Explain recursion.", "pip install foo"]
    got = detect(texts, max_bytes=512)
    for text, (lang, prob) in zip(texts, got, strict=True):
        want_lang, want_prob = ident.classify(text.encode()[:512])
        assert lang == want_lang and prob == pytest.approx(want_prob, abs=1e-4), text[:30]
    assert got[0][0] == "en" and got[1][0] == "de" and got[2][0] == "fr"
    assert detect([]) == []


def _html_site(tmp_path, pages: dict[str, str]):
    site = tmp_path / "site"
    site.mkdir()
    for name, body in pages.items():
        (site / f"{name}.html").write_text(f"<html><body><h2>{name.title()} page</h2><p>{body}</p></body></html>")
    return site


def test_a_german_page_is_rejected_and_an_english_page_kept(tmp_path):
    site = _html_site(tmp_path, {"english": ENGLISH, "german": GERMAN})
    cfg = CorpusConfig(sources=[SourceConfig(kind="html", path=str(site))], min_chars=200)
    m = prepare_corpus(cfg, tmp_path / "s.parquet", tmp_path / "r.parquet")
    kept, rej = pl.read_parquet(tmp_path / "s.parquet"), pl.read_parquet(tmp_path / "r.parquet")
    assert kept["doc_id"].to_list() == ["english.html"]
    assert rej.select("doc_id", "reason").rows() == [("german.html", "language")]
    lang, prob = rej["detail"][0].split()
    assert lang == "de" and float(prob) > 0.99
    assert m["rejected"] == {"language": 1}
    assert m["language"] == {"allowed": ["en"], "min_prob": 0.5, "rejected": 1}
    # any language, or German allowed: both kept
    for languages in ([], ["en", "de"]):
        cfg = CorpusConfig(sources=[SourceConfig(kind="html", path=str(site))], min_chars=200, languages=languages)
        assert prepare_corpus(cfg, tmp_path / "s.parquet", tmp_path / "r.parquet")["segments_kept"] == 2


def test_a_low_probability_is_no_reason_to_reject(tmp_path):
    mixed = ENGLISH[:200] + " " + GERMAN[:220]
    lang, prob = detect([mixed])[0]
    site = _html_site(tmp_path, {"mixed": mixed, "english": ENGLISH})
    cfg = CorpusConfig(sources=[SourceConfig(kind="html", path=str(site))], min_chars=200,
                       min_language_prob=min(1.0, prob + 0.01))
    assert prepare_corpus(cfg, tmp_path / "s.parquet", tmp_path / "r.parquet")["segments_kept"] == 2
    cfg.min_language_prob = prob - 0.01
    m = prepare_corpus(cfg, tmp_path / "s.parquet", tmp_path / "r.parquet")
    assert m["segments_kept"] == (2 if lang == "en" else 1)


def test_default_language_params():
    cfg = load_section("corpus")
    assert cfg.languages == ["en"] and 0 < cfg.min_language_prob < 1


@pytest.mark.parametrize("text, needle", [
    ("corpus:\n  languages: [en, xx]\n", "corpus.languages[1]: 'xx' is not a language code the identifier knows"),
    ("corpus:\n  languages: [EN]\n", "corpus.languages[0]: 'EN' is not a language code"),
    ("corpus:\n  min_language_prob: 1.5\n", "corpus.min_language_prob: 1.5 is out of range"),
])
def test_bad_language_params_are_one_line_errors(tmp_path, text, needle):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_section("corpus", params)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_known_languages_are_iso_codes():
    known = known_languages()
    assert {"en", "de", "fr", "es", "zh", "ja", "ru"} <= known and len(known) > 90


def _generated(rows: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame({"segment_id": [f"s{i}" for i in range(len(rows))], "text": [s for _, s in rows],
                         "raw_instruction": [i for i, _ in rows], "header": ["h"] * len(rows),
                         "doc_id": ["d"] * len(rows)})


def test_augment_rejects_an_instruction_in_another_language_than_its_segment():
    gen = _generated([
        ("Wie wurde der alte Leuchtturm auf der Klippe früher jeden Abend angezündet?", ENGLISH),  # de for en
        ("How was the old lighthouse on the cliff lit every evening?", ENGLISH),
        ("Wie wurde der alte Leuchtturm auf der Klippe früher jeden Abend angezündet?", GERMAN),  # de for de
        ("Explain recursion.", ENGLISH),  # short: low confidence, kept
        (FRENCH, ENGLISH),
    ])
    kept, rej = filter_candidates(gen, FilterConfig())
    assert rej["segment_id"].to_list() == ["s0", "s4"] and set(rej["reason"]) == {"language"}
    assert rej["detail"][0].startswith("de ") and "(segment en " in rej["detail"][0]
    assert rej["detail"][1].startswith("fr ")
    assert kept["segment_id"].to_list() == ["s1", "s2", "s3"]
    # above 1: off
    assert filter_candidates(gen, FilterConfig(min_language_prob=1.01))[1].height == 0


def test_augment_metrics_count_the_new_reasons(tmp_path):
    from humpback.augment import augment_metrics

    gen = _generated([("Wie wurde der alte Leuchtturm auf der Klippe früher jeden Abend angezündet?", ENGLISH),
                      ("How was the old lighthouse on the cliff lit every evening?", ENGLISH)])
    kept, rej = filter_candidates(gen, FilterConfig())
    m = augment_metrics(gen, kept, rej, 0.0)
    assert m["rejected_by_reason"]["language"] == 1 and m["rejected_by_reason"]["eval_prompt"] == 0
    json.dumps(m)
